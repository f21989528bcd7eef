//! Typed configuration of the management plane. Sources, later ones winning: built-in
//! defaults, the config file (`--config`, YAML), `PORTCULLIS_*` environment variables and flags
//! (the last two through clap in the `portcullis` binary).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default listen address and issuer port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Directory holding the store, the PKI and generated credentials.
    pub data_dir: PathBuf,
    /// Address the HTTPS listener binds.
    pub listen: SocketAddr,
    /// Public URL of the management plane (and OIDC issuer); derived from `listen` when empty.
    pub issuer: String,
    /// Extra names and addresses for the serving certificate.
    pub hosts: Vec<String>,
    /// Where state is kept.
    pub store: StoreConfig,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Deepest accepted JSON nesting in request bodies.
    pub max_json_depth: usize,
    /// Seconds that in-flight requests get to finish on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Audience (`aud`) that ID tokens presented to the management API must carry: the
    /// client id of the portcullis CLI and dashboard.
    pub api_audience: String,
    /// Store events kept so that watches can resume from an older resourceVersion (embedded
    /// stores; etcd keeps its own history until compaction).
    pub watch_history: u64,
}

/// The store backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, tag = "type")]
pub enum StoreConfig {
    /// Embedded redb file in the data directory (the default).
    Redb,
    /// In memory: lost at exit. For tests and demos.
    Memory,
    /// An etcd cluster (for HA).
    Etcd {
        /// Client URLs, e.g. `http://127.0.0.1:2379`.
        endpoints: Vec<String>,
        /// Key prefix, so that several installs can share one etcd.
        #[serde(default = "default_etcd_prefix")]
        prefix: String,
    },
}

fn default_etcd_prefix() -> String {
    "/portcullis".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("portcullis-data"),
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443))),
            issuer: String::new(),
            hosts: Vec::new(),
            store: StoreConfig::Redb,
            max_body_bytes: 3 * 1024 * 1024,
            max_json_depth: 64,
            shutdown_grace_seconds: 20,
            watch_history: 10_000,
            api_audience: "portcullis".into(),
        }
    }
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field's path.
        message: String,
    },
}

impl Config {
    /// Reads a YAML (or JSON) config file; unknown fields are errors.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The public URL: `issuer` if set, else `https://` + the listen address.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        if !self.issuer.is_empty() {
            return self.issuer.trim_end_matches('/').to_owned();
        }
        let ip = bound.ip();
        let host = if ip.is_unspecified() {
            "127.0.0.1".to_owned()
        } else if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        format!("https://{host}:{}", bound.port())
    }
}
