//! A cluster's credentials, sealed in the store by `cluster attach` as one secret with a key
//! per part (each part is at most [`portcullis_oidc::MAX_SECRET_LEN`] bytes): `server`,
//! `ca.crt`, and either `token` or `tls.crt` and `tls.key`. They are never part of an object,
//! so `get` cannot print them; the Cluster's `spec.credentialsRef` only names the secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portcullis_federation::delivery::DeliveryError;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

const SERVER: &str = "server";
const CA: &str = "ca.crt";
const TOKEN: &str = "token";
const CERT: &str = "tls.crt";
const KEY: &str = "tls.key";

/// The secret that holds the credentials of Cluster `name` in `namespace`.
pub(crate) fn secret_name(namespace: &str, name: &str) -> String {
    format!(
        "{}{namespace}.{name}",
        portcullis_model::kinds::cluster::CLUSTER_CREDENTIALS_PREFIX
    )
}

/// How portcullis authenticates to a cluster.
pub(crate) enum Auth {
    /// A bearer token (a service account's, say).
    Token(SecretString),
    /// A client certificate (PEM) and its key (PEM).
    ClientCertificate {
        /// The certificate chain.
        cert: String,
        /// The private key.
        key: SecretString,
    },
}

/// Where a cluster is and how to talk to it.
pub(crate) struct Credentials {
    /// `https://host:port` of its API server.
    pub server: String,
    /// PEM of the CA that signs its serving certificate (empty: the system roots).
    pub ca_pem: String,
    /// The credential.
    pub auth: Auth,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Seals them as secret `name` (replacing what it held).
    pub async fn store(
        &self,
        provider: &portcullis_oidc::Provider,
        name: &str,
    ) -> Result<(), String> {
        let put = |key: &'static str, value: SecretString| async move {
            provider
                .put_secret(name, key, &value)
                .await
                .map_err(|e| format!("sealing {key}: {e}"))
        };
        // The credential of a replaced kind must not linger.
        delete(provider, name).await?;
        put(SERVER, SecretString::from(self.server.clone())).await?;
        if !self.ca_pem.is_empty() {
            put(CA, SecretString::from(self.ca_pem.clone())).await?;
        }
        match &self.auth {
            Auth::Token(t) => put(TOKEN, t.clone()).await?,
            Auth::ClientCertificate { cert, key } => {
                put(CERT, SecretString::from(cert.clone())).await?;
                put(KEY, key.clone()).await?;
            }
        }
        Ok(())
    }

    /// Opens secret `name`.
    pub async fn load(
        provider: &portcullis_oidc::Provider,
        name: &str,
    ) -> Result<Credentials, String> {
        let get = |key: &'static str| async move {
            provider
                .secret(name, key)
                .await
                .map_err(|e| format!("reading {key} of secret {name:?}: {e}"))
        };
        let Some(server) = get(SERVER).await? else {
            return Err(format!("secret {name:?} does not exist"));
        };
        let ca_pem = get(CA)
            .await?
            .map(|s| s.expose_secret().to_owned())
            .unwrap_or_default();
        let auth = match (get(TOKEN).await?, get(CERT).await?, get(KEY).await?) {
            (Some(t), _, _) => Auth::Token(t),
            (None, Some(cert), Some(key)) => Auth::ClientCertificate {
                cert: cert.expose_secret().to_owned(),
                key,
            },
            _ => {
                return Err(format!(
                    "secret {name:?} holds no token and no client certificate"
                ));
            }
        };
        Ok(Credentials {
            server: server.expose_secret().to_owned(),
            ca_pem,
            auth,
        })
    }

    /// The kube client configuration (through a kubeconfig of one context, so that kube-client
    /// reads the CA and the credential as it reads any kubeconfig).
    pub async fn kube_config(&self) -> Result<kube_client::Config, DeliveryError> {
        let cluster = if self.ca_pem.is_empty() {
            json!({ "server": self.server })
        } else {
            json!({
                "server": self.server,
                "certificate-authority-data": STANDARD.encode(&self.ca_pem),
            })
        };
        let user = match &self.auth {
            Auth::Token(t) => json!({ "token": t.expose_secret() }),
            Auth::ClientCertificate { cert, key } => json!({
                "client-certificate-data": STANDARD.encode(cert),
                "client-key-data": STANDARD.encode(key.expose_secret()),
            }),
        };
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "c", "cluster": cluster }],
            "users": [{ "name": "u", "user": user }],
            "contexts": [{ "name": "c", "context": { "cluster": "c", "user": "u" } }],
            "current-context": "c",
        });
        // JSON is YAML.
        portcullis_federation::delivery::config_from_kubeconfig(&kubeconfig.to_string(), None).await
    }
}

/// Deletes secret `name` (every key it may have).
pub(crate) async fn delete(provider: &portcullis_oidc::Provider, name: &str) -> Result<(), String> {
    for key in [SERVER, CA, TOKEN, CERT, KEY] {
        provider
            .delete_secret(name, key)
            .await
            .map_err(|e| format!("deleting {key} of secret {name:?}: {e}"))?;
    }
    Ok(())
}
