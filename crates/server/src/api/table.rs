//! `meta.k8s.io/v1` `Table` responses, which `kubectl get` asks for and prints as columns.

use serde_json::{Value, json};

/// A table with NAME and AGE columns (plus NAMESPACE when objects have one, as kubectl's
/// `-A` expects it from the server) for `items`.
pub fn table(items: &[Value], list_metadata: Value) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let name = item.pointer("/metadata/name").cloned().unwrap_or(json!(""));
            let age = item
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| human_duration(now - t))
                .unwrap_or_else(|| "<unknown>".into());
            json!({
                "cells": [name, age],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item.get("metadata").cloned().unwrap_or(json!({})),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": [
            { "name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0 },
            { "name": "Age", "type": "string", "format": "", "description": "Time since the object was created.", "priority": 0 },
        ],
        "rows": rows,
    })
}

/// Durations as kubectl prints ages: `45s`, `12m`, `5h`, `3d`, `2y`.
pub fn human_duration(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s if s < 86400 * 365 * 2 => format!("{}d", s / 86400),
        s => format!("{}y", s / (86400 * 365)),
    }
}
