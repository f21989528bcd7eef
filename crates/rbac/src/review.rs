//! Rules reviews (SelfSubjectRulesReview) and who-can: what a subject may do in a namespace,
//! and which subjects may do a thing, with the bindings and roles that grant it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::evaluate::{applies_to, rule_allows};
use crate::v1::{PolicyRule, RoleRef, Subject};
use crate::{Attributes, Policy};

/// `status` of a SelfSubjectRulesReview (`authorization.k8s.io/v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectRulesReviewStatus {
    /// Rules on resources.
    pub resource_rules: Vec<ResourceRule>,
    /// Rules on non-resource URLs.
    pub non_resource_rules: Vec<NonResourceRule>,
    /// True when some binding could not be evaluated (its role is missing): the list may be
    /// short of what the subject really holds, as upstream reports it.
    pub incomplete: bool,
    /// Why the review is incomplete.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evaluation_error: String,
}

/// `ResourceRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    /// Verbs.
    pub verbs: Vec<String>,
    /// API groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Resource names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// `NonResourceRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NonResourceRule {
    /// Verbs.
    pub verbs: Vec<String>,
    /// Paths.
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

/// The rules `user` (with `groups`) holds in `namespace`: every ClusterRoleBinding's, plus the
/// namespace's RoleBindings', as kube-apiserver's rule resolver visits them.
pub fn rules_review(
    policy: &Policy,
    user: &str,
    groups: &[String],
    namespace: &str,
) -> SubjectRulesReviewStatus {
    let who = Attributes {
        user: user.into(),
        groups: groups.to_vec(),
        ..Attributes::default()
    };
    let mut rules: Vec<PolicyRule> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut visit = |ns: &str, kind: &str, name: &str| match policy.role_rules(ns, kind, name) {
        Some(r) => rules.extend(r.iter().cloned()),
        None => errors.push(if kind == "Role" {
            format!("role.rbac.authorization.k8s.io {name:?} not found")
        } else {
            format!("clusterrole.rbac.authorization.k8s.io {name:?} not found")
        }),
    };
    for b in policy.cluster_role_bindings.values() {
        if b.subjects.iter().any(|s| applies_to(s, &who, "")) {
            visit("", &b.role_ref.kind, &b.role_ref.name);
        }
    }
    if !namespace.is_empty() {
        for ((ns, _), b) in policy
            .role_bindings
            .range((namespace.to_owned(), String::new())..)
        {
            if ns != namespace {
                break;
            }
            if b.subjects.iter().any(|s| applies_to(s, &who, ns)) {
                visit(ns, &b.role_ref.kind, &b.role_ref.name);
            }
        }
    }
    let mut status = SubjectRulesReviewStatus {
        incomplete: !errors.is_empty(),
        evaluation_error: errors.join(", "),
        ..SubjectRulesReviewStatus::default()
    };
    for r in rules {
        if r.non_resource_urls.is_empty() {
            status.resource_rules.push(ResourceRule {
                verbs: r.verbs,
                api_groups: r.api_groups,
                resources: r.resources,
                resource_names: r.resource_names,
            });
        } else {
            status.non_resource_rules.push(NonResourceRule {
                verbs: r.verbs,
                non_resource_urls: r.non_resource_urls,
            });
        }
    }
    status
}

/// One answer of who-can: a subject and what grants it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WhoCan {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// A service account's namespace (resolved for unqualified subjects of RoleBindings).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `ClusterRoleBinding/NAME` or `RoleBinding/NAMESPACE/NAME`.
    pub binding: String,
    /// `ClusterRole/NAME` or `Role/NAME`.
    pub role: String,
}

/// Every subject allowed to do what `a` describes (its user and groups are ignored), with the
/// binding and role that grant it, sorted. Exact: the same rule matching as decisions.
///
/// Each role is matched against the request once, however many bindings name it (a large
/// cluster has thousands of bindings to a few dozen roles): the rest is a lookup per binding in
/// scope.
pub fn who_can(policy: &Policy, a: &Attributes) -> Vec<WhoCan> {
    let mut out = Vec::new();
    let mut roles = RoleMatches::default();
    for (name, b) in &policy.cluster_role_bindings {
        if roles.allow(policy, "", &b.role_ref, a) {
            add(
                &mut out,
                &b.subjects,
                "",
                format!("ClusterRoleBinding/{name}"),
                &b.role_ref,
            );
        }
    }
    if !a.namespace.is_empty() {
        for ((ns, name), b) in policy
            .role_bindings
            .range((a.namespace.clone(), String::new())..)
        {
            if *ns != a.namespace {
                break;
            }
            if roles.allow(policy, ns, &b.role_ref, a) {
                add(
                    &mut out,
                    &b.subjects,
                    ns,
                    format!("RoleBinding/{ns}/{name}"),
                    &b.role_ref,
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether each role a binding refers to allows one request, matched once per role.
#[derive(Default)]
struct RoleMatches<'p> {
    /// (namespace of a Role, `""` for a ClusterRole; kind; name) → allows?
    known: HashMap<(&'p str, &'p str, &'p str), bool>,
}

impl<'p> RoleMatches<'p> {
    /// Whether the role of a binding in `binding_ns` (`""`: a ClusterRoleBinding) allows `a`;
    /// a missing role allows nothing.
    fn allow(
        &mut self,
        policy: &Policy,
        binding_ns: &'p str,
        role_ref: &'p RoleRef,
        a: &Attributes,
    ) -> bool {
        let role_ns = if role_ref.kind == "Role" {
            binding_ns
        } else {
            ""
        };
        *self
            .known
            .entry((role_ns, &role_ref.kind, &role_ref.name))
            .or_insert_with(|| {
                policy
                    .role_rules(role_ns, &role_ref.kind, &role_ref.name)
                    .is_some_and(|rules| rules.iter().any(|r| rule_allows(r, a)))
            })
    }
}

/// Adds the subjects of a binding in `ns` (`""`: a ClusterRoleBinding) that grants by
/// `role_ref`.
fn add(out: &mut Vec<WhoCan>, subjects: &[Subject], ns: &str, binding: String, role_ref: &RoleRef) {
    for s in subjects {
        if !matches!(s.kind.as_str(), "User" | "Group" | "ServiceAccount") {
            continue;
        }
        let namespace = if s.kind == "ServiceAccount" && s.namespace.is_empty() {
            ns.to_owned()
        } else {
            s.namespace.clone()
        };
        if s.kind == "ServiceAccount" && namespace.is_empty() {
            continue; // matches nobody
        }
        out.push(WhoCan {
            kind: s.kind.clone(),
            name: s.name.clone(),
            namespace,
            binding: binding.clone(),
            role: format!("{}/{}", role_ref.kind, role_ref.name),
        });
    }
}
