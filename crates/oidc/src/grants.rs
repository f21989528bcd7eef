//! In-flight authorization requests (a login page shown, not yet submitted), held in memory,
//! bounded, keyed by the SHA-256 of their random handle (the handle itself is never kept).
//!
//! They live for minutes; a restart only interrupts logins in progress. Everything issued
//! after a login (sessions, codes, grants) is kept in the store (`state`).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::Error;

/// How long a login page stays usable.
pub(crate) const PENDING_LIFETIME_SECS: u64 = 600;
/// Authorization code lifetime (RFC 6749 §4.1.2 recommends at most ten minutes; the issue
/// asks for at most 60 s).
pub(crate) const CODE_LIFETIME_SECS: u64 = 60;
/// Most login pages held open at once; beyond it the oldest are dropped (a flood of
/// unauthenticated `/auth` requests then costs its victims a reload, not a refusal).
const MAX_ENTRIES: usize = 10_000;

/// The parameters of an authorization request, checked, waiting for the user to log in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingAuthorization {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
    pub(crate) scopes: Vec<String>,
    /// Audiences asked for with `audience:server:client_id:X` scopes (checked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) audiences: Vec<String>,
    /// PKCE S256 challenge (RFC 7636 §4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) code_challenge: Option<String>,
    /// `response_mode=form_post` (OAuth 2.0 Form Post Response Mode) instead of the query.
    #[serde(default)]
    pub(crate) form_post: bool,
    /// `prompt=consent`: ask before issuing the code, even with a session.
    #[serde(default)]
    pub(crate) consent: bool,
    /// The anti-CSRF value the browser must echo from its cookie in every form post.
    #[serde(default)]
    pub(crate) csrf: String,
    /// What the login is for, when it is not an authorization request: a device approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) device: Option<String>,
    /// `sub` of a verified `id_token_hint`: the code is issued for that End-User only
    /// (OpenID Connect Core 1.0 §3.1.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hinted_subject: Option<String>,
    /// `connector_id` of the request (as Dex): log in with this connector, no chooser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) connector_id: Option<String>,
    pub(crate) expires_at: u64,
}

/// Who logged in, as the ID token and userinfo describe them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) subject: String,
    pub(crate) username: String,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) email_verified: bool,
    pub(crate) groups: Vec<String>,
}

type Handle = [u8; 32];

#[derive(Default)]
pub(crate) struct Grants {
    pending: Mutex<HashMap<Handle, PendingAuthorization>>,
}

/// A fresh 256-bit random value, base64url.
pub(crate) fn random_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Crypto("no randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh 128-bit random public identifier (grant ids), base64url.
pub(crate) fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Crypto("no randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn handle(token: &str) -> Handle {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn insert<T>(
    map: &Mutex<HashMap<Handle, T>>,
    value: T,
    now: u64,
    expires: impl Fn(&T) -> u64,
) -> Result<String, Error> {
    let token = random_token()?;
    let mut map = map.lock().map_err(|_| Error::Crypto("lock poisoned"))?;
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, v| expires(v) > now);
        if map.len() >= MAX_ENTRIES {
            // Keep the newest nine tenths.
            let mut ages: Vec<u64> = map.values().map(&expires).collect();
            ages.sort_unstable();
            let cut = ages.get(MAX_ENTRIES / 10).copied().unwrap_or(u64::MAX);
            map.retain(|_, v| expires(v) > cut);
        }
    }
    map.insert(handle(&token), value);
    Ok(token)
}

impl Grants {
    pub(crate) fn insert_pending(
        &self,
        request: PendingAuthorization,
        now: u64,
    ) -> Result<String, Error> {
        insert(&self.pending, request, now, |p| p.expires_at)
    }

    /// The pending request, if it exists and has not expired.
    pub(crate) fn pending(&self, id: &str, now: u64) -> Option<PendingAuthorization> {
        let map = self.pending.lock().ok()?;
        map.get(&handle(id)).filter(|p| p.expires_at > now).cloned()
    }

    /// Removes and returns the pending request (a login completes it once).
    pub(crate) fn take_pending(&self, id: &str, now: u64) -> Option<PendingAuthorization> {
        let mut map = self.pending.lock().ok()?;
        map.remove(&handle(id)).filter(|p| p.expires_at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(expires_at: u64) -> PendingAuthorization {
        PendingAuthorization {
            client_id: "c".into(),
            redirect_uri: "https://rp.example/cb".into(),
            state: None,
            nonce: None,
            scopes: vec!["openid".into()],
            audiences: Vec::new(),
            code_challenge: None,
            form_post: false,
            consent: false,
            csrf: String::new(),
            device: None,
            hinted_subject: None,
            connector_id: None,
            expires_at,
        }
    }

    #[test]
    fn a_flood_of_login_pages_drops_the_oldest_instead_of_refusing() {
        let grants = Grants::default();
        let first = grants.insert_pending(pending(1_000), 0).unwrap();
        for i in 0..MAX_ENTRIES as u64 {
            grants.insert_pending(pending(2_000 + i), 0).unwrap();
        }
        let last = grants.insert_pending(pending(100_000), 0).unwrap();
        assert!(grants.pending(&last, 0).is_some());
        assert!(grants.pending(&first, 0).is_none(), "the oldest went first");
        assert!(grants.pending.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
