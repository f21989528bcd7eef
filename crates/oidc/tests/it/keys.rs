//! Signing keys: sealed in the store, kept across restarts over redb, rotated on schedule.

use std::sync::Arc;

use portcullis_jose::unix_now;
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
    let config = ProviderConfig::new("https://mgmt.example.com/dex");
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
