//! portcullis resource model: the Kubernetes-style object envelope, label selectors and
//! the name and label syntax rules shared by every kind. Pure data and logic, no I/O.
#![deny(missing_docs)]

pub mod error;
pub mod label_selector;
pub mod meta;
pub mod syntax;

pub use error::Error;
pub use label_selector::{LabelSelector, LabelSelectorOperator, LabelSelectorRequirement};
pub use meta::{ObjectMeta, OwnerReference};
