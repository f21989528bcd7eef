//! Signing keys: sealed in the store, kept across restarts over redb, rotated on schedule.

use std::sync::Arc;

use portcullis_jose::{Algorithm, KeySpec, unix_now};
use portcullis_oidc::{KEYS_STORE_KEY, Provider, ProviderConfig};
use portcullis_store::Store;
use portcullis_store::redb::RedbStore;

use crate::support::{ENCRYPTION_KEY, Served, memory_store};

fn kids(provider: &Provider) -> Vec<String> {
    provider
        .jwks()
        .keys
        .into_iter()
        .map(|k| k.kid.unwrap())
        .collect()
}

#[tokio::test]
async fn keys_survive_a_restart_over_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");

    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).unwrap());
    let served = Served::start("/dex", Arc::clone(&store)).await;
    let before: Vec<String> = served
        .discover()
        .await
        .jwks()
        .keys()
        .iter()
        .map(|k| openidconnect::JsonWebKey::key_id(k).unwrap().to_string())
        .collect();
    assert_eq!(before, kids(&served.provider));
    served.stop().await;
    drop(store);

    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).unwrap());
    let served = Served::start("/dex", Arc::clone(&store)).await;
    let after: Vec<String> = served
        .discover()
        .await
        .jwks()
        .keys()
        .iter()
        .map(|k| openidconnect::JsonWebKey::key_id(k).unwrap().to_string())
        .collect();
    assert_eq!(before, after);
    served.stop().await;
}

#[tokio::test]
async fn keys_are_stored_sealed() {
    let store = memory_store();
    let provider = Provider::new(
        ProviderConfig::new("https://mgmt.example.com/dex"),
        Arc::clone(&store),
        ENCRYPTION_KEY,
    )
    .await
    .unwrap();
    let stored = store.get(KEYS_STORE_KEY).await.unwrap().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&stored.value).unwrap();
    assert_eq!(doc["alg"], "A256GCM");
    let text = String::from_utf8_lossy(&stored.value);
    assert!(
        !text.contains("pkcs8"),
        "no private key material in the clear"
    );
    for kid in kids(&provider) {
        assert!(!text.contains(&kid));
    }
}

#[tokio::test]
async fn a_different_encryption_key_cannot_open_the_keys() {
    let store = memory_store();
    let config = ProviderConfig::new("https://mgmt.example.com/dex");
    Provider::new(config.clone(), Arc::clone(&store), ENCRYPTION_KEY)
        .await
        .unwrap();
    let err = Provider::new(config, Arc::clone(&store), [1; 32])
        .await
        .unwrap_err();
    assert!(matches!(err, portcullis_oidc::Error::Unseal(_)), "{err}");
}

#[tokio::test]
async fn rotation_is_stored_and_seen_by_another_replica() {
    let store = memory_store();
    // One algorithm, so that the key order is the schedule's.
    let config = ProviderConfig {
        signing_keys: vec![KeySpec::Es256],
        ..ProviderConfig::new("https://mgmt.example.com/dex")
    };
    let a = Provider::new(config.clone(), Arc::clone(&store), ENCRYPTION_KEY)
        .await
        .unwrap();
    let b = Provider::new(config.clone(), Arc::clone(&store), ENCRYPTION_KEY)
        .await
        .unwrap();
    assert_eq!(
        kids(&a),
        kids(&b),
        "the second replica uses the stored keys"
    );
    let [active, next] = kids(&a).try_into().unwrap();

    let later = unix_now() + config.key_rotation_period.as_secs() + 1;
    assert!(a.rotate_keys(later).await.unwrap());
    let rotated = kids(&a);
    assert_eq!(rotated.len(), 3);
    assert_eq!(rotated[0], next, "the published next key now signs");
    assert_eq!(rotated[2], active, "the old key stays published, retired");

    // The other replica picks the rotation up from the store instead of rotating again.
    assert!(b.rotate_keys(later).await.unwrap());
    assert_eq!(kids(&b), rotated);
    assert!(!b.rotate_keys(later).await.unwrap());

    // Tokens now carry the new active kid.
    let token = a
        .sign(&serde_json::json!({"iss": "https://mgmt.example.com/dex"}))
        .unwrap();
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], rotated[0]);
}

