//! Integration tests of the federation planner, the fleet index and escalation prevention, and
//! (feature `delivery`) of delivery against kube-apiserver doubles and real API servers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::large_enum_variant
)]

#[cfg(feature = "delivery")]
mod delivery;
mod escalation;
mod fixtures;
mod properties;
mod table;
