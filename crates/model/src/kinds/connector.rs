//! `Connector`: an upstream identity source (LDAP/AD or OIDC).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeySelector};
use crate::kinds::spec_kind;
use crate::syntax;
use crate::validation::{
    DISPLAY_NAME_MAX_LEN, Errors, ca_bundle, conditions, https_url, secret_key_ref,
};

spec_kind!(
    /// An upstream identity source (cluster-scoped); `metadata.name` is the connector id
    /// shown on the login page. Exactly the section that `spec.type` names is set. Secrets
    /// (bind password, client secret) are given only by reference.
    Connector,
    ConnectorSpec,
    ConnectorStatus
);

/// Type of a [`Connector`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorType {
    /// LDAP or Active Directory.
    #[default]
    Ldap,
    /// An upstream OpenID Connect provider.
    Oidc,
}

/// Desired state of a [`Connector`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectorSpec {
    /// `ldap` or `oidc`.
    #[serde(rename = "type")]
    pub type_: ConnectorType,
    /// Name shown on the login page.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Settings of an `ldap` connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<LdapConnector>,
    /// Settings of an `oidc` connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConnector>,
    /// Rewrites of upstream group names, applied before groups reach tokens and RBAC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_mappings: Vec<GroupMapping>,
    /// Only upstream groups whose whole name matches this regular expression pass through
    /// (before `groupMappings`); all of them when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_filter: String,
}

impl ConnectorSpec {
    /// [`ConnectorSpec::group_filter`] compiled, `None` when empty.
    ///
    /// # Errors
    ///
    /// The expression does not compile (validation refuses such an object).
    pub fn compiled_group_filter(&self) -> Result<Option<regex::Regex>, String> {
        if self.group_filter.is_empty() {
            return Ok(None);
        }
        crate::kinds::group::full_match(&self.group_filter).map(Some)
    }
}

/// Renames one upstream group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupMapping {
    /// Upstream group name.
    pub from: String,
    /// Group name portcullis uses instead.
    pub to: String,
}

/// How an LDAP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum LdapSecurity {
    /// TLS from the first byte (`ldaps://`, usually port 636).
    #[default]
    #[serde(rename = "LDAPS")]
    Ldaps,
    /// Plain connection upgraded with StartTLS (RFC 4511 §4.14), usually port 389.
    StartTLS,
    /// No TLS at all: passwords cross the network in clear. For tests only.
    InsecureNone,
}

/// LDAP search scope (RFC 4511 §4.5.1.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LdapScope {
    /// The whole subtree under the base DN.
    #[default]
    Sub,
    /// Only the immediate children of the base DN.
    One,
}

/// Settings of an LDAP/AD [`Connector`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapConnector {
    /// `host:port` of the directory server.
    #[serde(default)]
    pub host: String,
    /// Transport security; `LDAPS` by default.
    #[serde(default)]
    pub security: LdapSecurity,
    /// PEM bundle of CAs for the server certificate; empty means the system roots.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_bundle: String,
    /// DN to bind as for searches; empty means an anonymous bind.
    #[serde(rename = "bindDN", default, skip_serializing_if = "String::is_empty")]
    pub bind_dn: String,
    /// Secret key holding the bind password; required with `bindDN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password_ref: Option<SecretKeySelector>,
    /// Prompt shown for the user name on the login page (e.g. `Email` or `sAMAccountName`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username_prompt: String,
    /// How users are found.
    #[serde(default)]
    pub user_search: LdapUserSearch,
    /// How a user's groups are found; absent means no groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_search: Option<LdapGroupSearch>,
}

/// How an LDAP connector finds a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapUserSearch {
    /// Base DN of the search (e.g. `ou=people,dc=example,dc=org`).
    #[serde(rename = "baseDN", default)]
    pub base_dn: String,
    /// Extra RFC 4515 filter ANDed to the search (e.g. `(objectClass=person)`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Search scope.
    #[serde(default)]
    pub scope: LdapScope,
    /// Attribute compared with the entered user name (e.g. `uid`, `mail`).
    #[serde(default)]
    pub username_attr: String,
    /// Attribute used as the stable user id; `DN` for the entry's DN.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_attr: String,
    /// Attribute holding the e-mail address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email_attr: String,
    /// Attribute holding the display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_attr: String,
    /// Attribute holding the preferred user name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub preferred_username_attr: String,
    /// RFC 4515 filter that a disabled account matches (e.g. `(nsAccountLock=TRUE)`);
    /// such a user cannot log in and loses their sessions at the next refresh. Active
    /// Directory's `userAccountControl` ACCOUNTDISABLE bit is always honoured.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub disabled_filter: String,
}

