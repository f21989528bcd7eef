//! `Group`: maps identity-provider claims to a portcullis group.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::spec_kind;
use crate::syntax;
use crate::validation::{DISPLAY_NAME_MAX_LEN, Errors};

spec_kind!(
    /// A portcullis group (cluster-scoped), named by `metadata.name`.
    ///
    /// A user is a member when any rule matches: their user name is in `users`, one of
    /// their identity-provider groups is in `groups`, or their e-mail address is verified
    /// and its domain is in `emailDomains`. Bindings name the group with a `Group` subject
    /// whose `apiGroup` is `portcullis.dev`.
    Group,
    GroupSpec,
    GroupStatus
);

/// Desired state of a [`Group`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSpec {
    /// Human-readable name shown in the dashboard.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// User names (as the identity provider reports them) that are members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Identity-provider group names whose members are members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// E-mail domains (e.g. `example.com`) whose users, with a verified address, are members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
}

/// Observed state of a [`Group`] (none yet; kept for a uniform envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupStatus {}

impl GroupSpec {
    /// Whether a user with this name, these identity-provider groups and this e-mail
    /// address is a member. E-mail domains count only for a verified address; domains
    /// compare case-insensitively (RFC 5321 §2.4: domain names are case-insensitive).
    pub fn includes(
        &self,
        username: &str,
        idp_groups: &[String],
        email: Option<&str>,
        email_verified: bool,
    ) -> bool {
        if self.users.iter().any(|u| u == username) {
            return true;
        }
        if idp_groups.iter().any(|g| self.groups.contains(g)) {
            return true;
        }
        match email.and_then(|e| e.rsplit_once('@')) {
            Some((_, domain)) if email_verified => self
                .email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain)),
            _ => false,
        }
    }
}

// === validation ===

impl Group {
    pub(crate) fn validate_fields(&self, errs: &mut Errors) {
        let spec = &self.spec;
        errs.max_len("spec.displayName", &spec.display_name, DISPLAY_NAME_MAX_LEN);
        errs.non_empty_unique("spec.users", &spec.users);
        errs.non_empty_unique("spec.groups", &spec.groups);
        for (i, d) in spec.email_domains.iter().enumerate() {
            // Domains compare case-insensitively (RFC 5321 §2.4); check the lower-case form.
            errs.required_with(
                format!("spec.emailDomains[{i}]"),
                &d.to_ascii_lowercase(),
                |d| {
                    syntax::dns1123_subdomain(d).map_err(|_| {
                        "must be a domain name such as example.com, without '@'".to_owned()
                    })
                },
            );
        }
        let lower: Vec<String> = spec
            .email_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        errs.unique("spec.emailDomains", &lower);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_rules() {
        let g = GroupSpec {
            users: vec!["alice".to_owned()],
            groups: vec!["ldap-sre".to_owned()],
            email_domains: vec!["sre.example.com".to_owned()],
            ..Default::default()
        };
        assert!(g.includes("alice", &[], None, false));
        assert!(g.includes("bob", &["x".to_owned(), "ldap-sre".to_owned()], None, false));
        assert!(g.includes("carol", &[], Some("carol@SRE.example.com"), true));
        // An unverified address proves nothing.
        assert!(!g.includes("carol", &[], Some("carol@sre.example.com"), false));
        assert!(!g.includes("dave", &[], Some("dave@example.com"), true));
        assert!(!g.includes(
            "eve",
            &[],
            Some("eve@evil.example@sre.example.com.evil"),
            true
        ));
    }
}
