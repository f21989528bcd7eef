//! Integration tests of the federation planner, the fleet index and escalation prevention.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::large_enum_variant
)]

mod escalation;
mod fixtures;
mod properties;
mod table;
