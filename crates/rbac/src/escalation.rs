//! Escalation prevention, as the RBAC registry enforces it: a user may write a Role or
//! ClusterRole only with rules they already hold (in that namespace), unless they have
//! `escalate` on it; and may bind a role only if they hold all its permissions, unless they have
//! `bind` on it. [`covers`] is kube-apiserver's `validation.Covers`.

use crate::evaluate::applies_to;
use crate::v1::{PolicyRule, RoleRef};
use crate::{Attributes, CompiledPolicy, Policy};

/// Every rule `user` (with `groups`) holds in `namespace` (`""`: cluster-wide rules only), as
/// the apiserver's rule resolver gathers them.
pub fn rules_for(
    policy: &Policy,
    user: &str,
    groups: &[String],
    namespace: &str,
) -> Vec<PolicyRule> {
    let who = Attributes {
        user: user.into(),
        groups: groups.to_vec(),
        ..Attributes::default()
    };
    let mut out = Vec::new();
    for b in policy.cluster_role_bindings.values() {
        if b.subjects.iter().any(|s| applies_to(s, &who, "")) {
            out.extend(
                policy
                    .role_rules("", &b.role_ref.kind, &b.role_ref.name)
                    .unwrap_or_default()
                    .iter()
                    .cloned(),
            );
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
                out.extend(
                    policy
                        .role_rules(ns, &b.role_ref.kind, &b.role_ref.name)
                        .unwrap_or_default()
                        .iter()
                        .cloned(),
                );
            }
        }
    }
    out
}

/// Splits a rule into rules of one verb, one group, one resource (and one name, or one URL).
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let one = |names: Vec<String>| PolicyRule {
                    verbs: vec![verb.clone()],
                    api_groups: vec![group.clone()],
                    resources: vec![resource.clone()],
                    resource_names: names,
                    non_resource_urls: Vec::new(),
                };
                if rule.resource_names.is_empty() {
                    out.push(one(Vec::new()));
                } else {
                    out.extend(rule.resource_names.iter().map(|n| one(vec![n.clone()])));
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                verbs: vec![verb.clone()],
                non_resource_urls: vec![url.clone()],
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

fn resources_cover(owner: &[String], requested: &[String]) -> bool {
    if has(owner, "*") || has_all(owner, requested) {
        return true;
    }
    requested.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn urls_cover(owner: &[String], requested: &[String]) -> bool {
    requested.iter().all(|path| {
        owner.iter().any(|o| {
            o == "*" || o == path || o.strip_suffix('*').is_some_and(|p| path.starts_with(p))
        })
    })
}

/// Does `owner` cover the single (broken-down) rule `sub`? As the apiserver's `ruleCovers`.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resources_cover(&owner.resources, &sub.resources);
    let urls = urls_cover(&owner.non_resource_urls, &sub.non_resource_urls);
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// Whether `owner` covers every rule of `requested`, and the broken-down rules it does not.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let missing: Vec<PolicyRule> = requested
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (missing.is_empty(), missing)
}

/// Who is writing, for the checks below.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// User name.
    pub user: &'a str,
    /// Groups.
    pub groups: &'a [String],
}

fn has_verb(
    compiled: &CompiledPolicy,
    w: &Writer<'_>,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    compiled
        .authorize(&Attributes {
            user: w.user.into(),
            groups: w.groups.to_vec(),
            verb: verb.into(),
            resource_request: true,
            api_group: crate::v1::GROUP.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Attributes::default()
        })
        .allowed
}

fn describe_missing(missing: &[PolicyRule]) -> String {
    let shown: Vec<String> = missing
        .iter()
        .take(5)
        .map(|r| {
            if r.non_resource_urls.is_empty() {
                format!(
                    "{{APIGroups:[{:?}], Resources:[{:?}], ResourceNames:{:?}, Verbs:[{:?}]}}",
                    r.api_groups.join(""),
                    r.resources.join(""),
                    r.resource_names,
                    r.verbs.join("")
                )
            } else {
                format!(
                    "{{NonResourceURLs:[{:?}], Verbs:[{:?}]}}",
                    r.non_resource_urls.join(""),
                    r.verbs.join("")
                )
            }
        })
        .collect();
    let more = missing.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{}{tail}", shown.join(", "))
}

/// May `w` create or update a Role (`namespace` set) or ClusterRole (`namespace` empty) named
/// `name` with `rules`? `Err` says which permissions the writer lacks.
pub fn check_role_write(
    policy: &Policy,
    compiled: &CompiledPolicy,
    w: &Writer<'_>,
    namespace: &str,
    name: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let resource = if namespace.is_empty() {
        "clusterroles"
    } else {
        "roles"
    };
    if has_verb(compiled, w, "escalate", resource, namespace, name) {
        return Ok(());
    }
    let (ok, missing) = covers(&rules_for(policy, w.user, w.groups, namespace), rules);
    if ok {
        return Ok(());
    }
    Err(format!(
        "user {:?} is attempting to grant RBAC permissions not currently held: {}",
        w.user,
        describe_missing(&missing)
    ))
}

/// May `w` create or update a binding in `namespace` (empty: a ClusterRoleBinding) to
/// `role_ref`? `Err` says why not.
pub fn check_binding_write(
    policy: &Policy,
    compiled: &CompiledPolicy,
    w: &Writer<'_>,
    namespace: &str,
    role_ref: &RoleRef,
) -> Result<(), String> {
    let resource = if role_ref.kind == "Role" {
        "roles"
    } else {
        "clusterroles"
    };
    if has_verb(compiled, w, "bind", resource, namespace, &role_ref.name) {
        return Ok(());
    }
    let Some(rules) = policy.role_rules(namespace, &role_ref.kind, &role_ref.name) else {
        return Err(format!(
            "{} {:?} not found: a binding may only reference an existing role unless the writer has bind on it",
            role_ref.kind, role_ref.name
        ));
    };
    let (ok, missing) = covers(&rules_for(policy, w.user, w.groups, namespace), rules);
    if ok {
        return Ok(());
    }
    Err(format!(
        "user {:?} is attempting to grant RBAC permissions not currently held: {}",
        w.user,
        describe_missing(&missing)
    ))
}
