//! Integration tests of the management plane through its real TLS listener.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod agent;
mod api;
mod connectors;
mod delivery;
mod escalation;
mod federation;
mod kube_apiserver;
mod kubectl;
mod oidc;
mod rbac;
mod support;
mod tls_and_authn;
