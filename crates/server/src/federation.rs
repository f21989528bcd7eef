//! The federation controller of the management plane: the access-control model read from the
//! store (workspaces, projects, clusters, and the roles and bindings of both planes), planned by
//! `portcullis_federation`'s [`Planner`] into the RBAC objects every cluster must hold, with the
//! [`FleetIndex`] over the plan that the management API's authorizer and the fleet reviews read.
//!
//! One task owns the writes: it follows the store's watch, turns each event into a [`Change`],
//! applies it to the planner and the resulting [`Delta`] to the index (readers load the index's
//! snapshot and never wait), and publishes the delta for delivery to clusters. A watch that
//! fails is followed by a reload from scratch and an index reset.
//!
//! It also creates the default roles ([`portcullis_federation::defaults`]) of each workspace
//! and project that has none yet, once (see [`defaults`] for how that is recorded): an edited
//! default stays edited, a deleted one stays deleted, and a crash between the object's create
//! and its defaults converges at the next event or start.

pub(crate) mod defaults;
pub(crate) mod reviews;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use portcullis_federation::escalation::{self, Writer};
use portcullis_federation::{Change, Delta, FleetIndex, FleetSnapshot, Model, Planner};
use portcullis_federation::{PlannerConfig, Target};
use portcullis_model::{GROUP, Resource};
use portcullis_rbac::Attributes;
use portcullis_store::{KeyValue, ListOptions, Store, StoreError, WatchEvent};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::api::registry::{AdmitRequest, Codec, DecodeFailure, Operation, Registry};
use crate::api::status::ApiError;
use crate::rbac::RbacAuthorizer;

/// The kinds the planner reads: (plural, kind, namespaced).
const MODEL_KINDS: &[(&str, &str, bool)] = &[
    ("workspaces", "Workspace", false),
    ("projects", "Project", true),
    ("clusters", "Cluster", true),
    ("kommanderroles", "KommanderRole", true),
    ("kommanderrolebindings", "KommanderRoleBinding", true),
    ("clusterscoperoles", "ClusterScopeRole", true),
    ("clusterscoperolebindings", "ClusterScopeRoleBinding", true),
];

/// How many deltas a slow subscriber may fall behind before it is told it lagged (and must
/// resynchronise from the plan).
const DELTA_BACKLOG: usize = 1024;

/// How long a write of a role or binding waits for the plan to include this server's earlier
/// writes of the model before it is refused (503) rather than checked against an older plan.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Store prefix of every portcullis object (the watch's prefix; other kinds are skipped).
fn prefix() -> String {
    portcullis_store::keys::group(GROUP)
}

/// The kind, namespace and name a key of one of [`MODEL_KINDS`] addresses.
fn parse_key(key: &str) -> Option<(&'static str, String, String)> {
    let rest = key.strip_prefix(&prefix())?;
    let (plural, rest) = rest.split_once('/')?;
    let &(_, kind, namespaced) = MODEL_KINDS.iter().find(|(p, _, _)| *p == plural)?;
    if namespaced {
        let (ns, name) = rest.split_once('/')?;
        Some((kind, ns.to_owned(), name.to_owned()))
    } else {
        Some((kind, String::new(), rest.to_owned()))
    }
}

/// The object stored in `kv`, decoded strictly; `None` (with a log line) when it does not
/// decode, which the planner treats as absent: an object that cannot be read grants nothing.
fn decode(kv: &KeyValue) -> Option<Resource> {
    let decoded = serde_json::from_slice::<Value>(&kv.value)
        .map_err(|e| e.to_string())
        .and_then(|v| portcullis_model::decode_value(v).map_err(|e| e.to_string()));
    match decoded {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "stored object ignored by federation");
            None
        }
    }
}

/// The change a watch event makes to the model; `None` for other kinds.
fn change_of(event: &WatchEvent) -> Option<Change> {
    let kv = event.kv();
    let (kind, namespace, name) = parse_key(&kv.key)?;
    let delete = Change::Delete {
        kind: kind.to_owned(),
        namespace,
        name,
    };
    Some(match event {
        WatchEvent::Deleted(_) => delete,
        WatchEvent::Added(_) | WatchEvent::Modified(_) => match decode(kv) {
            Some(r) => Change::Upsert(Box::new(r)),
            None => delete,
        },
    })
}

