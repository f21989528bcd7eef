//! The reference evaluator: a linear scan over every binding, written to be obviously the
//! same as kube-apiserver's RBAC authorizer (`VisitRulesFor` + `RuleAllows`). Faster
//! evaluators must agree with it on every request.

use std::fmt;

use crate::v1::{PolicyRule, RoleRef, Subject};
use crate::{Attributes, AttributesRef, Decision, Policy};

/// Decides `a` against `policy`. Denials carry no reason; an allow names the first binding
/// found to grant it, as the apiserver's reason string does.
pub fn authorize(policy: &Policy, a: &Attributes) -> Decision {
    // ClusterRoleBindings grant everywhere.
    for (name, b) in &policy.cluster_role_bindings {
        let Some(subject) = b.subjects.iter().find(|s| applies_to(s, a, "")) else {
            continue;
        };
        let Some(rules) = policy.role_rules("", &b.role_ref.kind, &b.role_ref.name) else {
            continue; // a binding to a missing role grants nothing
        };
        if rules.iter().any(|r| rule_allows(r, a)) {
            return allowed(Reason {
                binding: name,
                namespace: "",
                role_ref: &b.role_ref,
                subject,
            });
        }
    }
    // RoleBindings grant only in their namespace; cluster-scoped requests see none.
    if a.namespace.is_empty() {
        return Decision::default();
    }
    for ((ns, name), b) in policy
        .role_bindings
        .range((a.namespace.clone(), String::new())..)
    {
        if *ns != a.namespace {
            break;
        }
        let Some(subject) = b.subjects.iter().find(|s| applies_to(s, a, ns)) else {
            continue;
        };
        let Some(rules) = policy.role_rules(ns, &b.role_ref.kind, &b.role_ref.name) else {
            continue;
        };
        if rules.iter().any(|r| rule_allows(r, a)) {
            return allowed(Reason {
                binding: name,
                namespace: ns,
                role_ref: &b.role_ref,
                subject,
            });
        }
    }
    Decision::default()
}

fn allowed(reason: Reason<'_>) -> Decision {
    Decision {
        allowed: true,
        reason: reason.to_string(),
    }
}

/// The reason of an allow, as the apiserver's RBAC authorizer writes it: the binding that
/// grants, its role and the subject that names the requester.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reason<'a> {
    /// The binding's name, and its namespace (`""` for a ClusterRoleBinding).
    pub binding: &'a str,
    pub namespace: &'a str,
    pub role_ref: &'a RoleRef,
    pub subject: &'a Subject,
}

impl Reason<'_> {
    /// The length of the reason or a few bytes more, but for the escapes of names that need
    /// them: to size the arrays reasons are written into.
    pub fn len_hint(&self) -> usize {
        let fixed =
            "RBAC: allowed by ClusterRoleBinding \"\" of ClusterRole \"\" to ServiceAccount \"/\"";
        fixed.len()
            + self.binding.len()
            + self.namespace.len()
            + self.role_ref.kind.len()
            + self.role_ref.name.len()
            + self.subject.name.len()
            + self.subject.namespace.len().max(self.namespace.len())
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Reason {
            binding,
            namespace,
            role_ref,
            subject,
        } = self;
        if namespace.is_empty() {
            write!(
                f,
                "RBAC: allowed by ClusterRoleBinding {binding:?} of ClusterRole {:?} to ",
                role_ref.name
            )?;
        } else {
            write!(
                f,
                "RBAC: allowed by RoleBinding \"{binding}/{namespace}\" of {} {:?} to ",
                role_ref.kind, role_ref.name
            )?;
        }
        match subject.kind.as_str() {
            "ServiceAccount" => {
                // Unqualified, it is the binding's namespace's (as it matches).
                let in_namespace = match subject.namespace.as_str() {
                    "" => namespace,
                    own => own,
                };
                write!(f, "ServiceAccount \"{}/{in_namespace}\"", subject.name)
            }
            kind => write!(f, "{kind} {:?}", subject.name),
        }
    }
}

/// Does `subject` (of a binding in `namespace`, `""` for cluster bindings) name the requester?
pub fn applies_to(subject: &Subject, a: &Attributes, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => a.user == subject.name,
        "Group" => a.groups.contains(&subject.name),
        "ServiceAccount" => {
            // An unqualified service account in a RoleBinding is in the binding's namespace.
            let ns = if subject.namespace.is_empty() {
                namespace
            } else {
                subject.namespace.as_str()
            };
            !ns.is_empty()
                && a.user
                    .strip_prefix("system:serviceaccount:")
                    .is_some_and(|rest| rest.split_once(':') == Some((ns, subject.name.as_str())))
        }
        _ => false,
    }
}

/// Does one rule allow the request? As `rbac.RuleAllows`.
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    rule_allows_ref(rule, &a.borrowed())
}

/// [`rule_allows`] of borrowed attributes.
pub(crate) fn rule_allows_ref(rule: &PolicyRule, a: &AttributesRef<'_>) -> bool {
    verb_matches(rule, a.verb) && rule_allows_target(rule, a)
}

/// Everything of [`rule_allows`] but the verb: for callers that matched the verb already.
pub(crate) fn rule_allows_target(rule: &PolicyRule, a: &AttributesRef<'_>) -> bool {
    if !a.resource_request {
        return rule
            .non_resource_urls
            .iter()
            .any(|u| url_matches(u, a.path));
    }
    rule.api_groups.iter().any(|g| g == "*" || g == a.api_group)
        && rule.resources.iter().any(|r| resource_matches(r, a))
        // resourceNames never match a request without a name (list, create by collection).
        && (rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == a.name))
}

/// `resource`, `resource/subresource`, `*` or `*/subresource` against the request, without
/// building the combined string.
fn resource_matches(rule_resource: &str, a: &AttributesRef<'_>) -> bool {
    if rule_resource == "*" {
        return true;
    }
    if a.subresource.is_empty() {
        return rule_resource == a.resource;
    }
    if a.resource.contains('/') {
        // Not a real resource name; compare as the apiserver does, on the joined string.
        return rule_resource == format!("{}/{}", a.resource, a.subresource)
            || rule_resource.strip_prefix("*/") == Some(a.subresource);
    }
    match rule_resource.split_once('/') {
        Some((res, sub)) => sub == a.subresource && (res == "*" || res == a.resource),
        None => false,
    }
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn url_matches(rule_url: &str, path: &str) -> bool {
    if rule_url == "*" || rule_url == path {
        return true;
    }
    rule_url
        .strip_suffix('*')
        .is_some_and(|prefix| path.starts_with(prefix))
}
