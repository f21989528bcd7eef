//! Bearer tokens of JWT issuers configured by an [`AuthenticationConfiguration`], as
//! kube-apiserver's JWT authenticator (`plugin/pkg/authenticator/token/oidc`).

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_jose::{DEFAULT_MAX_TOKEN_LEN, VerifiedToken, Verifier};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::authenticator::{Authenticated, Authenticator, Credentials, Outcome};
use crate::cache::TokenCache;
use crate::cel_eval::to_cel;
use crate::config::{AuthenticationConfiguration, ClaimRule, CompiledJwt, Issuer, Mapping};
use crate::keys::{DiscoveryKeys, KeySource};
use crate::{Error, UserInfo};

/// Gives the key source of each configured issuer (e.g. the in-process issuer's keys for its
/// own URL, [`DiscoveryKeys`] for the others).
pub type KeySourceFactory = Arc<dyn Fn(&Issuer) -> Result<Arc<dyn KeySource>, Error> + Send + Sync>;

/// The JWT authenticator of a whole configuration: each token goes to the issuer its `iss`
/// names (a token of no configured issuer is not this authenticator's), is verified with that
/// issuer's keys for one of its audiences, checked by its claim rules, mapped to a user and
/// checked by its user rules. Identities are cached until `exp`.
///
/// Beyond Kubernetes' own checks, a token is refused when its mapped user name or a group
/// starts with `system:`: claims cannot mint system identities such as `system:masters`.
pub struct JwtAuthenticator {
    issuers: Vec<IssuerAuthenticator>,
    cache: TokenCache,
}

struct IssuerAuthenticator {
    config: CompiledJwt,
    verifiers: Vec<Verifier>,
    keys: Arc<dyn KeySource>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("issuers", &self.issuers().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// Validates `config` and builds the authenticator, asking `keys` for each issuer's keys.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration; what `keys` returns.
    pub fn new(
        config: &AuthenticationConfiguration,
        keys: &KeySourceFactory,
    ) -> Result<JwtAuthenticator, Error> {
        config.validate()?;
        let mut issuers = Vec::with_capacity(config.jwt.len());
        for (i, jwt) in config.jwt.iter().enumerate() {
            let compiled = jwt.compile(&format!("jwt[{i}]"))?;
            let verifiers = compiled
                .issuer
                .audiences
                .iter()
                .map(|aud| Verifier::new(compiled.issuer.url.clone(), aud.clone()))
                .collect();
            issuers.push(IssuerAuthenticator {
                keys: keys(&compiled.issuer)?,
                config: compiled,
                verifiers,
            });
        }
        Ok(JwtAuthenticator {
            issuers,
            cache: TokenCache::new(TokenCache::DEFAULT_CAPACITY),
        })
    }

    /// The factory fetching every issuer's keys by OpenID discovery.
    pub fn discovery_key_sources() -> KeySourceFactory {
        Arc::new(|issuer: &Issuer| {
            DiscoveryKeys::for_issuer(issuer).map(|k| Arc::new(k) as Arc<dyn KeySource>)
        })
    }

    /// The configured issuer URLs.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|i| i.config.issuer.url.as_str())
    }

    /// Whether every issuer's keys have been had at least once.
    pub fn ready(&self) -> bool {
        self.issuers.iter().all(|i| i.keys.ready())
    }

    /// Fetches every remote issuer's keys now (at startup, in the background: an unreachable
    /// issuer must not hold up the rest). Returns the failures, one per issuer.
    pub async fn prefetch_keys(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        for issuer in &self.issuers {
            if let Err(e) = issuer.keys.prefetch().await {
                errors.push(e);
            }
        }
        errors
    }

