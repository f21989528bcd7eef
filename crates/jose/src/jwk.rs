//! Public keys as JSON Web Keys (RFC 7517) and their parsed, verification-ready form.

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

use crate::{Algorithm, Error, b64, b64_decode};

/// Largest JWKS document [`Jwks::from_json`] reads.
const MAX_JWKS_LEN: usize = 64 * 1024;
/// Most keys [`Jwks::from_json`] accepts in one set.
const MAX_JWKS_KEYS: usize = 64;

/// One public JSON Web Key (RFC 7517 §4). Private members are never read or written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`, `RSA` or `OKP`.
    pub kty: String,
    /// Intended use; `sig` for every key this crate publishes.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Algorithm the key is used with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Curve (`P-256`, `Ed25519`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, or the OKP public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Jwk {
    fn empty(kty: &str) -> Self {
        Jwk {
            kty: kty.to_owned(),
            use_: None,
            alg: None,
            kid: None,
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        }
    }

    pub(crate) fn ec_p256(x: String, y: String) -> Self {
        Jwk {
            crv: Some("P-256".into()),
            x: Some(x),
            y: Some(y),
            ..Jwk::empty("EC")
        }
    }

    pub(crate) fn rsa(n: String, e: String) -> Self {
        Jwk {
            n: Some(n),
            e: Some(e),
            ..Jwk::empty("RSA")
        }
    }

    pub(crate) fn okp_ed25519(x: String) -> Self {
        Jwk {
            crv: Some("Ed25519".into()),
            x: Some(x),
            ..Jwk::empty("OKP")
        }
    }

    /// Sets `kid` to the thumbprint, `alg` and `use: sig`.
    pub(crate) fn with_thumbprint_kid(mut self, alg: Algorithm) -> Result<Self, Error> {
        self.kid = Some(self.thumbprint()?);
        self.alg = Some(alg.as_str().to_owned());
        self.use_ = Some("sig".to_owned());
        Ok(self)
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the hash of the required members in
    /// lexicographic order, without whitespace (§3.2). The members are base64url strings and
    /// fixed names, so no JSON escaping is needed.
    pub fn thumbprint(&self) -> Result<String, Error> {
        fn need<'a>(kty: &str, v: &'a Option<String>, name: &str) -> Result<&'a str, Error> {
            v.as_deref()
                .ok_or_else(|| Error::Jwk(format!("{kty} key without {name}")))
        }
        let kty = self.kty.as_str();
        let canonical = match self.kty.as_str() {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                need(kty, &self.crv, "crv")?,
                need(kty, &self.x, "x")?,
                need(kty, &self.y, "y")?
            ),
            "RSA" => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                need(kty, &self.e, "e")?,
                need(kty, &self.n, "n")?
            ),
            "OKP" => format!(
                r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                need(kty, &self.crv, "crv")?,
                need(kty, &self.x, "x")?
            ),
            other => return Err(Error::Jwk(format!("unsupported kty {other:?}"))),
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        Ok(b64(digest.as_ref()))
    }
}

/// A JWK Set (RFC 7517 §5): the document served at the issuer's `jwks_uri`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document, bounded to 64 KiB and 64 keys.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_JWKS_LEN {
            return Err(Error::Jwk(format!(
                "JWKS document is {} bytes, more than {MAX_JWKS_LEN}",
                bytes.len()
            )));
        }
        let jwks: Jwks = serde_json::from_slice(bytes).map_err(|e| Error::Jwk(e.to_string()))?;
        if jwks.keys.len() > MAX_JWKS_KEYS {
            return Err(Error::Jwk(format!(
                "JWKS has {} keys, more than {MAX_JWKS_KEYS}",
                jwks.keys.len()
            )));
        }
        Ok(jwks)
    }
}

