//! Property tests: the compiled index decides exactly as the reference evaluator, on random
//! policies and requests drawn from a small universe (so that they collide often).

use portcullis_model::ObjectMeta;
use portcullis_rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use portcullis_rbac::{Attributes, CompiledPolicy, Policy, authorize};
use proptest::prelude::*;

pub const USERS: &[&str] = &[
    "alice",
    "bob",
    "system:serviceaccount:ns-a:robot",
    "system:serviceaccount:ns-b:robot",
];
pub const GROUPS: &[&str] = &["devs", "ops", "system:authenticated"];
const NAMESPACES: &[&str] = &["", "ns-a", "ns-b"];
const VERBS: &[&str] = &[
    "get",
    "list",
    "delete",
    "escalate",
    "custom",
    "frobnicate",
    "*",
];
const GROUPS_API: &[&str] = &["", "apps", "*"];
const RESOURCES: &[&str] = &[
    "pods",
    "pods/log",
    "*/scale",
    "deployments",
    "*",
    "pods/log/log",
];
const NAMES: &[&str] = &["", "a", "b"];
const ROLES: &[&str] = &["r1", "r2", "r3"];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    prop::sample::select(list).prop_map(str::to_owned)
}

fn rule() -> impl Strategy<Value = PolicyRule> {
    prop_oneof![
        (
            prop::collection::vec(pick(VERBS), 1..3),
            prop::collection::vec(pick(GROUPS_API), 1..2),
            prop::collection::vec(pick(RESOURCES), 1..3),
            prop::collection::vec(pick(&NAMES[1..]), 0..2)
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
        (
            prop::collection::vec(pick(VERBS), 1..3),
            prop::collection::vec(pick(&["/healthz", "/api/*", "*"]), 1..2)
        )
            .prop_map(|(verbs, non_resource_urls)| PolicyRule {
                verbs,
                non_resource_urls,
                ..PolicyRule::default()
            }),
    ]
}

fn subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        pick(USERS).prop_map(|name| Subject {
            kind: "User".into(),
            name,
            ..Subject::default()
        }),
        pick(GROUPS).prop_map(|name| Subject {
            kind: "Group".into(),
            name,
            ..Subject::default()
        }),
        (pick(&["", "ns-a", "ns-b"])).prop_map(|namespace| Subject {
            kind: "ServiceAccount".into(),
            name: "robot".into(),
            namespace,
            ..Subject::default()
        }),
    ]
}

fn meta(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: (!ns.is_empty()).then(|| ns.to_owned()),
        ..ObjectMeta::default()
    }
}

pub fn policy() -> impl Strategy<Value = Policy> {
    let cluster_roles =
        prop::collection::vec((pick(ROLES), prop::collection::vec(rule(), 0..3)), 0..3);
    let roles = prop::collection::vec(
        (
            pick(ROLES),
            pick(&NAMESPACES[1..]),
            prop::collection::vec(rule(), 0..3),
        ),
        0..3,
    );
    let crbs = prop::collection::vec((pick(ROLES), prop::collection::vec(subject(), 1..3)), 0..4);
    let rbs = prop::collection::vec(
        (
            pick(ROLES),
            pick(&NAMESPACES[1..]),
            any::<bool>(),
            prop::collection::vec(subject(), 1..3),
        ),
        0..4,
    );
    (cluster_roles, roles, crbs, rbs).prop_map(|(crs, rs, crbs, rbs)| {
        let mut p = Policy::default();
        for (name, rules) in crs {
            p.cluster_roles.insert(
                name.clone(),
                ClusterRole {
                    metadata: meta(&name, ""),
                    rules,
                    ..ClusterRole::default()
                },
            );
        }
        for (name, ns, rules) in rs {
            p.roles.insert(
                (ns.clone(), name.clone()),
                Role {
                    metadata: meta(&name, &ns),
                    rules,
                    ..Role::default()
                },
            );
        }
        for (i, (role, subjects)) in crbs.into_iter().enumerate() {
            let name = format!("crb-{i}");
            p.cluster_role_bindings.insert(
                name.clone(),
                ClusterRoleBinding {
                    metadata: meta(&name, ""),
                    subjects,
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".into(),
                        kind: "ClusterRole".into(),
                        name: role,
                    },
                    ..ClusterRoleBinding::default()
                },
            );
        }
        for (i, (role, ns, to_cluster_role, subjects)) in rbs.into_iter().enumerate() {
            let name = format!("rb-{i}");
            let kind = if to_cluster_role {
                "ClusterRole"
            } else {
                "Role"
            };
            p.role_bindings.insert(
                (ns.clone(), name.clone()),
                RoleBinding {
                    metadata: meta(&name, &ns),
                    subjects,
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".into(),
                        kind: kind.into(),
                        name: role,
                    },
                    ..RoleBinding::default()
                },
            );
        }
        p
    })
}

