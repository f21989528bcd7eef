//! The cluster's API server behind the proxy: where it is, how it is trusted, and the proxy's
//! own credentials for it; one pooled client for ordinary requests (HTTP/2 when the server
//! offers it) and one HTTP/1.1 client for upgrades (exec, attach, port-forward).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine as _;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};

/// How long a token read from a file is used before the file is read again (bound service
/// account tokens are rotated by the kubelet; client-go rereads them every minute).
const TOKEN_FILE_REREAD: Duration = Duration::from_secs(60);
/// Largest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Errors configuring the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The kubeconfig could not be read or used.
    #[error("the upstream kubeconfig: {0}")]
    Kubeconfig(String),
    /// Not running in a pod, or its service account files are missing.
    #[error(
        "in-cluster configuration: {0} (run in a pod with a service account, or give the upstream as a kubeconfig)"
    )]
    InCluster(String),
    /// The TLS settings are unusable.
    #[error("the upstream's TLS settings: {0}")]
    Tls(String),
    /// The proxy's own credential is unusable.
    #[error("the proxy's credential for the upstream: {0}")]
    Credential(String),
}

/// The proxy's own credential for the upstream.
#[derive(Clone)]
pub enum Credential {
    /// A bearer token.
    Token(SecretString),
    /// A bearer token read from a file, and read again every minute (a projected service
    /// account token).
    TokenFile(PathBuf),
    /// A client certificate (sent in the TLS handshake).
    ClientCertificate,
    /// None (a test upstream that authorizes anonymous requests).
    None,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::TokenFile(p) => f.debug_tuple("TokenFile").field(p).finish(),
            Credential::ClientCertificate => f.write_str("ClientCertificate"),
            Credential::None => f.write_str("None"),
        }
    }
}

/// Where the upstream is and how to reach it.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// `https://host:port`, possibly with a path prefix.
    pub server: url::Url,
    /// The CAs that sign the server's certificate (PEM); the platform's roots are never used.
    pub ca_pem: Vec<u8>,
    /// The name the server's certificate must carry, when not the URL's host.
    pub tls_server_name: Option<String>,
    /// The proxy's credential.
    pub credential: Credential,
    /// The client certificate chain and key (PEM), for [`Credential::ClientCertificate`].
    pub client_identity: Option<(Vec<u8>, SecretString)>,
    /// Offer HTTP/2 to the upstream (ALPN). Off by default: a pooled HTTP/2 client keeps one
    /// connection per upstream, and every watch, `logs -f` and exec through the proxy holds
    /// one of its streams (kube-apiserver allows a bounded number per connection), so many
    /// users' long requests would queue behind each other; HTTP/1.1 gives each request its own
    /// pooled connection, as nginx does. Clients may use HTTP/2 to the proxy either way.
    pub http2: bool,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("server", &self.server.as_str())
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl UpstreamConfig {
    /// The context `context` (or the current one) of the kubeconfig at `path`: its server, CA,
    /// and a token, token file or client certificate. Exec plugins and basic auth are refused:
    /// the proxy needs a credential it can hold.
    ///
    /// # Errors
    ///
    /// [`UpstreamError::Kubeconfig`] naming what is missing or unreadable.
    pub async fn from_kubeconfig(
        path: &Path,
        context: Option<&str>,
    ) -> Result<UpstreamConfig, UpstreamError> {
        use kube_client::config::{Config, KubeConfigOptions, Kubeconfig};
        let err = |e: &dyn std::fmt::Display| {
            UpstreamError::Kubeconfig(format!("{}: {e}", path.display()))
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| err(&e))?;
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| err(&e))?;
        if config.accept_invalid_certs {
            return Err(err(
                &"insecure-skip-tls-verify is set; give the cluster's CA (certificate-authority-data) instead",
            ));
        }
        let server = url::Url::parse(&config.cluster_url.to_string()).map_err(|e| err(&e))?;
        let ca_pem = match &config.root_cert {
            Some(ders) => ders
                .iter()
                .map(|der| pem_encode("CERTIFICATE", der))
                .collect::<String>()
                .into_bytes(),
            None => {
                return Err(err(
                    &"the cluster has no certificate-authority(-data); the proxy trusts only the cluster's own CA",
                ));
            }
        };
        let auth = &config.auth_info;
        let cert = read_data_or_file(
            auth.client_certificate_data.as_deref(),
            auth.client_certificate.as_deref(),
        )
        .map_err(|e| err(&e))?;
        let key = match (&auth.client_key_data, &auth.client_key) {
            (Some(data), _) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data.expose_secret().trim())
                    .map_err(|e| err(&format!("client-key-data: {e}")))?,
            ),
            (None, Some(file)) => {
                Some(std::fs::read(file).map_err(|e| err(&format!("client-key {file}: {e}")))?)
            }
            (None, None) => None,
        };
        let (credential, client_identity) = if let Some(token) = &auth.token {
            (Credential::Token(token.clone()), None)
        } else if let Some(file) = &auth.token_file {
            (Credential::TokenFile(PathBuf::from(file)), None)
        } else if let (Some(cert), Some(key)) = (cert, key) {
            let key = String::from_utf8(key).map_err(|_| err(&"the client key is not PEM"))?;
            (
                Credential::ClientCertificate,
                Some((cert, SecretString::from(key))),
            )
        } else {
            return Err(err(
                &"the user has no token, token file or client certificate (exec plugins and basic auth are not used by the proxy)",
            ));
        };
        Ok(UpstreamConfig {
            server,
            ca_pem,
            tls_server_name: config.tls_server_name,
            credential,
            client_identity,
            http2: false,
        })
    }

    /// The cluster the proxy runs in: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's
    /// CA and its token file (reread every minute).
    ///
    /// # Errors
    ///
    /// [`UpstreamError::InCluster`] outside a pod.
    pub fn in_cluster() -> Result<UpstreamConfig, UpstreamError> {
        let config = kube_client::Config::incluster()
            .map_err(|e| UpstreamError::InCluster(e.to_string()))?;
        let server = url::Url::parse(&config.cluster_url.to_string())
            .map_err(|e| UpstreamError::InCluster(e.to_string()))?;
        let ca_pem = config
            .root_cert
            .unwrap_or_default()
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der))
            .collect::<String>()
            .into_bytes();
        let token_file = config
            .auth_info
            .token_file
            .ok_or_else(|| UpstreamError::InCluster("no service account token file".into()))?;
        Ok(UpstreamConfig {
            server,
            ca_pem,
            tls_server_name: config.tls_server_name,
            credential: Credential::TokenFile(PathBuf::from(token_file)),
            client_identity: None,
            http2: false,
        })
    }
}

