//! Integration tests of portcullis-model: example manifests in `tests/data/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod decode;
mod schema;
mod validation;

use std::path::PathBuf;

/// Reads `tests/data/<name>`.
pub fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every example manifest.
pub const EXAMPLES: &[&str] = &[
    "workspace.yaml",
    "project.yaml",
    "cluster.yaml",
    "group.yaml",
    "roles.yaml",
    "client.yaml",
    "user.yaml",
    "connectors.yaml",
    "list.yaml",
];
