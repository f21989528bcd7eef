//! The issuer's keys with their rotation schedule.
//!
//! A key is published as `next` for a whole rotation period before it signs, so verifiers that
//! cache the JWKS already hold it when the first token signed with it arrives; it is then
//! `active` (the only signing key) for one period; then `retired`: still published until every
//! token it signed has expired (token lifetime plus the verifiers' skew), then removed.

use serde::{Deserialize, Serialize};

use crate::{Algorithm, Error, Jwks, KeySpec, SigningKey, VerificationKeys, b64, b64_decode};

/// When keys rotate and how long retired keys stay published. Times in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Kind of the keys generated from now on (existing keys keep theirs).
    pub spec: KeySpec,
    /// How long a key signs before the next one takes over (and how long `next` is published
    /// before it signs).
    pub rotation_period: u64,
    /// The longest lifetime of any token signed with these keys.
    pub token_lifetime: u64,
    /// Clock skew verifiers allow after `exp`.
    pub leeway: u64,
}

impl Default for RotationPolicy {
    /// ES256, rotated daily, tokens of at most one hour, 60 s skew.
    fn default() -> Self {
        RotationPolicy {
            spec: KeySpec::Es256,
            rotation_period: 24 * 3600,
            token_lifetime: 3600,
            leeway: crate::DEFAULT_LEEWAY_SECS,
        }
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// The signing key, since the given time.
    Active {
        /// Unix seconds at which it started signing.
        since: u64,
    },
    /// Published only so that tokens it signed still verify, retired at the given time.
    Retired {
        /// Unix seconds at which it stopped signing.
        since: u64,
    },
}

#[derive(Debug)]
struct RetiredKey {
    key: SigningKey,
    since: u64,
}

/// The keys of one issuer: exactly one `next`, one `active`, and the retired keys still
/// within their grace. Deterministic given `now`: only [`KeySet::rotate`] changes it.
#[derive(Debug)]
pub struct KeySet {
    policy: RotationPolicy,
    next: SigningKey,
    active: SigningKey,
    active_since: u64,
    retired: Vec<RetiredKey>,
}

// === stored form ===

#[derive(Serialize, Deserialize)]
struct StoredKey {
    alg: Algorithm,
    /// PKCS#8, base64url.
    pkcs8: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeySet {
    next: StoredKey,
    active: StoredKey,
    retired: Vec<StoredKey>,
}

impl StoredKey {
    fn new(key: &SigningKey, since: Option<u64>) -> Self {
        StoredKey {
            alg: key.algorithm(),
            pkcs8: b64(&key.to_pkcs8()),
            since,
        }
    }

    fn load(&self) -> Result<SigningKey, Error> {
        let der = b64_decode(&self.pkcs8)
            .ok_or_else(|| Error::Key("stored key is not base64url".into()))?;
        SigningKey::from_pkcs8(self.alg, &der)
    }
}

// === impl KeySet ===

impl KeySet {
    /// A new set: a fresh active key signing from `now` and a fresh next key.
    pub fn generate(policy: RotationPolicy, now: u64) -> Result<Self, Error> {
        Ok(KeySet {
            active: SigningKey::generate(policy.spec)?,
            next: SigningKey::generate(policy.spec)?,
            active_since: now,
            retired: Vec::new(),
            policy,
        })
    }

    /// The rotation policy.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// Replaces the policy; it applies from the next [`KeySet::rotate`].
    pub fn set_policy(&mut self, policy: RotationPolicy) {
        self.policy = policy;
    }

    /// Advances the schedule to `now`: when the active key has signed for a full period, the
    /// next key becomes active, the active key retires and a new next key is generated; retired
    /// keys whose every token has expired are removed. Returns whether anything changed (the
    /// caller then stores the set and republishes the JWKS).
    pub fn rotate(&mut self, now: u64) -> Result<bool, Error> {
        let mut changed = false;
        if now
            >= self
                .active_since
                .saturating_add(self.policy.rotation_period)
        {
            let fresh = SigningKey::generate(self.policy.spec)?;
            let promoted = std::mem::replace(&mut self.next, fresh);
            let old = std::mem::replace(&mut self.active, promoted);
            self.retired.push(RetiredKey {
                key: old,
                since: now,
            });
            self.active_since = now;
            changed = true;
        }
        let before = self.retired.len();
        let grace = self.grace();
        self.retired.retain(|r| now < r.since.saturating_add(grace));
        Ok(changed || self.retired.len() != before)
    }

    /// Time after retirement until every token the key signed has expired, skew included.
    fn grace(&self) -> u64 {
        self.policy
            .token_lifetime
            .saturating_add(self.policy.leeway)
    }

    /// The earliest time at which [`KeySet::rotate`] will change something.
    pub fn next_change_at(&self) -> u64 {
        let grace = self.grace();
        self.retired
            .iter()
            .map(|r| r.since.saturating_add(grace))
            .fold(
                self.active_since
                    .saturating_add(self.policy.rotation_period),
                u64::min,
            )
    }

    /// The key that signs now.
    pub fn signing_key(&self) -> &SigningKey {
        &self.active
    }

    /// Signs `claims` with the active key.
    pub fn sign<T: Serialize + ?Sized>(&self, claims: &T) -> Result<String, Error> {
        self.active.sign(claims)
    }

    /// Signs `claims` with the active key and the given `typ` header.
    pub fn sign_with_typ<T: Serialize + ?Sized>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, Error> {
        self.active.sign_with_typ(typ, claims)
    }

    /// Every key with its state: active, next, then retired.
    pub fn keys(&self) -> Vec<(&SigningKey, KeyState)> {
        let mut keys = vec![
            (
                &self.active,
                KeyState::Active {
                    since: self.active_since,
                },
            ),
            (&self.next, KeyState::Next),
        ];
        keys.extend(
            self.retired
                .iter()
                .map(|r| (&r.key, KeyState::Retired { since: r.since })),
        );
        keys
    }

    /// The public JWKS: active, next and retired keys.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .keys()
                .into_iter()
                .map(|(k, _)| k.public_jwk().clone())
                .collect(),
        }
    }

    /// The published keys, ready to verify.
    pub fn verification_keys(&self) -> VerificationKeys {
        VerificationKeys::from_jwks(&self.jwks())
    }

    /// The whole set with private keys as JSON. Secret: the caller encrypts it before storing.
    pub fn to_private_json(&self) -> Result<Vec<u8>, Error> {
        let stored = StoredKeySet {
            next: StoredKey::new(&self.next, None),
            active: StoredKey::new(&self.active, Some(self.active_since)),
            retired: self
                .retired
                .iter()
                .map(|r| StoredKey::new(&r.key, Some(r.since)))
                .collect(),
        };
        serde_json::to_vec(&stored).map_err(|e| Error::Key(e.to_string()))
    }

    /// Reads a set written by [`KeySet::to_private_json`].
    pub fn from_private_json(policy: RotationPolicy, bytes: &[u8]) -> Result<Self, Error> {
        let stored: StoredKeySet = serde_json::from_slice(bytes)
            .map_err(|e| Error::Key(format!("stored key set is not valid: {e}")))?;
        let since = |k: &StoredKey| {
            k.since
                .ok_or_else(|| Error::Key("stored key set lacks a since time".into()))
        };
        Ok(KeySet {
            active_since: since(&stored.active)?,
            active: stored.active.load()?,
            next: stored.next.load()?,
            retired: stored
                .retired
                .iter()
                .map(|r| {
                    Ok(RetiredKey {
                        key: r.load()?,
                        since: since(r)?,
                    })
                })
                .collect::<Result<_, Error>>()?,
            policy,
        })
    }
}
