//! Integration tests of portcullis-authn: one test binary, a module per part.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod chain;
mod config;
mod discovery;
mod impersonation;
mod jwt;
mod reload;
mod request_info;
mod support;
mod x509;
