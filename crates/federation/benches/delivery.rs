//! Delivery at fleet scale: 1,000 clusters, each a kube-apiserver double on loopback in this
//! process, in 50 workspaces. The full initial sync (every cluster holds its plan), one
//! binding change at Global scope propagated to all 1,000 (until the last cluster has applied
//! it), and one at Workspace scope (its 20 clusters). Writes
//! `$PORTCULLIS_BENCH_OUT/delivery.md` when that is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_federation::delivery::{
    Connector, DeliveryError, Reconciler, ReconcilerConfig, StatusBoard, config_from_kubeconfig,
};
use portcullis_federation::{Change, Model, ObjectKey, Planner, PlannerConfig};
use portcullis_model::{
    Cluster, ClusterScopeRole, ClusterScopeRoleBinding, ClusterSpec, GLOBAL_NAMESPACE, PolicyRule,
    Resource, Subject, SubjectKind, Workspace, WorkspaceSpec,
};
use portcullis_testkit::kube_apiserver::{Config, Double};

const CLUSTERS: usize = 1_000;
const WORKSPACES: usize = 50;

struct Connections(HashMap<String, kube_client::Config>);

impl Connector for Connections {
    fn config(
        &self,
        cluster: &str,
    ) -> Pin<Box<dyn Future<Output = Result<kube_client::Config, DeliveryError>> + Send + '_>> {
        let got = self.0.get(cluster).cloned();
        let cluster = cluster.to_owned();
        Box::pin(async move {
            got.ok_or(DeliveryError::NoCredentials {
                cluster,
                message: "unknown".into(),
            })
        })
    }
}

fn rule() -> PolicyRule {
    PolicyRule {
        verbs: vec!["get".into(), "list".into()],
        api_groups: vec![String::new()],
        resources: vec!["pods".into()],
        ..PolicyRule::default()
    }
}

fn binding(ns: &str, name: &str, role: &str, group: &str) -> Resource {
    Resource::ClusterScopeRoleBinding(ClusterScopeRoleBinding::new(
        ns,
        name,
        role,
        vec![Subject {
            kind: SubjectKind::Group,
            name: group.into(),
            api_group: String::new(),
        }],
    ))
}

