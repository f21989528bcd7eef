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

#[test]
fn json_is_decoded_straight_into_objects_with_the_same_checks_and_errors() {
    let role = |name: &str, verb: &str| {
        format!(
            r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{{"name":"{name}"}},"rules":[{{"apiGroups":[""],"resources":["pods"],"verbs":["{verb}"]}}]}}"#
        )
    };
    let list = |items: &[String]| {
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            items.join(",")
        )
    };
    // A List, and several documents one after another: the same policy as from YAML.
    let json = format!(
        "{}\n{}",
        list(&[role("a", "get"), role("b", "list")]),
        role("c", "watch")
    );
    let from_json = Policy::from_documents([("dump.json", json.as_str())]).unwrap();
    let yaml = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: a}, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}\n- {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: b}, rules: [{apiGroups: [''], resources: [pods], verbs: [list]}]}\n---\n{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: c}, rules: [{apiGroups: [''], resources: [pods], verbs: [watch]}]}\n";
    let from_yaml = Policy::from_documents([("dump.yaml", yaml)]).unwrap();
    assert_eq!(from_json, from_yaml);
    assert_eq!(from_json.cluster_roles.len(), 3);

    // Errors name the document, the item and the field, as for YAML.
    let bad = list(&[role("a", "get"), role("b", "Get")]);
    let e = Policy::from_documents([("dump.json", bad.as_str())])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "dump.json: document 1: items[1].rules[0].verbs: invalid verb \"Get\": verbs are `*` or lower-case words such as get, list, watch"
    );
    let unknown_field = list(&[role("a", "get").replace(r#""rules""#, r#""rulez""#)]);
    let e = Policy::from_documents([("dump.json", unknown_field.as_str())])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("dump.json: document 1: items[0].") && e.contains("unknown field `rulez`"),
        "{e}"
    );
    let duplicate = role("a", "get").replace(
        r#""kind":"ClusterRole","#,
        r#""kind":"ClusterRole","rules":[],"#,
    );
    let e = Policy::from_documents([("dump.json", duplicate.as_str())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate field `rules`"), "{e}");
    let other_version = role("a", "get").replace(
        "rbac.authorization.k8s.io/v1",
        "rbac.authorization.k8s.io/v1beta1",
    );
    let e = Policy::from_documents([("dump.json", other_version.as_str())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("document 1: apiVersion: \"rbac.authorization.k8s.io/v1beta1\""),
        "{e}"
    );
    // Neither JSON nor YAML: the error says so.
    let e = Policy::from_documents([("dump.json", r#"{"kind": "List", "items": [}"#)])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not valid JSON") && e.contains("nor YAML"),
        "{e}"
    );
}
