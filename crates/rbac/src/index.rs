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
//!   the subjects with a rule that names both, and a request reads the one of its pair: a subject
//!   that holds cluster-wide grants only for other verbs or resources, such as the groups every
//!   request carries, is passed over without a lookup (in the bench at 10,000
//!   ClusterRoleBindings: a fifth of the lookups and 8% fewer instructions per decision);
//! - each entry in a table is 24 bytes: its key and a summary of everything its grants allow,
//!   the union of their verbs (a bitset) and of the API group and resource pairs they name (a
//!   64-bit signature). Most entries a request finds concern other verbs or resources and are
//!   passed over on the summary alone, without reading their names or rules;
//! - only an entry that passes is checked in full: its rules, each with the same masks first,
//!   and, if they allow, its kind, name and namespace, compared in full before anything is
//!   granted. A rule that names its API groups and resources exactly matches by the number of
//!   the request's group resource, looked up once; others by the reference evaluator's
//!   matching;
//! - what a check reads of a subject (kind, grants, name) is one record in a byte array of the
//!   scope, and roles are an array of the policy: not an allocation per subject, grant or
//!   string, so a check reads a line or two, and the memory a decision can touch stays small.
//!   A read that misses every cache costs here seven times one that finds the processor's
//!   last-level cache, and a check once made about four of them.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::hash_map::Entry as Slot;
use std::fmt::{self, Write as _};
use std::hash::Hasher;

use hashbrown::HashTable;
// The index is keyed by names the cluster's own RBAC objects define; FxHash is a fast, non-keyed
// hash, acceptable because a requester can only add lookups, not keys: a collision only costs
// a comparison, as every candidate is compared in full before it grants anything.
use rustc_hash::{FxHashMap as HashMap, FxHasher};

use crate::evaluate::{Reason, rule_allows_ref, rule_allows_target};
use crate::v1::PolicyRule;
use crate::{Attributes, AttributesRef, Decision, Policy};

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

/// The (verb slot × 64 + target bit) pairs of `by_verb` (see [`CompiledRole::by_verb`]).
fn pairs(by_verb: &[u64; VERB_SLOTS]) -> impl Iterator<Item = usize> + '_ {
    by_verb
        .iter()
        .enumerate()
        .flat_map(|(v, &targets)| bit_indexes(targets).map(move |t| v * 64 + t))
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

/// The hash of an (API group, resource) pair, a group resource as Kubernetes calls it, from
/// which its [`target_bit`] and its place in [`GroupResources`] are taken.
#[inline(always)] // into `authorize`: measured fewer instructions
fn group_resource_hash(group: &str, resource: &str) -> u64 {
    hash_str(group)
        .rotate_left(21)
        .wrapping_add(hash_str(resource))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The signature bit of a resource request for `resource` (without subresource) in `group`.
/// Rules set the bit of every (group, resource) pair they name, or every bit for `*`. A false
/// match (two pairs sharing a bit) only costs a full check; a missed match cannot happen, as
/// both sides compute the same bit from the same strings.
fn target_bit(hash: u64) -> u64 {
    1 << (hash >> 58)
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
            bits |= target_bit(group_resource_hash(group, base));
        }
    }
    bits
}

/// What a request concerns: its signature (see [`target_bit`]), and the
/// [`group_resource_hash`] of its group and resource if a rule naming group resources exactly
/// can match it: a resource request without subresource, for a real resource name.
fn request_target(a: &AttributesRef<'_>) -> (u64, Option<u64>) {
    if !a.resource_request {
        (NON_RESOURCE, None)
    } else if a.resource.bytes().any(|b| b == b'/') {
        // Not a real resource name: the apiserver compares it joined with its subresource, so
        // no single pair stands for it. Check every candidate in full.
        (u64::MAX, None)
    } else {
        let hash = group_resource_hash(a.api_group, a.resource);
        (target_bit(hash), a.subresource.is_empty().then_some(hash))
    }
}

/// Every group resource (API group and resource) that some rule names exactly, numbered. A
/// rule that names only such (see [`CompiledRule::group_resources`]) matches a request by the
/// number of its group resource: that is looked up here once, and no rule's strings are read.
#[derive(Debug, Default)]
struct GroupResources {
    /// (group, resource, number), by [`group_resource_hash`].
    table: HashTable<(Box<str>, Box<str>, u32)>,
}

impl GroupResources {
    /// The number of (`group`, `resource`), given one if new.
    fn intern(&mut self, group: &str, resource: &str) -> u32 {
        let hash = group_resource_hash(group, resource);
        let next = u32::try_from(self.table.len()).unwrap_or(u32::MAX);
        let entry = self.table.entry(
            hash,
            |(g, r, _)| **g == *group && **r == *resource,
            |(g, r, _)| group_resource_hash(g, r),
        );
        entry
            .or_insert_with(|| (group.into(), resource.into(), next))
            .get()
            .2
    }

