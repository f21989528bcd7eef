//! `portcullis agent`: the process of an attached cluster. It serves the cluster's API proxy
//! (the management issuer's tokens in, impersonation out) and the TokenReview webhook; it holds
//! no user credentials and has no login page.
//!
//! Readiness (`/readyz`) turns true once the issuer's discovery document and keys have been
//! fetched; until then (an unreachable issuer) the agent keeps running, retries in the
//! background, and client certificates of the break-glass CA still work.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::response::IntoResponse;
use axum::routing::get;
use http::StatusCode;
use portcullis_authn::chain::Chain;
use portcullis_authn::chain::metrics::Metrics;
use portcullis_authn::config::AuthenticationConfiguration;
use portcullis_authn::{
    Authenticator, AuthenticatorChain, ClientCertificate, JwtAuthenticator, LegacyOidcFlags,
    ReloadingJwtAuthenticator,
};
use portcullis_kube_proxy::token_review::TokenReviewer;
use portcullis_kube_proxy::{Proxy, ProxyConfig, Upstream, UpstreamConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::AuditConfig;

/// The agent's configuration: built-in defaults, the file (`--config`, YAML), then
/// `PORTCULLIS_*` variables and flags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AgentConfig {
    /// This cluster's name in the fleet (the default audience of the tokens it accepts).
    pub cluster: String,
    /// The management issuer.
    pub issuer: IssuerConfig,
    /// Audiences (`aud`) a token must carry one of; the cluster name when empty. A token
    /// minted for another cluster is refused (USER-ASKS 16).
    pub audiences: Vec<String>,
    /// An `AuthenticationConfiguration` file (apiserver.config.k8s.io v1 or v1beta1) to use
    /// instead of `issuer` and `audiences`: several issuers, CEL mappings; reloaded on change.
    pub authentication_config: Option<PathBuf>,
    /// The cluster's API server and the agent's credential for it.
    pub upstream: UpstreamSource,
    /// Address the HTTPS listener binds.
    pub listen: SocketAddr,
    /// Directory for the generated serving certificate (when none is given).
    pub data_dir: PathBuf,
    /// Extra names and addresses for a generated serving certificate.
    pub hosts: Vec<String>,
    /// The serving certificate chain and key (PEM files); generated in `dataDir` when absent.
    pub serving_certificate: Option<ServingCertificate>,
    /// CA (PEM file) whose client certificates are accepted (break-glass access that does not
    /// depend on the issuer); none when absent.
    pub client_ca_file: Option<PathBuf>,
    /// Whether `POST /apis/authentication.k8s.io/{v1,v1beta1}/tokenreviews` answers as a
    /// TokenReview webhook for the issuer's tokens (instead of being forwarded).
    pub token_review_webhook: bool,
    /// Largest request body forwarded, in bytes.
    pub max_body_bytes: u64,
    /// Seconds the upstream may take to send a response head.
    pub upstream_timeout_seconds: u64,
    /// Most read-only requests forwarded at once (watches, logs, exec not counted; 0: no
    /// limit), across every worker.
    pub max_requests_in_flight: usize,
    /// Most mutating requests forwarded at once (0: no limit).
    pub max_mutating_requests_in_flight: usize,
    /// Audit log of the proxied requests (off when absent).
    pub audit: Option<AuditConfig>,
    /// Seconds that in-flight requests get to finish on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Threads serving connections, each with its own pool of upstream connections (0: one
    /// per CPU core). Connections are spread over them round-robin, as over nginx's workers.
    pub workers: usize,
    /// Forward auth for this cluster's web UIs (off when absent): logins at the management
    /// issuer, path RBAC over this cluster's ClusterRoles and ClusterRoleBindings (read from its
    /// API server every few seconds), sessions in `dataDir`. Its issuer and CA default to the
    /// agent's.
    pub forward_auth: Option<portcullis_forward_auth::Config>,
    /// Pull mode (off when absent): this cluster's desired RBAC is read from the management
    /// plane with the credential `cluster attach --pull` issued, and applied here with the
    /// upstream credentials, for clusters the management plane cannot reach.
    pub pull: Option<crate::pull::PullConfig>,
}

