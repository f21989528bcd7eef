//! `Client`: an OIDC client of the portcullis issuer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::spec_kind;

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
        }
    }
}

/// Observed state of a [`Client`] (none yet; kept for a uniform envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientStatus {}
