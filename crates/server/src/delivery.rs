//! Delivery on the management plane: the federation plan made true on every attached cluster.
//!
//! - A [`Reconciler`] runs beside the federation controller; the controller hands it every
//!   plan and delta ([`PlanSink`]), and a full resync after a reload of the model.
//! - Its [`Connector`] reads each cluster's credentials, sealed in the store by
//!   `cluster attach` ([`credentials`]): the API server URL and CA are taken from the sealed
//!   secret, not from the Cluster's spec, so that whoever may edit a Cluster cannot send its
//!   credentials to another server.
//! - The status board is written into each Cluster's `status.conditions` (`Reachable`,
//!   `Synced`, `Conflicts`; only when one changes), and served whole by the
//!   `DeliveryStatusReview` kind ([`attach`]).
//! - With `delivery.sink: gitops` nothing is applied: each plan is written under the GitOps
//!   directory instead ([`GitOpsSink`]).

pub(crate) mod attach;
pub(crate) mod credentials;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use portcullis_federation::delivery::{
    ClusterStatus, Connector, DeliveryError, DeliveryMetrics, GitOpsSink, Reconciler,
    ReconcilerConfig, StatusBoard,
};
use portcullis_federation::{Delta, Plan};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use portcullis_model::{
    ClusterFailure, Condition, ConditionStatus, GROUP, MAX_STATUS_FAILURES, SourceStatus,
};
use portcullis_store::{KeyValue, ListOptions, Store};
use serde_json::Value;

use crate::config::{DeliveryConfig, Sink};

/// How often the status board is compared with the Clusters' conditions.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Every how many rounds of [`STATUS_INTERVAL`] the roles' and bindings' status is compared.
const SOURCE_STATUS_EVERY: u64 = 5;

/// What the federation controller hands every plan to.
pub(crate) trait PlanSink: Send + Sync {
    /// After a change: the new plan and what it changed.
    fn publish(&self, plan: &Plan, delta: &Delta);
    /// After the model was read again from scratch (a failed watch): the whole plan.
    fn reset(&self, plan: &Plan);
}

/// Delivery as the management plane runs it.
pub(crate) struct Delivery {
    /// The reconciler (none with the GitOps sink).
    pub reconciler: Option<Arc<Reconciler>>,
    /// What the reconciler knows of every cluster.
    pub board: StatusBoard,
    /// With the GitOps sink: the newest plan for the writer task.
    gitops: Option<tokio::sync::watch::Sender<Arc<Plan>>>,
    /// The newest plan (pulling clusters read their desired set from it).
    plan: std::sync::Mutex<Arc<Plan>>,
    /// Clusters that pull their desired set: when each last pulled, and what.
    pub pulls: std::sync::Mutex<std::collections::BTreeMap<String, Pulled>>,
}

/// A pulling cluster's last read of its desired set.
#[derive(Debug, Clone)]
pub(crate) struct Pulled {
    /// When.
    pub at: SystemTime,
    /// The set's hash it was given.
    pub hash: String,
    /// Objects in it.
    pub objects: usize,
}

/// Annotation of a Cluster that pulls its desired set (`portcullis agent` with `pull:`) instead
/// of being applied to; its value is the nonce of the credential issued at attach, which the
/// credential carries as group `portcullis:cluster-credential:<nonce>`.
pub(crate) const PULL_ANNOTATION: &str = "portcullis.dev/pull-credential";

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("reconciler", &self.reconciler)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Starts delivery of `plan` as `config` says; the background tasks it needs are returned
    /// for the server to stop at shutdown.
    pub async fn start(
        config: &DeliveryConfig,
        store: Arc<dyn Store>,
        provider: portcullis_oidc::Provider,
        plan: Plan,
        metrics: Option<DeliveryMetrics>,
    ) -> anyhow::Result<(Arc<Delivery>, Vec<tokio::task::JoinHandle<()>>)> {
        let board = StatusBoard::new();
        let mut tasks = Vec::new();
        let pulling: Vec<String> = clusters(&*store)
            .await?
            .into_iter()
            .filter(|(_, c)| c.metadata.annotations.contains_key(PULL_ANNOTATION))
            .map(|(_, c)| c.metadata.name)
            .collect();
        let latest = std::sync::Mutex::new(Arc::new(plan.clone()));
        let delivery = match config.sink {
            Sink::Kubernetes => {
                let connector = Arc::new(StoreConnector {
                    store: store.clone(),
                    provider,
                });
                let reconciler = Reconciler::start(
                    ReconcilerConfig::default(),
                    connector,
                    Arc::new(plan),
                    board.clone(),
                    metrics,
                );
                for c in &pulling {
                    reconciler.exclude(c);
                }
                tasks.push(tokio::spawn(write_status(store, board.clone())));
                Delivery {
                    reconciler: Some(Arc::new(reconciler)),
                    board,
                    gitops: None,
                    plan: latest,
                    pulls: Default::default(),
                }
            }
            Sink::Gitops => {
                let Some(dir) = config.gitops_dir.clone() else {
                    anyhow::bail!(
                        "delivery.sink gitops needs a directory: pass --gitops-dir DIR (or set delivery.gitopsDir)"
                    );
                };
                let sink = GitOpsSink::new(dir);
                let (tx, rx) = tokio::sync::watch::channel(Arc::new(plan));
                tasks.push(tokio::spawn(write_gitops(sink, rx)));
                Delivery {
                    reconciler: None,
                    board,
                    gitops: Some(tx),
                    plan: latest,
                    pulls: Default::default(),
                }
            }
        };
        Ok((Arc::new(delivery), tasks))
    }
}