/// The management issuer as the agent trusts it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IssuerConfig {
    /// The issuer URL (`iss`), e.g. `https://portcullis.example.com`.
    pub url: String,
    /// CA bundle (PEM file) for the issuer's HTTPS; the system's roots when absent.
    pub certificate_authority: Option<PathBuf>,
    /// The claim naming the user (`email`, as the management API maps it).
    pub username_claim: String,
    /// The claim listing groups.
    pub groups_claim: String,
    /// Prefix of group names (`oidc:`, as on the management API).
    pub groups_prefix: String,
}

/// Where the cluster's API server and the agent's credentials come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UpstreamSource {
    /// A kubeconfig; in-cluster (the pod's service account) when absent.
    pub kubeconfig: Option<PathBuf>,
    /// Its context; the current one when absent.
    pub context: Option<String>,
    /// Offer HTTP/2 to the API server. Off by default: over one pooled HTTP/2 connection every
    /// watch, `logs -f` and exec holds a stream, and the server bounds the streams of a
    /// connection; HTTP/1.1 gives each request a pooled connection of its own.
    pub http2: bool,
}

/// A serving certificate from files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServingCertificate {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
}

// The documented defaults also when a config file names only some of `issuer`'s keys (a
// derived Default would leave the claims empty, and the agent refuse to start).
impl Default for IssuerConfig {
    fn default() -> IssuerConfig {
        IssuerConfig {
            url: String::new(),
            certificate_authority: None,
            username_claim: "email".into(),
            groups_claim: "groups".into(),
            groups_prefix: "oidc:".into(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        let proxy = ProxyConfig::default();
        AgentConfig {
            cluster: String::new(),
            issuer: IssuerConfig::default(),
            audiences: Vec::new(),
            authentication_config: None,
            upstream: UpstreamSource::default(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            data_dir: PathBuf::from("portcullis-agent"),
            hosts: Vec::new(),
            serving_certificate: None,
            client_ca_file: None,
            token_review_webhook: true,
            max_body_bytes: proxy.max_body_bytes,
            upstream_timeout_seconds: proxy.response_header_timeout.as_secs(),
            max_requests_in_flight: 400,
            max_mutating_requests_in_flight: 200,
            audit: None,
            shutdown_grace_seconds: 10,
            workers: 0,
            forward_auth: None,
            pull: None,
        }
    }
}

impl AgentConfig {
    /// Reads a YAML file over the defaults.
    ///
    /// # Errors
    ///
    /// Unreadable file, or a field that is unknown or of the wrong type (named).
    pub fn from_file(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the agent configuration {}", path.display()))?;
        serde_saphyr::from_str(&text)
            .with_context(|| format!("the agent configuration {}", path.display()))
    }

    fn audiences(&self) -> Vec<String> {
        if self.audiences.is_empty() {
            vec![self.cluster.clone()]
        } else {
            self.audiences.clone()
        }
    }

    fn validate(&self) -> Result<()> {
        if self.authentication_config.is_none() {
            anyhow::ensure!(
                !self.issuer.url.is_empty(),
                "the agent needs the management issuer: --issuer-url https://… (or an authenticationConfig file)"
            );
            anyhow::ensure!(
                !self.cluster.is_empty() || !self.audiences.is_empty(),
                "the agent needs this cluster's name (--cluster NAME), the audience its tokens carry, or --audience"
            );
        }
        Ok(())
    }
}

/// A running agent.
pub struct RunningAgent {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// `https://…` of the listener.
    pub url: String,
    /// The CA of a generated serving certificate (for clients to trust), if generated.
    pub ca_path: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    _reloader: Option<Arc<ReloadingJwtAuthenticator>>,
}

impl std::fmt::Debug for RunningAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAgent")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RunningAgent {
    /// Stops accepting, lets requests in flight finish (within the grace period), stops.
    ///
    /// # Errors
    ///
    /// The accept loop's error.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for task in &self.background {
            task.abort();
        }
        (&mut self.task).await.context("the agent's accept loop")?
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for task in &self.background {
            task.abort();
        }
    }
}

/// The JWT authenticator in use now (a reloaded configuration replaces it).
type CurrentJwt = Arc<dyn Fn() -> Arc<JwtAuthenticator> + Send + Sync>;