    /// Authenticates a bearer token at `now` (Unix seconds).
    pub async fn authenticate_token(&self, token: &SecretString, now: u64) -> Outcome {
        // Only tokens this authenticator verified are cached: a hit needs no further look.
        if let Some(cached) = self.cache.get(token, now) {
            return Outcome::Authenticated(cached);
        }
        let text = token.expose_secret();
        let Some(iss) = peek_issuer(text) else {
            return Outcome::NotMine;
        };
        let Some(issuer) = self.issuers.iter().find(|i| i.config.issuer.url == iss) else {
            return Outcome::NotMine;
        };
        match issuer.authenticate(text, now).await {
            Ok(authenticated) => {
                self.cache.insert(token, &authenticated, now);
                Outcome::Authenticated(authenticated)
            }
            Err(e) => {
                tracing::debug!(token = %crate::log_hash(text.as_bytes()), error = %e, "JWT refused");
                Outcome::Failed(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        match credentials.bearer_token() {
            Some(token) => {
                self.authenticate_token(&token, portcullis_jose::unix_now())
                    .await
            }
            None => Outcome::NotMine,
        }
    }

    /// A request without a bearer token is not this authenticator's, and one whose token's
    /// identity is cached is that identity; any other token is verified by `authenticate`.
    fn authenticate_now(&self, credentials: &Credentials<'_>) -> Option<Outcome> {
        match credentials.bearer() {
            None => Some(Outcome::NotMine),
            Some(token) => self
                .cache
                .get_str(token, portcullis_jose::unix_now_coarse())
                .map(Outcome::Authenticated),
        }
    }
}

/// The unverified `iss` of a compact JWS, only to pick the issuer whose keys verify it.
fn peek_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    if token.len() > DEFAULT_MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

// === impl IssuerAuthenticator ===

impl IssuerAuthenticator {
    async fn authenticate(&self, token: &str, now: u64) -> Result<Authenticated, Error> {
        let mut last = None;
        // audienceMatchPolicy MatchAny: any configured audience will do.
        for verifier in &self.verifiers {
            match self.keys.verify(verifier, token, now).await {
                Ok(verified) => {
                    let user = self.user(&verified).map_err(Error::Claims)?;
                    return Ok(Authenticated {
                        user: std::sync::Arc::new(user),
                        expires_at: Some(verified.expires_at),
                    });
                }
                Err(e @ portcullis_jose::Error::AudienceMismatch { .. }) => last = Some(e),
                // The issuer's keys could not be had: not the token's fault, but no identity.
                Err(portcullis_jose::Error::Fetch(reason)) => {
                    return Err(Error::Keys {
                        issuer: self.config.issuer.url.clone(),
                        reason,
                    });
                }
                // Never had the issuer's keys (discovery failed, a retry is rate-limited):
                // say so rather than blame the token's kid.
                Err(e) if !self.keys.ready() => {
                    return Err(Error::Keys {
                        issuer: self.config.issuer.url.clone(),
                        reason: format!("no keys fetched yet ({e})"),
                    });
                }
                Err(e) => return Err(Error::Token(e)),
            }
        }
        Err(last.map_or_else(
            || Error::Claims("no audience configured".into()),
            Error::Token,
        ))
    }

    /// Claim rules, mappings, the `system:` rule and user rules, in kube-apiserver's order.
    fn user(&self, token: &VerifiedToken) -> Result<UserInfo, String> {
        let c = &self.config;
        let claims = &token.claims;
        let mut cel_claims: Option<cel::Value> = None;
        let mut cel = || -> Result<cel::Value, String> {
            if let Some(v) = &cel_claims {
                return Ok(v.clone());
            }
            let v = to_cel(claims)?;
            cel_claims = Some(v.clone());
            Ok(v)
        };

        for rule in &c.claim_rules {
            match rule {
                ClaimRule::Required { claim, value } => match claims.get(claim) {
                    Some(Value::String(s)) if s == value => {}
                    Some(Value::String(_)) => {
                        return Err(format!(
                            "required claim {claim:?} does not have the required value"
                        ));
                    }
                    Some(_) => return Err(format!("required claim {claim:?} is not a string")),
                    None => return Err(format!("required claim {claim:?} is missing")),
                },
                ClaimRule::Expression {
                    expression,
                    message,
                } => {
                    if !expression.eval_bool("claims", &cel()?)? {
                        return Err(format!(
                            "claim validation rule failed: {}",
                            if message.is_empty() {
                                expression.source()
                            } else {
                                message
                            }
                        ));
                    }
                }
            }
        }

        let name = match &c.username {
            Mapping::Claim { claim, prefix } => {
                let value = match claims.get(claim) {
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => return Err(format!("username claim {claim:?} is not a string")),
                    None => return Err(format!("username claim {claim:?} is missing")),
                };
                if claim == "email" {
                    // As kube-apiserver: when present, email_verified must be true.
                    match claims.get("email_verified") {
                        None | Some(Value::Bool(true)) => {}
                        Some(Value::Bool(false)) => return Err("email not verified".into()),
                        Some(_) => return Err("email_verified is not a boolean".into()),
                    }
                }
                if value.is_empty() {
                    return Err(format!("username claim {claim:?} is empty"));
                }
                format!("{prefix}{value}")
            }
            Mapping::Expression(e) => {
                let name = e.eval_string("claims", &cel()?)?;
                if name.is_empty() {
                    return Err("empty username via CEL expression is not allowed".into());
                }
                name
            }
        };

        let mut groups = match &c.groups {
            None => Vec::new(),
            Some(Mapping::Claim { claim, prefix }) => match claims.get(claim) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(g)) => vec![format!("{prefix}{g}")],
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|g| {
                        g.as_str()
                            .map(|g| format!("{prefix}{g}"))
                            .ok_or_else(|| format!("groups claim {claim:?} holds a non-string"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(format!(
                        "groups claim {claim:?} is neither a string nor a list"
                    ));
                }
            },
            Some(Mapping::Expression(e)) => e.eval_strings("claims", &cel()?)?,
        };

        let uid = match &c.uid {
            None => String::new(),
            Some(Mapping::Claim { claim, .. }) => match claims.get(claim) {
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(format!("uid claim {claim:?} is not a string")),
                None => return Err(format!("uid claim {claim:?} is missing")),
            },
            Some(Mapping::Expression(e)) => e.eval_string("claims", &cel()?)?,
        };

        let mut extra = BTreeMap::new();
        for (key, e) in &c.extra {
            let values: Vec<String> = e
                .eval_strings("claims", &cel()?)?
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect();
            if !values.is_empty() {
                extra.insert(key.clone(), values);
            }
        }

        if name.starts_with("system:") {
            return Err(format!(
                "the user name {name:?} is in the reserved system: namespace; claims cannot name system users"
            ));
        }
        if let Some(g) = groups.iter().find(|g| g.starts_with("system:")) {
            return Err(format!(
                "the group {g:?} is in the reserved system: namespace; claims cannot name system groups"
            ));
        }

        if !c.user_rules.is_empty() {
            let user = to_cel(&serde_json::json!({
                "username": name, "uid": uid, "groups": groups, "extra": extra,
            }))?;
            for (rule, message) in &c.user_rules {
                if !rule.eval_bool("user", &user)? {
                    return Err(format!(
                        "user validation rule failed: {}",
                        if message.is_empty() {
                            rule.source()
                        } else {
                            message
                        }
                    ));
                }
            }
        }

        // As kube-apiserver 1.32+: a stable id of the credential for audit.
        if let Some(jti) = token.claim_str("jti") {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_owned(),
                vec![format!("JTI={jti}")],
            );
        }
        groups.push(crate::SYSTEM_AUTHENTICATED.into());
        Ok(UserInfo {
            name,
            uid,
            groups,
            extra,
        })
    }
}
