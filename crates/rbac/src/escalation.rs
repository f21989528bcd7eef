//! Escalation prevention, as kube-apiserver's RBAC registry enforces it
//! (`pkg/registry/rbac/*/policybased`, `pkg/registry/rbac/escalation_check.go`,
//! `pkg/registry/rbac/validation`): a user may write a Role or ClusterRole only with rules they
//! already hold (in that namespace), unless they are in `system:masters` or have `escalate` on
//! it; and may bind a role only if they hold all its permissions, unless they have `bind` on
//! it. [`covers`] is the registry's `Covers`, [`confirm_no_escalation`] its
//! `ConfirmNoEscalation`, with its message.

use crate::evaluate::applies_to;
use crate::v1::{PolicyRule, RoleRef};
use crate::{Attributes, CompiledPolicy, Error, Policy};

/// Every rule `user` (with `groups`) holds in `namespace` (`""`: cluster-wide rules only), as
/// the apiserver's rule resolver gathers them.
pub fn rules_for(
    policy: &Policy,
    user: &str,
    groups: &[String],
    namespace: &str,
) -> Vec<PolicyRule> {
    resolve_rules(policy, user, groups, namespace).0
}

/// As [`rules_for`], with the resolver's errors: one per applicable binding whose role does not
/// exist (its rules are left out; as the apiserver's `RulesFor`, the list is still usable).
pub fn resolve_rules(
    policy: &Policy,
    user: &str,
    groups: &[String],
    namespace: &str,
) -> (Vec<PolicyRule>, Vec<Error>) {
    let who = Attributes {
        user: user.into(),
        groups: groups.to_vec(),
        ..Attributes::default()
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for b in policy.cluster_role_bindings.values() {
        if b.subjects.iter().any(|s| applies_to(s, &who, "")) {
            match role_reference_rules(policy, &b.role_ref, "") {
                Ok(rules) => out.extend(rules.iter().cloned()),
                Err(e) => errors.push(e),
            }
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
                match role_reference_rules(policy, &b.role_ref, ns) {
                    Ok(rules) => out.extend(rules.iter().cloned()),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    (out, errors)
}

/// The rules of the role `role_ref` names, for a binding in `namespace` (`""`: a
/// ClusterRoleBinding), as the apiserver's `GetRoleReferenceRules`: the error is the lookup's.
pub fn role_reference_rules<'p>(
    policy: &'p Policy,
    role_ref: &RoleRef,
    namespace: &str,
) -> Result<&'p [PolicyRule], Error> {
    let resource = match role_ref.kind.as_str() {
        "Role" => "roles",
        "ClusterRole" => "clusterroles",
        other => return Err(Error::UnsupportedRoleRefKind(other.to_owned())),
    };
    policy
        .role_rules(namespace, &role_ref.kind, &role_ref.name)
        .ok_or_else(|| Error::RoleNotFound {
            resource,
            name: role_ref.name.clone(),
        })
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

/// Who is writing: the identity the request acts as (after impersonation).
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// User name.
    pub user: &'a str,
    /// Groups.
    pub groups: &'a [String],
}

/// The group whose members may do anything, escalation included (`user.SystemPrivilegedGroup`).
pub const SYSTEM_MASTERS: &str = "system:masters";

/// As the registry's `EscalationAllowed`: members of `system:masters` skip every check.
pub fn escalation_allowed(w: &Writer<'_>) -> bool {
    w.groups.iter().any(|g| g == SYSTEM_MASTERS)
}

fn authorized(
    compiled: &CompiledPolicy,
    w: &Writer<'_>,
    verb: &str,
    api_group: &str,
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
            api_group: api_group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Attributes::default()
        })
        .allowed
}

/// As the registry's `RoleEscalationAuthorized`: `escalate` on the request's own resource
/// (`roles` or `clusterroles`), namespace and name, all taken from the request URL. A create
/// (POST to the collection) names nothing, so an `escalate` rule limited by `resourceNames`
/// never allows one.
pub fn role_escalation_authorized(
    compiled: &CompiledPolicy,
    w: &Writer<'_>,
    resource: &str,
    namespace: &str,
    request_name: &str,
) -> bool {
    (resource == "roles" || resource == "clusterroles")
        && authorized(
            compiled,
            w,
            "escalate",
            crate::v1::GROUP,
            resource,
            namespace,
            request_name,
        )
}

/// As the registry's `BindingAuthorized`: `bind` on the referenced role, checked in the
/// binding's namespace (`""` for a ClusterRoleBinding) with the roleRef's own API group.
pub fn binding_authorized(
    compiled: &CompiledPolicy,
    w: &Writer<'_>,
    role_ref: &RoleRef,
    binding_namespace: &str,
) -> bool {
    let resource = match role_ref.kind.as_str() {
        "Role" => "roles",
        "ClusterRole" => "clusterroles",
        _ => return false,
    };
    authorized(
        compiled,
        w,
        "bind",
        &role_ref.api_group,
        resource,
        binding_namespace,
        &role_ref.name,
    )
}