/// Starts the agent and returns once it listens (before the issuer is reached: readiness
/// says when it has been).
///
/// # Errors
///
/// Invalid configuration, unreadable files, a port that cannot be bound.
pub async fn start_agent(config: AgentConfig) -> Result<RunningAgent> {
    config.validate()?;
    let upstream_config = match &config.upstream.kubeconfig {
        Some(path) => UpstreamConfig::from_kubeconfig(path, config.upstream.context.as_deref())
            .await
            .context("the upstream API server")?,
        None => UpstreamConfig::in_cluster().context("the upstream API server")?,
    };
    let mut upstream_config = upstream_config;
    upstream_config.http2 = config.upstream.http2;
    // One upstream client (and so one connection pool) per worker thread: a request is
    // forwarded on a connection of its own thread.
    let workers = crate::listen::worker_count(config.workers);
    let upstream = Upstream::new(upstream_config.clone()).context("the upstream API server")?;
    let mut upstreams = vec![upstream.clone()];
    for _ in 1..workers {
        upstreams.push(Upstream::new(upstream_config.clone()).context("the upstream API server")?);
    }

    // Authentication: the issuer's tokens (a file of AuthenticationConfiguration, or the
    // issuer shortcut), then break-glass client certificates.
    let (jwt, reloader, current): (Arc<dyn Authenticator>, _, CurrentJwt) = match &config
        .authentication_config
    {
        Some(path) => {
            let reloading = Arc::new(
                ReloadingJwtAuthenticator::start(
                    path,
                    JwtAuthenticator::discovery_key_sources(),
                    Duration::from_secs(10),
                )
                .with_context(|| format!("the authentication configuration {}", path.display()))?,
            );
            let handle = reloading.clone();
            let current: CurrentJwt = Arc::new(move || handle.current());
            (reloading.clone(), Some(reloading), current)
        }
        None => {
            let authn = Arc::new(
                JwtAuthenticator::new(
                    &issuer_configuration(&config)?,
                    &JwtAuthenticator::discovery_key_sources(),
                )
                .context("the issuer's token authentication")?,
            );
            let handle = authn.clone();
            let current: CurrentJwt = Arc::new(move || handle.clone());
            (authn, None, current)
        }
    };
    let mut authenticator = AuthenticatorChain::new();
    if let Some(ca) = &config.client_ca_file {
        let pem =
            std::fs::read(ca).with_context(|| format!("reading the client CA {}", ca.display()))?;
        authenticator = authenticator.with(Arc::new(
            ClientCertificate::from_pem(&pem).context("the client CA")?,
        ));
    }
    authenticator = authenticator.with(jwt.clone());

    let metrics = Arc::new(Metrics::default());
    let audit = crate::serve::open_audit(config.audit.as_ref(), &metrics)?;
    let chain = Chain {
        authenticator,
        // The proxy authorizes nothing itself (the cluster does); this authorizer is never
        // asked on the forwarding chain.
        authorizer: Arc::new(
            |_: &portcullis_rbac::Attributes| portcullis_rbac::Decision {
                allowed: false,
                reason: String::new(),
            },
        ),
        anonymous: false,
        audit,
        metrics: metrics.clone(),
        max_read_only: config.max_requests_in_flight,
        max_mutating: config.max_mutating_requests_in_flight,
    };
    let proxy_config = ProxyConfig {
        max_body_bytes: config.max_body_bytes,
        response_header_timeout: Duration::from_secs(config.upstream_timeout_seconds),
    };

    // The routes beside the proxy, shared by every worker.
    let mut router = axum::Router::new();
    let mut background = Vec::new();
    if let Some(pull) = &config.pull {
        let upstream = crate::pull::upstream_config(
            config.upstream.kubeconfig.as_deref(),
            config.upstream.context.as_deref(),
        )
        .await?;
        let puller = crate::pull::Puller::start(&config.cluster, pull, upstream)
            .await
            .context("pull mode")?;
        background.push(puller.task);
    }
    if let Some(fa) = &config.forward_auth {
        let (fa_router, tasks) = forward_auth(&config, fa, upstream.clone()).await?;
        router = router.merge(fa_router);
        background.extend(tasks);
    }
    if config.token_review_webhook {
        router = router.merge(portcullis_kube_proxy::token_review::router(TokenReviewer {
            authenticator: jwt.clone(),
            audiences: config.audiences(),
        }));
    }
    let health_ready = current.clone();
    let metrics_route = metrics.clone();
    router = router
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = health_ready.clone();
                async move {
                    if ready().ready() {
                        (StatusCode::OK, "ok").into_response()
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "[-]issuer: the issuer's discovery document and keys have not been fetched yet\nreadyz check failed\n",
                        )
                            .into_response()
                    }
                }
            }),
        )
        .route(
            "/portcullis/metrics",
            get(move || {
                let m = metrics_route.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
                        m.render(),
                    )
                }
            }),
        );
    // Each worker's router: the proxy on that worker's upstream connections, then the shared
    // routes.
    let routers = upstreams
        .into_iter()
        .map(|upstream| {
            Proxy::new(proxy_config.clone(), upstream, metrics.clone())
                .router(&chain)
                .merge(router.clone())
        })
        .map(|router| crate::listen::Served::measured(router, &metrics))
        .collect();

    let (tls, ca_path) = serving_tls(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let url = format!("https://{local_addr}");

    // The issuer's keys, fetched in the background until had: an unreachable issuer neither
    // stops the agent nor certificate authentication.
    background.push(tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            let jwt = current();
            for e in jwt.prefetch_keys().await {
                tracing::warn!(error = %e, "fetching the issuer's keys; retrying");
            }
            if jwt.ready() {
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        tracing::info!("the issuer's keys are fetched; ready");
    }));

    let (tx, rx) = oneshot::channel();
    let (stopping, _) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(crate::listen::accept_loop(
        listener,
        tls,
        crate::listen::Routers::PerWorker(routers),
        metrics,
        rx,
        stopping,
        Duration::from_secs(config.shutdown_grace_seconds),
    ));
    tracing::info!(%url, cluster = %config.cluster, "agent listening");
    Ok(RunningAgent {
        local_addr,
        url,
        ca_path,
        shutdown: Some(tx),
        task,
        background,
        _reloader: reloader,
    })
}

