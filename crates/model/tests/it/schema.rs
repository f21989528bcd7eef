//! OpenAPI schemas of the kinds.

use portcullis_model::{kinds, openapi_document, openapi_schema, openapi_schema_name};
use serde_json::Value;

/// Every `$ref` in a schema (there must be none: schemas are self-contained).
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_kind_has_a_self_contained_schema() {
    for info in kinds() {
        let s = openapi_schema(info.kind).unwrap();
        assert_eq!(s["type"], "object", "{}", info.kind);
        assert_eq!(s["additionalProperties"], false, "{}", info.kind);
        assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], info.kind);
        let props = s["properties"].as_object().unwrap();
        for field in ["apiVersion", "kind", "metadata"] {
            assert!(props.contains_key(field), "{} lacks {field}", info.kind);
        }
        let mut found = Vec::new();
        refs(&s, &mut found);
        assert!(found.is_empty(), "{}: {found:?}", info.kind);
    }
    assert!(openapi_schema("Secret").is_none());
}

#[test]
fn schemas_use_kubernetes_spelling_and_docs() {
    let client = openapi_schema("Client").unwrap();
    let spec = &client["properties"]["spec"]["properties"];
    assert!(
        spec["redirectURIs"]["description"]
            .as_str()
            .unwrap()
            .contains("redirect_uri")
    );
    assert_eq!(spec["public"]["type"], "boolean");
    let grants = spec["grantTypes"]["items"].to_string();
    assert!(
        grants.contains("\"urn:ietf:params:oauth:grant-type:device_code\""),
        "{grants}"
    );
    let cluster = openapi_schema("Cluster").unwrap();
    assert!(
        cluster["properties"]["spec"]["properties"]
            .get("apiServerURL")
            .is_some()
    );
    let role = openapi_schema("KommanderRole").unwrap();
    let rule = &role["properties"]["rules"]["items"]["properties"];
    assert!(rule.get("nonResourceURLs").is_some());
}

#[test]
fn document_lists_every_kind() {
    let doc = openapi_document();
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert_eq!(schemas.len(), kinds().len());
    assert_eq!(
        openapi_schema_name("Workspace").unwrap(),
        "dev.portcullis.v1alpha1.Workspace"
    );
    assert!(schemas.contains_key("dev.portcullis.v1alpha1.ClusterScopeRoleBinding"));
}
