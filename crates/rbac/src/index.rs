//! The compiled index: from each subject (user, group, service account) to the rules it holds,
//! cluster-wide and per namespace. A decision looks up the requester's name and groups instead
//! of scanning every binding, so its cost does not grow with the number of bindings. It must
//! agree with [`crate::evaluate::authorize`] on every request (property-tested).

use std::sync::Arc;

// The index is keyed by names the cluster's own RBAC objects define; FxHash is a fast, non-keyed
// hash, acceptable because a requester can only add lookups, not keys.
use rustc_hash::FxHashMap as HashMap;

use crate::evaluate::{describe, rule_allows, rule_allows_target};
use crate::v1::{PolicyRule, Subject};
use crate::{Attributes, Decision, Policy};

/// Rules granted by one binding, with the reason string an allow reports.
#[derive(Debug, Clone)]
struct Grant {
    rules: Arc<[CompiledRule]>,
    reason: Arc<str>,
}

/// A rule with its verbs pre-matched into a bitset.
#[derive(Debug, Clone)]
struct CompiledRule {
    /// Bit per well-known verb; `u32::MAX` for `*`.
    verbs: u32,
    /// The original rule, for everything but the common verbs.
    rule: PolicyRule,
}

fn verb_bit(verb: &str) -> Option<u32> {
    // A match compiles to a jump on length and bytes: no scan over the list per request.
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
        _ => return None,
    };
    Some(1u32 << i)
}

impl CompiledRule {
    fn new(rule: &PolicyRule) -> CompiledRule {
        let verbs = rule.verbs.iter().fold(0u32, |acc, v| {
            if v == "*" {
                u32::MAX
            } else {
                acc | verb_bit(v).unwrap_or(0)
            }
        });
        CompiledRule {
            verbs,
            rule: rule.clone(),
        }
    }

    fn allows(&self, a: &Attributes, verb: Option<u32>) -> bool {
        match verb {
            // A well-known verb: the bitset decides it, no string comparison needed.
            Some(bit) => self.verbs & bit != 0 && rule_allows_target(&self.rule, a),
            None => rule_allows(&self.rule, a),
        }
    }
}

/// Subject name → grants, for one scope (cluster-wide, or one namespace).
#[derive(Debug, Default, Clone)]
struct Scope {
    /// Users, and service accounts under their user name `system:serviceaccount:NS:NAME`.
    users: HashMap<Arc<str>, Vec<Grant>>,
    groups: HashMap<Arc<str>, Vec<Grant>>,
    /// A Bloom filter over every subject name of this scope: most requesters hold nothing in
    /// most scopes, and a miss here costs one small cache-resident probe instead of a probe of
    /// a large hash table. False positives only cost the table probe.
    filter: Bloom,
}

/// Two-probe Bloom filter over subject names.
#[derive(Debug, Default, Clone)]
struct Bloom {
    bits: Vec<u64>,
    mask: u64,
}

impl Bloom {
    fn hash(key: &str) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = rustc_hash::FxBuildHasher.build_hasher();
        h.write(key.as_bytes());
        h.finish()
    }

    fn build<'a>(keys: impl Iterator<Item = &'a str>, count: usize) -> Bloom {
        // About 16 bits per key: a false-positive rate near 1.4% with two probes.
        let bits = (count.max(1) * 16).next_power_of_two().max(64);
        let mut b = Bloom {
            bits: vec![0; bits / 64],
            mask: (bits - 1) as u64,
        };
        for k in keys {
            let h = Self::hash(k);
            for p in [h & b.mask, (h >> 32) & b.mask] {
                if let Some(w) = b.bits.get_mut((p / 64) as usize) {
                    *w |= 1 << (p % 64);
                }
            }
        }
        b
    }

    fn may_contain(&self, key: &str) -> bool {
        if self.bits.is_empty() {
            return true; // not built: never skip
        }
        let h = Self::hash(key);
        [h & self.mask, (h >> 32) & self.mask].iter().all(|p| {
            self.bits
                .get((p / 64) as usize)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        })
    }
}