/// How an LDAP connector finds a user's groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapGroupSearch {
    /// Base DN of the search (e.g. `ou=groups,dc=example,dc=org`).
    #[serde(rename = "baseDN", default)]
    pub base_dn: String,
    /// Extra RFC 4515 filter ANDed to the search (e.g. `(objectClass=groupOfNames)`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Search scope.
    #[serde(default)]
    pub scope: LdapScope,
    /// Pairs that tie a user to a group: the group's `groupAttr` equals the user's `userAttr`.
    #[serde(default)]
    pub user_matchers: Vec<LdapUserMatcher>,
    /// Attribute holding the group's name (e.g. `cn`).
    #[serde(default)]
    pub name_attr: String,
    /// Active Directory: match groups the user belongs to through nested groups too, with
    /// the `LDAP_MATCHING_RULE_IN_CHAIN` rule (1.2.840.113556.1.4.1941) on `DN` matchers.
    #[serde(default)]
    pub nested_groups: bool,
}

/// One user-to-group match of an [`LdapGroupSearch`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LdapUserMatcher {
    /// Attribute of the user entry (e.g. `DN`, `uid`).
    pub user_attr: String,
    /// Attribute of the group entry (e.g. `member`, `memberUid`).
    pub group_attr: String,
}

/// Settings of an upstream OIDC [`Connector`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConnector {
    /// Upstream issuer, an absolute `https` URL (discovery at
    /// `<issuer>/.well-known/openid-configuration`).
    #[serde(rename = "issuerURL", default)]
    pub issuer_url: String,
    /// PEM bundle of CAs for the issuer; empty means the system roots.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_bundle: String,
    /// Client ID registered at the upstream provider.
    #[serde(rename = "clientID", default)]
    pub client_id: String,
    /// Secret key holding the client secret; absent for a public upstream client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeySelector>,
    /// Scopes to request besides `openid` (e.g. `email`, `groups`, `offline_access`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Whether to call the userinfo endpoint for claims missing from the ID token (refused for
    /// now: claims come from the ID token).
    #[serde(default)]
    pub get_user_info: bool,
    /// Which upstream claims become user name, e-mail and groups.
    #[serde(default)]
    pub claim_mapping: OidcClaimMapping,
    /// Accept users whose `email_verified` claim is absent (an explicit `false` is always
    /// refused when the user name comes from `email`).
    #[serde(default)]
    pub allow_missing_email_verified: bool,
    /// Trust every e-mail address of this upstream: its users' tokens say
    /// `email_verified: true` whatever the upstream claims (for providers that never send the
    /// claim).
    #[serde(default)]
    pub insecure_skip_email_verified: bool,
    /// Only members of one of these upstream groups may log in, and only these groups pass
    /// through; empty means everyone and every group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
    /// Only users whose e-mail address is in one of these domains may log in; empty means
    /// every domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_email_domains: Vec<String>,
}

/// Claim names of an upstream OIDC provider. Empty fields take the default in their docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcClaimMapping {
    /// Claim used as the stable user id; default `sub`.
    #[serde(rename = "userID", default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// Claim used as the user name; default `email`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Claim holding the e-mail address; default `email`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// Claim holding the preferred user name; default `preferred_username`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub preferred_username: String,
    /// Claim holding the group list; default `groups`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub groups: String,
}

/// Observed state of a [`Connector`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectorStatus {
    /// Current conditions (e.g. `Ready` after a successful discovery or bind).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// === validation ===

/// `host:port`, the host a DNS name or an IP address (IPv6 in brackets), the port 1–65535.
fn check_host_port(s: &str) -> Result<(), String> {
    let bad = || "must be host:port, e.g. ldap.example.com:636".to_owned();
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if !port.parse::<u16>().is_ok_and(|p| p > 0) {
        return Err(bad());
    }
    let ip6 = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    let ip4 = host.parse::<std::net::Ipv4Addr>().is_ok();
    if ip4 || ip6 || syntax::dns1123_subdomain(&host.to_ascii_lowercase()).is_ok() {
        Ok(())
    } else {
        Err(bad())
    }
}

/// An RFC 4515 filter, checked only for its outer parentheses and their balance (the
/// directory server parses the rest).
fn check_ldap_filter(f: &str) -> Result<(), String> {
    let mut depth = 0i32;
    for c in f.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    if f.starts_with('(') && f.ends_with(')') && depth == 0 {
        Ok(())
    } else {
        Err("must be an LDAP filter in balanced parentheses, e.g. (objectClass=person)".to_owned())
    }
}