impl Delivery {
    /// The newest plan.
    pub fn plan(&self) -> Arc<Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl PlanSink for Delivery {
    fn publish(&self, plan: &Plan, delta: &Delta) {
        let plan = Arc::new(plan.clone());
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = plan.clone();
        if let Some(r) = &self.reconciler {
            r.publish(plan.clone(), delta);
        }
        if let Some(g) = &self.gitops {
            g.send_replace(plan);
        }
    }

    fn reset(&self, plan: &Plan) {
        self.publish(plan, &Delta::default());
        if let Some(r) = &self.reconciler {
            r.resync_all();
        }
    }
}

/// Writes the newest plan under the GitOps directory, for ever (only changed files are
/// rewritten; a burst of changes is one write).
async fn write_gitops(sink: GitOpsSink, mut plans: tokio::sync::watch::Receiver<Arc<Plan>>) {
    loop {
        let plan = plans.borrow_and_update().clone();
        let sink = sink.clone();
        match tokio::task::spawn_blocking(move || sink.write_plan(&plan)).await {
            Ok(Ok(report)) => tracing::debug!(
                written = report.written.len(),
                removed = report.removed.len(),
                "GitOps directory written"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "writing the GitOps directory failed"),
            Err(e) => tracing::warn!(error = %e, "the GitOps writer panicked"),
        }
        if plans.changed().await.is_err() {
            return;
        }
    }
}

// === the connector ===

/// Cluster name → kube client configuration, from the Cluster object and its sealed
/// credentials.
struct StoreConnector {
    store: Arc<dyn Store>,
    provider: portcullis_oidc::Provider,
}

impl Connector for StoreConnector {
    fn config(&self, cluster: &str) -> BoxFuture<'_, Result<kube_client::Config, DeliveryError>> {
        let cluster = cluster.to_owned();
        Box::pin(async move {
            let no = |message: String| DeliveryError::NoCredentials {
                cluster: cluster.clone(),
                message,
            };
            let found = find_cluster(&*self.store, &cluster)
                .await
                .map_err(|e| no(format!("reading the Cluster: {e}")))?;
            let Some((namespace, object)) = found else {
                return Err(no("no Cluster of that name".into()));
            };
            // Only the secret `cluster attach` made for this very Cluster: a reference edited to
            // name another cluster's (or a connector's) secret is refused.
            let expected = credentials::secret_name(&namespace, &cluster);
            match &object.spec.credentials_ref {
                Some(r) if r.name == expected => {}
                Some(r) => {
                    return Err(no(format!(
                        "spec.credentialsRef names {:?}, but this cluster's credentials are {expected:?}",
                        r.name
                    )));
                }
                None => return Err(no("spec.credentialsRef is not set".into())),
            }
            let creds = credentials::Credentials::load(&self.provider, &expected)
                .await
                .map_err(no)?;
            creds.kube_config().await
        })
    }
}

/// Every stored Cluster: (namespace, object).
pub(crate) async fn clusters(
    store: &dyn Store,
) -> Result<Vec<(KeyValue, portcullis_model::Cluster)>, portcullis_store::StoreError> {
    let prefix = portcullis_store::keys::collection(GROUP, "clusters", "");
    let page = store.list(&prefix, ListOptions::default()).await?;
    Ok(page
        .items
        .into_iter()
        .filter_map(|kv| {
            let c = serde_json::from_slice::<portcullis_model::Cluster>(&kv.value).ok()?;
            Some((kv, c))
        })
        .collect())
}