    /// The number of the request's group resource, if a rule names it: `hash` is its
    /// [`group_resource_hash`].
    fn find(&self, hash: u64, a: &AttributesRef<'_>) -> Option<u32> {
        self.table
            .find(hash, |(g, r, _)| **g == *a.api_group && **r == *a.resource)
            .map(|e| e.2)
    }
}

/// What a check reads of one rule: its verbs and targets pre-matched into bitsets, and the
/// numbers of the group resources it names if it names them exactly. Kept apart from the rule
/// itself, so that the rules of a role are a few adjacent cache lines.
#[derive(Debug, Clone, Copy)]
struct CompiledRule {
    /// Bit per well-known verb, [`OTHER_VERB`] for any other; `u32::MAX` for `*`.
    verbs: u32,
    /// Start and end in the role's `group_resources` of this rule's, if it names them exactly:
    /// API groups and resources without `*` nor `/`, no resource names and no non-resource
    /// URLs. Such a rule matches exactly the requests without subresource whose group and
    /// resource it names. `None`: matched by the original rule.
    group_resources: Option<(u32, u32)>,
    targets: u64,
}

/// The compiled rules of one role, with the union of their bitsets.
#[derive(Debug)]
struct CompiledRole {
    rules: Box<[CompiledRule]>,
    /// The group resource numbers of the rules that name them exactly, end to end.
    group_resources: Box<[u32]>,
    /// The original rules, in the order of `rules`, for what the compiled ones do not decide.
    originals: Box<[PolicyRule]>,
    verbs: u32,
    targets: u64,
    /// For each verb slot (see [`VERB_SLOTS`]), the targets of the rules with a verb of it:
    /// which (verb, target bit) pairs one rule names together, for [`ByRequest`].
    by_verb: [u64; VERB_SLOTS],
}

impl CompiledRole {
    fn new(rules: &[PolicyRule], known: &mut GroupResources) -> CompiledRole {
        let mut numbers = Vec::new();
        let compiled: Box<[CompiledRule]> = rules
            .iter()
            .map(|rule| {
                let verbs = rule.verbs.iter().fold(0u32, |acc, v| {
                    if v == "*" {
                        u32::MAX
                    } else {
                        acc | verb_bit(v)
                    }
                });
                let exact = rule.resource_names.is_empty()
                    && rule.non_resource_urls.is_empty()
                    && !rule.api_groups.iter().any(|g| g == "*")
                    && !rule.resources.iter().any(|r| r == "*" || r.contains('/'));
                let start = numbers.len();
                if exact {
                    for group in &rule.api_groups {
                        for resource in &rule.resources {
                            numbers.push(known.intern(group, resource));
                        }
                    }
                }
                let range = (u32::try_from(start).ok(), u32::try_from(numbers.len()).ok());
                CompiledRule {
                    verbs,
                    group_resources: match range {
                        (Some(start), Some(end)) if exact => Some((start, end)),
                        _ => None,
                    },
                    targets: rule_targets(rule),
                }
            })
            .collect();
        let mut by_verb = [0; VERB_SLOTS];
        for rule in compiled.iter() {
            for slot in verb_slots(rule.verbs) {
                if let Some(targets) = by_verb.get_mut(slot) {
                    *targets |= rule.targets;
                }
            }
        }
        CompiledRole {
            verbs: compiled.iter().fold(0, |acc, r| acc | r.verbs),
            targets: compiled.iter().fold(0, |acc, r| acc | r.targets),
            by_verb,
            rules: compiled,
            group_resources: numbers.into_boxed_slice(),
            originals: rules.into(),
        }
    }

    /// Does one of the role's rules allow the request?
    fn allows(&self, q: &Query<'_>) -> bool {
        self.rules
            .iter()
            .zip(self.originals.iter())
            .any(|(rule, original)| {
                if rule.verbs & q.verb == 0 || rule.targets & q.target == 0 {
                    return false;
                }
                if q.verb == OTHER_VERB {
                    // Only the string tells two unusual verbs apart.
                    return rule_allows_ref(original, q.a);
                }
                match rule.group_resources {
                    Some((start, end)) => q.group_resource().is_some_and(|n| {
                        self.group_resources
                            .get(start as usize..end as usize)
                            .is_some_and(|numbers| numbers.contains(&n))
                    }),
                    None => rule_allows_target(original, q.a),
                }
            })
    }
}

