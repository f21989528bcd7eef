//! `can-i`: access questions answered offline by the RBAC engine over policy files, exactly as
//! kube-apiserver would answer them (kubectl's spelling; exit 0 for yes, 1 for no, 2 for errors).

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use std::time::Instant;

use portcullis_rbac::batch;
use portcullis_rbac::{Attributes, CompiledPolicy, Policy};

/// `portcullis can-i`.
#[derive(clap::Args, Debug)]
pub struct CanIArgs {
    /// Verb (get, list, create, …).
    pub verb: Option<String>,
    /// `RESOURCE[.GROUP][/SUBRESOURCE]`, or a non-resource path such as `/healthz`.
    pub resource: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// User to ask for.
    #[arg(long = "as")]
    pub as_user: Option<String>,
    /// Groups of that user (repeatable).
    #[arg(long = "as-group")]
    pub as_groups: Vec<String>,
    /// Policy files, or the management API.
    #[command(flatten)]
    pub source: PolicySource,
    /// Read one SubjectAccessReview spec per line from this file (`-`: stdin) and write one
    /// `{"allowed":…,"reason":"…"}` per line.
    #[arg(long)]
    pub batch: Option<PathBuf>,
}

/// Where access questions are answered from: policy files, or else the management API.
#[derive(clap::Args, Debug)]
pub struct PolicySource {
    /// Kubernetes RBAC objects: YAML or JSON files or directories (List kinds too).
    #[arg(long = "policy")]
    pub policy: Vec<PathBuf>,
    /// Kubeconfig of the management API, asked (or whose RBAC objects are read) when no
    /// `--policy` is given.
    #[arg(
        long = "config",
        env = "PORTCULLIS_CONFIG",
        default_value = "portcullis-data/admin.conf"
    )]
    pub kubeconfig: PathBuf,
    /// Print how long each step took (reading, parsing, compiling, answering) on stderr.
    #[arg(long)]
    pub timings: bool,
}

