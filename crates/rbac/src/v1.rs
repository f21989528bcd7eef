//! The `rbac.authorization.k8s.io/v1` object types, spelled as Kubernetes spells them.

use portcullis_model::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// The API group of these kinds.
pub const GROUP: &str = "rbac.authorization.k8s.io";
/// `apiVersion` of these kinds.
pub const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// One rule: verbs on resources (or on non-resource URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// Verbs, `*` for all. Missing decodes as empty (as kube-apiserver decodes it), which
    /// validation then refuses with its own message.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups (`""` is the core group), `*` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources, `*`, `resource/subresource` or `*/subresource`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Object names; when set, only requests naming one of them match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource paths, exact or with a trailing `*`.
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// Who a binding grants to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// `rbac.authorization.k8s.io` for users and groups, `""` for service accounts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    /// Name of the user, group or service account.
    pub name: String,
    /// Namespace of a service account.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// The role a binding grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRef {
    /// Always `rbac.authorization.k8s.io`.
    pub api_group: String,
    /// `Role` or `ClusterRole`.
    pub kind: String,
    /// Name of the role.
    pub name: String,
}

/// How an aggregated ClusterRole finds the roles whose rules it unites.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AggregationRule {
    /// A ClusterRole matching any selector contributes its rules.
    #[serde(default)]
    pub cluster_role_selectors: Vec<LabelSelector>,
}

/// A namespaced role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    /// `rbac.authorization.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Role`.
    #[serde(default)]
    pub kind: String,
    /// Metadata; `namespace` is required.
    pub metadata: ObjectMeta,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// A cluster-wide role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRole {
    /// `rbac.authorization.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `ClusterRole`.
    #[serde(default)]
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Rules (for an aggregated role: filled in by aggregation).
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Present on aggregated roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_rule: Option<AggregationRule>,
}

/// Grants a Role or ClusterRole in one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBinding {
    /// `rbac.authorization.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `RoleBinding`.
    #[serde(default)]
    pub kind: String,
    /// Metadata; `namespace` is required.
    pub metadata: ObjectMeta,
    /// Who.
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// Which role.
    pub role_ref: RoleRef,
}

/// Grants a ClusterRole everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRoleBinding {
    /// `rbac.authorization.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `ClusterRoleBinding`.
    #[serde(default)]
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Who.
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// Which role (a ClusterRole).
    pub role_ref: RoleRef,
}
