//! The compiled index: from each subject (user, group, service account) to the rules it holds,
//! cluster-wide and per namespace. A decision looks up the requester's name and groups instead
//! of scanning every binding, so its cost does not grow with the number of bindings. It must
//! agree with [`crate::evaluate::authorize`] on every request (property-tested).
//!
//! Chosen for few instructions and few cache lines per decision (measured with callgrind's
//! instruction and cache counts, which do not depend on what else the machine is doing, and
//! natively by alternating builds):
//! - a request hashes each of its names, its namespace and its target once; every filter and
//!   table is probed with those hashes (a `hashbrown` table takes the hash from the caller);
//! - there are two scopes: the cluster-wide grants, and every namespace's in one table keyed by
//!   (namespace, subject). A namespaced request reads no per-namespace record: the keys of its
//!   names in its namespace are computed, not looked up;
//! - each scope has a blocked Bloom filter over its entries: a name that holds nothing there,
//!   the common case, costs one word of it, and the words of one request's names are read
//!   without branches between them, so the processor overlaps the reads;
//! - the cluster-wide scope also has a filter for each (verb, resource signature bit) pair over
//!   the subjects whose grants name both, and a request reads the one of its pair: a subject
//!   that holds cluster-wide grants only for other verbs or resources, such as the groups every
//!   request carries, is passed over without a lookup (in the bench at 10,000
//!   ClusterRoleBindings: a fifth of the lookups and 8% fewer instructions per decision);
//! - each entry in a table is 24 bytes: its key and a summary of everything its grants allow,
//!   the union of their verbs (a bitset) and of the API group and resource pairs they name (a
//!   64-bit signature). Most entries a request finds concern other verbs or resources and are
//!   passed over on the summary alone, without reading their names or rules;
//! - only an entry that passes is checked in full: its rules, each with the same masks first
//!   and the reference evaluator's matching after, and, if they allow, its name and namespace,
//!   compared in full before anything is granted.

use std::collections::hash_map::Entry as Slot;
use std::hash::Hasher;
use std::sync::Arc;

use hashbrown::HashTable;
// The index is keyed by names the cluster's own RBAC objects define; FxHash is a fast, non-keyed
// hash, acceptable because a requester can only add lookups, not keys: a collision only costs
// a comparison, as every candidate is compared in full before it grants anything.
use rustc_hash::{FxHashMap as HashMap, FxHasher};

use crate::evaluate::{describe, rule_allows, rule_allows_target};
use crate::v1::{PolicyRule, Subject};
use crate::{Attributes, Decision, Policy};

/// The verb bit of verbs outside the well-known list: rules naming such a verb, or `*`, set it.
const OTHER_VERB: u32 = 1 << 31;

fn verb_bit(verb: &str) -> u32 {
    // A match compiles to a jump on length and then byte comparisons: no scan over a list.
    let i = match verb {
        "get" => 0,
        "list" => 1,
        "watch" => 2,
        "create" => 3,
        "update" => 4,
        "patch" => 5,
        "delete" => 6,
        "deletecollection" => 7,
        "impersonate" => 8,
        "bind" => 9,
        "escalate" => 10,
        "approve" => 11,
        "sign" => 12,
        "use" => 13,
        "proxy" => 14,
        "post" => 15,
        "put" => 16,
        "head" => 17,
        "options" => 18,
        _ => return OTHER_VERB,
    };
    1 << i
}

/// The verbs [`ByRequest`] tells apart: each well-known verb by its bit, and every other verb as
/// one.
const VERB_SLOTS: usize = 20;

/// The slot (below [`VERB_SLOTS`]) of a request's [`verb_bit`].
fn verb_slot(bit: u32) -> usize {
    (bit.trailing_zeros() as usize).min(VERB_SLOTS - 1)
}

/// The slots of every verb a rule's (or a union of rules') verb bits can match.
fn verb_slots(verbs: u32) -> impl Iterator<Item = usize> {
    (0..VERB_SLOTS).filter(move |&s| {
        let own = verbs & (1 << s) != 0;
        own || (s == VERB_SLOTS - 1 && verbs & OTHER_VERB != 0)
    })
}

