//! The fleet's structure: which namespace is which scope, which clusters belong to which
//! workspace, and where each project is placed. Rebuilt whole from the model when a workspace,
//! project or cluster changes (a few thousand entries at the scale the planner is built for).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use portcullis_model::{GLOBAL_NAMESPACE, Workspace};
use serde::Serialize;

use crate::model::Model;

/// Name by which the management plane is addressed as a cluster; an attached cluster may not
/// have it (validation refuses it; the planner ignores such a cluster too).
pub const MANAGEMENT: &str = portcullis_model::kinds::cluster::MANAGEMENT_CLUSTER_NAME;

/// Something the planner could not place, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Conflict {
    /// The object concerned, `Kind/namespace/name`.
    pub object: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// The scope a namespace has.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ScopeId {
    Global,
    Workspace(String),
    Project(String, String),
}

/// A workspace as the plan sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WorkspaceInfo {
    pub namespace: String,
    pub projects: BTreeSet<String>,
    pub clusters: BTreeSet<String>,
}

/// A project as the plan sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProjectInfo {
    pub namespace: String,
    pub placed: BTreeSet<String>,
}

/// Everything but the roles and bindings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Structure {
    pub scopes: HashMap<String, ScopeId>,
    pub workspaces: BTreeMap<String, WorkspaceInfo>,
    /// By (workspace, project).
    pub projects: BTreeMap<(String, String), ProjectInfo>,
    /// Attached cluster → its workspace.
    pub clusters: BTreeMap<String, String>,
    pub conflicts: Vec<Conflict>,
}

/// Orders claims: the older object keeps what two claim (creation time, then name), so a new
/// object never takes a namespace or cluster name from an existing one.
fn age_key(meta: &portcullis_model::ObjectMeta) -> (&str, &str, &str) {
    (
        meta.creation_timestamp.as_deref().unwrap_or(""),
        meta.namespace.as_deref().unwrap_or(""),
        &meta.name,
    )
}

impl Structure {
    /// The structure of `model`.
    pub fn build(model: &Model) -> Structure {
        let mut s = Structure::default();
        s.scopes
            .insert(GLOBAL_NAMESPACE.to_owned(), ScopeId::Global);

        let mut workspaces: Vec<&Workspace> = model.workspaces().collect();
        workspaces.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
        let mut ws_by_ns: HashMap<&str, &str> = HashMap::new();
        for w in workspaces {
            let ns = w.namespace_name();
            if s.scopes.contains_key(ns) {
                s.conflicts.push(Conflict {
                    object: format!("Workspace/{}", w.metadata.name),
                    message: format!(
                        "namespace {ns:?} already belongs to another workspace or project; \
                         the workspace grants nothing until it has a namespace of its own"
                    ),
                });
                continue;
            }
            s.scopes
                .insert(ns.to_owned(), ScopeId::Workspace(w.metadata.name.clone()));
            ws_by_ns.insert(ns, &w.metadata.name);
            s.workspaces.insert(
                w.metadata.name.clone(),
                WorkspaceInfo {
                    namespace: ns.to_owned(),
                    ..WorkspaceInfo::default()
                },
            );
        }

        let mut projects: Vec<_> = model.projects().collect();
        projects.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
        let mut placements = Vec::new();
        for p in projects {
            let object = format!(
                "Project/{}/{}",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name
            );
            let Some(ws) = p
                .metadata
                .namespace
                .as_deref()
                .and_then(|ns| ws_by_ns.get(ns))
            else {
                s.conflicts.push(Conflict {
                    object,
                    message: "the project is not in a workspace's namespace; it grants \
                              nothing until its workspace exists"
                        .into(),
                });
                continue;
            };
            let ns = &p.spec.namespace_name;
            if ns.is_empty() || s.scopes.contains_key(ns) {
                s.conflicts.push(Conflict {
                    object,
                    message: format!(
                        "namespace {ns:?} already belongs to another workspace or project; \
                         the project grants nothing until it has a namespace of its own"
                    ),
                });
                continue;
            }
            let (ws, name) = ((*ws).to_owned(), p.metadata.name.clone());
            s.scopes
                .insert(ns.clone(), ScopeId::Project(ws.clone(), name.clone()));
            if let Some(info) = s.workspaces.get_mut(&ws) {
                info.projects.insert(name.clone());
            }
            s.projects.insert(
                (ws.clone(), name.clone()),
                ProjectInfo {
                    namespace: ns.clone(),
                    placed: BTreeSet::new(),
                },
            );
            placements.push(((ws, name), &p.spec.placement));
        }

        let mut clusters: Vec<_> = model.clusters().collect();
        clusters.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
        let mut labels = HashMap::new();
        for c in clusters {
            let name = &c.metadata.name;
            let object = format!(
                "Cluster/{}/{name}",
                c.metadata.namespace.as_deref().unwrap_or("")
            );
            let Some(ws) = c
                .metadata
                .namespace
                .as_deref()
                .and_then(|ns| ws_by_ns.get(ns))
            else {
                s.conflicts.push(Conflict {
                    object,
                    message: "the cluster is not in a workspace's namespace; it receives \
                              nothing until its workspace exists"
                        .into(),
                });
                continue;
            };
            if name == MANAGEMENT {
                s.conflicts.push(Conflict {
                    object,
                    message: format!(
                        "{MANAGEMENT:?} is the management plane's name; attach the cluster \
                         under another name"
                    ),
                });
                continue;
            }
            if let Some(other) = s.clusters.get(name) {
                s.conflicts.push(Conflict {
                    object,
                    message: format!(
                        "a cluster named {name:?} is already attached in workspace {other:?}; \
                         cluster names are unique across the fleet: detach one, or attach \
                         this one under another name"
                    ),
                });
                continue;
            }
            s.clusters.insert(name.clone(), (*ws).to_owned());
            if let Some(info) = s.workspaces.get_mut(*ws) {
                info.clusters.insert(name.clone());
            }
            labels.insert(name.as_str(), &c.metadata.labels);
        }

        for ((ws, project), placement) in placements {
            let Some(info) = s.workspaces.get(&ws) else {
                continue;
            };
            let placed: BTreeSet<String> = info
                .clusters
                .iter()
                .filter(|c| {
                    labels
                        .get(c.as_str())
                        .is_some_and(|l| placement.selects(c, l))
                })
                .cloned()
                .collect();
            if let Some(p) = s.projects.get_mut(&(ws, project)) {
                p.placed = placed;
            }
        }
        s.conflicts.sort();
        s
    }

    /// The scope of `namespace`.
    pub fn scope(&self, namespace: &str) -> Option<&ScopeId> {
        self.scopes.get(namespace)
    }
}
