//! `covers` as kube-apiserver's `validation.Covers`: named cases, and properties (reflexive,
//! transitive, and agreeing with per-request decisions).

use portcullis_rbac::escalation::{Writer, check_binding_write, check_role_write, covers};
use portcullis_rbac::v1::{PolicyRule, RoleRef};
use portcullis_rbac::{CompiledPolicy, Error, Policy};
use proptest::prelude::*;

fn r(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        verbs: v(verbs),
        api_groups: v(groups),
        resources: v(resources),
        resource_names: v(names),
        non_resource_urls: vec![],
    }
}

fn urls(verbs: &[&str], u: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        non_resource_urls: u.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

#[test]
fn stars_cover_everything_of_their_dimension() {
    assert!(
        covers(
            &[r(&["*"], &["*"], &["*"], &[])],
            &[r(
                &["get", "delete"],
                &["apps"],
                &["deployments", "pods/log"],
                &["x"]
            )]
        )
        .0
    );
    assert!(
        !covers(
            &[r(&["get"], &["*"], &["*"], &[])],
            &[r(&["delete"], &[""], &["pods"], &[])]
        )
        .0
    );
}

#[test]
fn a_rule_is_covered_by_the_union_of_several() {
    let owner = [
        r(&["get"], &[""], &["pods"], &[]),
        r(&["list"], &[""], &["pods"], &[]),
    ];
    assert!(covers(&owner, &[r(&["get", "list"], &[""], &["pods"], &[])]).0);
    let (ok, missing) = covers(&owner, &[r(&["get", "watch"], &[""], &["pods"], &[])]);
    assert!(!ok);
    assert_eq!(missing, [r(&["watch"], &[""], &["pods"], &[])]);
}

#[test]
fn star_slash_subresource_covers_that_subresource_of_anything() {
    assert!(
        covers(
            &[r(&["get"], &[""], &["*/log"], &[])],
            &[r(&["get"], &[""], &["pods/log"], &[])]
        )
        .0
    );
    assert!(
        !covers(
            &[r(&["get"], &[""], &["*/log"], &[])],
            &[r(&["get"], &[""], &["pods"], &[])]
        )
        .0
    );
}

#[test]
fn resource_names_narrow_what_is_covered() {
    // An owner limited to names does not cover a rule for all names.
    assert!(
        !covers(
            &[r(&["get"], &[""], &["secrets"], &["a"])],
            &[r(&["get"], &[""], &["secrets"], &[])]
        )
        .0
    );
    assert!(
        covers(
            &[r(&["get"], &[""], &["secrets"], &["a", "b"])],
            &[r(&["get"], &[""], &["secrets"], &["a"])]
        )
        .0
    );
    assert!(
        covers(
            &[r(&["get"], &[""], &["secrets"], &[])],
            &[r(&["get"], &[""], &["secrets"], &["a"])]
        )
        .0
    );
}

#[test]
fn non_resource_urls_cover_by_prefix_star() {
    assert!(
        covers(
            &[urls(&["get"], &["/logs/*"])],
            &[urls(&["get"], &["/logs/a", "/logs/"])]
        )
        .0
    );
    assert!(
        !covers(
            &[urls(&["get"], &["/logs/*"])],
            &[urls(&["get"], &["/metrics"])]
        )
        .0
    );
}

/// u holds pods get in ns, escalate on roles named special only, and bind on ClusterRole view.
fn writer_policy() -> (Policy, CompiledPolicy) {
    let p = Policy::from_documents([(
        "p",
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: w, namespace: ns}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get]}
- {apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate], resourceNames: [special]}
- {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind], resourceNames: [view]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: w, namespace: ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: w}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: u}]
"#,
    )])
    .unwrap();
    let compiled = CompiledPolicy::new(&p);
    (p, compiled)
}

#[test]
fn escalate_is_authorized_by_the_request_name_so_never_on_a_create() {
    let (p, c) = writer_policy();
    let groups = vec!["system:authenticated".to_owned()];
    let w = Writer {
        user: "u",
        groups: &groups,
    };
    let all = [r(&["*"], &["*"], &["*"], &[])];
    // A create names nothing: the named escalate rule does not apply, the rules are checked.
    let refused = check_role_write(&p, &c, &w, "roles", "ns", "", &all).unwrap_err();
    assert!(
        matches!(refused, Error::Forbidden(m) if m.contains("{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"))
    );
    // An update of that name does.
    assert!(check_role_write(&p, &c, &w, "roles", "ns", "special", &all).is_ok());
    assert!(check_role_write(&p, &c, &w, "roles", "ns", "other", &all).is_err());
    // Held rules need nothing else.
    let held = [r(&["get"], &[""], &["pods"], &[])];
    assert!(check_role_write(&p, &c, &w, "roles", "ns", "", &held).is_ok());
    // system:masters skips every check.
    let masters = vec!["system:masters".to_owned()];
    let m = Writer {
        user: "root",
        groups: &masters,
    };
    assert!(check_role_write(&p, &c, &m, "roles", "ns", "", &all).is_ok());
}

#[test]
fn a_missing_role_is_the_lookups_error_unless_the_writer_may_bind_it() {
    let (p, c) = writer_policy();
    let groups = vec!["system:authenticated".to_owned()];
    let w = Writer {
        user: "u",
        groups: &groups,
    };
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    };
    assert_eq!(
        check_binding_write(&p, &c, &w, "ns", &role_ref("Role", "ghost")),
        Err(Error::RoleNotFound {
            resource: "roles",
            name: "ghost".into()
        })
    );
    // bind on view (which does not exist in this policy) allows binding it anyway.
    assert!(check_binding_write(&p, &c, &w, "ns", &role_ref("ClusterRole", "view")).is_ok());
    // bind is checked with the roleRef's own API group.
    let mut other_group = role_ref("ClusterRole", "view");
    other_group.api_group = "example.com".into();
    assert!(check_binding_write(&p, &c, &w, "ns", &other_group).is_err());
    // A role whose rules the writer holds needs no bind.
    assert!(check_binding_write(&p, &c, &w, "ns", &role_ref("Role", "w")).is_ok());
}

fn rule() -> impl Strategy<Value = PolicyRule> {
    let pick = |xs: &'static [&'static str]| {
        prop::collection::vec(prop::sample::select(xs).prop_map(str::to_owned), 1..3)
    };
    prop_oneof![
        (
            pick(&["get", "list", "*"]),
            pick(&["", "apps", "*"]),
            pick(&["pods", "pods/log", "*/log", "*"]),
            prop::collection::vec(
                prop::sample::select(&["a", "b"][..]).prop_map(str::to_owned),
                0..2
            )
        )
            .prop_map(
                |(verbs, api_groups, resources, resource_names)| PolicyRule {
                    verbs,
                    api_groups,
                    resources,
                    resource_names,
                    non_resource_urls: vec![]
                }
            ),
        (pick(&["get", "*"]), pick(&["/a", "/a/*", "*"])).prop_map(|(verbs, non_resource_urls)| {
            PolicyRule {
                verbs,
                non_resource_urls,
                ..PolicyRule::default()
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn covers_is_reflexive(rules in prop::collection::vec(rule(), 0..4)) {
        prop_assert!(covers(&rules, &rules).0);
    }

    #[test]
    fn covers_is_transitive(a in prop::collection::vec(rule(), 0..4), b in prop::collection::vec(rule(), 0..4), c in prop::collection::vec(rule(), 0..4)) {
        if covers(&a, &b).0 && covers(&b, &c).0 {
            prop_assert!(covers(&a, &c).0);
        }
    }
}
