//! The provider: configuration, signing keys kept sealed in the store, and the HTTP router.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_jose::{Algorithm, KeySet, KeySpec, RotationPolicy, unix_now};
use portcullis_store::{Revision, Store, StoreError};

use crate::Error;
use crate::discovery::{self, Endpoints};
use crate::grants::Grants;
use crate::sealing::Sealer;
use crate::throttle::Throttle;

/// Store key of the sealed signing key set.
pub const KEYS_STORE_KEY: &str = "/oidc/keys";

/// Largest request body accepted (login form, token request).
const MAX_BODY_LEN: usize = 16 * 1024;

/// Verifiers' clock skew the key schedule allows for (as the jose verifier's default).
const LEEWAY_SECS: u64 = portcullis_jose::DEFAULT_LEEWAY_SECS;

/// Longest time verifiers are told they may cache the JWKS (`Cache-Control: max-age`); a key of
/// an algorithm added to an existing installation is published this long before it signs.
const JWKS_MAX_AGE_SECS: u64 = 3600;

/// How the provider is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The issuer identifier (OpenID Connect Discovery 1.0 §3): an `https` URL without query
    /// or fragment, possibly with a path (`https://mgmt.example.com/dex`). Plain `http` is
    /// accepted for loopback hosts only, for development and tests. Every endpoint URL is the
    /// issuer followed by the endpoint's path.
    pub issuer: String,
    /// The signing keys published, one per algorithm (by default ES256 and RS256). The first
    /// signs access tokens; each client's ID tokens are signed with its registered
    /// `idTokenSignedResponseAlg`, RS256 when it registered none (OpenID Connect Dynamic Client
    /// Registration 1.0 §2), which must be listed here. A change applies at the next start,
    /// through the key schedule: new keys are published before they sign, and keys of a
    /// dropped algorithm stay published until their tokens have expired.
    pub signing_keys: Vec<KeySpec>,
    /// How long each key signs before the next one takes over.
    pub key_rotation_period: Duration,
    /// Lifetime of ID tokens.
    pub id_token_lifetime: Duration,
    /// Lifetime of access tokens.
    pub access_token_lifetime: Duration,
    /// Lifetime of a browser session (single sign-on) after a login.
    pub session_lifetime: Duration,
    /// Longest life of a refresh token family, however often it is used.
    pub refresh_token_lifetime: Duration,
    /// A refresh token family unused for this long ends.
    pub refresh_token_idle: Duration,
    /// How long the refresh token just rotated away is still honoured (with the same answer),
    /// for clients that refresh concurrently (kubectl, k9s and an IDE sharing one token).
    pub refresh_reuse_grace: Duration,
    /// Clients defined in the configuration rather than through the management API (they
    /// take precedence over API clients of the same name).
    pub static_clients: Vec<portcullis_model::Client>,
}

impl ProviderConfig {
    /// A configuration for `issuer` with the defaults: ES256 and RS256 keys rotated daily
    /// (OpenID Connect Core 1.0 §15.1: RS256 must be supported), one-hour ID
    /// and access tokens, one-day browser sessions, refresh tokens for 30 days (7 idle) with a
    /// 10-second grace for concurrent refreshes.
    pub fn new(issuer: impl Into<String>) -> Self {
        ProviderConfig {
            issuer: issuer.into(),
            signing_keys: vec![KeySpec::Es256, KeySpec::Rs256Bits2048],
            key_rotation_period: Duration::from_secs(24 * 3600),
            id_token_lifetime: Duration::from_secs(3600),
            access_token_lifetime: Duration::from_secs(3600),
            session_lifetime: Duration::from_secs(24 * 3600),
            refresh_token_lifetime: Duration::from_secs(30 * 24 * 3600),
            refresh_token_idle: Duration::from_secs(7 * 24 * 3600),
            refresh_reuse_grace: Duration::from_secs(10),
            static_clients: Vec::new(),
        }
    }

