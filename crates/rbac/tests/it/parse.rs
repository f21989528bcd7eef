//! Bad policy input gets a clear error naming the source, the document and the field.

use portcullis_rbac::Policy;

fn err(yaml: &str) -> String {
    Policy::from_documents([("bad.yaml", yaml)])
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_yaml_names_the_source() {
    assert!(
        err("kind: [").starts_with("bad.yaml: document 1: not valid YAML"),
        "{}",
        err("kind: [")
    );
}

#[test]
fn unknown_kinds_are_refused() {
    let e = err(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Rolebinding\nmetadata: {name: x, namespace: y}\n",
    );
    assert!(
        e.contains("document 1: kind: unknown kind \"Rolebinding\""),
        "{e}"
    );
}

#[test]
fn invalid_verbs_are_refused_with_the_field() {
    let e = err(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: ok}\nrules: []\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\nrules: [{apiGroups: [''], resources: [pods], verbs: ['Get']}]\n",
    );
    assert!(
        e.contains("document 2: rules[0].verbs: invalid verb \"Get\""),
        "{e}"
    );
}

#[test]
fn a_missing_role_ref_is_refused() {
    let e = err(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: x}\nsubjects: []\n",
    );
    assert!(e.contains("roleRef"), "{e}");
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let e = err(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get], resourceName: [a]}]\n",
    );
    assert!(e.contains("rules[0]") && e.contains("resourceName"), "{e}");
}

#[test]
fn list_kinds_are_expanded_and_errors_name_the_item() {
    let e = err(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: rbac.authorization.k8s.io/v1\n  kind: Role\n  metadata: {name: r}\n  rules: []\n",
    );
    assert!(e.contains("items[0].metadata.namespace"), "{e}");
}
