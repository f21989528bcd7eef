//! Integration tests of portcullis-connectors against a real OpenLDAP slapd (started by
//! `portcullis-testkit` on loopback ports). Each test starts one slapd and runs its related
//! cases against it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod ldap;
