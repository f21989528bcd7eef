//! The fleet index: the RBAC engine's compiled index of every layer, and which layers each
//! cluster holds, kept up to date from the planner's deltas. A decision on a cluster is the
//! union of its layers' decisions (RBAC only ever grants, and no binding refers to a role of
//! another layer), so a change recompiles the one layer it touched, however many clusters hold
//! it. Readers load an immutable snapshot and never wait for a writer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_rbac::evaluate::{applies_to, rule_allows};
use portcullis_rbac::review::{WhoCan, who_can};
use portcullis_rbac::v1::{PolicyRule, RoleRef};
use portcullis_rbac::{Attributes, CompiledPolicy, Decision, Policy};
use serde::Serialize;

use crate::objects::{ObjectKey, ObjectKind, Plane, RbacObject, SourceRef};
use crate::plan::{Delta, Layer, LayerId, Plan, Target};

/// One layer, compiled.
#[derive(Debug)]
pub struct LayerIndex {
    /// The layer's RBAC objects.
    pub policy: Policy,
    /// The RBAC engine's index over them.
    pub compiled: CompiledPolicy,
    /// The layer (for the sources of its objects).
    pub layer: Arc<Layer>,
}

impl LayerIndex {
    /// Compiles `layer`.
    pub fn new(layer: Arc<Layer>) -> LayerIndex {
        let policy = policy_of(&layer);
        let compiled = CompiledPolicy::new(&policy);
        LayerIndex {
            policy,
            compiled,
            layer,
        }
    }
}

/// The RBAC objects of a layer as a policy.
pub fn policy_of(layer: &Layer) -> Policy {
    let mut p = Policy::default();
    for o in layer.objects.values() {
        match &o.object {
            RbacObject::Namespace(_) => {}
            RbacObject::ClusterRole(r) => {
                p.cluster_roles.insert(o.key.name.clone(), r.clone());
            }
            RbacObject::ClusterRoleBinding(b) => {
                p.cluster_role_bindings
                    .insert(o.key.name.clone(), b.clone());
            }
            RbacObject::Role(r) => {
                p.roles
                    .insert((o.key.namespace.clone(), o.key.name.clone()), r.clone());
            }
            RbacObject::RoleBinding(b) => {
                p.role_bindings
                    .insert((o.key.namespace.clone(), o.key.name.clone()), b.clone());
            }
        }
    }
    p
}

/// One immutable state of the index.
#[derive(Debug, Default, Clone)]
pub struct FleetSnapshot {
    layers: HashMap<LayerId, Arc<LayerIndex>>,
    targets: HashMap<Target, Arc<BTreeSet<LayerId>>>,
    /// The layer of namespaced objects in each namespace, per plane.
    namespaced: HashMap<(Plane, String), LayerId>,
}

/// A grant found by [`FleetSnapshot::explain`]: the binding and role on the cluster, and the
/// portcullis objects they come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The scope: `Global`, `Workspace W` or `Project W/P`.
    pub scope: String,
    /// The binding on the cluster.
    pub binding: ObjectKey,
    /// The source of the binding.
    pub binding_source: SourceRef,
    /// The role on the cluster.
    pub role: ObjectKey,
    /// The source of the role, when the role exists.
    pub role_source: Option<SourceRef>,
}

/// The answer of [`FleetSnapshot::explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Allowed?
    pub allowed: bool,
    /// Every grant that allows it (empty when denied).
    pub grants: Vec<Grant>,
}

/// One subject of [`FleetSnapshot::who_can`], with what grants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetWhoCan {
    /// `User` or `Group`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The scope: `Global`, `Workspace W` or `Project W/P`.
    pub scope: String,
    /// The binding's source.
    pub source: SourceRef,
    /// The binding on the cluster, `Kind/[namespace/]name`.
    pub binding: String,
    /// The role on the cluster, `Kind/name`.
    pub role: String,
}

/// The answer of [`FleetSnapshot::who_can`]: subjects per layer, and the layers per cluster
/// (a Global grant is listed once, not once per cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetWhoCanAnswer {
    /// Per layer with at least one subject.
    pub layers: BTreeMap<LayerId, Arc<Vec<FleetWhoCan>>>,
    /// Per cluster, the layers of `layers` it holds (clusters where nobody can are absent).
    pub targets: BTreeMap<Target, Vec<LayerId>>,
}

impl FleetWhoCanAnswer {
    /// The subjects who can on `target`.
    pub fn on(&self, target: &Target) -> impl Iterator<Item = &FleetWhoCan> {
        self.targets
            .get(target)
            .into_iter()
            .flatten()
            .filter_map(|id| self.layers.get(id))
            .flat_map(|v| v.iter())
    }
}

