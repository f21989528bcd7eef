//! Pull mode of `portcullis agent`, for clusters the management plane cannot reach (behind
//! NAT): the agent polls its cluster's desired set from the management plane
//! (`DesiredSetReview`, with the client certificate `cluster attach --pull` issued, which may
//! read that set only), and a reconciler on the agent applies it to its own cluster with the
//! same Kubernetes sink as push delivery — server-side apply, garbage collection by the
//! managed-by label, drift repair.
//!
//! The reconciler starts only after the first successful read: an agent that cannot reach the
//! management plane never mistakes "no answer" for "nothing desired", and keeps delivering the
//! last set it read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portcullis_federation::delivery::{
    KubeCluster, Reconciler, ReconcilerConfig, StatusBoard, config_from_kubeconfig,
};
use portcullis_federation::{Delta, Plan, Planned};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `pull:` of the agent's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullConfig {
    /// The management plane's URL (`https://…`).
    #[serde(rename = "managementURL")]
    pub management_url: String,
    /// PEM file with the client certificate and key that `cluster attach --pull` issued.
    pub credential_file: PathBuf,
    /// PEM file with the management plane's CA.
    pub ca_file: PathBuf,
    /// Seconds between two reads of the desired set.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
}

fn default_interval() -> u64 {
    5
}

/// The kube client configuration of the agent's own cluster: `kubeconfig` (and `context`), or
/// in-cluster.
pub async fn upstream_config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube_client::Config> {
    match kubeconfig {
        Some(path) => {
            let yaml = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(config_from_kubeconfig(&yaml, context).await?)
        }
        None => kube_client::Config::incluster().context("the in-cluster configuration"),
    }
}

/// The management plane as a kube client sees it: its URL, CA, and the pull credential.
async fn management_config(pull: &PullConfig) -> Result<kube_client::Config> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let credential = read(&pull.credential_file)?;
    let ca = read(&pull.ca_file)?;
    // The file holds the certificate and its key, as `cluster attach --pull` writes it.
    let (mut cert, mut key) = (String::new(), String::new());
    let mut into_key = false;
    for line in credential.lines() {
        if line.starts_with("-----BEGIN") {
            into_key = line.contains("PRIVATE KEY");
        }
        let out = if into_key { &mut key } else { &mut cert };
        out.push_str(line);
        out.push('\n');
    }
    anyhow::ensure!(
        !cert.is_empty() && !key.is_empty(),
        "{} must hold the client certificate and its private key (PEM)",
        pull.credential_file.display()
    );
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "m", "cluster": {
            "server": pull.management_url,
            "certificate-authority-data": STANDARD.encode(ca),
        }}],
        "users": [{ "name": "u", "user": {
            "client-certificate-data": STANDARD.encode(cert),
            "client-key-data": STANDARD.encode(key),
        }}],
        "contexts": [{ "name": "m", "context": { "cluster": "m", "user": "u" } }],
        "current-context": "m",
    });
    Ok(config_from_kubeconfig(&kubeconfig.to_string(), None).await?)
}

/// The desired set as the management plane answered it.
struct Answer {
    hash: String,
    /// `None` when unchanged since the hash sent.
    objects: Option<Vec<Planned>>,
}

async fn read_desired(
    client: &kube_client::Client,
    cluster: &str,
    if_none_match: &str,
) -> Result<Answer> {
    let body = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "DesiredSetReview",
        "spec": { "clusterName": cluster, "ifNoneMatch": if_none_match },
    });
    let request = http::Request::post("/apis/portcullis.dev/v1alpha1/desiredsetreviews")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string().into_bytes())?;
    let answer: Value = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .context("the management plane did not answer within 30s")??;
    let status = answer.get("status").context("an answer without status")?;
    let hash = status
        .get("hash")
        .and_then(Value::as_str)
        .context("an answer without status.hash")?
        .to_owned();
    if status.get("unchanged").and_then(Value::as_bool) == Some(true) {
        return Ok(Answer {
            hash,
            objects: None,
        });
    }
    let objects = status
        .get("objects")
        .and_then(Value::as_array)
        .context("an answer without status.objects")?
        .iter()
        .map(|o| Planned::from_json(o).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()
        .context("an object of the desired set")?;
    Ok(Answer {
        hash,
        objects: Some(objects),
    })
}

/// A running pull loop.
pub struct Puller {
    /// The loop (it owns the reconciler): abort it to stop.
    pub task: tokio::task::JoinHandle<()>,
    /// What the reconciler knows of this cluster.
    pub board: StatusBoard,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller").finish_non_exhaustive()
    }
}

impl Puller {
    /// Starts polling the desired set of `cluster` as `pull` says and applying it with
    /// `upstream`.
    ///
    /// # Errors
    ///
    /// Unreadable credential or CA files.
    pub async fn start(
        cluster: &str,
        pull: &PullConfig,
        upstream: kube_client::Config,
    ) -> Result<Puller> {
        let management = KubeCluster::new("management", management_config(pull).await?)?
            .client()
            .clone();
        let board = StatusBoard::new();
        let interval = Duration::from_secs(pull.interval_seconds.max(1));
        let task = tokio::spawn(run(
            cluster.to_owned(),
            management,
            upstream,
            board.clone(),
            interval,
        ));
        Ok(Puller { task, board })
    }
}

async fn run(
    cluster: String,
    management: kube_client::Client,
    upstream: kube_client::Config,
    board: StatusBoard,
    interval: Duration,
) {
    let mut hash = String::new();
    let mut reconciler: Option<Arc<Reconciler>> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let answer = match read_desired(&management, &cluster, &hash).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reading the desired set from the management plane failed; keeping the last one");
                continue;
            }
        };
        let Some(objects) = answer.objects else {
            continue;
        };
        let plan = Arc::new(Plan::single_cluster(&cluster, objects));
        hash = answer.hash;
        match &reconciler {
            Some(r) => {
                r.publish(plan, &Delta::default());
                r.wake(&cluster);
            }
            None => {
                let upstream = upstream.clone();
                let connector = move |_: &str| Ok(upstream.clone());
                reconciler = Some(Arc::new(Reconciler::start(
                    ReconcilerConfig::default(),
                    Arc::new(connector),
                    plan,
                    board.clone(),
                    None,
                )));
            }
        }
    }
}
