//! Local-user passwords: generating, hashing and resetting them (the static admin's
//! `portcullis admin reset-password`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_store::StoreError;
use serde_json::Value;

use crate::Error;
use crate::provider::Provider;

/// Store key of a local user.
pub fn user_key(name: &str) -> String {
    portcullis_store::keys::object(portcullis_model::GROUP, "users", "", name)
}

/// A new random password: 144 bits, 24 URL-safe characters.
pub fn generate_password() -> Result<String, Error> {
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Crypto("no randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The argon2id PHC string of `password` (the `argon2` crate's default parameters), computed
/// off the async threads.
pub async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        use argon2::PasswordHasher as _;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|_| Error::Crypto("argon2id hashing failed"))
    })
    .await
    .map_err(|_| Error::Crypto("argon2id hashing was interrupted"))?
}

impl Provider {
    /// Sets a new random password for local user `name` and ends every session and grant the
    /// user holds. Returns the new password (shown once; only its hash is stored).
    pub async fn reset_password(&self, name: &str) -> Result<String, Error> {
        let password = generate_password()?;
        let hash = hash_password(password.clone()).await?;
        let key = user_key(name);
        loop {
            let Some(kv) = self.store().get(&key).await? else {
                return Err(Error::UnknownUser(name.to_owned()));
            };
            let mut user: Value = serde_json::from_slice(&kv.value)
                .map_err(|e| Error::Config(format!("stored user {name:?} is not valid: {e}")))?;
            let Some(spec) = user.get_mut("spec").and_then(Value::as_object_mut) else {
                return Err(Error::Config(format!("stored user {name:?} has no spec")));
            };
            spec.insert("passwordHash".into(), Value::String(hash.clone()));
            if let Some(meta) = user.get_mut("metadata").and_then(Value::as_object_mut) {
                let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                meta.insert("generation".into(), Value::from(generation + 1));
            }
            let bytes =
                serde_json::to_vec(&user).map_err(|_| Error::Crypto("encoding a user failed"))?;
            match self
                .store()
                .update(&key, bytes, Some(kv.mod_revision))
                .await
            {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let revoked = self.revoke_user(name).await?;
        tracing::info!(user = %name, revoked, "password reset; sessions and refresh tokens revoked");
        Ok(password)
    }
}
