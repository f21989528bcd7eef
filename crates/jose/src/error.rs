//! The one error type of this crate.

/// Why a key could not be made or read, or why a token was refused.
///
/// Every verification failure is an error: nothing in this crate falls back to accepting
/// a token it could not check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key generation, import or export failed.
    #[error("key error: {0}")]
    Key(String),
    /// A JWK or JWKS document could not be used.
    #[error("invalid JWK: {0}; publish keys with kty, crv/x/y (EC, OKP) or n/e (RSA)")]
    Jwk(String),
    /// Claims could not be serialised or the signature could not be computed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The token is longer than the verifier accepts.
    #[error("token is {len} bytes, more than the {max} accepted")]
    TokenTooLarge {
        /// Length of the presented token.
        len: usize,
        /// The verifier's bound.
        max: usize,
    },
    /// The token is not a well-formed compact JWS carrying a JSON object.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token's `alg` is not one this crate verifies (`none`, `HS*`, …).
    #[error("token algorithm {0:?} is not accepted; only ES256, RS256 and EdDSA are")]
    UnsupportedAlgorithm(String),
    /// The token's `alg` differs from the algorithm of the key it names.
    #[error("token algorithm {token} does not match the key's algorithm {key}")]
    AlgorithmMismatch {
        /// `alg` from the token header.
        token: &'static str,
        /// Algorithm of the selected key.
        key: &'static str,
    },
    /// The token has a `crit` header, whose extensions this crate does not understand (RFC 7515 §4.1.11).
    #[error("token has a crit header, which is not supported")]
    CriticalHeader,
    /// The key set has several keys and the token names none.
    #[error("token has no kid and the key set has several keys")]
    MissingKid,
    /// No key in the key set matches the token's `kid` (or, without `kid`, the set is empty).
    #[error("no key with kid {0:?} in the key set")]
    UnknownKid(String),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// A required claim is absent or has the wrong JSON type.
    #[error("claim {0:?} is missing or has the wrong type")]
    MissingClaim(&'static str),
    /// `iss` is not the expected issuer.
    #[error("token issuer does not match the expected issuer {expected:?}")]
    IssuerMismatch {
        /// The issuer the verifier expects.
        expected: String,
    },
    /// `aud` does not contain the expected audience.
    #[error("token audience does not contain {expected:?}")]
    AudienceMismatch {
        /// The audience the verifier expects.
        expected: String,
    },
    /// `exp` is in the past (beyond the allowed skew).
    #[error("token expired at {exp}")]
    Expired {
        /// The token's `exp`.
        exp: u64,
    },
    /// `nbf` is in the future (beyond the allowed skew).
    #[error("token is not valid before {nbf}")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
    },
    /// `iat` is in the future (beyond the allowed skew).
    #[error("token was issued in the future ({iat}); check the clocks of issuer and verifier")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: u64,
    },
    /// Fetching a remote JWKS failed.
    #[error("fetching the JWKS failed: {0}")]
    Fetch(String),
}
