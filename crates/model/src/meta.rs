//! `metadata` of every object, spelled as Kubernetes' `meta/v1` `ObjectMeta`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Standard object metadata (`metadata`), as `meta/v1` `ObjectMeta`.
///
/// Every field that `meta/v1` `ObjectMeta` has today is accepted, so that objects dumped
/// from a real Kubernetes API server (`kubectl get -o yaml`) decode; any other field is
/// rejected. Fields the server owns (`uid`, `resourceVersion`, `generation`,
/// `creationTimestamp`, `deletionTimestamp`, `deletionGracePeriodSeconds`, `selfLink`,
/// `managedFields`) are accepted on input so that objects read back from the API round-trip;
/// the server overwrites them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Object name, unique within its kind and namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Prefix from which the server generates a unique name when `name` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Namespace of a namespaced object; empty for cluster-scoped ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Deprecated read-only link to the object; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
    /// Identifying labels, selectable with label selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Non-identifying annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Server-assigned unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Opaque version for optimistic concurrency (the store revision of the last write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Sequence number of spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// RFC 3339 time at which deletion was requested (set while finalizers remain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Seconds the object is allowed to terminate gracefully once deletion was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Finalizers that must be removed before the object is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Objects this one depends on (garbage collection ties).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// Server-side apply field ownership, kept as opaque JSON (portcullis does not
    /// interpret it, but must not lose it on a round trip).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<serde_json::Value>,
}

/// Reference to an owning object, as `meta/v1` `OwnerReference`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    /// API version of the owner.
    pub api_version: String,
    /// Kind of the owner.
    pub kind: String,
    /// Name of the owner.
    pub name: String,
    /// UID of the owner.
    pub uid: String,
    /// True if the owner is the managing controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// True if the owner cannot be deleted from the store until this object is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

impl ObjectMeta {
    /// The namespace, or `""` for a cluster-scoped object.
    pub fn namespace_str(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata as `kubectl get -o json` prints it for a real object.
    #[test]
    fn accepts_real_kubernetes_metadata() {
        let json = r#"{
            "name": "web", "generateName": "web-", "namespace": "default",
            "selfLink": "/api/v1/namespaces/default/pods/web",
            "uid": "8b7f1d6c-0c5e-4a53-9d0e-2c6a1c1d2e3f", "resourceVersion": "12345",
            "generation": 2, "creationTimestamp": "2024-01-02T03:04:05Z",
            "deletionTimestamp": "2024-01-03T03:04:05Z", "deletionGracePeriodSeconds": 30,
            "labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["x.io/y"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                "uid": "1", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kubectl", "operation": "Apply",
                "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
        }"#;
        let meta: ObjectMeta = serde_json::from_str(json).unwrap();
        assert_eq!(meta.deletion_grace_period_seconds, Some(30));
        assert_eq!(meta.owner_references[0].controller, Some(true));
        let back: ObjectMeta =
            serde_json::from_value(serde_json::to_value(&meta).unwrap()).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn rejects_unknown_fields() {
        let err = serde_json::from_str::<ObjectMeta>(r#"{"name":"a","lables":{}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `lables`"), "{err}");
        assert!(
            serde_json::from_str::<ObjectMeta>(
                r#"{"ownerReferences":[{"apiVersion":"v1","kind":"A","name":"a","uid":"1","x":1}]}"#
            )
            .is_err()
        );
    }
}