/// The indexes of the bits set in `bits`.
fn bit_indexes(mut bits: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = bits.trailing_zeros() as usize;
        bits &= bits.wrapping_sub(1);
        (i < 64).then_some(i)
    })
}

/// The hash of one string. Each hash here is of a whole string on its own, so the end marker
/// `Hash for str` adds (against two strings hashing as one) is not needed.
fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

/// The signature bit of non-resource requests; rules with `nonResourceURLs` set it.
const NON_RESOURCE: u64 = 1 << 63;

/// The signature bit of a resource request for `resource` (without subresource) in `group`.
/// Rules set the bit of every (group, resource) pair they name, or every bit for `*`. A false
/// match (two pairs sharing a bit) only costs a full check; a missed match cannot happen, as
/// both sides compute the same bit from the same strings.
fn target_bit(group: &str, resource: &str) -> u64 {
    let h = hash_str(group)
        .rotate_left(21)
        .wrapping_add(hash_str(resource))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    1 << (h >> 58)
}

/// The signature of what `rule` concerns (see [`target_bit`]).
fn rule_targets(rule: &PolicyRule) -> u64 {
    let mut bits = if rule.non_resource_urls.is_empty() {
        0
    } else {
        NON_RESOURCE
    };
    for group in &rule.api_groups {
        for resource in &rule.resources {
            // `pods/log` concerns pods; `*` and `*/scale` concern every resource.
            let base = resource
                .split_once('/')
                .map_or(resource.as_str(), |(r, _)| r);
            if group == "*" || base == "*" {
                return u64::MAX;
            }
            bits |= target_bit(group, base);
        }
    }
    bits
}

/// The signature of what a request concerns.
fn request_target(a: &Attributes) -> u64 {
    if !a.resource_request {
        NON_RESOURCE
    } else if a.resource.bytes().any(|b| b == b'/') {
        // Not a real resource name: the apiserver compares it joined with its subresource, so
        // no single pair stands for it. Check every candidate in full.
        u64::MAX
    } else {
        target_bit(&a.api_group, &a.resource)
    }
}

/// A rule with its verbs and targets pre-matched into bitsets.
#[derive(Debug, Clone)]
struct CompiledRule {
    /// Bit per well-known verb, [`OTHER_VERB`] for any other; `u32::MAX` for `*`.
    verbs: u32,
    targets: u64,
    /// The original rule, for what the bitsets do not decide.
    rule: PolicyRule,
}

impl CompiledRule {
    fn new(rule: &PolicyRule) -> CompiledRule {
        let verbs = rule.verbs.iter().fold(0u32, |acc, v| {
            if v == "*" {
                u32::MAX
            } else {
                acc | verb_bit(v)
            }
        });
        CompiledRule {
            verbs,
            targets: rule_targets(rule),
            rule: rule.clone(),
        }
    }

    fn allows(&self, a: &Attributes, verb: u32, target: u64) -> bool {
        if self.verbs & verb == 0 || self.targets & target == 0 {
            return false;
        }
        if verb == OTHER_VERB {
            // Only the string tells two unusual verbs apart.
            rule_allows(&self.rule, a)
        } else {
            rule_allows_target(&self.rule, a)
        }
    }
}

/// The compiled rules of one role, with the union of their bitsets.
#[derive(Debug)]
struct CompiledRole {
    rules: Box<[CompiledRule]>,
    verbs: u32,
    targets: u64,
}

impl CompiledRole {
    fn new(rules: &[PolicyRule]) -> Arc<CompiledRole> {
        let rules: Box<[CompiledRule]> = rules.iter().map(CompiledRule::new).collect();
        Arc::new(CompiledRole {
            verbs: rules.iter().fold(0, |acc, r| acc | r.verbs),
            targets: rules.iter().fold(0, |acc, r| acc | r.targets),
            rules,
        })
    }
}

/// The rules granted by one binding to one subject, with the reason an allow reports.
#[derive(Debug, Clone)]
struct Grant {
    role: Arc<CompiledRole>,
    reason: Arc<str>,
}

/// Subjects are users (service accounts under their user name
/// `system:serviceaccount:NS:NAME`) or groups; a user and a group of the same name differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    User,
    Group,
}

