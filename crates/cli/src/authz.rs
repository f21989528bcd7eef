//! `can-i`: access questions answered offline by the RBAC engine over policy files, exactly as
//! kube-apiserver would answer them (kubectl's spelling; exit 0 for yes, 1 for no, 2 for errors).

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use portcullis_rbac::batch;
use portcullis_rbac::{Attributes, Policy};

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
    /// Kubernetes RBAC objects: YAML or JSON files or directories (List kinds too).
    #[arg(long = "policy")]
    pub policy: Vec<PathBuf>,
    /// Read one SubjectAccessReview spec per line from this file (`-`: stdin) and write one
    /// `{"allowed":…,"reason":"…"}` per line.
    #[arg(long)]
    pub batch: Option<PathBuf>,
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
    if args.policy.is_empty() {
        return Err("--policy is required until the management API review endpoints land".into());
    }
    let policy = load_policy(&args.policy)?;
    if let Some(batch_file) = &args.batch {
        let stdout = std::io::stdout();
        let errors = if batch_file.as_os_str() == "-" {
            batch::run(&policy, std::io::stdin().lock(), stdout.lock())
        } else {
            let f = std::fs::File::open(batch_file)
                .map_err(|e| format!("{}: {e}", batch_file.display()))?;
            batch::run(&policy, BufReader::new(f), stdout.lock())
        }
        .map_err(|e| e.to_string())?;
        return Ok(if errors == 0 { 0 } else { 2 });
    }
    let (Some(verb), Some(resource)) = (&args.verb, &args.resource) else {
        return Err(
            "usage: can-i VERB RESOURCE[.GROUP][/SUBRESOURCE] [NAME] or can-i --batch FILE".into(),
        );
    };
    let mut a = Attributes {
        user: args.as_user.clone().unwrap_or_default(),
        groups: args.as_groups.clone(),
        verb: verb.clone(),
        ..Attributes::default()
    };
    if a.user.is_empty() && a.groups.is_empty() {
        return Err("--as USER (and/or --as-group GROUP) is required with --policy".into());
    }
    if resource.starts_with('/') {
        a.path = resource.clone();
    } else {
        let (resource_group, sub) = resource.split_once('/').unwrap_or((resource.as_str(), ""));
        let (res, group) = resource_group
            .split_once('.')
            .unwrap_or((resource_group, ""));
        a.resource_request = true;
        a.resource = res.to_owned();
        a.api_group = group.to_owned();
        a.subresource = sub.to_owned();
        a.namespace = args.namespace.clone().unwrap_or_else(|| "default".into());
        a.name = args.name.clone().unwrap_or_default();
    }
    let allowed = batch::decide(&policy, &a).allowed;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", if allowed { "yes" } else { "no" });
    Ok(if allowed { 0 } else { 1 })
}

/// Reads policy files and directories (their `.yaml`, `.yml`, `.json` files, sorted).
pub fn load_policy(paths: &[PathBuf]) -> Result<Policy, String> {
    let mut files: Vec<(String, String)> = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    Policy::from_documents(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|e| e.to_string())
}

fn collect(path: &Path, out: &mut Vec<(String, String)>) -> Result<(), String> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            })
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    out.push((path.display().to_string(), text));
    Ok(())
}
