//! Integration tests of the RBAC engine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod escalation;
mod index;
mod parse;
mod recorded;
mod review;
mod rules;
mod table;
