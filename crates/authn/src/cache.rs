//! Identities cached by the SHA-256 of their token until the token's `exp`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use secrecy::{ExposeSecret as _, SecretString};

use crate::authenticator::Authenticated;

/// A bounded cache of verified identities, keyed by the SHA-256 of the token: the token itself
/// is never stored. An entry lives until the token's `exp`; when full, expired entries go
/// first, then the oldest.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<[u8; 32], (Authenticated, u64)>,
    order: VecDeque<[u8; 32]>,
    /// When expired entries were last swept out (unix seconds): at most once a second, as a
    /// sweep walks every entry.
    swept: u64,
}

impl TokenCache {
    /// Default number of identities held.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A cache holding at most `capacity` identities (0 disables it).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The identity of `token` if cached and `now` is before its `exp`.
    pub fn get(&self, token: &SecretString, now: u64) -> Option<Authenticated> {
        self.get_str(token.expose_secret(), now)
    }

    /// [`TokenCache::get`] of a token borrowed from its request.
    pub(crate) fn get_str(&self, token: &str, now: u64) -> Option<Authenticated> {
        let key = crate::sha256(token.as_bytes());
        let mut inner = self.lock();
        match inner.entries.get(&key) {
            Some((a, exp)) if now < *exp => Some(a.clone()),
            Some(_) => {
                inner.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Caches the identity of `token`; identities without an expiry are not cached.
    pub fn insert(&self, token: &SecretString, authenticated: &Authenticated, now: u64) {
        let Some(exp) = authenticated.expires_at.filter(|exp| now < *exp) else {
            return;
        };
        if self.capacity == 0 {
            return;
        }
        let key = crate::sha256(token.expose_secret().as_bytes());
        let mut inner = self.lock();
        if inner.entries.len() >= self.capacity && inner.swept < now {
            inner.swept = now;
            inner.entries.retain(|_, (_, e)| now < *e);
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|k| entries.contains_key(k));
        }
        while inner.entries.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(oldest) => {
                    inner.entries.remove(&oldest);
                }
                None => break,
            }
        }
        if inner
            .entries
            .insert(key, (authenticated.clone(), exp))
            .is_none()
        {
            inner.order.push_back(key);
        }
    }

    /// Number of identities held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserInfo;

    fn auth(name: &str, exp: u64) -> Authenticated {
        Authenticated {
            user: std::sync::Arc::new(UserInfo {
                name: name.into(),
                ..UserInfo::default()
            }),
            expires_at: Some(exp),
        }
    }

    #[test]
    fn entries_expire_at_exp_and_the_cache_stays_bounded() {
        let cache = TokenCache::new(2);
        let (a, b, c) = (
            SecretString::from("a"),
            SecretString::from("b"),
            SecretString::from("c"),
        );
        cache.insert(&a, &auth("a", 100), 10);
        assert_eq!(cache.get(&a, 99).unwrap().user.name, "a");
        assert!(cache.get(&a, 100).is_none());
        cache.insert(&a, &auth("a", 100), 10);
        cache.insert(&b, &auth("b", 100), 10);
        cache.insert(&c, &auth("c", 100), 10);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a, 11).is_none(), "the oldest went first");
        assert!(cache.get(&c, 11).is_some());
        cache.insert(&a, &auth("a", 5), 10);
        assert!(
            cache.get(&a, 10).is_none(),
            "an expired identity is not cached"
        );
    }
}
