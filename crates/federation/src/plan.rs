//! The planner: the model in, the RBAC objects every cluster must hold out, recomputed for a
//! change only where the change reaches.
//!
//! # Layers
//!
//! What a cluster holds is the union of a few *layers*, each produced by one scope of one plane
//! and shared by every cluster that scope reaches:
//!
//! | layer | produced from | held by |
//! |---|---|---|
//! | `Global(Management)` | `KommanderRole`s and bindings in the global namespace | the management plane |
//! | `Global(Fleet)` | `ClusterScopeRole`s and bindings in the global namespace | every attached cluster of every workspace |
//! | `Workspace(Management, w)` | `KommanderRole`s and bindings in `w`'s namespace | the management plane |
//! | `Workspace(Fleet, w)` | `ClusterScopeRole`s and bindings in `w`'s namespace | every cluster of `w` |
//! | `Project(Management, w, p)` | `KommanderRole`s and bindings in `p`'s namespace, and those of `w` that sync to projects | the management plane |
//! | `Project(Fleet, w, p)` | `ClusterScopeRole`s and bindings in `p`'s namespace, and `p`'s namespace | the clusters `p` is placed on |
//!
//! Names never collide across layers: each produced name carries its scope (`portcullis:global:`,
//! `portcullis:ws:<workspace>:`, `portcullis:project:` in the project's own namespace), and
//! project namespaces are unique. So a change to one role or binding changes one layer's few
//! objects, and every cluster holding that layer gets the same small delta; a Global change
//! costs one layer update however many clusters there are.
//!
//! # Workspace → project inheritance
//!
//! A `KommanderRoleBinding` in a workspace to a `KommanderRole` annotated
//! `workspace.kommander.mesosphere.io/sync-to-project: "true"` also becomes a RoleBinding in
//! every project of the workspace (on the management plane), projects created later included:
//! of the project role named by the role's `portcullis.dev/project-role` annotation, else by the
//! default mapping (`kommander-workspace-admin` → `kommander-project-admin`, edit → edit, view →
//! view), else of a copy of the workspace role made in each project. Removing the annotation or
//! the binding withdraws it everywhere. On attached clusters a workspace `ClusterScopeRole` is a
//! ClusterRole bound cluster-wide, which already covers every project namespace, so there is
//! nothing to inherit there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use portcullis_model::{GLOBAL_NAMESPACE, SYNC_TO_PROJECT_ANNOTATION, SubjectKind};
use portcullis_rbac::v1::{self, PolicyRule, Subject};
use serde::Serialize;

use crate::defaults;
use crate::model::{BindingSource, Change, Model, RoleSource, Touched};
use crate::objects::{
    self, ObjectKey, ObjectKind, Plane, Planned, SourceKind, SourceRef, object_name,
};
use crate::structure::{Conflict, MANAGEMENT, ScopeId, Structure};

/// Annotation on a workspace role that syncs to projects: the name of the project role it
/// grants in each project (instead of the default mapping, or a copy of itself).
pub const PROJECT_ROLE_ANNOTATION: &str = "portcullis.dev/project-role";

/// A cluster the plan is for: the management plane, or an attached cluster by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Target {
    /// The management plane.
    Management,
    /// An attached cluster.
    Cluster(String),
}