    fn rotation_policy(&self) -> Result<RotationPolicy, Error> {
        let rotation_period = self.key_rotation_period.as_secs();
        let token_lifetime = self
            .id_token_lifetime
            .as_secs()
            .max(self.access_token_lifetime.as_secs());
        if rotation_period == 0 || token_lifetime == 0 {
            return Err(Error::Config(
                "key rotation period and token lifetimes must be at least one second".into(),
            ));
        }
        if self.session_lifetime.as_secs() == 0
            || self.refresh_token_lifetime.as_secs() == 0
            || self.refresh_token_idle.as_secs() == 0
        {
            return Err(Error::Config(
                "session and refresh token lifetimes must be at least one second".into(),
            ));
        }
        if self.refresh_reuse_grace.as_secs() > 300 {
            return Err(Error::Config(
                "the refresh reuse grace may be at most five minutes: a longer one weakens reuse detection".into(),
            ));
        }
        let policy = RotationPolicy {
            specs: self.signing_keys.clone(),
            rotation_period,
            publish_lead: rotation_period.min(JWKS_MAX_AGE_SECS),
            token_lifetime,
            leeway: LEEWAY_SECS,
        };
        policy
            .check()
            .map_err(|e| Error::Config(format!("signing keys: {e}")))?;
        Ok(policy)
    }
}

/// The time source, as Unix seconds; the system clock unless a test injects another.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The key set in use, as last read from or written to the store.
struct LoadedKeys {
    set: KeySet,
    revision: Revision,
    jwks_json: Vec<u8>,
    verification_keys: Arc<portcullis_jose::VerificationKeys>,
}

impl LoadedKeys {
    fn new(set: KeySet, revision: Revision) -> Result<Self, Error> {
        let jwks_json = serde_json::to_vec(&set.jwks())
            .map_err(|_| Error::Crypto("encoding the JWKS failed"))?;
        Ok(LoadedKeys {
            verification_keys: Arc::new(set.verification_keys()),
            set,
            revision,
            jwks_json,
        })
    }
}

struct Inner {
    config: ProviderConfig,
    policy: RotationPolicy,
    endpoints: Endpoints,
    store: Arc<dyn Store>,
    sealer: Sealer,
    keys: RwLock<Arc<LoadedKeys>>,
    grants: Grants,
    throttle: Throttle,
    clock: Clock,
    connectors: RwLock<Arc<portcullis_connectors::Connectors>>,
    secrets_changed: tokio::sync::Notify,
}

/// The OpenID provider. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.inner.config.issuer)
            .finish_non_exhaustive()
    }
}

// === impl Provider ===

impl Provider {
    /// Starts the provider over `store`: reads its signing keys from [`KEYS_STORE_KEY`]
    /// (sealed with AES-256-GCM under `encryption_key`), or generates and stores them on first
    /// start, then applies any rotation that fell due while it was down.
    ///
    /// Fails if the issuer is not a valid issuer URL, the store fails, or the stored keys
    /// cannot be opened with `encryption_key` (never silently replaces them).
    pub async fn new(
        config: ProviderConfig,
        store: Arc<dyn Store>,
        encryption_key: [u8; 32],
    ) -> Result<Provider, Error> {
        Self::with_clock(config, store, encryption_key, Arc::new(unix_now)).await
    }

