//! The upstream OpenID Connect connector: a redirect connector.
//!
//! Login sends the browser to the upstream provider's authorization endpoint (authorization
//! code flow with PKCE S256, `state` and `nonce`), redeems the code with the client's
//! credentials, and verifies the upstream ID token against the upstream's published keys
//! (issuer, audience, expiry, signature, `nonce`). The claims then become an [`Identity`]
//! through the connector's claim mapping, after the e-mail verification, allowed-domain and
//! allowed-group checks.
//!
//! Refresh redeems the upstream refresh token the login returned (the caller keeps it sealed
//! and makes sure it is redeemed once per downstream refresh) and re-reads the claims of the
//! new ID token: a refused refresh, another subject, or claims that no longer pass the checks
//! end the user's sessions.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_jose::{Jwks, VerificationKeys, Verifier};
use portcullis_model::ConnectorSpec;
use portcullis_model::kinds::connector::OidcConnector as OidcSpec;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use tokio::sync::{OnceCell, RwLock};

use crate::{Error, Identity, MAX_USERNAME_LEN};

/// Most groups kept from an upstream token.
const MAX_GROUPS: usize = 1024;
/// Deadline of every request to the upstream provider.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An identity source the browser is sent to (an upstream OpenID provider).
#[async_trait::async_trait]
pub trait RedirectConnector: Send + Sync + std::fmt::Debug {
    /// The connector id (`metadata.name` of its `Connector`).
    fn id(&self) -> &str;

    /// Name shown on the login page.
    fn display_name(&self) -> &str;

