//! `Client`: an OIDC client of the portcullis issuer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::kinds::spec_kind;
use crate::syntax;
use crate::validation::{DISPLAY_NAME_MAX_LEN, Errors, URL_MAX_LEN};

spec_kind!(
    /// An OIDC client (cluster-scoped); `metadata.name` is the `client_id`.
    ///
    /// A confidential client (`public: false`) authenticates with a secret of which only
    /// `secretHash` is stored. A public client (`public: true`, e.g. kubectl) has no secret
    /// and must use PKCE; it may use loopback and private-use-scheme redirect URIs
    /// (RFC 8252 §7.1, §7.3).
    Client,
    ClientSpec,
    ClientStatus
);

/// An OAuth 2.0 grant a [`Client`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum GrantType {
    /// RFC 6749 §4.1 authorization code grant.
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    /// RFC 6749 §6 refresh token grant.
    #[serde(rename = "refresh_token")]
    RefreshToken,
    /// RFC 8628 device authorization grant.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
}

impl GrantType {
    /// The wire spelling (`grant_type` parameter value).
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }
}

/// A JWS algorithm the issuer can sign ID tokens with (OpenID Connect Dynamic Client
/// Registration 1.0 §2 `id_token_signed_response_alg`; `none` and `HS*` are not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum IdTokenSigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256: the default, and what kube-apiserver accepts by default.
    RS256,
    /// ECDSA over P-256 with SHA-256.
    ES256,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl IdTokenSigningAlg {
    /// The `alg` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            IdTokenSigningAlg::RS256 => "RS256",
            IdTokenSigningAlg::ES256 => "ES256",
            IdTokenSigningAlg::EdDSA => "EdDSA",
        }
    }
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

/// Desired state of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSpec {
    /// Name shown on the login and consent pages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// True for a public client (no secret; PKCE required).
    #[serde(default)]
    pub public: bool,
    /// Allowed `redirect_uri` values, compared exactly (RFC 6749 §3.1.2; for loopback
    /// URIs of public clients the port is ignored, RFC 8252 §7.3).
    #[serde(
        rename = "redirectURIs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub redirect_uris: Vec<String>,
    /// Allowed `post_logout_redirect_uri` values (OpenID Connect RP-Initiated Logout §3),
    /// under the same rules as `redirectURIs`.
    #[serde(
        rename = "postLogoutRedirectURIs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub post_logout_redirect_uris: Vec<String>,
    /// Grants the client may use; defaults to `authorization_code` and `refresh_token`.
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantType>,
    /// Client IDs that may obtain tokens whose audience is this client (cross-client
    /// trust, e.g. a CLI obtaining a token for a cluster's proxy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_peers: Vec<String>,
    /// Hash of the client secret of a confidential client: `sha256:` and the lower-case hex
    /// SHA-256 of the secret (the secret is a high-entropy random value, so a fast hash
    /// suffices; compare in constant time). Never the secret itself; absent for public clients.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_hash: String,
    /// Algorithm of the client's ID tokens: `RS256`, `ES256` or `EdDSA`, one the issuer
    /// publishes (its `oidc.signingKey`). RS256 when absent (OpenID Connect Dynamic Client
    /// Registration 1.0 §2).
    #[serde(
        rename = "idTokenSignedResponseAlg",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub id_token_signed_response_alg: Option<IdTokenSigningAlg>,
}

impl Default for ClientSpec {
    fn default() -> Self {
        Self {
            display_name: String::new(),
            public: false,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: default_grant_types(),
            trusted_peers: Vec::new(),
            secret_hash: String::new(),
            id_token_signed_response_alg: None,
        }
    }
}

/// Observed state of a [`Client`] (none yet; kept for a uniform envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientStatus {}

// === secrets and redirect matching ===

/// The `spec.secretHash` of a client secret: `sha256:` and the lower-case hex SHA-256.
///
/// Client secrets are high-entropy random values, so a fast hash is enough (a slow password
/// hash would cap the token endpoint); never store or log the secret itself.
pub fn hash_client_secret(secret: &str) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether `url` is loopback `http` (RFC 8252 §7.3).
fn is_loopback_http(url: &url::Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
            None => false,
        }
}