/// `can-i` without `--policy`: asks the management API with a SelfSubjectAccessReview (or a
/// SubjectAccessReview with `--as`), as `kubectl auth can-i` does.
pub async fn can_i_remote(args: &CanIArgs) -> i32 {
    let run = async || -> Result<i32, String> {
        let (Some(verb), Some(resource)) = (&args.verb, &args.resource) else {
            return Err("usage: can-i VERB RESOURCE[.GROUP][/SUBRESOURCE] [NAME]".into());
        };
        if args.batch.is_some() {
            return Err("--batch needs --policy".into());
        }
        let a = request_attributes(
            verb,
            resource,
            args.name.as_deref(),
            args.namespace.as_deref(),
        );
        let mut spec = if a.resource_request {
            serde_json::json!({ "resourceAttributes": {
                "namespace": a.namespace, "verb": a.verb, "group": a.api_group,
                "resource": a.resource, "subresource": a.subresource, "name": a.name,
            } })
        } else {
            serde_json::json!({ "nonResourceAttributes": { "path": a.path, "verb": a.verb } })
        };
        let (kind, plural) = if args.as_user.is_some() || !args.as_groups.is_empty() {
            if let Some(m) = spec.as_object_mut() {
                m.insert(
                    "user".into(),
                    serde_json::json!(args.as_user.clone().unwrap_or_default()),
                );
                m.insert("groups".into(), serde_json::json!(args.as_groups));
            }
            ("SubjectAccessReview", "subjectaccessreviews")
        } else {
            ("SelfSubjectAccessReview", "selfsubjectaccessreviews")
        };
        let body = serde_json::json!({ "apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec });
        let client = crate::client::Client::from_kubeconfig(&args.source.kubeconfig)
            .map_err(|e| format!("{e:#}"))?;
        let answer = client
            .request(
                http::Method::POST,
                &format!("/apis/authorization.k8s.io/v1/{plural}"),
                Some(("application/json", body.to_string().into_bytes())),
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
        let allowed = answer
            .pointer("/status/allowed")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        println!("{}", if allowed { "yes" } else { "no" });
        Ok(if allowed { 0 } else { 1 })
    };
    run().await.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        2
    })
}

/// Runs `can-i`; returns the exit code.
pub fn can_i(args: &CanIArgs) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn run(args: &CanIArgs) -> Result<i32, String> {
    let mut timings = Timings::new(args.source.timings);
    let policy = load_policy(&args.source.policy, &mut timings)?;
    let compiled = CompiledPolicy::new(&policy);
    timings.step("compiled the index");
    drop(policy);
    timings.step("freed the parsed objects");
    if let Some(batch_file) = &args.batch {
        let stdout = std::io::stdout();
        let errors = if batch_file.as_os_str() == "-" {
            batch::run(&compiled, std::io::stdin().lock(), stdout.lock())
        } else {
            let f = std::fs::File::open(batch_file)
                .map_err(|e| format!("{}: {e}", batch_file.display()))?;
            batch::run(&compiled, BufReader::new(f), stdout.lock())
        }
        .map_err(|e| e.to_string())?;
        timings.step("answered the batch");
        return Ok(if errors == 0 { 0 } else { 2 });
    }
    let (Some(verb), Some(resource)) = (&args.verb, &args.resource) else {
        return Err(
            "usage: can-i VERB RESOURCE[.GROUP][/SUBRESOURCE] [NAME] or can-i --batch FILE".into(),
        );
    };
    let mut a = request_attributes(
        verb,
        resource,
        args.name.as_deref(),
        args.namespace.as_deref(),
    );
    a.user = args.as_user.clone().unwrap_or_default();
    a.groups = args.as_groups.clone();
    if a.user.is_empty() && a.groups.is_empty() {
        return Err("--as USER (and/or --as-group GROUP) is required with --policy".into());
    }
    let allowed = batch::decide(&compiled, &a).allowed;
    timings.step("decided");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", if allowed { "yes" } else { "no" });
    Ok(if allowed { 0 } else { 1 })
}

/// `--timings`: how long each step of a command took, on stderr, so that a user can see where
/// the time of a large policy goes.
pub struct Timings {
    last: Option<Instant>,
}

impl Timings {
    /// Reports only if `on`.
    pub fn new(on: bool) -> Timings {
        Timings {
            last: on.then(Instant::now),
        }
    }

    /// Reports the time since the last step as `what`.
    pub fn step(&mut self, what: impl std::fmt::Display) {
        if let Some(last) = &mut self.last {
            let now = Instant::now();
            eprintln!(
                "timing: {what}: {:.1} ms",
                now.duration_since(*last).as_secs_f64() * 1e3
            );
            *last = now;
        }
    }
}

/// Reads policy files and directories (their `.yaml`, `.yml`, `.json` files, sorted): JSON
/// decoded straight into RBAC objects, YAML with limits that grow with the file (see
/// [`Policy::add_source`]).
pub fn load_policy(paths: &[PathBuf], timings: &mut Timings) -> Result<Policy, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut policy = Policy::default();
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        timings.step(format_args!(
            "read {} ({} bytes)",
            path.display(),
            text.len()
        ));
        let name = path.display().to_string();
        policy.add_source(&name, &text).map_err(|e| e.to_string())?;
        timings.step(format_args!("decoded the objects of {name}"));
    }
    policy.aggregate();
    timings.step(format_args!(
        "aggregated ({} roles and cluster roles, {} bindings)",
        policy.roles.len() + policy.cluster_roles.len(),
        policy.binding_count()
    ));
    Ok(policy)
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if path.is_dir() {
        for e in crate::resources::manifest_files(path).map_err(|e| format!("{e:#}"))? {
            collect(&e, out)?;
        }
        return Ok(());
    }
    out.push(path.to_owned());
    Ok(())
}

