//! What the provider keeps in the store, so that a restart or another replica sees it:
//! browser sessions, grants (one per code redemption or device approval, holding the refresh
//! token family), authorization codes and device codes.
//!
//! Every record is found by the SHA-256 of a random secret the client or browser holds (or,
//! for grants, by a random public id with the secret's hash inside); the secrets themselves
//! are never stored, except the one refresh token handed out last, sealed, for the grace
//! window of concurrent refreshes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use portcullis_store::{ListOptions, Revision, Store, StoreError};

use crate::Error;
use crate::grants::{Identity, PendingAuthorization};

/// Browser sessions by hash of the cookie value.
pub(crate) const SESSIONS: &str = "/oidc/sessions/";
/// Grants (refresh token families) by grant id.
pub(crate) const GRANTS: &str = "/oidc/grants/";
/// Authorization codes by hash of the code.
pub(crate) const CODES: &str = "/oidc/codes/";
/// Device authorizations by hash of the device code.
pub(crate) const DEVICES: &str = "/oidc/devices/";
/// Index from user code to device authorization.
pub(crate) const USER_CODES: &str = "/oidc/user-codes/";
/// Logins waiting at an upstream OpenID provider, by hash of their `state`.
pub(crate) const UPSTREAM_LOGINS: &str = "/oidc/upstream-logins/";
/// Upstream sessions (the sealed upstream refresh token) by random id.
pub(crate) const UPSTREAM_SESSIONS: &str = "/oidc/upstream-sessions/";

/// Records bigger than this are refused when read back (they are written by this crate and
/// far smaller; a bigger one is corruption or tampering).
const MAX_RECORD_LEN: usize = 256 * 1024;

/// Lower-case hex SHA-256 of a secret: the store key of what it stands for.
pub(crate) fn digest_hex(secret: &str) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Constant-time equality of two digests or tokens.
pub(crate) fn same(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// Constant-time equality of two byte strings.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.ct_eq(b))
}

/// How a user authenticated: shared by sessions, codes, device approvals and grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Authentication {
    pub(crate) identity: Identity,
    /// Fingerprint of the credential used (the password hash at login): when the user's
    /// password changes, everything that came from the old one stops working.
    pub(crate) credential: String,
    /// Public id of the browser session (the ID token's `sid`), if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<String>,
    pub(crate) auth_time: u64,
    pub(crate) amr: Vec<String>,
    /// The connector the user logged in through and how it described them (absent for
    /// local users): what refresh re-checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) connector: Option<Box<ConnectorLogin>>,
}

/// A login through a connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConnectorLogin {
    pub(crate) id: String,
    pub(crate) identity: portcullis_connectors::Identity,
    /// Through an upstream OpenID provider: the id of the upstream session record holding
    /// its refresh token (shared by every grant of this login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upstream: Option<String>,
}

/// A logged-in browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BrowserSession {
    pub(crate) authn: Authentication,
    pub(crate) expires_at: u64,
}

/// An issued authorization code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CodeRecord {
    pub(crate) request: PendingAuthorization,
    pub(crate) authn: Authentication,
    pub(crate) expires_at: u64,
    /// Set when the code is redeemed: the grant it created, revoked if the code comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) redeemed: Option<String>,
}

/// The refresh token of a grant, rotated on every use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RefreshState {
    /// Digest of the secret part of the current refresh token.
    pub(crate) current: String,
    /// The token rotated away last, honoured for a short grace window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous: Option<Rotation>,
    /// Unused for longer than the idle lifetime, the grant ends.
    pub(crate) idle_expires_at: u64,
}

/// One rotation: the digest of the old secret, when it was rotated, and the token that
/// replaced it (sealed), so that concurrent refreshes with the old token get the same answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Rotation {
    pub(crate) digest: String,
    pub(crate) at: u64,
    pub(crate) sealed_next: String,
}

/// What one authorization granted one client: the identity, scopes and audiences, and the
/// refresh token family. Access tokens carry the grant id (`gid`); revoking the grant
/// deactivates them at userinfo and introspection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GrantRecord {
    pub(crate) client_id: String,
    pub(crate) authn: Authentication,
    pub(crate) scopes: Vec<String>,
    /// Audiences of ID tokens besides the client (cross-client trust).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) audiences: Vec<String>,
    pub(crate) created_at: u64,
    /// The grant ends then, whatever happens (access tokens: their lifetime; refresh
    /// families: the absolute refresh lifetime).
    pub(crate) expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh: Option<RefreshState>,
}

/// Progress of a device authorization (RFC 8628).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub(crate) enum DeviceState {
    Pending,
    Approved { authn: Authentication },
    Denied,
    Redeemed { grant: String },
}

/// A device authorization request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceRecord {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) audiences: Vec<String>,
    pub(crate) user_code: String,
    pub(crate) expires_at: u64,
    /// Seconds between polls the client must keep (raised by `slow_down`).
    pub(crate) interval: u64,
    pub(crate) last_poll: u64,
    pub(crate) state: DeviceState,
}

/// Where a user code leads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserCodeRecord {
    pub(crate) device: String,
    pub(crate) expires_at: u64,
}

