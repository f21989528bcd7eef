//! OpenAPI v3 schemas of the kinds, for the management API's `/openapi/v3` and for
//! `kubectl explain`.
//!
//! The schemas describe what decoding accepts (the serde shape, with every field's rustdoc
//! as its description and `additionalProperties: false` where unknown fields are refused).
//! Value rules that only [`validate`](crate::validate) checks (name syntax, URL rules) are
//! not in the schema.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::registry::{kind_by_name, kinds, root_schema};

/// The OpenAPI 3.0 schema of one kind (`Workspace`), self-contained (no `$ref`), with
/// Kubernetes' `x-kubernetes-group-version-kind` extension; `None` for an unknown kind.
pub fn openapi_schema(kind: &str) -> Option<Value> {
    let info = kind_by_name(kind)?;
    let settings = SchemaSettings::openapi3().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let schema = root_schema(info.kind, settings.into_generator())?;
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.insert(
            "x-kubernetes-group-version-kind".to_owned(),
            json!([{ "group": info.group, "version": info.version, "kind": info.kind }]),
        );
    }
    Some(value)
}

/// The name of a kind's schema in an OpenAPI document, in Kubernetes' reverse-domain
/// form: `dev.portcullis.v1alpha1.Workspace`.
pub fn openapi_schema_name(kind: &str) -> Option<String> {
    let info = kind_by_name(kind)?;
    let group: Vec<&str> = info.group.split('.').rev().collect();
    Some(format!(
        "{}.{}.{}",
        group.join("."),
        info.version,
        info.kind
    ))
}

/// An OpenAPI 3.0 document with every kind's schema under `components.schemas` (named by
/// [`openapi_schema_name`]) and no paths; the server adds the paths it serves.
pub fn openapi_document() -> Value {
    let mut schemas = Map::new();
    for info in kinds() {
        if let (Some(name), Some(schema)) =
            (openapi_schema_name(info.kind), openapi_schema(info.kind))
        {
            schemas.insert(name, schema);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "portcullis", "version": crate::VERSION },
        "paths": {},
        "components": { "schemas": schemas },
    })
}
