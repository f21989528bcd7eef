//! Key generation, PKCS#8 round trips, JWK and thumbprints.

use portcullis_jose::{Algorithm, Jwk, KeySpec, SigningKey, Verifier};

use crate::support::{AUDIENCE, ISSUER, NOW, claims, keys_of};

fn check_spec(spec: KeySpec) {
    let key = SigningKey::generate(spec).unwrap();
    assert_eq!(key.algorithm(), spec.algorithm());
    let jwk = key.public_jwk();
    assert_eq!(jwk.kid.as_deref(), Some(key.kid()));
    assert_eq!(jwk.alg.as_deref(), Some(spec.algorithm().as_str()));
    assert_eq!(jwk.use_.as_deref(), Some("sig"));

    // PKCS#8 round trip keeps the key (same kid) and it still signs verifiable tokens.
    let again = SigningKey::from_pkcs8(key.algorithm(), &key.to_pkcs8()).unwrap();
    assert_eq!(again.kid(), key.kid());
    let token = again.sign(&claims()).unwrap();
    let verified = Verifier::new(ISSUER, AUDIENCE)
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap();
    assert_eq!(verified.kid.as_deref(), Some(key.kid()));
    assert_eq!(verified.algorithm, spec.algorithm());
    assert_eq!(verified.subject.as_deref(), Some("alice"));

    // Our thumbprint agrees with jsonwebtoken's independent RFC 7638 implementation.
    let theirs: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(serde_json::to_value(jwk).unwrap()).unwrap();
    assert_eq!(
        theirs
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap(),
        key.kid()
    );
}

#[test]
fn es256_keys() {
    check_spec(KeySpec::Es256);
}

#[test]
fn rs256_2048_keys() {
    check_spec(KeySpec::Rs256Bits2048);
}

#[test]
fn rs256_3072_keys() {
    check_spec(KeySpec::Rs256Bits3072);
}

#[test]
fn ed25519_keys() {
    check_spec(KeySpec::Ed25519);
}

#[test]
fn default_spec_is_es256() {
    assert_eq!(KeySpec::default().algorithm(), Algorithm::ES256);
}

#[test]
fn rfc7638_example_thumbprint() {
    // RFC 7638 §3.1.
    let jwk: Jwk = serde_json::from_str(
        r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
    )
    .unwrap();
    assert_eq!(
        jwk.thumbprint().unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn pkcs8_of_another_algorithm_is_refused() {
    let ec = SigningKey::generate(KeySpec::Es256).unwrap();
    assert!(SigningKey::from_pkcs8(Algorithm::EdDSA, &ec.to_pkcs8()).is_err());
    assert!(SigningKey::from_pkcs8(Algorithm::RS256, &ec.to_pkcs8()).is_err());
    assert!(SigningKey::from_pkcs8(Algorithm::ES256, b"not a key").is_err());
}

#[test]
fn debug_does_not_print_the_private_key() {
    let key = SigningKey::generate(KeySpec::Es256).unwrap();
    let printed = format!("{key:?}");
    assert!(printed.contains(key.kid()));
    assert!(!printed.contains("pkcs8"));
}

#[test]
fn sign_refuses_non_object_claims() {
    let key = SigningKey::generate(KeySpec::Es256).unwrap();
    assert!(key.sign(&serde_json::json!(["a"])).is_err());
}
