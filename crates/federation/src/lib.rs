//! Federated access control: roles and bindings defined once, at Global, Workspace or Project
//! scope, planned into the exact Kubernetes RBAC objects each cluster must hold — the
//! management plane and every attached cluster in scope — with the RBAC engine's index of the
//! whole fleet to answer "who can", "why" and "what would change". Pure: no I/O, no async; the
//! management plane feeds it from the store and delivers its output.
//!
//! | scope | `KommanderRole` (management plane) | `ClusterScopeRole` (attached clusters) |
//! |---|---|---|
//! | Global | ClusterRole | ClusterRole on every cluster of every workspace |
//! | Workspace | Role in the workspace namespace | ClusterRole on every cluster of the workspace |
//! | Project | Role in the project namespace | Role in the project namespace on every cluster the project is placed on |
//!
//! Bindings become RoleBindings or ClusterRoleBindings on the same clusters. See [`plan`](mod@plan) for
//! names, labels, workspace → project inheritance and the incremental planner, [`fleet`] for
//! the index, [`escalation`] for escalation prevention across scopes, [`defaults`] for the
//! default roles.
#![deny(missing_docs)]

pub mod defaults;
#[cfg(feature = "delivery")]
pub mod delivery;
pub mod escalation;
pub mod fleet;
pub mod model;
pub mod objects;
pub mod plan;
mod structure;

pub use fleet::{FleetIndex, FleetSnapshot};
pub use model::{Change, Model};
pub use objects::{ObjectKey, ObjectKind, Plane, Planned, RbacObject, SourceKind, SourceRef};
pub use plan::{Delta, LayerId, ObjectChanges, Plan, Planner, PlannerConfig, Target, plan};
pub use structure::{Conflict, MANAGEMENT};
