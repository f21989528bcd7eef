//! `apply`, `get` and `delete`: kubectl's verbs over the management API.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::client::{ApiFailure, ApiResource, Client, resolve, resolve_kind};

/// Output formats of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// `kind.group/name`.
    Name,
}

/// Reads manifests from files, directories (their `.yaml`, `.yml` and `.json` files, sorted) or
/// `-` (standard input). Each document is one object; `List` kinds are expanded.
pub fn read_manifests(sources: &[PathBuf]) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for src in sources {
        if src.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            parse_documents("<stdin>", &text, &mut out)?;
        } else if src.is_dir() {
            for f in manifest_files(src)? {
                parse_file(&f, &mut out)?;
            }
        } else {
            parse_file(src, &mut out)?;
        }
    }
    Ok(out)
}

/// The `.yaml`, `.yml` and `.json` files of a directory, sorted (as kubectl apply -f DIR).
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn parse_file(path: &Path, out: &mut Vec<(String, Value)>) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_documents(&path.display().to_string(), &text, out)
}

fn parse_documents(source: &str, text: &str, out: &mut Vec<(String, Value)>) -> Result<()> {
    // A file the user named: JSON as JSON, YAML with limits that grow with its size.
    let docs = portcullis_model::decode::local_documents(text)
        .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let where_ = format!("{source} (document {})", i + 1);
        if doc
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k == "List" || k.ends_with("List"))
            && let Some(items) = doc.get("items").and_then(Value::as_array)
        {
            for (j, item) in items.iter().enumerate() {
                out.push((format!("{where_} item {j}"), item.clone()));
            }
            continue;
        }
        out.push((where_, doc));
    }
    Ok(())
}

/// `apply -f`: creates what is missing, replaces what differs.
pub async fn apply(client: &Client, sources: &[PathBuf], namespace: Option<&str>) -> Result<()> {
    let docs = read_manifests(sources)?;
    if docs.is_empty() {
        bail!("no objects passed to apply");
    }
    let types = client.discover().await?;
    for (where_, mut doc) in docs {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rt = resolve_kind(&types, &api_version, &kind).with_context(|| where_.clone())?;
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            bail!("{where_}: metadata.name is required");
        }
        let ns = object_namespace(rt, &doc, namespace);
        if let (Some(ns), Some(meta)) =
            (&ns, doc.get_mut("metadata").and_then(Value::as_object_mut))
        {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        let path = rt.path(ns.as_deref(), Some(&name));
        let label = format!("{}/{name}", rt.qualified(true));
        match client.get(&path).await {
            Ok(current) => {
                if same_content(&current, &doc) {
                    println!("{label} unchanged");
                    continue;
                }
                if let (Some(rv), Some(meta)) = (
                    current.pointer("/metadata/resourceVersion").cloned(),
                    doc.get_mut("metadata").and_then(Value::as_object_mut),
                ) {
                    meta.insert("resourceVersion".into(), rv);
                }
                client
                    .request(
                        http::Method::PUT,
                        &path,
                        Some(("application/json", serde_json::to_vec(&doc)?)),
                    )
                    .await
                    .with_context(|| where_.clone())?;
                println!("{label} configured");
                crate::connector::report_check(client, &kind, &path, &label).await;
            }
            Err(e)
                if e.downcast_ref::<ApiFailure>()
                    .is_some_and(|f| f.code == 404) =>
            {
                client
                    .request(
                        http::Method::POST,
                        &rt.path(ns.as_deref(), None),
                        Some(("application/json", serde_json::to_vec(&doc)?)),
                    )
                    .await
                    .with_context(|| where_.clone())?;
                println!("{label} created");
                crate::connector::report_check(client, &kind, &path, &label).await;
            }
            Err(e) => return Err(e.context(where_)),
        }
    }
    Ok(())
}

fn object_namespace(rt: &ApiResource, doc: &Value, flag: Option<&str>) -> Option<String> {
    if !rt.namespaced {
        return None;
    }
    doc.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| flag.map(str::to_owned))
        .or_else(|| Some("default".to_owned()))
}