#[tokio::test]
async fn tokens_of_a_rotated_out_key_verify_until_its_grace_ends() {
    let issuer = "https://mgmt.example.com/dex";
    let config = ProviderConfig::new(issuer);
    let provider = Provider::new(config.clone(), memory_store(), ENCRYPTION_KEY)
        .await
        .unwrap();
    let start = unix_now();
    let claims = serde_json::json!({
        "iss": issuer, "aud": "kubectl", "sub": "alice", "iat": start, "exp": start + 3600,
    });
    let token = provider.sign(&claims).unwrap();
    let verifier = portcullis_jose::Verifier::new(issuer, "kubectl");
    assert!(
        verifier
            .verify(&token, &provider.verification_keys(), start)
            .is_ok()
    );
    // One rotation: the signing key is retired but still published for its tokens' lifetime.
    let rotated = start + config.key_rotation_period.as_secs() + 1;
    provider.rotate_keys(rotated).await.unwrap();
    let keys = provider.verification_keys();
    // (The token itself expired long ago; judge the key alone with a verifier as of `start`.)
    assert!(
        verifier.verify(&token, &keys, start).is_ok(),
        "kept in grace"
    );
    // Once every token it signed has expired (lifetime plus skew), the key is gone, and
    // a token it signed no longer verifies even by a verifier whose clock says it is valid.
    let gone = rotated + config.id_token_lifetime.as_secs() + 2 * 60 + 1;
    provider.rotate_keys(gone).await.unwrap();
    let err = verifier
        .verify(&token, &provider.verification_keys(), start)
        .unwrap_err();
    assert!(
        err.to_string().contains("kid") || err.to_string().contains("key"),
        "{err}"
    );
}

/// The `alg` of every key the relying party finds at the discovered `jwks_uri`.
async fn published_algs(served: &Served) -> Vec<String> {
    served
        .discover()
        .await
        .jwks()
        .keys()
        .iter()
        .map(|k| {
            serde_json::to_value(k).unwrap()["alg"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn discovered_algs(served: &Served) -> Vec<String> {
    served
        .discover()
        .await
        .id_token_signing_alg_values_supported()
        .iter()
        .map(|a| {
            serde_json::to_value(a)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_changed_signing_key_setting_takes_effect_at_the_next_start_through_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let clock = crate::flow::TestClock::new();
    let start = |specs: Vec<KeySpec>| {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).unwrap());
        let clock = clock.clock();
        async move {
            Served::start_full(
                "/dex",
                store,
                |c| ProviderConfig {
                    signing_keys: specs,
                    ..c
                },
                clock,
            )
            .await
        }
    };

    // An installation made with ES256 only.
    let served = start(vec![KeySpec::Es256]).await;
    assert_eq!(published_algs(&served).await, ["ES256", "ES256"]);
    served.stop().await;

    // Restarted with ES256 and RS256: the stored ES256 keys stay, an RS256 key is published at
    // once and signs only after a lead, so that verifiers caching the JWKS hold it by then.
    let served = start(vec![KeySpec::Es256, KeySpec::Rs256Bits2048]).await;
    assert_eq!(published_algs(&served).await, ["ES256", "ES256", "RS256"]);
    assert_eq!(discovered_algs(&served).await, ["ES256", "RS256"]);
    let from = served.provider.signs_from(Algorithm::RS256).unwrap();
    assert!(from > clock.now(), "published before it signs");
    served.stop().await;

    // After the lead, the next start (or the rotation loop) lets it sign.
    clock.advance(from - clock.now());
    let served = start(vec![KeySpec::Es256, KeySpec::Rs256Bits2048]).await;
    assert_eq!(served.provider.signs_from(Algorithm::RS256), None);
    assert_eq!(
        published_algs(&served).await,
        ["ES256", "ES256", "RS256", "RS256"]
    );
    let es256_issuer = served.issuer.clone();
    let es256_token = served
        .provider
        .sign(
            &serde_json::json!({"iss": served.issuer, "aud": "kubectl", "sub": "alice",
            "iat": clock.now(), "exp": clock.now() + 3600}),
        )
        .unwrap();
    served.stop().await;

    // Restarted with RS256 only: RS256 signs by default at once (it already does), ES256 stops
    // signing and stays published until its tokens have expired.
    let served = start(vec![KeySpec::Rs256Bits2048]).await;
    assert_eq!(discovered_algs(&served).await, ["RS256"]);
    assert_eq!(
        published_algs(&served).await,
        ["ES256", "RS256", "RS256"],
        "the retired ES256 key is still published; its never-used next key is gone"
    );
    // (Each start listens on a new port: the token names the issuer of its start.)
    let verifier = portcullis_jose::Verifier::new(es256_issuer, "kubectl");
    verifier
        .verify(
            &es256_token,
            &served.provider.verification_keys(),
            clock.now(),
        )
        .unwrap();
    served.stop().await;

    clock.advance(3600 + 60);
    let served = start(vec![KeySpec::Rs256Bits2048]).await;
    assert_eq!(published_algs(&served).await, ["RS256", "RS256"]);
    served.stop().await;
}
