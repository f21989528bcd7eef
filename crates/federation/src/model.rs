//! The planner's input: the objects of the access-control model that decide what clusters
//! hold, and the changes that arrive from the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_model::{
    Cluster, ClusterScopeRole, ClusterScopeRoleBinding, KommanderRole, KommanderRoleBinding,
    PolicyRule, Project, Resource, Subject, Workspace,
};

use crate::objects::{Plane, SourceKind, SourceRef};

/// A role of either plane, as the planner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSource {
    /// The role's annotations (sync-to-project, the project-role mapping).
    pub annotations: BTreeMap<String, String>,
    /// Its rules.
    pub rules: Vec<PolicyRule>,
}

/// A binding of either plane, as the planner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSource {
    /// Name of the role granted, in the binding's namespace.
    pub role: String,
    /// Who.
    pub subjects: Vec<Subject>,
}

/// Key of a role or binding: plane, namespace, name.
pub(crate) type SourceKey = (Plane, String, String);

/// The objects that decide the plan: workspaces, projects, clusters, and the roles and
/// bindings of both planes. Other kinds do not change what clusters hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub(crate) workspaces: BTreeMap<String, Arc<Workspace>>,
    /// By (namespace, name).
    pub(crate) projects: BTreeMap<(String, String), Arc<Project>>,
    /// By (namespace, name).
    pub(crate) clusters: BTreeMap<(String, String), Arc<Cluster>>,
    pub(crate) roles: BTreeMap<SourceKey, Arc<RoleSource>>,
    pub(crate) bindings: BTreeMap<SourceKey, Arc<BindingSource>>,
}