pub fn request() -> impl Strategy<Value = Attributes> {
    let groups = || prop::collection::vec(pick(GROUPS), 0..3);
    prop_oneof![
        (
            pick(USERS),
            groups(),
            pick(&VERBS[..6]),
            pick(&GROUPS_API[..2]),
            pick(&[
                "pods",
                "pods/log",
                "pods/exec",
                "deployments/scale",
                "deployments"
            ]),
            pick(NAMESPACES),
            pick(NAMES),
            0..4u8
        )
            .prop_map(
                |(user, groups, verb, api_group, resource, namespace, name, raw)| {
                    // Mostly split as the apiserver's request info does; sometimes a resource
                    // name that itself holds a `/`, which no real resource does but a
                    // SubjectAccessReview can ask about.
                    let (resource, subresource) = match raw {
                        0 => (resource.clone(), String::new()),
                        1 => (resource.clone(), "log".to_owned()),
                        _ => resource
                            .split_once('/')
                            .map(|(r, s)| (r.to_owned(), s.to_owned()))
                            .unwrap_or((resource.clone(), String::new())),
                    };
                    Attributes {
                        user,
                        groups,
                        verb,
                        resource_request: true,
                        api_group,
                        resource,
                        subresource,
                        namespace,
                        name,
                        ..Attributes::default()
                    }
                }
            ),
        (
            pick(USERS),
            groups(),
            pick(&VERBS[..6]),
            pick(&["/healthz", "/api/v1", "/metrics"])
        )
            .prop_map(|(user, groups, verb, path)| Attributes {
                user,
                groups,
                verb,
                path,
                ..Attributes::default()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_compiled_index_agrees_with_the_reference_evaluator(p in policy(), requests in prop::collection::vec(request(), 1..64)) {
        let compiled = CompiledPolicy::new(&p);
        for a in &requests {
            let want = authorize(&p, a);
            let got = compiled.authorize(a);
            prop_assert_eq!(got.allowed, want.allowed, "{:?}", a);
            prop_assert_eq!(got.reason.is_empty(), !got.allowed);
        }
    }
}

/// The policy of `yaml`, and its compiled index.
fn compiled(yaml: &str) -> (Policy, CompiledPolicy) {
    let p = Policy::from_documents([("policy.yaml", yaml)]).unwrap();
    let compiled = CompiledPolicy::new(&p);
    (p, compiled)
}

#[test]
fn verbs_are_recognised_whole_and_unusual_verbs_by_their_string() {
    let (p, compiled) = compiled(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: verbs}
rules:
- {verbs: [get, deletecollection, impersonate, deletecollectionish, frob], apiGroups: [""], resources: [pods]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: verbs}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: verbs, apiGroup: rbac.authorization.k8s.io}
"#,
    );
    let cases = [
        ("get", true),
        ("deletecollection", true),
        ("impersonate", true),
        ("deletecollectionish", true),
        ("frob", true),
        ("get\0", false),
        ("ge", false),
        ("gett", false),
        ("GET", false),
        ("deletecollectio", false),
        ("deletecollectionx", false),
        ("impersonatex", false),
        ("frobs", false),
        ("list", false),
        ("", false),
    ];
    for (verb, want) in cases {
        let a = Attributes {
            user: "alice".into(),
            verb: verb.into(),
            resource_request: true,
            resource: "pods".into(),
            ..Attributes::default()
        };
        assert_eq!(compiled.authorize(&a).allowed, want, "{verb:?}");
        assert_eq!(authorize(&p, &a).allowed, want, "{verb:?}");
    }
}

#[test]
fn the_compiled_index_reproduces_the_recorded_decisions() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/recorded/policy.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let p = Policy::from_documents([("policy.yaml", text.as_str())]).unwrap();
    let compiled = CompiledPolicy::new(&p);
    let requests = std::fs::read_to_string(format!(
        "{}/tests/data/recorded/requests.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let expected = std::fs::read_to_string(format!(
        "{}/tests/data/recorded/expected.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for (req, exp) in requests.lines().zip(expected.lines()) {
        let spec: portcullis_rbac::batch::SubjectAccessReviewSpec =
            serde_json::from_str(req).unwrap();
        let a = spec.attributes().unwrap();
        let masters = a.groups.iter().any(|g| g == "system:masters");
        let want: serde_json::Value = serde_json::from_str(exp).unwrap();
        assert_eq!(
            masters || compiled.authorize(&a).allowed,
            want["allowed"].as_bool().unwrap(),
            "{req}"
        );
    }
}

#[test]
fn a_group_grants_at_every_position_of_the_requesters_list_in_both_scopes() {
    // The index hashes the user and the first groups once per request and the rest where
    // they are used: every position on either side of that limit must be found, and one far
    // down the list.
    let (p, compiled) = compiled(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{verbs: [get], apiGroups: [""], resources: [pods]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cluster-readers}
subjects: [{kind: Group, name: cluster-group, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: reader, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: ns-a}
subjects: [{kind: Group, name: namespace-group, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: reader, apiGroup: rbac.authorization.k8s.io}
"#,
    );
    for position in (0..20).chain([39]) {
        for (bound, namespace, reason) in [
            (
                "cluster-group",
                "",
                r#"RBAC: allowed by ClusterRoleBinding "cluster-readers" of ClusterRole "reader" to Group "cluster-group""#,
            ),
            (
                "namespace-group",
                "ns-a",
                r#"RBAC: allowed by RoleBinding "readers/ns-a" of ClusterRole "reader" to Group "namespace-group""#,
            ),
        ] {
            let mut groups: Vec<String> = (0..position).map(|i| format!("other-{i}")).collect();
            groups.push(bound.into());
            groups.push("system:authenticated".into());
            let mut a = Attributes {
                user: "alice".into(),
                groups,
                verb: "get".into(),
                resource_request: true,
                resource: "pods".into(),
                namespace: namespace.into(),
                ..Attributes::default()
            };
            let got = compiled.authorize(&a);
            assert!(got.allowed, "{bound} at {position}");
            assert_eq!(got.reason, reason, "{bound} at {position}");
            assert_eq!(got, authorize(&p, &a), "{bound} at {position}");
            // The same list in another namespace: only the cluster-wide grant holds there.
            let elsewhere = Attributes {
                namespace: "ns-b".into(),
                ..a.clone()
            };
            assert_eq!(
                compiled.authorize(&elsewhere).allowed,
                bound == "cluster-group",
                "{bound} at {position} in ns-b"
            );
            // And without the bound group, nothing grants.
            a.groups.retain(|g| g != bound);
            assert!(!compiled.authorize(&a).allowed, "{bound} removed");
        }
    }
}
