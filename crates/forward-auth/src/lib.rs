//! Forward authentication for web UIs behind an ingress: single sign-on against the portcullis
//! issuer and path-level authorization with the RBAC engine.
//!
//! The ingress asks, for each request, who this is and whether they may open this path:
//!
//! - Traefik `forwardAuth` and Caddy `forward_auth` call [`FORWARD_AUTH_PATH`] with
//!   `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`, `-For`. A 2xx answer lets the request
//!   through and the proxy copies the identity headers upstream; any other answer goes back to
//!   the browser as is (a 302 to the login, a 403 page).
//! - nginx `auth_request` calls [`AUTH_REQUEST_PATH`] with `X-Original-URI` and
//!   `X-Original-Method`. nginx understands only 2xx, 401 and 403, so an anonymous browser gets
//!   401 and nginx's `error_page 401 = @login` sends it to `/oauth2/start?rd=…`.
//!
//! The login is the authorization code flow with PKCE at the issuer; its state lives in one
//! short-lived sealed cookie; the callback is `/_oauth` on the protected host (or on one
//! central `authHost`). The session is one cookie of at most 4 KB, sealed with AES-256-GCM
//! under a rotating key; the refresh token stays in the store. `/_oauth/logout` ends it.
//!
//! Each request becomes a Kubernetes non-resource request — its path normalised once
//! ([`path::normalize`]), its verb from the method — decided by the RBAC engine over
//! ClusterRoles with `nonResourceURLs` ([`roles::route_roles`] makes the usual view, edit and
//! admin roles of a service). Forwarded headers are believed only from `trustedProxies`.
//!
//! Embed with [`ForwardAuth::new`] and [`ForwardAuth::router`].
#![deny(missing_docs)]

mod check;
pub mod config;
mod issuer;
mod login;
mod pages;
pub mod path;
pub mod redirect;
pub mod roles;
mod seal;
mod session;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::get;
use portcullis_authn::chain::SharedAuthorizer;
use portcullis_authn::{JwtAuthenticator, KeySourceFactory, LegacyOidcFlags};
use portcullis_store::Store;

pub use config::{ClaimMapping, Config, HostRule};

/// The check endpoint of Traefik `forwardAuth` and Caddy `forward_auth`.
pub const FORWARD_AUTH_PATH: &str = "/forward-auth";
/// The check endpoint of nginx `auth_request`.
pub const AUTH_REQUEST_PATH: &str = "/auth-request";
/// The OAuth callback, on the protected host or the auth host.
pub const CALLBACK_PATH: &str = "/_oauth";
/// Starts a login: `?rd=<where to go after>`.
pub const START_PATH: &str = "/_oauth/start";
/// The same, where nginx snippets of oauth2-proxy send browsers.
pub const OAUTH2_START_PATH: &str = "/oauth2/start";
/// Ends the session and logs out at the issuer.
pub const LOGOUT_PATH: &str = "/_oauth/logout";

/// The identity headers set on success (and refused when a client sends them).
pub const USER_HEADER: &str = "X-Auth-Request-User";
/// The user's `email` claim.
pub const EMAIL_HEADER: &str = "X-Auth-Request-Email";
/// The user's groups, comma-separated.
pub const GROUPS_HEADER: &str = "X-Auth-Request-Groups";
/// The user's `preferred_username` claim.
pub const PREFERRED_USERNAME_HEADER: &str = "X-Auth-Request-Preferred-Username";
/// The client's `Cookie` header without this endpoint's cookies, for the proxy to send
/// upstream in place of `Cookie`.
pub const COOKIE_HEADER: &str = "X-Auth-Request-Cookie";