/// Every role of a policy, compiled once, and the group resources their rules name.
#[derive(Debug, Default)]
struct Roles {
    roles: Vec<CompiledRole>,
    known: GroupResources,
}

impl Roles {
    /// Compiles `rules` as one more role, and returns its number.
    fn add(&mut self, rules: &[PolicyRule]) -> Option<u32> {
        let number = u32::try_from(self.roles.len()).ok()?;
        let role = CompiledRole::new(rules, &mut self.known);
        self.roles.push(role);
        Some(number)
    }

    fn get(&self, number: u32) -> Option<&CompiledRole> {
        self.roles.get(number as usize)
    }
}

/// Where a string is in one of a scope's arrays of strings (`namespaces`, `reasons`).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Appends `s` to `text`; `None` past 4 GiB.
    fn push(text: &mut String, s: impl fmt::Display) -> Option<Span> {
        let start = u32::try_from(text.len()).ok()?;
        write!(text, "{s}").ok()?;
        let end = u32::try_from(text.len()).ok()?;
        Some(Span { start, end })
    }

    fn of(self, text: &str) -> Option<&str> {
        text.get(self.start as usize..self.end as usize)
    }
}

/// The rules granted by one binding to one subject: a role of [`Roles`], and the span of the
/// reason an allow reports in its scope's `reasons`.
#[derive(Debug, Clone, Copy)]
struct Grant {
    role: u32,
    reason: Span,
}

/// Subjects are users (service accounts under their user name
/// `system:serviceaccount:NS:NAME`) or groups; a user and a group of the same name differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    targets: u64,
    verbs: u32,
    /// The offset of its [`Record`] in the scope's `records`.
    record: u32,
}

/// The rest of an entry, read only when its summary concerns the request: one record in the
/// scope's `records` bytes, so that a check reads one place (a line or two) and not one
/// allocation per field. Little-endian `u32`s, then bytes:
///
/// 1. kind (bit 0) and number of grants (bits 1 and up);
/// 2. name length;
/// 3. namespace start and end;
/// 4. each grant: role, reason start and reason end;
/// 5. the name's bytes.
///
/// The namespace is a span of the scope's `namespaces` (each namespace once, so they stay in
/// cache), a reason one of its `reasons` (read only by an allow).
struct Record<'a> {
    kind: Kind,
    grants: &'a [u8],
    name: &'a [u8],
    namespace: Span,
}

/// Bytes before a record's grants.
const RECORD_HEAD: usize = 16;
/// Bytes of one grant in a record.
const RECORD_GRANT: usize = 12;

