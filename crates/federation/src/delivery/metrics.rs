//! Prometheus metrics of delivery: how long a change takes to reach a cluster, what fails
//! where, and how much each cluster holds.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The label of per-cluster series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    /// The cluster's name.
    pub cluster: String,
}

/// Delivery's metrics; cheap to clone (the series are shared).
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    /// `portcullis_federation_propagation_seconds`: from a change (its [`publish`]) to the pass
    /// that applied it on a cluster.
    ///
    /// [`publish`]: super::Reconciler::publish
    pub propagation: Histogram,
    /// `portcullis_federation_errors_total{cluster}`: failed passes.
    pub errors: Family<ClusterLabel, Counter>,
    /// `portcullis_federation_objects{cluster}`: planned objects that hold their content.
    pub objects: Family<ClusterLabel, Gauge>,
    /// `portcullis_federation_conflicts{cluster}`: objects left alone because of a conflict.
    pub conflicts: Family<ClusterLabel, Gauge>,
    /// `portcullis_federation_drift_repairs_total{cluster}`: manual edits and deletions reverted.
    pub drift_repairs: Family<ClusterLabel, Counter>,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        DeliveryMetrics {
            // 1 ms .. ~65 s.
            propagation: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            errors: Family::default(),
            objects: Family::default(),
            conflicts: Family::default(),
            drift_repairs: Family::default(),
        }
    }
}

impl DeliveryMetrics {
    /// New metrics, registered in `registry` with the prefix `portcullis_federation`.
    pub fn register(registry: &mut Registry) -> DeliveryMetrics {
        let m = DeliveryMetrics::default();
        let r = registry.sub_registry_with_prefix("portcullis_federation");
        r.register(
            "propagation_seconds",
            "Time from a change of the plan to its application on a cluster",
            m.propagation.clone(),
        );
        r.register(
            "errors",
            "Failed delivery passes by cluster",
            m.errors.clone(),
        );
        r.register(
            "objects",
            "Planned objects that hold their content, by cluster",
            m.objects.clone(),
        );
        r.register(
            "conflicts",
            "Objects left alone because of a conflict, by cluster",
            m.conflicts.clone(),
        );
        r.register(
            "drift_repairs",
            "Manual edits and deletions reverted, by cluster",
            m.drift_repairs.clone(),
        );
        m
    }

    pub(crate) fn label(cluster: &str) -> ClusterLabel {
        ClusterLabel {
            cluster: cluster.to_owned(),
        }
    }

    pub(crate) fn observe_propagation(&self, d: Duration) {
        self.propagation.observe(d.as_secs_f64());
    }

    /// Drops a cluster's series (after detach).
    pub fn remove(&self, cluster: &str) {
        let l = Self::label(cluster);
        self.errors.remove(&l);
        self.objects.remove(&l);
        self.conflicts.remove(&l);
        self.drift_repairs.remove(&l);
    }
}