/// The Cluster named `name` (cluster names are unique in the fleet: plans address them by
/// name), with its namespace.
pub(crate) async fn find_cluster(
    store: &dyn Store,
    name: &str,
) -> Result<Option<(String, portcullis_model::Cluster)>, portcullis_store::StoreError> {
    Ok(clusters(store)
        .await?
        .into_iter()
        .find(|(_, c)| c.metadata.name == name)
        .map(|(_, c)| (c.metadata.namespace.clone().unwrap_or_default(), c)))
}

// === status ===

/// RFC 3339 UTC with second precision, as Kubernetes writes timestamps.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The board's conditions of one cluster in the model's form; a condition whose status did not
/// change keeps its `lastTransitionTime` from `old`.
fn conditions(
    status: &portcullis_federation::delivery::ClusterStatus,
    old: &[Condition],
) -> Vec<Condition> {
    status
        .conditions()
        .into_iter()
        .map(|c| {
            let s = if c.status == "True" {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            };
            let kept = old
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == s)
                .and_then(|o| o.last_transition_time.clone());
            Condition {
                type_: c.type_,
                status: s,
                observed_generation: None,
                last_transition_time: kept.or_else(|| {
                    Some(rfc3339(
                        c.last_transition_time.unwrap_or_else(SystemTime::now),
                    ))
                }),
                reason: c.reason,
                message: c.message,
            }
        })
        .collect()
}

/// Whether two condition lists say the same (times aside).
fn same(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
        })
}

/// Copies the board into every Cluster's `status.conditions`, for ever: a Cluster is written
/// only when a condition changed (compare-and-swap on its revision; a lost race is retried at
/// the next round).
async fn write_status(store: Arc<dyn Store>, board: StatusBoard) {
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Roles and bindings are many more than clusters (every one is read to compare): their
    // status follows every fifth round.
    let mut round: u64 = 0;
    loop {
        tick.tick().await;
        // One copy of the board serves both writers.
        let statuses = board.clusters();
        if let Err(e) = write_status_once(&*store, &statuses).await {
            tracing::debug!(error = %e, "writing cluster status failed");
        }
        if round.is_multiple_of(SOURCE_STATUS_EVERY)
            && let Err(e) = write_source_status_once(&*store, &statuses).await
        {
            tracing::debug!(error = %e, "writing role and binding status failed");
        }
        round += 1;
    }
}

/// The status of every source the board knows, from its objects on every cluster.
fn source_statuses(
    statuses: &BTreeMap<String, ClusterStatus>,
) -> HashMap<portcullis_federation::SourceRef, SourceStatus> {
    #[derive(Default)]
    struct Acc {
        clusters: BTreeSet<String>,
        unsynced: BTreeSet<String>,
        failures: Vec<ClusterFailure>,
        repairs: u64,
    }
    let mut acc: HashMap<portcullis_federation::SourceRef, Acc> = HashMap::new();
    for (cluster, status) in statuses {
        for (key, o) in &status.objects {
            let Some(source) = &o.source else {
                continue;
            };
            if source.kind == portcullis_federation::SourceKind::Project {
                continue;
            }
            let a = acc.entry(source.clone()).or_default();
            a.clusters.insert(cluster.clone());
            a.repairs += o.drift_repairs;
            if let Some(e) = &o.last_error {
                a.unsynced.insert(cluster.clone());
                if a.failures.len() < MAX_STATUS_FAILURES {
                    a.failures.push(ClusterFailure {
                        cluster: cluster.clone(),
                        object: key.to_string(),
                        message: e.clone(),
                        conflict: o.conflict,
                    });
                }
            } else if o.applied_hash.is_none() && !o.paused {
                a.unsynced.insert(cluster.clone());
            }
        }
    }
    acc.into_iter()
        .map(|(source, a)| {
            let clusters = u32::try_from(a.clusters.len()).unwrap_or(u32::MAX);
            let synced = u32::try_from(a.clusters.len() - a.unsynced.len()).unwrap_or(u32::MAX);
            let (status, reason, message) = if synced == clusters {
                (
                    ConditionStatus::True,
                    "Applied",
                    format!("applied on {clusters} of {clusters} clusters"),
                )
            } else if a.failures.iter().any(|f| f.conflict) {
                (
                    ConditionStatus::False,
                    "Conflict",
                    format!(
                        "applied on {synced} of {clusters} clusters; a pre-existing or \
                         differently managed object blocks it (see failures)"
                    ),
                )
            } else if a.failures.is_empty() {
                (
                    ConditionStatus::False,
                    "Pending",
                    format!("applied on {synced} of {clusters} clusters so far"),
                )
            } else {
                (
                    ConditionStatus::False,
                    "Failed",
                    format!("applied on {synced} of {clusters} clusters (see failures)"),
                )
            };
            let status = SourceStatus {
                clusters,
                synced_clusters: synced,
                failures: a.failures,
                drift_repairs: a.repairs,
                conditions: vec![Condition {
                    type_: "Synced".into(),
                    status,
                    observed_generation: None,
                    last_transition_time: None,
                    reason: reason.into(),
                    message,
                }],
            };
            (source, status)
        })
        .collect()
}

