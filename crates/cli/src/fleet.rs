//! Questions about the whole fleet, answered by the management plane's federation plan through
//! its review kinds: `explain` (FleetAccessReview), `who-can --fleet` (FleetWhoCanReview),
//! `plan` (PlanReview), and `defaults reset` (DefaultsReset).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::authz::{print_table, request_attributes};
use crate::client::Client;

/// Where the management API is: a kubeconfig, `admin.conf` by default.
#[derive(clap::Args, Debug)]
pub struct ApiFlags {
    /// Kubeconfig of the management API.
    #[arg(
        long = "config",
        env = "PORTCULLIS_CONFIG",
        default_value = "portcullis-data/admin.conf"
    )]
    pub kubeconfig: PathBuf,
}

/// `portcullis explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// Verb (get, list, create, …).
    pub verb: String,
    /// `RESOURCE[.GROUP][/SUBRESOURCE]`, or a non-resource path such as `/dashboard`.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Namespace; without it the question is cluster-wide (only cluster-wide grants answer).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// User to ask about (yourself when neither --as nor --as-group is given).
    #[arg(long = "as")]
    pub as_user: Option<String>,
    /// Groups of that user (repeatable).
    #[arg(long = "as-group")]
    pub as_groups: Vec<String>,
    /// The cluster: an attached cluster's name, or `management` (the default).
    #[arg(long, default_value = "management")]
    pub cluster: String,
    /// Output format: text (default) or `json`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub api: ApiFlags,
}

/// `portcullis plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Files, directories or `-` with the objects to plan.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace for namespaced objects that do not name one.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format: text (default) or `json`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub api: ApiFlags,
}

/// `portcullis defaults reset`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["global", "workspace", "project"])))]
pub struct ResetArgs {
    /// The global defaults (dashboard route roles).
    #[arg(long)]
    pub global: bool,
    /// A workspace's defaults.
    #[arg(long)]
    pub workspace: Option<String>,
    /// A project's defaults (with -n, its workspace's namespace).
    #[arg(long, requires = "namespace")]
    pub project: Option<String>,
    /// Namespace of the project.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub api: ApiFlags,
}

/// The `spec` attributes of a review for `VERB RESOURCE [NAME]`, as kubectl parses them; the
/// namespace is empty (cluster-wide) unless given.
fn review_attributes(
    verb: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Value {
    let a = request_attributes(verb, resource, name, namespace);
    if a.resource_request {
        json!({ "resourceAttributes": {
            "namespace": namespace.unwrap_or_default(), "verb": a.verb, "group": a.api_group,
            "resource": a.resource, "subresource": a.subresource, "name": a.name,
        } })
    } else {
        json!({ "nonResourceAttributes": { "path": a.path, "verb": a.verb } })
    }
}

async fn post_review(api: &ApiFlags, kind: &str, spec: Value) -> Result<Value> {
    let client = Client::from_kubeconfig(&api.kubeconfig)?;
    let body = json!({
        "apiVersion": portcullis_model::API_VERSION,
        "kind": kind,
        "spec": spec,
    });
    let path = format!(
        "/apis/{}/{}/{}s",
        portcullis_model::GROUP,
        portcullis_model::VERSION,
        kind.to_ascii_lowercase()
    );
    client
        .request(
            http::Method::POST,
            &path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
        .with_context(|| format!("asking the management API ({kind})"))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `Kind/namespace/name` of a serialised `SourceRef` or `ObjectKey`.
fn reference(v: &Value) -> String {
    let (kind, ns, name) = (
        str_at(v, "/kind"),
        str_at(v, "/namespace"),
        str_at(v, "/name"),
    );
    if ns.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{ns}/{name}")
    }
}

/// Runs `explain`: prints yes or no and the grants; exit 0 for yes, 1 for no, 2 for errors.
pub async fn explain(args: &ExplainArgs) -> ExitCode {
    let run = async || -> Result<bool> {
        let mut spec = review_attributes(
            &args.verb,
            &args.resource,
            args.name.as_deref(),
            args.namespace.as_deref(),
        );
        if let Some(m) = spec.as_object_mut() {
            m.insert("cluster".into(), json!(args.cluster));
            m.insert(
                "user".into(),
                json!(args.as_user.clone().unwrap_or_default()),
            );
            m.insert("groups".into(), json!(args.as_groups));
        }
        let answer = post_review(&args.api, "FleetAccessReview", spec).await?;
        let status = answer.get("status").cloned().unwrap_or(Value::Null);
        let allowed = status.get("allowed").and_then(Value::as_bool) == Some(true);
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        if args.output.as_deref() == Some("json") {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&status)?);
            return Ok(allowed);
        }
        let _ = writeln!(out, "{}", if allowed { "yes" } else { "no" });
        let grants = status
            .get("grants")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !grants.is_empty() {
            let rows: Vec<[String; 4]> = grants
                .iter()
                .map(|g| {
                    let role_source = g
                        .get("roleSource")
                        .filter(|v| !v.is_null())
                        .map_or_else(|| "-".to_owned(), reference);
                    [
                        str_at(g, "/scope").to_owned(),
                        reference(&g["bindingSource"]),
                        role_source,
                        reference(&g["binding"]),
                    ]
                })
                .collect();
            print_table(
                &mut out,
                ["SCOPE", "SOURCE BINDING", "SOURCE ROLE", "ON THE CLUSTER"],
                &rows,
            );
        }
        if let Some(reason) = status.get("reason").and_then(Value::as_str) {
            let _ = writeln!(out, "{reason}");
        }
        Ok(allowed)
    };
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `who-can --fleet`: prints who can, per cluster, through which source; returns the exit
/// code (0 when someone can, 1 when nobody can, 2 for errors).
pub async fn who_can(
    api: &ApiFlags,
    verb: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
    output: Option<&str>,
) -> i32 {
    let run = async || -> Result<i32> {
        let spec = review_attributes(verb, resource, name, namespace);
        let answer = post_review(api, "FleetWhoCanReview", spec).await?;
        let status = answer.get("status").cloned().unwrap_or_default();
        let clusters = status
            .get("clusters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        if output == Some("json") {
            // The answer as served: each scope's subjects once, and per cluster its scopes.
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&status)?);
        } else {
            // Each scope's cells once; a row per cluster and subject refers to them.
            let mut cells: std::collections::BTreeMap<&str, Vec<[String; 3]>> =
                std::collections::BTreeMap::new();
            if let Some(scopes) = status.get("scopes").and_then(Value::as_object) {
                for (key, subjects) in scopes {
                    let list = subjects.as_array().into_iter().flatten().map(|s| {
                        [
                            format!("{}/{}", str_at(s, "/kind"), str_at(s, "/name")),
                            str_at(s, "/scope").to_owned(),
                            reference(&s["source"]),
                        ]
                    });
                    cells.insert(key.as_str(), list.collect());
                }
            }
            let mut rows: Vec<[&str; 4]> = Vec::new();
            for (cluster, scopes) in &clusters {
                for scope in scopes.as_array().into_iter().flatten() {
                    let subjects = scope.as_str().and_then(|k| cells.get(k));
                    for [subject, scope, source] in subjects.into_iter().flatten() {
                        rows.push([cluster.as_str(), subject, scope, source]);
                    }
                }
            }
            print_table(&mut out, ["CLUSTER", "SUBJECT", "SCOPE", "SOURCE"], &rows);
        }
        Ok(if clusters.is_empty() { 1 } else { 0 })
    };
    run().await.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        2
    })
}