impl Target {
    /// The target named `name` ([`MANAGEMENT`] is the management plane).
    pub fn named(name: &str) -> Target {
        if name == MANAGEMENT {
            Target::Management
        } else {
            Target::Cluster(name.to_owned())
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Target::Management => MANAGEMENT,
            Target::Cluster(c) => c,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One layer: a scope of a plane (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum LayerId {
    /// Global scope.
    Global(Plane),
    /// A workspace, by name.
    Workspace(Plane, String),
    /// A project, by workspace and project name.
    Project(Plane, String, String),
}

impl LayerId {
    /// The plane.
    pub fn plane(&self) -> Plane {
        match self {
            LayerId::Global(p) | LayerId::Workspace(p, _) | LayerId::Project(p, _, _) => *p,
        }
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerId::Global(_) => f.write_str("Global"),
            LayerId::Workspace(_, w) => write!(f, "Workspace {w}"),
            LayerId::Project(_, w, p) => write!(f, "Project {w}/{p}"),
        }
    }
}

/// The objects one layer produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    /// The namespace all of the layer's objects are in, for a layer of namespaced objects
    /// (a workspace's on the management plane, a project's on either); empty otherwise.
    pub namespace: String,
    /// Produced objects by key.
    pub objects: BTreeMap<ObjectKey, Arc<Planned>>,
    /// The keys each source produced (sources that produce nothing are absent).
    by_source: BTreeMap<SourceRef, Vec<ObjectKey>>,
    /// Sources that could not be produced here, with why.
    pub problems: BTreeMap<SourceRef, String>,
}

impl Layer {
    /// The object with this key.
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<Planned>> {
        self.objects.get(key)
    }
}

/// Settings of the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerConfig {
    /// Prefix of group names in tokens (`--oidc-groups-prefix`): a binding's portcullis `Group`
    /// subject becomes the RBAC group `<prefix><name>`.
    pub groups_prefix: String,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            groups_prefix: "oidc:".into(),
        }
    }
}

/// The desired RBAC of the whole fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub(crate) layers: BTreeMap<LayerId, Arc<Layer>>,
    pub(crate) targets: BTreeMap<Target, Arc<BTreeSet<LayerId>>>,
    pub(crate) structure: Arc<Structure>,
}

