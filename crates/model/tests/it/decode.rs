//! Decoding: round trips, unknown fields, kinds, lists and input bounds.

use portcullis_model::{Error, Resource, decode_json, decode_value, decode_yaml_documents};

use crate::{EXAMPLES, data};

fn decode_err(source: &str, text: &str) -> (Option<usize>, String, String) {
    match decode_yaml_documents(source, text) {
        Err(Error::Decode {
            source_name,
            document,
            field,
            message,
            ..
        }) => {
            assert_eq!(source_name, source);
            (document, field, message)
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn examples_round_trip_yaml_json_resource() {
    let mut total = 0;
    for name in EXAMPLES {
        let resources = decode_yaml_documents(name, &data(name)).unwrap();
        assert!(!resources.is_empty(), "{name}");
        for r in resources {
            total += 1;
            let json = serde_json::to_vec(&r.to_json_value()).unwrap();
            let back = decode_json(&json).unwrap();
            assert_eq!(back, r, "{name}");
            assert_eq!(decode_value(r.to_json_value()).unwrap(), r, "{name}");
            // And through YAML text again, as `portcullis get -o yaml | apply -f -` would.
            let yaml = serde_saphyr::to_string(&r.to_json_value()).unwrap();
            let again = decode_yaml_documents("again", &yaml).unwrap();
            assert_eq!(again, vec![r.clone()], "{name}:\n{yaml}");
        }
    }
    assert_eq!(total, 15);
}

#[test]
fn kinds_and_fields_land_where_expected() {
    let rs = decode_yaml_documents("roles.yaml", &data("roles.yaml")).unwrap();
    let Resource::KommanderRole(role) = &rs[0] else {
        panic!("{:?}", rs[0])
    };
    assert_eq!(role.rules[1].non_resource_urls, ["/healthz", "/metrics/*"]);
    assert_eq!(rs[1].kind_info().plural, "kommanderrolebindings");
    assert_eq!(rs[3].namespace(), "checkout");
    let ws = decode_yaml_documents("w", &data("workspace.yaml")).unwrap();
    // `yes` stays a string (YAML 1.2 booleans only).
    assert_eq!(ws[0].meta().labels["enabled"], "yes");
    let Resource::Workspace(w) = &ws[0] else {
        panic!()
    };
    assert_eq!(w.namespace_name(), "ws-payments");
}

#[test]
fn list_items_are_expanded_and_errors_name_the_item() {
    let rs = decode_yaml_documents("list.yaml", &data("list.yaml")).unwrap();
    let names: Vec<_> = rs.iter().map(Resource::name).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let bad = data("list.yaml").replace("namespaceName: ws-beta", "namespaceNme: ws-beta");
    let (doc, field, message) = decode_err("list.yaml", &bad);
    assert_eq!(doc, Some(1));
    assert_eq!(field, "items[1].spec.namespaceNme");
    assert!(message.contains("unknown field"), "{message}");
}

#[test]
fn unknown_fields_are_named_with_their_path() {
    let cases = [
        ("metadata:\n  name: a\n  lables: {}\n", "metadata.lables"),
        (
            "metadata: {name: a}\nspec:\n  publik: true\n",
            "spec.publik",
        ),
        ("metadata: {name: a}\nspce: {}\n", "spce"),
    ];
    for (body, path) in cases {
        let text = format!("apiVersion: portcullis.dev/v1alpha1\nkind: Client\n{body}");
        let (_, field, _) = decode_err("c.yaml", &text);
        assert_eq!(field, path);
    }
    let rules = "apiVersion: portcullis.dev/v1alpha1\nkind: KommanderRole\nmetadata: {name: r}\n\
                 rules:\n- verbs: [get]\n  resources: [pods]\n- verbs: [get]\n  verb: [list]\n";
    assert_eq!(decode_err("r.yaml", rules).1, "rules[1].verb");
    let json = br#"{"apiVersion":"portcullis.dev/v1alpha1","kind":"Client","metadata":{"name":"a"},
        "spec":{"redirectURIs":["https://a"],"grantTypes":["password"]}}"#;
    match decode_json(json) {
        Err(Error::Decode {
            field,
            message,
            unknown_field,
            ..
        }) => {
            assert_eq!(field, "spec.grantTypes[0]");
            assert!(message.contains("unknown variant `password`"), "{message}");
            // A bad value is not an unknown field (422, not strict decoding's 400).
            assert!(!unknown_field);
        }
        other => panic!("{other:?}"),
    }
    // The unknown fields above are flagged as such.
    for (body, _) in cases {
        let text = format!("apiVersion: portcullis.dev/v1alpha1\nkind: Client\n{body}");
        assert!(matches!(
            decode_yaml_documents("c.yaml", &text),
            Err(Error::Decode {
                unknown_field: true,
                ..
            })
        ));
    }
}

#[test]
fn errors_name_source_and_document() {
    let text = format!(
        "{}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Group\nmetadata: {{name: g}}\nspec: {{users: a}}\n",
        data("group.yaml")
    );
    let err = decode_yaml_documents("groups.yaml", &text).unwrap_err();
    assert_eq!(
        err.to_string().split(": invalid type").next().unwrap(),
        "groups.yaml: document 2: spec.users"
    );
}

#[test]
fn kind_and_api_version_are_checked_against_the_registry() {
    let (_, field, message) = decode_err(
        "x",
        "apiVersion: portcullis.dev/v1alpha1\nkind: Secret\nmetadata: {name: a}\n",
    );
    assert_eq!(field, "kind");
    assert!(message.contains("Workspace, Project, Cluster"), "{message}");
    let (_, field, message) = decode_err(
        "x",
        "apiVersion: v1\nkind: Workspace\nmetadata: {name: a}\n",
    );
    assert_eq!(field, "apiVersion");
    assert!(message.contains("portcullis.dev/v1alpha1"), "{message}");
    let (_, field, _) = decode_err("x", "kind: Workspace\n");
    assert_eq!(field, "apiVersion");
    let (_, field, _) = decode_err("x", "apiVersion: portcullis.dev/v1alpha1\n");
    assert_eq!(field, "kind");
    let (_, field, _) = decode_err("x", "- a\n- b\n");
    assert_eq!(field, "");
}

#[test]
fn duplicate_keys_are_refused() {
    let text = "apiVersion: portcullis.dev/v1alpha1\nkind: Group\nmetadata: {name: a}\nmetadata: {name: b}\n";
    assert!(decode_yaml_documents("d", text).is_err());
    let json = br#"{"apiVersion":"portcullis.dev/v1alpha1","kind":"Group","metadata":{"name":"a","name":"b"}}"#;
    assert!(decode_json(json).is_err());
}

#[test]
fn empty_documents_are_skipped() {
    let text = format!("---\n---\n{}\n---\n", data("group.yaml"));
    assert_eq!(decode_yaml_documents("e", &text).unwrap().len(), 1);
    assert!(decode_yaml_documents("e", "").unwrap().is_empty());
}

#[test]
fn alias_bombs_are_refused() {
    // "Billion laughs": each level doubles the previous ten times.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    text.push_str("apiVersion: portcullis.dev/v1alpha1\nkind: Group\n");
    let err = decode_yaml_documents("bomb.yaml", &text).unwrap_err();
    assert!(err.to_string().starts_with("bomb.yaml: "), "{err}");
}

#[test]
fn deep_nesting_is_refused() {
    let head = "apiVersion: portcullis.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: a\n";
    let flow = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let err = decode_yaml_documents("deep.yaml", &format!("{head}  managedFields: {flow}\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("depth") || err.contains("nesting"), "{err}");
    let block: String = (0..100)
        .map(|i| format!("  {}- \n", "  ".repeat(i)))
        .collect();
    let err = decode_yaml_documents("deep.yaml", &format!("{head}  managedFields:\n{block}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("depth") || err.contains("nesting"), "{err}");
    let nested = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let deep_json = format!(
        r#"{{"apiVersion":"portcullis.dev/v1alpha1","kind":"Group","metadata":{{"managedFields":[{nested}]}}}}"#
    );
    let err = decode_json(deep_json.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("recursion limit"), "{err}");
}

#[test]
fn oversized_input_is_refused() {
    let big = vec![b' '; portcullis_model::decode::MAX_JSON_BYTES + 1];
    assert!(decode_json(&big).unwrap_err().to_string().contains("limit"));
}

#[test]
fn real_kubernetes_metadata_is_accepted() {
    let text = "apiVersion: portcullis.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: a\n  \
        generateName: a-\n  selfLink: /apis/portcullis.dev/v1alpha1/workspaces/a\n  \
        deletionGracePeriodSeconds: 0\n  deletionTimestamp: \"2026-01-01T00:00:00Z\"\n  \
        finalizers: [portcullis.dev/namespace]\n  ownerReferences:\n  - apiVersion: v1\n    \
        kind: Namespace\n    name: x\n    uid: \"1\"\n  managedFields:\n  - manager: kubectl\n    \
        operation: Update\n    fieldsV1: {\"f:spec\": {}}\n";
    let r = decode_yaml_documents("m", text).unwrap();
    assert_eq!(r[0].meta().managed_fields.len(), 1);
}

#[test]
fn json_must_be_one_object() {
    let group =
        br#"{"apiVersion":"portcullis.dev/v1alpha1","kind":"Group","metadata":{"name":"g"}}"#;
    assert!(decode_json(group).is_ok());
    let mut trailing = group.to_vec();
    trailing.extend_from_slice(b" {}");
    assert!(
        decode_json(&trailing)
            .unwrap_err()
            .to_string()
            .contains("trailing")
    );
    let err = decode_json(b"[1]").unwrap_err().to_string();
    assert!(err.contains("must be a JSON object"), "{err}");
    let err = decode_json(b"{\"apiVersion\":").unwrap_err().to_string();
    assert!(err.contains("EOF"), "{err}");
}

#[test]
fn lists_are_not_taken_for_mappings() {
    let head = "apiVersion: portcullis.dev/v1alpha1\nkind: Project\n";
    let (_, field, message) = decode_err("p", &format!("{head}metadata: [checkout, ws]\n"));
    assert_eq!(field, "metadata");
    assert!(message.contains("expected a mapping"), "{message}");
    let text = format!(
        "{head}metadata: {{name: p, namespace: ws}}\nspec:\n  namespaceName: p\n  placement:\n    clusters: [[a]]\n"
    );
    assert_eq!(decode_err("p", &text).1, "spec.placement.clusters[0]");
    let text =
        format!("{head}metadata: {{name: p}}\nspec:\n  placement:\n    clusterSelector: [{{}}]\n");
    assert_eq!(decode_err("p", &text).1, "spec.placement.clusterSelector");
    let json = br#"{"apiVersion":"portcullis.dev/v1alpha1","kind":"Group","metadata":["g"]}"#;
    match decode_json(json) {
        Err(Error::Decode { field, .. }) => assert_eq!(field, "metadata"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn resources_serialise_as_their_objects() {
    let rs = decode_yaml_documents("roles.yaml", &data("roles.yaml")).unwrap();
    let json = serde_json::to_value(&rs).unwrap();
    assert_eq!(json[0]["kind"], "KommanderRole");
    assert_eq!(json[3]["roleRef"]["kind"], "ClusterScopeRole");
    assert_eq!(json[2], rs[2].to_json_value());
}

// === local files ===

/// A YAML list of `n` small mappings: about 3 nodes and 12 bytes each.
fn many_nodes(n: usize) -> String {
    let mut text = String::from("items:\n");
    for i in 0..n {
        text.push_str(&format!("- {{n: {i}}}\n"));
    }
    text
}

#[test]
fn local_yaml_files_get_budgets_that_grow_with_their_size() {
    use portcullis_model::decode::local_documents;
    // 400,000 nodes: over the fixed budget that network input keeps (250,000).
    let text = many_nodes(130_000);
    let err = decode_yaml_documents("big.yaml", &text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("budget"), "{err}");
    let docs = local_documents(&text).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["items"].as_array().unwrap().len(), 130_000);
    // Empty documents hold nothing.
    assert_eq!(local_documents("---\n---\na: 1\n---\n").unwrap().len(), 1);
}

#[test]
fn local_yaml_files_keep_the_alias_and_depth_limits() {
    use portcullis_model::decode::local_documents;
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    // However large the file around it.
    bomb.push_str(&many_nodes(100_000).replace("items:", "padding:"));
    let err = local_documents(&bomb).unwrap_err();
    assert!(err.starts_with("not valid YAML or JSON: "), "{err}");
    assert!(err.contains("alias") || err.contains("budget"), "{err}");
    let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
    let err = local_documents(&deep).unwrap_err();
    assert!(err.contains("depth") || err.contains("nesting"), "{err}");
}

#[test]
fn local_json_files_are_read_as_json() {
    use portcullis_model::decode::local_documents;
    // One value, several after one another, and a List of many items.
    assert_eq!(local_documents(r#"{"a": 1}"#).unwrap().len(), 1);
    assert_eq!(
        local_documents("{\"a\": 1}\n{\"b\": 2}\n").unwrap().len(),
        2
    );
    let items: Vec<String> = (0..300_000).map(|i| format!("{{\"n\":{i}}}")).collect();
    let list = format!("{{\"kind\":\"List\",\"items\":[{}]}}", items.join(","));
    let docs = local_documents(&list).unwrap();
    assert_eq!(docs[0]["items"].as_array().unwrap().len(), 300_000);
    // A YAML flow mapping starts like JSON, and is still read.
    assert_eq!(local_documents("{a: 1}\n").unwrap()[0]["a"], 1);
    // Neither: both errors are named, with JSON's line and column.
    let err = local_documents("{\"a\": [1,\n 2,,]}").unwrap_err();
    assert!(
        err.starts_with("not valid JSON (") && err.contains("line 2"),
        "{err}"
    );
    assert!(err.contains("nor YAML"), "{err}");
}

#[test]
fn a_clients_id_token_algorithm_is_one_the_issuer_can_sign_with() {
    let clients = decode_yaml_documents("client.yaml", &data("client.yaml")).unwrap();
    let Resource::Client(dashboard) = &clients[1] else {
        panic!("{:?}", clients[1])
    };
    assert_eq!(
        dashboard.spec.id_token_signing_alg(),
        portcullis_model::IdTokenSigningAlg::ES256
    );
    let Resource::Client(kubectl) = &clients[0] else {
        panic!("{:?}", clients[0])
    };
    // OpenID Connect Dynamic Client Registration 1.0 §2: RS256 when not registered.
    assert_eq!(kubectl.spec.id_token_signed_response_alg, None);
    assert_eq!(
        kubectl.spec.id_token_signing_alg(),
        portcullis_model::IdTokenSigningAlg::RS256
    );
    for bad in ["HS256", "none", "rs256"] {
        let text = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: Client\nmetadata: {{name: c}}\nspec:\n  \
             public: true\n  redirectURIs: [http://127.0.0.1]\n  idTokenSignedResponseAlg: {bad}\n"
        );
        let (_, field, message) = decode_err("c.yaml", &text);
        assert!(
            field.contains("idTokenSignedResponseAlg") || message.contains("RS256"),
            "{bad}: {field}: {message}"
        );
    }
}
