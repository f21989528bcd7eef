//! Integration tests of forward auth: real nginx and Caddy in front of an upstream, a running
//! management plane as the issuer, headless Chromium, and the security cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod browser;
mod proxies;
mod security;
mod support;
