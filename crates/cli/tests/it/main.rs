//! End-to-end tests of the `portcullis` binary: `up` in a temporary data directory, then the
//! CLI and kubectl against it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod can_i;
mod cluster;
mod connector;
mod fleet;
mod openid_client;
mod up;