/// Errors setting up forward auth.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration.
    #[error("forward auth: {0}")]
    Config(String),
    /// The issuer could not be used.
    #[error("forward auth: {0}")]
    Issuer(String),
    /// A cryptographic operation failed.
    #[error("forward auth: {0}")]
    Crypto(&'static str),
    /// The store failed.
    #[error("forward auth: the store failed: {0}")]
    Store(#[from] portcullis_store::StoreError),
    /// The token authenticator could not be built.
    #[error("forward auth: {0}")]
    Authn(#[from] portcullis_authn::Error),
}

/// The time source, as Unix seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What forward auth needs from the process that embeds it.
#[derive(Clone)]
pub struct Dependencies {
    /// The RBAC decision over the current policy of this cluster (the management plane's
    /// `RbacAuthorizer`, or the agent's view of the federated RBAC objects).
    pub authorizer: SharedAuthorizer,
    /// Where sessions (with their refresh tokens) and the cookie key ring are kept.
    pub store: Arc<dyn Store>,
    /// Seals what is kept in the store (the data-encryption key of the data directory).
    pub encryption_key: [u8; 32],
    /// Where the issuer's verification keys come from:
    /// [`JwtAuthenticator::discovery_key_sources`] when the issuer is remote, in-process keys
    /// when it is the same process.
    pub keys: KeySourceFactory,
    /// Whether the listener this router is served on is TLS (the scheme of requests judged on
    /// their own connection).
    pub tls: bool,
    /// The clock; the system clock when `None`.
    pub clock: Option<Clock>,
}

struct Inner {
    config: Config,
    authorizer: SharedAuthorizer,
    authenticator: JwtAuthenticator,
    issuer: issuer::IssuerClient,
    sessions: session::Sessions,
    ring: ArcSwap<seal::KeyRing>,
    clock: Clock,
    tls: bool,
    login_cookie: String,
    scope: String,
    original_uri: http::HeaderName,
    original_method: http::HeaderName,
}

/// A forward-auth endpoint. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ForwardAuth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("issuer", &self.inner.config.issuer)
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// === impl ForwardAuth ===

impl ForwardAuth {
    /// Checks `config`, builds the ID token verifier and reads (or creates) the cookie key ring
    /// in the store. The issuer is not contacted until the first login.
    pub async fn new(config: Config, deps: Dependencies) -> Result<ForwardAuth, Error> {
        config.validate().map_err(Error::Config)?;
        let flags = LegacyOidcFlags {
            issuer_url: config.issuer.clone(),
            client_id: config.client_id.clone(),
            username_claim: Some(config.claims.username_claim.clone()),
            username_prefix: config.claims.username_prefix.clone(),
            groups_claim: Some(config.claims.groups_claim.clone()),
            groups_prefix: Some(config.claims.groups_prefix.clone()),
            required_claims: Vec::new(),
            ca_pem: config.issuer_ca.clone(),
        };
        let authenticator = JwtAuthenticator::new(&flags.to_configuration()?, &deps.keys)?;
        let secret = match &config.client_secret_file {
            Some(path) => Some(read_secret(path)?),
            None => None,
        };
        let issuer = issuer::IssuerClient::new(
            &config.issuer,
            config.issuer_ca.as_deref(),
            &config.client_id,
            secret,
        )?;
        let sessions = session::Sessions::new(
            deps.store,
            &deps.encryption_key,
            &config.client_id,
            config.session_check_seconds,
        )?;
        let clock = deps.clock.unwrap_or_else(|| Arc::new(system_now));
        let ring = sessions
            .key_ring(clock(), config.key_rotation_seconds, key_keep(&config))
            .await?;
        let mut scopes: Vec<&str> = vec!["openid"];
        for s in config
            .scopes
            .iter()
            .map(String::as_str)
            .chain(["offline_access"])
        {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let header = |name: &str| {
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::Config(format!("{name:?} is not a valid header name")))
        };
        Ok(ForwardAuth {
            inner: Arc::new(Inner {
                login_cookie: format!("{}_login", config.cookie_name),
                scope: scopes.join(" "),
                original_uri: header(&config.original_uri_header)?,
                original_method: header(&config.original_method_header)?,
                authorizer: deps.authorizer,
                authenticator,
                issuer,
                sessions,
                ring: ArcSwap::from_pointee(ring),
                clock,
                tls: deps.tls,
                config,
            }),
        })
    }

    /// The routes: [`FORWARD_AUTH_PATH`], [`AUTH_REQUEST_PATH`], [`CALLBACK_PATH`],
    /// [`START_PATH`], [`OAUTH2_START_PATH`] and [`LOGOUT_PATH`]. Serve them on a listener of
    /// their own, or merge them into another router. The client address is read from the
    /// `ConnectInfo<SocketAddr>` or `RemoteAddr` request extension; without one, no forwarded
    /// header is believed.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                FORWARD_AUTH_PATH,
                get(check::forward_auth).head(check::forward_auth),
            )
            .route(
                AUTH_REQUEST_PATH,
                get(check::auth_request).head(check::auth_request),
            )
            .route(CALLBACK_PATH, get(login::callback_direct))
            .route(START_PATH, get(login::start_direct))
            .route(OAUTH2_START_PATH, get(login::start_direct))
            .route(
                LOGOUT_PATH,
                get(login::logout_direct).post(login::logout_direct),
            )
            .layer(axum::extract::DefaultBodyLimit::max(4096))
            .with_state(self.clone())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    /// Rotates the cookie key when due and picks up rotations by other replicas.
    pub async fn rotate_keys(&self) -> Result<(), Error> {
        let c = &self.inner.config;
        let ring = self
            .inner
            .sessions
            .key_ring(self.now(), c.key_rotation_seconds, key_keep(c))
            .await?;
        self.inner.ring.store(Arc::new(ring));
        Ok(())
    }

    /// Runs the housekeeping for ever: every minute, rotates the cookie key when due and
    /// deletes ended sessions. Spawn it next to the server.
    pub async fn run_maintenance(self) {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            if let Err(e) = self.rotate_keys().await {
                tracing::warn!(error = %e, "rotating the forward-auth cookie key failed");
            }
            match self.inner.sessions.sweep(self.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "ended forward-auth sessions removed"),
                Err(e) => tracing::warn!(error = %e, "removing ended forward-auth sessions failed"),
            }
        }
    }
}

/// Reads a client secret file (at most 4 KiB; surrounding whitespace is not part of it).
fn read_secret(path: &std::path::Path) -> Result<secrecy::SecretString, Error> {
    let fail = |why: String| Error::Config(format!("clientSecretFile {}: {why}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > 4096 {
        return Err(fail(
            "larger than 4 KiB; it should hold the secret alone".into(),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(fail("empty".into()));
    }
    Ok(secrecy::SecretString::from(secret.to_owned()))
}

/// How long a cookie key stays usable for opening: a rotation period plus the longest a
/// cookie lives.
fn key_keep(c: &Config) -> u64 {
    c.key_rotation_seconds
        .saturating_add(c.renew_seconds)
        .saturating_add(24 * 3600)
}