/// One subject in one scope, as the table holds it: what a lookup reads before it knows the
/// entry concerns the request. Kept small (24 bytes) so that more of the table stays in cache.
#[derive(Debug)]
struct Entry {
    /// [`key`] of the scope's namespace and the subject's [`name_hash`].
    hash: u64,
    /// Unions over every grant's rules.
    verbs: u32,
    kind: Kind,
    targets: u64,
    /// Its [`Holder`] in the scope's `holders`.
    holder: u32,
}

/// The rest of an entry: read only when its summary concerns the request.
#[derive(Debug)]
struct Holder {
    name: Box<str>,
    /// `""` in the cluster-wide scope; shared by the entries of one namespace.
    namespace: Arc<str>,
    grants: Box<[Grant]>,
}

/// The hash of a subject name, computed once per request.
fn name_hash(kind: Kind, name: &str) -> u64 {
    let h = hash_str(name);
    match kind {
        Kind::User => h,
        Kind::Group => h ^ 0x5bd1_e995_7c6a_3f21,
    }
}

/// The hash of a namespace name; 0 stands for the cluster-wide scope.
fn namespace_hash(namespace: &str) -> u64 {
    hash_str(namespace).rotate_left(31) | 1
}

/// The key of a subject in a namespace (or cluster-wide, for a namespace hash of 0). Two
/// independent hashes combined: a pair's key is as spread as a name's.
fn key(namespace: u64, name: u64) -> u64 {
    name ^ namespace
}

/// What a request asks, prepared once: its verb bit, target signature and names' hashes.
struct Query<'a> {
    a: &'a Attributes,
    verb: u32,
    target: u64,
    /// The user, then each of its first groups (up to [`HASHED`] names in all), as
    /// ([`name_hash`], [`Filter::bits`]); a requester with more groups has the rest hashed
    /// where they are used.
    names: [(u64, u64); HASHED],
    /// How many of `names` are set.
    hashed: usize,
    /// The request's (verb, target) pair for [`ByRequest`], when its target is one bit.
    pair: Option<usize>,
}

/// Names hashed once per request: the user and its first groups (most requesters have fewer).
/// At most 32 (a bit each in [`Scope::candidates`]).
const HASHED: usize = 8;

impl<'a> Query<'a> {
    fn new(a: &'a Attributes) -> Query<'a> {
        let user = name_hash(Kind::User, &a.user);
        let mut names = [(user, Filter::bits(user)); HASHED];
        let mut hashed = 1;
        for (slot, group) in names.iter_mut().skip(1).zip(&a.groups) {
            let hash = name_hash(Kind::Group, group);
            *slot = (hash, Filter::bits(hash));
            hashed += 1;
        }
        let verb = verb_bit(&a.verb);
        let target = request_target(a);
        Query {
            a,
            verb,
            target,
            names,
            hashed,
            pair: (target.count_ones() == 1)
                .then(|| verb_slot(verb) * 64 + target.trailing_zeros() as usize),
        }
    }

    /// The requester's `i`-th name: 0 is the user, then its groups in order.
    fn name(&self, i: usize) -> Option<(Kind, &'a str)> {
        match i.checked_sub(1) {
            None => Some((Kind::User, self.a.user.as_str())),
            Some(g) => self.a.groups.get(g).map(|g| (Kind::Group, g.as_str())),
        }
    }
}

/// (Namespace, subject) → what the subject holds there. One scope holds the cluster-wide
/// grants, one every namespace's: a namespaced request probes the second with keys of its
/// namespace and names, so it reads no per-namespace record before knowing whether it holds
/// anything there.
#[derive(Debug)]
struct Scope {
    /// Over every entry: most requesters hold nothing in most namespaces, and this answers so
    /// from one word per name instead of a probe of the table. The words of one request's names
    /// are independent reads, which the processor overlaps.
    filter: Filter,
    /// Filters by what a request asks, for the cluster-wide scope (see [`ByRequest`]).
    by_request: Option<ByRequest>,
    subjects: HashTable<Entry>,
    holders: Vec<Holder>,
}

impl Scope {
    /// A scope of `collected`, with [`ByRequest`] filters if `by_request`.
    fn build(collected: Collected, by_request: bool) -> Scope {
        let mut subjects = HashTable::with_capacity(collected.len());
        // (key, name hash, verbs, targets) of each entry, for the filters.
        let mut summaries = Vec::with_capacity(collected.len());
        let mut holders = Vec::with_capacity(collected.len());
        for ((namespace, kind, name), grants) in collected {
            let ns_hash = if namespace.is_empty() {
                0
            } else {
                namespace_hash(&namespace)
            };
            let name_hash = name_hash(kind, &name);
            let hash = key(ns_hash, name_hash);
            let Ok(holder) = u32::try_from(holders.len()) else {
                break; // 4 billion subjects in one scope: the rest hold nothing
            };
            let entry = Entry {
                hash,
                verbs: grants.iter().fold(0, |acc, g| acc | g.role.verbs),
                kind,
                targets: grants.iter().fold(0, |acc, g| acc | g.role.targets),
                holder,
            };
            summaries.push((hash, name_hash, entry.verbs, entry.targets));
            holders.push(Holder {
                name,
                namespace,
                grants: grants.into_boxed_slice(),
            });
            subjects.insert_unique(hash, entry, |e: &Entry| e.hash);
        }
        Scope {
            filter: Filter::new(summaries.iter().map(|s| (s.0, s.1))),
            by_request: by_request.then(|| ByRequest::new(&summaries)).flatten(),
            subjects,
            holders,
        }
    }