/// A public key ready to verify signatures, with the one algorithm it verifies.
#[derive(Clone)]
pub struct VerificationKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// Reads a public JWK. The algorithm comes from the key type (EC P-256 → ES256, RSA → RS256,
    /// OKP Ed25519 → EdDSA); a JWK `alg` that says otherwise, a `use` other than `sig`, another
    /// curve, or an RSA modulus under 2048 bits is refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, Error> {
        if let Some(u) = jwk.use_.as_deref()
            && u != "sig"
        {
            return Err(Error::Jwk(format!("key use {u:?} is not sig")));
        }
        let coordinate = |v: &Option<String>, name: &str, len: usize| {
            let bytes = v
                .as_deref()
                .and_then(b64_decode)
                .ok_or_else(|| Error::Jwk(format!("{} key: {name} is not base64url", jwk.kty)))?;
            if bytes.len() != len {
                return Err(Error::Jwk(format!(
                    "{} key: {name} is not {len} bytes",
                    jwk.kty
                )));
            }
            Ok(bytes)
        };
        let (alg, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let x = coordinate(&jwk.x, "x", 32)?;
                let y = coordinate(&jwk.y, "y", 32)?;
                let key = DecodingKey::from_ec_components(&b64(&x), &b64(&y))
                    .map_err(|e| Error::Jwk(e.to_string()))?;
                (Algorithm::ES256, key)
            }
            ("OKP", Some("Ed25519")) => {
                let x = coordinate(&jwk.x, "x", 32)?;
                let key = DecodingKey::from_ed_components(&b64(&x))
                    .map_err(|e| Error::Jwk(e.to_string()))?;
                (Algorithm::EdDSA, key)
            }
            ("RSA", _) => {
                let part = |v: &Option<String>, name: &str| {
                    v.as_deref()
                        .and_then(b64_decode)
                        .ok_or_else(|| Error::Jwk(format!("RSA key: {name} is not base64url")))
                };
                let n = part(&jwk.n, "n")?;
                let e = part(&jwk.e, "e")?;
                let significant = n.iter().skip_while(|b| **b == 0).count();
                if significant < 256 {
                    return Err(Error::Jwk("RSA modulus is under 2048 bits".into()));
                }
                (
                    Algorithm::RS256,
                    DecodingKey::from_rsa_raw_components(&n, &e),
                )
            }
            (kty, crv) => {
                return Err(Error::Jwk(format!(
                    "unsupported key type {kty:?} with curve {crv:?}"
                )));
            }
        };
        if let Some(declared) = jwk.alg.as_deref()
            && declared != alg.as_str()
        {
            return Err(Error::Jwk(format!(
                "key declares alg {declared:?} but is a {alg} key"
            )));
        }
        Ok(VerificationKey {
            kid: jwk.kid.clone(),
            alg,
            key,
        })
    }

    /// The key id, if the JWK had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The only algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// A JWKS parsed into verification keys; keys this crate cannot use (encryption keys, other
/// curves, short RSA moduli) are left out.
#[derive(Debug, Clone, Default)]
pub struct VerificationKeys {
    keys: Vec<VerificationKey>,
}

impl VerificationKeys {
    /// Parses every usable key of `jwks`.
    pub fn from_jwks(jwks: &Jwks) -> Self {
        VerificationKeys {
            keys: jwks
                .keys
                .iter()
                .filter_map(|k| VerificationKey::from_jwk(k).ok())
                .collect(),
        }
    }

    /// The keys.
    pub fn keys(&self) -> &[VerificationKey] {
        &self.keys
    }

    /// The key a token names: by `kid` when given; without `kid`, only if the set has exactly
    /// one key (RFC 7515 §4.1.4 leaves selection to the application; guessing among several
    /// keys is refused).
    pub fn select(&self, kid: Option<&str>) -> Result<&VerificationKey, Error> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| Error::UnknownKid(kid.chars().take(128).collect())),
            None => match self.keys.as_slice() {
                [only] => Ok(only),
                [] => Err(Error::UnknownKid(String::new())),
                _ => Err(Error::MissingKid),
            },
        }
    }
}
