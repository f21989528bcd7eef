//! Cookie sealing: AES-256-GCM under a rotating key ring, the cookie's purpose as additional
//! authenticated data so a login-state cookie can never be replayed as a session.
//!
//! A sealed value is `base64url(version ‖ key id ‖ nonce ‖ ciphertext ‖ tag)`: 33 bytes of
//! overhead before base64, so the session cookie stays far below 4 KB.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::Error;

const VERSION: u8 = 1;
/// Longest sealed cookie value opened (the browser limit; anything longer is not ours).
pub(crate) const MAX_SEALED_LEN: usize = 4096;

/// One key of the ring, as stored.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredKey {
    pub(crate) id: u32,
    pub(crate) created: u64,
    pub(crate) secret: String,
}

struct Key {
    id: u32,
    created: u64,
    key: LessSafeKey,
}

/// The keys in use: the newest seals, every one opens.
pub(crate) struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    pub(crate) fn from_stored(stored: &[StoredKey]) -> Result<KeyRing, Error> {
        let mut keys = Vec::with_capacity(stored.len());
        for k in stored {
            let bytes = URL_SAFE_NO_PAD
                .decode(&k.secret)
                .map_err(|_| Error::Crypto("a stored cookie key is not base64url"))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| Error::Crypto("a stored cookie key is not 32 bytes"))?;
            keys.push(Key {
                id: k.id,
                created: k.created,
                key: LessSafeKey::new(key),
            });
        }
        keys.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        if keys.is_empty() {
            return Err(Error::Crypto("the cookie key ring is empty"));
        }
        Ok(KeyRing { keys })
    }

    /// When the sealing key was made.
    #[cfg(test)]
    pub(crate) fn newest_created(&self) -> u64 {
        self.keys.first().map_or(0, |k| k.created)
    }

    /// Seals `plaintext` for `purpose` with the newest key.
    pub(crate) fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<String, Error> {
        let key = self
            .keys
            .first()
            .ok_or(Error::Crypto("the cookie key ring is empty"))?;
        let nonce = random::<NONCE_LEN>()?;
        let mut out = Vec::with_capacity(5 + NONCE_LEN + plaintext.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut body,
            )
            .map_err(|_| Error::Crypto("AES-GCM seal failed"))?;
        out.extend_from_slice(&body);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`KeyRing::seal`] sealed for `purpose`; `None` for anything else: too long,
    /// not base64url, another version, an unknown key, another purpose, tampered.
    pub(crate) fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < 5 + NONCE_LEN + 16 || raw.first() != Some(&VERSION) {
            return None;
        }
        let id = u32::from_be_bytes(raw.get(1..5)?.try_into().ok()?);
        let nonce: [u8; NONCE_LEN] = raw.get(5..5 + NONCE_LEN)?.try_into().ok()?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        let body = raw.get_mut(5 + NONCE_LEN..)?;
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                body,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

/// `N` random bytes from the system generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| Error::Crypto("no randomness"))?;
    Ok(out)
}

/// A random token: `N` bytes, base64url.
pub(crate) fn random_token<const N: usize>() -> Result<String, Error> {
    Ok(URL_SAFE_NO_PAD.encode(random::<N>()?))
}

/// A new key for the ring.
pub(crate) fn new_stored_key(created: u64) -> Result<StoredKey, Error> {
    Ok(StoredKey {
        id: u32::from_be_bytes(random::<4>()?),
        created,
        secret: URL_SAFE_NO_PAD.encode(random::<32>()?),
    })
}

/// Secrets at rest (the key ring, refresh tokens): AES-256-GCM under the data-encryption key,
/// the store key as additional authenticated data.
pub(crate) struct AtRest {
    ring: KeyRing,
}

impl AtRest {
    pub(crate) fn new(key: &[u8; 32]) -> Result<AtRest, Error> {
        let stored = StoredKey {
            id: 0,
            created: 0,
            secret: URL_SAFE_NO_PAD.encode(key),
        };
        Ok(AtRest {
            ring: KeyRing::from_stored(&[stored])?,
        })
    }

    pub(crate) fn seal(&self, store_key: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.ring.seal(store_key, plaintext)?.into_bytes())
    }

    pub(crate) fn open(&self, store_key: &str, stored: &[u8]) -> Option<Vec<u8>> {
        // Stored secrets are not bounded by the cookie limit: open without it.
        let text = std::str::from_utf8(stored).ok()?;
        let mut raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        let key = self.ring.keys.first()?;
        if raw.len() < 5 + NONCE_LEN + 16 || raw.first() != Some(&VERSION) {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = raw.get(5..5 + NONCE_LEN)?.try_into().ok()?;
        let body = raw.get_mut(5 + NONCE_LEN..)?;
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(store_key.as_bytes()),
                body,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::from_stored(&[new_stored_key(1).unwrap()]).unwrap()
    }

    #[test]
    fn round_trip_only_for_the_same_purpose_and_key() {
        let r = ring();
        let sealed = r.seal("session", b"hello").unwrap();
        assert_eq!(r.open("session", &sealed).unwrap(), b"hello");
        assert!(r.open("login", &sealed).is_none(), "purpose is bound");
        assert!(ring().open("session", &sealed).is_none(), "another key");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(r.open("session", &URL_SAFE_NO_PAD.encode(bytes)).is_none());
        assert!(r.open("session", &"A".repeat(5000)).is_none());
    }

    #[test]
    fn an_older_key_still_opens_and_the_newest_seals() {
        let old = new_stored_key(1).unwrap();
        let new = new_stored_key(2).unwrap();
        let before = KeyRing::from_stored(std::slice::from_ref(&old)).unwrap();
        let sealed = before.seal("session", b"x").unwrap();
        let after = KeyRing::from_stored(&[old, new.clone()]).unwrap();
        assert_eq!(after.open("session", &sealed).unwrap(), b"x");
        assert_eq!(after.newest_created(), 2);
        let resealed = after.seal("session", b"y").unwrap();
        let only_new = KeyRing::from_stored(&[new]).unwrap();
        assert_eq!(only_new.open("session", &resealed).unwrap(), b"y");
    }

    #[test]
    fn at_rest_is_bound_to_the_store_key() {
        let a = AtRest::new(&[3; 32]).unwrap();
        let sealed = a.seal("/k", b"refresh").unwrap();
        assert_eq!(a.open("/k", &sealed).unwrap(), b"refresh");
        assert!(a.open("/other", &sealed).is_none());
        assert!(AtRest::new(&[4; 32]).unwrap().open("/k", &sealed).is_none());
    }
}
