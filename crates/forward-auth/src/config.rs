//! The configuration of a forward-auth endpoint, as it appears in the server's and the agent's
//! configuration files (`forwardAuth:`).

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// How one forward-auth endpoint is set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The management issuer's URL (`https://mgmt.example.com`); users log in there. Empty
    /// in the management plane's own configuration: its own issuer.
    #[serde(default)]
    pub issuer: String,
    /// PEM CA bundle the issuer's TLS certificate is verified with (the system roots when
    /// absent).
    #[serde(rename = "issuerCA", default)]
    pub issuer_ca: Option<String>,
    /// The OIDC client this endpoint logs users in as (registered at the issuer with the
    /// `/_oauth` callback of each protected host, or of `authHost`). Also the audience ID tokens
    /// must carry.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// A file holding the client's secret, for a confidential client (the secret itself is
    /// never in the configuration); public clients use PKCE alone (PKCE is used either way,
    /// RFC 9700 §2.1.1).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for; `openid` and `offline_access` (for silent renewal) are always added.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// One central host for the callback (`auth.example.com`): every protected host sends its
    /// users there, and the session cookie is set for `cookieDomain`. Absent: the callback is
    /// `/_oauth` on each protected host and the cookie is that host's.
    #[serde(default)]
    pub auth_host: Option<String>,
    /// The `Domain` of the session cookie (`example.com`), shared by the hosts under it. Needed
    /// with `authHost`.
    #[serde(default)]
    pub cookie_domain: Option<String>,
    /// Name of the session cookie; the login-state cookie is this name with `_login` appended.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// Where the browser may be sent after login and logout, besides the protected hosts:
    /// `example.com` (that host only), `.example.com` (any host under it, not itself), with an
    /// optional `:port` that must then match.
    #[serde(default)]
    pub allowed_redirect_domains: Vec<String>,
    /// Addresses (CIDRs) of the proxies whose `X-Forwarded-*` / `X-Original-*` headers are
    /// believed. Default: none; a request from elsewhere is judged on its own connection.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Per-host rules: the host's requests are decided as paths under `pathPrefix`, so one
    /// deployment guards several applications. With rules, a host without one is refused.
    #[serde(default)]
    pub hosts: Vec<HostRule>,
    /// How ID token claims become the user and groups RBAC sees.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Send `Authorization: Bearer <ID token>` upstream, for applications that verify it.
    #[serde(rename = "passIDToken", default)]
    pub pass_id_token: bool,
    /// Header carrying the original URI in nginx `auth_request` subrequests.
    #[serde(rename = "originalURIHeader", default = "default_original_uri_header")]
    pub original_uri_header: String,
    /// Header carrying the original method in nginx `auth_request` subrequests.
    #[serde(default = "default_original_method_header")]
    pub original_method_header: String,
    /// Sent to the issuer's end-session endpoint as `post_logout_redirect_uri` (it must be
    /// registered for the client).
    #[serde(rename = "postLogoutRedirectURI", default)]
    pub post_logout_redirect_uri: Option<String>,
    /// How often a session is checked against the store (a logout elsewhere is seen within
    /// this many seconds).
    #[serde(default = "default_session_check_seconds")]
    pub session_check_seconds: u64,
    /// How long a login may take, from the redirect to the callback.
    #[serde(default = "default_login_seconds")]
    pub login_seconds: u64,
    /// How long after its ID token expired a session may still be renewed silently with the
    /// refresh token kept in the store.
    #[serde(default = "default_renew_seconds")]
    pub renew_seconds: u64,
    /// How often the cookie key rotates.
    #[serde(default = "default_key_rotation_seconds")]
    pub key_rotation_seconds: u64,
}

/// One protected host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostRule {
    /// The host name (no port), compared case-insensitively and without a trailing dot.
    pub host: String,
    /// The prefix its paths are authorized under (`/grafana`); `""` for none.
    #[serde(default)]
    pub path_prefix: String,
}

