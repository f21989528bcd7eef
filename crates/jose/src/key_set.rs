//! The issuer's keys with their rotation schedule, one schedule per published algorithm.
//!
//! For each algorithm, a key is published as `next` for a whole rotation period before it
//! signs, so verifiers that cache the JWKS already hold it when the first token signed with it
//! arrives; it is then `active` (the only key of its algorithm that signs) for one period; then
//! `retired`: still published until every token it signed has expired (token lifetime plus the
//! verifiers' skew), then removed.
//!
//! The published algorithms follow the [`RotationPolicy`]: an algorithm added to an existing
//! set gets a first key that is published for [`RotationPolicy::publish_lead`] seconds before
//! it signs; an algorithm dropped from the policy stops signing once every algorithm of the
//! policy has a signing key, and its keys stay published until their tokens expired.

use serde::{Deserialize, Serialize};

use crate::{Algorithm, Error, Jwks, KeySpec, SigningKey, VerificationKeys, b64, b64_decode};

/// Which keys are published, when they rotate and how long retired keys stay. Times in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// The kinds of keys published, one per algorithm (no algorithm twice). The first is the
    /// default: it signs whatever does not ask for an algorithm (access tokens).
    pub specs: Vec<KeySpec>,
    /// How long a key signs before the next one takes over (and how long `next` is published
    /// before it signs).
    pub rotation_period: u64,
    /// How long the first key of an algorithm added to an existing set is published before it
    /// signs: at least as long as verifiers may cache the JWKS.
    pub publish_lead: u64,
    /// The longest lifetime of any token signed with these keys.
    pub token_lifetime: u64,
    /// Clock skew verifiers allow after `exp`.
    pub leeway: u64,
}

impl Default for RotationPolicy {
    /// ES256 (the default) and RS256 (2048 bits), rotated daily, a new algorithm published one
    /// hour before it signs, tokens of at most one hour, 60 s skew.
    fn default() -> Self {
        RotationPolicy {
            specs: vec![KeySpec::Es256, KeySpec::Rs256Bits2048],
            rotation_period: 24 * 3600,
            publish_lead: 3600,
            token_lifetime: 3600,
            leeway: crate::DEFAULT_LEEWAY_SECS,
        }
    }
}

impl RotationPolicy {
    /// Checks that at least one algorithm is listed and none twice.
    pub fn check(&self) -> Result<(), Error> {
        if self.specs.is_empty() {
            return Err(Error::Key(
                "list at least one signing algorithm (ES256, RS256 or EdDSA)".into(),
            ));
        }
        for (i, spec) in self.specs.iter().enumerate() {
            let alg = spec.algorithm();
            if self.specs.iter().skip(i + 1).any(|s| s.algorithm() == alg) {
                return Err(Error::Key(format!(
                    "signing algorithm {alg} is listed twice; list each algorithm once"
                )));
            }
        }
        Ok(())
    }

    /// The published algorithms, the default first.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.specs.iter().map(|s| s.algorithm()).collect()
    }

    fn spec_for(&self, alg: Algorithm) -> Option<KeySpec> {
        self.specs.iter().copied().find(|s| s.algorithm() == alg)
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// The signing key of its algorithm, since the given time.
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

/// The keys of one algorithm.
#[derive(Debug)]
struct Ring {
    alg: Algorithm,
    /// The signing key and since when it signs.
    active: Option<(SigningKey, u64)>,
    next: Option<SigningKey>,
    /// When `next` starts signing while there is no active key (an algorithm just added).
    next_from: u64,
    retired: Vec<RetiredKey>,
}

impl Ring {
    fn is_empty(&self) -> bool {
        self.active.is_none() && self.next.is_none() && self.retired.is_empty()
    }
}

/// The keys of one issuer: per published algorithm one `active` and one `next` key, and the
/// retired keys still within their grace. Deterministic given `now`: only [`KeySet::rotate`]
/// changes the keys.
#[derive(Debug)]
pub struct KeySet {
    policy: RotationPolicy,
    rings: Vec<Ring>,
}

// === stored form ===

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    alg: Algorithm,
    /// PKCS#8, base64url.
    pkcs8: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum StoredState {
    Active,
    Next,
    Retired,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredEntry {
    state: StoredState,
    key: StoredKey,
}

/// The stored set: every key with its state (`since` is when an active key started signing,
/// a retired one stopped, or a next key of a new algorithm starts).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeySet {
    keys: Vec<StoredEntry>,
}

/// The form written before several algorithms were published at once: one schedule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSingleKeySet {
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

    fn since(&self) -> Result<u64, Error> {
        self.since
            .ok_or_else(|| Error::Key("stored key set lacks a since time".into()))
    }
}

// === impl KeySet ===

