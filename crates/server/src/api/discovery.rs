//! API discovery documents (`/api`, `/apis`, `/apis/GROUP`, `/apis/GROUP/VERSION`) in the
//! legacy (unaggregated) form that every kubectl understands.

use serde_json::{Value, json};

use super::registry::Registry;

/// `/api`: the core group's versions: none, portcullis serves no core resources (kubectl
/// treats an advertised version with no resources as a discovery failure).
pub fn core_versions() -> Value {
    json!({ "kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": [] })
}

/// `/api/v1`.
pub fn core_resources() -> Value {
    json!({ "kind": "APIResourceList", "groupVersion": "v1", "resources": [] })
}

fn group(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v }))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn groups(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .map(|(g, vs)| group(g, vs))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/GROUP`, or `None` when the group is not served.
pub fn api_group(registry: &Registry, name: &str) -> Option<Value> {
    registry
        .groups()
        .iter()
        .find(|(g, _)| g == name)
        .map(|(g, vs)| {
            let mut v = group(g, vs);
            if let Some(o) = v.as_object_mut() {
                o.insert("kind".into(), json!("APIGroup"));
                o.insert("apiVersion".into(), json!("v1"));
            }
            v
        })
}

/// `/apis/GROUP/VERSION`, or `None` when not served.
pub fn resources(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<_> = registry
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in types {
        resources.push(json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": if t.review.is_some() {
                json!(["create"])
            } else {
                json!(["create", "delete", "get", "list", "patch", "update", "watch"])
            },
            "shortNames": t.short_names,
        }));
        if t.has_status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    }))
}