/// Forward auth on the agent: the cluster's RBAC kept in step by relisting, sessions in an
/// embedded store in the data directory.
async fn forward_auth(
    agent: &AgentConfig,
    config: &portcullis_forward_auth::Config,
    upstream: Arc<Upstream>,
) -> Result<(axum::Router, Vec<tokio::task::JoinHandle<()>>)> {
    let mut config = config.clone();
    if config.issuer.is_empty() {
        config.issuer = agent.issuer.url.clone();
    }
    if config.issuer_ca.is_none()
        && let Some(path) = &agent.issuer.certificate_authority
    {
        config.issuer_ca = Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the issuer's CA {}", path.display()))?,
        );
    }
    std::fs::create_dir_all(&agent.data_dir)
        .with_context(|| format!("creating the data directory {}", agent.data_dir.display()))?;
    let path = agent.data_dir.join("agent.redb");
    let store: Arc<dyn portcullis_store::Store> = Arc::new(
        portcullis_store::redb::RedbStore::open_with_history(&path, 1000)
            .with_context(|| format!("opening the store {}", path.display()))?,
    );
    let key = crate::secrets::load_or_create(&agent.data_dir)?;
    let authorizer = Arc::new(crate::rbac::RbacAuthorizer::default());
    let sync = tokio::spawn(cluster_rbac::sync(upstream, authorizer.clone()));
    let fa = portcullis_forward_auth::ForwardAuth::new(
        config,
        portcullis_forward_auth::Dependencies {
            authorizer,
            store,
            encryption_key: key.0,
            keys: JwtAuthenticator::discovery_key_sources(),
            tls: true,
            clock: None,
        },
    )
    .await
    .context("forwardAuth")?;
    let maintenance = tokio::spawn(fa.clone().run_maintenance());
    Ok((fa.router(), vec![sync, maintenance]))
}

/// The cluster's ClusterRoles and ClusterRoleBindings (what path RBAC reads:
/// `nonResourceURLs`), relisted through the agent's own credential.
mod cluster_rbac {
    use std::sync::Arc;
    use std::time::Duration;

    use portcullis_kube_proxy::Upstream;
    use portcullis_rbac::Policy;
    use serde_json::Value;

    use crate::rbac::RbacAuthorizer;

    /// How often the lists are read again.
    const RELIST: Duration = Duration::from_secs(5);
    /// Largest list read (10,000 bindings are about 10 MB).
    const MAX_LIST_BYTES: usize = 256 * 1024 * 1024;

