//! Kubeconfig files (`apiVersion: v1`, `kind: Config`), written and read as kubectl does.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::pki::{self, CertifiedKey, PkiError};

/// A kubeconfig file. Only the fields portcullis writes and reads are modelled; others are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// Always `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `Config`.
    pub kind: String,
    /// Named clusters.
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    /// Named users (credentials).
    #[serde(default)]
    pub users: Vec<NamedUser>,
    /// Named contexts (cluster + user).
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    /// The context used when none is chosen.
    #[serde(default)]
    pub current_context: String,
}

/// `clusters[]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedCluster {
    /// Name referenced by contexts.
    pub name: String,
    /// The cluster.
    pub cluster: Cluster,
}

/// A cluster's endpoint and trust.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// `https://host:port`.
    pub server: String,
    /// Base64 of the CA bundle PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
}

/// `users[]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedUser {
    /// Name referenced by contexts.
    pub name: String,
    /// The credentials.
    pub user: AuthInfo,
}

/// Credentials of a user. The private key and the token are secrets: they print as
/// `[REDACTED]` in `Debug` and are exposed only where they are used or written to the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuthInfo {
    /// Base64 of the client certificate PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// Base64 of the client key PEM.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose"
    )]
    pub client_key_data: Option<SecretString>,
    /// A bearer token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose"
    )]
    pub token: Option<SecretString>,
}

/// Writes a secret's value: only when the kubeconfig file itself is written.
fn expose<S: serde::Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => s.serialize_str(v.expose_secret()),
        None => s.serialize_none(),
    }
}

/// `contexts[]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedContext {
    /// Name of the context.
    pub name: String,
    /// The context.
    pub context: Context,
}

/// A context: which cluster with which user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Context {
    /// Cluster name.
    pub cluster: String,
    /// User name.
    pub user: String,
    /// Default namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Errors reading a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a kubeconfig.
    #[error("{path}: not a kubeconfig: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The current context names something missing.
    #[error("{path}: {message}")]
    Incomplete {
        /// The file.
        path: String,
        /// What is missing.
        message: String,
    },
}

impl Kubeconfig {
    /// A kubeconfig with one cluster, one client-certificate user and one context, as kubeadm's
    /// `admin.conf` is laid out.
    pub fn with_client_cert(
        cluster_name: &str,
        server: &str,
        ca_pem: &str,
        user_name: &str,
        client: &CertifiedKey,
    ) -> Kubeconfig {
        let context = format!("{user_name}@{cluster_name}");
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: cluster_name.into(),
                cluster: Cluster {
                    server: server.into(),
                    certificate_authority_data: Some(STANDARD.encode(ca_pem)),
                },
            }],
            users: vec![NamedUser {
                name: user_name.into(),
                user: AuthInfo {
                    client_certificate_data: Some(STANDARD.encode(&client.cert_pem)),
                    client_key_data: Some(STANDARD.encode(&client.key_pem).into()),
                    token: None,
                },
            }],
            contexts: vec![NamedContext {
                name: context.clone(),
                context: Context {
                    cluster: cluster_name.into(),
                    user: user_name.into(),
                    namespace: None,
                },
            }],
            current_context: context,
        }
    }

    /// Serialises as YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Writes the file with mode 0600: it holds a private key.
    pub fn write_private(&self, path: &Path) -> Result<(), PkiError> {
        pki::write_private(path, self.to_yaml().as_bytes())
    }

    /// Reads a kubeconfig file.
    pub fn read(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Io {
            path: p.clone(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| KubeconfigError::Parse {
            path: p,
            message: e.to_string(),
        })
    }

    /// The cluster and user of the current context.
    pub fn current(&self, path: &Path) -> Result<(&Cluster, &AuthInfo), KubeconfigError> {
        let incomplete = |message: String| KubeconfigError::Incomplete {
            path: path.display().to_string(),
            message,
        };
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| {
                incomplete(format!(
                    "current-context {:?} is not defined",
                    self.current_context
                ))
            })?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| {
                incomplete(format!("cluster {:?} is not defined", ctx.context.cluster))
            })?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .ok_or_else(|| incomplete(format!("user {:?} is not defined", ctx.context.user)))?;
        Ok((&cluster.cluster, &user.user))
    }
}

/// Decodes a `*-data` field (base64 of PEM).
pub fn decode_data(data: &str) -> Option<Vec<u8>> {
    STANDARD.decode(data.trim()).ok()
}
