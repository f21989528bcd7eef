//! A remote issuer's JWKS, cached for verifiers.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::{Error, Jwks, VerificationKeys, VerifiedToken, Verifier};

/// Fetches the JWKS (over HTTP in production; a closure in tests).
#[async_trait::async_trait]
pub trait JwksFetcher: Send + Sync {
    /// Fetches the current JWKS.
    async fn fetch(&self) -> Result<Jwks, Error>;
}

#[async_trait::async_trait]
impl<F, Fut> JwksFetcher for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<Jwks, Error>> + Send,
{
    async fn fetch(&self) -> Result<Jwks, Error> {
        (self)().await
    }
}

const NEVER: u64 = u64::MAX;

/// Cached verification keys of a remote issuer.
///
/// Keys are fetched on first use and again when older than `max_age`; a token naming an unknown
/// `kid` triggers a refresh (the issuer may have rotated), but at most one fetch starts per
/// `min_refresh_interval`, so a flood of tokens with made-up `kid`s cannot turn the verifier
/// into a load generator against the issuer. Concurrent callers share one fetch. When a fetch
/// fails, the keys already held stay in use: they are only ever keys the issuer published.
pub struct JwksCache {
    fetcher: Box<dyn JwksFetcher>,
    min_refresh_interval: u64,
    max_age: u64,
    keys: RwLock<Arc<VerificationKeys>>,
    fetched_at: AtomicU64,
    /// Time of the last fetch attempt; held while fetching.
    last_attempt: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("min_refresh_interval", &self.min_refresh_interval)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Default age after which keys are fetched again even without an unknown `kid`.
    pub const DEFAULT_MAX_AGE_SECS: u64 = 3600;

    /// A cache over `fetcher`, fetching at most once per `min_refresh_interval` seconds.
    pub fn new(fetcher: impl JwksFetcher + 'static, min_refresh_interval: u64) -> Self {
        JwksCache {
            fetcher: Box::new(fetcher),
            min_refresh_interval,
            max_age: Self::DEFAULT_MAX_AGE_SECS,
            keys: RwLock::new(Arc::new(VerificationKeys::default())),
            fetched_at: AtomicU64::new(NEVER),
            last_attempt: tokio::sync::Mutex::new(NEVER),
        }
    }

    /// Sets the age (seconds) after which keys are refetched on the next verification.
    pub fn with_max_age(mut self, seconds: u64) -> Self {
        self.max_age = seconds;
        self
    }

    /// The keys held now.
    pub fn keys(&self) -> Arc<VerificationKeys> {
        match self.keys.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Fetches the JWKS unless a fetch was attempted less than `min_refresh_interval` ago.
    /// Returns whether new keys were installed.
    pub async fn refresh(&self, now: u64) -> Result<bool, Error> {
        let mut last_attempt = self.last_attempt.lock().await;
        if *last_attempt != NEVER && now < last_attempt.saturating_add(self.min_refresh_interval) {
            return Ok(false);
        }
        *last_attempt = now;
        let jwks = self.fetcher.fetch().await?;
        let keys = Arc::new(VerificationKeys::from_jwks(&jwks));
        match self.keys.write() {
            Ok(mut slot) => *slot = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        self.fetched_at.store(now, Ordering::Release);
        Ok(true)
    }

    /// Verifies `token` with `verifier` against the cached keys, fetching them first when
    /// never fetched or stale, and once more (rate limits permitting) on an unknown `kid`.
    pub async fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<VerifiedToken, Error> {
        let fetched_at = self.fetched_at.load(Ordering::Acquire);
        if fetched_at == NEVER || now >= fetched_at.saturating_add(self.max_age) {
            let refreshed = self.refresh(now).await;
            if fetched_at == NEVER {
                refreshed?;
            }
        }
        let keys = self.keys();
        match verifier.verify(token, &keys, now) {
            Err(Error::UnknownKid(kid)) => {
                let _ = self.refresh(now).await;
                // New keys, whether this call fetched them or a concurrent one did while this
                // one waited (its own refresh then being rate-limited).
                let fresh = self.keys();
                if Arc::ptr_eq(&keys, &fresh) {
                    Err(Error::UnknownKid(kid))
                } else {
                    verifier.verify(token, &fresh, now)
                }
            }
            result => result,
        }
    }
}