impl Scope {
    fn add(&mut self, subject: &Subject, binding_namespace: &str, grant: &Grant) {
        let (map, key) = match subject.kind.as_str() {
            "User" => (&mut self.users, subject.name.clone()),
            "Group" => (&mut self.groups, subject.name.clone()),
            "ServiceAccount" => {
                let ns = if subject.namespace.is_empty() {
                    binding_namespace
                } else {
                    &subject.namespace
                };
                if ns.is_empty() {
                    return; // matches nobody, as in the reference evaluator
                }
                (
                    &mut self.users,
                    format!("system:serviceaccount:{ns}:{}", subject.name),
                )
            }
            _ => return,
        };
        map.entry(Arc::from(key)).or_default().push(grant.clone());
    }

    /// Builds the subject filter once every binding is added.
    fn seal(&mut self) {
        let keys = self.users.keys().chain(self.groups.keys()).map(|k| &**k);
        self.filter = Bloom::build(keys, self.users.len() + self.groups.len());
    }

    fn decide(&self, a: &Attributes, verb: Option<u32>) -> Option<&Grant> {
        let by_user = Some(a.user.as_str())
            .filter(|u| self.filter.may_contain(u))
            .and_then(|u| self.users.get(u))
            .into_iter()
            .flatten();
        let by_groups = a
            .groups
            .iter()
            .filter(|g| self.filter.may_contain(g))
            .filter_map(|g| self.groups.get(g.as_str()))
            .flatten();
        by_user
            .chain(by_groups)
            .find(|g| g.rules.iter().any(|r| r.allows(a, verb)))
    }
}

/// An immutable compiled policy. Build one per policy snapshot; share it between readers.
#[derive(Debug, Default, Clone)]
pub struct CompiledPolicy {
    cluster: Scope,
    namespaces: HashMap<Arc<str>, Scope>,
}

impl CompiledPolicy {
    /// Compiles `policy` (already aggregated).
    pub fn new(policy: &Policy) -> CompiledPolicy {
        // Each role is compiled once, shared by every binding to it.
        let mut cluster_roles: HashMap<&str, Arc<[CompiledRule]>> = HashMap::default();
        for (name, r) in &policy.cluster_roles {
            cluster_roles.insert(name, r.rules.iter().map(CompiledRule::new).collect());
        }
        let mut out = CompiledPolicy::default();
        for (name, b) in &policy.cluster_role_bindings {
            if b.role_ref.kind != "ClusterRole" {
                continue;
            }
            let Some(rules) = cluster_roles.get(b.role_ref.name.as_str()) else {
                continue; // a binding to a missing role grants nothing
            };
            for s in &b.subjects {
                let grant = Grant {
                    rules: rules.clone(),
                    reason: Arc::from(format!(
                        "RBAC: allowed by ClusterRoleBinding {name:?} of ClusterRole {:?} to {}",
                        b.role_ref.name,
                        describe(s)
                    )),
                };
                out.cluster.add(s, "", &grant);
            }
        }
        for ((ns, name), b) in &policy.role_bindings {
            let rules = match b.role_ref.kind.as_str() {
                "ClusterRole" => cluster_roles.get(b.role_ref.name.as_str()).cloned(),
                "Role" => policy
                    .roles
                    .get(&(ns.clone(), b.role_ref.name.clone()))
                    .map(|r| r.rules.iter().map(CompiledRule::new).collect()),
                _ => None,
            };
            let Some(rules) = rules else { continue };
            let scope = out.namespaces.entry(Arc::from(ns.as_str())).or_default();
            for s in &b.subjects {
                let grant = Grant {
                    rules: rules.clone(),
                    reason: Arc::from(format!(
                        "RBAC: allowed by RoleBinding \"{name}/{ns}\" of {} {:?} to {}",
                        b.role_ref.kind,
                        b.role_ref.name,
                        describe(s)
                    )),
                };
                scope.add(s, ns, &grant);
            }
        }
        out.cluster.seal();
        for scope in out.namespaces.values_mut() {
            scope.seal();
        }
        out
    }

    /// Decides `a`: the same answer as [`crate::authorize`] over the policy this was built from.
    pub fn authorize(&self, a: &Attributes) -> Decision {
        let verb = verb_bit(&a.verb);
        let found = self.cluster.decide(a, verb).or_else(|| {
            if a.namespace.is_empty() {
                return None;
            }
            self.namespaces
                .get(a.namespace.as_str())
                .and_then(|s| s.decide(a, verb))
        });
        match found {
            Some(g) => Decision {
                allowed: true,
                reason: g.reason.to_string(),
            },
            None => Decision::default(),
        }
    }
}
