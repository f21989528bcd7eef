//! Starting and stopping the management plane: data directory, PKI, store, TLS listener,
//! graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use portcullis_store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use portcullis_authn::chain::Chain;
use portcullis_authn::chain::audit::{AuditLog, Policy as AuditPolicy};
use portcullis_authn::chain::metrics::Metrics;
use portcullis_authn::{
    AuthenticatorChain, ClientCertificate, JwtAuthenticator, KeySource, KeySourceFactory,
    LegacyOidcFlags, StaticKeys,
};

use crate::api::{self, AppState, Limits};
use crate::config::{Config, StoreConfig};
use crate::kubeconfig::Kubeconfig;
use crate::{kinds, pki, tls};

/// A running management plane.
pub struct Running {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// Public URL (`https://…`), also the OIDC issuer.
    pub url: String,
    /// Path of the CA certificate that clients must trust.
    pub ca_path: PathBuf,
    /// Path of the admin kubeconfig.
    pub admin_kubeconfig: PathBuf,
    /// True when this start created `admin.conf`.
    pub admin_kubeconfig_created: bool,
    /// The OpenID provider (issuer) of this management plane.
    pub provider: portcullis_oidc::Provider,
    /// The static admin's password when this start created the account (shown once; also
    /// written to `admin-password` in the data directory, mode 0600).
    pub admin_password: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<()>>,
    /// The federation controller's state.
    federation: Arc<crate::federation::Federation>,
    /// Delivery to the attached clusters (its reconciler stops when this is dropped).
    #[allow(dead_code)]
    delivery: Arc<crate::delivery::Delivery>,
    /// Background loops (key rotation, …), stopped at shutdown.
    background: Vec<JoinHandle<()>>,
    /// What the API's handlers share, for the chain's benchmark.
    #[cfg(feature = "bench-internals")]
    pub(crate) state: AppState,
}

impl Running {
    /// Every change the federation planner makes to the fleet's desired RBAC from now on, for
    /// delivery to the clusters.
    pub fn subscribe_deltas(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<portcullis_federation::Delta>> {
        self.federation.subscribe()
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and returns.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for b in &self.background {
            b.abort();
        }
        self.task.await.context("server task panicked")?
    }
}

/// Opens the configured store.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    Ok(match &config.store {
        StoreConfig::Memory => Arc::new(portcullis_store::memory::MemoryStore::with_history(
            usize::try_from(config.watch_history).unwrap_or(usize::MAX),
        )),
        StoreConfig::Redb => {
            let path = config.data_dir.join("portcullis.redb");
            Arc::new(
                portcullis_store::redb::RedbStore::open_with_history(&path, config.watch_history)
                    .with_context(|| format!("opening the store {}", path.display()))?,
            )
        }
        #[cfg(feature = "etcd")]
        StoreConfig::Etcd { endpoints, prefix } => Arc::new(
            portcullis_store::etcd::EtcdStore::connect(endpoints, prefix)
                .await
                .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?,
        ),
        #[cfg(not(feature = "etcd"))]
        StoreConfig::Etcd { .. } => anyhow::bail!(
            "this build has no etcd support; build with `cargo build --release --features etcd` (needs protoc: apt-get install protobuf-compiler)"
        ),
    })
}