/// Copies the board into the `status` of every `ClusterScopeRole` and `ClusterScopeRoleBinding`
/// (and of management-plane kinds, should they ever be delivered): written only when something
/// other than a time changed, so that authors' own writes rarely meet a newer revision.
async fn write_source_status_once(
    store: &dyn Store,
    statuses: &BTreeMap<String, ClusterStatus>,
) -> Result<(), portcullis_store::StoreError> {
    let computed = source_statuses(statuses);
    for (kind, plural) in [
        (
            portcullis_federation::SourceKind::ClusterScopeRole,
            "clusterscoperoles",
        ),
        (
            portcullis_federation::SourceKind::ClusterScopeRoleBinding,
            "clusterscoperolebindings",
        ),
    ] {
        let prefix = portcullis_store::keys::collection(GROUP, plural, "");
        let page = store.list(&prefix, ListOptions::default()).await?;
        for kv in page.items {
            let Ok(mut object) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let source = portcullis_federation::SourceRef {
                kind,
                namespace: object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name: object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            };
            let old: Option<SourceStatus> = object
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok());
            let Some(mut new) = computed.get(&source).cloned() else {
                // Nothing of it is delivered (yet): a status written earlier is cleared.
                if old.is_some()
                    && let Some(o) = object.as_object_mut()
                {
                    o.remove("status");
                    put(store, &kv, &object).await?;
                }
                continue;
            };
            let old_conditions = old
                .as_ref()
                .map(|o| o.conditions.clone())
                .unwrap_or_default();
            for c in &mut new.conditions {
                c.last_transition_time = old_conditions
                    .iter()
                    .find(|o| o.type_ == c.type_ && o.status == c.status)
                    .and_then(|o| o.last_transition_time.clone())
                    .or_else(|| Some(rfc3339(SystemTime::now())));
            }
            let unchanged = old.as_ref().is_some_and(|o| {
                o.clusters == new.clusters
                    && o.synced_clusters == new.synced_clusters
                    && o.failures == new.failures
                    && o.drift_repairs == new.drift_repairs
                    && same(&o.conditions, &new.conditions)
            });
            if unchanged {
                continue;
            }
            if let Some(o) = object.as_object_mut() {
                o.insert(
                    "status".into(),
                    serde_json::to_value(&new).unwrap_or_default(),
                );
            }
            put(store, &kv, &object).await?;
        }
    }
    Ok(())
}

/// Stores `object` over `kv` if it still is at `kv`'s revision and reads back as its kind (a
/// lost race is retried at the next round).
async fn put(
    store: &dyn Store,
    kv: &KeyValue,
    object: &Value,
) -> Result<(), portcullis_store::StoreError> {
    if portcullis_model::decode_value(object.clone()).is_err() {
        return Ok(());
    }
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    match store.update(&kv.key, bytes, Some(kv.mod_revision)).await {
        Ok(_)
        | Err(portcullis_store::StoreError::Conflict { .. })
        | Err(portcullis_store::StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn write_status_once(
    store: &dyn Store,
    statuses: &BTreeMap<String, ClusterStatus>,
) -> Result<(), portcullis_store::StoreError> {
    for (kv, cluster) in clusters(store).await? {
        let Some(status) = statuses.get(&cluster.metadata.name) else {
            continue;
        };
        if status.last_attempt.is_none() {
            continue;
        }
        let old = cluster
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let new = conditions(status, &old);
        if same(&old, &new) {
            continue;
        }
        let Ok(mut object) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let Some(o) = object.as_object_mut() else {
            continue;
        };
        let status = o
            .entry("status")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(s) = status.as_object_mut() {
            s.insert(
                "conditions".into(),
                serde_json::to_value(&new).unwrap_or_default(),
            );
        }
        // Checked as the API would check it, so that nothing unreadable is stored.
        if portcullis_model::decode_value(object.clone()).is_err() {
            continue;
        }
        let bytes = serde_json::to_vec(&object).unwrap_or_default();
        match store.update(&kv.key, bytes, Some(kv.mod_revision)).await {
            Ok(_) | Err(portcullis_store::StoreError::Conflict { .. }) => {}
            Err(portcullis_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
