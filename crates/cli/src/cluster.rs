//! `portcullis cluster attach|detach|list` and `portcullis status`: attached clusters and what
//! delivery knows of them, through the `ClusterAttachment`, `ClusterDetachment` and
//! `DeliveryStatusReview` kinds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::authz::print_table;
use crate::client::Client;
use crate::fleet::ApiFlags;

/// `portcullis cluster attach`.
#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// The cluster's name in the fleet.
    pub name: String,
    /// Kubeconfig with the credentials portcullis uses on the cluster (a token or a client
    /// certificate; exec plugins are not supported).
    #[arg(long = "kubeconfig")]
    pub cluster_kubeconfig: PathBuf,
    /// Context of that kubeconfig (its current context when absent).
    #[arg(long)]
    pub context: Option<String>,
    /// The workspace the cluster joins.
    #[arg(long)]
    pub workspace: String,
    /// A label of the cluster, `key=value` (repeatable): what project placement selects on.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Attach even when the cluster is unreachable or the credentials lack permissions.
    #[arg(long)]
    pub force: bool,
    /// The cluster pulls its desired set (`portcullis agent` with `pull:`), for clusters the
    /// management plane cannot reach: only the kubeconfig's server and CA are sent, and a
    /// credential for the agent is written to --pull-credentials-dir.
    #[arg(long, requires = "pull_credentials_dir")]
    pub pull: bool,
    /// With --pull: where to write the agent's credential (`credential.pem`, mode 0600) and
    /// the management plane's CA (`ca.crt`).
    #[arg(long)]
    pub pull_credentials_dir: Option<PathBuf>,
    #[command(flatten)]
    pub api: ApiFlags,
}

/// `portcullis cluster detach`.
#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// The cluster's name.
    pub name: String,
    /// First remove every object portcullis put on the cluster (objects without portcullis's
    /// managed-by label are never touched).
    #[arg(long)]
    pub cleanup: bool,
    #[command(flatten)]
    pub api: ApiFlags,
}

/// `portcullis cluster list` and `portcullis status`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Output format: table (default) or `json`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// (`status`) One source object, `Kind/namespace/name`: what it produced on each cluster,
    /// with applied hash, last applied, last error and drift repairs.
    #[arg(long)]
    pub source: Option<String>,
    #[command(flatten)]
    pub api: ApiFlags,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

const V: &str = "/apis/portcullis.dev/v1alpha1";

/// The server, CA and credential of one context of a kubeconfig, files read and data decoded.
fn read_kubeconfig(path: &Path, context: Option<&str>) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let kc: Value = serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not a kubeconfig", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let named = |list: &str, name: &str, field: &str| -> Result<Value> {
        kc.get(list)
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|e| e.get(field))
            .cloned()
            .with_context(|| format!("{}: no {field} named {name:?}", path.display()))
    };
    let context_name = match context {
        Some(c) => c.to_owned(),
        None => kc
            .get("current-context")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .with_context(|| {
                format!(
                    "{} has no current-context: pass --context NAME",
                    path.display()
                )
            })?
            .to_owned(),
    };
    let ctx = named("contexts", &context_name, "context")?;
    let field = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).map(str::to_owned);
    let cluster_name = field(&ctx, "cluster").context("the context names no cluster")?;
    let user_name = field(&ctx, "user").context("the context names no user")?;
    let cluster = named("clusters", &cluster_name, "cluster")?;
    let user = named("users", &user_name, "user")?;
    // `x-data` (base64) or `x` (a file, relative to the kubeconfig).
    let data = |v: &Value, name: &str| -> Result<Option<String>> {
        if let Some(d) = field(v, &format!("{name}-data")) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .with_context(|| format!("{name}-data is not base64"))?;
            return Ok(Some(String::from_utf8(bytes).context("not PEM text")?));
        }
        if let Some(f) = field(v, name) {
            let p = dir.join(f);
            return Ok(Some(
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
            ));
        }
        Ok(None)
    };
    if user.get("exec").is_some() || user.get("auth-provider").is_some() {
        bail!(
            "the kubeconfig's user {user_name:?} gets its credential from a plugin (exec or \
             auth-provider); portcullis needs a static one it can keep: a service account token \
             or a client certificate (e.g. kubectl create token … and a kubeconfig with it)"
        );
    }
    if cluster
        .get("insecure-skip-tls-verify")
        .and_then(Value::as_bool)
        == Some(true)
    {
        bail!(
            "the kubeconfig's cluster {cluster_name:?} skips TLS verification; give it the API \
             server's CA (certificate-authority-data) instead"
        );
    }
    let server = field(&cluster, "server").context("the cluster has no server")?;
    let mut spec = Map::new();
    spec.insert("server".into(), json!(server));
    spec.insert(
        "certificateAuthorityData".into(),
        json!(data(&cluster, "certificate-authority")?.unwrap_or_default()),
    );
    let token = match field(&user, "token") {
        Some(t) => Some(t),
        None => match field(&user, "tokenFile") {
            Some(f) => Some(
                std::fs::read_to_string(dir.join(&f))
                    .with_context(|| format!("reading tokenFile {f}"))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        },
    };
    if let Some(t) = token {
        spec.insert("token".into(), json!(t));
    } else {
        let cert = data(&user, "client-certificate")?;
        let key = data(&user, "client-key")?;
        match (cert, key) {
            (Some(c), Some(k)) => {
                spec.insert("clientCertificateData".into(), json!(c));
                spec.insert("clientKeyData".into(), json!(k));
            }
            _ => bail!(
                "the kubeconfig's user {user_name:?} has no token and no client certificate \
                 with key"
            ),
        }
    }
    Ok(spec)
}

