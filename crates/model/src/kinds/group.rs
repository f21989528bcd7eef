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
    /// their identity-provider groups is in `groups`, their e-mail address is verified
    /// and its domain is in `emailDomains`, or a claim matches one of `claimPatterns`. Bindings name the group with a `Group` subject
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
    /// Regular expressions on a claim (`username`, `email` — verified only —, or each of the
    /// identity provider's `groups`), matched against the whole value (RE2 syntax).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_patterns: Vec<ClaimPattern>,
}

/// A regular expression on one claim of the identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimPattern {
    /// Which claim: `username`, `email` or `groups`.
    pub claim: PatternClaim,
    /// The expression; it must match the whole value (`.*@example\.com`, `team-.*`).
    pub pattern: String,
}

/// The claims a [`ClaimPattern`] may look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PatternClaim {
    /// The user name.
    Username,
    /// The e-mail address, when verified.
    Email,
    /// Each identity-provider group.
    Groups,
}

/// Largest compiled pattern (a bound on the memory and time a pattern from an object costs).
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// `pattern` compiled to match whole values only.
///
/// # Errors
///
/// The pattern's syntax error, or that it is too large.
pub fn full_match(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "the expression is too large".to_owned(),
            other => format!("not a valid regular expression: {other}"),
        })
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
        let verified_email = email.filter(|_| email_verified);
        if let Some((_, domain)) = verified_email.and_then(|e| e.rsplit_once('@'))
            && self
                .email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
        {
            return true;
        }
        self.claim_patterns.iter().any(|p| {
            // Validated when stored; one that does not compile matches nothing.
            let Ok(re) = full_match(&p.pattern) else {
                return false;
            };
            match p.claim {
                PatternClaim::Username => re.is_match(username),
                PatternClaim::Email => verified_email.is_some_and(|e| re.is_match(e)),
                PatternClaim::Groups => idp_groups.iter().any(|g| re.is_match(g)),
            }
        })
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
        for (i, p) in spec.claim_patterns.iter().enumerate() {
            let field = format!("spec.claimPatterns[{i}].pattern");
            if p.pattern.is_empty() {
                errs.required(field, "a regular expression is required");
            } else {
                errs.check(field, full_match(&p.pattern).map(|_| ()));
            }
        }
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

    #[test]
    fn claim_patterns_match_whole_values() {
        let pattern = |claim, pattern: &str| ClaimPattern {
            claim,
            pattern: pattern.to_owned(),
        };
        let g = GroupSpec {
            claim_patterns: vec![
                pattern(PatternClaim::Email, r".*@(eu|us)\.example\.com"),
                pattern(PatternClaim::Groups, "team-[a-z]+"),
                pattern(PatternClaim::Username, "svc-.*"),
            ],
            ..Default::default()
        };
        assert!(g.includes("x", &[], Some("a@eu.example.com"), true));
        assert!(
            !g.includes("x", &[], Some("a@eu.example.com"), false),
            "unverified"
        );
        assert!(
            !g.includes("x", &[], Some("a@eu.example.com.evil"), true),
            "anchored"
        );
        assert!(g.includes("x", &["team-sre".to_owned()], None, false));
        assert!(!g.includes("x", &["team-sre-admins2".to_owned()], None, false));
        assert!(g.includes("svc-ci", &[], None, false));
        assert!(!g.includes("a-svc-ci", &[], None, false));
    }

    #[test]
    fn claim_patterns_are_validated() {
        let mut group: Group = serde_json::from_value(serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "Group",
            "metadata": {"name": "g"},
            "spec": {"claimPatterns": [{"claim": "email", "pattern": "("}, {"claim": "groups", "pattern": ""}]},
        }))
        .expect("group");
        let mut errs = Errors::default();
        group.validate_fields(&mut errs);
        let text = format!("{errs:?}");
        assert!(text.contains("spec.claimPatterns[0].pattern"), "{text}");
        assert!(text.contains("spec.claimPatterns[1].pattern"), "{text}");
        group.spec.claim_patterns.truncate(0);
        let mut errs = Errors::default();
        group.validate_fields(&mut errs);
        assert!(!format!("{errs:?}").contains("claimPatterns"));
        let unknown = serde_json::from_value::<Group>(serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "Group", "metadata": {"name": "g"},
            "spec": {"claimPatterns": [{"claim": "sub", "pattern": "x"}]},
        }));
        assert!(unknown.is_err(), "only username, email and groups");
    }
}
