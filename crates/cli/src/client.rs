//! A client of the management API, configured from a kubeconfig (the admin's `admin.conf` by
//! default), with kubectl's resource resolution through discovery.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use portcullis_server::kubeconfig::{Kubeconfig, decode_data};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::ExposeSecret;
use serde_json::Value;

/// A resource type found by discovery.
#[derive(Debug, Clone)]
pub struct ApiResource {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural name.
    pub plural: String,
    /// Kind.
    pub kind: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced or not.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
}

impl ApiResource {
    /// `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The path of a collection or object.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(ns) = namespace.filter(|_| self.namespaced) {
            p.push_str(&format!("/namespaces/{ns}"));
        }
        p.push('/');
        p.push_str(&self.plural);
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }

    /// `plural.group`, as kubectl names resources in its output.
    pub fn qualified(&self, singular: bool) -> String {
        let n = if singular {
            &self.singular
        } else {
            &self.plural
        };
        if self.group.is_empty() {
            n.clone()
        } else {
            format!("{n}.{}", self.group)
        }
    }
}

/// An API client.
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// An error answer of the API: its `Status`.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP code.
    pub code: u16,
    /// `Status.reason`.
    pub reason: String,
    /// `Status.message`.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl std::error::Error for ApiFailure {}

impl Client {
    /// Builds a client from a kubeconfig file's current context.
    pub fn from_kubeconfig(path: &Path) -> Result<Client> {
        let kc = Kubeconfig::read(path).with_context(|| {
            format!(
                "no usable kubeconfig at {}; start `portcullis up` first, or pass --config PATH",
                path.display()
            )
        })?;
        let (cluster, user) = kc.current(path)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = cluster
            .certificate_authority_data
            .as_deref()
            .and_then(decode_data)
        {
            for cert in CertificateDer::pem_slice_iter(&ca) {
                roots.add(cert.context("certificate-authority-data is not PEM")?)?;
            }
        } else {
            bail!(
                "{}: the cluster has no certificate-authority-data",
                path.display()
            );
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let tls = match (
            user.client_certificate_data
                .as_deref()
                .and_then(decode_data),
            user.client_key_data
                .as_ref()
                .and_then(|k| decode_data(k.expose_secret())),
        ) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .context("client-certificate-data is not PEM")?;
                let key =
                    PrivateKeyDer::from_pem_slice(&key).context("client-key-data is not PEM")?;
                builder.with_client_auth_cert(chain, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &user.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!(
                "Bearer {}",
                token.expose_secret()
            ))
            .context("the kubeconfig token is not a valid header value")?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .default_headers(headers)
            .build()?;
        Ok(Client {
            http,
            base: cluster.server.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends a request and returns the JSON answer, or the API's `Status` as an error.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header("Accept", "application/json");
        if let Some((ct, bytes)) = body {
            req = req.header("Content-Type", ct).body(bytes);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&code) {
            return Ok(value);
        }
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        let reason = value
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_owned();
        Err(ApiFailure {
            code,
            reason,
            message,
        }
        .into())
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// GET returning JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.request(http::Method::GET, path, None).await
    }

    /// Every resource type the server serves (legacy discovery).
    pub async fn discover(&self) -> Result<Vec<ApiResource>> {
        let groups = self.get("/apis").await?;
        let mut out = Vec::new();
        for g in groups
            .get("groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(gv) = g
                .pointer("/preferredVersion/groupVersion")
                .and_then(Value::as_str)
            else {
                continue;
            };
            let list = self.get(&format!("/apis/{gv}")).await?;
            let (group, version) = gv.split_once('/').unwrap_or(("", gv));
            for r in list
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let plural = r.get("name").and_then(Value::as_str).unwrap_or_default();
                if plural.contains('/') {
                    continue;
                }
                out.push(ApiResource {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    plural: plural.to_owned(),
                    kind: r
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    singular: r
                        .get("singularName")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    namespaced: r
                        .get("namespaced")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    short_names: r
                        .get("shortNames")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect(),
                });
            }
        }
        Ok(out)
    }
}

/// Finds a resource type by what a user typed: plural, singular, kind or short name, optionally
/// qualified with `.group` — as kubectl resolves `get workspaces`, `get ws`, `get workspace.portcullis.dev`.
pub fn resolve<'a>(types: &'a [ApiResource], typed: &str) -> Result<&'a ApiResource> {
    let typed = typed.to_ascii_lowercase();
    let (name, group) = match typed.split_once('.') {
        Some((n, g)) => (n.to_owned(), Some(g.to_owned())),
        None => (typed.clone(), None),
    };
    types
        .iter()
        .find(|t| {
            group.as_deref().is_none_or(|g| t.group == g)
                && (t.plural == name
                    || t.singular == name
                    || t.kind.to_ascii_lowercase() == name
                    || t.short_names.contains(&name))
        })
        .ok_or_else(|| anyhow!("the server doesn't have a resource type {typed:?}"))
}

/// Finds a resource type by apiVersion and kind, as written in a manifest.
pub fn resolve_kind<'a>(
    types: &'a [ApiResource],
    api_version: &str,
    kind: &str,
) -> Result<&'a ApiResource> {
    types
        .iter()
        .find(|t| t.api_version() == api_version && t.kind == kind)
        .ok_or_else(|| anyhow!("no kind {kind:?} is registered for version {api_version:?}"))
}
