//! Integration tests of portcullis-jose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod jwks_cache;
mod key_set;
mod roundtrip;
mod signing_key;
mod support;
mod verifier;
