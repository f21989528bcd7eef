//! Signing keys: generation, PKCS#8 import/export, public JWK, compact JWS signing.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RsaKeyPair, RsaPublicKeyComponents,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Jwk, b64};

/// A JWS algorithm this crate signs and verifies (RFC 7518 §3.1, RFC 8037 §3.1).
///
/// `none` and the `HS*` family are deliberately absent: a verifier can never be talked into them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// ECDSA over P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    /// The `alg` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Parses an `alg` value; everything but `ES256`, `RS256` and `EdDSA` is refused.
    pub fn from_name(name: &str) -> Result<Self, Error> {
        match name {
            "ES256" => Ok(Algorithm::ES256),
            "RS256" => Ok(Algorithm::RS256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            other => Err(Error::UnsupportedAlgorithm(
                other.chars().take(32).collect(),
            )),
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum KeySpec {
    /// ES256 on P-256: small, fast, the default.
    #[default]
    Es256,
    /// RS256 with a 2048-bit modulus, for relying parties that know only RSA.
    Rs256Bits2048,
    /// RS256 with a 3072-bit modulus.
    Rs256Bits3072,
    /// EdDSA with Ed25519.
    Ed25519,
}

impl KeySpec {
    /// The algorithm keys of this spec sign with.
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeySpec::Es256 => Algorithm::ES256,
            KeySpec::Rs256Bits2048 | KeySpec::Rs256Bits3072 => Algorithm::RS256,
            KeySpec::Ed25519 => Algorithm::EdDSA,
        }
    }
}

enum KeyPair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A private signing key with its public JWK and `kid`.
///
/// Signing goes straight to aws-lc-rs with the key parsed once (jsonwebtoken would re-parse the
/// PKCS#8 document on every signature). `Debug` prints the `kid` and algorithm only.
pub struct SigningKey {
    pair: KeyPair,
    pkcs8: Vec<u8>,
    jwk: Jwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid())
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key from the system's secure random source.
    pub fn generate(spec: KeySpec) -> Result<Self, Error> {
        let pkcs8 = match spec {
            KeySpec::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map(|d| d.as_ref().to_vec()),
            KeySpec::Rs256Bits2048 | KeySpec::Rs256Bits3072 => {
                let size = if spec == KeySpec::Rs256Bits2048 {
                    KeySize::Rsa2048
                } else {
                    KeySize::Rsa3072
                };
                use aws_lc_rs::encoding::AsDer as _;
                RsaKeyPair::generate(size).and_then(|k| {
                    let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = k.as_der()?;
                    Ok(der.as_ref().to_vec())
                })
            }
            KeySpec::Ed25519 => Ed25519KeyPair::generate()
                .and_then(|k| k.to_pkcs8v1())
                .map(|d| d.as_ref().to_vec()),
        }
        .map_err(|_| Error::Key(format!("generating a {spec:?} key failed")))?;
        Self::from_pkcs8(spec.algorithm(), &pkcs8)
    }

    /// Reads a PKCS#8 (v1 or v2) private key for `alg`. RSA keys under 2048 bits are refused.
    pub fn from_pkcs8(alg: Algorithm, pkcs8: &[u8]) -> Result<Self, Error> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            Error::Key(format!("PKCS#8 document is not a valid {alg} key: {e}"))
        };
        let (pair, jwk) = match alg {
            Algorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(rejected)?;
                // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().as_ref();
                let (x, y) = match point {
                    [4, rest @ ..] if rest.len() == 64 => rest.split_at(32),
                    _ => return Err(Error::Key("unexpected P-256 public key encoding".into())),
                };
                let jwk = Jwk::ec_p256(b64(x), b64(y));
                (KeyPair::Es256(pair), jwk)
            }
            Algorithm::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                if pair.public_modulus_len() < 256 {
                    return Err(Error::Key("RSA keys must have at least 2048 bits".into()));
                }
                let parts = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                let jwk = Jwk::rsa(b64(&parts.n), b64(&parts.e));
                (KeyPair::Rs256(pair), jwk)
            }
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                let jwk = Jwk::okp_ed25519(b64(pair.public_key().as_ref()));
                (KeyPair::EdDsa(pair), jwk)
            }
        };
        let jwk = jwk.with_thumbprint_kid(alg)?;
        Ok(SigningKey {
            pair,
            pkcs8: pkcs8.to_vec(),
            jwk,
        })
    }

    /// The PKCS#8 document of the private key. Secret: encrypt it before storing it.
    pub fn to_pkcs8(&self) -> Vec<u8> {
        self.pkcs8.clone()
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.pair {
            KeyPair::Es256(_) => Algorithm::ES256,
            KeyPair::Rs256(_) => Algorithm::RS256,
            KeyPair::EdDsa(_) => Algorithm::EdDSA,
        }
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public key, base64url.
    pub fn kid(&self) -> &str {
        self.jwk.kid.as_deref().unwrap_or_default()
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` (any JSON object) as a compact JWS with header `{alg, kid, typ: JWT}`.
    pub fn sign<T: Serialize + ?Sized>(&self, claims: &T) -> Result<String, Error> {
        self.sign_with_typ("JWT", claims)
    }

    /// Signs `claims` with header `{alg, kid, typ}`, e.g. `typ: at+jwt` for access tokens
    /// (RFC 9068 §2.1), so that one kind of token cannot pass for another.
    pub fn sign_with_typ<T: Serialize + ?Sized>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, Error> {
        let payload = serde_json::to_vec(claims).map_err(|e| Error::Sign(e.to_string()))?;
        if !payload.starts_with(b"{") {
            return Err(Error::Sign("JWT claims must be a JSON object".into()));
        }
        let header = serde_json::json!({
            "alg": self.algorithm().as_str(),
            "kid": self.kid(),
            "typ": typ,
        });
        let header = serde_json::to_vec(&header).map_err(|e| Error::Sign(e.to_string()))?;
        let mut token = b64(&header);
        token.push('.');
        token.push_str(&b64(&payload));
        let signature = self.sign_bytes(token.as_bytes())?;
        token.push('.');
        token.push_str(&b64(&signature));
        Ok(token)
    }

    /// Raw JWS signature of `message` (RFC 7518 §3.4: ECDSA as fixed-width r || s).
    fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = |_| Error::Sign("the crypto library refused to sign".into());
        match &self.pair {
            KeyPair::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            KeyPair::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
            KeyPair::EdDsa(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}