    /// Which of the request's hashed names (bit `i` for `q.names[i]`) may hold something in
    /// the namespace of hash `ns_hash` (0 for the cluster-wide scope): independent reads and no
    /// branches on what they find, so the processor overlaps them.
    fn candidates(&self, q: &Query<'_>, ns_hash: u64) -> u32 {
        // The filter of the request's (verb, target) pair if the scope has them, or its own.
        let (words, mask) = match (&self.by_request, q.pair) {
            (Some(by), Some(pair)) => match by.filter(pair) {
                Some(filter) => filter,
                None => return 0, // cannot happen (every pair has a filter): deny
            },
            _ => (&*self.filter.words, self.filter.mask),
        };
        let mut candidates = 0u32;
        let names = q.names.get(..q.hashed).unwrap_or_default();
        for (i, &(name_hash, bits)) in names.iter().enumerate() {
            let held = may_hold(words, mask, key(ns_hash, name_hash), bits);
            candidates |= u32::from(held) << i;
        }
        candidates
    }

    /// The grant by which the requester's user or one of its groups is allowed the request in
    /// `namespace` (of hash `ns_hash`; `""` and 0 for the cluster-wide scope), given the
    /// [`Scope::candidates`] among its hashed names.
    // Not inlined into `authorize` (twice) nor `lookup` into it: callgrind counts fewer
    // instructions per decision.
    #[inline(never)]
    fn grant(
        &self,
        q: &Query<'_>,
        mut candidates: u32,
        namespace: &str,
        ns_hash: u64,
    ) -> Option<&Grant> {
        // In order: the user, then the groups.
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            let name_hash = q.names.get(i)?.0;
            if let Some(g) = self.lookup(q, i, namespace, key(ns_hash, name_hash)) {
                return Some(g);
            }
        }
        if q.a.groups.len() < HASHED {
            return None;
        }
        self.grant_past_hashed(q, namespace, ns_hash)
    }

    /// [`Scope::grant`] for the groups past the hashed ones (name `i` is group `i - 1`): they
    /// are hashed here, once per scope. Apart, so that `grant` stays small.
    #[cold]
    #[inline(never)]
    fn grant_past_hashed(&self, q: &Query<'_>, namespace: &str, ns_hash: u64) -> Option<&Grant> {
        (HASHED..=q.a.groups.len()).find_map(|i| {
            let name_hash = name_hash(Kind::Group, q.a.groups.get(i - 1)?);
            let hash = key(ns_hash, name_hash);
            if self.filter.may_hold(hash, Filter::bits(name_hash)) {
                self.lookup(q, i, namespace, hash)
            } else {
                None
            }
        })
    }

