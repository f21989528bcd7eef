//! Delivery: the reconciler and the Kubernetes sink against kube-apiserver doubles (and against
//! real API servers when `KUBEBUILDER_ASSETS` is set), the GitOps sink on a temporary directory.

mod doubles;
mod gitops;
mod real;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube_client::api::{Api, DynamicObject, ListParams};
use kube_client::core::ApiResource;
use portcullis_federation::delivery::kube::{KINDS, managed_selector};
use portcullis_federation::delivery::{
    Connector, DeliveryError, KubeCluster, Reconciler, ReconcilerConfig, StatusBoard,
    config_from_kubeconfig,
};
use portcullis_federation::objects::CONTENT_HASH_ANNOTATION;
use portcullis_federation::{Change, ObjectKind, Plan, Planner, Target};
use portcullis_model::Resource;
use portcullis_testkit::kube_apiserver::{Config, Double};
use serde_json::Value;

use crate::fixtures;

/// Cluster name → kube client configuration, changeable while the reconciler runs.
#[derive(Default)]
pub struct Connections {
    map: Mutex<HashMap<String, kube_client::Config>>,
}

impl Connections {
    pub fn set(&self, cluster: &str, config: kube_client::Config) {
        self.map.lock().unwrap().insert(cluster.into(), config);
    }
}

impl Connector for Connections {
    fn config(
        &self,
        cluster: &str,
    ) -> Pin<Box<dyn Future<Output = Result<kube_client::Config, DeliveryError>> + Send + '_>> {
        let got = self.map.lock().unwrap().get(cluster).cloned();
        let cluster = cluster.to_owned();
        Box::pin(async move {
            got.ok_or(DeliveryError::NoCredentials {
                cluster,
                message: "not in the test's map".into(),
            })
        })
    }
}

pub async fn config_for(url: &str, ca_pem: &str, token: &str) -> kube_client::Config {
    let yaml = portcullis_testkit::kubectl::kubeconfig(url, ca_pem, token, "default");
    let mut c = config_from_kubeconfig(&yaml, None).await.unwrap();
    c.connect_timeout = Some(Duration::from_secs(2));
    c
}

pub fn test_config() -> ReconcilerConfig {
    ReconcilerConfig {
        concurrency: 8,
        resync_interval: Duration::from_secs(120),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        pass_timeout: Duration::from_secs(20),
        watch_timeout: Duration::from_secs(60),
    }
}

fn api_resource(kind: ObjectKind) -> ApiResource {
    let group = if kind == ObjectKind::Namespace {
        ""
    } else {
        "rbac.authorization.k8s.io"
    };
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: kind.api_version().into(),
        kind: kind.as_str().into(),
        plural: kind.plural().into(),
    }
}

pub fn api(c: &KubeCluster, kind: ObjectKind, ns: &str) -> Api<DynamicObject> {
    let ar = api_resource(kind);
    if ns.is_empty() {
        Api::all_with(c.client().clone(), &ar)
    } else {
        Api::namespaced_with(c.client().clone(), ns, &ar)
    }
}

fn key_string(kind: ObjectKind, o: &DynamicObject) -> String {
    match &o.metadata.namespace {
        Some(ns) if !ns.is_empty() => format!(
            "{}/{}/{}",
            kind.as_str(),
            ns,
            o.metadata.name.clone().unwrap_or_default()
        ),
        _ => format!(
            "{}/{}",
            kind.as_str(),
            o.metadata.name.clone().unwrap_or_default()
        ),
    }
}

/// Every object on the cluster that carries the managed-by label (and is not being deleted):
/// key → content hash.
pub async fn managed(c: &KubeCluster) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in KINDS {
        let list = api(c, kind, "")
            .list(&ListParams::default().labels(&managed_selector()))
            .await
            .unwrap();
        for o in list.items {
            if o.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let hash = o
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CONTENT_HASH_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            out.insert(key_string(kind, &o), hash);
        }
    }
    out
}

/// Every object of the cluster (managed or not): key → resourceVersion.
pub async fn everything(c: &KubeCluster) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in KINDS {
        let list = api(c, kind, "").list(&ListParams::default()).await.unwrap();
        for o in list.items {
            out.insert(
                key_string(kind, &o),
                o.metadata.resource_version.clone().unwrap_or_default(),
            );
        }
    }
    out
}