/// Exact match, or for a public client's loopback URI the same URI on any port
/// (RFC 8252 §7.3: the native app picks a free port at run time).
fn uri_allowed(registered: &[String], public: bool, requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    if !public || check_redirect_uri(requested, true).is_err() {
        return false;
    }
    let Ok(req) = url::Url::parse(requested) else {
        return false;
    };
    if !is_loopback_http(&req) {
        return false;
    }
    registered
        .iter()
        .filter_map(|r| url::Url::parse(r).ok())
        .any(|r| {
            is_loopback_http(&r)
                && r.host() == req.host()
                && r.path() == req.path()
                && r.query() == req.query()
        })
}

impl ClientSpec {
    /// Whether `presented` is this client's secret, comparing SHA-256 hashes in constant
    /// time. A public client, or one without `secretHash`, never authenticates by secret.
    pub fn verify_secret(&self, presented: &str) -> bool {
        if self.public || self.secret_hash.is_empty() {
            return false;
        }
        let presented = hash_client_secret(presented);
        bool::from(presented.as_bytes().ct_eq(self.secret_hash.as_bytes()))
    }

    /// The algorithm of the client's ID tokens: the registered one, RS256 when none is
    /// (OpenID Connect Dynamic Client Registration 1.0 §2). (An issuer that does not sign RS256
    /// uses its default algorithm for a client that registered none.)
    pub fn id_token_signing_alg(&self) -> IdTokenSigningAlg {
        self.id_token_signed_response_alg
            .unwrap_or(IdTokenSigningAlg::RS256)
    }

    /// Whether the client may use this grant.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether `redirect_uri` is allowed: an exact match of `redirectURIs` (RFC 6749
    /// §3.1.2.3), or for a public client a registered loopback URI on another port.
    pub fn redirect_uri_allowed(&self, requested: &str) -> bool {
        uri_allowed(&self.redirect_uris, self.public, requested)
    }

    /// Whether `post_logout_redirect_uri` is allowed, by the same rules against
    /// `postLogoutRedirectURIs`.
    pub fn post_logout_redirect_uri_allowed(&self, requested: &str) -> bool {
        uri_allowed(&self.post_logout_redirect_uris, self.public, requested)
    }
}

// === validation ===

/// Where `redirect_uri` may point, by RFC 6749 §3.1.2 and RFC 8252 §7.
///
/// Every client: an absolute `https` URL with a host, no user info, no wildcard. A public
/// client also: loopback `http` on `127.0.0.1`, `[::1]` or `localhost` with any port
/// (RFC 8252 §7.3), or a private-use scheme in reverse-domain form such as
/// `com.example.app:/callback` (RFC 8252 §7.1). Never a fragment (RFC 6749 §3.1.2), never
/// whitespace or control characters.
pub fn check_redirect_uri(raw: &str, public: bool) -> Result<(), String> {
    let allowed = if public {
        "must be an absolute https URL, a loopback http URL (http://127.0.0.1, http://[::1] or \
         http://localhost, any port; RFC 8252 §7.3) or a private-use reverse-domain scheme such \
         as com.example.app:/callback (RFC 8252 §7.1)"
    } else {
        "must be an absolute https URL"
    };
    if raw.len() > URL_MAX_LEN {
        return Err(format!("may not be more than {URL_MAX_LEN} characters"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    if raw.contains('#') {
        return Err("must not contain a fragment (RFC 6749 §3.1.2)".to_owned());
    }
    if raw.contains('*') {
        return Err("must not contain wildcards; list every URI exactly".to_owned());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("{allowed} ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information".to_owned());
    }
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip == std::net::Ipv4Addr::LOCALHOST)
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip == std::net::Ipv6Addr::LOCALHOST);
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback && public => Ok(()),
        "http" if loopback => Err(
            "loopback http redirect URIs are only for public clients (RFC 8252 §7.3); \
             use an https URL or set spec.public"
                .to_owned(),
        ),
        // RFC 8252 §7.1: a private-use scheme is a reverse domain name, so it has a dot,
        // which no standard scheme (http, javascript, data, file, …) has.
        scheme if scheme.contains('.') && public => Ok(()),
        scheme if scheme.contains('.') => Err(
            "private-use URI schemes are only for public clients (RFC 8252 §7.1); use an \
             https URL or set spec.public"
                .to_owned(),
        ),
        _ => Err(allowed.to_owned()),
    }
}