/// `portcullis who-can`.
#[derive(clap::Args, Debug)]
pub struct WhoCanArgs {
    /// Verb.
    pub verb: String,
    /// `RESOURCE[.GROUP][/SUBRESOURCE]`, or a non-resource path.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Policy files, or the management API.
    #[command(flatten)]
    pub source: PolicySource,
    /// Output format: a table (default) or `json`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Every cluster of the fleet, from the federation plan (CLUSTER SUBJECT SCOPE SOURCE);
    /// without -n the question is cluster-wide.
    #[arg(long, conflicts_with = "policy")]
    pub fleet: bool,
}

/// `portcullis auth rules` (SelfSubjectRulesReview).
#[derive(clap::Args, Debug)]
pub struct AuthRulesArgs {
    /// User to list the rules of.
    #[arg(long = "as")]
    pub as_user: Option<String>,
    /// Groups of that user (repeatable).
    #[arg(long = "as-group")]
    pub as_groups: Vec<String>,
    /// Namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Policy files, or the management API.
    #[command(flatten)]
    pub source: PolicySource,
    /// Output format: a table (default) or `json`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

impl PolicySource {
    /// The policy to answer from: the `--policy` files, or the management plane's own RBAC
    /// objects read through its API (which needs `list` on the four RBAC kinds).
    pub async fn load(&self, timings: &mut Timings) -> Result<Policy, String> {
        if !self.policy.is_empty() {
            return load_policy(&self.policy, timings);
        }
        let client = crate::client::Client::from_kubeconfig(&self.kubeconfig)
            .map_err(|e| format!("{e:#}"))?;
        let mut items = Vec::new();
        for (plural, kind) in [
            ("clusterroles", "ClusterRole"),
            ("clusterrolebindings", "ClusterRoleBinding"),
            ("roles", "Role"),
            ("rolebindings", "RoleBinding"),
        ] {
            let list = client
                .get(&format!("/apis/rbac.authorization.k8s.io/v1/{plural}"))
                .await
                .map_err(|e| format!("reading {plural} from the management API: {e:#}"))?;
            for mut item in list
                .get("items")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                // List items may leave out apiVersion and kind (API conventions); the parser wants them.
                if let Some(o) = item.as_object_mut() {
                    o.insert("apiVersion".into(), "rbac.authorization.k8s.io/v1".into());
                    o.insert("kind".into(), kind.into());
                    o.remove("status");
                }
                items.push(item);
            }
        }
        let mut policy = Policy::default();
        policy
            .add_documents("the management API", items)
            .map_err(|e| e.to_string())?;
        policy.aggregate();
        timings.step("read the RBAC objects of the management API");
        Ok(policy)
    }

    /// [`PolicySource::load`], reporting a failure on stderr.
    async fn load_or_report(&self, timings: &mut Timings) -> Option<Policy> {
        self.load(timings)
            .await
            .inspect_err(|e| eprintln!("error: {e}"))
            .ok()
    }
}

