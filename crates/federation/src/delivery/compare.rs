//! Whether an object on a cluster holds what portcullis planned for it: the fields portcullis
//! owns only, compared as the API server stores them (an empty list, an empty map and an absent
//! field are one thing to it).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::objects::{MANAGED_BY, MANAGED_BY_LABEL, ObjectKey, ObjectKind};

use super::PAUSED_ANNOTATION;

/// What the cache keeps of an object observed on a cluster: identity, version, and the fields
/// that matter for comparison (not `managedFields`, not `status`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observed {
    pub key: ObjectKey,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub deleting: bool,
    /// Top-level fields other than `apiVersion`, `kind`, `metadata` and `status`, normalised.
    pub body: Map<String, Value>,
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl Observed {
    /// The object `v` (JSON as the API server answers) of kind `kind`.
    pub fn from_json(kind: ObjectKind, v: &Value) -> Option<Observed> {
        let meta = v.get("metadata")?;
        let s = |k: &str| {
            meta.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let name = s("name");
        if name.is_empty() {
            return None;
        }
        let body = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                    })
                    .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Observed {
            key: ObjectKey {
                kind,
                namespace: s("namespace"),
                name,
            },
            uid: s("uid"),
            resource_version: s("resourceVersion"),
            labels: string_map(meta.get("labels")),
            annotations: string_map(meta.get("annotations")),
            deleting: meta.get("deletionTimestamp").is_some_and(|t| !t.is_null()),
            body,
        })
    }

    /// Whether it carries the managed-by label: only then is it portcullis's to change.
    pub fn is_managed(&self) -> bool {
        self.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
    }

    /// Whether it is annotated paused.
    pub fn is_paused(&self) -> bool {
        self.annotations.get(PAUSED_ANNOTATION).map(String::as_str) == Some("true")
    }

    /// Whether it holds everything `desired` (the planned object's JSON) sets: each label and
    /// annotation, and each other top-level field (lists compared whole, as RBAC's are atomic).
    pub fn matches(&self, desired: &Value) -> bool {
        let Some(d) = desired.as_object() else {
            return false;
        };
        let meta = d.get("metadata");
        let subset = |want: BTreeMap<String, String>, have: &BTreeMap<String, String>| {
            want.iter().all(|(k, v)| have.get(k) == Some(v))
        };
        if !subset(string_map(meta.and_then(|m| m.get("labels"))), &self.labels)
            || !subset(
                string_map(meta.and_then(|m| m.get("annotations"))),
                &self.annotations,
            )
        {
            return false;
        }
        d.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
            .all(|(k, v)| normalize(v).as_ref() == self.body.get(k))
    }

    /// The resourceVersion as a number, when it is one (etcd revisions are; the API calls them
    /// opaque, so a non-number compares as unknown).
    pub fn revision(&self) -> Option<u64> {
        self.resource_version.parse().ok()
    }
}

/// `v` without nulls, empty lists and empty maps (recursively); `None` when nothing is left.
pub(crate) fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(a) => {
            let items: Vec<Value> = a.iter().filter_map(normalize).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(m) => {
            let map: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observed(v: Value) -> Observed {
        Observed::from_json(ObjectKind::ClusterRole, &v).unwrap()
    }

    #[test]
    fn matches_compares_owned_fields_only() {
        let desired = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r", "labels": {"a": "1"}, "annotations": {"h": "x"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        let live = observed(
            json!({"metadata": {"name": "r", "uid": "u", "resourceVersion": "7",
            "labels": {"a": "1", "extra": "y"}, "annotations": {"h": "x", "other": "z"},
            "managedFields": []},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": []}]}),
        );
        assert!(live.matches(&desired));
        assert_eq!(live.revision(), Some(7));
        let edited = observed(json!({"metadata": {"name": "r", "labels": {"a": "1"},
            "annotations": {"h": "x"}}, "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}]}));
        assert!(!edited.matches(&desired));
        let relabelled = observed(json!({"metadata": {"name": "r", "labels": {"a": "2"},
            "annotations": {"h": "x"}}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}));
        assert!(!relabelled.matches(&desired));
        let empty = json!({"metadata": {"name": "r"}, "rules": []});
        assert!(observed(json!({"metadata": {"name": "r"}, "rules": null})).matches(&empty));
    }
}