fn read_data_or_file(data: Option<&str>, file: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    match (data, file) {
        (Some(data), _) => base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map(Some)
            .map_err(|e| format!("client-certificate-data: {e}")),
        (None, Some(file)) => std::fs::read(file)
            .map(Some)
            .map_err(|e| format!("client-certificate {file}: {e}")),
        (None, None) => Ok(None),
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Body>;

/// A connected upstream: the two clients and the credential.
pub struct Upstream {
    server: url::Url,
    /// The server's scheme and authority, when its URL has no path: a request's URI is then
    /// made from them and the request's own path and query, with nothing parsed again.
    origin: Option<(http::uri::Scheme, http::uri::Authority)>,
    pooled: HttpsClient,
    upgrades: HttpsClient,
    credential: Credential,
    token_file_cache: Mutex<Option<(Instant, HeaderValue)>>,
    /// The `Authorization` value of a fixed token, made once (it is sent with every request).
    fixed_authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("server", &self.server.as_str())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Clients for `config`: TLS with the upstream's CA only (and the client certificate if
    /// any), connections pooled (idle ones closed after 90 s), TCP connect bounded to 10 s;
    /// HTTP/1.1, or HTTP/2 when `config.http2` and the server offers it.
    ///
    /// # Errors
    ///
    /// [`UpstreamError::Tls`] for an unusable CA or client certificate.
    pub fn new(config: UpstreamConfig) -> Result<Arc<Upstream>, UpstreamError> {
        // ALPN is set by the connector builder (h2 and http/1.1, or http/1.1 for upgrades).
        let tls = || -> Result<rustls::ClientConfig, UpstreamError> {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&config.ca_pem) {
                let cert = cert.map_err(|e| UpstreamError::Tls(format!("CA: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| UpstreamError::Tls(format!("CA: {e}")))?;
            }
            if roots.is_empty() {
                return Err(UpstreamError::Tls(
                    "no CA certificate for the upstream".into(),
                ));
            }
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| UpstreamError::Tls(e.to_string()))?
                .with_root_certificates(roots);
            let tls = match &config.client_identity {
                Some((cert, key)) => {
                    let chain = CertificateDer::pem_slice_iter(cert)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| UpstreamError::Tls(format!("client certificate: {e}")))?;
                    let key = PrivateKeyDer::from_pem_slice(key.expose_secret().as_bytes())
                        .map_err(|e| UpstreamError::Tls(format!("client key: {e}")))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| UpstreamError::Tls(format!("client certificate: {e}")))?
                }
                None => builder.with_no_client_auth(),
            };
            Ok(tls)
        };
        let connector = |tls: rustls::ClientConfig, h2: bool| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(Duration::from_secs(10)));
            http.set_nodelay(true);
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only();
            let builder = match &config.tls_server_name {
                Some(name) => builder.with_server_name_resolver(FixedServerName(name.clone())),
                None => builder,
            };
            if h2 {
                builder.enable_http1().enable_http2().wrap_connector(http)
            } else {
                builder.enable_http1().wrap_connector(http)
            }
        };
        let client = |connector, http2: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(90))
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new());
            if http2 {
                b.http2_adaptive_window(true);
            }
            b.build(connector)
        };
        let pooled = client(connector(tls()?, config.http2), config.http2);
        let upgrades = client(connector(tls()?, false), false);
        let fixed_authorization = match &config.credential {
            Credential::Token(token) => {
                Some(bearer(token.expose_secret()).map_err(UpstreamError::Credential)?)
            }
            _ => None,
        };
        let origin = if config.server.path().trim_end_matches('/').is_empty()
            && config.server.query().is_none()
        {
            let base = config.server.as_str().trim_end_matches('/');
            http::Uri::try_from(base)
                .ok()
                .and_then(|u| Some((u.scheme()?.clone(), u.authority()?.clone())))
        } else {
            None
        };
        Ok(Arc::new(Upstream {
            fixed_authorization,
            origin,
            server: config.server,
            pooled,
            upgrades,
            credential: config.credential,
            token_file_cache: Mutex::new(None),
        }))
    }

    /// The upstream URL of a request path and query.
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        let base = self.server.as_str().trim_end_matches('/');
        Ok(http::Uri::try_from(format!("{base}{path_and_query}"))?)
    }

    /// The upstream URL of a request's path and query (`/` when it has none).
    ///
    /// # Errors
    ///
    /// The joined URL is not a valid URI.
    pub fn uri_of(
        &self,
        path_and_query: Option<&http::uri::PathAndQuery>,
    ) -> Result<http::Uri, http::Error> {
        match (&self.origin, path_and_query) {
            (Some((scheme, authority)), Some(pq)) => http::Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query(pq.clone())
                .build(),
            (_, pq) => self.uri(pq.map_or("/", http::uri::PathAndQuery::as_str)),
        }
    }

    /// The server's URL.
    pub fn server(&self) -> &url::Url {
        &self.server
    }

    /// The `Authorization` header of the proxy's own credential, if it is a token.
    ///
    /// # Errors
    ///
    /// A message when the token file cannot be read.
    pub fn authorization(&self) -> Result<Option<HeaderValue>, String> {
        match &self.credential {
            Credential::Token(_) => Ok(self.fixed_authorization.clone()),
            Credential::TokenFile(path) => {
                let mut cache = self
                    .token_file_cache
                    .lock()
                    .map_err(|_| "token cache poisoned".to_owned())?;
                if let Some((read, value)) = cache.as_ref()
                    && read.elapsed() < TOKEN_FILE_REREAD
                {
                    return Ok(Some(value.clone()));
                }
                let token = read_token_file(path)?;
                let value = bearer(token.expose_secret())?;
                *cache = Some((Instant::now(), value.clone()));
                Ok(Some(value))
            }
            Credential::ClientCertificate | Credential::None => Ok(None),
        }
    }

    /// Sends a request (its URI already the upstream's) on the pooled client, or on the
    /// HTTP/1.1 client when it asks for an upgrade.
    ///
    /// # Errors
    ///
    /// hyper's client error (connect, TLS, protocol).
    pub async fn send(
        &self,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        if upgrade {
            self.upgrades.request(req).await
        } else {
            self.pooled.request(req).await
        }
    }
}

