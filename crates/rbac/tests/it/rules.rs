//! One named case per rule of Kubernetes RBAC, each citing the behaviour it follows.

use portcullis_rbac::{Attributes, CompiledPolicy, Policy, authorize};

fn policy(yaml: &str) -> Policy {
    Policy::from_documents([("test.yaml", yaml)]).unwrap()
}

fn res(user: &str, verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        user: user.into(),
        groups: vec!["system:authenticated".into()],
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: ns.into(),
        name: name.into(),
        ..Attributes::default()
    }
}

fn path(user: &str, verb: &str, path: &str) -> Attributes {
    Attributes {
        user: user.into(),
        groups: vec!["system:authenticated".into()],
        verb: verb.into(),
        path: path.into(),
        ..Attributes::default()
    }
}

const ROLES: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: pods }
rules:
- { apiGroups: [""], resources: ["pods", "pods/log"], verbs: ["get", "list"] }
- { apiGroups: ["apps"], resources: ["*/scale"], verbs: ["update"] }
- { apiGroups: [""], resources: ["configmaps"], resourceNames: ["cm-1"], verbs: ["get", "update"] }
- { nonResourceURLs: ["/healthz", "/logs/*"], verbs: ["get"] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: secrets, namespace: ns-a }
rules:
- { apiGroups: [""], resources: ["secrets"], verbs: ["*"] }
"#;

fn with(bindings: &str) -> Policy {
    policy(&format!("{ROLES}\n---\n{bindings}"))
}

#[test]
fn verbs_must_match_exactly_or_by_star() {
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: { name: b }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pods }\nsubjects: [{ kind: User, name: alice }]",
    );
    assert!(authorize(&p, &res("alice", "get", "", "pods", "ns-a", "")).allowed);
    assert!(!authorize(&p, &res("alice", "delete", "", "pods", "ns-a", "")).allowed);
}

#[test]
fn subresources_need_their_own_rule_or_a_star_slash_rule() {
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: { name: b }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pods }\nsubjects: [{ kind: User, name: alice }]",
    );
    assert!(authorize(&p, &res("alice", "get", "", "pods/log", "ns-a", "p")).allowed);
    assert!(
        !authorize(&p, &res("alice", "get", "", "pods/exec", "ns-a", "p")).allowed,
        "pods does not cover pods/exec"
    );
    assert!(
        authorize(
            &p,
            &res("alice", "update", "apps", "deployments/scale", "ns-a", "d")
        )
        .allowed,
        "*/scale"
    );
    assert!(
        !authorize(
            &p,
            &res("alice", "update", "apps", "deployments", "ns-a", "d")
        )
        .allowed,
        "*/scale is not deployments"
    );
}

#[test]
fn resource_names_match_only_requests_that_name_one_of_them() {
    // As kube-apiserver: resourceNames never match list or create by collection.
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: { name: b }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pods }\nsubjects: [{ kind: User, name: alice }]",
    );
    assert!(authorize(&p, &res("alice", "get", "", "configmaps", "ns-a", "cm-1")).allowed);
    assert!(!authorize(&p, &res("alice", "get", "", "configmaps", "ns-a", "cm-2")).allowed);
    assert!(!authorize(&p, &res("alice", "get", "", "configmaps", "ns-a", "")).allowed);
}

#[test]
fn non_resource_urls_match_exactly_or_by_trailing_star_and_only_through_cluster_role_bindings() {
    let crb = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: { name: b }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pods }\nsubjects: [{ kind: User, name: alice }]",
    );
    assert!(authorize(&crb, &path("alice", "get", "/healthz")).allowed);
    assert!(!authorize(&crb, &path("alice", "get", "/healthz/ready")).allowed);
    assert!(authorize(&crb, &path("alice", "get", "/logs/kube.log")).allowed);
    assert!(!authorize(&crb, &path("alice", "post", "/healthz")).allowed);
    let rb = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: { name: b, namespace: ns-a }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pods }\nsubjects: [{ kind: User, name: alice }]",
    );
    assert!(!authorize(&rb, &path("alice", "get", "/healthz")).allowed);
}

#[test]
fn a_role_binding_grants_only_in_its_namespace() {
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: { name: b, namespace: ns-a }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pods }\nsubjects: [{ kind: Group, name: devs }]",
    );
    let mut a = res("bob", "list", "", "pods", "ns-a", "");
    a.groups.push("devs".into());
    assert!(authorize(&p, &a).allowed);
    a.namespace = "ns-b".into();
    assert!(!authorize(&p, &a).allowed);
    a.namespace = String::new();
    assert!(
        !authorize(&p, &a).allowed,
        "cluster-wide list is not granted by a RoleBinding"
    );
}

#[test]
fn a_binding_to_a_missing_role_grants_nothing() {
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: { name: b }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ghost }\nsubjects: [{ kind: User, name: alice }]",
    );
    assert!(!authorize(&p, &res("alice", "get", "", "pods", "ns-a", "")).allowed);
}

#[test]
fn service_account_subjects_match_the_service_account_user_name() {
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: { name: b, namespace: ns-a }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: secrets }\nsubjects: [{ kind: ServiceAccount, name: robot }]",
    );
    // An unqualified service account is in the binding's namespace.
    assert!(
        authorize(
            &p,
            &res(
                "system:serviceaccount:ns-a:robot",
                "get",
                "",
                "secrets",
                "ns-a",
                "s"
            )
        )
        .allowed
    );
    assert!(
        !authorize(
            &p,
            &res(
                "system:serviceaccount:ns-b:robot",
                "get",
                "",
                "secrets",
                "ns-a",
                "s"
            )
        )
        .allowed
    );
    assert!(!authorize(&p, &res("robot", "get", "", "secrets", "ns-a", "s")).allowed);
}

#[test]
fn an_unqualified_service_account_is_named_in_the_reason_with_the_bindings_namespace() {
    // kube-apiserver's describeSubject: a ServiceAccount subject without a namespace is
    // described as NAME/BINDING-NAMESPACE, the account it matches. The index must say the same.
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: { name: b, namespace: ns-a }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: secrets }\nsubjects: [{ kind: ServiceAccount, name: robot }]",
    );
    let a = res(
        "system:serviceaccount:ns-a:robot",
        "get",
        "",
        "secrets",
        "ns-a",
        "s",
    );
    let want = "RBAC: allowed by RoleBinding \"b/ns-a\" of Role \"secrets\" to ServiceAccount \"robot/ns-a\"";
    assert_eq!(authorize(&p, &a).reason, want);
    assert_eq!(CompiledPolicy::new(&p).authorize(&a).reason, want);
}

#[test]
fn groups_are_used_verbatim() {
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: { name: b }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pods }\nsubjects: [{ kind: Group, name: 'oidc:devs' }]",
    );
    let mut a = res("x", "get", "", "pods", "ns-a", "");
    a.groups = vec!["devs".into()];
    assert!(!authorize(&p, &a).allowed);
    a.groups = vec!["oidc:devs".into()];
    assert!(authorize(&p, &a).allowed);
}

#[test]
fn a_role_binding_to_a_role_of_another_namespace_grants_nothing() {
    let p = with(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: { name: b, namespace: ns-b }\nroleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: secrets }\nsubjects: [{ kind: User, name: alice }]",
    );
    assert!(!authorize(&p, &res("alice", "get", "", "secrets", "ns-b", "s")).allowed);
}
