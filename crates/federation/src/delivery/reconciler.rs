//! The reconciler: one worker per attached cluster, level-triggered.
//!
//! A pass of a worker reads the latest plan, computes the cluster's desired set, compares it
//! with what it observes on the cluster (a cache filled by a LIST of each kind by the managed-by
//! label and kept current by a watch from that list's resourceVersion), and applies and deletes
//! the difference. Nothing is remembered of *what changed*: a pass always works from the whole
//! desired and observed sets, so a lost wake, a crash in the middle of a pass or a restart of the
//! management plane cost one more pass, never a lost or duplicated change.
//!
//! - **Wakes**: [`Reconciler::publish`] wakes the clusters a [`Delta`] names; a watch event that
//!   is not portcullis's own write (a manual edit or deletion) wakes its cluster; wakes coalesce
//!   (many wakes during a pass → one more pass).
//! - **Bounded**: at most [`ReconcilerConfig::concurrency`] passes run at once, each bounded by
//!   [`ReconcilerConfig::pass_timeout`]; a slow or down cluster holds one permit at most that
//!   long and never delays the others' passes (nor their deletions).
//! - **Backoff**: a failed pass drops the cluster's connection and retries after an exponential
//!   backoff with jitter (½ to 1 × `backoff_base · 2ⁿ`, at most `backoff_max`); the connection
//!   settings are asked of the [`Connector`] again, so that new credentials take effect.
//! - **Resync**: the first pass of a connection, and one every
//!   [`ReconcilerConfig::resync_interval`], lists everything again instead of trusting the cache.
//! - **Safety**: a cluster that is not a target of the plan (removed, or its workspace gone) is
//!   left as it is — only [`Reconciler::cleanup`] removes what portcullis put there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::objects::{ObjectKey, ObjectKind};
use crate::plan::{Delta, Plan, Target};

use super::compare::Observed;
use super::kube::{ApplyOutcome, CleanupReport, KINDS, KubeCluster, Seen};
use super::metrics::DeliveryMetrics;
use super::status::{ObjectStatus, StatusBoard};
use super::{Connector, DeliveryError};

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Passes running at once, over all clusters.
    pub concurrency: usize,
    /// How often each cluster is listed again whole.
    pub resync_interval: Duration,
    /// First retry delay of a failing cluster.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Longest pass; a pass that takes longer fails (and backs off).
    pub pass_timeout: Duration,
    /// `timeoutSeconds` of each watch request (it is renewed from the last resourceVersion).
    pub watch_timeout: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            concurrency: 32,
            resync_interval: Duration::from_secs(300),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(120),
            pass_timeout: Duration::from_secs(120),
            watch_timeout: Duration::from_secs(290),
        }
    }
}

/// What wakes a worker, and since when a published change waits for it.
#[derive(Debug, Default)]
struct Wake {
    notify: Notify,
    pending_since: Mutex<Option<Instant>>,
    full: AtomicBool,
}

impl Wake {
    fn change(&self, at: Instant) {
        {
            let mut p = self.pending_since.lock().unwrap_or_else(|e| e.into_inner());
            *p = Some(p.map_or(at, |t| t.min(at)));
        }
        self.notify.notify_one();
    }

    fn poke(&self) {
        self.notify.notify_one();
    }