/// Claim mapping, as kube-apiserver's `--oidc-*` flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMapping {
    /// The claim that names the user (`email`).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Prefix of user names (`-` for none, as `--oidc-username-prefix`).
    #[serde(default)]
    pub username_prefix: Option<String>,
    /// The claim with the groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Prefix of groups in RBAC subjects (`oidc:`).
    #[serde(default = "default_groups_prefix")]
    pub groups_prefix: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            username_claim: default_username_claim(),
            username_prefix: None,
            groups_claim: default_groups_claim(),
            groups_prefix: default_groups_prefix(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_cookie_name() -> String {
    "_portcullis_auth".into()
}
fn default_original_uri_header() -> String {
    "X-Original-URI".into()
}
fn default_original_method_header() -> String {
    "X-Original-Method".into()
}
fn default_session_check_seconds() -> u64 {
    5
}
fn default_login_seconds() -> u64 {
    600
}
fn default_renew_seconds() -> u64 {
    7 * 24 * 3600
}
fn default_key_rotation_seconds() -> u64 {
    24 * 3600
}
fn default_username_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_groups_prefix() -> String {
    "oidc:".into()
}

impl Config {
    /// A configuration with the defaults for `issuer` and `client_id`.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Config {
        Config {
            issuer: issuer.into(),
            issuer_ca: None,
            client_id: client_id.into(),
            client_secret_file: None,
            scopes: default_scopes(),
            auth_host: None,
            cookie_domain: None,
            cookie_name: default_cookie_name(),
            allowed_redirect_domains: Vec::new(),
            trusted_proxies: Vec::new(),
            hosts: Vec::new(),
            claims: ClaimMapping::default(),
            pass_id_token: false,
            original_uri_header: default_original_uri_header(),
            original_method_header: default_original_method_header(),
            post_logout_redirect_uri: None,
            session_check_seconds: default_session_check_seconds(),
            login_seconds: default_login_seconds(),
            renew_seconds: default_renew_seconds(),
            key_rotation_seconds: default_key_rotation_seconds(),
        }
    }

    /// Checks what serde cannot: names, lifetimes and domains.
    pub fn validate(&self) -> Result<(), String> {
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token(&self.cookie_name) {
            return Err(format!(
                "cookieName {:?}: use 1 to 64 letters, digits, `_` or `-`",
                self.cookie_name
            ));
        }
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(format!(
                "issuer {:?}: give the management issuer's URL (https://…)",
                self.issuer
            ));
        }
        if self.client_id.is_empty() {
            return Err("clientID: name the OIDC client registered for forward auth".into());
        }
        for (field, v) in [
            ("sessionCheckSeconds", self.session_check_seconds),
            ("loginSeconds", self.login_seconds),
            ("renewSeconds", self.renew_seconds),
            ("keyRotationSeconds", self.key_rotation_seconds),
        ] {
            if v == 0 || v > 365 * 24 * 3600 {
                return Err(format!("{field}: must be between 1 second and a year"));
            }
        }
        if self.auth_host.is_some() && self.cookie_domain.is_none() {
            return Err(
                "authHost needs cookieDomain: the cookie set on the auth host must reach the protected hosts".into(),
            );
        }
        for name in [&self.original_uri_header, &self.original_method_header] {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("{name:?} is not a valid header name"));
            }
        }
        for rule in &self.hosts {
            if !rule.path_prefix.is_empty()
                && (!rule.path_prefix.starts_with('/') || rule.path_prefix.ends_with('/'))
            {
                return Err(format!(
                    "hosts[{}].pathPrefix {:?}: start with `/` and end without one (`/grafana`)",
                    rule.host, rule.path_prefix
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        let ok = Config::new("https://mgmt.example.com", "dashboards");
        assert_eq!(ok.validate(), Ok(()));
        assert!(ok.trusted_proxies.is_empty(), "the default trusts no proxy");
        let bad = |edit: fn(&mut Config), field: &str| {
            let mut c = ok.clone();
            edit(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.contains(field), "{err}");
        };
        bad(|c| c.cookie_name = "a b".into(), "cookieName");
        bad(|c| c.issuer = "mgmt.example.com".into(), "issuer");
        bad(|c| c.client_id.clear(), "clientID");
        bad(|c| c.renew_seconds = 0, "renewSeconds");
        bad(
            |c| c.auth_host = Some("auth.example.com".into()),
            "cookieDomain",
        );
        bad(
            |c| c.original_uri_header = "bad header".into(),
            "not a valid header",
        );
        bad(
            |c| {
                c.hosts = vec![HostRule {
                    host: "a".into(),
                    path_prefix: "grafana/".into(),
                }]
            },
            "pathPrefix",
        );
    }
}
