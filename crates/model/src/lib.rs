//! portcullis resource model: the Kubernetes-style object envelope shared by every kind.
#![deny(missing_docs)]

pub mod meta;

pub use meta::ObjectMeta;
