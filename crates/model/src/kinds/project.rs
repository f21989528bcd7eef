//! `Project`: a namespace that exists on a chosen subset of a workspace's clusters.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::LabelSelector;
use crate::common::{Condition, LocalObjectReference};
use crate::kinds::spec_kind;
use crate::syntax;
use crate::validation::{
    DISPLAY_NAME_MAX_LEN, Errors, conditions, label_selector, object_ref, reserved_namespace,
};

spec_kind!(
    /// A namespace placed on a subset of a workspace's clusters (namespaced: lives in its
    /// workspace's namespace).
    ///
    /// `spec.namespaceName` is the project namespace, created on every placed cluster and on
    /// the management plane, where project-scoped roles and bindings live.
    Project,
    ProjectSpec,
    ProjectStatus
);

/// Desired state of a [`Project`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSpec {
    /// Human-readable name shown in the dashboard.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// The project namespace (a DNS-1123 label). Required and immutable.
    #[serde(default)]
    pub namespace_name: String,
    /// Which of the workspace's clusters the project is placed on.
    #[serde(default)]
    pub placement: ProjectPlacement,
}

/// The clusters a [`Project`] is placed on: the union of the named clusters and the
/// clusters whose labels match `clusterSelector`.
///
/// An absent `clusterSelector` selects no cluster; an empty one (`{}`) selects every
/// cluster of the workspace, as Kubernetes label selectors do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectPlacement {
    /// Clusters of the workspace, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<LocalObjectReference>,
    /// Clusters of the workspace, by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
}

/// Observed state of a [`Project`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectStatus {
    /// Names of the clusters the project is currently placed on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Current conditions (e.g. `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ProjectPlacement {
    /// Whether a cluster with this name and these labels is selected.
    pub fn selects(&self, name: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.clusters.iter().any(|c| c.name == name)
            || self
                .cluster_selector
                .as_ref()
                .is_some_and(|s| s.matches(labels))
    }
}

// === validation ===

impl Project {
    pub(crate) fn validate_fields(&self, errs: &mut Errors) {
        let spec = &self.spec;
        errs.max_len("spec.displayName", &spec.display_name, DISPLAY_NAME_MAX_LEN);
        errs.required_with(
            "spec.namespaceName",
            &spec.namespace_name,
            syntax::dns1123_label,
        );
        if let Some(m) = reserved_namespace(&spec.namespace_name) {
            errs.forbidden("spec.namespaceName", m);
        }
        if !spec.namespace_name.is_empty()
            && Some(spec.namespace_name.as_str()) == self.metadata.namespace.as_deref()
        {
            errs.invalid(
                "spec.namespaceName",
                "must differ from the workspace namespace the project lives in",
            );
        }
        for (i, c) in spec.placement.clusters.iter().enumerate() {
            object_ref(
                errs,
                &format!("spec.placement.clusters[{i}]"),
                c,
                syntax::dns1123_label,
            );
        }
        errs.unique("spec.placement.clusters", &spec.placement.clusters);
        if let Some(sel) = &spec.placement.cluster_selector {
            label_selector(errs, "spec.placement.clusterSelector", sel);
        }
        if let Some(status) = &self.status {
            errs.unique("status.clusters", &status.clusters);
            conditions(errs, "status.conditions", &status.conditions);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn placement_is_names_or_selector() {
        let prod: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
        let none = BTreeMap::new();
        let mut p = ProjectPlacement {
            clusters: vec![LocalObjectReference {
                name: "a".to_owned(),
            }],
            cluster_selector: None,
        };
        assert!(p.selects("a", &none));
        assert!(!p.selects("b", &prod));
        p.cluster_selector = Some(LabelSelector::parse("env=prod").unwrap());
        assert!(p.selects("b", &prod));
        assert!(!p.selects("b", &none));
        // An empty selector selects every cluster.
        p.cluster_selector = Some(LabelSelector::default());
        assert!(p.selects("c", &none));
    }
}
