//! OpenAPI v3 documents: the model's schemas plus one path item per served collection and
//! object, with the `x-kubernetes-*` extensions kubectl reads (it checks the PATCH operation
//! for a `fieldValidation` parameter before it trusts the server to validate strictly, and
//! its content types to choose the patch format).

use serde_json::{Map, Value, json};

use super::registry::{Registry, ResourceType};

/// The document of one group/version: the model's component schemas and generated paths.
pub fn group_version_document(
    registry: &Registry,
    group: &str,
    version: &str,
    mut doc: Value,
) -> Value {
    let mut paths = Map::new();
    for rt in registry
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let scopes: &[bool] = if rt.namespaced {
            &[true, false]
        } else {
            &[false]
        };
        for &namespaced in scopes {
            let base = if namespaced {
                format!(
                    "/apis/{group}/{version}/namespaces/{{namespace}}/{}",
                    rt.plural
                )
            } else {
                format!("/apis/{group}/{version}/{}", rt.plural)
            };
            paths.insert(base.clone(), collection(rt, namespaced));
            if namespaced || !rt.namespaced {
                paths.insert(format!("{base}/{{name}}"), item(rt, namespaced));
            }
        }
    }
    if let Some(o) = doc.as_object_mut() {
        o.insert("paths".into(), Value::Object(paths));
    }
    // Kinds the base document has no schema for (the review kinds the server adds to a
    // group): an open object schema, so that every generated path resolves.
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for rt in registry
            .types()
            .iter()
            .filter(|t| t.group == group && t.version == version)
        {
            schemas
                .entry(schema_name(rt))
                .or_insert_with(|| open_schema(rt));
        }
    }
    doc
}

/// An object schema that takes any field, carrying the kind's group-version-kind.
fn open_schema(rt: &ResourceType) -> Value {
    json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-group-version-kind": [gvk(rt)],
    })
}

/// A document for kinds that have no generated schema: each kind an open object schema carrying
/// its group-version-kind, so that kubectl can find it.
pub fn generic_document(registry: &Registry, group: &str, version: &str) -> Value {
    let mut schemas = Map::new();
    for rt in registry
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        schemas.insert(schema_name(rt), open_schema(rt));
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "portcullis", "version": version },
        "paths": {},
        "components": { "schemas": schemas },
    })
}

fn schema_ref(rt: &ResourceType) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", schema_name(rt)) })
}

/// `dev.portcullis.v1alpha1.Workspace`: the reversed group, the version and the kind.
fn schema_name(rt: &ResourceType) -> String {
    let group: Vec<&str> = rt.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), rt.version, rt.kind)
}

fn gvk(rt: &ResourceType) -> Value {
    json!({ "group": rt.group, "version": rt.version, "kind": rt.kind })
}

fn query(name: &str, ty: &str) -> Value {
    json!({ "name": name, "in": "query", "schema": { "type": ty, "uniqueItems": true } })
}

fn path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "uniqueItems": true } })
}

fn op(
    rt: &ResourceType,
    action: &str,
    id: &str,
    params: Vec<Value>,
    body: Option<Value>,
    ok: Value,
) -> Value {
    let mut o = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(rt),
        "parameters": params,
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": ok } } },
            "401": { "description": "Unauthorized" },
        },
    });
    if let (Some(b), Some(m)) = (body, o.as_object_mut()) {
        m.insert("requestBody".into(), b);
    }
    o
}

fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema }, "application/yaml": { "schema": schema } } })
}

fn scope_params(namespaced: bool) -> Vec<Value> {
    if namespaced {
        vec![path_param("namespace")]
    } else {
        vec![]
    }
}

fn collection(rt: &ResourceType, namespaced: bool) -> Value {
    let suffix = if namespaced {
        "Namespaced"
    } else if rt.namespaced {
        "ForAllNamespaces"
    } else {
        ""
    };
    let list = [
        "labelSelector",
        "fieldSelector",
        "continue",
        "resourceVersion",
    ]
    .iter()
    .map(|n| query(n, "string"))
    .chain(
        ["limit", "timeoutSeconds"]
            .iter()
            .map(|n| query(n, "integer")),
    )
    .chain(std::iter::once(query("watch", "boolean")))
    .collect();
    let mut item = Map::new();
    item.insert("parameters".into(), Value::Array(scope_params(namespaced)));
    item.insert(
        "get".into(),
        op(
            rt,
            "list",
            &format!("list{suffix}{}", rt.kind),
            list,
            None,
            json!({ "type": "object" }),
        ),
    );
    if namespaced || !rt.namespaced {
        item.insert(
            "post".into(),
            op(
                rt,
                "post",
                &format!("create{suffix}{}", rt.kind),
                vec![
                    query("fieldValidation", "string"),
                    query("dryRun", "string"),
                ],
                Some(json_body(schema_ref(rt))),
                schema_ref(rt),
            ),
        );
    }
    Value::Object(item)
}

fn item(rt: &ResourceType, namespaced: bool) -> Value {
    let suffix = if namespaced { "Namespaced" } else { "" };
    let mut params = scope_params(namespaced);
    params.push(path_param("name"));
    let patch_body = json!({
        "required": true,
        "content": {
            "application/merge-patch+json": { "schema": { "type": "object" } },
            "application/json-patch+json": { "schema": { "type": "array", "items": { "type": "object" } } },
        },
    });
    json!({
        "parameters": params,
        "get": op(rt, "get", &format!("read{suffix}{}", rt.kind), vec![], None, schema_ref(rt)),
        "put": op(rt, "put", &format!("replace{suffix}{}", rt.kind), vec![query("fieldValidation", "string")], Some(json_body(schema_ref(rt))), schema_ref(rt)),
        "patch": op(rt, "patch", &format!("patch{suffix}{}", rt.kind), vec![query("fieldValidation", "string")], Some(patch_body), schema_ref(rt)),
        "delete": op(rt, "delete", &format!("delete{suffix}{}", rt.kind), vec![], None, json!({ "type": "object" })),
    })
}