/// True when applying `doc` would change nothing the user wrote.
fn same_content(current: &Value, doc: &Value) -> bool {
    let Some(fields) = doc.as_object() else {
        return false;
    };
    fields.iter().all(|(k, v)| match k.as_str() {
        "metadata" => ["labels", "annotations", "finalizers"].iter().all(|m| {
            let want = v.get(*m).filter(|x| !is_empty(x));
            let have = current
                .pointer(&format!("/metadata/{m}"))
                .filter(|x| !is_empty(x));
            want == have
        }),
        "status" => true,
        _ => current.get(k) == Some(v),
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `get KIND [NAME]`.
pub async fn get(
    client: &Client,
    kind: &str,
    name: Option<&str>,
    namespace: Option<&str>,
    all_namespaces: bool,
    selector: Option<&str>,
    output: Option<Output>,
) -> Result<()> {
    let types = client.discover().await?;
    let rt = resolve(&types, kind)?;
    let ns = if all_namespaces {
        None
    } else {
        Some(namespace.unwrap_or("default"))
    };
    let mut path = rt.path(ns, name);
    if let Some(sel) = selector {
        path.push_str("?labelSelector=");
        path.push_str(&url::form_urlencoded::byte_serialize(sel.as_bytes()).collect::<String>());
    }
    let value = client.get(&path).await?;
    let items: Vec<Value> = if name.is_some() {
        vec![value.clone()]
    } else {
        value
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match output {
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&value)?),
        Some(Output::Yaml) => print!("{}", serde_saphyr::to_string(&value)?),
        Some(Output::Name) => {
            for i in &items {
                println!(
                    "{}/{}",
                    rt.qualified(true),
                    i.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
            }
        }
        Some(Output::Wide) | None => {
            if items.is_empty() {
                match ns.filter(|_| rt.namespaced) {
                    Some(ns) => eprintln!("No resources found in {ns} namespace."),
                    None => eprintln!("No resources found"),
                }
                return Ok(());
            }
            print_table(rt, &items, rt.namespaced && all_namespaces);
        }
    }
    Ok(())
}

fn print_table(_rt: &ApiResource, items: &[Value], with_ns: bool) {
    let now = time::OffsetDateTime::now_utc();
    let mut rows: Vec<Vec<String>> = vec![];
    let mut header = vec![];
    if with_ns {
        header.push("NAMESPACE".to_owned());
    }
    header.extend(["NAME".to_owned(), "AGE".to_owned()]);
    rows.push(header);
    for i in items {
        let mut row = vec![];
        if with_ns {
            row.push(
                i.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        row.push(
            i.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        );
        let age = i
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| portcullis_server::human_duration(now - t))
            .unwrap_or_else(|| "<unknown>".into());
        row.push(age);
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// `delete KIND NAME…` or `delete -f FILE`.
pub async fn delete(
    client: &Client,
    kind: Option<&str>,
    names: &[String],
    files: &[PathBuf],
    namespace: Option<&str>,
    ignore_not_found: bool,
) -> Result<()> {
    let types = client.discover().await?;
    let mut targets: Vec<(ApiResource, Option<String>, String)> = Vec::new();
    if !files.is_empty() {
        for (where_, doc) in read_manifests(files)? {
            let api_version = doc
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let rt = resolve_kind(&types, api_version, kind).with_context(|| where_.clone())?;
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            targets.push((rt.clone(), object_namespace(rt, &doc, namespace), name));
        }
    } else {
        let Some(kind) = kind else {
            bail!("delete needs KIND NAME… or -f FILE")
        };
        let rt = resolve(&types, kind)?;
        if names.is_empty() {
            bail!("delete {kind}: name the objects to delete");
        }
        for n in names {
            let ns = rt
                .namespaced
                .then(|| namespace.unwrap_or("default").to_owned());
            targets.push((rt.clone(), ns, n.clone()));
        }
    }
    let mut failed = false;
    for (rt, ns, name) in targets {
        match client
            .request(
                http::Method::DELETE,
                &rt.path(ns.as_deref(), Some(&name)),
                None,
            )
            .await
        {
            Ok(_) => println!("{} {name:?} deleted", rt.qualified(true)),
            Err(e)
                if ignore_not_found
                    && e.downcast_ref::<ApiFailure>()
                        .is_some_and(|f| f.code == 404) => {}
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("some objects were not deleted");
    }
    Ok(())
}
