//! Bearer-token authentication with this issuer's ID tokens, as kube-apiserver's OIDC
//! authenticator maps them: user name from a configurable claim, groups from the `groups`
//! claim with a prefix (`oidc:` by default), every check done locally against the issuer's
//! keys (no call to the issuer per request).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::request::Parts;
use portcullis_jose::{VerificationKeys, VerifiedToken, Verifier};
use serde_json::Value;

use super::{Authenticator, Authn, SYSTEM_AUTHENTICATED, UserInfo};

/// Where the verification keys come from (the in-process issuer, or a JWKS cache).
pub trait KeySource: Send + Sync {
    /// The keys to verify with now.
    fn keys(&self) -> Arc<VerificationKeys>;
}

/// How claims become a Kubernetes user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Claim holding the user name (`email`, `sub`, `preferred_username`, …).
    pub username_claim: String,
    /// Prefix added to the user name (empty by default).
    pub username_prefix: String,
    /// Claim holding the groups.
    pub groups_claim: String,
    /// Prefix added to every group, so IdP groups cannot pose as `system:` groups.
    pub groups_prefix: String,
    /// With `username_claim: email`, accept a token without `email_verified` (an explicit
    /// `false` is always refused).
    pub allow_missing_email_verified: bool,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            username_claim: "email".into(),
            username_prefix: String::new(),
            groups_claim: "groups".into(),
            groups_prefix: "oidc:".into(),
            allow_missing_email_verified: false,
        }
    }
}

/// The authenticator.
pub struct BearerToken {
    verifier: Verifier,
    keys: Arc<dyn KeySource>,
    mapping: ClaimMapping,
}

impl BearerToken {
    /// Tokens of `verifier`'s issuer and audience, verified with `keys`.
    pub fn new(verifier: Verifier, keys: Arc<dyn KeySource>, mapping: ClaimMapping) -> BearerToken {
        BearerToken {
            verifier,
            keys,
            mapping,
        }
    }

    /// Maps verified claims to a user, or says why not.
    pub fn user(&self, token: &VerifiedToken) -> Result<UserInfo, String> {
        let m = &self.mapping;
        let name = token
            .claim_str(&m.username_claim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("token has no {:?} claim", m.username_claim))?;
        if m.username_claim == "email" {
            // As kube-apiserver: an unverified address is not an identity.
            match token.claims.get("email_verified") {
                Some(Value::Bool(true)) => {}
                Some(Value::Bool(false)) => return Err("email_verified is false".into()),
                None if m.allow_missing_email_verified => {}
                None => return Err("token has no email_verified claim".into()),
                Some(_) => return Err("email_verified is not a boolean".into()),
            }
        }
        let mut groups: Vec<String> = match token.claims.get(&m.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(g)) => vec![format!("{}{g}", m.groups_prefix)],
            Some(Value::Array(list)) => list
                .iter()
                .map(|g| {
                    g.as_str()
                        .map(|g| format!("{}{g}", m.groups_prefix))
                        .ok_or_else(|| format!("{} holds a non-string", m.groups_claim))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format!("{} is neither a string nor a list", m.groups_claim));
            }
        };
        groups.push(SYSTEM_AUTHENTICATED.to_owned());
        let mut extra = BTreeMap::new();
        if let Some(jti) = token.claim_str("jti") {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_owned(),
                vec![format!("JTI={jti}")],
            );
        }
        Ok(UserInfo {
            name: format!("{}{name}", m.username_prefix),
            uid: token.subject.clone().unwrap_or_default(),
            groups,
            extra,
        })
    }
}

impl Authenticator for BearerToken {
    fn authenticate(&self, request: &Parts) -> Authn {
        let Some(value) = request.headers.get(http::header::AUTHORIZATION) else {
            return Authn::NotApplicable;
        };
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
        else {
            return Authn::NotApplicable;
        };
        let keys = self.keys.keys();
        let verified = match self
            .verifier
            .verify(token, &keys, portcullis_jose::unix_now())
        {
            Ok(v) => v,
            // The reason is for the log only; the token itself is never logged.
            Err(e) => return Authn::Rejected(format!("bearer token: {e}")),
        };
        match self.user(&verified) {
            Ok(user) => Authn::Authenticated(user),
            Err(e) => Authn::Rejected(format!("bearer token: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use portcullis_jose::{KeySet, RotationPolicy};
    use serde_json::json;

    use super::*;

    struct Fixed(Arc<VerificationKeys>);

    impl KeySource for Fixed {
        fn keys(&self) -> Arc<VerificationKeys> {
            self.0.clone()
        }
    }

    const ISSUER: &str = "https://127.0.0.1:8443";

    fn setup() -> (KeySet, BearerToken) {
        let now = portcullis_jose::unix_now();
        let keys = KeySet::generate(RotationPolicy::default(), now).unwrap();
        let authn = BearerToken::new(
            Verifier::new(ISSUER, "portcullis"),
            Arc::new(Fixed(Arc::new(keys.verification_keys()))),
            ClaimMapping::default(),
        );
        (keys, authn)
    }

    fn request(token: &str) -> Parts {
        http::Request::builder()
            .header("Authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn claims(extra: Value) -> Value {
        let now = portcullis_jose::unix_now();
        let mut c = json!({
            "iss": ISSUER, "aud": "portcullis", "sub": "u-1", "iat": now, "exp": now + 600,
            "email": "jane@example.com", "email_verified": true, "groups": ["devs", "ops"],
        });
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    #[test]
    fn a_valid_token_becomes_a_user_with_prefixed_groups() {
        let (keys, authn) = setup();
        let token = keys.sign(&claims(json!({}))).unwrap();
        let Authn::Authenticated(user) = authn.authenticate(&request(&token)) else {
            panic!("not authenticated")
        };
        assert_eq!(user.name, "jane@example.com");
        assert_eq!(
            user.groups,
            ["oidc:devs", "oidc:ops", "system:authenticated"]
        );
        assert_eq!(user.uid, "u-1");
    }

    #[test]
    fn email_verified_false_is_refused_and_absent_is_refused_by_default() {
        let (keys, authn) = setup();
        let token = keys
            .sign(&claims(json!({ "email_verified": false })))
            .unwrap();
        assert!(matches!(
            authn.authenticate(&request(&token)),
            Authn::Rejected(_)
        ));
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("email_verified");
        let token = keys.sign(&c).unwrap();
        assert!(matches!(
            authn.authenticate(&request(&token)),
            Authn::Rejected(_)
        ));
    }

    #[test]
    fn tokens_of_another_audience_or_issuer_or_key_are_refused() {
        let (keys, authn) = setup();
        for bad in [
            json!({ "aud": "other" }),
            json!({ "iss": "https://evil.example" }),
        ] {
            let token = keys.sign(&claims(bad)).unwrap();
            assert!(matches!(
                authn.authenticate(&request(&token)),
                Authn::Rejected(_)
            ));
        }
        let (other_keys, _) = setup();
        let token = other_keys.sign(&claims(json!({}))).unwrap();
        assert!(matches!(
            authn.authenticate(&request(&token)),
            Authn::Rejected(_)
        ));
    }

    #[test]
    fn no_bearer_header_is_not_applicable() {
        let (_, authn) = setup();
        let parts = http::Request::builder().body(()).unwrap().into_parts().0;
        assert!(matches!(authn.authenticate(&parts), Authn::NotApplicable));
    }
}