fn source_of(layer: &Layer, kind: ObjectKind, namespace: &str, name: &str) -> Option<SourceRef> {
    layer
        .get(&ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
        .map(|o| o.source.clone())
}

fn role_key(binding_ns: &str, r: &RoleRef) -> ObjectKey {
    let kind = if r.kind == "Role" {
        ObjectKind::Role
    } else {
        ObjectKind::ClusterRole
    };
    ObjectKey {
        kind,
        namespace: if kind == ObjectKind::Role {
            binding_ns.to_owned()
        } else {
            String::new()
        },
        name: r.name.clone(),
    }
}

/// Two snapshots are equal when they hold the same layer sets and the same RBAC objects in
/// every layer (the compiled index is a function of those).
impl PartialEq for FleetSnapshot {
    fn eq(&self, other: &Self) -> bool {
        self.targets == other.targets
            && self.layers.len() == other.layers.len()
            && self.layers.iter().all(|(id, l)| {
                other
                    .layers
                    .get(id)
                    .is_some_and(|o| o.policy == l.policy && o.layer == l.layer)
            })
    }
}

impl FleetSnapshot {
    /// The index of `plan`, from scratch.
    pub fn new(plan: &Plan) -> FleetSnapshot {
        let mut s = FleetSnapshot {
            targets: plan
                .targets
                .iter()
                .map(|(t, s)| (t.clone(), s.clone()))
                .collect(),
            ..FleetSnapshot::default()
        };
        for (id, l) in plan.layers() {
            s.insert_layer(id, l);
        }
        s
    }

    fn insert_layer(&mut self, id: &LayerId, l: &Arc<Layer>) {
        if !l.namespace.is_empty() {
            self.namespaced
                .insert((id.plane(), l.namespace.clone()), id.clone());
        }
        self.layers
            .insert(id.clone(), Arc::new(LayerIndex::new(l.clone())));
    }

    fn remove_layer(&mut self, id: &LayerId) {
        if let Some(old) = self.layers.remove(id) {
            let key = (id.plane(), old.layer.namespace.clone());
            if self.namespaced.get(&key) == Some(id) {
                self.namespaced.remove(&key);
            }
        }
    }

    /// This snapshot with `delta` applied: changed layers recompiled, layer sets replaced.
    pub fn patched(&self, delta: &Delta) -> FleetSnapshot {
        let mut next = self.clone();
        // Removals first: a namespace may pass from a removed layer to a new one.
        for (id, layer) in &delta.layers {
            if layer.is_none() {
                next.remove_layer(id);
            }
        }
        for (id, layer) in &delta.layers {
            if let Some(l) = layer {
                next.remove_layer(id);
                next.insert_layer(id, l);
            }
        }
        for (t, set) in &delta.targets {
            match set {
                Some(s) => {
                    next.targets.insert(t.clone(), s.clone());
                }
                None => {
                    next.targets.remove(t);
                }
            }
        }
        next
    }

    /// Whether `target` is in the fleet.
    pub fn has_target(&self, target: &Target) -> bool {
        self.targets.contains_key(target)
    }

    /// The targets.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.keys()
    }

    /// The compiled layers `target` holds (the management plane: every management-plane
    /// layer).
    pub fn layers_of<'a>(
        &'a self,
        target: &'a Target,
    ) -> Box<dyn Iterator<Item = (&'a LayerId, &'a Arc<LayerIndex>)> + 'a> {
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
                .flat_map(|s| s.iter())
                .filter_map(|id| self.layers.get_key_value(id)),
        )
    }

    /// A compiled layer.
    pub fn layer(&self, id: &LayerId) -> Option<&Arc<LayerIndex>> {
        self.layers.get(id)
    }

    /// Decides `a` on `target` over what portcullis plans there. Only the layers that can
    /// grant it are asked: the Global one, the workspace's ClusterRoles on an attached
    /// cluster, and the one layer of Roles in the request's namespace (no other layer holds
    /// anything that applies there), so a decision costs at most three index lookups however
    /// large the fleet.
    pub fn authorize(&self, target: &Target, a: &Attributes) -> Decision {
        let ask = |id: &LayerId| {
            self.layers
                .get(id)
                .map(|l| l.compiled.authorize(a))
                .filter(|d| d.allowed)
        };
        let (plane, set) = match target {
            Target::Management => (Plane::Management, None),
            Target::Cluster(_) => match self.targets.get(target) {
                Some(set) => (Plane::Fleet, Some(set)),
                None => return Decision::default(),
            },
        };
        if let Some(d) = ask(&LayerId::Global(plane)) {
            return d;
        }
        if let Some(set) = set
            && let Some(ws) = set.iter().find(|id| matches!(id, LayerId::Workspace(..)))
            && let Some(d) = ask(ws)
        {
            return d;
        }
        if !a.namespace.is_empty()
            && let Some(id) = self.namespaced.get(&(plane, a.namespace.clone()))
            && set.is_none_or(|s| s.contains(id))
            && let Some(d) = ask(id)
        {
            return d;
        }
        Decision::default()
    }

    /// Decides `a` on `target` and names every binding that allows it, with its source.
    pub fn explain(&self, target: &Target, a: &Attributes) -> Explanation {
        let mut grants = Vec::new();
        for (id, l) in self.layers_of(target) {
            let p = &l.policy;
            let mut consider = |binding: ObjectKey,
                                subjects: &[portcullis_rbac::v1::Subject],
                                role_ref: &RoleRef| {
                let ns = binding.namespace.as_str();
                if !subjects.iter().any(|s| applies_to(s, a, ns)) {
                    return;
                }
                let role = role_key(ns, role_ref);
                let allows = p
                    .role_rules(&role.namespace, &role_ref.kind, &role_ref.name)
                    .is_some_and(|rules| rules.iter().any(|r| rule_allows(r, a)));
                if !allows {
                    return;
                }
                let Some(binding_source) =
                    source_of(&l.layer, binding.kind, &binding.namespace, &binding.name)
                else {
                    return;
                };
                let role_source = source_of(&l.layer, role.kind, &role.namespace, &role.name);
                grants.push(Grant {
                    scope: id.to_string(),
                    binding,
                    binding_source,
                    role,
                    role_source,
                });
            };
            for (name, b) in &p.cluster_role_bindings {
                consider(
                    ObjectKey {
                        kind: ObjectKind::ClusterRoleBinding,
                        namespace: String::new(),
                        name: name.clone(),
                    },
                    &b.subjects,
                    &b.role_ref,
                );
            }
            if !a.namespace.is_empty() {
                for ((ns, name), b) in p
                    .role_bindings
                    .range((a.namespace.clone(), String::new())..)
                    .take_while(|((ns, _), _)| *ns == a.namespace)
                {
                    consider(
                        ObjectKey {
                            kind: ObjectKind::RoleBinding,
                            namespace: ns.clone(),
                            name: name.clone(),
                        },
                        &b.subjects,
                        &b.role_ref,
                    );
                }
            }
        }
        Explanation {
            allowed: !grants.is_empty(),
            grants,
        }
    }

    /// Every subject who can do what `a` describes (its user and groups are ignored), on every
    /// cluster, with the source that grants it.
    pub fn who_can(&self, a: &Attributes) -> FleetWhoCanAnswer {
        let mut answer = FleetWhoCanAnswer::default();
        let mut empty: BTreeSet<&LayerId> = BTreeSet::new();
        for t in self.targets.keys() {
            let mut held = Vec::new();
            for (id, l) in self.layers_of(t) {
                if empty.contains(id) {
                    continue;
                }
                if !answer.layers.contains_key(id) {
                    let found = layer_who_can(id, l, a);
                    if found.is_empty() {
                        empty.insert(id);
                        continue;
                    }
                    answer.layers.insert(id.clone(), Arc::new(found));
                }
                held.push(id.clone());
            }
            if !held.is_empty() {
                held.sort();
                answer.targets.insert(t.clone(), held);
            }
        }
        answer
    }

    /// Every rule `user` (with `groups`) holds on `target` in `namespace` (`""`: cluster-wide
    /// rules only) through what portcullis plans there.
    pub fn rules_for(
        &self,
        target: &Target,
        user: &str,
        groups: &[String],
        namespace: &str,
    ) -> Vec<PolicyRule> {
        self.layers_of(target)
            .flat_map(|(_, l)| {
                portcullis_rbac::escalation::rules_for(&l.policy, user, groups, namespace)
            })
            .collect()
    }
}