impl Plan {
    /// Every target: the management plane and each attached cluster of a workspace.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.keys()
    }

    /// The layers `target` holds (the management plane: every management-plane layer).
    pub fn layers_of<'a>(
        &'a self,
        target: &'a Target,
    ) -> Box<dyn Iterator<Item = (&'a LayerId, &'a Arc<Layer>)> + 'a> {
        if *target == Target::Management {
            return Box::new(
                self.layers
                    .iter()
                    .filter(|(id, _)| id.plane() == Plane::Management),
            );
        }
        Box::new(
            self.targets
                .get(target)
                .into_iter()
                .flat_map(|ids| ids.iter())
                .filter_map(|id| self.layers.get_key_value(id)),
        )
    }

    /// A layer.
    pub fn layer(&self, id: &LayerId) -> Option<&Arc<Layer>> {
        self.layers.get(id)
    }

    /// Every layer.
    pub fn layers(&self) -> impl Iterator<Item = (&LayerId, &Arc<Layer>)> {
        self.layers.iter()
    }

    /// Everything `target` must hold, by key.
    pub fn desired(&self, target: &Target) -> BTreeMap<ObjectKey, Arc<Planned>> {
        self.layers_of(target)
            .flat_map(|(_, l)| l.objects.iter())
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect()
    }

    /// A plan of one attached cluster holding `objects` (what a pulling agent received from
    /// the management plane's [`Plan::desired`]), for a reconciler on that cluster.
    pub fn single_cluster(cluster: &str, objects: impl IntoIterator<Item = Planned>) -> Plan {
        let id = LayerId::Global(crate::objects::Plane::Fleet);
        let mut layer = Layer::default();
        for p in objects {
            layer
                .by_source
                .entry(p.source.clone())
                .or_default()
                .push(p.key.clone());
            layer.objects.insert(p.key.clone(), Arc::new(p));
        }
        Plan {
            layers: BTreeMap::from([(id.clone(), Arc::new(layer))]),
            targets: BTreeMap::from([(Target::named(cluster), Arc::new(BTreeSet::from([id])))]),
            structure: Arc::default(),
        }
    }

    /// Whether `target` exists in the plan.
    pub fn has_target(&self, target: &Target) -> bool {
        self.targets.contains_key(target)
    }

    /// The workspace of an attached cluster.
    pub fn workspace_of(&self, cluster: &str) -> Option<&str> {
        self.structure.clusters.get(cluster).map(String::as_str)
    }

    /// Everything the planner could not place: structural conflicts, and sources a layer
    /// could not produce.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut out = self.structure.conflicts.clone();
        for layer in self.layers.values() {
            for (source, message) in &layer.problems {
                out.push(Conflict {
                    object: source.to_string(),
                    message: message.clone(),
                });
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The targets holding layer `id`.
    pub fn holders(&self, id: &LayerId) -> Vec<Target> {
        holders(&self.structure, id)
    }
}

/// The targets holding layer `id` in `st`.
fn holders(st: &Structure, id: &LayerId) -> Vec<Target> {
    match id {
        LayerId::Global(Plane::Management)
        | LayerId::Workspace(Plane::Management, _)
        | LayerId::Project(Plane::Management, _, _) => vec![Target::Management],
        LayerId::Global(Plane::Fleet) => st
            .clusters
            .keys()
            .map(|c| Target::Cluster(c.clone()))
            .collect(),
        LayerId::Workspace(Plane::Fleet, w) => st
            .workspaces
            .get(w)
            .map(|i| {
                i.clusters
                    .iter()
                    .map(|c| Target::Cluster(c.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        LayerId::Project(Plane::Fleet, w, p) => st
            .projects
            .get(&(w.clone(), p.clone()))
            .map(|i| {
                i.placed
                    .iter()
                    .map(|c| Target::Cluster(c.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Every layer that exists in `st`.
fn all_layers(st: &Structure) -> Vec<LayerId> {
    let mut out = vec![
        LayerId::Global(Plane::Management),
        LayerId::Global(Plane::Fleet),
    ];
    for w in st.workspaces.keys() {
        for plane in [Plane::Management, Plane::Fleet] {
            out.push(LayerId::Workspace(plane, w.clone()));
        }
    }
    for (w, p) in st.projects.keys() {
        for plane in [Plane::Management, Plane::Fleet] {
            out.push(LayerId::Project(plane, w.clone(), p.clone()));
        }
    }
    out
}

/// The layers `target` holds in `st`; `None` when it is not a target.
fn layer_set(st: &Structure, target: &Target) -> Option<BTreeSet<LayerId>> {
    match target {
        // The management plane holds every management-plane layer: its set is implicit
        // (see [`Plan::layers_of`]), so a new workspace or project does not rewrite it.
        Target::Management => Some(BTreeSet::new()),
        Target::Cluster(c) => {
            let ws = st.clusters.get(c)?;
            let info = st.workspaces.get(ws)?;
            let mut set = BTreeSet::new();
            set.insert(LayerId::Global(Plane::Fleet));
            set.insert(LayerId::Workspace(Plane::Fleet, ws.clone()));
            for p in &info.projects {
                if st
                    .projects
                    .get(&(ws.clone(), p.clone()))
                    .is_some_and(|i| i.placed.contains(c))
                {
                    set.insert(LayerId::Project(Plane::Fleet, ws.clone(), p.clone()));
                }
            }
            Some(set)
        }
    }
}

// === production ===

/// The namespace whose sources a layer is made of (the workspace's for a project layer's
/// inherited sources is [`ws_namespace`]).
fn own_namespace<'s>(st: &'s Structure, id: &LayerId) -> Option<&'s str> {
    match id {
        LayerId::Global(_) => Some(GLOBAL_NAMESPACE),
        LayerId::Workspace(_, w) => st.workspaces.get(w).map(|i| i.namespace.as_str()),
        LayerId::Project(_, w, p) => st
            .projects
            .get(&(w.clone(), p.clone()))
            .map(|i| i.namespace.as_str()),
    }
}

fn ws_namespace<'s>(st: &'s Structure, w: &str) -> Option<&'s str> {
    st.workspaces.get(w).map(|i| i.namespace.as_str())
}

fn role_kind(plane: Plane) -> SourceKind {
    match plane {
        Plane::Management => SourceKind::KommanderRole,
        Plane::Fleet => SourceKind::ClusterScopeRole,
    }
}

fn binding_kind(plane: Plane) -> SourceKind {
    match plane {
        Plane::Management => SourceKind::KommanderRoleBinding,
        Plane::Fleet => SourceKind::ClusterScopeRoleBinding,
    }
}

/// Every source that may contribute to layer `id`.
fn layer_sources(model: &Model, st: &Structure, id: &LayerId) -> Vec<SourceRef> {
    let plane = id.plane();
    let mut out = Vec::new();
    let mut add = |ns: &str| {
        for (name, _) in model.roles_in(plane, ns) {
            out.push(SourceRef {
                kind: role_kind(plane),
                namespace: ns.to_owned(),
                name: name.to_owned(),
            });
        }
        for (name, _) in model.bindings_in(plane, ns) {
            out.push(SourceRef {
                kind: binding_kind(plane),
                namespace: ns.to_owned(),
                name: name.to_owned(),
            });
        }
    };
    if let Some(ns) = own_namespace(st, id) {
        add(ns);
    }
    if let LayerId::Project(plane, w, p) = id {
        match plane {
            Plane::Management => {
                if let Some(ns) = ws_namespace(st, w) {
                    add(ns);
                }
            }
            Plane::Fleet => {
                if let Some(ns) = ws_namespace(st, w) {
                    out.push(SourceRef {
                        kind: SourceKind::Project,
                        namespace: ns.to_owned(),
                        name: p.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Whether a workspace role syncs to projects.
fn syncs(role: &RoleSource) -> bool {
    role.annotations
        .get(SYNC_TO_PROJECT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// The project role a synced workspace role grants in each project: `Some(name)` of a project
/// role, or `None` for a copy of the workspace role.
fn project_role(name: &str, role: &RoleSource) -> Option<String> {
    if let Some(n) = role.annotations.get(PROJECT_ROLE_ANNOTATION) {
        return Some(n.clone());
    }
    defaults::project_role_for(name).map(str::to_owned)
}

fn rules(rules: &[portcullis_model::PolicyRule]) -> Vec<PolicyRule> {
    rules
        .iter()
        .map(|r| PolicyRule {
            verbs: r.verbs.clone(),
            api_groups: r.api_groups.clone(),
            resources: r.resources.clone(),
            resource_names: r.resource_names.clone(),
            non_resource_urls: r.non_resource_urls.clone(),
        })
        .collect()
}

fn subjects(cfg: &PlannerConfig, b: &BindingSource) -> Vec<Subject> {
    b.subjects
        .iter()
        .map(|s| match s.kind {
            SubjectKind::User => Subject {
                kind: "User".into(),
                api_group: v1::GROUP.into(),
                name: s.name.clone(),
                namespace: String::new(),
            },
            SubjectKind::Group => Subject {
                kind: "Group".into(),
                api_group: v1::GROUP.into(),
                name: if s.api_group == portcullis_model::GROUP {
                    format!("{}{}", cfg.groups_prefix, s.name)
                } else {
                    s.name.clone()
                },
                namespace: String::new(),
            },
        })
        .collect()
}

/// What `source` contributes to layer `id`: its objects, or why it cannot.
fn contribute(
    cfg: &PlannerConfig,
    model: &Model,
    st: &Structure,
    id: &LayerId,
    source: &SourceRef,
) -> Result<Vec<Arc<Planned>>, String> {
    let Some(own_ns) = own_namespace(st, id) else {
        return Ok(Vec::new());
    };
    let plane = id.plane();
    let key = |kind: ObjectKind, namespace: &str, name: String| ObjectKey {
        kind,
        namespace: namespace.to_owned(),
        name,
    };
    let one = |k: ObjectKey, o: objects::RbacObject| Ok(vec![objects::finish(source, k, o)]);
    let direct = source.namespace == own_ns;
    match source.kind {
        SourceKind::Project => {
            let LayerId::Project(Plane::Fleet, ..) = id else {
                return Ok(Vec::new());
            };
            one(
                key(ObjectKind::Namespace, "", own_ns.to_owned()),
                objects::namespace(),
            )
        }
        SourceKind::KommanderRole | SourceKind::ClusterScopeRole => {
            let Some(role) = model.role(plane, &source.namespace, &source.name) else {
                return Ok(Vec::new());
            };
            let name = &source.name;
            match (id, direct) {
                (LayerId::Global(_), true) => one(
                    key(ObjectKind::ClusterRole, "", object_name(&["global", name])),
                    objects::cluster_role(rules(&role.rules)),
                ),
                (LayerId::Workspace(Plane::Management, w), true) => one(
                    key(ObjectKind::Role, own_ns, object_name(&["ws", w, name])),
                    namespaced_role(role)?,
                ),
                (LayerId::Workspace(Plane::Fleet, w), true) => one(
                    key(ObjectKind::ClusterRole, "", object_name(&["ws", w, name])),
                    objects::cluster_role(rules(&role.rules)),
                ),
                (LayerId::Project(..), true) => one(
                    key(ObjectKind::Role, own_ns, object_name(&["project", name])),
                    namespaced_role(role)?,
                ),
                (LayerId::Project(Plane::Management, w, _), false) => {
                    if !syncs(role) || project_role(name, role).is_some() {
                        return Ok(Vec::new());
                    }
                    one(
                        key(ObjectKind::Role, own_ns, object_name(&["ws", w, name])),
                        namespaced_role(role)?,
                    )
                }
                _ => Ok(Vec::new()),
            }
        }
        SourceKind::KommanderRoleBinding | SourceKind::ClusterScopeRoleBinding => {
            let Some(b) = model.binding(plane, &source.namespace, &source.name) else {
                return Ok(Vec::new());
            };
            let name = &source.name;
            let who = subjects(cfg, b);
            match (id, direct) {
                (LayerId::Global(_), true) => one(
                    key(
                        ObjectKind::ClusterRoleBinding,
                        "",
                        object_name(&["global", name]),
                    ),
                    objects::cluster_role_binding(who, object_name(&["global", &b.role])),
                ),
                (LayerId::Workspace(Plane::Management, w), true) => one(
                    key(
                        ObjectKind::RoleBinding,
                        own_ns,
                        object_name(&["ws", w, name]),
                    ),
                    objects::role_binding(who, object_name(&["ws", w, &b.role])),
                ),
                (LayerId::Workspace(Plane::Fleet, w), true) => one(
                    key(
                        ObjectKind::ClusterRoleBinding,
                        "",
                        object_name(&["ws", w, name]),
                    ),
                    objects::cluster_role_binding(who, object_name(&["ws", w, &b.role])),
                ),
                (LayerId::Project(..), true) => one(
                    key(
                        ObjectKind::RoleBinding,
                        own_ns,
                        object_name(&["project", name]),
                    ),
                    objects::role_binding(who, object_name(&["project", &b.role])),
                ),
                (LayerId::Project(Plane::Management, w, _), false) => {
                    let Some(role) = model.role(plane, &source.namespace, &b.role) else {
                        return Ok(Vec::new());
                    };
                    if !syncs(role) {
                        return Ok(Vec::new());
                    }
                    let granted = match project_role(&b.role, role) {
                        Some(project_role) => object_name(&["project", &project_role]),
                        None => object_name(&["ws", w, &b.role]),
                    };
                    one(
                        key(
                            ObjectKind::RoleBinding,
                            own_ns,
                            object_name(&["ws", w, name]),
                        ),
                        objects::role_binding(who, granted),
                    )
                }
                _ => Ok(Vec::new()),
            }
        }
    }
}

/// A Role of `role`'s rules; a Role cannot hold non-resource URLs.
fn namespaced_role(role: &RoleSource) -> Result<objects::RbacObject, String> {
    if role.rules.iter().any(|r| !r.non_resource_urls.is_empty()) {
        return Err(
            "at project scope the role becomes a namespaced Role, which cannot hold \
             nonResourceURLs; move those rules to a Global or Workspace role"
                .into(),
        );
    }
    Ok(objects::role(rules(&role.rules)))
}

/// Changes of one layer: objects to create or update, and keys to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectChanges {
    /// Objects new or changed.
    pub upserts: Vec<Arc<Planned>>,
    /// Objects no longer planned.
    pub deletes: Vec<ObjectKey>,
}

impl ObjectChanges {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// Updates `source`'s contribution to `layer`; records what changed in `diff`.
fn patch_source(
    cfg: &PlannerConfig,
    model: &Model,
    st: &Structure,
    id: &LayerId,
    layer: &mut Layer,
    source: &SourceRef,
    diff: &mut ObjectChanges,
) {
    let mut old: BTreeMap<ObjectKey, Arc<Planned>> = BTreeMap::new();
    if let Some(keys) = layer.by_source.remove(source) {
        for k in keys {
            if let Some(o) = layer.objects.remove(&k) {
                old.insert(k, o);
            }
        }
    }
    layer.problems.remove(source);
    let new = match contribute(cfg, model, st, id, source) {
        Ok(objects) => objects,
        Err(problem) => {
            layer.problems.insert(source.clone(), problem);
            Vec::new()
        }
    };
    let mut keys = Vec::with_capacity(new.len());
    for o in new {
        if layer.objects.contains_key(&o.key) {
            // Two sources producing one name: only a hash collision of cut names can do this.
            layer.problems.insert(
                source.clone(),
                format!("produces {} which another source already produces", o.key),
            );
            continue;
        }
        keys.push(o.key.clone());
        match old.remove(&o.key) {
            Some(prev) if prev == o => {
                layer.objects.insert(o.key.clone(), prev);
            }
            _ => {
                layer.objects.insert(o.key.clone(), o.clone());
                diff.upserts.push(o);
            }
        }
    }
    if !keys.is_empty() {
        layer.by_source.insert(source.clone(), keys);
    }
    diff.deletes.extend(old.into_keys());
}

/// Layer `id` of `model`, from scratch.
fn build_layer(cfg: &PlannerConfig, model: &Model, st: &Structure, id: &LayerId) -> Layer {
    let mut layer = Layer::default();
    if matches!(
        id,
        LayerId::Workspace(Plane::Management, _) | LayerId::Project(..)
    ) {
        layer.namespace = own_namespace(st, id).unwrap_or_default().to_owned();
    }
    let mut ignored = ObjectChanges::default();
    for s in layer_sources(model, st, id) {
        patch_source(cfg, model, st, id, &mut layer, &s, &mut ignored);
    }
    layer
}

/// What changed between two versions of a layer.
fn layer_diff(old: Option<&Layer>, new: Option<&Layer>) -> ObjectChanges {
    let empty = BTreeMap::new();
    let old = old.map_or(&empty, |l| &l.objects);
    let new = new.map_or(&empty, |l| &l.objects);
    let mut diff = ObjectChanges::default();
    for (k, o) in new {
        if old.get(k) != Some(o) {
            diff.upserts.push(o.clone());
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            diff.deletes.push(k.clone());
        }
    }
    diff
}

// === the planner ===

/// What a change does to the fleet: per target, the objects to apply and to delete; and, for
/// the fleet index, the layers and layer sets that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Per target, its changes (targets with none are absent).
    pub clusters: BTreeMap<Target, ObjectChanges>,
    /// Layers changed (`None`: removed).
    pub layers: BTreeMap<LayerId, Option<Arc<Layer>>>,
    /// Targets whose layer set changed (`None`: no longer a target).
    pub targets: BTreeMap<Target, Option<Arc<BTreeSet<LayerId>>>>,
}

impl Delta {
    /// Whether the change changed nothing.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty() && self.layers.is_empty() && self.targets.is_empty()
    }

    /// Number of object changes over all targets.
    pub fn object_changes(&self) -> usize {
        self.clusters
            .values()
            .map(|c| c.upserts.len() + c.deletes.len())
            .sum()
    }
}

/// The planner: the model, and the plan kept equal to `plan(model)` change by change.
#[derive(Debug, Clone)]
pub struct Planner {
    cfg: PlannerConfig,
    model: Model,
    plan: Plan,
}

/// The plan of `model`, from scratch.
pub fn plan(cfg: &PlannerConfig, model: &Model) -> Plan {
    let st = Structure::build(model);
    let layers = all_layers(&st)
        .into_iter()
        .map(|id| {
            let l = build_layer(cfg, model, &st, &id);
            (id, Arc::new(l))
        })
        .collect();
    let mut targets = BTreeMap::new();
    for t in std::iter::once(Target::Management)
        .chain(st.clusters.keys().map(|c| Target::Cluster(c.clone())))
    {
        if let Some(set) = layer_set(&st, &t) {
            targets.insert(t, Arc::new(set));
        }
    }
    Plan {
        layers,
        targets,
        structure: Arc::new(st),
    }
}

impl Planner {
    /// A planner over `model`, planned from scratch.
    pub fn new(cfg: PlannerConfig, model: Model) -> Planner {
        let plan = plan(&cfg, &model);
        Planner { cfg, model, plan }
    }

    /// The current plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The current model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The settings.
    pub fn config(&self) -> &PlannerConfig {
        &self.cfg
    }

    /// Applies `change` to the model and the plan; what it does to the fleet.
    pub fn apply(&mut self, change: Change) -> Delta {
        match self.model.apply(change) {
            Touched::Nothing => Delta::default(),
            Touched::Source(s) => self.source_changed(&s),
            Touched::Structure => self.structure_changed(),
        }
    }

    /// The layers a change of `source` reaches, with the sources to recompute in each.
    fn reach(&self, source: &SourceRef) -> Vec<(LayerId, Vec<SourceRef>)> {
        let st = &self.plan.structure;
        let plane = source.kind.plane();
        match st.scope(&source.namespace) {
            None => Vec::new(),
            Some(ScopeId::Global) => vec![(LayerId::Global(plane), vec![source.clone()])],
            Some(ScopeId::Project(w, p)) => vec![(
                LayerId::Project(plane, w.clone(), p.clone()),
                vec![source.clone()],
            )],
            Some(ScopeId::Workspace(w)) => {
                let mut out = vec![(LayerId::Workspace(plane, w.clone()), vec![source.clone()])];
                if plane == Plane::Management {
                    // Inheritance: the source itself, and for a role the bindings to it.
                    let mut sources = vec![source.clone()];
                    if !source.kind.is_binding() {
                        for (name, b) in self.model.bindings_in(plane, &source.namespace) {
                            if b.role == source.name {
                                sources.push(SourceRef {
                                    kind: binding_kind(plane),
                                    namespace: source.namespace.clone(),
                                    name: name.to_owned(),
                                });
                            }
                        }
                    }
                    if let Some(info) = st.workspaces.get(w) {
                        for p in &info.projects {
                            out.push((
                                LayerId::Project(plane, w.clone(), p.clone()),
                                sources.clone(),
                            ));
                        }
                    }
                }
                out
            }
        }
    }

    fn source_changed(&mut self, source: &SourceRef) -> Delta {
        let mut delta = Delta::default();
        let st = self.plan.structure.clone();
        for (id, sources) in self.reach(source) {
            let Some(layer) = self.plan.layers.get_mut(&id) else {
                continue;
            };
            let mut diff = ObjectChanges::default();
            let before = layer.problems.clone();
            let layer_mut = Arc::make_mut(layer);
            for s in &sources {
                patch_source(&self.cfg, &self.model, &st, &id, layer_mut, s, &mut diff);
            }
            if diff.is_empty() && layer_mut.problems == before {
                continue;
            }
            delta.layers.insert(id.clone(), Some(layer.clone()));
            if diff.is_empty() {
                continue;
            }
            for t in holders(&st, &id) {
                let c = delta.clusters.entry(t).or_default();
                c.upserts.extend(diff.upserts.iter().cloned());
                c.deletes.extend(diff.deletes.iter().cloned());
            }
        }
        delta
    }

    fn structure_changed(&mut self) -> Delta {
        let old_st = self.plan.structure.clone();
        let st = Arc::new(Structure::build(&self.model));
        let mut delta = Delta::default();

        // Layers whose namespace changed or that appeared or went: rebuilt whole.
        let mut rebuild: BTreeSet<LayerId> = BTreeSet::new();
        let mut touched_ws: BTreeSet<String> = BTreeSet::new();
        for w in old_st.workspaces.keys().chain(st.workspaces.keys()) {
            let (old, new) = (old_st.workspaces.get(w), st.workspaces.get(w));
            if old == new {
                continue;
            }
            touched_ws.insert(w.clone());
            if old.map(|i| &i.namespace) != new.map(|i| &i.namespace) {
                for plane in [Plane::Management, Plane::Fleet] {
                    rebuild.insert(LayerId::Workspace(plane, w.clone()));
                    for i in [old, new].into_iter().flatten() {
                        for p in &i.projects {
                            rebuild.insert(LayerId::Project(plane, w.clone(), p.clone()));
                        }
                    }
                }
            }
        }
        for (w, p) in old_st.projects.keys().chain(st.projects.keys()) {
            let key = (w.clone(), p.clone());
            let (old, new) = (old_st.projects.get(&key), st.projects.get(&key));
            if old == new {
                continue;
            }
            touched_ws.insert(w.clone());
            if old.map(|i| &i.namespace) != new.map(|i| &i.namespace) {
                for plane in [Plane::Management, Plane::Fleet] {
                    rebuild.insert(LayerId::Project(plane, w.clone(), p.clone()));
                }
            }
        }
        let mut old_layers: BTreeMap<LayerId, Option<Arc<Layer>>> = BTreeMap::new();
        let mut diffs: BTreeMap<LayerId, ObjectChanges> = BTreeMap::new();
        let exists = |id: &LayerId| match id {
            LayerId::Global(_) => true,
            LayerId::Workspace(_, w) => st.workspaces.contains_key(w),
            LayerId::Project(_, w, p) => st.projects.contains_key(&(w.clone(), p.clone())),
        };
        for id in rebuild {
            let old = self.plan.layers.get(&id).cloned();
            let new = exists(&id).then(|| Arc::new(build_layer(&self.cfg, &self.model, &st, &id)));
            if old == new {
                continue;
            }
            let diff = layer_diff(old.as_deref(), new.as_deref());
            match &new {
                Some(l) => self.plan.layers.insert(id.clone(), l.clone()),
                None => self.plan.layers.remove(&id),
            };
            delta.layers.insert(id.clone(), new);
            old_layers.insert(id.clone(), old);
            diffs.insert(id, diff);
        }

        // Targets whose layer set may have changed: every cluster of a touched workspace
        // (before and after). The management plane's is implicit: it gets the rebuilt layers'
        // diffs below, which for a layer that appeared or went are all of its objects.
        let mut candidates: BTreeSet<Target> = BTreeSet::new();
        for w in &touched_ws {
            for s in [&old_st, &st] {
                if let Some(i) = s.workspaces.get(w) {
                    candidates.extend(i.clusters.iter().map(|c| Target::Cluster(c.clone())));
                }
            }
        }
        for (c, w) in old_st.clusters.iter().chain(st.clusters.iter()) {
            if old_st.clusters.get(c) != st.clusters.get(c) || touched_ws.contains(w) {
                candidates.insert(Target::Cluster(c.clone()));
            }
        }
        let mut settled: BTreeSet<Target> = BTreeSet::new();
        for t in candidates {
            let old_set = self.plan.targets.get(&t).cloned();
            let new_set = layer_set(&st, &t).map(Arc::new);
            if old_set == new_set {
                continue;
            }
            settled.insert(t.clone());
            let empty = BTreeSet::new();
            let (o, n) = (
                old_set.as_deref().unwrap_or(&empty),
                new_set.as_deref().unwrap_or(&empty),
            );
            let mut changes = ObjectChanges::default();
            for id in o.difference(n) {
                let layer = old_layers
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| self.plan.layers.get(id).cloned());
                if let Some(l) = layer {
                    changes.deletes.extend(l.objects.keys().cloned());
                }
            }
            for id in n.difference(o) {
                if let Some(l) = self.plan.layers.get(id) {
                    changes.upserts.extend(l.objects.values().cloned());
                }
            }
            for id in o.intersection(n) {
                if let Some(d) = diffs.get(id) {
                    changes.upserts.extend(d.upserts.iter().cloned());
                    changes.deletes.extend(d.deletes.iter().cloned());
                }
            }
            if !changes.is_empty() {
                delta.clusters.insert(t.clone(), changes);
            }
            match &new_set {
                Some(s) => self.plan.targets.insert(t.clone(), s.clone()),
                None => self.plan.targets.remove(&t),
            };
            delta.targets.insert(t, new_set);
        }
        // Targets whose layer set stayed but that hold a rebuilt layer.
        for (id, diff) in &diffs {
            if diff.is_empty() {
                continue;
            }
            for t in holders(&st, id) {
                if settled.contains(&t) {
                    continue;
                }
                let c = delta.clusters.entry(t).or_default();
                c.upserts.extend(diff.upserts.iter().cloned());
                c.deletes.extend(diff.deletes.iter().cloned());
            }
        }
        self.plan.structure = st;
        delta
    }
}
