//! Kubernetes RBAC (`rbac.authorization.k8s.io/v1`), decided exactly as kube-apiserver's RBAC
//! authorizer decides: the object types, a policy parser for real Kubernetes YAML and JSON,
//! ClusterRole aggregation, the bootstrap roles, and a reference evaluator written for
//! obviousness. Pure: no I/O, no async.
#![deny(missing_docs)]

pub mod attributes;
pub mod batch;
pub mod bootstrap;
pub mod error;
pub mod escalation;
pub mod evaluate;
pub mod index;
pub mod policy;
pub mod review;
pub mod v1;
pub mod validation;

pub use attributes::{Attributes, AttributesRef, Decision};
pub use error::Error;
pub use evaluate::authorize;
pub use index::CompiledPolicy;
pub use policy::Policy;

/// Whether two short byte strings (names) are equal, compared eight bytes at a time in line.
/// The C library's `memcmp` reads them with one wide masked load, which stalls when they were
/// written a moment before (store-to-load forwarding fails): on the request path the names
/// compared were just parsed or copied, and that stall cost more than the rest of a decision.
#[doc(hidden)]
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a_words = a.chunks_exact(8);
    let mut b_words = b.chunks_exact(8);
    for (x, y) in a_words.by_ref().zip(b_words.by_ref()) {
        let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8]));
        if word(x) != word(y) {
            return false;
        }
    }
    a_words
        .remainder()
        .iter()
        .zip(b_words.remainder())
        .all(|(x, y)| x == y)
}
