//! JOSE for portcullis: the keys of the issuer and the verifier every other component uses.
//!
//! - [`SigningKey`]: ES256 (default), RS256 (2048/3072 bits) or EdDSA (Ed25519) keys, generated
//!   with aws-lc-rs, exported and imported as PKCS#8 (the caller encrypts it at rest), with
//!   `kid` = the RFC 7638 JWK thumbprint. [`SigningKey::sign`] makes a compact JWS (RFC 7515)
//!   with `kid` and `typ: JWT`.
//! - [`Jwk`] and [`Jwks`]: public keys as RFC 7517 JSON; [`VerificationKeys`] is a JWKS parsed
//!   into usable keys.
//! - [`Verifier`]: strict JWT verification (RFC 7519, RFC 8725): size bound, `alg` pinned to the
//!   key's algorithm, `kid`, signature, `iss`, `aud`, `exp`/`nbf`/`iat` with bounded skew.
//!   Success is a [`VerifiedToken`]; anything else is an [`Error`].
//! - [`KeySet`]: keys of several algorithms at once (ES256 and RS256 by default), each with a
//!   rotation schedule (next → active → retired → removed).
//! - [`JwksCache`]: a remote JWKS for verifiers, refreshed on an unknown `kid`, rate-limited.
//!
//! Time is always passed in as Unix seconds (`now`), so every schedule is deterministic in tests;
//! [`unix_now`] reads the system clock.
#![deny(missing_docs)]

mod error;
mod jwk;
mod jwks_cache;
mod key_set;
mod signing_key;
mod verifier;

pub use error::Error;
pub use jwk::{Jwk, Jwks, VerificationKey, VerificationKeys};
pub use jwks_cache::{JwksCache, JwksFetcher};
pub use key_set::{KeySet, KeyState, RotationPolicy};
pub use signing_key::{Algorithm, KeySpec, SigningKey};
pub use verifier::{DEFAULT_LEEWAY_SECS, DEFAULT_MAX_TOKEN_LEN, VerifiedToken, Verifier};

/// The system clock as Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`unix_now`] from the kernel's coarse clock where there is one: at most a scheduler tick
/// behind, read without the time stamp counter, at a fraction of the cost. For checks on a
/// request's path that count whole seconds (the expiry of a cached identity).
pub fn unix_now_coarse() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        u64::try_from(now.tv_sec).unwrap_or(0)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        unix_now()
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}
