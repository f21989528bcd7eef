//! Backoff for failed password logins, per account name and per client address.
//!
//! A few failures are free (typos); after that every further failure doubles the time before
//! the next attempt is even checked, up to a cap. Unknown account names are counted like
//! known ones, so the answer never tells which exist. A success clears the account's and the
//! address's record. Records are forgotten after a quiet period; the table is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures allowed per account before backoff starts.
const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failures allowed per client address (which may be a NAT shared by many users).
const ADDRESS_FREE_FAILURES: u32 = 20;
/// Longest backoff.
const MAX_BACKOFF_SECS: u64 = 15 * 60;
/// A record with no failure for this long is forgotten.
const FORGET_AFTER_SECS: u64 = 30 * 60;
/// Most records kept; beyond it the oldest are dropped first.
const MAX_RECORDS: usize = 100_000;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Key {
    Account([u8; 32]),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: u64,
    blocked_until: u64,
}

/// The login throttle.
#[derive(Default)]
pub(crate) struct Throttle {
    records: Mutex<HashMap<Key, Record>>,
}

fn account_key(login: &str) -> Key {
    let normalized = login.trim().to_lowercase();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, normalized.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Key::Account(out)
}

fn keys(login: &str, address: Option<IpAddr>) -> impl Iterator<Item = (Key, u32)> {
    std::iter::once((account_key(login), ACCOUNT_FREE_FAILURES))
        .chain(address.map(|a| (Key::Address(a), ADDRESS_FREE_FAILURES)))
}

impl Throttle {
    /// Seconds to wait before a login for `login` from `address` may be tried, or `None` if
    /// it may be tried now.
    pub(crate) fn wait(&self, login: &str, address: Option<IpAddr>, now: u64) -> Option<u64> {
        let records = self.records.lock().ok()?;
        keys(login, address)
            .filter_map(|(key, _)| records.get(&key))
            .map(|r| r.blocked_until.saturating_sub(now))
            .filter(|wait| *wait > 0)
            .max()
    }

    /// Records a failed login.
    pub(crate) fn failed(&self, login: &str, address: Option<IpAddr>, now: u64) {
        let Ok(mut records) = self.records.lock() else {
            return;
        };
        if records.len() >= MAX_RECORDS {
            records.retain(|_, r| r.last_failure + FORGET_AFTER_SECS > now);
            if records.len() >= MAX_RECORDS {
                // Under a flood of distinct names: keep the most recent half.
                let mut ages: Vec<u64> = records.values().map(|r| r.last_failure).collect();
                ages.sort_unstable();
                let cut = ages.get(ages.len() / 2).copied().unwrap_or(now);
                records.retain(|_, r| r.last_failure > cut);
            }
        }
        for (key, free) in keys(login, address) {
            let record = records.entry(key).or_insert(Record {
                failures: 0,
                last_failure: now,
                blocked_until: 0,
            });
            if record.last_failure + FORGET_AFTER_SECS <= now {
                record.failures = 0;
            }
            record.failures = record.failures.saturating_add(1);
            record.last_failure = now;
            if record.failures >= free {
                let exponent = (record.failures - free).min(20);
                let backoff = (1u64 << exponent).min(MAX_BACKOFF_SECS);
                record.blocked_until = now + backoff;
            }
        }
    }

    /// Records a successful login: the account and the address start afresh.
    pub(crate) fn succeeded(&self, login: &str, address: Option<IpAddr>) {
        if let Ok(mut records) = self.records.lock() {
            for (key, _) in keys(login, address) {
                records.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn a_few_typos_are_free_then_backoff_doubles() {
        let t = Throttle::default();
        for _ in 0..ACCOUNT_FREE_FAILURES - 1 {
            t.failed("alice", ADDR, 100);
            assert_eq!(t.wait("alice", ADDR, 100), None);
        }
        t.failed("alice", ADDR, 100);
        assert_eq!(t.wait("alice", ADDR, 100), Some(1));
        t.failed("alice", ADDR, 101);
        assert_eq!(t.wait("alice", ADDR, 101), Some(2));
        t.failed("alice", ADDR, 103);
        assert_eq!(t.wait("alice", ADDR, 103), Some(4));
        // Another account from another address is not affected; the same name in other
        // spelling is.
        assert_eq!(t.wait("bob", None, 103), None);
        assert_eq!(t.wait(" Alice", None, 103), Some(4));
        t.succeeded("alice", ADDR);
        assert_eq!(t.wait("alice", ADDR, 103), None);
    }

    #[test]
    fn one_address_trying_many_accounts_is_slowed_down() {
        let t = Throttle::default();
        for i in 0..ADDRESS_FREE_FAILURES {
            t.failed(&format!("user{i}"), ADDR, 100);
        }
        assert!(t.wait("someone-else", ADDR, 100).is_some());
        assert_eq!(t.wait("someone-else", None, 100), None);
    }

    #[test]
    fn backoff_is_capped_and_forgotten() {
        let t = Throttle::default();
        for _ in 0..64 {
            t.failed("alice", None, 100);
        }
        assert_eq!(t.wait("alice", None, 100), Some(MAX_BACKOFF_SECS));
        let later = 100 + FORGET_AFTER_SECS;
        t.failed("alice", None, later);
        assert_eq!(t.wait("alice", None, later), None);
    }
}