/// A string quoted as Go's `%q` quotes it (for messages in kube-apiserver's format).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list quoted as Go's `%q` prints a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// As `CompactRules`: rules for one API group and one resource (and at most one name) with
/// nothing else are merged into one rule with all their verbs, in order; others stay as they
/// are.
pub fn compact_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    // Keyed by (group, resource, name), in the order first seen.
    type Key = (String, String, Option<String>);
    let mut simple: Vec<(Key, PolicyRule)> = Vec::new();
    for rule in rules {
        let is_simple = rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        let key = match (is_simple, rule.api_groups.first(), rule.resources.first()) {
            (true, Some(g), Some(r)) => {
                (g.clone(), r.clone(), rule.resource_names.first().cloned())
            }
            _ => {
                out.push(rule.clone());
                continue;
            }
        };
        match simple.iter_mut().find(|(k, _)| *k == key) {
            Some((_, merged)) => merged.verbs.extend(rule.verbs.iter().cloned()),
            None => simple.push((key, rule.clone())),
        }
    }
    out.extend(simple.into_iter().map(|(_, r)| r));
    out
}

/// As `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get" "list"]}`,
/// naming only the fields that are set.
pub fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, items) in [
        ("APIGroups", &r.api_groups),
        ("Resources", &r.resources),
        ("NonResourceURLs", &r.non_resource_urls),
        ("ResourceNames", &r.resource_names),
        ("Verbs", &r.verbs),
    ] {
        if !items.is_empty() {
            parts.push(format!("{label}:{}", go_quote_list(items)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// As `ConfirmNoEscalation`: does `w` hold every rule of `rules` in `namespace` (`""`:
/// cluster-wide rules only)? The refusal ([`Error::Forbidden`]) has kube-apiserver's message:
/// who, with which groups, and the missing rules compacted, one a line, sorted; errors of the
/// rule resolver follow when some held roles could not be read.
pub fn confirm_no_escalation(
    policy: &Policy,
    w: &Writer<'_>,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), Error> {
    let (held, errors) = resolve_rules(policy, w.user, w.groups, namespace);
    let (ok, missing) = covers(&held, rules);
    if ok {
        return Ok(());
    }
    let mut lines: Vec<String> = compact_rules(&missing).iter().map(compact_string).collect();
    lines.sort();
    lines.dedup();
    let mut message = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(w.user),
        go_quote_list(w.groups),
        lines.join("\n")
    );
    // The resolver's errors arrive as one aggregate error in a list: `[e]`, or `[[e1, e2]]`.
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    match errors.as_slice() {
        [] => {}
        [one] => message.push_str(&format!("; resolution errors: [{one}]")),
        many => message.push_str(&format!("; resolution errors: [[{}]]", many.join(", "))),
    }
    Err(Error::Forbidden(message))
}

/// May `w` write a Role (`resource` `roles`, in `namespace`) or ClusterRole (`clusterroles`,
/// `namespace` empty) with `rules`? `request_name` is the name in the request URL: empty for a
/// create. As the role registry: `system:masters` and `escalate` skip the check, everyone else
/// must hold the rules.
pub fn check_role_write(
    policy: &Policy,
    compiled: &CompiledPolicy,
    w: &Writer<'_>,
    resource: &str,
    namespace: &str,
    request_name: &str,
    rules: &[PolicyRule],
) -> Result<(), Error> {
    if escalation_allowed(w)
        || role_escalation_authorized(compiled, w, resource, namespace, request_name)
    {
        return Ok(());
    }
    confirm_no_escalation(policy, w, namespace, rules)
}

/// May `w` write a binding in `namespace` (empty: a ClusterRoleBinding) to `role_ref`? As the
/// binding registry: `system:masters` and `bind` on the role skip the check; everyone else must
/// hold the role's rules, and a role that cannot be read is the lookup's error.
pub fn check_binding_write(
    policy: &Policy,
    compiled: &CompiledPolicy,
    w: &Writer<'_>,
    namespace: &str,
    role_ref: &RoleRef,
) -> Result<(), Error> {
    if escalation_allowed(w) || binding_authorized(compiled, w, role_ref, namespace) {
        return Ok(());
    }
    let rules = role_reference_rules(policy, role_ref, namespace)?;
    confirm_no_escalation(policy, w, namespace, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn missing_rules_are_compacted_and_printed_as_kube_apiserver_prints_them() {
        let missing: Vec<PolicyRule> = [
            rule(&["get"], &[""], &["pods"]),
            rule(&["list"], &[""], &["pods"]),
            rule(&["get"], &["apps"], &["deployments"]),
        ]
        .into_iter()
        .chain([PolicyRule {
            verbs: vec!["post".into()],
            non_resource_urls: vec!["/healthz".into()],
            ..PolicyRule::default()
        }])
        .collect();
        let mut lines: Vec<String> = compact_rules(&missing).iter().map(compact_string).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}"#,
                r#"{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}"#,
                r#"{NonResourceURLs:["/healthz"], Verbs:["post"]}"#,
            ]
        );
    }

    #[test]
    fn roles_that_cannot_be_read_are_named_after_the_missing_rules() {
        let p = Policy::from_documents([(
            "p",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: d, namespace: ns}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ghost-role}\nsubjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: u}]\n",
        )])
        .unwrap();
        let groups = vec!["system:authenticated".to_owned()];
        let w = Writer {
            user: "u",
            groups: &groups,
        };
        let err = confirm_no_escalation(&p, &w, "ns", &[rule(&["get"], &[""], &["secrets"])])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}; resolution errors: [roles.rbac.authorization.k8s.io \"ghost-role\" not found]"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_message_names_the_user_and_groups_as_go_quotes_them() {
        let p = Policy::default();
        let groups = vec!["team-x".to_owned(), "system:authenticated".to_owned()];
        let w = Writer {
            user: "u",
            groups: &groups,
        };
        let err = confirm_no_escalation(&p, &w, "ns", &[rule(&["get"], &[""], &["secrets"])])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "user \"u\" (groups=[\"team-x\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
        );
    }
}