/// Starts the management plane and returns once it listens.
pub async fn start(config: Config) -> Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let url = config.public_url(local_addr);

    let mut hosts = config.hosts.clone();
    if let Some(host) = url::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    {
        hosts.push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
    }
    let pki = pki::load_or_create(&config.data_dir, &hosts)?;
    let admin_kubeconfig = config.data_dir.join("admin.conf");
    let admin_kubeconfig_created = !admin_kubeconfig.exists();
    if admin_kubeconfig_created {
        let cert = pki::issue_client(&pki.ca, pki::ADMIN_USER, &[pki::ADMINS_GROUP], 365)?;
        Kubeconfig::with_client_cert("portcullis", &url, &pki.ca.cert_pem, pki::ADMIN_USER, &cert)
            .write_private(&admin_kubeconfig)?;
    }
    let tls_config = tls::server_config(&pki)?;
    let encryption_key = crate::secrets::load_or_create(&config.data_dir)?;
    let store = open_store(&config).await?;
    let provider = portcullis_oidc::Provider::new(
        config
            .oidc
            .provider_config(&url)
            .map_err(anyhow::Error::msg)?,
        store.clone(),
        encryption_key.0,
    )
    .await
    .context("starting the OpenID provider")?;
    let rotation = tokio::spawn(provider.clone().run_key_rotation());
    let maintenance = tokio::spawn(provider.clone().run_maintenance());
    let admin_password = ensure_static_admin(&*store, &config.data_dir)
        .await
        .context("creating the static admin")?;
    crate::rbac::bootstrap(&*store)
        .await
        .context("creating the bootstrap RBAC roles and bindings")?;
    crate::federation::defaults::bootstrap(&*store)
        .await
        .context("creating the global default roles")?;
    let (federation, federation_revision, pending_defaults) =
        crate::federation::Federation::load(&*store)
            .await
            .context("loading the federation model")?;
    // Delivery hears every plan from the first change on: started before the controller.
    let mut metrics = Metrics::default();
    let delivery_metrics =
        portcullis_federation::delivery::DeliveryMetrics::register(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let (delivery, delivery_tasks) = crate::delivery::Delivery::start(
        &config.delivery,
        store.clone(),
        provider.clone(),
        federation.plan(),
        Some(delivery_metrics),
    )
    .await?;
    federation.set_sink(delivery.clone());
    let federation_sync = tokio::spawn(crate::federation::run(
        store.clone(),
        federation.clone(),
        federation_revision,
        pending_defaults,
    ));
    let authorizer = Arc::new(crate::rbac::RbacAuthorizer::with_fleet(
        federation.fleet().clone(),
    ));
    let (policy, revision) = crate::rbac::load(&*store)
        .await
        .context("loading the RBAC policy")?;
    authorizer.install(policy, revision);
    let rbac_sync = tokio::spawn(crate::rbac::sync(
        store.clone(),
        authorizer.clone(),
        revision,
    ));
    // Connector objects become the issuer's connectors (LDAP/AD), now and on every change.
    let mut connector_cache = crate::connectors::Cache::default();
    let connectors_revision = crate::connectors::reload(&store, &provider, &mut connector_cache)
        .await
        .context("loading the connectors")?;
    let connectors_sync = tokio::spawn(crate::connectors::sync(
        store.clone(),
        provider.clone(),
        connectors_revision,
        connector_cache,
    ));
    // The issuer's own tokens for the management API's audience, mapped as a kube-apiserver
    // pointed at this issuer maps them (`--oidc-username-claim=email`,
    // `--oidc-groups-claim=groups`, `--oidc-groups-prefix=oidc:`), verified with the
    // in-process keys (a rotation is seen at once; no fetch of our own JWKS).
    let oidc = LegacyOidcFlags {
        issuer_url: url.clone(),
        client_id: config.api_audience.clone(),
        username_claim: Some("email".into()),
        username_prefix: None,
        groups_claim: Some("groups".into()),
        groups_prefix: Some("oidc:".into()),
        required_claims: Vec::new(),
        ca_pem: None,
    }
    .to_configuration()
    .context("the management API's token authentication")?;
    let issuer_keys = provider.clone();
    let keys: KeySourceFactory = Arc::new(move |_issuer: &portcullis_authn::config::Issuer| {
        let provider = issuer_keys.clone();
        let keys = StaticKeys::from_fn(move || provider.shared_verification_keys());
        Ok(Arc::new(keys) as Arc<dyn KeySource>)
    });
    let bearer =
        JwtAuthenticator::new(&oidc, &keys).context("the management API's token authentication")?;
    let certificates = ClientCertificate::from_pem(pki.ca.cert_pem.as_bytes())
        .context("the client certificate authenticator")?;

    let ready = Arc::new(AtomicBool::new(false));
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let audit = open_audit(config.audit.as_ref(), &metrics)?;
    let authz: portcullis_authn::chain::SharedAuthorizer = authorizer.clone();
    let chain = Chain {
        authenticator: AuthenticatorChain::new()
            .with(Arc::new(certificates))
            .with(Arc::new(bearer)),
        authorizer: authz.clone(),
        anonymous: false,
        audit,
        metrics: metrics.clone(),
        max_read_only: config.max_requests_in_flight,
        max_mutating: config.max_mutating_requests_in_flight,
    };
    let store_for_fa = store.clone();
    let authz_for_fa = authz.clone();
    let state = AppState {
        store: store.clone(),
        chain: Arc::new(chain),
        authz,
        registry: Arc::new({
            let mut r = kinds::registry();
            crate::rbac::register(&mut r, &authorizer);
            crate::rbac::register_reviews(&mut r, &authorizer);
            crate::federation::register(&mut r, &federation, &authorizer, &store);
            crate::delivery::attach::register(
                &mut r,
                &delivery,
                &store,
                &provider,
                &authorizer,
                &pki.ca,
            );
            r
        }),
        metrics: metrics.clone(),
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            max_json_depth: config.max_json_depth,
        },
        ready: ready.clone(),
        stopping: stopping_rx,
        provider: provider.clone(),
    };
    // The issuer's endpoints live under its path (`https://host/dex` → `/dex/...`). Every
    // route, the issuer's too, is counted and timed.
    #[cfg(feature = "bench-internals")]
    let kept_state = state.clone();
    let mut router = match provider.issuer_path() {
        "" => api::app(state).merge(provider.router()),
        path => api::app(state).nest(path, provider.router()),
    };
    let mut background = vec![
        rotation,
        maintenance,
        rbac_sync,
        connectors_sync,
        federation_sync,
    ];
    background.extend(delivery_tasks);
    if let Some(fa_config) = &config.forward_auth {
        let forward_auth = forward_auth(
            fa_config,
            &url,
            &pki.ca.cert_pem,
            &keys,
            &authz_for_fa,
            &store_for_fa,
            encryption_key.0,
        )
        .await
        .context("forwardAuth")?;
        router = router.merge(forward_auth.router());
        background.push(tokio::spawn(forward_auth.run_maintenance()));
    }
    let router = crate::listen::Served::measured(router, &metrics);
    let (tx, rx) = oneshot::channel();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let task = tokio::spawn(crate::listen::accept_loop(
        listener,
        tls_config,
        crate::listen::Routers::Shared(router),
        metrics,
        rx,
        stopping_tx,
        grace,
    ));
    ready.store(true, Ordering::Release);
    tracing::info!(%url, "management plane listening");
    Ok(Running {
        local_addr,
        url,
        ca_path: pki.ca_path,
        admin_kubeconfig,
        admin_kubeconfig_created,
        provider,
        admin_password,
        shutdown: Some(tx),
        task,
        federation,
        delivery,
        background,
        #[cfg(feature = "bench-internals")]
        state: kept_state,
    })
}

