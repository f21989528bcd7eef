//! Delivery (feature `delivery`): making every cluster hold what the plan says, and keeping it so.
//!
//! - [`kube`]: the Kubernetes sink. Server-side apply (`fieldManager=portcullis`, never forced)
//!   of only the fields portcullis owns; a GET before creating, so that an object that exists
//!   without [`MANAGED_BY_LABEL`](crate::objects::MANAGED_BY_LABEL) is reported as a conflict and
//!   left alone; garbage collection that lists by that label and deletes only what carries it;
//!   project namespaces created where missing (the label then marks them as portcullis's own)
//!   and deleted only when they carry it.
//! - [`reconciler`]: level-triggered, one worker per cluster. A worker compares the cluster's
//!   desired set (from the latest [`Plan`](crate::Plan)) with what it observes there (a cache
//!   filled by a LIST and kept by a watch on the managed-by label), and applies and deletes the
//!   difference. Wakes coalesce, passes run under a concurrency bound, a failing cluster backs
//!   off exponentially with jitter, a full resync runs at start and periodically, and a watch
//!   event that shows a manual edit or deletion wakes the worker to repair it (**drift
//!   repair**), unless the object is annotated [`PAUSED_ANNOTATION`]` = "true"`.
//! - [`gitops`]: the GitOps sink: `DIR/<cluster>/` holds each desired object as YAML and a
//!   `kustomization.yaml`, deterministic, rewritten only where bytes change.
//! - [`status`]: the status board (per cluster and per object: applied content hash, last sync,
//!   last error, drift repairs, conflicts) and its Kubernetes-style conditions; [`metrics`]:
//!   Prometheus metrics (propagation latency, errors and objects by cluster).
//!
//! # How the management server drives it
//!
//! ```no_run
//! # async fn demo(
//! #     mut planner: portcullis_federation::Planner,
//! #     change: portcullis_federation::Change,
//! #     connector: std::sync::Arc<dyn portcullis_federation::delivery::Connector>,
//! # ) -> Result<(), portcullis_federation::delivery::DeliveryError> {
//! use std::sync::Arc;
//! use portcullis_federation::delivery::{Reconciler, ReconcilerConfig, StatusBoard};
//!
//! let board = StatusBoard::new();
//! let reconciler = Reconciler::start(
//!     ReconcilerConfig::default(),
//!     connector, // cluster name → kube client configuration (credentials from the store)
//!     Arc::new(planner.plan().clone()),
//!     board.clone(),
//!     None, // or Some(DeliveryMetrics::register(&mut registry))
//! );
//! // For every change the store's watch reports:
//! let delta = planner.apply(change);
//! reconciler.publish(Arc::new(planner.plan().clone()), &delta);
//! // `cluster detach NAME --cleanup`:
//! let report = reconciler.cleanup("prod-eu").await?;
//! # drop((report, board)); Ok(()) }
//! ```

pub mod gitops;
pub mod kube;
pub mod metrics;
pub mod reconciler;
pub mod status;

mod compare;

use std::sync::Arc;

use futures::future::BoxFuture;

pub use gitops::{GitOpsSink, WriteReport};
pub use kube::{ApplyOutcome, CleanupReport, KubeCluster, config_from_kubeconfig};
pub use metrics::DeliveryMetrics;
pub use reconciler::{Reconciler, ReconcilerConfig};
pub use status::{ClusterStatus, Condition, ObjectStatus, StatusBoard};

/// Annotation that stops drift repair and garbage collection of one object: with value
/// `"true"`, portcullis leaves the object as it is (a manual fix during an incident, say).
pub const PAUSED_ANNOTATION: &str = "portcullis.dev/paused";

/// The field manager of every write portcullis makes.
pub const FIELD_MANAGER: &str = "portcullis";

/// What went wrong while delivering.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The cluster has no usable connection settings.
    #[error(
        "cluster {cluster:?} has no usable credentials: {message}; attach it again with portcullis cluster attach"
    )]
    NoCredentials {
        /// The cluster.
        cluster: String,
        /// Why.
        message: String,
    },
    /// A request to the cluster failed (unreachable, refused, timed out, or an API error).
    #[error("cluster {cluster:?}: {message}")]
    Cluster {
        /// The cluster.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// The cluster refused a request about one object (invalid, forbidden, a failed
    /// precondition): the other objects are still delivered.
    #[error("cluster {cluster:?} refused: {message}")]
    Rejected {
        /// The cluster.
        cluster: String,
        /// What was refused, and why.
        message: String,
    },
    /// A kubeconfig could not be read.
    #[error("kubeconfig: {0}; check the file and the context name")]
    Kubeconfig(String),
    /// Writing the GitOps directory failed.
    #[error("writing {path}: {message}; check that the directory is writable")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        message: String,
    },
}

/// Where the connection settings of each cluster come from: the management server implements
/// it over its store (the sealed credentials of `cluster attach`); tests map names to doubles.
pub trait Connector: Send + Sync + 'static {
    /// The kube client configuration of `cluster` (API URL, CA, credentials), or
    /// [`DeliveryError::NoCredentials`] when it has none. Asked again after every failed pass,
    /// so that new credentials or a new address take effect without a restart.
    fn config(&self, cluster: &str) -> BoxFuture<'_, Result<::kube_client::Config, DeliveryError>>;
}

impl<F> Connector for F
where
    F: Fn(&str) -> Result<::kube_client::Config, DeliveryError> + Send + Sync + 'static,
{
    fn config(&self, cluster: &str) -> BoxFuture<'_, Result<::kube_client::Config, DeliveryError>> {
        let result = self(cluster);
        Box::pin(async move { result })
    }
}

/// Installs aws-lc-rs as the process's rustls provider if none is (kube-client builds its TLS
/// configuration from the process default; ring is never linked).
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// A shared connector.
pub type SharedConnector = Arc<dyn Connector>;
