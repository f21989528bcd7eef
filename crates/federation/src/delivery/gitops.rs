//! The GitOps sink: each cluster's desired objects as YAML files under `DIR/<cluster>/`, with a
//! `kustomization.yaml` listing them, for Flux or Argo CD to deliver instead of portcullis.
//!
//! - File names are deterministic: `<kind>-<namespace>-<name>.yaml` in lower case, with every
//!   character outside `[a-z0-9.-]` turned into `_` and, when that changed anything, the first
//!   8 hex digits of a hash of the exact key added (so `a:b` and `a_b` stay apart).
//! - Content is deterministic: the object's fields in the order the types serialise them, the
//!   kustomization's `resources` in the plan's key order (namespaces first).
//! - A file is rewritten only when its bytes change (written to a temporary file and renamed,
//!   so a reader never sees half a file); files of objects no longer planned are deleted. Only
//!   `*.yaml` files in the cluster's directory are considered portcullis's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::objects::{ObjectKey, Planned};
use crate::plan::{Plan, Target};

use super::DeliveryError;

/// The kustomization file of each cluster's directory.
pub const KUSTOMIZATION: &str = "kustomization.yaml";

const HEADER: &str =
    "# Written by portcullis from the access-control model; edits are overwritten.\n";

/// What one write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Files written (new or changed), relative to the cluster's directory.
    pub written: Vec<String>,
    /// Files left as they were.
    pub unchanged: usize,
    /// Files deleted.
    pub removed: Vec<String>,
}

impl WriteReport {
    fn merge(&mut self, other: WriteReport) {
        self.written.extend(other.written);
        self.unchanged += other.unchanged;
        self.removed.extend(other.removed);
    }
}

/// A GitOps directory.
#[derive(Debug, Clone)]
pub struct GitOpsSink {
    dir: PathBuf,
}

/// The file name of `key`.
pub fn file_name(key: &ObjectKey) -> String {
    let raw = if key.namespace.is_empty() {
        format!("{}-{}", key.kind.as_str(), key.name)
    } else {
        format!("{}-{}-{}", key.kind.as_str(), key.namespace, key.name)
    };
    let lower = raw.to_ascii_lowercase();
    let clean: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == lower {
        return format!("{clean}.yaml");
    }
    let digest = Sha256::digest(key.to_string().as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{clean}-{hex}.yaml")
}

/// The YAML of one object.
pub fn render(planned: &Planned) -> Result<String, DeliveryError> {
    let yaml =
        serde_saphyr::to_string(&planned.object.to_json()).map_err(|e| DeliveryError::Io {
            path: planned.key.to_string(),
            message: format!("serialising: {e}"),
        })?;
    Ok(format!("{HEADER}{yaml}"))
}

/// The kustomization listing `files` in order.
fn kustomization(files: &[String]) -> String {
    let mut s = String::from(HEADER);
    s.push_str("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n");
    if files.is_empty() {
        s.push_str("resources: []\n");
    } else {
        s.push_str("resources:\n");
        for f in files {
            s.push_str("- ");
            s.push_str(f);
            s.push('\n');
        }
    }
    s
}

fn io_err(path: &Path, e: std::io::Error) -> DeliveryError {
    DeliveryError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `bytes` to `path` unless it holds them already; whether it wrote.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, DeliveryError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    Ok(true)
}

impl GitOpsSink {
    /// A sink writing under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> GitOpsSink {
        GitOpsSink { dir: dir.into() }
    }

    /// The directory of `cluster`.
    pub fn cluster_dir(&self, cluster: &str) -> PathBuf {
        self.dir.join(cluster)
    }

    /// Makes `DIR/<cluster>/` hold exactly `desired`.
    pub fn write_cluster(
        &self,
        cluster: &str,
        desired: &BTreeMap<ObjectKey, Arc<Planned>>,
    ) -> Result<WriteReport, DeliveryError> {
        if cluster.is_empty() || cluster.contains(['/', '\\']) || cluster.starts_with('.') {
            return Err(DeliveryError::Io {
                path: cluster.to_owned(),
                message: "not usable as a directory name".into(),
            });
        }
        let dir = self.cluster_dir(cluster);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let mut report = WriteReport::default();
        let mut files = Vec::with_capacity(desired.len());
        for planned in desired.values() {
            let name = file_name(&planned.key);
            let bytes = render(planned)?;
            if write_if_changed(&dir.join(&name), bytes.as_bytes())? {
                report.written.push(name.clone());
            } else {
                report.unchanged += 1;
            }
            files.push(name);
        }
        if write_if_changed(&dir.join(KUSTOMIZATION), kustomization(&files).as_bytes())? {
            report.written.push(KUSTOMIZATION.into());
        } else {
            report.unchanged += 1;
        }
        let keep: BTreeSet<&str> = files.iter().map(String::as_str).collect();
        let entries = std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?;
        let mut stale = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(".yaml") || name.ends_with(".yaml.tmp");
            if ours && name != KUSTOMIZATION && !keep.contains(name.as_str()) {
                stale.push(name);
            }
        }
        stale.sort();
        for name in stale {
            let path = dir.join(&name);
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            report.removed.push(name);
        }
        Ok(report)
    }

    /// Writes every attached cluster of `plan`.
    pub fn write_plan(&self, plan: &Plan) -> Result<WriteReport, DeliveryError> {
        let mut report = WriteReport::default();
        for t in plan.targets() {
            if let Target::Cluster(c) = t {
                report.merge(self.write_cluster(c, &plan.desired(t))?);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::ObjectKind;

    #[test]
    fn file_names_are_clean_and_distinct() {
        let k = |ns: &str, n: &str| ObjectKey {
            kind: ObjectKind::RoleBinding,
            namespace: ns.into(),
            name: n.into(),
        };
        assert_eq!(file_name(&k("web", "view")), "rolebinding-web-view.yaml");
        let a = file_name(&k("web", "portcullis:a"));
        let b = file_name(&k("web", "portcullis_a"));
        assert_ne!(a, b);
        assert!(a.starts_with("rolebinding-web-portcullis_a-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
    }
}
