//! The verifier: one test per way a token must be refused.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use portcullis_jose::{Error, KeySpec, SigningKey, Verifier};
use serde_json::json;

use crate::support::{AUDIENCE, ISSUER, NOW, claims, claims_at, es256, forge, keys_of};

fn verifier() -> Verifier {
    Verifier::new(ISSUER, AUDIENCE)
}

#[test]
fn accepts_a_good_token() {
    let key = es256();
    let token = key.sign(&claims()).unwrap();
    let verified = verifier().verify(&token, &keys_of(&[&key]), NOW).unwrap();
    assert_eq!(verified.issuer, ISSUER);
    assert_eq!(verified.audiences, vec![AUDIENCE.to_owned()]);
    assert_eq!(verified.expires_at, NOW + 3600);
    assert_eq!(verified.issued_at, NOW);
    assert_eq!(verified.claim_str("sub"), Some("alice"));
    assert_eq!(verified.typ.as_deref(), Some("JWT"));
}

#[test]
fn reports_the_typ_header() {
    let key = es256();
    let token = key.sign_with_typ("at+jwt", &claims()).unwrap();
    let verified = verifier().verify(&token, &keys_of(&[&key]), NOW).unwrap();
    assert_eq!(verified.typ.as_deref(), Some("at+jwt"));
}

#[test]
fn refuses_alg_none() {
    let key = es256();
    let token = forge(
        &json!({"alg": "none", "typ": "JWT", "kid": key.kid()}),
        &claims(),
        |_| Vec::new(),
    );
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedAlgorithm(ref a) if a == "none"),
        "{err}"
    );
}

#[test]
fn refuses_hs256_signed_with_the_public_key() {
    // The classic key-confusion attack: HMAC keyed with the issuer's public key material.
    let key = SigningKey::generate(KeySpec::Rs256Bits2048).unwrap();
    let public = serde_json::to_vec(key.public_jwk()).unwrap();
    let token = forge(
        &json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()}),
        &claims(),
        |input| {
            let k = hmac::Key::new(hmac::HMAC_SHA256, &public);
            hmac::sign(&k, input).as_ref().to_vec()
        },
    );
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedAlgorithm(ref a) if a == "HS256"),
        "{err}"
    );
}

#[test]
fn refuses_rs256_token_against_an_es256_key() {
    let es = es256();
    let rsa = SigningKey::generate(KeySpec::Rs256Bits2048).unwrap();
    let pair = RsaKeyPair::from_pkcs8(&rsa.to_pkcs8()).unwrap();
    // A valid RS256 signature, but naming the ES256 key.
    let token = forge(
        &json!({"alg": "RS256", "typ": "JWT", "kid": es.kid()}),
        &claims(),
        |input| {
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input, &mut sig)
                .unwrap();
            sig
        },
    );
    let err = verifier()
        .verify(&token, &keys_of(&[&es, &rsa]), NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::AlgorithmMismatch {
                token: "RS256",
                key: "ES256"
            }
        ),
        "{err}"
    );
}

#[test]
fn refuses_wrong_issuer() {
    let key = es256();
    let mut c = claims();
    c["iss"] = json!("https://issuer.example/dex/");
    let token = key.sign(&c).unwrap();
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::IssuerMismatch { .. }), "{err}");
}

#[test]
fn refuses_wrong_audience() {
    let key = es256();
    let mut c = claims();
    c["aud"] = json!(["dashboard", "kubernetes-other"]);
    let token = key.sign(&c).unwrap();
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::AudienceMismatch { .. }), "{err}");
}

#[test]
fn accepts_audience_in_a_list() {
    let key = es256();
    let mut c = claims();
    c["aud"] = json!(["dashboard", AUDIENCE]);
    let token = key.sign(&c).unwrap();
    verifier().verify(&token, &keys_of(&[&key]), NOW).unwrap();
}

#[test]
fn refuses_expired_token() {
    let key = es256();
    let token = key.sign(&claims_at(NOW - 7200, NOW - 61)).unwrap();
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    // Within the 60 s skew it still passes.
    let token = key.sign(&claims_at(NOW - 7200, NOW - 59)).unwrap();
    verifier().verify(&token, &keys_of(&[&key]), NOW).unwrap();
}