pub(crate) fn request_attributes(
    verb: &str,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Attributes {
    let mut a = Attributes {
        verb: verb.to_owned(),
        ..Attributes::default()
    };
    if resource.starts_with('/') {
        a.path = resource.to_owned();
    } else {
        let (resource_group, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let (res, group) = resource_group
            .split_once('.')
            .unwrap_or((resource_group, ""));
        a.resource_request = true;
        a.resource = res.to_owned();
        a.api_group = group.to_owned();
        a.subresource = sub.to_owned();
        a.namespace = namespace.unwrap_or("default").to_owned();
        a.name = name.unwrap_or_default().to_owned();
    }
    a
}

/// Runs `who-can`; returns the exit code (0 when someone can, 1 when nobody can).
pub async fn who_can(args: &WhoCanArgs) -> i32 {
    if args.fleet {
        let api = crate::fleet::ApiFlags {
            kubeconfig: args.source.kubeconfig.clone(),
        };
        return crate::fleet::who_can(
            &api,
            &args.verb,
            &args.resource,
            args.name.as_deref(),
            args.namespace.as_deref(),
            args.output.as_deref(),
        )
        .await;
    }
    let mut timings = Timings::new(args.source.timings);
    let Some(policy) = args.source.load_or_report(&mut timings).await else {
        return 2;
    };
    let mut run = || -> Result<i32, String> {
        let a = request_attributes(
            &args.verb,
            &args.resource,
            args.name.as_deref(),
            args.namespace.as_deref(),
        );
        let answers = portcullis_rbac::review::who_can(&policy, &a);
        timings.step(format_args!("found {} subjects", answers.len()));
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        if args.output.as_deref() == Some("json") {
            let text = serde_json::to_string_pretty(&answers).map_err(|e| e.to_string())?;
            let _ = writeln!(out, "{text}");
        } else {
            let rows: Vec<[String; 4]> = answers
                .iter()
                .map(|w| {
                    let subject = if w.namespace.is_empty() {
                        w.name.clone()
                    } else {
                        format!("{}/{}", w.namespace, w.name)
                    };
                    [w.kind.clone(), subject, w.binding.clone(), w.role.clone()]
                })
                .collect();
            print_table(&mut out, ["KIND", "SUBJECT", "BINDING", "ROLE"], &rows);
        }
        Ok(if answers.is_empty() { 1 } else { 0 })
    };
    run().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        2
    })
}

/// Runs `auth rules`; returns the exit code.
pub async fn auth_rules(args: &AuthRulesArgs) -> i32 {
    let user = args.as_user.clone().unwrap_or_default();
    if user.is_empty() && args.as_groups.is_empty() {
        eprintln!("error: --as USER (and/or --as-group GROUP) is required");
        return 2;
    }
    let mut timings = Timings::new(args.source.timings);
    let Some(policy) = args.source.load_or_report(&mut timings).await else {
        return 2;
    };
    let mut run = || -> Result<i32, String> {
        let ns = args.namespace.clone().unwrap_or_else(|| "default".into());
        let status = portcullis_rbac::review::rules_review(&policy, &user, &args.as_groups, &ns);
        timings.step("listed the rules");
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        if args.output.as_deref() == Some("json") {
            let text = serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?;
            let _ = writeln!(out, "{text}");
        } else {
            // kubectl auth can-i --list's columns.
            let mut rows: Vec<[String; 4]> = status
                .resource_rules
                .iter()
                .map(|r| {
                    let resources: Vec<String> = r
                        .resources
                        .iter()
                        .flat_map(|res| {
                            r.api_groups.iter().map(move |g| {
                                if g.is_empty() {
                                    res.clone()
                                } else {
                                    format!("{res}.{g}")
                                }
                            })
                        })
                        .collect();
                    [
                        resources.join(", "),
                        String::new(),
                        format!("[{}]", r.resource_names.join(" ")),
                        format!("[{}]", r.verbs.join(" ")),
                    ]
                })
                .collect();
            rows.extend(status.non_resource_rules.iter().map(|r| {
                [
                    String::new(),
                    format!("[{}]", r.non_resource_urls.join(" ")),
                    "[]".into(),
                    format!("[{}]", r.verbs.join(" ")),
                ]
            }));
            print_table(
                &mut out,
                ["Resources", "Non-Resource URLs", "Resource Names", "Verbs"],
                &rows,
            );
            if status.incomplete {
                let _ = writeln!(out, "\nincomplete: {}", status.evaluation_error);
            }
        }
        Ok(0)
    };
    run().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        2
    })
}

pub(crate) fn print_table<const N: usize, S: AsRef<str>>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[S; N]],
) {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.as_ref().len());
        }
    }
    // One buffer for every line (a fleet's who-can prints tens of thousands).
    let mut line = String::new();
    let mut write_line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        use std::fmt::Write as _;
        line.clear();
        for (i, (c, w)) in cells.zip(widths).enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            let _ = write!(line, "{c:<w$}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    };
    write_line(out, &mut header.iter().copied());
    for r in rows {
        write_line(out, &mut r.iter().map(AsRef::as_ref));
    }
}