    /// Where to send the browser: the upstream authorization request for `callback`, with
    /// `state`, `nonce` and the PKCE challenge of `verifier`.
    async fn login_url(
        &self,
        callback: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, Error>;

    /// Redeems the upstream `code` and reads the user from the verified ID token, whose
    /// `nonce` must be `nonce`. `Ok(Err)` means the upstream user may not log in here.
    async fn finish(
        &self,
        callback: &str,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Result<Upstream, Refusal>, Error>;

    /// A quick check: discovery and the upstream's keys can be fetched.
    async fn check(&self) -> Result<(), Error>;

    /// Redeems `refresh_token` once and re-reads `previous`. `Ok(Err)` means the upstream
    /// refused (revoked, expired) or the user no longer passes: their sessions must end.
    async fn refresh(
        &self,
        previous: &Identity,
        refresh_token: &SecretString,
    ) -> Result<Result<Upstream, Refusal>, Error>;
}

/// A user as the upstream describes them, and the upstream refresh token to keep (sealed).
#[derive(Debug)]
pub struct Upstream {
    /// The user.
    pub identity: Identity,
    /// The upstream refresh token, if the upstream returned one.
    pub refresh_token: Option<SecretString>,
}

/// Why an upstream user may not log in or go on (shown to the user, logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// What the upstream's discovery document says.
#[derive(Debug)]
struct Discovered {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// The upstream OIDC connector.
#[derive(Debug)]
pub struct OidcConnector {
    id: String,
    display_name: String,
    spec: OidcSpec,
    groups: crate::GroupRules,
    client_secret: Option<SecretString>,
    http: reqwest::Client,
    discovered: OnceCell<Discovered>,
    keys: RwLock<Arc<VerificationKeys>>,
}

fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

impl OidcConnector {
    /// The connector `id` of `spec` (its `oidc` section), with the client secret read from
    /// the secret `clientSecretRef` names.
    pub fn new(
        id: &str,
        spec: &ConnectorSpec,
        client_secret: Option<SecretString>,
    ) -> Result<Self, Error> {
        let config = |message: String| Error::Config {
            connector: id.to_owned(),
            message,
        };
        let oidc = spec
            .oidc
            .clone()
            .ok_or_else(|| config("type oidc needs the oidc section".into()))?;
        if oidc.client_secret_ref.is_some() && client_secret.is_none() {
            return Err(config("the client secret is not set".into()));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if !oidc.ca_bundle.is_empty() {
            let certs = reqwest::Certificate::from_pem_bundle(oidc.ca_bundle.as_bytes())
                .map_err(|e| config(format!("caBundle is not a PEM bundle: {e}")))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| config(format!("building the HTTP client failed: {e}")))?;
        Ok(OidcConnector {
            id: id.to_owned(),
            display_name: or_default(&spec.display_name, id).to_owned(),
            spec: oidc,
            groups: crate::GroupRules::of(id, spec)?,
            client_secret,
            http,
            discovered: OnceCell::new(),
            keys: RwLock::new(Arc::new(VerificationKeys::default())),
        })
    }

    fn issuer(&self) -> &str {
        self.spec.issuer_url.trim_end_matches('/')
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> Error {
        Error::Unreachable {
            connector: self.id.clone(),
            address: self.issuer().to_owned(),
            reason: reason.to_string(),
        }
    }

    fn upstream(&self, message: impl Into<String>) -> Error {
        Error::Upstream {
            connector: self.id.clone(),
            message: message.into(),
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, Error> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(self.upstream(format!("GET {url} answered {}", response.status())));
        }
        response
            .json()
            .await
            .map_err(|e| self.upstream(format!("GET {url}: not JSON: {e}")))
    }

    /// Discovery (OpenID Connect Discovery 1.0 §4), once; the issuer must be the configured one.
    async fn discovered(&self) -> Result<&Discovered, Error> {
        self.discovered
            .get_or_try_init(|| async {
                let doc = self
                    .get_json(&format!(
                        "{}/.well-known/openid-configuration",
                        self.issuer()
                    ))
                    .await?;
                let field = |name: &str| {
                    doc.get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| self.upstream(format!("discovery has no {name}")))
                };
                if field("issuer")?.trim_end_matches('/') != self.issuer() {
                    return Err(self.upstream("discovery names another issuer"));
                }
                let discovered = Discovered {
                    authorization_endpoint: field("authorization_endpoint")?,
                    token_endpoint: field("token_endpoint")?,
                    jwks_uri: field("jwks_uri")?,
                };
                Ok(discovered)
            })
            .await
    }

    async fn fetch_keys(&self) -> Result<Arc<VerificationKeys>, Error> {
        let uri = &self.discovered().await?.jwks_uri;
        let doc = self.get_json(uri).await?;
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let jwks =
            Jwks::from_json(&bytes).map_err(|e| self.upstream(format!("JWKS not valid: {e}")))?;
        let keys = Arc::new(VerificationKeys::from_jwks(&jwks));
        *self.keys.write().await = Arc::clone(&keys);
        Ok(keys)
    }

    /// Verifies an upstream ID token; refetches the keys once when they do not verify it
    /// (rotation upstream).
    async fn verify(&self, id_token: &str) -> Result<Result<Value, Refusal>, Error> {
        let verifier = Verifier::new(self.issuer().to_owned(), self.spec.client_id.clone());
        let now = portcullis_jose::unix_now();
        let cached = Arc::clone(&*self.keys.read().await);
        if let Ok(v) = verifier.verify(id_token, &cached, now) {
            return Ok(Ok(v.claims));
        }
        let keys = self.fetch_keys().await?;
        Ok(match verifier.verify(id_token, &keys, now) {
            Ok(v) => Ok(v.claims),
            Err(e) => Err(Refusal(format!("the upstream ID token is not valid: {e}"))),
        })
    }

    /// Calls the token endpoint with client authentication (`client_secret_basic`, the id
    /// and secret form-urlencoded first, RFC 6749 §2.3.1) or as a public client.
    async fn token_request(
        &self,
        mut form: Vec<(&str, &str)>,
    ) -> Result<Result<Value, Refusal>, Error> {
        let endpoint = &self.discovered().await?.token_endpoint;
        let mut request = self.http.post(endpoint);
        match &self.client_secret {
            Some(secret) => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let pair: String = format!(
                    "{}:{}",
                    enc(&self.spec.client_id),
                    enc(secret.expose_secret())
                );
                request = request.header(
                    "authorization",
                    format!("Basic {}", STANDARD.encode(pair.as_bytes())),
                );
            }
            None => form.push(("client_id", &self.spec.client_id)),
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            self.upstream(format!("token endpoint answered {status}, not JSON: {e}"))
        })?;
        if status.is_success() {
            return Ok(Ok(body));
        }
        let error = body.get("error").and_then(Value::as_str).unwrap_or("");
        // RFC 6749 §5.2: the grant is refused; anything else is the upstream failing.
        if status.is_client_error() && matches!(error, "invalid_grant" | "unauthorized_client") {
            return Ok(Err(Refusal(format!(
                "the upstream refused the grant ({error})"
            ))));
        }
        Err(self.upstream(format!("token endpoint answered {status} {error}")))
    }

    /// The identity in verified upstream `claims`, or why it may not log in.
    fn identity(&self, claims: &Value) -> Result<Identity, Refusal> {
        let mapping = &self.spec.claim_mapping;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
        let user_id = text(or_default(&mapping.user_id, "sub"));
        if user_id.is_empty() {
            return Err(Refusal("the upstream token has no user id".into()));
        }
        let email = text(or_default(&mapping.email, "email")).to_owned();
        let username_claim = or_default(&mapping.username, "email");
        let username = text(username_claim).to_owned();
        if username.is_empty() || username.len() > MAX_USERNAME_LEN {
            return Err(Refusal(format!(
                "the upstream token has no usable {username_claim:?} claim"
            )));
        }
        let verified_claim = claims.get("email_verified").and_then(Value::as_bool);
        let email_verified = if self.spec.insecure_skip_email_verified {
            true
        } else {
            match verified_claim {
                Some(false) if !email.is_empty() => {
                    return Err(Refusal(
                        "the upstream has not verified the e-mail address".into(),
                    ));
                }
                None if username_claim == "email" && !self.spec.allow_missing_email_verified => {
                    return Err(Refusal(
                        "the upstream does not say whether the e-mail address is verified".into(),
                    ));
                }
                v => v.unwrap_or(false),
            }
        };
        if !self.spec.allowed_email_domains.is_empty() {
            let domain = email
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default();
            if !email_verified
                || !self
                    .spec
                    .allowed_email_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(&domain))
            {
                return Err(Refusal(
                    "the e-mail domain is not allowed to sign in here".into(),
                ));
            }
        }
        let groups_claim = or_default(&mapping.groups, "groups");
        let upstream_groups: Vec<&str> = match claims.get(groups_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(one)) => vec![one.as_str()],
            _ => Vec::new(),
        };
        let allowed = &self.spec.allowed_groups;
        let mut groups: Vec<String> = Vec::new();
        for g in upstream_groups {
            if !allowed.is_empty() && !allowed.iter().any(|a| a == g) {
                continue;
            }
            let Some(name) = self.groups.pass(g) else {
                continue;
            };
            if groups.len() < MAX_GROUPS && !groups.iter().any(|x| x == name) {
                groups.push(name.to_owned());
            }
        }
        if !allowed.is_empty() && groups.is_empty() {
            return Err(Refusal(
                "the user is in none of the groups allowed to sign in here".into(),
            ));
        }
        Ok(Identity {
            user_id: user_id.to_owned(),
            username,
            name: text("name").to_owned(),
            email,
            email_verified,
            groups,
        })
    }

