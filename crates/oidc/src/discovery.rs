//! OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 metadata, every URL derived from the issuer.

use serde_json::{Value, json};

use crate::Error;

/// The provider's URLs.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) issuer: String,
    /// Path of the issuer without trailing slash (`""` or `/dex`).
    pub(crate) issuer_path: String,
    /// Issuer without trailing slash; endpoint paths are appended to it.
    base: String,
}

impl Endpoints {
    /// Checks the issuer (OpenID Connect Discovery 1.0 §3: `https`, no query, no fragment)
    /// and derives the endpoint URLs.
    pub(crate) fn for_issuer(issuer: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("issuer {issuer:?} {why}"));
        let url = url::Url::parse(issuer).map_err(|e| bad(&format!("is not a URL ({e})")))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" if url.host().is_some() => {}
            "http" if loopback => {}
            _ => return Err(bad("must be an https URL (http only on a loopback host)")),
        }
        if url.query().is_some() || url.fragment().is_some() || issuer.contains(['?', '#']) {
            return Err(bad("must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not have user information"));
        }
        let base = issuer.trim_end_matches('/').to_owned();
        let issuer_path = url.path().trim_end_matches('/').to_owned();
        Ok(Endpoints {
            issuer: issuer.to_owned(),
            issuer_path,
            base,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The discovery document: only what is implemented is advertised, plus the members the
/// specification requires.
pub(crate) fn document(endpoints: &Endpoints, signing_algs: &[&str]) -> Value {
    let client_auth = ["client_secret_basic", "client_secret_post", "none"];
    json!({
        "issuer": endpoints.issuer,
        "authorization_endpoint": endpoints.url("/auth"),
        "token_endpoint": endpoints.url("/token"),
        "userinfo_endpoint": endpoints.url("/userinfo"),
        "jwks_uri": endpoints.url("/keys"),
        "revocation_endpoint": endpoints.url("/token/revoke"),
        "introspection_endpoint": endpoints.url("/token/introspect"),
        "device_authorization_endpoint": endpoints.url("/device/code"),
        "end_session_endpoint": endpoints.url("/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": signing_algs,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": client_auth,
        "revocation_endpoint_auth_methods_supported": client_auth,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": crate::authorize::SCOPES,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": [
            "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "amr",
            "sid", "email", "email_verified", "name", "preferred_username", "groups",
        ],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        // RFC 9207: the authorization response carries iss.
        "authorization_response_iss_parameter_supported": true,
    })
}