    fn take(&self) -> Option<Instant> {
        self.pending_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn restore(&self, since: Option<Instant>) {
        if let Some(t) = since {
            let mut p = self.pending_since.lock().unwrap_or_else(|e| e.into_inner());
            *p = Some(p.map_or(t, |x| x.min(t)));
        }
    }
}

/// What every worker shares.
struct Shared {
    config: ReconcilerConfig,
    connector: Arc<dyn Connector>,
    plan: watch::Receiver<Arc<Plan>>,
    board: StatusBoard,
    metrics: Option<DeliveryMetrics>,
    permits: Arc<Semaphore>,
}

struct Worker {
    wake: Arc<Wake>,
    task: JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reconciler; dropping it stops every worker.
pub struct Reconciler {
    shared: Arc<Shared>,
    plan: watch::Sender<Arc<Plan>>,
    workers: Mutex<BTreeMap<String, Worker>>,
    detached: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("config", &self.shared.config)
            .field("clusters", &self.lock_workers().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Reconciler {
    /// Starts a worker for every attached cluster of `plan` (each begins with a full resync),
    /// on the current Tokio runtime.
    pub fn start(
        config: ReconcilerConfig,
        connector: Arc<dyn Connector>,
        plan: Arc<Plan>,
        board: StatusBoard,
        metrics: Option<DeliveryMetrics>,
    ) -> Reconciler {
        let (tx, rx) = watch::channel(plan);
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let r = Reconciler {
            shared: Arc::new(Shared {
                config,
                connector,
                plan: rx,
                board,
                metrics,
                permits,
            }),
            plan: tx,
            workers: Mutex::new(BTreeMap::new()),
            detached: Mutex::new(BTreeSet::new()),
        };
        r.sync_workers();
        r
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_detached(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.detached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status board.
    pub fn board(&self) -> &StatusBoard {
        &self.shared.board
    }

    /// The plan the workers deliver.
    pub fn plan(&self) -> Arc<Plan> {
        self.plan.borrow().clone()
    }

    /// Makes `plan` the one to deliver and wakes the clusters `delta` touched (call it after
    /// every [`Planner::apply`](crate::Planner::apply) with that change's delta). Clusters new
    /// in the plan get a worker; clusters gone from it lose theirs and are left as they are.
    pub fn publish(&self, plan: Arc<Plan>, delta: &Delta) {
        let now = Instant::now();
        self.plan.send_replace(plan);
        self.sync_workers();
        let workers = self.lock_workers();
        for target in delta.clusters.keys().chain(delta.targets.keys()) {
            if let Target::Cluster(c) = target
                && let Some(w) = workers.get(c)
            {
                w.wake.change(now);
            }
        }
    }

    /// Wakes one cluster's worker (after new credentials, say).
    pub fn wake(&self, cluster: &str) {
        if let Some(w) = self.lock_workers().get(cluster) {
            w.wake.change(Instant::now());
        }
    }

    /// Wakes every worker for a full resync (a fresh LIST of everything).
    pub fn resync_all(&self) {
        for w in self.lock_workers().values() {
            w.wake.full.store(true, Ordering::SeqCst);
            w.wake.change(Instant::now());
        }
    }

    /// Clusters with a worker.
    pub fn clusters(&self) -> Vec<String> {
        self.lock_workers().keys().cloned().collect()
    }

    fn sync_workers(&self) {
        let plan = self.plan.borrow().clone();
        let wanted: BTreeSet<String> = plan
            .targets()
            .filter_map(|t| match t {
                Target::Cluster(c) => Some(c.clone()),
                Target::Management => None,
            })
            .collect();
        let detached = self.lock_detached().clone();
        let mut workers = self.lock_workers();
        workers.retain(|c, _| wanted.contains(c) && !detached.contains(c));
        for c in wanted {
            if detached.contains(&c) || workers.contains_key(&c) {
                continue;
            }
            let wake = Arc::new(Wake::default());
            wake.change(Instant::now());
            let task = tokio::spawn(run(self.shared.clone(), c.clone(), wake.clone()));
            workers.insert(c, Worker { wake, task });
        }
    }

    /// Removes every object portcullis put on `cluster` (`cluster detach --cleanup`): its
    /// worker stops (and is not started again until [`Reconciler::attach`]), then everything
    /// that carries the managed-by label is deleted — namespaces only if portcullis created
    /// them; objects without the label are not touched. The cluster's status is forgotten.
    pub async fn cleanup(&self, cluster: &str) -> Result<CleanupReport, DeliveryError> {
        self.lock_detached().insert(cluster.to_owned());
        let worker = self.lock_workers().remove(cluster);
        if let Some(mut w) = worker {
            w.task.abort();
            let _ = (&mut w.task).await;
        }
        let config = self.shared.connector.config(cluster).await?;
        let api = KubeCluster::new(cluster, config)?;
        let mut report = api.cleanup().await?;
        // A write of the stopped worker may have been in flight: look once more.
        report.deleted.extend(api.cleanup().await?.deleted);
        self.shared.board.remove(cluster);
        if let Some(m) = &self.shared.metrics {
            m.remove(cluster);
        }
        Ok(report)
    }

    /// Stops delivering to `cluster` and leaves it as it is (a cluster that pulls its desired
    /// set itself): its worker stops and is not started again until [`Reconciler::attach`];
    /// its status is forgotten.
    pub fn exclude(&self, cluster: &str) {
        self.lock_detached().insert(cluster.to_owned());
        drop(self.lock_workers().remove(cluster));
        self.shared.board.remove(cluster);
        if let Some(m) = &self.shared.metrics {
            m.remove(cluster);
        }
    }

    /// Delivers to `cluster` again after [`Reconciler::cleanup`] or [`Reconciler::exclude`]
    /// (when it is in the plan).
    pub fn attach(&self, cluster: &str) {
        self.lock_detached().remove(cluster);
        self.sync_workers();
    }

    /// Stops every worker and waits until they have stopped.
    pub async fn shutdown(self) {
        let workers = std::mem::take(&mut *self.lock_workers());
        for (_, mut w) in workers {
            w.task.abort();
            let _ = (&mut w.task).await;
        }
    }
}

// === the worker ===

/// What a worker observes of its cluster, kept by the watches.
#[derive(Debug, Default)]
struct Cache {
    objects: BTreeMap<ObjectKey, Observed>,
    /// A watch lost its place (410, or it kept failing): list again.
    relist: bool,
}

impl Cache {
    /// Takes a watched object; whether it is news (not the write the worker made itself).
    fn observe(&mut self, o: Observed) -> bool {
        if let Some(old) = self.objects.get(&o.key) {
            if old.resource_version == o.resource_version {
                return false;
            }
            if let (Some(a), Some(b)) = (old.revision(), o.revision())
                && b < a
            {
                return false;
            }
        }
        self.objects.insert(o.key.clone(), o);
        true
    }

    /// Takes a watched deletion; whether it is news.
    fn forget(&mut self, o: &Observed) -> bool {
        match self.objects.get(&o.key) {
            Some(old) => {
                if let (Some(a), Some(b)) = (old.revision(), o.revision())
                    && b < a
                {
                    return false;
                }
                self.objects.remove(&o.key);
                true
            }
            None => false,
        }
    }
}

struct Conn {
    api: KubeCluster,
    cache: Arc<Mutex<Cache>>,
    watchers: JoinSet<()>,
}

fn lock_cache(c: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    last_full: Option<Instant>,
}

fn backoff(config: &ReconcilerConfig, failures: u32) -> Duration {
    let exp = config
        .backoff_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(config.backoff_max);
    // Jitter: ½ to 1 of the delay, so that clusters failing together do not retry together.
    let jitter: f64 = 0.5 + rand::random::<f64>() * 0.5;
    capped.mul_f64(jitter)
}

async fn run(shared: Arc<Shared>, cluster: String, wake: Arc<Wake>) {
    let target = Target::Cluster(cluster.clone());
    let mut state = State::default();
    let mut failures: u32 = 0;
    loop {
        if failures == 0 {
            let due = state.last_full.map(|t| t + shared.config.resync_interval);
            match due {
                Some(due) if due > Instant::now() => {
                    tokio::select! {
                        _ = wake.notify.notified() => {}
                        _ = tokio::time::sleep_until(due.into()) => {}
                    }
                }
                _ => {}
            }
        }
        let since = wake.take();
        let Ok(permit) = shared.permits.clone().acquire_owned().await else {
            return;
        };
        shared.board.update(&cluster, |s| {
            s.last_attempt = Some(SystemTime::now());
        });
        let result = match tokio::time::timeout(
            shared.config.pass_timeout,
            pass(&shared, &cluster, &target, &mut state, &wake),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Cluster {
                cluster: cluster.clone(),
                message: format!(
                    "a pass took longer than {:?}; it will be retried",
                    shared.config.pass_timeout
                ),
            }),
        };
        drop(permit);
        match result {
            Ok(()) => {
                failures = 0;
                if let (Some(t), Some(m)) = (since, &shared.metrics) {
                    m.observe_propagation(t.elapsed());
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                wake.restore(since);
                shared.board.update(&cluster, |s| {
                    s.last_error = Some(e.to_string());
                    s.consecutive_failures = failures;
                });
                if let Some(m) = &shared.metrics {
                    m.errors
                        .get_or_create(&DeliveryMetrics::label(&cluster))
                        .inc();
                }
                tracing::warn!(cluster = %cluster, error = %e, failures, "delivery pass failed");
                if !matches!(e, DeliveryError::Rejected { .. }) {
                    // Talk to the cluster afresh next time (new settings, a fresh LIST).
                    state.conn = None;
                }
                tokio::time::sleep(backoff(&shared.config, failures)).await;
            }
        }
    }
}

/// Lists every kind, replaces the cache, and starts a watch per kind from its list.
async fn full_list(
    shared: &Shared,
    conn: &mut Conn,
    wake: &Arc<Wake>,
) -> Result<(), DeliveryError> {
    conn.watchers.abort_all();
    let mut objects = BTreeMap::new();
    let mut versions = Vec::new();
    for kind in KINDS {
        let (items, rv) = conn.api.list_managed(kind).await?;
        for o in items {
            objects.insert(o.key.clone(), o);
        }
        versions.push((kind, rv));
    }
    {
        let mut cache = lock_cache(&conn.cache);
        cache.objects = objects;
        cache.relist = false;
    }
    for (kind, rv) in versions {
        conn.watchers.spawn(watch_kind(
            conn.api.clone(),
            kind,
            rv,
            conn.cache.clone(),
            wake.clone(),
            shared.config.watch_timeout,
        ));
    }
    Ok(())
}

/// Keeps the cache of one kind current; wakes the worker on news, and asks for a new LIST when
/// it loses its place.
async fn watch_kind(
    api: KubeCluster,
    kind: ObjectKind,
    mut rv: String,
    cache: Arc<Mutex<Cache>>,
    wake: Arc<Wake>,
    timeout: Duration,
) {
    let mut failures: u32 = 0;
    loop {
        match api.watch(kind, &rv, timeout).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    failures = 0;
                    let news = match ev {
                        Ok(Seen::Upsert(o)) => {
                            rv.clone_from(&o.resource_version);
                            lock_cache(&cache).observe(o)
                        }
                        Ok(Seen::Deleted(o)) => {
                            rv.clone_from(&o.resource_version);
                            lock_cache(&cache).forget(&o)
                        }
                        Ok(Seen::Progress(r)) => {
                            if !r.is_empty() {
                                rv = r;
                            }
                            false
                        }
                        Ok(Seen::Expired) => {
                            lock_cache(&cache).relist = true;
                            wake.poke();
                            return;
                        }
                        Err(_) => {
                            failures += 1;
                            break;
                        }
                    };
                    if news {
                        wake.poke();
                    }
                }
            }
            Err(_) => failures += 1,
        }
        if failures >= 3 {
            // The cluster may be gone: let the worker's LIST find out, and report it.
            lock_cache(&cache).relist = true;
            wake.poke();
            return;
        }
        tokio::time::sleep(Duration::from_millis(100) * (1 << failures)).await;
    }
}

/// One pass: make the cluster hold the plan's desired set.
async fn pass(
    shared: &Shared,
    cluster: &str,
    target: &Target,
    state: &mut State,
    wake: &Arc<Wake>,
) -> Result<(), DeliveryError> {
    let plan = shared.plan.borrow().clone();
    if !plan.has_target(target) {
        // Not (or no longer) a target: left as it is; cleanup is explicit.
        return Ok(());
    }
    if state.conn.is_none() {
        let config = shared.connector.config(cluster).await?;
        state.conn = Some(Conn {
            api: KubeCluster::new(cluster, config)?,
            cache: Arc::new(Mutex::new(Cache::default())),
            watchers: JoinSet::new(),
        });
        state.last_full = None;
    }
    let Some(conn) = state.conn.as_mut() else {
        return Ok(());
    };
    let full = state
        .last_full
        .is_none_or(|t| t.elapsed() >= shared.config.resync_interval)
        || lock_cache(&conn.cache).relist
        || wake.full.swap(false, Ordering::SeqCst);
    if full {
        full_list(shared, conn, wake).await?;
        state.last_full = Some(Instant::now());
    }
    let desired = plan.desired(target);
    let observed = lock_cache(&conn.cache).objects.clone();
    let previous = shared.board.cluster(cluster).unwrap_or_default();
    let mut objects: BTreeMap<ObjectKey, ObjectStatus> = BTreeMap::new();
    let mut repairs: u64 = 0;
    let mut rejected: Vec<String> = Vec::new();
    let now = SystemTime::now();

    for (key, planned) in &desired {
        let hash = planned.content_hash().to_owned();
        let prev = previous.objects.get(key);
        let mut st = ObjectStatus {
            source: Some(planned.source.clone()),
            applied_hash: prev.and_then(|p| p.applied_hash.clone()),
            last_applied: prev.and_then(|p| p.last_applied),
            drift_repairs: prev.map_or(0, |p| p.drift_repairs),
            ..ObjectStatus::default()
        };
        let live = match observed.get(key) {
            Some(o) => Some(o.clone()),
            // Not in the cache of managed objects: absent, or someone else's.
            None => match conn.api.get(key).await {
                Ok(o) => o,
                Err(e @ DeliveryError::Rejected { .. }) => {
                    st.last_error = Some(e.to_string());
                    rejected.push(e.to_string());
                    objects.insert(key.clone(), st);
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let desired_json = planned.object.to_json();
        match &live {
            Some(o) if !o.is_managed() => {
                if key.kind == ObjectKind::Namespace {
                    // A project namespace that exists already: used as it is, never deleted.
                    st.applied_hash = Some(hash);
                    st.last_applied = Some(now);
                } else {
                    st.conflict = true;
                    st.last_error = Some(format!(
                        "pre-existing object without the label {}={}: left alone",
                        crate::objects::MANAGED_BY_LABEL,
                        crate::objects::MANAGED_BY
                    ));
                }
                objects.insert(key.clone(), st);
                continue;
            }
            Some(o) if o.is_paused() => {
                st.paused = true;
                objects.insert(key.clone(), st);
                continue;
            }
            Some(o) if o.deleting => {
                st.last_error = Some("being deleted; it is created again once gone".into());
                objects.insert(key.clone(), st);
                continue;
            }
            Some(o) if o.matches(&desired_json) => {
                if st.applied_hash.as_deref() != Some(hash.as_str()) {
                    st.last_applied = Some(now);
                }
                st.applied_hash = Some(hash);
                objects.insert(key.clone(), st);
                continue;
            }
            _ => {}
        }
        // Absent, or ours and not as planned.
        let had_it = st.applied_hash.as_deref() == Some(hash.as_str());
        match conn.api.apply_observed(planned).await {
            Ok((ApplyOutcome::Applied { reverted_edit, .. }, after)) => {
                if had_it || reverted_edit {
                    st.drift_repairs += 1;
                    repairs += 1;
                }
                st.applied_hash = Some(hash);
                st.last_applied = Some(now);
                if let Some(after) = after {
                    lock_cache(&conn.cache).observe(after);
                }
            }
            Ok((ApplyOutcome::Conflict(why), _)) => {
                st.conflict = true;
                st.last_error = Some(why);
            }
            Err(e @ DeliveryError::Rejected { .. }) => {
                st.last_error = Some(e.to_string());
                rejected.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
        objects.insert(key.clone(), st);
    }

    // Garbage collection: what carries the label and is no longer planned; bindings before
    // roles, namespaced before cluster-wide, namespaces last.
    for (key, o) in observed.iter().rev() {
        if desired.contains_key(key) || o.deleting {
            continue;
        }
        if o.is_paused() {
            objects.insert(
                key.clone(),
                ObjectStatus {
                    paused: true,
                    last_error: Some("no longer planned, but paused: left alone".into()),
                    ..ObjectStatus::default()
                },
            );
            continue;
        }
        match conn.api.delete(key, &o.resource_version).await {
            Ok(()) => {
                let mut cache = lock_cache(&conn.cache);
                if cache
                    .objects
                    .get(key)
                    .is_some_and(|c| c.resource_version == o.resource_version)
                {
                    cache.objects.remove(key);
                }
            }
            Err(e @ DeliveryError::Rejected { .. }) => rejected.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }

    let conflicts = objects.values().filter(|o| o.conflict).count();
    let in_sync = shared.board.update(cluster, |s| {
        s.objects = objects;
        s.desired = desired.len();
        s.drift_repairs += repairs;
        s.last_attempt = Some(now);
        if rejected.is_empty() {
            s.last_error = None;
            s.consecutive_failures = 0;
            s.last_sync = Some(SystemTime::now());
        }
        s.in_sync_objects()
    });
    if let Some(m) = &shared.metrics {
        let l = DeliveryMetrics::label(cluster);
        m.objects
            .get_or_create(&l)
            .set(i64::try_from(in_sync).unwrap_or(i64::MAX));
        m.conflicts
            .get_or_create(&l)
            .set(i64::try_from(conflicts).unwrap_or(i64::MAX));
        if repairs > 0 {
            m.drift_repairs.get_or_create(&l).inc_by(repairs);
        }
    }
    match rejected.first() {
        None => Ok(()),
        Some(first) => Err(DeliveryError::Rejected {
            cluster: cluster.to_owned(),
            message: format!("{} requests refused; the first: {first}", rejected.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let c = ReconcilerConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..ReconcilerConfig::default()
        };
        for _ in 0..50 {
            let first = backoff(&c, 1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let later = backoff(&c, 30);
            assert!(later >= Duration::from_millis(500) && later <= Duration::from_secs(1));
        }
    }
}