fn layer_who_can(id: &LayerId, l: &LayerIndex, a: &Attributes) -> Vec<FleetWhoCan> {
    who_can(&l.policy, a)
        .into_iter()
        .filter_map(|w: WhoCan| {
            let (kind, rest) = w.binding.split_once('/')?;
            let (kind, namespace, name) = match kind {
                "ClusterRoleBinding" => (ObjectKind::ClusterRoleBinding, "", rest),
                _ => {
                    let (ns, name) = rest.split_once('/')?;
                    (ObjectKind::RoleBinding, ns, name)
                }
            };
            let source = source_of(&l.layer, kind, namespace, name)?;
            Some(FleetWhoCan {
                kind: w.kind,
                name: w.name,
                scope: id.to_string(),
                source,
                binding: w.binding,
                role: w.role,
            })
        })
        .collect()
}

/// The fleet index: a snapshot readers load without waiting, replaced whole on each change.
#[derive(Debug, Default)]
pub struct FleetIndex {
    current: ArcSwap<FleetSnapshot>,
}

impl FleetIndex {
    /// The index of `plan`.
    pub fn new(plan: &Plan) -> FleetIndex {
        FleetIndex {
            current: ArcSwap::from_pointee(FleetSnapshot::new(plan)),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<FleetSnapshot> {
        self.current.load_full()
    }

    /// Applies `delta` (from the one writer that owns the planner).
    pub fn apply(&self, delta: &Delta) {
        if delta.layers.is_empty() && delta.targets.is_empty() {
            return;
        }
        let next = self.current.load().patched(delta);
        self.current.store(Arc::new(next));
    }

    /// Replaces the snapshot with one of `plan` (after a resync).
    pub fn reset(&self, plan: &Plan) {
        self.current.store(Arc::new(FleetSnapshot::new(plan)));
    }
}