impl Upstream {
    /// The proxy's own call to the API server: `method` on `path` with a JSON body (or none),
    /// with its credential, answered within `timeout`; the answer's JSON, read up to
    /// `max_bytes`. Errors name the request and, for a refusal, the start of the answer.
    ///
    /// # Errors
    ///
    /// No answer, a non-2xx answer, a body too large or not JSON.
    pub async fn call_json(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        use http_body_util::BodyExt as _;
        let what = format!("{method} {path}");
        let uri = self.uri(path).map_err(|e| format!("{what}: {e}"))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json");
        let body = match body {
            Some(json) => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let mut req = builder.body(body).map_err(|e| format!("{what}: {e}"))?;
        if let Some(auth) = self.authorization()? {
            req.headers_mut().insert(http::header::AUTHORIZATION, auth);
        }
        let response = tokio::time::timeout(timeout, self.send(req, false))
            .await
            .map_err(|_| format!("{what}: no answer within {} s", timeout.as_secs()))?
            .map_err(|e| format!("{what}: {e}"))?;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| format!("{what}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{what}: HTTP {status}: {}",
                String::from_utf8_lossy(bytes.get(..bytes.len().min(512)).unwrap_or_default())
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{what}: {e}"))
    }
}

fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "the proxy's token is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

fn read_token_file(path: &Path) -> Result<SecretString, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// The TLS server name of a `tls-server-name` setting, whatever host the URL names.
#[derive(Debug, Clone)]
struct FixedServerName(String);

impl hyper_rustls::ResolveServerName for FixedServerName {
    fn resolve(
        &self,
        _uri: &http::Uri,
    ) -> Result<rustls_pki_types::ServerName<'static>, Box<dyn std::error::Error + Sync + Send>>
    {
        Ok(rustls_pki_types::ServerName::try_from(self.0.clone())?)
    }
}
