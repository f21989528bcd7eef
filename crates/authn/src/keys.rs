//! Where a JWT authenticator's verification keys come from.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis_jose::{Jwks, JwksCache, VerificationKeys, VerifiedToken, Verifier};

use crate::Error;
use crate::config::Issuer;

/// Largest discovery document or JWKS read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// At most one JWKS fetch per this many seconds, however many unknown `kid`s arrive.
const MIN_REFRESH_SECS: u64 = 10;

/// Verifies tokens with an issuer's keys.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync {
    /// Verifies `token` with `verifier` against the keys held (fetching them if needed).
    async fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<VerifiedToken, portcullis_jose::Error>;

    /// Whether keys have been had at least once (readiness; USER-ASKS 15).
    fn ready(&self) -> bool {
        true
    }

    /// Fetches the keys now if they are remote, so that readiness can turn true before the
    /// first token arrives.
    ///
    /// # Errors
    ///
    /// [`Error::Keys`] when the keys cannot be had; the caller may retry later.
    async fn prefetch(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// Keys held in process, e.g. the in-process issuer's (read anew for every token, so a
/// rotation is seen at once).
#[derive(Clone)]
pub struct StaticKeys(Arc<dyn Fn() -> Arc<VerificationKeys> + Send + Sync>);

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticKeys")
    }
}

impl StaticKeys {
    /// These keys, fixed.
    pub fn new(keys: VerificationKeys) -> StaticKeys {
        let keys = Arc::new(keys);
        StaticKeys(Arc::new(move || Arc::clone(&keys)))
    }

    /// The keys `current` returns at each verification.
    pub fn from_fn(
        current: impl Fn() -> Arc<VerificationKeys> + Send + Sync + 'static,
    ) -> StaticKeys {
        StaticKeys(Arc::new(current))
    }
}

#[async_trait::async_trait]
impl KeySource for StaticKeys {
    async fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<VerifiedToken, portcullis_jose::Error> {
        verifier.verify(token, &(self.0)(), now)
    }
}

/// A remote issuer's keys: its OpenID discovery document (`{url}/.well-known/openid-configuration`
/// or `discoveryURL`), whose `issuer` must equal the configured URL, then its `jwks_uri`,
/// cached by [`portcullis_jose::JwksCache`] (refetched on an unknown `kid`, rate-limited).
/// Fetched lazily on the first token, or at once with [`DiscoveryKeys::prefetch`].
pub struct DiscoveryKeys {
    issuer: String,
    cache: JwksCache,
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for DiscoveryKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryKeys")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl DiscoveryKeys {
    /// Keys of the configured issuer, fetched over HTTPS (with its `certificateAuthority` only,
    /// when set).
    ///
    /// # Errors
    ///
    /// [`Error::Keys`] when the HTTP client cannot be built (bad CA).
    pub fn for_issuer(issuer: &Issuer) -> Result<DiscoveryKeys, Error> {
        let keys_error = |reason: String| Error::Keys {
            issuer: issuer.url.clone(),
            reason,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = issuer
            .certificate_authority
            .as_deref()
            .filter(|c| !c.is_empty())
        {
            let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|e| keys_error(format!("certificateAuthority: {e}")))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| keys_error(format!("HTTP client: {e}")))?;
        let discovery = issuer
            .discovery_url
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{}/.well-known/openid-configuration",
                    issuer.url.trim_end_matches('/')
                )
            });
        let ready = Arc::new(AtomicBool::new(false));
        let fetch = Arc::new(Fetch {
            client,
            issuer: issuer.url.clone(),
            discovery,
            ready: Arc::clone(&ready),
        });
        let cache = JwksCache::new(
            move || {
                let fetch = Arc::clone(&fetch);
                async move { fetch.jwks().await }
            },
            MIN_REFRESH_SECS,
        );
        Ok(DiscoveryKeys {
            issuer: issuer.url.clone(),
            cache,
            ready,
        })
    }
}

#[async_trait::async_trait]
impl KeySource for DiscoveryKeys {
    async fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
        now: u64,
    ) -> Result<VerifiedToken, portcullis_jose::Error> {
        self.cache.verify(verifier, token, now).await
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Fetches discovery and JWKS now (rate-limited like every refresh).
    async fn prefetch(&self) -> Result<(), Error> {
        self.cache
            .refresh(portcullis_jose::unix_now())
            .await
            .map(|_| ())
            .map_err(|e| Error::Keys {
                issuer: self.issuer.clone(),
                reason: e.to_string(),
            })
    }
}

struct Fetch {
    client: reqwest::Client,
    issuer: String,
    discovery: String,
    ready: Arc<AtomicBool>,
}

impl Fetch {
    async fn jwks(&self) -> Result<Jwks, portcullis_jose::Error> {
        let fail = |what: &str, e: String| portcullis_jose::Error::Fetch(format!("{what}: {e}"));
        let doc = self
            .get(&self.discovery)
            .await
            .map_err(|e| fail("discovery", e))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&doc).map_err(|e| fail("discovery", e.to_string()))?;
        // OpenID Connect Discovery 1.0 §4.3: the document's issuer is the configured one.
        if doc.get("issuer").and_then(serde_json::Value::as_str) != Some(self.issuer.as_str()) {
            return Err(fail(
                "discovery",
                format!("the document's issuer is not {:?}", self.issuer),
            ));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| fail("discovery", "no jwks_uri".into()))?;
        let jwks = self.get(jwks_uri).await.map_err(|e| fail("JWKS", e))?;
        let jwks = Jwks::from_json(&jwks)?;
        self.ready.store(true, Ordering::Release);
        Ok(jwks)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        if !url.starts_with("https://") {
            return Err(format!("{url:?} is not an https URL"));
        }
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url} sent more than {MAX_DOCUMENT_BYTES} bytes"));
            }
        }
        Ok(body)
    }
}
