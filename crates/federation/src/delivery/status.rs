//! The status board: what delivery knows of every cluster and every object it put there, for
//! `portcullis status`, `cluster list`, and the objects' `status.conditions`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::Serialize;

use crate::objects::{ObjectKey, SourceRef};

/// One object on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The source object that produced it.
    pub source: Option<SourceRef>,
    /// The content hash last applied (and seen to hold), if any.
    pub applied_hash: Option<String>,
    /// When it was last applied or confirmed.
    pub last_applied: Option<SystemTime>,
    /// Why it is not as planned: a conflict ("pre-existing object", an apply conflict) or the
    /// error of its last write.
    pub last_error: Option<String>,
    /// Whether the error is a conflict (left alone until resolved by hand) rather than a
    /// failure (retried).
    pub conflict: bool,
    /// Whether it is annotated paused (left alone).
    pub paused: bool,
    /// Manual edits and deletions reverted.
    pub drift_repairs: u64,
}

/// One cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// When a pass last finished without error (everything planned applied, or a conflict).
    pub last_sync: Option<SystemTime>,
    /// When a pass last started.
    pub last_attempt: Option<SystemTime>,
    /// The error of the last pass, `None` when it succeeded.
    pub last_error: Option<String>,
    /// Passes failed in a row.
    pub consecutive_failures: u32,
    /// Manual edits and deletions reverted, over all objects.
    pub drift_repairs: u64,
    /// Objects planned for the cluster at the last pass.
    pub desired: usize,
    /// Per object (in JSON: a list, each entry with its `key`).
    #[serde(serialize_with = "objects_as_list")]
    pub objects: BTreeMap<ObjectKey, ObjectStatus>,
}

fn objects_as_list<S: serde::Serializer>(
    objects: &BTreeMap<ObjectKey, ObjectStatus>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        key: String,
        #[serde(flatten)]
        status: &'a ObjectStatus,
    }
    s.collect_seq(objects.iter().map(|(k, o)| Entry {
        key: k.to_string(),
        status: o,
    }))
}

impl ClusterStatus {
    /// Objects left alone because of a conflict, with why.
    pub fn conflicts(&self) -> Vec<(&ObjectKey, &str)> {
        self.objects
            .iter()
            .filter(|(_, o)| o.conflict)
            .map(|(k, o)| (k, o.last_error.as_deref().unwrap_or_default()))
            .collect()
    }

    /// Objects that hold their planned content.
    pub fn in_sync_objects(&self) -> usize {
        self.objects
            .values()
            .filter(|o| o.applied_hash.is_some() && o.last_error.is_none())
            .count()
    }

    /// Whether the last pass succeeded and every planned object holds its content.
    pub fn in_sync(&self) -> bool {
        self.last_error.is_none()
            && self.last_sync.is_some()
            && self.desired == self.in_sync_objects()
    }

    /// The cluster's conditions, in Kubernetes form: `Reachable` (the last pass could talk to
    /// it), `Synced` (every planned object holds its content), `Conflicts` (objects left alone).
    pub fn conditions(&self) -> Vec<Condition> {
        let time = self.last_attempt;
        let reachable = match &self.last_error {
            None => Condition::new("Reachable", true, "PassSucceeded", "", time),
            Some(e) => Condition::new("Reachable", false, "PassFailed", e, time),
        };
        let conflicts = self.conflicts();
        let synced = if self.in_sync() {
            Condition::new("Synced", true, "AllApplied", "", self.last_sync)
        } else {
            Condition::new(
                "Synced",
                false,
                if self.last_error.is_some() {
                    "PassFailed"
                } else {
                    "NotAllApplied"
                },
                &format!(
                    "{} of {} planned objects hold their content",
                    self.in_sync_objects(),
                    self.desired
                ),
                time,
            )
        };
        let conflict = if conflicts.is_empty() {
            Condition::new("Conflicts", false, "NoConflicts", "", time)
        } else {
            let listed: Vec<String> = conflicts.iter().map(|(k, m)| format!("{k}: {m}")).collect();
            Condition::new(
                "Conflicts",
                true,
                "ObjectsLeftAlone",
                &listed.join("; "),
                time,
            )
        };
        vec![reachable, synced, conflict]
    }
}

/// A condition as Kubernetes objects carry them in `status.conditions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `"True"` or `"False"`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A message for people.
    pub message: String,
    /// When it was last evaluated.
    pub last_transition_time: Option<SystemTime>,
}

impl Condition {
    fn new(
        type_: &str,
        status: bool,
        reason: &str,
        message: &str,
        time: Option<SystemTime>,
    ) -> Condition {
        Condition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: time,
        }
    }
}

/// The board: shared, cheap to clone, read by the server at any time.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<BTreeMap<String, ClusterStatus>>>,
}

impl StatusBoard {
    /// An empty board.
    pub fn new() -> StatusBoard {
        StatusBoard::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ClusterStatus>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes one cluster's status.
    pub(crate) fn update<R>(&self, cluster: &str, f: impl FnOnce(&mut ClusterStatus) -> R) -> R {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        f(map.entry(cluster.to_owned()).or_default())
    }

    /// Forgets a cluster (after detach).
    pub fn remove(&self, cluster: &str) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.remove(cluster);
    }

    /// One cluster's status.
    pub fn cluster(&self, cluster: &str) -> Option<ClusterStatus> {
        self.read().get(cluster).cloned()
    }

    /// Every cluster's status.
    pub fn clusters(&self) -> BTreeMap<String, ClusterStatus> {
        self.read().clone()
    }

    /// The status of every object `source` produced, by cluster.
    pub fn by_source(&self, source: &SourceRef) -> Vec<(String, ObjectKey, ObjectStatus)> {
        let mut out = Vec::new();
        for (c, s) in self.read().iter() {
            for (k, o) in &s.objects {
                if o.source.as_ref() == Some(source) {
                    out.push((c.clone(), k.clone(), o.clone()));
                }
            }
        }
        out
    }
}