    /// The grant, if any, by which the requester's name `i` (see [`Query::name`]), of key
    /// `hash`, allows the request: past the filter.
    #[inline(never)] // see `grant`
    fn lookup(&self, q: &Query<'_>, i: usize, namespace: &str, hash: u64) -> Option<&Grant> {
        let kind = if i == 0 { Kind::User } else { Kind::Group };
        // The summary first, as most entries found concern something else; the rest (in
        // `check`) only for an entry that passes. Inside the search, so that an entry sharing
        // the hash is passed over, not taken for the subject's own.
        let mut found = None;
        self.subjects.find(hash, |e| {
            e.hash == hash
                && e.kind == kind
                && e.verbs & q.verb != 0
                && e.targets & q.target != 0
                && {
                    found = self.check(q, e, i, namespace);
                    found.is_some()
                }
        })?;
        found
    }

    /// The grant of entry `e` that allows the request, if `e` is the requester's name `i` in
    /// `namespace`: its rules first, and its names only if they allow, as they are read from
    /// elsewhere in memory. Nothing is granted before the names are compared in full.
    #[inline(never)] // keeps `lookup`, which most requests end in, small
    fn check(&self, q: &Query<'_>, e: &Entry, i: usize, namespace: &str) -> Option<&Grant> {
        let holder = self.holders.get(e.holder as usize)?;
        let grant = holder.grants.iter().find(|g| {
            g.role.verbs & q.verb != 0
                && g.role.targets & q.target != 0
                && g.role.rules.iter().any(|r| r.allows(q.a, q.verb, q.target))
        })?;
        let (_, name) = q.name(i)?;
        (*holder.name == *name && *holder.namespace == *namespace).then_some(grant)
    }
}

/// A blocked Bloom filter over entries: each sets two bits of one 64-bit word, so a check
/// reads one word. The word comes from the entry's key (namespace and name), the bits from its
/// name alone, so that a request computes them once for every scope. A false positive only
/// costs a probe of the table.
#[derive(Debug)]
struct Filter {
    words: Box<[u64]>,
    /// `words.len() - 1`; the length is a power of two.
    mask: usize,
}

impl Filter {
    /// 8 to 16 bits an entry (a power of two of words): about 3% false positives or fewer.
    /// Takes each entry's key and name hash.
    fn new(entries: impl ExactSizeIterator<Item = (u64, u64)>) -> Filter {
        let len = (entries.len() * 8 / 64).next_power_of_two();
        let mut filter = Filter {
            words: vec![0; len].into_boxed_slice(),
            mask: len - 1,
        };
        for (hash, name_hash) in entries {
            if let Some(w) = filter.words.get_mut(word_of(hash, filter.mask)) {
                *w |= Filter::bits(name_hash);
            }
        }
        filter
    }

    /// The two bits of a name, from other bits of its hash; always two: a name whose two bits
    /// were one would pass wherever that bit is set, several times as often as others, and the
    /// name every request carries (`system:authenticated`) could be such a name.
    fn bits(name_hash: u64) -> u64 {
        let first = (name_hash >> 44) & 63;
        let other = first ^ ((name_hash >> 50) & 63).max(1);
        (1 << first) | (1 << other)
    }

    /// False if no entry has key `hash` (whose name's [`Filter::bits`] are `bits`).
    fn may_hold(&self, hash: u64, bits: u64) -> bool {
        may_hold(&self.words, self.mask, hash, bits)
    }
}

/// The word of key `hash` in filter words of `mask` (their length less one, a power of two
/// less one): from its middle bits, as the table probes with its low bits and top seven.
fn word_of(hash: u64, mask: usize) -> usize {
    (hash >> 20) as usize & mask
}

/// False if no entry of filter words `words` (of `mask`, see [`word_of`]) has key `hash`
/// (whose name's [`Filter::bits`] are `bits`).
fn may_hold(words: &[u64], mask: usize, hash: u64, bits: u64) -> bool {
    // A word out of range cannot happen (`mask`); it would hold nothing, so deny.
    words
        .get(word_of(hash, mask))
        .is_some_and(|w| w & bits == bits)
}

/// Filters of the cluster-wide scope by what a request asks: one for each (verb, target bit)
/// pair, over the subjects whose grants name both (by the same summaries as [`Entry`]), each
/// laid out as a [`Filter`]. A request reads the one of its pair, so a subject that holds
/// cluster-wide grants for other verbs or resources (the common case for groups every request
/// carries, such as `system:authenticated`) is passed over without reading its entry. Each
/// filter holds only the subjects of its pair, so the ones requests use stay in cache.
#[derive(Debug)]
struct ByRequest {
    /// Every filter's words, end to end.
    words: Box<[u64]>,
    /// For pair `verb slot × 64 + target bit`: the first word of its filter and its length
    /// less one (a power of two less one).
    filters: Box<[(usize, usize)]>,
}