/// `sha256:` and 64 lower-case hex digits.
fn check_secret_hash(h: &str) -> Result<(), String> {
    match h.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(
            "must be \"sha256:\" followed by the 64 lower-case hex digits of the secret's \
                  SHA-256; never the secret itself"
                .to_owned(),
        ),
    }
}

impl Client {
    pub(crate) fn validate_fields(&self, errs: &mut Errors) {
        let spec = &self.spec;
        errs.max_len("spec.displayName", &spec.display_name, DISPLAY_NAME_MAX_LEN);
        for (field, uris) in [
            ("spec.redirectURIs", &spec.redirect_uris),
            (
                "spec.postLogoutRedirectURIs",
                &spec.post_logout_redirect_uris,
            ),
        ] {
            for (i, u) in uris.iter().enumerate() {
                if u.is_empty() {
                    errs.required(format!("{field}[{i}]"), "must not be empty");
                } else {
                    errs.check(format!("{field}[{i}]"), check_redirect_uri(u, spec.public));
                }
            }
            errs.unique(field, uris);
        }
        if spec.grant_types.is_empty() {
            errs.required("spec.grantTypes", "must list at least one grant type");
        }
        errs.unique("spec.grantTypes", &spec.grant_types);
        let has = |g| spec.grant_types.contains(&g);
        if has(GrantType::AuthorizationCode) && spec.redirect_uris.is_empty() {
            errs.required(
                "spec.redirectURIs",
                "the authorization_code grant needs at least one redirect URI",
            );
        }
        if has(GrantType::RefreshToken)
            && !has(GrantType::AuthorizationCode)
            && !has(GrantType::DeviceCode)
        {
            errs.invalid(
                "spec.grantTypes",
                "refresh_token needs authorization_code or the device_code grant to obtain \
                 a first refresh token",
            );
        }
        for (i, p) in spec.trusted_peers.iter().enumerate() {
            errs.required_with(
                format!("spec.trustedPeers[{i}]"),
                p,
                syntax::dns1123_subdomain,
            );
        }
        errs.unique("spec.trustedPeers", &spec.trusted_peers);
        match (spec.public, spec.secret_hash.is_empty()) {
            (true, false) => errs.forbidden(
                "spec.secretHash",
                "a public client has no secret; remove secretHash or set public: false",
            ),
            (false, true) => errs.required(
                "spec.secretHash",
                "a confidential client needs the hash of its secret (or set public: true)",
            ),
            (false, false) => errs.check("spec.secretHash", check_secret_hash(&spec.secret_hash)),
            (true, true) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(public: bool, uris: &[&str]) -> ClientSpec {
        ClientSpec {
            public,
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn secret_hash_and_verification() {
        // SHA-256("test"), a published test vector.
        assert_eq!(
            hash_client_secret("test"),
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert!(check_secret_hash(&hash_client_secret("x")).is_ok());
        let mut c = spec(false, &[]);
        c.secret_hash = hash_client_secret("s3cret");
        assert!(c.verify_secret("s3cret"));
        assert!(!c.verify_secret("s3cret "));
        c.public = true;
        assert!(!c.verify_secret("s3cret"));
        assert!(!spec(false, &[]).verify_secret(""));
    }

    #[test]
    fn redirect_matching() {
        let c = spec(
            true,
            &[
                "http://127.0.0.1/cb",
                "https://a.example/cb",
                "http://[::1]",
            ],
        );
        assert!(c.redirect_uri_allowed("https://a.example/cb"));
        assert!(c.redirect_uri_allowed("http://127.0.0.1:49152/cb"));
        assert!(c.redirect_uri_allowed("http://[::1]:8000/"));
        assert!(!c.redirect_uri_allowed("https://a.example/cb/"));
        assert!(!c.redirect_uri_allowed("https://a.example:444/cb"));
        assert!(!c.redirect_uri_allowed("http://127.0.0.1:49152/other"));
        assert!(!c.redirect_uri_allowed("http://localhost:49152/cb"));
        assert!(!c.redirect_uri_allowed("http://127.0.0.1:1/cb#x"));
        assert!(!c.redirect_uri_allowed("http://evil@127.0.0.1:1/cb"));
        assert!(!c.redirect_uri_allowed("http://127.0.0.1:1/cb\t"));
        // Confidential clients match exactly only.
        let c = spec(false, &["http://127.0.0.1/cb"]);
        assert!(!c.redirect_uri_allowed("http://127.0.0.1:8000/cb"));
    }
}
