//! The verifiers' JWKS cache, with an injected fetch function.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_jose::{Error, Jwks, JwksCache, SigningKey, Verifier};

use crate::support::{AUDIENCE, ISSUER, NOW, claims, es256};

/// A fake issuer: the JWKS it serves and how often it was fetched.
#[derive(Clone, Default)]
struct FakeIssuer {
    jwks: Arc<Mutex<Jwks>>,
    fetches: Arc<AtomicUsize>,
}

impl FakeIssuer {
    fn publish(&self, keys: &[&SigningKey]) {
        *self.jwks.lock().unwrap() = Jwks {
            keys: keys.iter().map(|k| k.public_jwk().clone()).collect(),
        };
    }

    fn cache(&self, min_refresh_interval: u64) -> JwksCache {
        let issuer = self.clone();
        JwksCache::new(
            move || {
                let issuer = issuer.clone();
                async move {
                    issuer.fetches.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(issuer.jwks.lock().unwrap().clone())
                }
            },
            min_refresh_interval,
        )
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn verifier() -> Verifier {
    Verifier::new(ISSUER, AUDIENCE)
}

#[tokio::test]
async fn fetches_on_first_use_then_serves_from_cache() {
    let issuer = FakeIssuer::default();
    let key = es256();
    issuer.publish(&[&key]);
    let cache = issuer.cache(30);
    let token = key.sign(&claims()).unwrap();
    cache.verify(&verifier(), &token, NOW).await.unwrap();
    cache.verify(&verifier(), &token, NOW + 1).await.unwrap();
    assert_eq!(issuer.fetches(), 1);
}

#[tokio::test]
async fn refreshes_on_unknown_kid() {
    let issuer = FakeIssuer::default();
    let old = es256();
    issuer.publish(&[&old]);
    let cache = issuer.cache(30);
    cache
        .verify(&verifier(), &old.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap();

    // The issuer rotates; a token with the new kid makes the cache refetch.
    let new = es256();
    issuer.publish(&[&old, &new]);
    let token = new.sign(&claims()).unwrap();
    cache.verify(&verifier(), &token, NOW + 31).await.unwrap();
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn unknown_kid_refreshes_are_rate_limited() {
    let issuer = FakeIssuer::default();
    let key = es256();
    issuer.publish(&[&key]);
    let cache = issuer.cache(30);
    cache
        .verify(&verifier(), &key.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap();

    // A stream of tokens with unpublished kids: one refetch per 30 s at most.
    let stranger = es256();
    let token = stranger.sign(&claims()).unwrap();
    for t in 0..30 {
        let err = cache
            .verify(&verifier(), &token, NOW + t)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnknownKid(_)), "{err}");
    }
    assert_eq!(
        issuer.fetches(),
        1,
        "no refetch within 30 s of the first fetch"
    );
    let _ = cache.verify(&verifier(), &token, NOW + 30).await;
    let _ = cache.verify(&verifier(), &token, NOW + 31).await;
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn first_fetch_failure_denies() {
    let cache = JwksCache::new(
        || async { Err::<Jwks, _>(Error::Fetch("connection refused".into())) },
        30,
    );
    let token = es256().sign(&claims()).unwrap();
    let err = cache.verify(&verifier(), &token, NOW).await.unwrap_err();
    assert!(matches!(err, Error::Fetch(_)), "{err}");
}

#[tokio::test]
async fn stale_keys_are_refetched_after_max_age() {
    let issuer = FakeIssuer::default();
    let key = es256();
    issuer.publish(&[&key]);
    let cache = issuer.cache(30).with_max_age(600);
    let token = key.sign(&claims()).unwrap();
    cache.verify(&verifier(), &token, NOW).await.unwrap();
    cache.verify(&verifier(), &token, NOW + 599).await.unwrap();
    assert_eq!(issuer.fetches(), 1);
    cache.verify(&verifier(), &token, NOW + 600).await.unwrap();
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch_and_all_succeed() {
    let issuer = FakeIssuer::default();
    let old = es256();
    issuer.publish(&[&old]);
    let slow = issuer.clone();
    // The fetch yields once, so the second verification waits on the first one's fetch.
    let cache = JwksCache::new(
        move || {
            let issuer = slow.clone();
            async move {
                tokio::task::yield_now().await;
                issuer.fetches.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(issuer.jwks.lock().unwrap().clone())
            }
        },
        30,
    );
    cache
        .verify(&verifier(), &old.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap();
    let new = es256();
    issuer.publish(&[&old, &new]);
    let token = new.sign(&claims()).unwrap();
    let v = verifier();
    let (a, b) = tokio::join!(
        cache.verify(&v, &token, NOW + 31),
        cache.verify(&v, &token, NOW + 31)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(issuer.fetches(), 2);
}
