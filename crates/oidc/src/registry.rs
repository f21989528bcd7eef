//! Clients and users, read from the store where the management API keeps them.

use portcullis_model::{Client, User};

use crate::Error;
use crate::grants::Identity;
use crate::provider::Provider;
use crate::state::Authentication;

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

/// The `Client` named `client_id`, if any: a static client from the configuration, or one
/// created through the management API.
pub(crate) async fn client(provider: &Provider, client_id: &str) -> Result<Option<Client>, Error> {
    if let Some(c) = provider
        .config()
        .static_clients
        .iter()
        .find(|c| c.metadata.name == client_id)
    {
        return Ok(Some(c.clone()));
    }
    read(provider, "clients", client_id).await
}

/// The identity a user record describes.
pub(crate) fn identity_of(user: &User) -> Identity {
    Identity {
        subject: user
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| user.metadata.name.clone()),
        username: user.metadata.name.clone(),
        name: user.spec.display_name.clone(),
        email: user.spec.email.clone(),
        email_verified: user.spec.email_verified,
        groups: user.spec.groups.clone(),
    }
}

/// A fingerprint of the user's credential: changes whenever the password does.
pub(crate) fn credential_of(user: &User) -> String {
    let digest = crate::state::digest_hex(&user.spec.password_hash);
    format!("pw:{}", digest.get(..32).unwrap_or_default())
}

/// The user's identity as it is now, if the user still exists, is enabled, is the same
/// account (same uid) and still has the credential it authenticated with; `None` otherwise.
/// Group and profile changes are picked up here, at every refresh.
pub(crate) async fn current_identity(
    provider: &Provider,
    authn: &Authentication,
) -> Result<Option<Identity>, Error> {
    let Some(user) = user(provider, &authn.identity.username).await? else {
        return Ok(None);
    };
    let identity = identity_of(&user);
    let same_account = identity.subject == authn.identity.subject;
    let same_credential = crate::state::same(&credential_of(&user), &authn.credential);
    Ok((!user.spec.disabled && same_account && same_credential).then_some(identity))
}

/// The `User` named `name`, if any.
pub(crate) async fn user(provider: &Provider, name: &str) -> Result<Option<User>, Error> {
    read(provider, "users", name).await
}

/// A well-formed argon2id hash with the crate's default parameters, matching no password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hS5Nn5x7l2bVbQnqUmhbtVyCg7D2sZ2X3x9mYyV3Pw";

/// Checks `password` against the user's argon2id hash, off the async threads (argon2id costs
/// tens of milliseconds by design). For an unknown or password-less user a dummy hash is
/// checked, so that timing does not tell which login names exist.
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