/// A change to the model, as the store's watch reports it.
#[derive(Debug, Clone)]
pub enum Change {
    /// An object was created or replaced.
    Upsert(Box<Resource>),
    /// The object of this kind (`Workspace`, `KommanderRole`, …), namespace (empty for
    /// cluster-scoped kinds) and name was deleted.
    Delete {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// What a change touched, for the planner to know what to recompute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Touched {
    /// Nothing the plan depends on (another kind, or no difference).
    Nothing,
    /// A workspace, project or cluster: the fleet's structure.
    Structure,
    /// One role or binding.
    Source(SourceRef),
}

fn ns_of(meta: &portcullis_model::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_default()
}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model::default()
    }

    /// A model of these objects (other kinds are ignored).
    pub fn from_resources(resources: impl IntoIterator<Item = Resource>) -> Model {
        let mut m = Model::default();
        for r in resources {
            m.apply(Change::Upsert(Box::new(r)));
        }
        m
    }

    /// Number of roles and bindings (both planes).
    pub fn source_count(&self) -> usize {
        self.roles.len() + self.bindings.len()
    }

    /// The workspaces.
    pub fn workspaces(&self) -> impl Iterator<Item = &Workspace> {
        self.workspaces.values().map(|w| &**w)
    }

    /// The projects.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.projects.values().map(|p| &**p)
    }

    /// The clusters.
    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.values().map(|c| &**c)
    }

    /// Every role: plane, namespace, name, role.
    pub fn roles(&self) -> impl Iterator<Item = (Plane, &str, &str, &RoleSource)> {
        self.roles
            .iter()
            .map(|((p, ns, n), r)| (*p, ns.as_str(), n.as_str(), &**r))
    }

    /// Every binding: plane, namespace, name, binding.
    pub fn bindings(&self) -> impl Iterator<Item = (Plane, &str, &str, &BindingSource)> {
        self.bindings
            .iter()
            .map(|((p, ns, n), b)| (*p, ns.as_str(), n.as_str(), &**b))
    }

    /// The role of `plane` at `namespace`/`name`.
    pub fn role(&self, plane: Plane, namespace: &str, name: &str) -> Option<&RoleSource> {
        self.roles
            .get(&(plane, namespace.to_owned(), name.to_owned()))
            .map(|r| &**r)
    }

    /// The binding of `plane` at `namespace`/`name`.
    pub fn binding(&self, plane: Plane, namespace: &str, name: &str) -> Option<&BindingSource> {
        self.bindings
            .get(&(plane, namespace.to_owned(), name.to_owned()))
            .map(|b| &**b)
    }

    /// Roles of `plane` in `namespace`, by name.
    pub(crate) fn roles_in<'a>(
        &'a self,
        plane: Plane,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Arc<RoleSource>)> + 'a {
        self.roles
            .range((plane, namespace.to_owned(), String::new())..)
            .take_while(move |((p, ns, _), _)| *p == plane && ns == namespace)
            .map(|((_, _, name), r)| (name.as_str(), r))
    }

    /// Bindings of `plane` in `namespace`, by name.
    pub(crate) fn bindings_in<'a>(
        &'a self,
        plane: Plane,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Arc<BindingSource>)> + 'a {
        self.bindings
            .range((plane, namespace.to_owned(), String::new())..)
            .take_while(move |((p, ns, _), _)| *p == plane && ns == namespace)
            .map(|((_, _, name), b)| (name.as_str(), b))
    }

    /// Applies `change`; says what it touched.
    pub(crate) fn apply(&mut self, change: Change) -> Touched {
        match change {
            Change::Upsert(r) => self.upsert(*r),
            Change::Delete {
                kind,
                namespace,
                name,
            } => self.delete(&kind, namespace, name),
        }
    }

    fn upsert(&mut self, r: Resource) -> Touched {
        match r {
            Resource::Workspace(w) => {
                // Status and display fields do not change the plan, but the namespace does
                // (`status.namespaceRef` included), so compare what `namespace_name` reads.
                let changed = self.workspaces.get(&w.metadata.name).is_none_or(|old| {
                    old.namespace_name() != w.namespace_name()
                        || old.metadata.creation_timestamp != w.metadata.creation_timestamp
                });
                self.workspaces.insert(w.metadata.name.clone(), Arc::new(w));
                if changed {
                    Touched::Structure
                } else {
                    Touched::Nothing
                }
            }
            Resource::Project(p) => {
                let key = (ns_of(&p.metadata), p.metadata.name.clone());
                let changed = self.projects.get(&key).is_none_or(|old| {
                    old.spec.namespace_name != p.spec.namespace_name
                        || old.spec.placement != p.spec.placement
                        || old.metadata.creation_timestamp != p.metadata.creation_timestamp
                });
                self.projects.insert(key, Arc::new(p));
                if changed {
                    Touched::Structure
                } else {
                    Touched::Nothing
                }
            }
            Resource::Cluster(c) => {
                let key = (ns_of(&c.metadata), c.metadata.name.clone());
                let changed = self.clusters.get(&key).is_none_or(|old| {
                    old.metadata.labels != c.metadata.labels
                        || old.metadata.creation_timestamp != c.metadata.creation_timestamp
                });
                self.clusters.insert(key, Arc::new(c));
                if changed {
                    Touched::Structure
                } else {
                    Touched::Nothing
                }
            }
            Resource::KommanderRole(KommanderRole {
                metadata, rules, ..
            }) => self.upsert_role(SourceKind::KommanderRole, metadata, rules),
            Resource::ClusterScopeRole(ClusterScopeRole {
                metadata, rules, ..
            }) => self.upsert_role(SourceKind::ClusterScopeRole, metadata, rules),
            Resource::KommanderRoleBinding(KommanderRoleBinding {
                metadata,
                subjects,
                role_ref,
                ..
            }) => self.upsert_binding(
                SourceKind::KommanderRoleBinding,
                metadata,
                role_ref.name,
                subjects,
            ),
            Resource::ClusterScopeRoleBinding(ClusterScopeRoleBinding {
                metadata,
                subjects,
                role_ref,
                ..
            }) => self.upsert_binding(
                SourceKind::ClusterScopeRoleBinding,
                metadata,
                role_ref.name,
                subjects,
            ),
            _ => Touched::Nothing,
        }
    }

    fn upsert_role(
        &mut self,
        kind: SourceKind,
        meta: portcullis_model::ObjectMeta,
        rules: Vec<PolicyRule>,
    ) -> Touched {
        let role = RoleSource {
            annotations: meta.annotations,
            rules,
        };
        let key = (kind.plane(), meta.namespace.unwrap_or_default(), meta.name);
        changed_source(&mut self.roles, kind, key, role)
    }

    fn upsert_binding(
        &mut self,
        kind: SourceKind,
        meta: portcullis_model::ObjectMeta,
        role: String,
        subjects: Vec<Subject>,
    ) -> Touched {
        let binding = BindingSource { role, subjects };
        let key = (kind.plane(), meta.namespace.unwrap_or_default(), meta.name);
        changed_source(&mut self.bindings, kind, key, binding)
    }

    fn delete(&mut self, kind: &str, namespace: String, name: String) -> Touched {
        match kind {
            "Workspace" => touched_structure(self.workspaces.remove(&name).is_some()),
            "Project" => touched_structure(self.projects.remove(&(namespace, name)).is_some()),
            "Cluster" => touched_structure(self.clusters.remove(&(namespace, name)).is_some()),
            _ => {
                let Some(kind) = SourceKind::parse(kind) else {
                    return Touched::Nothing;
                };
                let key = (kind.plane(), namespace, name);
                let removed = if kind.is_binding() {
                    self.bindings.remove(&key).is_some()
                } else {
                    self.roles.remove(&key).is_some()
                };
                if removed {
                    let (_, namespace, name) = key;
                    Touched::Source(SourceRef {
                        kind,
                        namespace,
                        name,
                    })
                } else {
                    Touched::Nothing
                }
            }
        }
    }
}

/// Stores `value` under `key`; [`Touched::Source`] unless it was already there unchanged.
fn changed_source<V: PartialEq>(
    map: &mut BTreeMap<SourceKey, Arc<V>>,
    kind: SourceKind,
    key: SourceKey,
    value: V,
) -> Touched {
    if map.get(&key).is_some_and(|old| **old == value) {
        return Touched::Nothing;
    }
    let source = SourceRef {
        kind,
        namespace: key.1.clone(),
        name: key.2.clone(),
    };
    map.insert(key, Arc::new(value));
    Touched::Source(source)
}

fn touched_structure(changed: bool) -> Touched {
    if changed {
        Touched::Structure
    } else {
        Touched::Nothing
    }
}