/// Records that expire.
pub(crate) trait Expiring {
    fn expires_at(&self) -> u64;
}

macro_rules! expiring {
    ($($t:ty),*) => {$(
        impl Expiring for $t {
            fn expires_at(&self) -> u64 {
                self.expires_at
            }
        }
    )*};
}
expiring!(
    crate::upstream::UpstreamLogin,
    crate::upstream::UpstreamSession,
    BrowserSession,
    CodeRecord,
    GrantRecord,
    DeviceRecord,
    UserCodeRecord
);

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, Error> {
    if value.len() > MAX_RECORD_LEN {
        return Err(Error::Config(format!("stored record {key} is too large")));
    }
    serde_json::from_slice(value)
        .map_err(|e| Error::Config(format!("stored record {key} is not valid: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|_| Error::Crypto("encoding a record failed"))
}

/// Reads a record and its revision.
pub(crate) async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(T, Revision)>, Error> {
    match store.get(key).await? {
        Some(kv) => Ok(Some((decode(key, &kv.value)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// Creates a record (keys are random, so a clash is an error).
pub(crate) async fn create<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
) -> Result<Revision, Error> {
    Ok(store.create(key, encode(value)?).await?.mod_revision)
}

/// Replaces a record if it is still at `expected`; `Ok(false)` if someone else changed or
/// deleted it first.
pub(crate) async fn replace<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
    expected: Revision,
) -> Result<bool, Error> {
    match store.update(key, encode(value)?, Some(expected)).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Like [`replace`], returning the record's new revision.
pub(crate) async fn replace_at<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
    expected: Revision,
) -> Result<Option<Revision>, Error> {
    match store.update(key, encode(value)?, Some(expected)).await {
        Ok(kv) => Ok(Some(kv.mod_revision)),
        Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a record if it is still at `expected`; `Ok(false)` if someone else changed or
/// deleted it first.
pub(crate) async fn remove_at(
    store: &dyn Store,
    key: &str,
    expected: Revision,
) -> Result<bool, Error> {
    match store.delete(key, Some(expected)).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a record; a missing one is not an error.
pub(crate) async fn remove(store: &dyn Store, key: &str) -> Result<(), Error> {
    match store.delete(key, None).await {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Visits every record under `prefix`, a page at a time, deleting those `doomed` picks.
/// Returns how many were deleted. Unreadable records are deleted too (they can never be used).
pub(crate) async fn sweep<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
    doomed: impl Fn(&T) -> bool,
) -> Result<usize, Error> {
    let mut deleted = 0;
    let mut continue_token = None;
    loop {
        let page = store
            .list(
                prefix,
                ListOptions {
                    limit: Some(500),
                    continue_token: continue_token.take(),
                    filter: None,
                },
            )
            .await?;
        for kv in &page.items {
            let delete = match decode::<T>(&kv.key, &kv.value) {
                Ok(record) => doomed(&record),
                Err(_) => true,
            };
            if delete {
                // Deleted only if unchanged since read: a concurrent refresh wins.
                match store.delete(&kv.key, Some(kv.mod_revision)).await {
                    Ok(_) => deleted += 1,
                    Err(StoreError::NotFound(_) | StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        match page.continue_token {
            Some(t) => continue_token = Some(t),
            None => return Ok(deleted),
        }
    }
}

/// Deletes every expired record (a minute after expiry, so that a code replayed just after
/// its expiry still finds its grant to revoke).
pub(crate) async fn sweep_expired(store: &dyn Store, now: u64) -> Result<usize, Error> {
    fn expired<T: Expiring>(now: u64) -> impl Fn(&T) -> bool {
        move |r: &T| r.expires_at().saturating_add(60) <= now
    }
    let mut n = sweep::<BrowserSession>(store, SESSIONS, expired(now)).await?;
    n += sweep::<GrantRecord>(store, GRANTS, expired(now)).await?;
    n += sweep::<CodeRecord>(store, CODES, expired(now)).await?;
    n += sweep::<DeviceRecord>(store, DEVICES, expired(now)).await?;
    n += sweep::<UserCodeRecord>(store, USER_CODES, expired(now)).await?;
    n += sweep::<crate::upstream::UpstreamLogin>(store, UPSTREAM_LOGINS, expired(now)).await?;
    n += sweep::<crate::upstream::UpstreamSession>(store, UPSTREAM_SESSIONS, expired(now)).await?;
    Ok(n)
}

/// Ends every browser session and grant of local user `username` (password reset, account
/// disabled); a connector's user of the same name is another user and keeps theirs.
pub(crate) async fn revoke_user(store: &dyn Store, username: &str) -> Result<usize, Error> {
    let local = |a: &Authentication| a.connector.is_none() && a.identity.username == username;
    let mut n = sweep::<BrowserSession>(store, SESSIONS, |s| local(&s.authn)).await?;
    n += sweep::<GrantRecord>(store, GRANTS, |g| local(&g.authn)).await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_hex_sha256() {
        assert_eq!(
            digest_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same("a", "a"));
        assert!(!same("a", "b"));
        assert!(!same("a", "ab"));
    }
}