/// The `i`-th little-endian `u32` of `bytes`.
fn word(bytes: &[u8], i: usize) -> Option<u32> {
    let b = bytes.get(i * 4..i * 4 + 4)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

impl<'a> Record<'a> {
    /// The record at `offset` of `records`; `None` if it does not fit (cannot happen: deny).
    fn at(records: &'a [u8], offset: u32) -> Option<Record<'a>> {
        let rest = records.get(offset as usize..)?;
        let head = word(rest, 0)?;
        let name_len = word(rest, 1)? as usize;
        let grants_end = RECORD_HEAD + RECORD_GRANT * (head >> 1) as usize;
        Some(Record {
            kind: if head & 1 == 0 {
                Kind::User
            } else {
                Kind::Group
            },
            grants: rest.get(RECORD_HEAD..grants_end)?,
            name: rest.get(grants_end..grants_end + name_len)?,
            namespace: Span {
                start: word(rest, 2)?,
                end: word(rest, 3)?,
            },
        })
    }

    /// Appends the record of a subject to `records`: its offset, or `None` past 4 GiB.
    fn push(
        records: &mut Vec<u8>,
        kind: Kind,
        name: &str,
        namespace: Span,
        grants: &[Grant],
    ) -> Option<u32> {
        let offset = u32::try_from(records.len()).ok()?;
        let count = u32::try_from(grants.len()).ok().filter(|&n| n < 1 << 31)?;
        let kind = match kind {
            Kind::User => 0,
            Kind::Group => 1,
        };
        let len = RECORD_HEAD + RECORD_GRANT * grants.len() + name.len();
        u32::try_from(records.len() + len).ok()?;
        let head = [
            count << 1 | kind,
            u32::try_from(name.len()).ok()?,
            namespace.start,
            namespace.end,
        ];
        let grants = grants
            .iter()
            .flat_map(|g| [g.role, g.reason.start, g.reason.end]);
        for word in head.into_iter().chain(grants) {
            records.extend_from_slice(&word.to_le_bytes());
        }
        records.extend_from_slice(name.as_bytes());
        Some(offset)
    }

    /// Its grants, in order.
    fn grants(&self) -> impl Iterator<Item = Grant> + 'a {
        self.grants.chunks_exact(RECORD_GRANT).map(|g| Grant {
            role: word(g, 0).unwrap_or(u32::MAX), // cannot happen; no such role: no grant
            reason: Span {
                start: word(g, 1).unwrap_or(0),
                end: word(g, 2).unwrap_or(0),
            },
        })
    }
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
    a: &'a AttributesRef<'a>,
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
    /// The policy's roles, and the request's [`group_resource_hash`] if a rule can match it by
    /// the number of its group resource (see [`request_target`]).
    roles: &'a Roles,
    group_resource_hash: Option<u64>,
    /// Its number, once looked up: most requests need none.
    group_resource: Cell<Option<Option<u32>>>,
}

/// Names hashed once per request: the user and its first groups (most requesters have fewer).
/// At most 32 (a bit each in [`CompiledPolicy::authorize`]'s candidates).
const HASHED: usize = 8;

impl<'a> Query<'a> {
    fn new(a: &'a AttributesRef<'a>, roles: &'a Roles) -> Query<'a> {
        let user = name_hash(Kind::User, a.user);
        let mut names = [(user, Filter::bits(user)); HASHED];
        let mut hashed = 1;
        for (slot, group) in names.iter_mut().skip(1).zip(a.groups) {
            let hash = name_hash(Kind::Group, group);
            *slot = (hash, Filter::bits(hash));
            hashed += 1;
        }
        let verb = verb_bit(a.verb);
        let (target, group_resource_hash) = request_target(a);
        Query {
            a,
            verb,
            target,
            names,
            hashed,
            pair: (target.count_ones() == 1)
                .then(|| verb_slot(verb) * 64 + target.trailing_zeros() as usize),
            roles,
            group_resource_hash,
            group_resource: Cell::new(None),
        }
    }

    /// The number of the request's group resource, if a rule names it exactly (and the
    /// request can match such a rule): looked up once, when a rule first needs it.
    fn group_resource(&self) -> Option<u32> {
        if let Some(number) = self.group_resource.get() {
            return number;
        }
        let number = self
            .group_resource_hash
            .and_then(|hash| self.roles.known.find(hash, self.a));
        self.group_resource.set(Some(number));
        number
    }

    /// The requester's `i`-th name: 0 is the user, then its groups in order.
    fn name(&self, i: usize) -> Option<(Kind, &'a str)> {
        match i.checked_sub(1) {
            None => Some((Kind::User, self.a.user)),
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
    /// The entries' [`Record`]s, end to end.
    records: Vec<u8>,
    /// The names of the namespaces of the records, each once.
    namespaces: String,
    /// The grants' reasons: read only by an allow.
    reasons: String,
}

impl Scope {
    /// A scope of `collected`, whose grants are of `roles`, with [`ByRequest`] filters if
    /// `by_request`.
    fn build(mut collected: Vec<Collected<'_>>, roles: &Roles, by_request: bool) -> Scope {
        // Each subject's grants together, in the order their bindings were visited (a stable
        // sort): one array, not one per subject.
        collected.sort_by(|a, b| a.subject().cmp(&b.subject()));
        let subjects = || collected.chunk_by(|a, b| a.subject() == b.subject());
        // The arrays sized once, not grown by doubling (a copy each time, and the memory of
        // every smaller one left to the allocator): records exactly, reasons by their parts
        // (more only where a name needs escaping).
        let reasons = collected.iter().map(|c| c.reason.len_hint()).sum();
        let records = subjects()
            .map(|g| RECORD_HEAD + RECORD_GRANT * g.len() + g.first().map_or(0, |c| c.name.len()))
            .sum();
        let mut scope = Scope {
            filter: Filter::new([].into_iter()),
            by_request: None,
            subjects: HashTable::with_capacity(subjects().count()),
            records: Vec::with_capacity(records),
            namespaces: String::new(),
            reasons: String::with_capacity(reasons),
        };
        // (key, name hash) of each entry, for the filter, and its (verb, target) pairs for the
        // filters by request.
        let mut summaries = Vec::with_capacity(scope.subjects.capacity());
        let mut pairs = Vec::new();
        // Each namespace's name once in `namespaces`.
        let mut spans: HashMap<&str, Span> = HashMap::default();
        // The grants of one subject, reused.
        let mut laid = Vec::new();
        for grants in subjects() {
            let Some((namespace, kind, name)) = grants.first().map(Collected::subject) else {
                continue; // a chunk is never empty
            };
            let ns_hash = if namespace.is_empty() {
                0
            } else {
                namespace_hash(namespace)
            };
            let name_hash = name_hash(kind, name);
            let hash = key(ns_hash, name_hash);
            let held = grants.iter().filter_map(|g| roles.get(g.role));
            let targets = held.clone().fold(0, |acc, r| acc | r.targets);
            let verbs = held.clone().fold(0, |acc, r| acc | r.verbs);
            if by_request {
                let mut by_verb = [0; VERB_SLOTS];
                for role in held {
                    for (all, of_role) in by_verb.iter_mut().zip(role.by_verb) {
                        *all |= of_role;
                    }
                }
                pairs.push(by_verb);
            }
            // Past 4 GiB of records, namespaces or reasons in one scope, the rest hold nothing.
            let record = scope.add(&mut spans, &mut laid, (namespace, kind, name), grants);
            let Some(record) = record else {
                break;
            };
            let entry = Entry {
                hash,
                targets,
                verbs,
                record,
            };
            summaries.push((hash, name_hash));
            scope
                .subjects
                .insert_unique(hash, entry, |e: &Entry| e.hash);
        }
        // Reasons were sized by an upper bound, namespaces grown: keep what is used.
        scope.records.shrink_to_fit();
        scope.namespaces.shrink_to_fit();
        scope.reasons.shrink_to_fit();
        scope.filter = Filter::new(summaries.iter().copied());
        scope.by_request = by_request
            .then(|| ByRequest::new(&summaries, &pairs))
            .flatten();
        scope
    }

    /// Lays out the record of one subject (namespace, kind, name) and the reasons of its
    /// grants: the record's offset, or `None` if it does not fit.
    fn add<'a>(
        &mut self,
        spans: &mut HashMap<&'a str, Span>,
        laid: &mut Vec<Grant>,
        (namespace, kind, name): (&'a str, Kind, &str),
        grants: &[Collected<'_>],
    ) -> Option<u32> {
        let namespace = match spans.entry(namespace) {
            Slot::Occupied(e) => *e.get(),
            Slot::Vacant(e) => *e.insert(Span::push(&mut self.namespaces, namespace)?),
        };
        laid.clear();
        for g in grants {
            let reason = Span::push(&mut self.reasons, g.reason)?;
            laid.push(Grant {
                role: g.role,
                reason,
            });
        }
        Record::push(&mut self.records, kind, name, namespace, laid)
    }

    /// The filter words `q` reads: of its (verb, target) pair if the scope has filters by
    /// request, or the scope's own.
    fn filter_for(&self, q: &Query<'_>) -> &[u64] {
        match (&self.by_request, q.pair) {
            // Every pair has a filter; none (cannot happen) holds nothing: deny.
            (Some(by), Some(pair)) => by.filter(pair).unwrap_or_default(),
            _ => &self.filter.words,
        }
    }

    /// The reason of the grant by which the requester's user or one of its groups is allowed
    /// the request in `namespace` (of hash `ns_hash`; `""` and 0 for the cluster-wide scope),
    /// given the candidates among its hashed names (see [`CompiledPolicy::authorize`]).
    // Not inlined into `authorize` (twice) nor `lookup` into it: callgrind counts fewer
    // instructions per decision.
    #[inline(never)]
    fn grant(
        &self,
        q: &Query<'_>,
        mut candidates: u32,
        namespace: &str,
        ns_hash: u64,
    ) -> Option<&str> {
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
    fn grant_past_hashed(&self, q: &Query<'_>, namespace: &str, ns_hash: u64) -> Option<&str> {
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

    /// The reason of the grant, if any, by which the requester's name `i` (see
    /// [`Query::name`]), of key `hash`, allows the request: past the filter.
    #[inline(never)] // see `grant`
    fn lookup(&self, q: &Query<'_>, i: usize, namespace: &str, hash: u64) -> Option<&str> {
        // The summary first, as most entries found concern something else; the rest (in
        // `check`) only for an entry that passes. Inside the search, so that an entry sharing
        // the hash is passed over, not taken for the subject's own.
        let mut found = None;
        self.subjects.find(hash, |e| {
            e.hash == hash && e.verbs & q.verb != 0 && e.targets & q.target != 0 && {
                found = self.check(q, e, i, namespace);
                found.is_some()
            }
        })?;
        found
    }

    /// The reason of the grant of entry `e` that allows the request, if `e` is the requester's
    /// name `i` in `namespace`: its rules first, and its names only if they allow. Nothing is
    /// granted before the kind, name and namespace are compared in full.
    #[inline(never)] // keeps `lookup`, which most requests end in, small
    fn check(&self, q: &Query<'_>, e: &Entry, i: usize, namespace: &str) -> Option<&str> {
        let record = Record::at(&self.records, e.record)?;
        let grant = record.grants().find(|g| {
            q.roles.get(g.role).is_some_and(|role| {
                // Only a role with one rule naming both the verb and the target can allow.
                let by_verb = role.by_verb.get(verb_slot(q.verb)).copied().unwrap_or(0);
                by_verb & q.target != 0 && role.allows(q)
            })
        })?;
        let (kind, name) = q.name(i)?;
        let same = record.kind == kind
            && crate::same_bytes(record.name, name.as_bytes())
            && record
                .namespace
                .of(&self.namespaces)
                .is_some_and(|n| crate::same_bytes(n.as_bytes(), namespace.as_bytes()));
        same.then(|| grant.reason.of(&self.reasons)).flatten()
    }
}

/// A blocked Bloom filter over entries: each sets two bits of one 64-bit word, so a check
/// reads one word. The word comes from the entry's key (namespace and name), the bits from its
/// name alone, so that a request computes them once for every scope. A false positive only
/// costs a probe of the table.
#[derive(Debug)]
struct Filter {
    /// A power of two of them (see [`word_of`]).
    words: Box<[u64]>,
}

impl Filter {
    /// 8 to 16 bits an entry (a power of two of words): about 3% false positives or fewer.
    /// Takes each entry's key and name hash.
    fn new(entries: impl ExactSizeIterator<Item = (u64, u64)>) -> Filter {
        let len = (entries.len() * 8 / 64).next_power_of_two();
        let mut words = vec![0; len].into_boxed_slice();
        for (hash, name_hash) in entries {
            if let Some(w) = words.get_mut(word_of(hash, len - 1)) {
                *w |= Filter::bits(name_hash);
            }
        }
        Filter { words }
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
        may_hold(&self.words, hash, bits)
    }
}

/// The word of key `hash` in filter words of `mask` (their length less one, a power of two
/// less one): from its middle bits, as the table probes with its low bits and top seven.
fn word_of(hash: u64, mask: usize) -> usize {
    (hash >> 20) as usize & mask
}

/// False if no entry of filter words `words` (a power of two of them, see [`word_of`]) has
/// key `hash` (whose name's [`Filter::bits`] are `bits`).
fn may_hold(words: &[u64], hash: u64, bits: u64) -> bool {
    // The mask from the length itself: the compiler then knows every word is in range but for
    // no words at all, which hold nothing (deny).
    let mask = words.len().wrapping_sub(1);
    words
        .get(word_of(hash, mask))
        .is_some_and(|w| w & bits == bits)
}

/// Filters of the cluster-wide scope by what a request asks: one for each (verb, target bit)
/// pair, over the subjects with a rule that names both (a verb of one rule and a resource of
/// another do not make a pair), each laid out as a [`Filter`]. A request reads the one of its
/// pair, so a subject that holds cluster-wide grants for other verbs or resources (the common
/// case for groups every request carries, such as `system:authenticated`) is passed over
/// without reading its entry. Each filter holds only the subjects of its pair, so the ones
/// requests use stay in cache.
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

/// Up to this many words (128 KiB) for all of them, [`ByRequest`] filters get more bits a
/// subject: so few stay in cache with them too.
const BY_REQUEST_SMALL: usize = 16 << 10;

impl ByRequest {
    /// Over entries (key, name hash), each with the targets its rules name with each verb slot
    /// (see [`CompiledRole::by_verb`]); `None` if they would take more than
    /// [`BY_REQUEST_WORDS`].
    fn new(entries: &[(u64, u64)], by_verb: &[[u64; VERB_SLOTS]]) -> Option<ByRequest> {
        let mut counts = vec![0usize; VERB_SLOTS * 64];
        for of_entry in by_verb {
            for pair in pairs(of_entry) {
                *counts.get_mut(pair)? += 1;
            }
        }
        // Bits a subject: 4 to 8, half the scope filter's (more false positives, each a lookup,
        // but the filters requests use stay in cache, which measured faster), or more while
        // all the filters together are small enough to stay in cache anyway.
        let layout = |bits: usize| {
            let mut filters = Vec::with_capacity(counts.len());
            let mut total = 0usize;
            for &count in &counts {
                let len = (count * bits / 64).next_power_of_two();
                filters.push((total, len - 1));
                total += len;
            }
            (filters, total)
        };
        let (filters, total) = [32, 16, 8]
            .into_iter()
            .map(layout)
            .find(|(_, total)| *total <= BY_REQUEST_SMALL)
            .unwrap_or_else(|| layout(4));
        if total > BY_REQUEST_WORDS {
            return None;
        }
        let mut words = vec![0u64; total].into_boxed_slice();
        for (&(hash, name_hash), of_entry) in entries.iter().zip(by_verb) {
            let bits = Filter::bits(name_hash);
            for pair in pairs(of_entry) {
                let &(start, mask) = filters.get(pair)?;
                *words.get_mut(start + word_of(hash, mask))? |= bits;
            }
        }
        Some(ByRequest {
            words,
            filters: filters.into_boxed_slice(),
        })
    }

    /// The words of the filter of `pair`.
    fn filter(&self, pair: usize) -> Option<&[u64]> {
        let &(start, mask) = self.filters.get(pair)?;
        self.words.get(start..=start + mask)
    }
}

/// An immutable compiled policy. Build one per policy snapshot; share it between readers.
#[derive(Debug)]
pub struct CompiledPolicy {
    cluster: Scope,
    namespaced: Scope,
    /// Every role, by the number its grants have.
    roles: Roles,
}

impl Default for CompiledPolicy {
    fn default() -> CompiledPolicy {
        CompiledPolicy::new(&Policy::default())
    }
}

/// One grant to one subject, while compiling: the subject's kind and name (a service
/// account's user name), the role, and the binding that grants it (its namespace is the
/// scope's: `""` for cluster bindings).
struct Collected<'a> {
    kind: Kind,
    name: Cow<'a, str>,
    role: u32,
    reason: Reason<'a>,
}

impl<'a> Collected<'a> {
    /// What the grants of one subject in one scope have in common: namespace, kind, name.
    fn subject(&self) -> (&'a str, Kind, &str) {
        (self.reason.namespace, self.kind, &self.name)
    }
}

impl CompiledPolicy {
    /// Compiles `policy` (already aggregated).
    pub fn new(policy: &Policy) -> CompiledPolicy {
        let mut compiled = Roles::default();
        // Each role is compiled once, shared by every binding to it.
        let cluster_roles: HashMap<&str, u32> = policy
            .cluster_roles
            .iter()
            .filter_map(|(name, r)| Some((name.as_str(), compiled.add(&r.rules)?)))
            .collect();
        let mut cluster = Vec::new();
        for (name, b) in &policy.cluster_role_bindings {
            if b.role_ref.kind != "ClusterRole" {
                continue;
            }
            let Some(&role) = cluster_roles.get(b.role_ref.name.as_str()) else {
                continue; // a binding to a missing role grants nothing
            };
            for subject in &b.subjects {
                let reason = Reason {
                    binding: name,
                    namespace: "",
                    role_ref: &b.role_ref,
                    subject,
                };
                add(&mut cluster, role, reason);
            }
        }
        let mut namespaced = Vec::new();
        // Roles too are compiled once, when the first binding to them is met.
        let mut roles: HashMap<(&str, &str), u32> = HashMap::default();
        for ((ns, name), b) in &policy.role_bindings {
            if ns.is_empty() {
                continue; // no request is in namespace "": such a binding grants nothing
            }
            let role = match b.role_ref.kind.as_str() {
                "ClusterRole" => cluster_roles.get(b.role_ref.name.as_str()).copied(),
                "Role" => match roles.entry((ns, &b.role_ref.name)) {
                    Slot::Occupied(e) => Some(*e.get()),
                    Slot::Vacant(e) => policy
                        .roles
                        .get(&(ns.clone(), b.role_ref.name.clone()))
                        .and_then(|r| compiled.add(&r.rules))
                        .map(|number| *e.insert(number)),
                },
                _ => None,
            };
            let Some(role) = role else { continue };
            for subject in &b.subjects {
                let reason = Reason {
                    binding: name,
                    namespace: ns,
                    role_ref: &b.role_ref,
                    subject,
                };
                add(&mut namespaced, role, reason);
            }
        }
        CompiledPolicy {
            cluster: Scope::build(cluster, &compiled, true),
            namespaced: Scope::build(namespaced, &compiled, false),
            roles: compiled,
        }
    }

    /// Decides `a`: the same answer as [`crate::authorize`] over the policy this was built from.
    pub fn authorize(&self, a: &Attributes) -> Decision {
        self.authorize_ref(&a.borrowed())
    }

    /// [`CompiledPolicy::authorize`] of borrowed attributes: nothing is copied to decide.
    pub fn authorize_ref(&self, a: &AttributesRef<'_>) -> Decision {
        match self.granting(a) {
            Some(reason) => Decision {
                allowed: true,
                reason: String::from(reason),
            },
            None => Decision::default(),
        }
    }

    /// Whether [`CompiledPolicy::authorize_ref`] allows `a`, without writing its reason.
    pub fn allows_ref(&self, a: &AttributesRef<'_>) -> bool {
        self.granting(a).is_some()
    }

    /// The reason of the grant that allows `a` (the first, in the apiserver's order), if any.
    fn granting<'s>(&'s self, a: &AttributesRef<'_>) -> Option<&'s str> {
        let q = Query::new(a, &self.roles);
        let ns_hash = if a.namespace.is_empty() {
            0
        } else {
            namespace_hash(a.namespace)
        };
        // Which of the request's hashed names (bit `i` for `q.names[i]`) may hold something in
        // either scope. Both filters are read before either table, independent reads with no
        // branches on what they find: the processor overlaps them, and with the lookups.
        let cluster_words = self.cluster.filter_for(&q);
        // No words (a cluster-scoped request): nothing held.
        let namespaced_words = match ns_hash {
            0 => &[],
            _ => self.namespaced.filter_for(&q),
        };
        let (mut cluster, mut namespaced) = (0u32, 0u32);
        let names = q.names.get(..q.hashed).unwrap_or_default();
        for (i, &(name_hash, bits)) in names.iter().enumerate() {
            let held = may_hold(cluster_words, name_hash, bits);
            cluster |= u32::from(held) << i;
            let held = may_hold(namespaced_words, key(ns_hash, name_hash), bits);
            namespaced |= u32::from(held) << i;
        }
        // A scope where no name may hold anything is not searched (the common case), unless
        // the requester has groups past the hashed ones.
        let search = |candidates: u32| candidates != 0 || a.groups.len() >= HASHED;
        // Cluster-wide grants first, then the namespace's, as the apiserver visits them.
        search(cluster)
            .then(|| self.cluster.grant(&q, cluster, "", 0))
            .flatten()
            .or_else(|| {
                // RoleBindings grant nothing to cluster-scoped requests (`ns_hash` 0).
                if ns_hash == 0 || !search(namespaced) {
                    return None;
                }
                self.namespaced.grant(&q, namespaced, a.namespace, ns_hash)
            })
    }
}

/// Records that the subject of `reason`, of a binding in its namespace (`""` for cluster
/// bindings), holds `role` there.
fn add<'a>(collected: &mut Vec<Collected<'a>>, role: u32, reason: Reason<'a>) {
    let subject = reason.subject;
    let (kind, name) = match subject.kind.as_str() {
        "User" => (Kind::User, Cow::Borrowed(subject.name.as_str())),
        "Group" => (Kind::Group, Cow::Borrowed(subject.name.as_str())),
        "ServiceAccount" => {
            let ns = if subject.namespace.is_empty() {
                reason.namespace
            } else {
                &subject.namespace
            };
            if ns.is_empty() {
                return; // matches nobody, as in the reference evaluator
            }
            let name = format!("system:serviceaccount:{ns}:{}", subject.name);
            (Kind::User, Cow::Owned(name))
        }
        _ => return,
    };
    collected.push(Collected {
        kind,
        name,
        role,
        reason,
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

    #[test]
    fn an_entry_found_by_a_colliding_key_grants_only_its_own_kind_name_and_namespace() {
        let policy = Policy::from_documents([(
            "policy.yaml",
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: ns-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: x}]
"#,
        )])
        .unwrap();
        let compiled = CompiledPolicy::new(&policy);
        let ask = |user: &str, groups: &[&str], namespace: &str| Attributes {
            user: user.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            verb: "get".into(),
            resource_request: true,
            resource: "pods".into(),
            namespace: namespace.into(),
            ..Attributes::default()
        };
        // Probes the namespaced table with the key of group `x` in ns-a, for the requester's
        // name `i`: as if that name's key, in its namespace, had collided with it.
        let found = |a: &Attributes, i: usize| {
            let borrowed = a.borrowed();
            let q = Query::new(&borrowed, &compiled.roles);
            let colliding = key(namespace_hash("ns-a"), name_hash(Kind::Group, "x"));
            compiled
                .namespaced
                .lookup(&q, i, &a.namespace, colliding)
                .is_some()
        };
        // The group itself, where it is bound: the probe finds it.
        assert!(compiled.authorize(&ask("u", &["x"], "ns-a")).allowed);
        assert!(found(&ask("u", &["x"], "ns-a"), 1));
        // A user of the same name is not the group.
        assert!(!found(&ask("x", &[], "ns-a"), 0));
        // Nor is another group, nor the same group in another namespace.
        assert!(!found(&ask("u", &["y"], "ns-a"), 1));
        assert!(!found(&ask("u", &["x"], "ns-b"), 1));
    }

    #[test]
    fn table_entries_are_as_small_as_documented() {
        // The layout is chosen for how many entries share a cache line; a field added or
        // reordered must not silently grow them (an entry once had 32 bytes, documented as 24).
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }
}