/// The most words all [`ByRequest`] filters of one policy may take (64 MiB); past it the
/// scope's own filter serves.
const BY_REQUEST_WORDS: usize = 8 << 20;

impl ByRequest {
    /// Over entries (key, name hash, verbs, targets); `None` if they would take more than
    /// [`BY_REQUEST_WORDS`].
    fn new(entries: &[(u64, u64, u32, u64)]) -> Option<ByRequest> {
        let pairs = |verbs: u32, targets: u64| {
            verb_slots(verbs).flat_map(move |v| bit_indexes(targets).map(move |t| v * 64 + t))
        };
        let mut counts = vec![0usize; VERB_SLOTS * 64];
        for &(_, _, verbs, targets) in entries {
            for pair in pairs(verbs, targets) {
                *counts.get_mut(pair)? += 1;
            }
        }
        let mut filters = Vec::with_capacity(counts.len());
        let mut total = 0usize;
        for count in counts {
            // 4 to 8 bits a subject, half the scope filter's: more false positives (each a
            // lookup), but the filters requests use stay in cache, which measured faster.
            let len = (count * 4 / 64).next_power_of_two();
            filters.push((total, len - 1));
            total += len;
        }
        if total > BY_REQUEST_WORDS {
            return None;
        }
        let mut words = vec![0u64; total].into_boxed_slice();
        for &(hash, name_hash, verbs, targets) in entries {
            let bits = Filter::bits(name_hash);
            for pair in pairs(verbs, targets) {
                let &(start, mask) = filters.get(pair)?;
                *words.get_mut(start + word_of(hash, mask))? |= bits;
            }
        }
        Some(ByRequest {
            words,
            filters: filters.into_boxed_slice(),
        })
    }

    /// The words of the filter of `pair` and their mask.
    fn filter(&self, pair: usize) -> Option<(&[u64], usize)> {
        let &(start, mask) = self.filters.get(pair)?;
        Some((self.words.get(start..=start + mask)?, mask))
    }
}

/// An immutable compiled policy. Build one per policy snapshot; share it between readers.
#[derive(Debug)]
pub struct CompiledPolicy {
    cluster: Scope,
    namespaced: Scope,
}

impl Default for CompiledPolicy {
    fn default() -> CompiledPolicy {
        CompiledPolicy::new(&Policy::default())
    }
}

/// Grants by (namespace, subject), while compiling.
type Collected = HashMap<(Arc<str>, Kind, Box<str>), Vec<Grant>>;

impl CompiledPolicy {
    /// Compiles `policy` (already aggregated).
    pub fn new(policy: &Policy) -> CompiledPolicy {
        // Each role is compiled once, shared by every binding to it.
        let cluster_roles: HashMap<&str, Arc<CompiledRole>> = policy
            .cluster_roles
            .iter()
            .map(|(name, r)| (name.as_str(), CompiledRole::new(&r.rules)))
            .collect();
        let mut cluster = Collected::default();
        let everywhere: Arc<str> = Arc::from("");
        for (name, b) in &policy.cluster_role_bindings {
            if b.role_ref.kind != "ClusterRole" {
                continue;
            }
            let Some(role) = cluster_roles.get(b.role_ref.name.as_str()) else {
                continue; // a binding to a missing role grants nothing
            };
            for s in &b.subjects {
                let reason = format!(
                    "RBAC: allowed by ClusterRoleBinding {name:?} of ClusterRole {:?} to {}",
                    b.role_ref.name,
                    describe(s)
                );
                add(&mut cluster, s, &everywhere, role, reason);
            }
        }
        let mut namespaced = Collected::default();
        // One copy of each namespace's name, shared by its entries.
        let mut names: HashMap<&str, Arc<str>> = HashMap::default();
        // Roles too are compiled once, when the first binding to them is met.
        let mut roles: HashMap<(&str, &str), Arc<CompiledRole>> = HashMap::default();
        for ((ns, name), b) in &policy.role_bindings {
            if ns.is_empty() {
                continue; // no request is in namespace "": such a binding grants nothing
            }
            let role = match b.role_ref.kind.as_str() {
                "ClusterRole" => cluster_roles.get(b.role_ref.name.as_str()).cloned(),
                "Role" => match roles.entry((ns, &b.role_ref.name)) {
                    Slot::Occupied(e) => Some(e.get().clone()),
                    Slot::Vacant(e) => policy
                        .roles
                        .get(&(ns.clone(), b.role_ref.name.clone()))
                        .map(|r| e.insert(CompiledRole::new(&r.rules)).clone()),
                },
                _ => None,
            };
            let Some(role) = role else { continue };
            let scope = names.entry(ns).or_insert_with(|| Arc::from(ns.as_str()));
            for s in &b.subjects {
                let reason = format!(
                    "RBAC: allowed by RoleBinding \"{name}/{ns}\" of {} {:?} to {}",
                    b.role_ref.kind,
                    b.role_ref.name,
                    describe(s)
                );
                add(&mut namespaced, s, scope, &role, reason);
            }
        }
        CompiledPolicy {
            cluster: Scope::build(cluster, true),
            namespaced: Scope::build(namespaced, false),
        }
    }