fn model() -> Vec<Resource> {
    let mut out = Vec::new();
    for r in ["view", "edit", "admin"] {
        out.push(Resource::ClusterScopeRole(ClusterScopeRole::new(
            GLOBAL_NAMESPACE,
            r,
            vec![rule()],
        )));
        out.push(binding(GLOBAL_NAMESPACE, r, r, &format!("{r}ers")));
    }
    for w in 0..WORKSPACES {
        let ns = format!("ws-{w}");
        out.push(Resource::Workspace(Workspace::new(
            format!("w{w}"),
            WorkspaceSpec {
                namespace_name: ns.clone(),
                ..WorkspaceSpec::default()
            },
        )));
        out.push(Resource::ClusterScopeRole(ClusterScopeRole::new(
            &ns,
            "ops",
            vec![rule()],
        )));
        out.push(binding(&ns, "ops", "ops", &format!("ops-{w}")));
    }
    for c in 0..CLUSTERS {
        let mut cl = Cluster::new(
            format!("c{c:04}"),
            ClusterSpec {
                api_server_url: format!("https://c{c}.example.com"),
                ..ClusterSpec::default()
            },
        );
        cl.metadata.namespace = Some(format!("ws-{}", c % WORKSPACES));
        out.push(Resource::Cluster(cl));
    }
    out
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time of this process (user + system), from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Waits until `done(board)` holds; the time it took.
async fn until(
    board: &StatusBoard,
    start: Instant,
    done: impl Fn(&StatusBoard) -> bool,
) -> Duration {
    let deadline = start + Duration::from_secs(300);
    loop {
        if done(board) {
            return start.elapsed();
        }
        assert!(Instant::now() < deadline, "no convergence within 300 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether each of `clusters` has applied `key` with content hash `hash`.
fn applied(board: &StatusBoard, clusters: &[String], key: &ObjectKey, hash: &str) -> bool {
    let all = board.clusters();
    clusters.iter().all(|c| {
        all.get(c).is_some_and(|s| {
            s.objects
                .get(key)
                .is_some_and(|o| o.applied_hash.as_deref() == Some(hash))
        })
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let t = Instant::now();
    let mut doubles = Vec::with_capacity(CLUSTERS);
    let mut conns = HashMap::new();
    for c in 0..CLUSTERS {
        let d = Double::start(Config::new().without_bootstrap_policy())
            .await
            .unwrap();
        let yaml = d.kubeconfig(d.admin_token(), "default");
        conns.insert(
            format!("c{c:04}"),
            config_from_kubeconfig(&yaml, None).await.unwrap(),
        );
        doubles.push(d);
    }
    let doubles_started = t.elapsed();
    let rss_doubles = rss_kib();

    let mut planner = Planner::new(PlannerConfig::default(), Model::from_resources(model()));
    let clusters: Vec<String> = (0..CLUSTERS).map(|c| format!("c{c:04}")).collect();
    let per_cluster = planner
        .plan()
        .desired(&portcullis_federation::Target::Cluster(clusters[0].clone()))
        .len();
    let board = StatusBoard::new();
    let config = ReconcilerConfig::default();
    let concurrency = config.concurrency;
    let cpu0 = cpu();
    let start = Instant::now();
    let reconciler = Reconciler::start(
        config,
        Arc::new(Connections(conns)),
        Arc::new(planner.plan().clone()),
        board.clone(),
        None,
    );
    let initial = until(&board, start, |b| {
        let all = b.clusters();
        clusters
            .iter()
            .all(|c| all.get(c).is_some_and(|s| s.in_sync()))
    })
    .await;
    let cpu_initial = cpu() - cpu0;
    let rss_synced = rss_kib();

    let mut measure = |change: Change, name: &str, ns: &str, holders: Vec<String>| {
        let delta = planner.apply(change);
        let key = ObjectKey {
            kind: portcullis_federation::ObjectKind::ClusterRoleBinding,
            namespace: String::new(),
            name: name.to_owned(),
        };
        let hash = delta
            .clusters
            .values()
            .flat_map(|c| c.upserts.iter())
            .find(|o| o.key == key)
            .map(|o| o.content_hash().to_owned())
            .unwrap_or_else(|| panic!("{name} in {ns} not in the delta"));
        let plan = Arc::new(planner.plan().clone());
        (delta, plan, key, hash, holders)
    };

    // One Global binding change: to all 1,000.
    let (delta, plan, key, hash, holders) = measure(
        Change::Upsert(Box::new(binding(
            GLOBAL_NAMESPACE,
            "view",
            "view",
            "viewers-2",
        ))),
        "portcullis:global:view",
        GLOBAL_NAMESPACE,
        clusters.clone(),
    );
    let cpu1 = cpu();
    let start = Instant::now();
    reconciler.publish(plan, &delta);
    let global = until(&board, start, |b| applied(b, &holders, &key, &hash)).await;
    let cpu_global = cpu() - cpu1;

    // One Workspace binding change: its 20 clusters.
    let ws_clusters: Vec<String> = clusters
        .iter()
        .enumerate()
        .filter(|(i, _)| i % WORKSPACES == 7)
        .map(|(_, c)| c.clone())
        .collect();
    let (delta, plan, key, hash, holders) = measure(
        Change::Upsert(Box::new(binding("ws-7", "ops", "ops", "ops-7-new"))),
        "portcullis:ws:w7:ops",
        "ws-7",
        ws_clusters,
    );
    let start = Instant::now();
    reconciler.publish(plan, &delta);
    let workspace = until(&board, start, |b| applied(b, &holders, &key, &hash)).await;

    reconciler.shutdown().await;
    drop(doubles);

    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Delivery: 1,000 clusters served by kube-apiserver doubles on loopback (delivery)\n"
    );
    let _ = writeln!(
        md,
        "{CLUSTERS} clusters in {WORKSPACES} workspaces, {per_cluster} objects each, one double per cluster in this process (HTTPS, its own CA); reconciler defaults (concurrency {concurrency}). Times until the last cluster has applied (read from the status board). CPU is this process's, the doubles' work included.\n"
    );
    let _ = writeln!(md, "| measure | value | target |");
    let _ = writeln!(md, "|---|---|---|");
    let _ = writeln!(
        md,
        "| start 1,000 doubles | {:.2} s | — |",
        doubles_started.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| initial sync, all 1,000 in sync | {:.2} s (CPU {:.1} s) | ≤ 60 s |",
        initial.as_secs_f64(),
        cpu_initial.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| one Global binding change, on all 1,000 | {:.0} ms (CPU {:.1} s) | ≤ 2 s |",
        global.as_secs_f64() * 1e3,
        cpu_global.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| one Workspace binding change, on its 20 | {:.0} ms | — |",
        workspace.as_secs_f64() * 1e3
    );
    let _ = writeln!(
        md,
        "| resident memory: doubles started / fleet in sync | {} MiB / {} MiB | — |",
        rss_doubles / 1024,
        rss_synced / 1024
    );
    print!("{md}");
    if let Ok(dir) = std::env::var("PORTCULLIS_BENCH_OUT") {
        std::fs::write(std::path::Path::new(&dir).join("delivery.md"), md).unwrap();
    }
}