    fn refresh_token_of(body: &Value) -> Option<SecretString> {
        body.get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_owned()))
    }
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
fn challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[async_trait::async_trait]
impl RedirectConnector for OidcConnector {
    fn id(&self) -> &str {
        &self.id
    }

    fn display_name(&self) -> &str {
        &self.display_name
    }

    async fn login_url(
        &self,
        callback: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, Error> {
        let endpoint = &self.discovered().await?.authorization_endpoint;
        let mut url = url::Url::parse(endpoint)
            .map_err(|_| self.upstream("the authorization endpoint is not a URL"))?;
        let mut scopes = vec!["openid".to_owned()];
        for s in &self.spec.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.spec.client_id)
            .append_pair("redirect_uri", callback)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    async fn check(&self) -> Result<(), Error> {
        self.fetch_keys().await.map(|_| ())
    }

    async fn finish(
        &self,
        callback: &str,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Result<Upstream, Refusal>, Error> {
        let body = match self
            .token_request(vec![
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", callback),
                ("code_verifier", verifier),
            ])
            .await?
        {
            Ok(body) => body,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let Some(id_token) = body.get("id_token").and_then(Value::as_str) else {
            return Err(self.upstream("the token response has no id_token"));
        };
        let claims = match self.verify(id_token).await? {
            Ok(c) => c,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Ok(Err(Refusal(
                "the upstream ID token does not carry this login's nonce".into(),
            )));
        }
        Ok(self.identity(&claims).map(|identity| Upstream {
            identity,
            refresh_token: Self::refresh_token_of(&body),
        }))
    }

    async fn refresh(
        &self,
        previous: &Identity,
        refresh_token: &SecretString,
    ) -> Result<Result<Upstream, Refusal>, Error> {
        let body = match self
            .token_request(vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
            ])
            .await?
        {
            Ok(body) => body,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let identity = match body.get("id_token").and_then(Value::as_str) {
            Some(id_token) => {
                let claims = match self.verify(id_token).await? {
                    Ok(c) => c,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                match self.identity(&claims) {
                    Ok(identity) => identity,
                    Err(refusal) => return Ok(Err(refusal)),
                }
            }
            // No new ID token: the refresh succeeding is all the upstream says.
            None => previous.clone(),
        };
        if identity.user_id != previous.user_id {
            return Ok(Err(Refusal(
                "the upstream refresh answered for another user".into(),
            )));
        }
        Ok(Ok(Upstream {
            identity,
            // Without rotation the upstream keeps the same token valid.
            refresh_token: Self::refresh_token_of(&body).or_else(|| Some(refresh_token.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_base64url_sha256_of_the_verifier() {
        // Expected value computed independently: printf VERIFIER | openssl dgst -sha256
        // -binary | base64 (url-safe, unpadded).
        assert_eq!(
            challenge("dBjftJeZ4CVP-mJ92Rlm3gXK2ckr6YhMZ-3D0yW7-lg"),
            "z4LV1-RDCeXCQMQGDPLf2LK4uWt9awIwQdLwrYHm-rY"
        );
    }
}
