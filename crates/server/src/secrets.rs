//! The data-encryption key that seals secrets at rest (signing keys, client secrets, cluster
//! credentials): 32 random bytes in `encryption.key` (0600) in the data directory, or from the
//! environment (`PORTCULLIS_ENCRYPTION_KEY`, base64) so that it can live outside the data
//! directory.

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::pki;

/// Environment variable that overrides the key file.
pub const ENV: &str = "PORTCULLIS_ENCRYPTION_KEY";

/// A 256-bit key. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct EncryptionKey(pub [u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(…)")
    }
}

/// Reads the key from the environment or `dir/encryption.key`, creating the file on first start.
pub fn load_or_create(dir: &Path) -> Result<EncryptionKey> {
    if let Ok(b64) = std::env::var(ENV) {
        return decode(&b64).with_context(|| format!("{ENV} must be 32 bytes in base64"));
    }
    let path = dir.join("encryption.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return decode(&text)
            .with_context(|| format!("{} is not a base64 32-byte key", path.display()));
    }
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    pki::write_private(&path, STANDARD.encode(key).as_bytes())?;
    Ok(EncryptionKey(key))
}

fn decode(b64: &str) -> Result<EncryptionKey> {
    let bytes = STANDARD.decode(b64.trim())?;
    let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!("the key has {} bytes, not 32", bytes.len());
    };
    Ok(EncryptionKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.0, b.0);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("encryption.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(format!("{a:?}"), "EncryptionKey(…)");
    }
}
