//! Escalation prevention across scopes: a role or binding written at any scope is allowed only
//! if what it grants, on every cluster it reaches, is already held there by whoever writes it,
//! as kube-apiserver's RBAC registry checks one cluster (`ConfirmNoEscalation`). A workspace
//! admin therefore cannot mint `cluster-admin` on a cluster outside their workspace, nor on
//! one inside it unless they hold it there.
//!
//! What the writer holds on a cluster is what portcullis plans there (on the management plane,
//! together with its own RBAC objects); RBAC a cluster has of its own is not known here and
//! does not count. Whoever holds `escalate` (roles) or `bind` (bindings) on the kind in the
//! scope's namespace on the management plane is not checked: the caller decides that first.

use std::collections::HashMap;

use portcullis_rbac::Policy;
use portcullis_rbac::escalation::{compact_rules, compact_string, covers, go_quote};
use portcullis_rbac::v1::PolicyRule;

use crate::fleet::FleetSnapshot;
use crate::model::Change;
use crate::objects::{ObjectKind, Plane, RbacObject};
use crate::plan::{LayerId, Planner, Target};

/// Who writes.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// User name.
    pub user: &'a str,
    /// Groups.
    pub groups: &'a [String],
}

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The first cluster (management plane first, then by name) where the writer lacks what
    /// the write grants.
    #[error(
        "user {user} (groups={groups}) is attempting to grant on cluster {cluster:?} \
         permissions not held there:\n{missing}"
    )]
    Escalation {
        /// Writer's name, quoted.
        user: String,
        /// Writer's groups, as a list.
        groups: String,
        /// The cluster.
        cluster: String,
        /// The missing rules, compacted, one a line.
        missing: String,
    },
    /// A binding names a role that does not exist in its namespace: as kube-apiserver, whose
    /// binding registry answers 404 unless the writer holds `bind` on the role.
    #[error("{resource}.portcullis.dev {name:?} not found")]
    RoleNotFound {
        /// Plural resource of the role kind (`kommanderroles`, `clusterscoperoles`).
        resource: &'static str,
        /// The role's name.
        name: String,
    },
}

/// Checks `change` (a write of a role or binding of either plane) by `writer` against what it
/// would add on every cluster: every role and binding it creates or changes must be covered by
/// the writer's rules on that cluster in that namespace. `management` is the management
/// plane's own RBAC (held in addition to its planned objects).
pub fn check_write(
    planner: &Planner,
    fleet: &FleetSnapshot,
    management: Option<&Policy>,
    writer: Writer<'_>,
    change: Change,
) -> Result<(), Refusal> {
    if let Change::Upsert(r) = &change {
        let bound = match &**r {
            portcullis_model::Resource::KommanderRoleBinding(b) => Some((
                Plane::Management,
                "kommanderroles",
                &b.metadata,
                &b.role_ref.name,
            )),
            portcullis_model::Resource::ClusterScopeRoleBinding(b) => Some((
                Plane::Fleet,
                "clusterscoperoles",
                &b.metadata,
                &b.role_ref.name,
            )),
            _ => None,
        };
        if let Some((plane, resource, meta, role)) = bound {
            let ns = meta.namespace.as_deref().unwrap_or_default();
            if planner.model().role(plane, ns, role).is_none() {
                return Err(Refusal::RoleNotFound {
                    resource,
                    name: role.clone(),
                });
            }
        }
    }
    let mut after = planner.clone();
    let delta = after.apply(change);
    let mut held: HashMap<(LayerId, String), Vec<PolicyRule>> = HashMap::new();
    for (target, changes) in &delta.clusters {
        for o in &changes.upserts {
            let (namespace, needed): (&str, Vec<PolicyRule>) = match &o.object {
                RbacObject::Namespace(_) => continue,
                RbacObject::ClusterRole(r) => ("", r.rules.clone()),
                RbacObject::Role(r) => (o.key.namespace.as_str(), r.rules.clone()),
                RbacObject::ClusterRoleBinding(b) => (
                    "",
                    role_rules(&after, target, "", &b.role_ref.kind, &b.role_ref.name),
                ),
                RbacObject::RoleBinding(b) => (
                    o.key.namespace.as_str(),
                    role_rules(
                        &after,
                        target,
                        &o.key.namespace,
                        &b.role_ref.kind,
                        &b.role_ref.name,
                    ),
                ),
            };
            if needed.is_empty() {
                continue;
            }
            let mut owned: Vec<PolicyRule> = Vec::new();
            for (id, l) in fleet.layers_of(target) {
                let rules = held
                    .entry((id.clone(), namespace.to_owned()))
                    .or_insert_with(|| {
                        portcullis_rbac::escalation::rules_for(
                            &l.policy,
                            writer.user,
                            writer.groups,
                            namespace,
                        )
                    });
                owned.extend(rules.iter().cloned());
            }
            if *target == Target::Management
                && let Some(p) = management
            {
                owned.extend(portcullis_rbac::escalation::rules_for(
                    p,
                    writer.user,
                    writer.groups,
                    namespace,
                ));
            }
            let (ok, missing) = covers(&owned, &needed);
            if !ok {
                let mut lines: Vec<String> =
                    compact_rules(&missing).iter().map(compact_string).collect();
                lines.sort();
                lines.dedup();
                return Err(Refusal::Escalation {
                    user: go_quote(writer.user),
                    groups: portcullis_rbac::escalation::go_quote_list(writer.groups),
                    cluster: target.to_string(),
                    missing: lines.join("\n"),
                });
            }
        }
    }
    Ok(())
}

/// The rules of the role `kind`/`name` (in `namespace` for a Role) planned on `target`.
fn role_rules(
    planner: &Planner,
    target: &Target,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Vec<PolicyRule> {
    let key = crate::objects::ObjectKey {
        kind: if kind == "Role" {
            ObjectKind::Role
        } else {
            ObjectKind::ClusterRole
        },
        namespace: if kind == "Role" {
            namespace.to_owned()
        } else {
            String::new()
        },
        name: name.to_owned(),
    };
    for (_, l) in planner.plan().layers_of(target) {
        if let Some(o) = l.get(&key) {
            return match &o.object {
                RbacObject::ClusterRole(r) => r.rules.clone(),
                RbacObject::Role(r) => r.rules.clone(),
                _ => Vec::new(),
            };
        }
    }
    Vec::new()
}
