//! Integration tests of portcullis-oidc: the router on a loopback listener, driven by the
//! `openidconnect` relying-party crate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod browser;
mod conformance;
mod connectors;
mod discovery;
mod flow;
mod keys;
mod sessions;
mod support;
mod upstream;