/// Runs `plan`: the per-cluster diff that applying the files would cause.
pub async fn plan(args: &PlanArgs) -> Result<ExitCode> {
    let mut objects = Vec::new();
    for (source, mut doc) in crate::resources::read_manifests(&args.files)? {
        let kind = str_at(&doc, "/kind").to_owned();
        let Some(info) = portcullis_model::kind_by_name(&kind) else {
            bail!("{source}: {kind:?} is not a portcullis kind; plan takes portcullis objects");
        };
        if info.namespaced && str_at(&doc, "/metadata/namespace").is_empty() {
            let Some(ns) = &args.namespace else {
                bail!(
                    "{source}: {kind} {:?} has no metadata.namespace; set it or pass -n",
                    str_at(&doc, "/metadata/name")
                );
            };
            if let Some(m) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("namespace".into(), json!(ns));
            }
        }
        objects.push(doc);
    }
    let answer = post_review(&args.api, "PlanReview", json!({ "objects": objects })).await?;
    let status = answer.get("status").cloned().unwrap_or(Value::Null);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.output.as_deref() == Some("json") {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let clusters = status
        .get("clusters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if clusters.is_empty() {
        let _ = writeln!(out, "no changes on any cluster");
    }
    for (cluster, diff) in &clusters {
        let _ = writeln!(out, "cluster {cluster}:");
        for a in diff
            .get("apply")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let _ = writeln!(
                out,
                "  + {}  (from {}, content {})",
                str_at(a, "/object"),
                str_at(a, "/source"),
                str_at(a, "/contentHash")
            );
        }
        for d in diff
            .get("delete")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let _ = writeln!(out, "  - {}", d.as_str().unwrap_or_default());
        }
    }
    for c in status
        .get("conflicts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "conflict: {}: {}",
            str_at(c, "/object"),
            str_at(c, "/message")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `defaults reset`.
pub async fn reset(args: &ResetArgs) -> Result<ExitCode> {
    let spec = json!({
        "global": args.global,
        "workspace": args.workspace.clone().unwrap_or_default(),
        "project": args.project.clone().unwrap_or_default(),
        "namespace": args.namespace.clone().unwrap_or_default(),
    });
    let answer = post_review(&args.api, "DefaultsReset", spec).await?;
    let status = answer.get("status").cloned().unwrap_or(Value::Null);
    let changed = status.get("changed").and_then(Value::as_u64).unwrap_or(0);
    println!(
        "default roles of namespace {:?} reset ({changed} created or overwritten):",
        str_at(&status, "/namespace")
    );
    for o in status
        .get("objects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("  {}", o.as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}
