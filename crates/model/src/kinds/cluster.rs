//! `Cluster`: an attached Kubernetes cluster.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, LocalObjectReference};
use crate::kinds::spec_kind;
use crate::syntax;
use crate::validation::{
    DISPLAY_NAME_MAX_LEN, Errors, ca_bundle, conditions, https_url, object_ref,
};

/// The name by which plans, `explain` and `who-can --fleet` address the management plane; no
/// attached cluster may have it.
pub const MANAGEMENT_CLUSTER_NAME: &str = "management";

/// Prefix of the sealed secrets that hold attached clusters' credentials; no other object may
/// name a secret with it (a connector naming one could send a cluster's token to its server).
pub const CLUSTER_CREDENTIALS_PREFIX: &str = "cluster-credentials.";

spec_kind!(
    /// An attached Kubernetes cluster (namespaced: lives in its workspace's namespace, which
    /// is how it belongs to the workspace). Its labels, in `metadata.labels`, are what project
    /// placement selects on.
    Cluster,
    ClusterSpec,
    ClusterStatus
);

/// Desired state of a [`Cluster`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// Human-readable name shown in the dashboard.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// The cluster's API server, an absolute `https` URL without path, query or fragment
    /// (e.g. `https://k8s.example.com:6443`).
    #[serde(rename = "apiServerURL", default)]
    pub api_server_url: String,
    /// PEM bundle of the CA certificates that sign the API server's certificate; empty
    /// means the system roots.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_bundle: String,
    /// Secret in portcullis' encrypted store holding the credentials portcullis uses on the
    /// cluster (by name only: the credential itself never appears here). Absent for clusters
    /// that are managed only through GitOps output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<LocalObjectReference>,
}

/// Observed state of a [`Cluster`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterStatus {
    /// Kubernetes version reported by the cluster (`/version` `gitVersion`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// Current conditions (e.g. `Ready`, `Synced`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// === validation ===

impl Cluster {
    pub(crate) fn validate_fields(&self, errs: &mut Errors) {
        if self.metadata.name == MANAGEMENT_CLUSTER_NAME {
            errs.forbidden(
                "metadata.name",
                format!(
                    "{MANAGEMENT_CLUSTER_NAME:?} names the management plane in plans and \
                     reviews; attach the cluster under another name"
                ),
            );
        }
        let spec = &self.spec;
        errs.max_len("spec.displayName", &spec.display_name, DISPLAY_NAME_MAX_LEN);
        https_url(errs, "spec.apiServerURL", &spec.api_server_url);
        ca_bundle(errs, "spec.caBundle", &spec.ca_bundle);
        if let Some(r) = &spec.credentials_ref {
            object_ref(errs, "spec.credentialsRef", r, syntax::dns1123_subdomain);
        }
        if let Some(status) = &self.status {
            conditions(errs, "status.conditions", &status.conditions);
        }
    }
}
