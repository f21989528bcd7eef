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
    let key = portcullis_store::keys::object(portcullis_model::GROUP, plural, "", name);
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
///
/// A user of a connector is described as at their login or last refresh, as long as the
/// connector is configured: the directory is asked at refresh (`connect::recheck`), not at
/// every userinfo, introspection or single sign-on request.
pub(crate) async fn current_identity(
    provider: &Provider,
    authn: &Authentication,
) -> Result<Option<Identity>, Error> {
    if let Some(login) = &authn.connector {
        let configured = provider.connectors().get(&login.id).is_some();
        return Ok(configured.then(|| authn.identity.clone()));
    }
    let Some(user) = user(provider, &authn.identity.username).await? else {
        return Ok(None);
    };
    let identity = identity_of(&user);
    let same_account = identity.subject == authn.identity.subject;
    let same_credential = crate::state::same(&credential_of(&user), &authn.credential);
    if user.spec.disabled || !same_account || !same_credential {
        return Ok(None);
    }
    Ok(Some(
        crate::groups::with_portcullis_groups(provider, identity).await?,
    ))
}

/// The `User` named `name`, if any.
pub(crate) async fn user(provider: &Provider, name: &str) -> Result<Option<User>, Error> {
    read(provider, "users", name).await
}

/// A well-formed argon2id hash with the crate's default parameters, matching no password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0hS5Nn5x7l2bVbQnqUmhbtVyCg7D2sZ2X3x9mYyV3Pw";

/// Largest argon2id memory cost accepted from a stored hash (KiB): 256 MiB. A hash asking
/// for more is refused rather than allowed to exhaust memory.
const MAX_M_COST: u32 = 256 * 1024;

/// argon2id verifications run at most one per core at once, each with a `Hasher` kept for
/// the next (its work area stays mapped and resident): a burst of logins then costs
/// `cores × m_cost` of memory once, not a fresh 19 MiB allocation per login that the
/// allocator may keep (measured: gigabytes under load), and more parallel hashing than cores
/// would only lengthen every login.
///
/// The fill is `argon2-rust`'s (a port of the reference implementation with runtime-selected
/// AVX2/AVX-512 kernels, the one `@node-rs/argon2` uses): RustCrypto's `argon2` has AVX2 only,
/// and the login benchmark beside npm oidc-provider lost to that difference alone.
struct Argon2Pool {
    permits: tokio::sync::Semaphore,
    hashers: std::sync::Mutex<Vec<argon2_rust::Hasher>>,
}

fn argon2_pool() -> &'static Argon2Pool {
    static POOL: std::sync::OnceLock<Argon2Pool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| Argon2Pool {
        permits: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        ),
        hashers: std::sync::Mutex::new(Vec::new()),
    })
}

/// Largest argon2id time cost accepted from a stored hash (as the User kind's validation).
const MAX_T_COST: u32 = 16;
/// Largest argon2id parallelism accepted from a stored hash.
const MAX_LANES: u32 = 16;

/// Verifies `password` against an argon2id PHC string with `hasher` (reused, or created on
/// first use). Refuses other algorithms and parameters beyond the bounds.
fn argon2id_matches(hasher: &mut Option<argon2_rust::Hasher>, password: &[u8], phc: &str) -> bool {
    use argon2_rust::{Algorithm, Argon2};
    let Ok(decoded) = argon2_rust::decode_phc(phc) else {
        return false;
    };
    let params = decoded.params;
    if decoded.algorithm != Algorithm::Argon2id
        || !decoded.ad.is_empty()
        || params.memory_kib() > MAX_M_COST
        || params.passes() > MAX_T_COST
        || params.lanes() > MAX_LANES
        || decoded.hash.is_empty()
    {
        return false;
    }
    let argon2 = Argon2::new(Algorithm::Argon2id, decoded.version, params);
    let hasher = match hasher {
        Some(h) => {
            h.set_argon2(argon2);
            h
        }
        None => hasher.insert(argon2.hasher()),
    };
    let mut out = vec![0u8; decoded.hash.len()];
    hasher.hash_into(password, &decoded.salt, &mut out).is_ok()
        && crate::state::same_bytes(&out, &decoded.hash)
}

/// Checks `password` against the user's argon2id hash, off the async threads (argon2id costs
/// tens of milliseconds by design), at most one per core at once. For an unknown or
/// password-less user a dummy hash is checked, so that timing does not tell which login names
/// exist.
pub(crate) async fn verify_password(user: Option<&User>, password: String) -> bool {
    let usable =
        user.filter(|u| !u.spec.disabled && u.spec.password_hash.starts_with("$argon2id$"));
    let hash = usable
        .map_or(DUMMY_HASH, |u| u.spec.password_hash.as_str())
        .to_owned();
    let known = usable.is_some();
    let pool = argon2_pool();
    let Ok(_permit) = pool.permits.acquire().await else {
        return false;
    };
    let mut hasher = pool.hashers.lock().ok().and_then(|mut h| h.pop());
    let (ok, hasher) = tokio::task::spawn_blocking(move || {
        let ok = argon2id_matches(&mut hasher, password.as_bytes(), &hash);
        (ok, hasher)
    })
    .await
    .unwrap_or_default();
    if let Some(hasher) = hasher
        && let Ok(mut hashers) = pool.hashers.lock()
    {
        hashers.push(hasher);
    }
    ok && known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_parses_so_unknown_users_cost_a_full_argon2id() {
        let hash = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(hash.algorithm.as_str(), "argon2id");
        let decoded = argon2_rust::decode_phc(DUMMY_HASH).unwrap();
        assert_eq!(decoded.algorithm, argon2_rust::Algorithm::Argon2id);
        assert_eq!(decoded.params.memory_kib(), 19456);
    }

    #[test]
    fn pooled_verification_agrees_with_the_crate_that_writes_the_hashes() {
        use argon2::PasswordHasher as _;
        let hash = argon2::Argon2::default()
            .hash_password(b"secret")
            .unwrap()
            .to_string();
        let mut hasher = None;
        assert!(argon2id_matches(&mut hasher, b"secret", &hash));
        assert!(!argon2id_matches(&mut hasher, b"Secret", &hash));
        // The hasher and its work area are reused for the next verification.
        let blocks = hasher.as_ref().unwrap().reserved_blocks();
        assert!(blocks >= 19456);
        assert!(argon2id_matches(&mut hasher, b"secret", &hash));
        assert_eq!(hasher.as_ref().unwrap().reserved_blocks(), blocks);
        assert!(!argon2id_matches(&mut hasher, b"secret", DUMMY_HASH));
        assert!(!argon2id_matches(&mut hasher, b"secret", "not a hash"));
        let greedy = hash.replace("m=19456", "m=4194304");
        assert!(!argon2id_matches(&mut hasher, b"secret", &greedy));
        let slow = hash.replace("t=2", "t=17");
        assert!(!argon2id_matches(&mut hasher, b"secret", &slow));
        let argon2i = argon2::Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x13,
            argon2::Params::default(),
        )
        .hash_password(b"secret")
        .unwrap()
        .to_string();
        assert!(!argon2id_matches(&mut hasher, b"secret", &argon2i));
    }

    #[test]
    fn names_that_could_address_other_keys_are_refused() {
        for name in ["", "a/b", "..", "../users/x", "A", "a b", "-a", "a."] {
            assert!(!valid_name(name), "{name}");
        }
        assert!(valid_name("kubectl"));
    }
}