    /// Keeps `authorizer` in step with the cluster for ever. Until the first lists arrive the
    /// policy is empty (everything denied); a failed relist keeps the last policy.
    pub(super) async fn sync(upstream: Arc<Upstream>, authorizer: Arc<RbacAuthorizer>) {
        let mut installed: Option<(String, String)> = None;
        let mut delay = Duration::from_millis(200);
        loop {
            match load(&upstream).await {
                Ok((policy, versions)) => {
                    if installed.as_ref() != Some(&versions) {
                        authorizer.install(policy, 0);
                        installed = Some(versions);
                    }
                    delay = RELIST;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the cluster's RBAC for forward auth; keeping the last policy");
                    delay = (delay * 2).min(RELIST);
                }
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn load(upstream: &Upstream) -> Result<(Policy, (String, String)), String> {
        let mut policy = Policy::default();
        let mut versions = Vec::new();
        for (resource, kind) in [
            ("clusterroles", "ClusterRole"),
            ("clusterrolebindings", "ClusterRoleBinding"),
        ] {
            let list = upstream
                .call_json(
                    http::Method::GET,
                    &format!("/apis/rbac.authorization.k8s.io/v1/{resource}"),
                    None,
                    MAX_LIST_BYTES,
                    Duration::from_secs(60),
                )
                .await?;
            versions.push(
                list.pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            );
            let Some(items) = list.get("items").and_then(Value::as_array) else {
                return Err(format!("the {resource} list has no items"));
            };
            for item in items {
                let Some(mut object) = item.as_object().cloned() else {
                    tracing::warn!("a {kind} that is not an object ignored");
                    continue;
                };
                object.insert(
                    "apiVersion".into(),
                    Value::from("rbac.authorization.k8s.io/v1"),
                );
                object.insert("kind".into(), Value::from(kind));
                if let Err(e) = policy.add_object(Value::Object(object)) {
                    tracing::warn!(error = %e, "{kind} ignored");
                }
            }
        }
        policy.aggregate();
        let [roles, bindings]: [String; 2] = versions
            .try_into()
            .map_err(|_| "two lists expected".to_owned())?;
        Ok((policy, (roles, bindings)))
    }
}

/// The issuer shortcut as an `AuthenticationConfiguration`: the management API's mapping
/// (username from `email`, groups from `groups` prefixed `oidc:`) for this cluster's audiences.
fn issuer_configuration(config: &AgentConfig) -> Result<AuthenticationConfiguration> {
    let ca_pem = match &config.issuer.certificate_authority {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the issuer's CA {}", path.display()))?,
        ),
        None => None,
    };
    let audiences = config.audiences();
    let mut authn = LegacyOidcFlags {
        issuer_url: config.issuer.url.clone(),
        client_id: audiences.first().cloned().unwrap_or_default(),
        username_claim: Some(config.issuer.username_claim.clone()),
        username_prefix: None,
        groups_claim: Some(config.issuer.groups_claim.clone()),
        groups_prefix: Some(config.issuer.groups_prefix.clone()),
        required_claims: Vec::new(),
        ca_pem,
    }
    .to_configuration()
    .context("the issuer settings")?;
    for jwt in &mut authn.jwt {
        jwt.issuer.audiences = audiences.clone();
        if audiences.len() > 1 {
            jwt.issuer.audience_match_policy = Some("MatchAny".into());
        }
    }
    Ok(authn)
}

/// The listener's TLS: the configured certificate, or one generated in the data directory;
/// client certificates of the break-glass CA verified when one is configured.
fn serving_tls(config: &AgentConfig) -> Result<(Arc<rustls::ServerConfig>, Option<PathBuf>)> {
    let (chain, key, ca_path) = match &config.serving_certificate {
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert_file)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| format!("reading {}", files.cert_file.display()))?;
            let key = PrivateKeyDer::from_pem_file(&files.key_file)
                .with_context(|| format!("reading {}", files.key_file.display()))?;
            (chain, key, None)
        }
        None => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
            let mut hosts = config.hosts.clone();
            hosts.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
            if !config.listen.ip().is_unspecified() {
                hosts.push(config.listen.ip().to_string());
            }
            let pki = crate::pki::load_or_create(&config.data_dir, &hosts)?;
            (
                vec![pki.serving.cert_der()?, pki.ca.cert_der()?],
                pki.serving.key_der()?,
                Some(pki.ca_path),
            )
        }
    };
    let client_ca = match &config.client_ca_file {
        Some(path) => Some(
            CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| format!("reading the client CA {}", path.display()))?,
        ),
        None => None,
    };
    Ok((
        crate::tls::server_config_with(chain, key, client_ca)?,
        ca_path,
    ))
}