/// The federation state shared by the controller task, the authorizer, admission and the
/// reviews.
pub struct Federation {
    /// The planner, written by the controller task only; admission and the plan review lock
    /// it briefly to read (and clone) it.
    planner: Mutex<Planner>,
    /// The index over the plan; readers load its snapshot without waiting.
    fleet: Arc<FleetIndex>,
    /// Every non-empty delta, for delivery to clusters.
    deltas: broadcast::Sender<Arc<Delta>>,
    /// The store revision the plan has seen.
    installed: tokio::sync::watch::Sender<u64>,
    /// The revision of the newest write of a model kind made through this server's API.
    written: AtomicU64,
    /// Delivery to the clusters: told every plan and delta, under the planner's lock, so that
    /// it sees them in order.
    sink: std::sync::OnceLock<Arc<dyn crate::delivery::PlanSink>>,
}

impl Federation {
    /// Reads the model from `store` and plans it: the federation state, the store revision it
    /// was read at, and the workspaces and projects (for their defaults).
    pub async fn load(
        store: &dyn Store,
    ) -> Result<(Arc<Federation>, u64, Vec<Resource>), StoreError> {
        let (model, revision, pending) = load_model(store).await?;
        let planner = Planner::new(PlannerConfig::default(), model);
        let fleet = Arc::new(FleetIndex::new(planner.plan()));
        let (deltas, _) = broadcast::channel(DELTA_BACKLOG);
        let fed = Federation {
            planner: Mutex::new(planner),
            fleet,
            deltas,
            installed: tokio::sync::watch::Sender::new(revision),
            written: AtomicU64::new(0),
            sink: std::sync::OnceLock::new(),
        };
        Ok((Arc::new(fed), revision, pending))
    }

    /// The fleet index.
    pub fn fleet(&self) -> &Arc<FleetIndex> {
        &self.fleet
    }

    /// Every delta from now on (part 2 delivers them to clusters). A receiver that lags must
    /// start again from [`Federation::with_planner`]'s plan.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Delta>> {
        self.deltas.subscribe()
    }

    /// Sets where every plan goes from now on (once, before the controller runs).
    pub(crate) fn set_sink(&self, sink: Arc<dyn crate::delivery::PlanSink>) {
        let _ = self.sink.set(sink);
    }

    /// The current plan.
    pub(crate) fn plan(&self) -> portcullis_federation::Plan {
        self.lock().plan().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Planner> {
        // A panic while holding the lock cannot leave the planner half-changed in a way that
        // grants more: recover the guard rather than fail every later request.
        self.planner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the planner and the index snapshot of the same plan.
    pub fn with_planner<R>(&self, f: impl FnOnce(&Planner, &FleetSnapshot) -> R) -> R {
        let planner = self.lock();
        let snapshot = self.fleet.load();
        f(&planner, &snapshot)
    }

    /// Applies one change (the controller task only).
    fn apply(&self, change: Change) {
        let mut planner = self.lock();
        let delta = planner.apply(change);
        if delta.is_empty() {
            return;
        }
        self.fleet.apply(&delta);
        if let Some(sink) = self.sink.get() {
            sink.publish(planner.plan(), &delta);
        }
        // No subscriber is not an error.
        let _ = self.deltas.send(Arc::new(delta));
    }

    /// Replaces the model after a reload (the controller task only).
    fn reset(&self, model: Model) {
        let mut planner = self.lock();
        *planner = Planner::new(planner.config().clone(), model);
        self.fleet.reset(planner.plan());
        if let Some(sink) = self.sink.get() {
            sink.reset(planner.plan());
        }
    }

    fn mark_installed(&self, revision: u64) {
        self.installed.send_modify(|r| *r = (*r).max(revision));
    }

    /// Records a write of a model kind at `revision`, which later escalation checks must see.
    pub fn note_write(&self, revision: u64) {
        self.written.fetch_max(revision, Ordering::AcqRel);
    }

    /// Waits until the plan includes every model write noted so far (at most
    /// [`SETTLE_TIMEOUT`]; then refuses, as the RBAC kinds do, rather than check a write
    /// against a plan known to be stale).
    pub async fn settled(&self) -> Result<(), ApiError> {
        let wanted = self.written.load(Ordering::Acquire);
        let mut installed = self.installed.subscribe();
        match tokio::time::timeout(SETTLE_TIMEOUT, installed.wait_for(|r| *r >= wanted)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the federation plan is still catching up with a recent change; retry",
            )),
        }
    }
}

