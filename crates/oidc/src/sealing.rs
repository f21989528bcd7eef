//! Secrets at rest: AES-256-GCM with a fresh random 96-bit nonce per seal (NIST SP 800-38D
//! §8.2.2 allows 2^32 random nonces per key, far beyond the writes of a key set), the store
//! key as additional authenticated data so a sealed value cannot be moved to another key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Largest sealed document read back (a key set with a few RSA-3072 keys is ~10 KiB).
const MAX_SEALED_LEN: usize = 256 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    alg: String,
    nonce: String,
    ciphertext: String,
}

/// Seals and opens values with the data-encryption key.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub(crate) fn new(key: &[u8; 32]) -> Result<Self, Error> {
        let key = UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::Crypto("bad AES key"))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// Encrypts `plaintext` bound to `context` (the store key); returns the stored JSON.
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Crypto("no randomness"))?;
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| Error::Crypto("AES-GCM seal failed"))?;
        serde_json::to_vec(&Sealed {
            alg: "A256GCM".into(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ciphertext: URL_SAFE_NO_PAD.encode(&in_out),
        })
        .map_err(|_| Error::Crypto("encoding the sealed value failed"))
    }

    /// Decrypts a value written by [`Sealer::seal`] under the same `context`.
    pub(crate) fn open(&self, context: &str, stored: &[u8]) -> Result<Vec<u8>, Error> {
        let fail = || Error::Unseal(context.to_owned());
        if stored.len() > MAX_SEALED_LEN {
            return Err(fail());
        }
        let sealed: Sealed = serde_json::from_slice(stored).map_err(|_| fail())?;
        if sealed.alg != "A256GCM" {
            return Err(fail());
        }
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(fail)?;
        let mut in_out = URL_SAFE_NO_PAD
            .decode(&sealed.ciphertext)
            .map_err(|_| fail())?;
        let plaintext = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| fail())?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_nonces() {
        let sealer = Sealer::new(&[7; 32]).unwrap();
        let a = sealer.seal("/oidc/keys", b"secret").unwrap();
        let b = sealer.seal("/oidc/keys", b"secret").unwrap();
        assert_ne!(a, b, "each seal draws a new nonce");
        assert!(!String::from_utf8_lossy(&a).contains("secret"));
        assert_eq!(sealer.open("/oidc/keys", &a).unwrap(), b"secret");
    }

    #[test]
    fn wrong_key_context_or_tampering_fails() {
        let sealer = Sealer::new(&[7; 32]).unwrap();
        let sealed = sealer.seal("/oidc/keys", b"secret").unwrap();
        assert!(
            Sealer::new(&[8; 32])
                .unwrap()
                .open("/oidc/keys", &sealed)
                .is_err()
        );
        assert!(sealer.open("/oidc/other", &sealed).is_err());
        let mut doc: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        doc["ciphertext"] = serde_json::json!("AAAA");
        assert!(
            sealer
                .open("/oidc/keys", &serde_json::to_vec(&doc).unwrap())
                .is_err()
        );
    }
}