impl LdapConnector {
    fn validate(&self, errs: &mut Errors) {
        let f = "spec.ldap";
        errs.required_with(format!("{f}.host"), &self.host, check_host_port);
        ca_bundle(errs, &format!("{f}.caBundle"), &self.ca_bundle);
        match (self.bind_dn.is_empty(), &self.bind_password_ref) {
            (false, None) => errs.required(
                format!("{f}.bindPasswordRef"),
                "bindDN needs a bindPasswordRef (a reference to the password, never the password)",
            ),
            (true, Some(_)) => {
                errs.required(format!("{f}.bindDN"), "bindPasswordRef needs a bindDN")
            }
            (false, Some(r)) => secret_key_ref(errs, &format!("{f}.bindPasswordRef"), r),
            (true, None) => {}
        }
        let us = &self.user_search;
        if us.base_dn.is_empty() {
            errs.required(format!("{f}.userSearch.baseDN"), "must not be empty");
        }
        if us.username_attr.is_empty() {
            errs.required(format!("{f}.userSearch.usernameAttr"), "must not be empty");
        }
        if !us.filter.is_empty() {
            errs.check(
                format!("{f}.userSearch.filter"),
                check_ldap_filter(&us.filter),
            );
        }
        if !us.disabled_filter.is_empty() {
            errs.check(
                format!("{f}.userSearch.disabledFilter"),
                check_ldap_filter(&us.disabled_filter),
            );
        }
        if let Some(gs) = &self.group_search {
            let g = format!("{f}.groupSearch");
            if gs.base_dn.is_empty() {
                errs.required(format!("{g}.baseDN"), "must not be empty");
            }
            if gs.name_attr.is_empty() {
                errs.required(format!("{g}.nameAttr"), "must not be empty");
            }
            if !gs.filter.is_empty() {
                errs.check(format!("{g}.filter"), check_ldap_filter(&gs.filter));
            }
            if gs.user_matchers.is_empty() {
                errs.required(
                    format!("{g}.userMatchers"),
                    "must list at least one matcher",
                );
            }
            for (i, m) in gs.user_matchers.iter().enumerate() {
                if m.user_attr.is_empty() {
                    errs.required(
                        format!("{g}.userMatchers[{i}].userAttr"),
                        "must not be empty",
                    );
                }
                if m.group_attr.is_empty() {
                    errs.required(
                        format!("{g}.userMatchers[{i}].groupAttr"),
                        "must not be empty",
                    );
                }
            }
        }
    }
}

impl OidcConnector {
    fn validate(&self, errs: &mut Errors) {
        let f = "spec.oidc";
        https_url(errs, &format!("{f}.issuerURL"), &self.issuer_url);
        ca_bundle(errs, &format!("{f}.caBundle"), &self.ca_bundle);
        if self.client_id.is_empty() {
            errs.required(format!("{f}.clientID"), "must not be empty");
        }
        if self.get_user_info {
            errs.not_supported(
                format!("{f}.getUserInfo"),
                "the userinfo endpoint is not read yet: claims come from the upstream ID token; ask the upstream to put them there (scopes) and remove getUserInfo",
            );
        }
        if let Some(r) = &self.client_secret_ref {
            secret_key_ref(errs, &format!("{f}.clientSecretRef"), r);
        }
        for (i, s) in self.scopes.iter().enumerate() {
            // RFC 6749 §3.3: scope tokens are printable ASCII without space, '"' or '\'.
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
            {
                errs.invalid(
                    format!("{f}.scopes[{i}]"),
                    "must be one scope token (RFC 6749 §3.3)",
                );
            }
        }
        errs.unique(&format!("{f}.scopes"), &self.scopes);
        for (i, d) in self.allowed_email_domains.iter().enumerate() {
            if syntax::dns1123_subdomain(&d.to_ascii_lowercase()).is_err() {
                errs.invalid(
                    format!("{f}.allowedEmailDomains[{i}]"),
                    "must be a DNS domain, e.g. example.org",
                );
            }
        }
        errs.unique(
            &format!("{f}.allowedEmailDomains"),
            &self.allowed_email_domains,
        );
        for (i, g) in self.allowed_groups.iter().enumerate() {
            if g.is_empty() {
                errs.required(format!("{f}.allowedGroups[{i}]"), "must not be empty");
            }
        }
        errs.unique(&format!("{f}.allowedGroups"), &self.allowed_groups);
    }
}

impl Connector {
    pub(crate) fn validate_fields(&self, errs: &mut Errors) {
        let spec = &self.spec;
        errs.max_len("spec.displayName", &spec.display_name, DISPLAY_NAME_MAX_LEN);
        match spec.type_ {
            ConnectorType::Ldap => {
                match &spec.ldap {
                    Some(l) => l.validate(errs),
                    None => errs.required("spec.ldap", "type ldap needs the ldap section"),
                }
                if spec.oidc.is_some() {
                    errs.forbidden(
                        "spec.oidc",
                        "only the section named by spec.type (ldap) may be set",
                    );
                }
            }
            ConnectorType::Oidc => {
                match &spec.oidc {
                    Some(o) => o.validate(errs),
                    None => errs.required("spec.oidc", "type oidc needs the oidc section"),
                }
                if spec.ldap.is_some() {
                    errs.forbidden(
                        "spec.ldap",
                        "only the section named by spec.type (oidc) may be set",
                    );
                }
            }
        }
        if !spec.group_filter.is_empty() {
            errs.check("spec.groupFilter", spec.compiled_group_filter().map(|_| ()));
        }
        for (i, m) in spec.group_mappings.iter().enumerate() {
            if m.from.is_empty() {
                errs.required(format!("spec.groupMappings[{i}].from"), "must not be empty");
            }
            if m.to.is_empty() {
                errs.required(format!("spec.groupMappings[{i}].to"), "must not be empty");
            }
        }
        let froms: Vec<&str> = spec
            .group_mappings
            .iter()
            .map(|m| m.from.as_str())
            .collect();
        errs.unique("spec.groupMappings", &froms);
        if let Some(status) = &self.status {
            conditions(errs, "status.conditions", &status.conditions);
        }
    }
}