#[test]
fn refuses_token_not_yet_valid() {
    let key = es256();
    let mut c = claims();
    c["nbf"] = json!(NOW + 61);
    let token = key.sign(&c).unwrap();
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::NotYetValid { .. }), "{err}");
}

#[test]
fn refuses_iat_in_the_future_past_skew() {
    let key = es256();
    let token = key.sign(&claims_at(NOW + 61, NOW + 3600)).unwrap();
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::IssuedInFuture { .. }), "{err}");
    let token = key.sign(&claims_at(NOW + 60, NOW + 3600)).unwrap();
    verifier().verify(&token, &keys_of(&[&key]), NOW).unwrap();
}

#[test]
fn refuses_unknown_kid() {
    let signer = es256();
    let published = es256();
    let token = signer.sign(&claims()).unwrap();
    let err = verifier()
        .verify(&token, &keys_of(&[&published]), NOW)
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownKid(ref k) if k == signer.kid()),
        "{err}"
    );
}

#[test]
fn refuses_missing_kid_when_several_keys() {
    let a = es256();
    let b = es256();
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &a.to_pkcs8(),
    )
    .unwrap();
    let token = forge(&json!({"alg": "ES256", "typ": "JWT"}), &claims(), |input| {
        pair.sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    let err = verifier()
        .verify(&token, &keys_of(&[&a, &b]), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::MissingKid), "{err}");
    // With a single published key, a token without kid is verified by it.
    verifier().verify(&token, &keys_of(&[&a]), NOW).unwrap();
}

#[test]
fn refuses_tampered_payload() {
    let key = es256();
    let token = key.sign(&claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut evil = claims();
    evil["sub"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        crate::support::b64_json(&evil),
        parts[2]
    );
    let err = verifier()
        .verify(&tampered, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err}");
}

#[test]
fn refuses_oversized_token() {
    let key = es256();
    let mut c = claims();
    c["padding"] = json!("x".repeat(20 * 1024));
    let token = key.sign(&c).unwrap();
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(
        matches!(err, Error::TokenTooLarge { max: 16384, .. }),
        "{err}"
    );
}

#[test]
fn refuses_crit_header() {
    let key = es256();
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.to_pkcs8(),
    )
    .unwrap();
    let token = forge(
        &json!({"alg": "ES256", "kid": key.kid(), "crit": ["exp"], "exp": 1}),
        &claims(),
        |input| {
            pair.sign(&SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec()
        },
    );
    let err = verifier()
        .verify(&token, &keys_of(&[&key]), NOW)
        .unwrap_err();
    assert!(matches!(err, Error::CriticalHeader), "{err}");
}

#[test]
fn refuses_missing_required_claims() {
    let key = es256();
    for claim in ["iss", "aud", "exp", "iat"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        let token = key.sign(&c).unwrap();
        let err = verifier()
            .verify(&token, &keys_of(&[&key]), NOW)
            .unwrap_err();
        assert!(
            matches!(err, Error::MissingClaim(name) if name == claim),
            "{claim}: {err}"
        );
    }
}

#[test]
fn refuses_malformed_tokens() {
    let key = es256();
    let keys = keys_of(&[&key]);
    for token in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.??.**",
        "e30.e30.",
        "bnVsbA.e30.AA",
    ] {
        assert!(verifier().verify(token, &keys, NOW).is_err(), "{token:?}");
    }
}

#[test]
fn the_coarse_clock_is_the_wall_clock_in_whole_seconds() {
    // Read between two precise reads: the coarse clock lags by a tick at most, so it is within
    // a second of them (a monotonic clock, counted from boot, would be years away).
    let before = portcullis_jose::unix_now();
    let coarse = portcullis_jose::unix_now_coarse();
    let after = portcullis_jose::unix_now();
    assert!(
        before.saturating_sub(1) <= coarse && coarse <= after,
        "{before} ≤ {coarse} ≤ {after}"
    );
}