/// Reads every object of [`MODEL_KINDS`] at one revision: the model, the revision, and the
/// workspaces and projects.
async fn load_model(store: &dyn Store) -> Result<(Model, u64, Vec<Resource>), StoreError> {
    let only_model = |kv: &KeyValue| parse_key(&kv.key).is_some();
    let page = store
        .list(
            &prefix(),
            ListOptions {
                filter: Some(&only_model),
                ..ListOptions::default()
            },
        )
        .await?;
    let resources: Vec<Resource> = page.items.iter().filter_map(decode).collect();
    let pending = resources
        .iter()
        .filter(|r| owns_defaults(r))
        .cloned()
        .collect();
    Ok((Model::from_resources(resources), page.revision, pending))
}

/// Whether `r` is a workspace or project (whose defaults the controller creates).
fn owns_defaults(r: &Resource) -> bool {
    matches!(r, Resource::Workspace(_) | Resource::Project(_))
}

/// The controller: follows the store from `revision` for ever (see the module docs). `owners`
/// are the workspaces and projects the load found.
pub async fn run(
    store: Arc<dyn Store>,
    fed: Arc<Federation>,
    mut revision: u64,
    owners: Vec<Resource>,
) {
    let mut done = defaults::Done::default();
    converge_defaults(&*store, &mut done, &owners).await;
    loop {
        match store.watch(&prefix(), revision).await {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    let Ok(event) = event else { break };
                    let rev = event.kv().mod_revision;
                    if let Some(change) = change_of(&event) {
                        // A workspace or project: created (or changed), or gone.
                        let owner = match (&event, &change) {
                            (WatchEvent::Deleted(kv), _) => {
                                decode(kv).filter(owns_defaults).map(|r| (false, r))
                            }
                            (_, Change::Upsert(r)) if owns_defaults(r) => {
                                Some((true, (**r).clone()))
                            }
                            _ => None,
                        };
                        fed.apply(change);
                        match owner {
                            Some((true, r)) => defaults::ensure(&*store, &mut done, &r).await,
                            Some((false, r)) => defaults::forget(&*store, &mut done, &r).await,
                            None => {}
                        }
                    }
                    fed.mark_installed(rev);
                    revision = rev;
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching the federation model failed"),
        }
        // The watch ended or failed: reload from scratch, reset the index, watch again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        match load_model(&*store).await {
            Ok((model, rev, owners)) => {
                fed.reset(model);
                fed.mark_installed(rev);
                revision = rev;
                converge_defaults(&*store, &mut done, &owners).await;
            }
            Err(e) => tracing::warn!(error = %e, "reloading the federation model failed"),
        }
    }
}

/// Creates the defaults `owners` never got, and forgets those of workspaces and projects gone.
async fn converge_defaults(store: &dyn Store, done: &mut defaults::Done, owners: &[Resource]) {
    for r in owners {
        defaults::ensure(store, done, r).await;
    }
    defaults::collect_garbage(store, done, owners).await;
}

// === admission of the model kinds ===

/// The model's codec for the kinds the planner reads: writes are noted (so escalation checks
/// wait for the plan to include them), and roles and bindings of either plane pass escalation
/// prevention across scopes.
struct FederatedCodec {
    inner: Arc<dyn Codec>,
    fed: Arc<Federation>,
    authorizer: Arc<RbacAuthorizer>,
    /// For the four role and binding kinds: plural, and whether it is a binding kind.
    access: Option<(&'static str, bool)>,
}

/// Puts the federation's admission on the model kinds of `registry`.
pub fn register(
    registry: &mut Registry,
    fed: &Arc<Federation>,
    authorizer: &Arc<RbacAuthorizer>,
    store: &Arc<dyn Store>,
) {
    for &(plural, kind, _) in MODEL_KINDS {
        let Some(inner) = registry
            .find(GROUP, portcullis_model::VERSION, plural)
            .map(|t| t.codec.clone())
        else {
            continue;
        };
        let access = kind
            .contains("Role")
            .then_some((plural, kind.ends_with("Binding")));
        registry.set_codec(
            GROUP,
            plural,
            Arc::new(FederatedCodec {
                inner,
                fed: fed.clone(),
                authorizer: authorizer.clone(),
                access,
            }),
        );
    }
    reviews::register(registry, fed, authorizer, store);
}

#[async_trait::async_trait]
impl Codec for FederatedCodec {
    fn decode(&self, object: &Value) -> Result<Value, DecodeFailure> {
        self.inner.decode(object)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Result<(), DecodeFailure> {
        self.inner.validate_update(old, new)
    }

    fn validate(&self, object: &Value) -> Result<(), DecodeFailure> {
        self.inner.validate(object)
    }

    fn settle(&self) -> Option<futures::future::BoxFuture<'static, Result<(), ApiError>>> {
        self.access?;
        let fed = self.fed.clone();
        let authorizer = self.authorizer.clone();
        Some(Box::pin(async move {
            // Both what the plan grants and the own RBAC objects count as holdings.
            authorizer.settled().await?;
            fed.settled().await
        }))
    }

