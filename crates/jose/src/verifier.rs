//! Strict JWT verification (RFC 7519 §7.2, with the RFC 8725 best current practices).

use serde_json::{Map, Value};

use crate::{Algorithm, Error, VerificationKeys, b64_decode};

/// Default bound on a token's length: 16 KiB, far above any ID token this issuer mints.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
/// Default allowed clock skew for `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;

/// Checks tokens for one issuer and one audience.
///
/// In order, and failing closed at each step: length ≤ the bound; three base64url parts; a
/// JSON object header whose `alg` is ES256, RS256 or EdDSA (never `none` or `HS*`) and without
/// `crit`; the key chosen by `kid` (required when the set has several keys); `alg` equal to
/// that key's algorithm (RFC 8725 §3.1: no algorithm confusion); the signature; a JSON object
/// payload; `iss` exactly equal; `aud` (string or array) containing the audience; `exp`
/// required and `now < exp + leeway`; `nbf`, when present, `≤ now + leeway`; `iat` required
/// and `≤ now + leeway`.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuer: String,
    audience: String,
    leeway: u64,
    max_token_len: usize,
}

/// A token that passed every check of a [`Verifier`]. It can only be made by verification.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// Every claim of the payload (a JSON object).
    pub claims: Value,
    /// The `kid` of the key that verified it, if the token named one.
    pub kid: Option<String>,
    /// The algorithm of its signature.
    pub algorithm: Algorithm,
    /// The `typ` header (`JWT`, `at+jwt`, …), if present.
    pub typ: Option<String>,
    /// `iss`, equal to the verifier's issuer.
    pub issuer: String,
    /// `sub`, if present.
    pub subject: Option<String>,
    /// `aud`, as a list.
    pub audiences: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// `iat`, Unix seconds.
    pub issued_at: u64,
}

impl VerifiedToken {
    /// A string claim, if present and a string.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

impl Verifier {
    /// A verifier for tokens of `issuer` meant for `audience`, with the default skew (60 s)
    /// and size bound (16 KiB).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Verifier {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY_SECS,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// Sets the allowed clock skew in seconds.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Sets the largest token length accepted, in bytes.
    pub fn with_max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// The expected issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The expected audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies `token` against `keys` at time `now` (Unix seconds).
    pub fn verify(
        &self,
        token: &str,
        keys: &VerificationKeys,
        now: u64,
    ) -> Result<VerifiedToken, Error> {
        if token.len() > self.max_token_len {
            return Err(Error::TokenTooLarge {
                len: token.len(),
                max: self.max_token_len,
            });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed("a JWS has three dot-separated parts"));
        };

        let header = decode_object(header_b64, "header is not a base64url JSON object")?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => Algorithm::from_name(alg)?,
            _ => return Err(Error::Malformed("header has no alg")),
        };
        if header.contains_key("crit") {
            return Err(Error::CriticalHeader);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(Error::Malformed("kid is not a string")),
        };
        let typ = match header.get("typ") {
            None => None,
            Some(Value::String(typ)) => Some(typ.clone()),
            Some(_) => return Err(Error::Malformed("typ is not a string")),
        };
        let key = keys.select(kid)?;
        if key.algorithm() != alg {
            return Err(Error::AlgorithmMismatch {
                token: alg.as_str(),
                key: key.algorithm().as_str(),
            });
        }

        // The signing input is the two encoded parts as they appear (RFC 7515 §5.2 step 8).
        let signing_input_len = header_b64.len() + 1 + payload_b64.len();
        let signing_input = token
            .get(..signing_input_len)
            .ok_or(Error::Malformed("token is truncated"))?;
        if b64_decode(signature_b64).is_none() {
            return Err(Error::Malformed("signature is not base64url"));
        }
        let valid = jsonwebtoken::crypto::verify(
            signature_b64,
            signing_input.as_bytes(),
            key.decoding_key(),
            alg.to_jsonwebtoken(),
        )
        .map_err(|_| Error::BadSignature)?;
        if !valid {
            return Err(Error::BadSignature);
        }

        let claims = decode_object(payload_b64, "payload is not a base64url JSON object")?;
        let mut verified = self.check_claims(claims, kid, alg, now)?;
        verified.typ = typ;
        Ok(verified)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        kid: Option<&str>,
        algorithm: Algorithm,
        now: u64,
    ) -> Result<VerifiedToken, Error> {
        let issuer = match claims.get("iss") {
            Some(Value::String(iss)) => iss.clone(),
            _ => return Err(Error::MissingClaim("iss")),
        };
        if issuer != self.issuer {
            return Err(Error::IssuerMismatch {
                expected: self.issuer.clone(),
            });
        }
        let audiences = match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(Error::MissingClaim("aud"))?,
            _ => return Err(Error::MissingClaim("aud")),
        };
        if !audiences.contains(&self.audience) {
            return Err(Error::AudienceMismatch {
                expected: self.audience.clone(),
            });
        }
        let exp = numeric_date(&claims, "exp")?.ok_or(Error::MissingClaim("exp"))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(Error::Expired { exp });
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")?
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(Error::NotYetValid { nbf });
        }
        let iat = numeric_date(&claims, "iat")?.ok_or(Error::MissingClaim("iat"))?;
        if iat > now.saturating_add(self.leeway) {
            return Err(Error::IssuedInFuture { iat });
        }
        let subject = match claims.get("sub") {
            None => None,
            Some(Value::String(sub)) => Some(sub.clone()),
            Some(_) => return Err(Error::MissingClaim("sub")),
        };
        Ok(VerifiedToken {
            claims: Value::Object(claims),
            kid: kid.map(str::to_owned),
            algorithm,
            typ: None,
            issuer,
            subject,
            audiences,
            expires_at: exp,
            issued_at: iat,
        })
    }
}

fn decode_object(part: &str, what: &'static str) -> Result<Map<String, Value>, Error> {
    let bytes = b64_decode(part).ok_or(Error::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::Malformed(what)),
    }
}

/// A NumericDate (RFC 7519 §2): non-negative seconds, fractions truncated.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, Error> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(secs) = n.as_u64() {
                return Ok(Some(secs));
            }
            match n.as_f64() {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
                    Ok(Some(f.trunc() as u64))
                }
                _ => Err(Error::MissingClaim(name)),
            }
        }
        Some(_) => Err(Error::MissingClaim(name)),
    }
}