async fn post(c: &Client, plural: &str, body: &Value) -> Result<Value> {
    c.request(
        http::Method::POST,
        &format!("{V}/{plural}"),
        Some(("application/json", serde_json::to_vec(body)?)),
    )
    .await
}

/// `portcullis cluster attach`.
pub async fn attach(args: &AttachArgs) -> Result<ExitCode> {
    let mut spec = read_kubeconfig(&args.cluster_kubeconfig, args.context.as_deref())?;
    if args.pull {
        // The management plane never uses a pulling cluster's credential: not sent.
        for k in ["token", "clientCertificateData", "clientKeyData"] {
            spec.remove(k);
        }
        spec.insert("pull".into(), json!(true));
    }
    spec.insert("clusterName".into(), json!(args.name));
    spec.insert("workspace".into(), json!(args.workspace));
    spec.insert("force".into(), json!(args.force));
    spec.insert(
        "labels".into(),
        json!(
            args.labels
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>()
        ),
    );
    let c = Client::from_kubeconfig(&args.api.kubeconfig)?;
    let answer = post(
        &c,
        "clusterattachments",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterAttachment", "spec": spec }),
    )
    .await
    .with_context(|| format!("attaching cluster {:?}", args.name))?;
    let status = answer.get("status").cloned().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if let (Some(dir), Some(pull)) = (&args.pull_credentials_dir, status.get("pull")) {
        let field = |f: &str| pull.get(f).and_then(Value::as_str).unwrap_or_default();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let credential = dir.join("credential.pem");
        portcullis_server::pki::write_private(
            &credential,
            format!("{}{}", field("certificate"), field("key")).as_bytes(),
        )
        .with_context(|| format!("writing {}", credential.display()))?;
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, field("caCertificate"))
            .with_context(|| format!("writing {}", ca.display()))?;
        writeln!(
            out,
            "cluster {:?} attached to workspace {:?} in pull mode; give its agent these files and this configuration:\n\
             cluster: {}\npull:\n  managementURL: {}\n  credentialFile: {}\n  caFile: {}",
            args.name,
            args.workspace,
            args.name,
            c.base_url(),
            credential.display(),
            ca.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let version = status
        .get("kubernetesVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    writeln!(
        out,
        "cluster {:?} attached to workspace {:?}{}; its credentials are sealed in the store",
        args.name,
        args.workspace,
        if version.is_empty() {
            String::new()
        } else {
            format!(" (Kubernetes {version})")
        }
    )?;
    for w in status
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        writeln!(out, "warning (--force): {w}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `portcullis cluster detach`.
pub async fn detach(args: &DetachArgs) -> Result<ExitCode> {
    let c = Client::from_kubeconfig(&args.api.kubeconfig)?;
    let answer = post(
        &c,
        "clusterdetachments",
        &json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterDetachment",
            "spec": { "clusterName": args.name, "cleanup": args.cleanup },
        }),
    )
    .await
    .with_context(|| format!("detaching cluster {:?}", args.name))?;
    let deleted = answer
        .pointer("/status/deleted")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if args.cleanup {
        println!(
            "cluster {:?} detached; {deleted} objects portcullis had put there were removed",
            args.name
        );
    } else {
        println!(
            "cluster {:?} detached; the objects portcullis put there stay (detach with --cleanup to remove them)",
            args.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn review(api: &ApiFlags, source: Option<&str>) -> Result<Value> {
    let c = Client::from_kubeconfig(&api.kubeconfig)?;
    post(
        &c,
        "deliverystatusreviews",
        &json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "DeliveryStatusReview",
            "spec": { "source": source.unwrap_or_default() },
        }),
    )
    .await
    .context("reading the delivery status")
}

async fn statuses(api: &ApiFlags) -> Result<Vec<Value>> {
    Ok(review(api, None)
        .await?
        .pointer("/status/clusters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// `portcullis status --source KIND/NS/NAME`.
async fn source_status(args: &ListArgs, source: &str) -> Result<ExitCode> {
    let entries = review(&args.api, Some(source))
        .await?
        .pointer("/status/source")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if args.output.as_deref() == Some("json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "source": entries }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                text(e, "cluster"),
                text(e, "object"),
                text(e, "appliedHash"),
                text(e, "lastApplied"),
                text(e, "driftRepairs"),
                text(e, "lastError"),
            ]
        })
        .collect();
    print_table(
        &mut std::io::stdout().lock(),
        [
            "CLUSTER",
            "OBJECT",
            "APPLIED HASH",
            "LAST APPLIED",
            "DRIFT REPAIRS",
            "LAST ERROR",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value, field: &str) -> String {
    match v.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn condition(v: &Value, type_: &str) -> String {
    v.get("conditions")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .unwrap_or("Unknown")
        .to_owned()
}

fn conflicts(v: &Value) -> usize {
    v.get("conflicts")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// `portcullis cluster list`.
pub async fn list(args: &ListArgs) -> Result<ExitCode> {
    let clusters = statuses(&args.api).await?;
    if args.output.as_deref() == Some("json") {
        println!("{}", serde_json::to_string_pretty(&clusters)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = clusters
        .iter()
        .map(|c| {
            [
                text(c, "name"),
                text(c, "workspace"),
                condition(c, "Reachable"),
                condition(c, "Synced"),
                text(c, "lastSync"),
                text(c, "lastError"),
            ]
        })
        .collect();
    print_table(
        &mut std::io::stdout().lock(),
        [
            "NAME",
            "WORKSPACE",
            "REACHABLE",
            "SYNCED",
            "LAST SYNC",
            "LAST ERROR",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// `portcullis status`: delivery per cluster.
pub async fn status(args: &ListArgs) -> Result<ExitCode> {
    if let Some(source) = &args.source {
        return source_status(args, source).await;
    }
    let clusters = statuses(&args.api).await?;
    if args.output.as_deref() == Some("json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "clusters": clusters }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 9]> = clusters
        .iter()
        .map(|c| {
            [
                text(c, "name"),
                text(c, "workspace"),
                text(c, "sink"),
                condition(c, "Reachable"),
                condition(c, "Synced"),
                format!("{}/{}", text(c, "inSyncObjects"), text(c, "desired")),
                text(c, "driftRepairs"),
                conflicts(c).to_string(),
                text(c, "lastSync"),
            ]
        })
        .collect();
    let mut out = std::io::stdout().lock();
    print_table(
        &mut out,
        [
            "CLUSTER",
            "WORKSPACE",
            "SINK",
            "REACHABLE",
            "SYNCED",
            "OBJECTS",
            "DRIFT REPAIRS",
            "CONFLICTS",
            "LAST SYNC",
        ],
        &rows,
    );
    for c in &clusters {
        if let Some(e) = c.get("lastError").and_then(Value::as_str) {
            writeln!(out, "{}: last error: {e}", text(c, "name"))?;
        }
        for conflict in c
            .get("conflicts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            writeln!(
                out,
                "{}: conflict: {}: {}",
                text(c, "name"),
                text(conflict, "object"),
                text(conflict, "message")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