impl KeySet {
    /// A new set: for every algorithm of the policy a fresh active key signing from `now` and
    /// a fresh next key.
    pub fn generate(policy: RotationPolicy, now: u64) -> Result<Self, Error> {
        policy.check()?;
        let rings = policy
            .specs
            .iter()
            .map(|&spec| {
                Ok(Ring {
                    alg: spec.algorithm(),
                    active: Some((SigningKey::generate(spec)?, now)),
                    next: Some(SigningKey::generate(spec)?),
                    next_from: now,
                    retired: Vec::new(),
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(KeySet { policy, rings })
    }

    /// The rotation policy.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// Replaces the policy; it applies from the next [`KeySet::rotate`]. Fails if the policy
    /// lists no algorithm or one twice.
    pub fn set_policy(&mut self, policy: RotationPolicy) -> Result<(), Error> {
        policy.check()?;
        self.policy = policy;
        Ok(())
    }

    fn ring_mut(&mut self, alg: Algorithm) -> Option<&mut Ring> {
        self.rings.iter_mut().find(|r| r.alg == alg)
    }

    fn ring(&self, alg: Algorithm) -> Option<&Ring> {
        self.rings.iter().find(|r| r.alg == alg)
    }

    /// Advances the schedule to `now`, and brings the published algorithms in line with the
    /// policy:
    ///
    /// - an algorithm of the policy without keys gets a `next` key that signs from
    ///   `now + publish_lead`;
    /// - when an active key has signed for a full period, the next key becomes active, the
    ///   active key retires and a new next key is generated;
    /// - an algorithm no longer in the policy stops signing (its active key retires, its next
    ///   key is dropped) once every algorithm of the policy has an active key;
    /// - retired keys whose every token has expired are removed.
    ///
    /// Returns whether anything changed (the caller then stores the set and republishes the
    /// JWKS).
    pub fn rotate(&mut self, now: u64) -> Result<bool, Error> {
        let mut changed = false;
        let period = self.policy.rotation_period;
        let lead = self.policy.publish_lead;
        for spec in self.policy.specs.clone() {
            let alg = spec.algorithm();
            if self.ring(alg).is_none() {
                self.rings.push(Ring {
                    alg,
                    active: None,
                    next: None,
                    next_from: now,
                    retired: Vec::new(),
                });
            }
            let Some(ring) = self.ring_mut(alg) else {
                continue;
            };
            if ring.next.is_none() {
                ring.next = Some(SigningKey::generate(spec)?);
                ring.next_from = now.saturating_add(lead);
                changed = true;
            }
            let due = match &ring.active {
                Some((_, since)) => now >= since.saturating_add(period),
                None => now >= ring.next_from,
            };
            if due {
                let fresh = SigningKey::generate(spec)?;
                if let Some(promoted) = ring.next.replace(fresh)
                    && let Some((old, _)) = ring.active.replace((promoted, now))
                {
                    ring.retired.push(RetiredKey {
                        key: old,
                        since: now,
                    });
                }
                changed = true;
            }
        }
        let all_sign = self
            .policy
            .specs
            .iter()
            .all(|s| self.signing_key_for(s.algorithm()).is_some());
        let grace = self.grace();
        let policy = &self.policy;
        for ring in &mut self.rings {
            if all_sign && policy.spec_for(ring.alg).is_none() {
                if let Some((old, _)) = ring.active.take() {
                    ring.retired.push(RetiredKey {
                        key: old,
                        since: now,
                    });
                    changed = true;
                }
                // It never signed: nothing to verify with it.
                changed |= ring.next.take().is_some();
            }
            let before = ring.retired.len();
            ring.retired.retain(|r| now < r.since.saturating_add(grace));
            changed |= ring.retired.len() != before;
        }
        self.rings.retain(|r| !r.is_empty());
        Ok(changed)
    }

    /// Time after retirement until every token the key signed has expired, skew included.
    fn grace(&self) -> u64 {
        self.policy
            .token_lifetime
            .saturating_add(self.policy.leeway)
    }

    /// The earliest time at which [`KeySet::rotate`] will change something (given the policy
    /// already applied).
    pub fn next_change_at(&self) -> u64 {
        let grace = self.grace();
        let period = self.policy.rotation_period;
        self.rings
            .iter()
            .flat_map(|ring| {
                let promotion = match (&ring.active, &ring.next) {
                    (Some((_, since)), _) => Some(since.saturating_add(period)),
                    (None, Some(_)) => Some(ring.next_from),
                    (None, None) => None,
                };
                promotion
                    .into_iter()
                    .chain(ring.retired.iter().map(|r| r.since.saturating_add(grace)))
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The key that signs by default now: the active key of the policy's first algorithm, or
    /// (while that algorithm's first key is still only published) of the next one that has
    /// an active key, or of an algorithm being phased out.
    pub fn signing_key(&self) -> Result<&SigningKey, Error> {
        self.policy
            .specs
            .iter()
            .find_map(|s| self.signing_key_for(s.algorithm()))
            .or_else(|| {
                self.rings
                    .iter()
                    .find_map(|r| r.active.as_ref().map(|(k, _)| k))
            })
            .ok_or_else(|| Error::Key("the key set has no signing key".into()))
    }

    /// The key of algorithm `alg` that signs now, if there is one.
    pub fn signing_key_for(&self, alg: Algorithm) -> Option<&SigningKey> {
        self.ring(alg)
            .and_then(|r| r.active.as_ref())
            .map(|(k, _)| k)
    }

    /// When a key of `alg` signs for the first time, if `alg` is published but has no active
    /// key yet (an algorithm just added to the policy).
    pub fn signs_from(&self, alg: Algorithm) -> Option<u64> {
        self.ring(alg)
            .filter(|r| r.active.is_none() && r.next.is_some())
            .map(|r| r.next_from)
    }

    /// Signs `claims` with the default signing key.
    pub fn sign<T: Serialize + ?Sized>(&self, claims: &T) -> Result<String, Error> {
        self.signing_key()?.sign(claims)
    }

    /// Signs `claims` with the default signing key and the given `typ` header.
    pub fn sign_with_typ<T: Serialize + ?Sized>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, Error> {
        self.signing_key()?.sign_with_typ(typ, claims)
    }

    /// Every key with its state: per algorithm active, next, then retired.
    pub fn keys(&self) -> Vec<(&SigningKey, KeyState)> {
        let mut keys = Vec::new();
        for ring in &self.rings {
            if let Some((key, since)) = &ring.active {
                keys.push((key, KeyState::Active { since: *since }));
            }
            if let Some(key) = &ring.next {
                keys.push((key, KeyState::Next));
            }
            keys.extend(
                ring.retired
                    .iter()
                    .map(|r| (&r.key, KeyState::Retired { since: r.since })),
            );
        }
        keys
    }

    /// The algorithms that can sign ID tokens or will soon: those of the policy, then those
    /// still signing while they are phased out.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let mut algs = self.policy.algorithms();
        for ring in &self.rings {
            if ring.active.is_some() && !algs.contains(&ring.alg) {
                algs.push(ring.alg);
            }
        }
        algs
    }

    /// The public JWKS: every active, next and retired key.
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
        let mut keys = Vec::new();
        for ring in &self.rings {
            if let Some((key, since)) = &ring.active {
                keys.push(StoredEntry {
                    state: StoredState::Active,
                    key: StoredKey::new(key, Some(*since)),
                });
            }
            if let Some(key) = &ring.next {
                keys.push(StoredEntry {
                    state: StoredState::Next,
                    key: StoredKey::new(key, Some(ring.next_from)),
                });
            }
            for r in &ring.retired {
                keys.push(StoredEntry {
                    state: StoredState::Retired,
                    key: StoredKey::new(&r.key, Some(r.since)),
                });
            }
        }
        serde_json::to_vec(&StoredKeySet { keys }).map_err(|e| Error::Key(e.to_string()))
    }

    /// Reads a set written by [`KeySet::to_private_json`] (or by earlier versions, which kept
    /// one algorithm). The keys are as stored; [`KeySet::rotate`] applies `policy` to them.
    pub fn from_private_json(policy: RotationPolicy, bytes: &[u8]) -> Result<Self, Error> {
        policy.check()?;
        let invalid =
            |e: serde_json::Error| Error::Key(format!("stored key set is not valid: {e}"));
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
        let stored: StoredKeySet = if value.get("keys").is_some() {
            serde_json::from_value(value).map_err(invalid)?
        } else {
            let single: StoredSingleKeySet = serde_json::from_value(value).map_err(invalid)?;
            let mut keys = vec![
                StoredEntry {
                    state: StoredState::Active,
                    key: single.active,
                },
                StoredEntry {
                    state: StoredState::Next,
                    // A next key of the old form was published with the active one: it
                    // takes over when the active key's period ends.
                    key: StoredKey {
                        since: None,
                        ..single.next
                    },
                },
            ];
            keys.extend(single.retired.into_iter().map(|key| StoredEntry {
                state: StoredState::Retired,
                key,
            }));
            StoredKeySet { keys }
        };
        let mut set = KeySet {
            policy,
            rings: Vec::new(),
        };
        for entry in &stored.keys {
            let key = entry.key.load()?;
            let alg = key.algorithm();
            if set.ring(alg).is_none() {
                set.rings.push(Ring {
                    alg,
                    active: None,
                    next: None,
                    next_from: 0,
                    retired: Vec::new(),
                });
            }
            let Some(ring) = set.ring_mut(alg) else {
                continue;
            };
            let twice = || Error::Key(format!("stored key set has two {alg} keys in one state"));
            match entry.state {
                StoredState::Active => {
                    if ring.active.is_some() {
                        return Err(twice());
                    }
                    ring.active = Some((key, entry.key.since()?));
                }
                StoredState::Next => {
                    if ring.next.is_some() {
                        return Err(twice());
                    }
                    ring.next = Some(key);
                    ring.next_from = entry.key.since.unwrap_or(0);
                }
                StoredState::Retired => ring.retired.push(RetiredKey {
                    key,
                    since: entry.key.since()?,
                }),
            }
        }
        if set.rings.iter().all(|r| r.active.is_none()) {
            return Err(Error::Key("stored key set has no active key".into()));
        }
        Ok(set)
    }
}