/// The audit log of `config`, if any.
pub(crate) fn open_audit(
    config: Option<&crate::config::AuditConfig>,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<AuditLog>>> {
    let Some(audit) = config else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&audit.policy_file)
        .with_context(|| format!("reading the audit policy {}", audit.policy_file.display()))?;
    let policy = AuditPolicy::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("the audit policy {}: {e}", audit.policy_file.display()))?;
    let log = AuditLog::open(&audit.log_path, policy, metrics.clone())
        .with_context(|| format!("opening the audit log {}", audit.log_path.display()))?;
    Ok(Some(Arc::new(log)))
}

/// The management plane's own forward auth: its issuer (in-process keys, its CA), its RBAC,
/// its store.
async fn forward_auth(
    config: &portcullis_forward_auth::Config,
    url: &str,
    ca_pem: &str,
    keys: &KeySourceFactory,
    authorizer: &portcullis_authn::chain::SharedAuthorizer,
    store: &Arc<dyn Store>,
    encryption_key: [u8; 32],
) -> Result<portcullis_forward_auth::ForwardAuth> {
    let mut config = config.clone();
    if config.issuer.is_empty() {
        config.issuer = url.to_owned();
    }
    if config.issuer_ca.is_none() && config.issuer == url {
        config.issuer_ca = Some(ca_pem.to_owned());
    }
    let deps = portcullis_forward_auth::Dependencies {
        authorizer: authorizer.clone(),
        store: store.clone(),
        encryption_key,
        keys: keys.clone(),
        tls: true,
        clock: None,
    };
    Ok(portcullis_forward_auth::ForwardAuth::new(config, deps).await?)
}

pub use crate::kinds::{ADMIN_PASSWORD_FILE, STATIC_ADMIN, STATIC_ADMIN_EMAIL};

/// Creates the static admin on first start, with a generated password written to
/// `admin-password` (0600) in the data directory; returns the password then, `None` if the
/// account exists. It logs in only at this management plane's login page, is a member of
/// `portcullis:admins`, and `portcullis admin reset-password` rotates its password.
async fn ensure_static_admin(
    store: &dyn portcullis_store::Store,
    data_dir: &std::path::Path,
) -> Result<Option<String>> {
    let key = portcullis_oidc::user_key(STATIC_ADMIN);
    if store.get(&key).await?.is_some() {
        return Ok(None);
    }
    let password = portcullis_oidc::generate_password()?;
    let hash = portcullis_oidc::hash_password(password.clone()).await?;
    let mut user = serde_json::json!({
        "apiVersion": format!("{}/{}", portcullis_model::GROUP, portcullis_model::VERSION),
        "kind": "User",
        "metadata": {
            "name": STATIC_ADMIN,
            "labels": { "portcullis.dev/static-admin": "true" },
        },
        "spec": {
            "displayName": "Static administrator",
            "email": STATIC_ADMIN_EMAIL,
            "emailVerified": true,
            "groups": [crate::pki::ADMINS_GROUP],
            "passwordHash": hash,
        },
    });
    if let Some(meta) = user
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        crate::api::objects::stamp_created(meta, true);
    }
    // The file first: a crash between the two leaves a password on disk and no account,
    // and the next start makes both again.
    let path = data_dir.join(ADMIN_PASSWORD_FILE);
    crate::pki::write_private(&path, format!("{password}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    match store.create(&key, serde_json::to_vec(&user)?).await {
        Ok(_) => Ok(Some(password)),
        // Another replica created it first.
        Err(portcullis_store::StoreError::AlreadyExists(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
