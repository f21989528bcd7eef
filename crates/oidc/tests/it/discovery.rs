//! Discovery and JWKS fetched by `openidconnect`, and ID tokens it verifies.

use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm};
use openidconnect::{ClientId, JsonWebKey, Nonce};
use portcullis_jose::{KeySpec, unix_now};
use portcullis_oidc::{Provider, ProviderConfig};
use serde_json::json;

use crate::support::{ENCRYPTION_KEY, Http, Served, memory_store};

#[tokio::test]
async fn discovery_and_jwks_at_a_path_prefixed_issuer() {
    let served = Served::start("/dex", memory_store()).await;
    let metadata = served.discover().await;
    assert_eq!(metadata.issuer().as_str(), served.issuer);
    assert_eq!(
        metadata.jwks_uri().as_str(),
        format!("{}/keys", served.issuer)
    );
    assert_eq!(
        metadata.authorization_endpoint().as_str(),
        format!("{}/auth", served.issuer)
    );
    assert_eq!(
        metadata.id_token_signing_alg_values_supported(),
        &vec![
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
        ],
        "OpenID Connect Discovery 1.0 §3: RS256 must be listed"
    );
    // Active and next keys of each algorithm are published, with the provider's kids.
    let published: Vec<String> = metadata
        .jwks()
        .keys()
        .iter()
        .map(|k| k.key_id().unwrap().to_string())
        .collect();
    let ours: Vec<String> = served
        .provider
        .jwks()
        .keys
        .into_iter()
        .map(|k| k.kid.unwrap())
        .collect();
    assert_eq!(published.len(), 4);
    assert_eq!(published, ours);
    served.stop().await;
}

#[tokio::test]
async fn discovery_at_a_root_issuer() {
    let served = Served::start("", memory_store()).await;
    let metadata = served.discover().await;
    assert_eq!(metadata.issuer().as_str(), served.issuer);
    assert_eq!(
        metadata.jwks_uri().as_str(),
        format!("{}/keys", served.issuer)
    );
    served.stop().await;
}

#[tokio::test]
async fn wrong_prefix_is_not_served() {
    let served = Served::start("/dex", memory_store()).await;
    let root = served.issuer.trim_end_matches("/dex");
    let status = reqwest::get(format!("{root}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    served.stop().await;
}

async fn openidconnect_verifies_tokens_signed_with(spec: KeySpec, alg: CoreJwsSigningAlgorithm) {
    let served = Served::start_with("/dex", memory_store(), |c| ProviderConfig {
        signing_keys: vec![spec],
        ..c
    })
    .await;
    let metadata = served.discover().await;
    assert_eq!(
        metadata.id_token_signing_alg_values_supported(),
        &vec![alg.clone()]
    );
    let now = unix_now();
    let token = served
        .provider
        .sign(&json!({
            "iss": served.issuer, "sub": "alice", "aud": "kubectl",
            "iat": now, "exp": now + 300, "nonce": "n-0S6_WzA2Mj",
        }))
        .unwrap();
    let id_token: CoreIdToken = token.parse().unwrap();
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new("kubectl".into()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs(vec![alg]);
    let claims = id_token
        .claims(&verifier, &Nonce::new("n-0S6_WzA2Mj".into()))
        .unwrap();
    assert_eq!(claims.subject().as_str(), "alice");
    served.stop().await;
}

#[tokio::test]
async fn openidconnect_verifies_es256_id_tokens() {
    openidconnect_verifies_tokens_signed_with(
        KeySpec::Es256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    )
    .await;
}

#[tokio::test]
async fn openidconnect_verifies_rs256_id_tokens() {
    openidconnect_verifies_tokens_signed_with(
        KeySpec::Rs256Bits2048,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
}

#[tokio::test]
async fn openidconnect_verifies_eddsa_id_tokens() {
    openidconnect_verifies_tokens_signed_with(KeySpec::Ed25519, CoreJwsSigningAlgorithm::EdDsa)
        .await;
}

#[tokio::test]
async fn invalid_issuers_are_refused() {
    for issuer in [
        "http://mgmt.example.com",
        "https://mgmt.example.com/dex?x=1",
        "https://mgmt.example.com/#frag",
        "https://user@mgmt.example.com",
        "not a url",
    ] {
        let err = Provider::new(ProviderConfig::new(issuer), memory_store(), ENCRYPTION_KEY)
            .await
            .unwrap_err();
        assert!(
            matches!(err, portcullis_oidc::Error::Config(_)),
            "{issuer}: {err}"
        );
    }
    let _ = Http::new();
}