    /// Decides `a`: the same answer as [`crate::authorize`] over the policy this was built from.
    pub fn authorize(&self, a: &Attributes) -> Decision {
        let q = Query::new(a);
        let ns_hash = if a.namespace.is_empty() {
            0
        } else {
            namespace_hash(&a.namespace)
        };
        // Both filters are read before either table: their reads overlap, and with the lookups.
        let cluster = self.cluster.candidates(&q, 0);
        let namespaced = if ns_hash == 0 {
            0
        } else {
            self.namespaced.candidates(&q, ns_hash)
        };
        // A scope where no name may hold anything is not searched (the common case), unless
        // the requester has groups past the hashed ones.
        let search = |candidates: u32| candidates != 0 || a.groups.len() >= HASHED;
        // Cluster-wide grants first, then the namespace's, as the apiserver visits them.
        let found = search(cluster)
            .then(|| self.cluster.grant(&q, cluster, "", 0))
            .flatten()
            .or_else(|| {
                // RoleBindings grant nothing to cluster-scoped requests (`ns_hash` 0).
                if ns_hash == 0 || !search(namespaced) {
                    return None;
                }
                self.namespaced.grant(&q, namespaced, &a.namespace, ns_hash)
            });
        match found {
            Some(g) => Decision {
                allowed: true,
                reason: String::from(&*g.reason),
            },
            None => Decision::default(),
        }
    }
}

/// Records that `subject` of a binding in `binding_namespace` (`""` for cluster bindings) holds
/// `role` there.
fn add(
    collected: &mut Collected,
    subject: &Subject,
    binding_namespace: &Arc<str>,
    role: &Arc<CompiledRole>,
    reason: String,
) {
    let (kind, name) = match subject.kind.as_str() {
        "User" => (Kind::User, subject.name.clone()),
        "Group" => (Kind::Group, subject.name.clone()),
        "ServiceAccount" => {
            let ns = if subject.namespace.is_empty() {
                &**binding_namespace
            } else {
                &subject.namespace
            };
            if ns.is_empty() {
                return; // matches nobody, as in the reference evaluator
            }
            (
                Kind::User,
                format!("system:serviceaccount:{ns}:{}", subject.name),
            )
        }
        _ => return,
    };
    collected
        .entry((binding_namespace.clone(), kind, name.into_boxed_str()))
        .or_default()
        .push(Grant {
            role: role.clone(),
            reason: Arc::from(reason),
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_sets_two_distinct_bits_of_its_word() {
        // One bit instead of two would let a name pass wherever that bit is set: several times
        // the false positives, for every request if the name is one every request carries.
        let mut h = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            h = h.rotate_left(17).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ 0x5bd1;
            assert_eq!(Filter::bits(h).count_ones(), 2, "{h:#x}");
        }
        // And a hash whose two 6-bit fields are equal, the case that gave one bit.
        let same = (5u64 << 44) | (5 << 50);
        assert_eq!(Filter::bits(same).count_ones(), 2);
    }
}
