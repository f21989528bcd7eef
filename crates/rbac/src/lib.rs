//! Kubernetes RBAC (`rbac.authorization.k8s.io/v1`), decided exactly as kube-apiserver's RBAC
//! authorizer decides: the object types, a policy parser for real Kubernetes YAML and JSON,
//! ClusterRole aggregation, the bootstrap roles, and a reference evaluator written for
//! obviousness. Pure: no I/O, no async.
#![deny(missing_docs)]

pub mod attributes;
pub mod batch;
pub mod bootstrap;
pub mod escalation;
pub mod evaluate;
pub mod index;
pub mod policy;
pub mod review;
pub mod v1;
pub mod validation;

pub use attributes::{Attributes, Decision};
pub use evaluate::authorize;
pub use index::CompiledPolicy;
pub use policy::{Policy, PolicyError};
