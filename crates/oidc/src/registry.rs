//! Clients and users, read from the store where the management API keeps them.

use portcullis_model::{Client, User};

use crate::Error;
use crate::provider::Provider;

/// Whether `name` can be an object name (RFC 1123 subdomain): this also keeps request
/// parameters from addressing other store keys (`/`, `..`).
fn valid_name(name: &str) -> bool {
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    alnum(name.as_bytes().first())
        && alnum(name.as_bytes().last())
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

async fn read<T: serde::de::DeserializeOwned>(
    provider: &Provider,
    plural: &str,
    name: &str,
) -> Result<Option<T>, Error> {
    if !valid_name(name) {
        return Ok(None);
    }
    let key = format!("/registry/portcullis.dev/{plural}/{name}");
    let Some(kv) = provider.store().get(&key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&kv.value)
        .map(Some)
        .map_err(|e| Error::Config(format!("stored {plural} {name:?} is not valid: {e}")))
}

/// The `Client` named `client_id`, if any.
pub(crate) async fn client(provider: &Provider, client_id: &str) -> Result<Option<Client>, Error> {
    read(provider, "clients", client_id).await
}

/// The `User` named `name`, if any.
pub(crate) async fn user(provider: &Provider, name: &str) -> Result<Option<User>, Error> {
    read(provider, "users", name).await
}

/// Checks `password` against the user's argon2id hash, off the async threads (argon2id costs
/// tens of milliseconds by design). For an unknown or password-less user a dummy hash is
/// checked, so that timing does not tell which login names exist.
/// A well-formed argon2id hash with the crate's default parameters, matching no password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hS5Nn5x7l2bVbQnqUmhbtVyCg7D2sZ2X3x9mYyV3Pw";

pub(crate) async fn verify_password(user: Option<&User>, password: String) -> bool {
    use argon2::PasswordVerifier as _;
    let usable =
        user.filter(|u| !u.spec.disabled && u.spec.password_hash.starts_with("$argon2id$"));
    let hash = usable
        .map_or(DUMMY_HASH, |u| u.spec.password_hash.as_str())
        .to_owned();
    let known = usable.is_some();
    let ok = tokio::task::spawn_blocking(move || {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false);
    ok && known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_parses_so_unknown_users_cost_a_full_argon2id() {
        let hash = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(hash.algorithm.as_str(), "argon2id");
    }

    #[test]
    fn names_that_could_address_other_keys_are_refused() {
        for name in ["", "a/b", "..", "../users/x", "A", "a b", "-a", "a."] {
            assert!(!valid_name(name), "{name}");
        }
        assert!(valid_name("kubectl"));
    }
}
