//! Sessions: the one sealed cookie a browser holds, the record kept in the store (the refresh
//! token never leaves the server), and the key ring the cookies are sealed with.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use portcullis_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::seal::{AtRest, KeyRing, StoredKey, new_stored_key};

/// Purpose (AEAD additional data) of the session cookie.
pub(crate) const SESSION: &str = "portcullis-forward-auth/session";
/// Purpose of the login-state cookie.
pub(crate) const LOGIN: &str = "portcullis-forward-auth/login";

/// The session cookie's content. Short keys: it must stay well below 4 KB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionCookie {
    /// Session id: names the store record with the refresh token.
    pub(crate) sid: String,
    /// User name, as RBAC sees it.
    pub(crate) u: String,
    /// Groups, as RBAC sees them (prefixed).
    pub(crate) g: Vec<String>,
    /// `email` claim.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) e: String,
    /// `preferred_username` claim.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) p: String,
    /// The ID token's `exp`: the session is good until then.
    pub(crate) exp: u64,
    /// The ID token, when it is passed upstream (`passIDToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) t: Option<String>,
}

/// The login-state cookie's content (RFC 6749 §10.12: state bound to the browser; RFC 7636).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoginCookie {
    pub(crate) state: String,
    pub(crate) verifier: String,
    pub(crate) nonce: String,
    pub(crate) rd: String,
    pub(crate) redirect_uri: String,
    pub(crate) exp: u64,
}

/// What the store keeps of a session.
#[derive(Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub(crate) refresh_token: Option<String>,
    pub(crate) id_token: String,
    /// After this the record is swept.
    pub(crate) expires_at: u64,
}

/// The store side of sessions and keys.
pub(crate) struct Sessions {
    store: Arc<dyn Store>,
    at_rest: AtRest,
    prefix: String,
    /// Session ids seen live in the store, and when.
    live: RwLock<HashMap<String, u64>>,
    check_interval: u64,
}

/// Most session ids remembered as live (then the memory starts over).
const MAX_LIVE: usize = 100_000;

impl Sessions {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        encryption_key: &[u8; 32],
        client_id: &str,
        check_interval: u64,
    ) -> Result<Sessions, Error> {
        Ok(Sessions {
            store,
            at_rest: AtRest::new(encryption_key)?,
            prefix: format!("/forward-auth/{client_id}"),
            live: RwLock::new(HashMap::new()),
            check_interval,
        })
    }

    fn session_key(&self, sid: &str) -> String {
        format!("{}/sessions/{sid}", self.prefix)
    }

    fn keys_key(&self) -> String {
        format!("{}/keys", self.prefix)
    }

    pub(crate) async fn save(&self, sid: &str, record: &SessionRecord) -> Result<(), Error> {
        let key = self.session_key(sid);
        let json = serde_json::to_vec(record)
            .map_err(|_| Error::Crypto("encoding a session record failed"))?;
        let sealed = self.at_rest.seal(&key, &json)?;
        match self.store.get(&key).await? {
            Some(kv) => {
                self.store
                    .update(&key, sealed, Some(kv.mod_revision))
                    .await?;
            }
            None => {
                self.store.create(&key, sealed).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn load(&self, sid: &str) -> Result<Option<SessionRecord>, Error> {
        let key = self.session_key(sid);
        let Some(kv) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let Some(json) = self.at_rest.open(&key, &kv.value) else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&json).ok())
    }

    pub(crate) async fn delete(&self, sid: &str) -> Result<(), Error> {
        self.forget(sid);
        match self.store.delete(&self.session_key(sid), None).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn forget(&self, sid: &str) {
        match self.live.write() {
            Ok(mut live) => live.remove(sid),
            Err(poisoned) => poisoned.into_inner().remove(sid),
        };
    }

    /// Whether the session still exists (not logged out): from memory when checked in the last
    /// `sessionCheckSeconds`, else from the store. A store error denies.
    pub(crate) async fn is_live(&self, sid: &str, now: u64) -> bool {
        let seen = match self.live.read() {
            Ok(live) => live.get(sid).copied(),
            Err(poisoned) => poisoned.into_inner().get(sid).copied(),
        };
        if seen.is_some_and(|at| now < at.saturating_add(self.check_interval)) {
            return true;
        }
        let live = match self.store.get(&self.session_key(sid)).await {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "reading a forward-auth session failed; denied");
                false
            }
        };
        if live {
            let mut map = match self.live.write() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if map.len() >= MAX_LIVE {
                map.clear();
            }
            map.insert(sid.to_owned(), now);
        } else {
            self.forget(sid);
        }
        live
    }

    /// Reads the key ring, creating it on first start; rotates it when due (`period` seconds)
    /// and drops keys older than `keep` seconds.
    pub(crate) async fn key_ring(
        &self,
        now: u64,
        period: u64,
        keep: u64,
    ) -> Result<KeyRing, Error> {
        let key = self.keys_key();
        for _attempt in 0..5 {
            let current = self.store.get(&key).await?;
            let (mut keys, revision) = match &current {
                Some(kv) => {
                    let json = self.at_rest.open(&key, &kv.value).ok_or_else(|| {
                        Error::Config(format!(
                            "the cookie keys at {key} cannot be opened with this data-encryption key; restore the key, or delete {key} to log everyone out"
                        ))
                    })?;
                    let keys: Vec<StoredKey> = serde_json::from_slice(&json)
                        .map_err(|_| Error::Crypto("the stored cookie keys are not valid"))?;
                    (keys, Some(kv.mod_revision))
                }
                None => (Vec::new(), None),
            };
            let newest = keys.iter().map(|k| k.created).max();
            if newest.is_some_and(|n| now < n.saturating_add(period)) {
                return KeyRing::from_stored(&keys);
            }
            keys.retain(|k| now < k.created.saturating_add(keep));
            keys.push(new_stored_key(now)?);
            let json = serde_json::to_vec(&keys)
                .map_err(|_| Error::Crypto("encoding the cookie keys failed"))?;
            let sealed = self.at_rest.seal(&key, &json)?;
            let written = match revision {
                Some(r) => self.store.update(&key, sealed, Some(r)).await.map(|_| ()),
                None => self.store.create(&key, sealed).await.map(|_| ()),
            };
            match written {
                Ok(()) => return KeyRing::from_stored(&keys),
                // Another replica rotated at the same time: read theirs.
                Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Config(
            "the cookie key ring kept changing under this replica; retry".into(),
        ))
    }

    /// Deletes session records past their end; returns how many.
    pub(crate) async fn sweep(&self, now: u64) -> Result<usize, Error> {
        let prefix = format!("{}/sessions/", self.prefix);
        let page = self
            .store
            .list(&prefix, portcullis_store::ListOptions::default())
            .await?;
        let mut removed = 0;
        for kv in page.items {
            let record = self
                .at_rest
                .open(&kv.key, &kv.value)
                .and_then(|j| serde_json::from_slice::<SessionRecord>(&j).ok());
            if record.is_none_or(|r| r.expires_at <= now)
                && self
                    .store
                    .delete(&kv.key, Some(kv.mod_revision))
                    .await
                    .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