/// What the plan wants on `cluster`: key → content hash.
pub fn desired(plan: &Plan, cluster: &str) -> BTreeMap<String, String> {
    plan.desired(&Target::Cluster(cluster.into()))
        .iter()
        .map(|(k, o)| (k.to_string(), o.content_hash().to_owned()))
        .collect()
}

/// Polls `probe` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if probe().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const WAIT: Duration = Duration::from_secs(20);

/// A fleet of doubles (one per cluster name), a planner over `objects`, and a reconciler.
pub struct Harness {
    pub planner: Planner,
    pub reconciler: Reconciler,
    pub board: StatusBoard,
    #[allow(dead_code)] // kept for tests that change a cluster's address
    pub conns: Arc<Connections>,
    #[allow(dead_code)] // held: a double stops when dropped
    pub doubles: BTreeMap<String, Double>,
    pub clients: BTreeMap<String, KubeCluster>,
}

impl Harness {
    /// Doubles for `clusters` (with a namespace controller, so deleted namespaces go away).
    pub async fn doubles(
        clusters: &[&str],
    ) -> (
        Arc<Connections>,
        BTreeMap<String, Double>,
        BTreeMap<String, KubeCluster>,
    ) {
        let conns = Arc::new(Connections::default());
        let mut doubles = BTreeMap::new();
        let mut clients = BTreeMap::new();
        for c in clusters {
            let d = Double::start(Config::new().namespace_controller())
                .await
                .unwrap();
            let config = config_for(d.url(), d.ca_pem(), d.admin_token()).await;
            conns.set(c, config.clone());
            clients.insert((*c).to_owned(), KubeCluster::new(c, config).unwrap());
            doubles.insert((*c).to_owned(), d);
        }
        (conns, doubles, clients)
    }

    pub async fn start(objects: Vec<Resource>, clusters: &[&str]) -> Harness {
        let (conns, doubles, clients) = Harness::doubles(clusters).await;
        Harness::start_on(objects, conns, doubles, clients)
    }

    /// A planner and a reconciler over doubles started (and maybe seeded) before.
    pub fn start_on(
        objects: Vec<Resource>,
        conns: Arc<Connections>,
        doubles: BTreeMap<String, Double>,
        clients: BTreeMap<String, KubeCluster>,
    ) -> Harness {
        let planner = fixtures::planner(objects);
        let board = StatusBoard::new();
        let reconciler = Reconciler::start(
            test_config(),
            conns.clone(),
            Arc::new(planner.plan().clone()),
            board.clone(),
            None,
        );
        Harness {
            planner,
            reconciler,
            board,
            conns,
            doubles,
            clients,
        }
    }

    pub fn change(&mut self, change: Change) {
        let delta = self.planner.apply(change);
        self.reconciler
            .publish(Arc::new(self.planner.plan().clone()), &delta);
    }

    pub fn client(&self, cluster: &str) -> &KubeCluster {
        &self.clients[cluster]
    }

    /// Whether every cluster holds exactly what the plan wants of it.
    pub async fn converged(&self) -> bool {
        for (name, c) in &self.clients {
            if !self
                .planner
                .plan()
                .has_target(&Target::Cluster(name.clone()))
            {
                continue;
            }
            if managed(c).await != desired(self.planner.plan(), name) {
                return false;
            }
        }
        true
    }

    pub async fn wait_converged(&self) {
        let ok = eventually(WAIT, || self.converged()).await;
        if !ok {
            for (name, c) in &self.clients {
                eprintln!(
                    "{name}: holds {:#?}\nwants {:#?}\nstatus {:#?}",
                    managed(c).await,
                    desired(self.planner.plan(), name),
                    self.board.cluster(name)
                );
            }
            panic!("the fleet did not converge within {WAIT:?}");
        }
    }
}

/// The JSON of an object on the cluster.
pub async fn get(c: &KubeCluster, kind: ObjectKind, ns: &str, name: &str) -> Option<Value> {
    api(c, kind, ns)
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}
