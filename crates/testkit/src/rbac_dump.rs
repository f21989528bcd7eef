//! A large cluster's RBAC as `kubectl get clusterroles,clusterrolebindings,roles,rolebindings -A
//! -o json` prints it (one `List`, every object with the metadata a real server adds), and
//! access reviews against it: generated, never committed, for the tests and benchmarks of the
//! command line at real scale.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// The size of a generated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Custom ClusterRoles (of 10 rules each).
    pub cluster_roles: usize,
    /// ClusterRoleBindings, each to a user and a group.
    pub cluster_role_bindings: usize,
    /// RoleBindings, each to a user and a group, spread over `namespaces`.
    pub role_bindings: usize,
    /// Namespaces with RoleBindings (each also has one Role).
    pub namespaces: usize,
}

impl Size {
    /// 50 ClusterRoles, `crbs` ClusterRoleBindings and 50,000 RoleBindings over 2,000
    /// namespaces: a large cluster, as in the RBAC benchmarks.
    pub fn large(crbs: usize) -> Size {
        Size {
            cluster_roles: 50,
            cluster_role_bindings: crbs,
            role_bindings: 50_000,
            namespaces: 2_000,
        }
    }

    /// Users in the population (each binding names one at random).
    pub const USERS: usize = 100_000;

    /// Groups in the population: from 1,000 ClusterRoleBindings up it grows with them, so that a
    /// group holds about as many at every size.
    pub fn groups(&self) -> usize {
        (5 * self.cluster_role_bindings).max(5_000)
    }
}

/// A small deterministic generator (xorshift), so that every run builds the same cluster.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One of `items` at random (`items` is never empty here).
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

const RESOURCES: [(&str, &str); 10] = [
    ("", "pods"),
    ("", "services"),
    ("", "configmaps"),
    ("", "secrets"),
    ("apps", "deployments"),
    ("batch", "jobs"),
    ("networking.k8s.io", "ingresses"),
    ("apps", "statefulsets"),
    ("", "persistentvolumeclaims"),
    ("", "serviceaccounts"),
];
const VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn metadata(name: &str, namespace: Option<&str>, serial: usize) -> Value {
    let mut m = json!({
        "name": name,
        "uid": format!("{:08x}-0000-4000-8000-{serial:012x}", serial as u32 ^ 0x5eed),
        "resourceVersion": (1000 + serial).to_string(),
        "creationTimestamp": "2026-11-02T09:14:07Z",
    });
    if let (Some(ns), Some(o)) = (namespace, m.as_object_mut()) {
        o.insert("namespace".into(), ns.into());
    }
    m
}

fn subjects(rng: &mut Rng, size: &Size) -> Value {
    json!([
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
         "name": format!("user-{}", rng.below(Size::USERS))},
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
         "name": format!("group-{}", rng.below(size.groups()))},
    ])
}

fn rules(i: usize, rng: &mut Rng) -> Value {
    (0..10)
        .map(|j| {
            let (group, resource) = RESOURCES
                .get((i + j) % RESOURCES.len())
                .copied()
                .unwrap_or_default();
            let verbs = VERBS.get(..1 + rng.below(VERBS.len())).unwrap_or_default();
            json!({"apiGroups": [group], "resources": [resource], "verbs": verbs})
        })
        .collect()
}

/// The cluster's RBAC objects as one `List` in JSON, as kubectl prints it.
pub fn policy_json(size: Size) -> String {
    let mut rng = Rng(0x5eed_0000 ^ size.cluster_role_bindings as u64);
    let mut items = Vec::with_capacity(
        size.cluster_roles + size.cluster_role_bindings + size.namespaces + size.role_bindings,
    );
    let mut serial = 0;
    let mut next = || {
        serial += 1;
        serial
    };
    let role_names: Vec<String> = (0..size.cluster_roles)
        .map(|i| format!("custom-{i}"))
        .collect();
    for (i, name) in role_names.iter().enumerate() {
        items.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": metadata(name, None, next()),
            "rules": rules(i, &mut rng),
        }));
    }
    for i in 0..size.cluster_role_bindings {
        let role = rng.pick(&role_names);
        items.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": metadata(&format!("crb-{i}"), None, next()),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects(&mut rng, &size),
        }));
    }
    for n in 0..size.namespaces {
        let ns = format!("ns-{n}");
        items.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata("local", Some(&ns), next()),
            "rules": rules(n, &mut rng),
        }));
    }
    for i in 0..size.role_bindings {
        let ns = format!("ns-{}", i % size.namespaces.max(1));
        // One binding in ten to the namespace's own Role, the rest to ClusterRoles.
        let role_ref = if i % 10 == 0 {
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "local"})
        } else {
            let role = rng.pick(&role_names);
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role})
        };
        items.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(&format!("rb-{i}"), Some(&ns), next()),
            "roleRef": role_ref,
            "subjects": subjects(&mut rng, &size),
        }));
    }
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": items,
    });
    // kubectl indents its JSON; so does this, for a dump of the same size.
    serde_json::to_string_pretty(&list).unwrap_or_default()
}

/// `n` SubjectAccessReview specs, one JSON object a line (the input of `can-i --batch`), asked
/// by random users of the population with two of its groups, about random verbs, resources
/// and namespaces.
pub fn reviews_jsonl(size: Size, n: usize) -> String {
    let mut rng = Rng(42);
    let mut out = String::with_capacity(n * 200);
    for _ in 0..n {
        let (group, resource) = rng.pick(&RESOURCES).copied().unwrap_or_default();
        let verb = rng.pick(&VERBS).copied().unwrap_or_default();
        let spec = json!({
            "user": format!("user-{}", rng.below(Size::USERS)),
            "groups": [
                format!("group-{}", rng.below(size.groups())),
                format!("group-{}", rng.below(size.groups())),
                "system:authenticated",
            ],
            "resourceAttributes": {
                "namespace": format!("ns-{}", rng.below(size.namespaces.max(1))),
                "verb": verb,
                "group": group,
                "resource": resource,
            },
        });
        let _ = writeln!(out, "{spec}");
    }
    out
}