    fn written(&self, revision: u64) {
        self.fed.note_write(revision);
        self.inner.written(revision);
    }

    /// Unless the writer holds `escalate` (roles) or `bind` (bindings) on the kind in the
    /// namespace on the management plane, what the write adds on every cluster it reaches
    /// must be covered by what the writer holds there ([`escalation::check_write`]); the
    /// refusal names the cluster and the missing rules. Deletes grant nothing and are
    /// authorized by their verb alone.
    async fn admit(&self, request: &AdmitRequest<'_>, new: &Value) -> Result<(), DecodeFailure> {
        self.inner.admit(request, new).await?;
        let Some((plural, binding)) = self.access else {
            return Ok(());
        };
        if request.operation == Operation::Delete {
            return Ok(());
        }
        let user = request.user;
        if portcullis_rbac::escalation::escalation_allowed(&portcullis_rbac::escalation::Writer {
            user: &user.name,
            groups: &user.groups,
        }) {
            return Ok(());
        }
        let a = Attributes {
            user: user.name.clone(),
            groups: user.groups.clone(),
            verb: if binding { "bind" } else { "escalate" }.into(),
            resource_request: true,
            api_group: GROUP.into(),
            resource: plural.into(),
            namespace: request.namespace.into(),
            name: request.request_name.into(),
            ..Attributes::default()
        };
        if self.authorizer.decide(&a).allowed {
            return Ok(());
        }
        let mut resource = portcullis_model::decode_value(new.clone()).map_err(|e| {
            DecodeFailure::BadRequest(format!("strict decoding error: {e}"), Vec::new())
        })?;
        // The scope is the request's namespace, whatever the body says.
        resource.meta_mut().namespace = Some(request.namespace.to_owned());
        let own = self.authorizer.snapshot();
        let writer = Writer {
            user: &user.name,
            groups: &user.groups,
        };
        self.fed
            .with_planner(|planner, snapshot| {
                escalation::check_write(
                    planner,
                    snapshot,
                    Some(&own.policy),
                    writer,
                    Change::Upsert(Box::new(resource)),
                )
            })
            .map_err(|refusal| match refusal {
                escalation::Refusal::RoleNotFound { resource, name } => {
                    DecodeFailure::Status(crate::api::status::ApiError::from_store(
                        portcullis_store::StoreError::NotFound(name.clone()),
                        GROUP,
                        resource,
                        &name,
                    ))
                }
                other => DecodeFailure::Forbidden(other.to_string()),
            })
    }
}

/// The target named `cluster` (empty: the management plane), if the plan has it.
pub(crate) fn target(fleet: &FleetSnapshot, cluster: &str) -> Result<Target, ApiError> {
    let t = if cluster.is_empty() {
        Target::Management
    } else {
        Target::named(cluster)
    };
    if fleet.has_target(&t) {
        Ok(t)
    } else {
        Err(ApiError::new(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "cluster {cluster:?} is not in the fleet: a Cluster must exist in a workspace's \
                 namespace (list them with `portcullis get clusters -A`); the management plane \
                 is {:?}",
                portcullis_federation::MANAGEMENT
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_the_model_kinds_name_kind_namespace_and_name() {
        assert_eq!(
            parse_key("/registry/portcullis.dev/workspaces/ws-a"),
            Some(("Workspace", String::new(), "ws-a".into()))
        );
        assert_eq!(
            parse_key("/registry/portcullis.dev/kommanderrolebindings/ws-a/b"),
            Some(("KommanderRoleBinding", "ws-a".into(), "b".into()))
        );
        assert_eq!(parse_key("/registry/portcullis.dev/users/admin"), None);
        assert_eq!(parse_key("/registry/portcullis.dev/projects/no-name"), None);
    }
}
