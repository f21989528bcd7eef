//! Secrets that connectors need (an LDAP service account's bind password), kept sealed in
//! the store under the data-encryption key, addressed as a `SecretKeySelector` (name and key).
//! They are never part of an object, so `get` cannot print them.

use secrecy::{ExposeSecret as _, SecretString};

use crate::Error;
use crate::provider::Provider;

/// Store prefix of sealed secrets.
const SECRETS: &str = "/oidc/secrets/";
/// Longest secret value accepted.
pub const MAX_SECRET_LEN: usize = 4096;

/// Whether `s` can name a secret or one of its keys: 1–253 characters of `[A-Za-z0-9._-]`,
/// never `.` or `..` (so no other store key can be addressed).
fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn store_key(name: &str, key: &str) -> Result<String, Error> {
    if valid_part(name) && valid_part(key) {
        Ok(format!("{SECRETS}{name}/{key}"))
    } else {
        Err(Error::Config(format!(
            "secret {name:?} key {key:?}: names and keys are 1-253 letters, digits, '-', '_' or '.'"
        )))
    }
}

impl Provider {
    /// Seals `value` as key `key` of secret `name` (replacing an earlier value) and tells
    /// [`Provider::secrets_changed`] waiters.
    pub async fn put_secret(
        &self,
        name: &str,
        key: &str,
        value: &SecretString,
    ) -> Result<(), Error> {
        let store_key = store_key(name, key)?;
        if value.expose_secret().len() > MAX_SECRET_LEN {
            return Err(Error::Config(format!(
                "the secret value is longer than {MAX_SECRET_LEN} bytes"
            )));
        }
        let sealed = self.seal(&store_key, value.expose_secret().as_bytes())?;
        match self.store().update(&store_key, sealed.clone(), None).await {
            Ok(_) => {}
            Err(portcullis_store::StoreError::NotFound(_)) => {
                match self.store().create(&store_key, sealed.clone()).await {
                    Ok(_) => {}
                    // Created concurrently: ours is the later write.
                    Err(portcullis_store::StoreError::AlreadyExists(_)) => {
                        self.store().update(&store_key, sealed, None).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.notify_secrets_changed();
        Ok(())
    }

    /// Deletes key `key` of secret `name` (nothing when it is not set) and tells
    /// [`Provider::secrets_changed`] waiters.
    pub async fn delete_secret(&self, name: &str, key: &str) -> Result<(), Error> {
        let store_key = store_key(name, key)?;
        match self.store().delete(&store_key, None).await {
            Ok(_) | Err(portcullis_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.notify_secrets_changed();
        Ok(())
    }

    /// The value of key `key` of secret `name`, if set.
    pub async fn secret(&self, name: &str, key: &str) -> Result<Option<SecretString>, Error> {
        let store_key = store_key(name, key)?;
        let Some(kv) = self.store().get(&store_key).await? else {
            return Ok(None);
        };
        let plain = self.unseal(&store_key, &kv.value)?;
        let text = String::from_utf8(plain)
            .map_err(|_| Error::Config(format!("secret {name:?} key {key:?} is not text")))?;
        Ok(Some(SecretString::from(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_cannot_address_other_keys() {
        assert!(store_key("corp-ldap", "password").is_ok());
        for (n, k) in [
            ("", "k"),
            ("a/b", "k"),
            ("..", "k"),
            ("n", "../x"),
            ("n", ""),
        ] {
            assert!(store_key(n, k).is_err(), "{n:?} {k:?}");
        }
    }
}