    /// [`Provider::new`] with an injected clock (for tests of expiry and rotation).
    pub async fn with_clock(
        config: ProviderConfig,
        store: Arc<dyn Store>,
        encryption_key: [u8; 32],
        clock: Clock,
    ) -> Result<Provider, Error> {
        let endpoints = Endpoints::for_issuer(&config.issuer)?;
        let policy = config.rotation_policy()?;
        let sealer = Sealer::new(&encryption_key)?;
        let now = clock();
        let loaded = match load(&*store, &sealer, &policy).await? {
            Some(loaded) => loaded,
            None => {
                let set = KeySet::generate(policy.clone(), now)?;
                let sealed = sealer.seal(KEYS_STORE_KEY, &set.to_private_json()?)?;
                match store.create(KEYS_STORE_KEY, sealed).await {
                    Ok(kv) => LoadedKeys::new(set, kv.mod_revision)?,
                    // Another replica created them first: use theirs.
                    Err(StoreError::AlreadyExists(_)) => {
                        load(&*store, &sealer, &policy).await?.ok_or_else(|| {
                            Error::Config("signing keys vanished from the store".into())
                        })?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let provider = Provider {
            inner: Arc::new(Inner {
                config,
                policy,
                endpoints,
                store,
                sealer,
                keys: RwLock::new(Arc::new(loaded)),
                grants: Grants::default(),
                throttle: Throttle::default(),
                clock,
                connectors: RwLock::default(),
                secrets_changed: tokio::sync::Notify::new(),
            }),
        };
        provider.rotate_keys(now).await?;
        Ok(provider)
    }

    /// Replaces the identity connectors offered besides local users (LDAP/AD). Logins in
    /// progress finish with the set they started with; refresh grants of users of a connector
    /// that is gone fail from now on.
    pub fn set_connectors(&self, connectors: portcullis_connectors::Connectors) {
        let connectors = Arc::new(connectors);
        match self.inner.connectors.write() {
            Ok(mut slot) => *slot = connectors,
            Err(poisoned) => *poisoned.into_inner() = connectors,
        }
    }

    /// Completes when a secret was set after the call ([`Provider::put_secret`]): whoever
    /// builds connectors from secrets rebuilds them then.
    pub async fn secrets_changed(&self) {
        self.inner.secrets_changed.notified().await;
    }

    pub(crate) fn notify_secrets_changed(&self) {
        self.inner.secrets_changed.notify_waiters();
    }

    /// The identity connectors besides local users.
    pub fn connectors(&self) -> Arc<portcullis_connectors::Connectors> {
        match self.inner.connectors.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// The path of the issuer URL without a trailing slash (`""` for `https://host`,
    /// `"/dex"` for `https://host/dex`): where [`Provider::router`] is to be mounted.
    pub fn issuer_path(&self) -> &str {
        &self.inner.endpoints.issuer_path
    }

    /// The routes of the provider, relative to the issuer path:
    /// `/.well-known/openid-configuration`, `/keys`, `/auth` (GET, POST: authorization endpoint),
    /// `/auth/login`, `/auth/continue`, `/auth/consent` (POST: its forms), `/token`,
    /// `/token/revoke`, `/token/introspect`, `/device/code` (POST), `/device` (GET, POST:
    /// verification page), `/userinfo` (GET, POST) and `/logout` (GET, POST). Mount it with
    /// `Router::nest(provider.issuer_path(), provider.router())` (or merge it when the issuer
    /// has no path). Login throttling per client address needs the server to record the
    /// peer as `ConnectInfo<SocketAddr>` in the request extensions.
    pub fn router(&self) -> Router {
        use axum::routing::post;
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery_handler))
            .route("/keys", get(jwks_handler))
            .route(
                "/auth",
                get(crate::authorize::authorize).post(crate::authorize::authorize_post),
            )
            .route("/auth/login", post(crate::authorize::login))
            .route("/callback", get(crate::upstream::callback))
            .route("/auth/continue", post(crate::authorize::continue_as))
            .route("/auth/consent", post(crate::authorize::consent))
            .route("/token", post(crate::token::token))
            .route("/token/revoke", post(crate::revoke::revoke))
            .route("/token/introspect", post(crate::revoke::introspect))
            .route("/device/code", post(crate::device::authorization))
            .route(
                "/device",
                get(crate::device::verification_page).post(crate::device::verify),
            )
            .route(
                "/userinfo",
                get(crate::userinfo::userinfo).post(crate::userinfo::userinfo_post),
            )
            .route(
                "/logout",
                get(crate::logout::end_session).post(crate::logout::end_session_post),
            )
            // Every form and token request is small; bound bodies well below axum's 2 MB.
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_LEN))
            .with_state(self.clone())
    }

    fn keys(&self) -> Arc<LoadedKeys> {
        match self.inner.keys.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn install(&self, loaded: LoadedKeys) {
        let loaded = Arc::new(loaded);
        match self.inner.keys.write() {
            Ok(mut slot) => *slot = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
    }

    /// The public JWKS served at `/keys`.
    pub fn jwks(&self) -> portcullis_jose::Jwks {
        self.keys().set.jwks()
    }

    /// The algorithms of the published keys that sign ID tokens, or will once their first key
    /// has been published long enough: the configured ones, then any still signing while it
    /// is phased out.
    pub fn signing_algorithms(&self) -> Vec<Algorithm> {
        self.keys().set.algorithms()
    }

    /// When the first key of `alg` starts signing, if `alg` was just added and its key is only
    /// published yet.
    pub fn signs_from(&self, alg: Algorithm) -> Option<u64> {
        self.keys().set.signs_from(alg)
    }

    /// Whether a key of `alg` signs now.
    pub(crate) fn can_sign(&self, alg: Algorithm) -> bool {
        self.keys().set.signing_key_for(alg).is_some()
    }

    /// The algorithm of the default key (access tokens).
    pub(crate) fn default_signing_algorithm(&self) -> Result<Algorithm, Error> {
        Ok(self.keys().set.signing_key()?.algorithm())
    }

    /// Signs `claims` with the default key (the first configured algorithm's active key;
    /// compact JWS, `kid`, `typ: JWT`).
    pub fn sign<T: serde::Serialize + ?Sized>(&self, claims: &T) -> Result<String, Error> {
        Ok(self.keys().set.sign(claims)?)
    }

    /// The published keys as verification keys (for verifying this issuer's own tokens).
    pub fn verification_keys(&self) -> portcullis_jose::VerificationKeys {
        (*self.keys().verification_keys).clone()
    }

    /// The published keys as verification keys, shared: no copy per call (for the
    /// management API's bearer-token authenticator, on every request).
    pub fn shared_verification_keys(&self) -> Arc<portcullis_jose::VerificationKeys> {
        Arc::clone(&self.keys().verification_keys)
    }

    /// The current time of the provider's clock, Unix seconds.
    pub(crate) fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    /// Signs with the default key and a `typ` header (access tokens).
    pub(crate) fn sign_typed(
        &self,
        typ: &str,
        claims: &serde_json::Value,
    ) -> Result<String, Error> {
        Ok(self.keys().set.sign_with_typ(typ, claims)?)
    }

    /// Signs an ID token with the active key of `alg`; `None` when no key of `alg` signs.
    pub(crate) fn sign_with(
        &self,
        alg: Algorithm,
        claims: &serde_json::Value,
    ) -> Result<Option<String>, Error> {
        match self.keys().set.signing_key_for(alg) {
            Some(key) => Ok(Some(key.sign_with_typ("JWT", claims)?)),
            None => Ok(None),
        }
    }

    /// Verifies an access token of this issuer (RFC 9068: `typ: at+jwt`, audience the issuer).
    pub(crate) fn verify_access_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<portcullis_jose::VerifiedToken, Error> {
        let issuer = &self.inner.config.issuer;
        let verified = portcullis_jose::Verifier::new(issuer.clone(), issuer.clone()).verify(
            token,
            &self.keys().verification_keys,
            now,
        )?;
        if verified.typ.as_deref() != Some(crate::token::ACCESS_TOKEN_TYP) {
            return Err(Error::Config("not an access token".into()));
        }
        Ok(verified)
    }

    pub(crate) fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    pub(crate) fn grants(&self) -> &Grants {
        &self.inner.grants
    }

    pub(crate) fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// Seals a secret kept in the store under `context` (its store key).
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        self.inner.sealer.seal(context, plaintext)
    }

    /// Opens what [`Provider::seal`] sealed under `context`.
    pub(crate) fn unseal(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        self.inner.sealer.open(context, sealed)
    }

    /// Deletes expired sessions, codes, grants and device codes; returns how many.
    pub async fn sweep_expired(&self) -> Result<usize, Error> {
        crate::state::sweep_expired(&*self.inner.store, self.now()).await
    }

    /// Ends every browser session and revokes every grant (refresh token family, and the
    /// access tokens at this issuer) of local user `username`: for a password reset or a
    /// disabled account (users of connectors are re-checked at their source instead). Returns
    /// how many records were removed.
    pub async fn revoke_user(&self, username: &str) -> Result<usize, Error> {
        crate::state::revoke_user(&*self.inner.store, username).await
    }

    /// Runs the housekeeping for ever: every minute, deletes expired records. Spawn it next
    /// to the server.
    pub async fn run_maintenance(self) {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            match self.sweep_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "expired OpenID provider records removed"),
                Err(e) => {
                    tracing::warn!(error = %e, "removing expired OpenID provider records failed")
                }
            }
        }
    }

    /// Advances the key schedule to `now` (Unix seconds): reads the stored set (another
    /// replica may have rotated it), rotates when due and writes it back with compare-and-swap.
    /// Returns whether the published keys changed.
    pub async fn rotate_keys(&self, now: u64) -> Result<bool, Error> {
        let inner = &self.inner;
        let Some(mut loaded) = load(&*inner.store, &inner.sealer, &inner.policy).await? else {
            return Err(Error::Config(format!(
                "signing keys missing from the store at {KEYS_STORE_KEY}"
            )));
        };
        let seen_before = self.keys().revision;
        if !loaded.set.rotate(now)? {
            let changed = loaded.revision != seen_before;
            if changed {
                self.install(loaded);
            }
            return Ok(changed);
        }
        let sealed = inner
            .sealer
            .seal(KEYS_STORE_KEY, &loaded.set.to_private_json()?)?;
        match inner
            .store
            .update(KEYS_STORE_KEY, sealed, Some(loaded.revision))
            .await
        {
            Ok(kv) => {
                let published: Vec<String> = loaded
                    .set
                    .keys()
                    .into_iter()
                    .map(|(key, state)| format!("{} {} {state:?}", key.algorithm(), key.kid()))
                    .collect();
                tracing::info!(
                    keys = %published.join(", "),
                    "OpenID provider signing keys rotated"
                );
                self.install(LoadedKeys::new(loaded.set, kv.mod_revision)?);
            }
            // Another replica rotated at the same time: take its result.
            Err(StoreError::Conflict { .. }) => {
                if let Some(theirs) = load(&*inner.store, &inner.sealer, &inner.policy).await? {
                    self.install(theirs);
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(true)
    }

    /// Runs the key schedule for ever: sleeps until the next change is due (re-reading the
    /// store at least every five minutes, for rotations made by other replicas) and rotates.
    /// Errors are logged and retried; spawn it next to the server.
    pub async fn run_key_rotation(self) {
        loop {
            let now = self.now();
            let due = self.keys().set.next_change_at();
            let wait = due.saturating_sub(now).clamp(1, 300);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            if let Err(e) = self.rotate_keys(self.now()).await {
                tracing::warn!(error = %e, "rotating the OpenID provider signing keys failed");
            }
        }
    }
}

async fn load(
    store: &dyn Store,
    sealer: &Sealer,
    policy: &RotationPolicy,
) -> Result<Option<LoadedKeys>, Error> {
    let Some(kv) = store.get(KEYS_STORE_KEY).await? else {
        return Ok(None);
    };
    let plaintext = sealer.open(KEYS_STORE_KEY, &kv.value)?;
    let set = KeySet::from_private_json(policy.clone(), &plaintext)?;
    Ok(Some(LoadedKeys::new(set, kv.mod_revision)?))
}

// === handlers ===

async fn discovery_handler(State(provider): State<Provider>) -> Response {
    let algs: Vec<&'static str> = provider
        .signing_algorithms()
        .into_iter()
        .map(Algorithm::as_str)
        .collect();
    let doc = discovery::document(&provider.inner.endpoints, &algs);
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        )],
        axum::Json(doc),
    )
        .into_response()
}

async fn jwks_handler(State(provider): State<Provider>) -> Response {
    let keys = provider.keys();
    // Verifiers may cache the set until the next change: the next key is published a full
    // rotation period before it signs, and verifiers refetch on an unknown kid anyway.
    let max_age = keys
        .set
        .next_change_at()
        .saturating_sub(provider.now())
        .clamp(0, JWKS_MAX_AGE_SECS);
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, cache),
        ],
        keys.jwks_json.clone(),
    )
        .into_response()
}
