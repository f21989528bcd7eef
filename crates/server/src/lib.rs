//! The portcullis management plane: configuration, PKI, TLS serving, authentication and
//! authorization, and the management API, wired together by [`serve::start`].
#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod kinds;
pub mod kubeconfig;
pub mod pki;
pub mod rbac;
pub mod secrets;
pub mod serve;
pub mod tls;

pub use config::Config;
pub use serve::{Running, start};
