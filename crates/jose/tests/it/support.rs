//! Helpers: standard claims and hand-made (forged) tokens.

use base64::Engine as _;
use portcullis_jose::{Jwks, KeySpec, SigningKey, VerificationKeys};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.example/dex";
pub const AUDIENCE: &str = "kubernetes";
pub const NOW: u64 = 1_800_000_000;

pub fn claims_at(iat: u64, exp: u64) -> Value {
    json!({ "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": iat, "exp": exp })
}

pub fn claims() -> Value {
    claims_at(NOW, NOW + 3600)
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_json(value: &Value) -> String {
    b64(&serde_json::to_vec(value).unwrap())
}

/// A token with any header and payload, signed by `sign` over the signing input.
pub fn forge(header: &Value, payload: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(payload));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

pub fn keys_of(keys: &[&SigningKey]) -> VerificationKeys {
    VerificationKeys::from_jwks(&Jwks {
        keys: keys.iter().map(|k| k.public_jwk().clone()).collect(),
    })
}

pub fn es256() -> SigningKey {
    SigningKey::generate(KeySpec::Es256).unwrap()
}
