//! `Workspace`: a group of clusters and projects that owns a namespace on the management plane.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, LocalObjectReference};
use crate::kinds::spec_kind;
use crate::syntax;
use crate::validation::{
    DESCRIPTION_MAX_LEN, DISPLAY_NAME_MAX_LEN, Errors, conditions, object_ref, reserved_namespace,
};

spec_kind!(
    /// A group of clusters and projects (cluster-scoped).
    ///
    /// A workspace owns one namespace on the management plane: `spec.namespaceName`, or the
    /// workspace's own name when that is empty. Its clusters, projects and workspace-scoped
    /// roles and bindings live in that namespace; `status.namespaceRef` records the namespace
    /// once it exists.
    Workspace,
    WorkspaceSpec,
    WorkspaceStatus
);

/// Desired state of a [`Workspace`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceSpec {
    /// Human-readable name shown in the dashboard.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Namespace the workspace owns on the management plane (a DNS-1123 label); empty means
    /// the workspace's name. Immutable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_name: String,
}

/// Observed state of a [`Workspace`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceStatus {
    /// The namespace the workspace owns, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_ref: Option<LocalObjectReference>,
    /// Current conditions (e.g. `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Workspace {
    /// The namespace this workspace owns: `status.namespaceRef`, else `spec.namespaceName`,
    /// else the workspace's name.
    pub fn namespace_name(&self) -> &str {
        if let Some(r) = self.status.as_ref().and_then(|s| s.namespace_ref.as_ref()) {
            return &r.name;
        }
        if self.spec.namespace_name.is_empty() {
            &self.metadata.name
        } else {
            &self.spec.namespace_name
        }
    }
}

// === validation ===

impl Workspace {
    pub(crate) fn validate_fields(&self, errs: &mut Errors) {
        let spec = &self.spec;
        errs.max_len("spec.displayName", &spec.display_name, DISPLAY_NAME_MAX_LEN);
        errs.max_len("spec.description", &spec.description, DESCRIPTION_MAX_LEN);
        if spec.namespace_name.is_empty() {
            // The namespace defaults to the name, which the metadata checks already
            // hold to the DNS-1123 label rule.
            if let Some(m) = reserved_namespace(&self.metadata.name) {
                errs.forbidden("metadata.name", format!("{m}, or set spec.namespaceName"));
            }
        } else {
            errs.check(
                "spec.namespaceName",
                syntax::dns1123_label(&spec.namespace_name),
            );
            if let Some(m) = reserved_namespace(&spec.namespace_name) {
                errs.forbidden("spec.namespaceName", m);
            }
        }
        if let Some(status) = &self.status {
            if let Some(r) = &status.namespace_ref {
                object_ref(errs, "status.namespaceRef", r, syntax::dns1123_label);
            }
            conditions(errs, "status.conditions", &status.conditions);
        }
    }
}
