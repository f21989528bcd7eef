//! Decisions per second and p99 latency of the compiled index beside the reference (linear)
//! evaluator, in the same run, as the number of bindings grows; who-can latency; index build
//! time and memory. Writes `$PORTCULLIS_BENCH_OUT/rbac.md` when that is set.
//!
//! For profiling: `RBAC_BENCH_ONLY=10000` measures one size, `RBAC_BENCH_INDEX_ONLY=1` only the
//! compiled index (e.g. under `valgrind --tool=callgrind --toggle-collect='*CompiledPolicy*authorize*'`,
//! whose counts do not depend on what else the machine is doing).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use portcullis_model::ObjectMeta;
use portcullis_rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
};
use portcullis_rbac::{Attributes, CompiledPolicy, Policy, authorize, bootstrap};

const NAMESPACES: usize = 2_000;
const ROLE_BINDINGS: usize = 50_000;

/// A small deterministic generator (xorshift), so every run measures the same policy.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        api_groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

fn subject(kind: &str, name: String) -> Subject {
    Subject {
        kind: kind.into(),
        api_group: "rbac.authorization.k8s.io".into(),
        name,
        namespace: String::new(),
    }
}

fn role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: name.into(),
    }
}

/// Groups in the population: from 1,000 ClusterRoleBindings up, it grows with them, so that a
/// group holds about as many at every size. Users are always 100,000: the more bindings, the
/// more requesters hold a cluster-wide grant that a decision must read.
fn group_pool(crbs: usize) -> usize {
    (5 * crbs).max(5_000)
}

/// Bootstrap roles, 50 custom roles of 10 rules, `crbs` ClusterRoleBindings and 50,000
/// RoleBindings over 2,000 namespaces, each to a user and a group.
fn policy(crbs: usize) -> Policy {
    let groups = group_pool(crbs);
    let mut p = bootstrap::policy();
    let mut rng = Rng(0x5eed_0000 + crbs as u64);
    let resources = [
        "pods",
        "services",
        "configmaps",
        "secrets",
        "deployments",
        "jobs",
        "ingresses",
        "workspaces",
        "projects",
        "clusters",
    ];
    for i in 0..50 {
        let rules = (0..10)
            .map(|j| {
                rule(
                    &["get", "list", "watch"][..1 + (i + j) % 3],
                    &["", "apps", "portcullis.dev"][j % 3..j % 3 + 1],
                    &[resources[(i + j) % resources.len()]],
                )
            })
            .collect();
        let name = format!("custom-{i}");
        p.cluster_roles.insert(
            name.clone(),
            ClusterRole {
                metadata: ObjectMeta {
                    name,
                    ..ObjectMeta::default()
                },
                rules,
                ..ClusterRole::default()
            },
        );
    }
    let roles: Vec<String> = p
        .cluster_roles
        .keys()
        .filter(|n| !n.starts_with("cluster-admin"))
        .cloned()
        .collect();
    for i in 0..crbs {
        let name = format!("crb-{i}");
        let subjects = vec![
            subject("User", format!("user-{}", rng.below(100_000))),
            subject("Group", format!("group-{}", rng.below(groups))),
        ];
        p.cluster_role_bindings.insert(
            name.clone(),
            ClusterRoleBinding {
                metadata: ObjectMeta {
                    name,
                    ..ObjectMeta::default()
                },
                subjects,
                role_ref: role_ref(&roles[rng.below(roles.len())]),
                ..ClusterRoleBinding::default()
            },
        );
    }
    for i in 0..ROLE_BINDINGS {
        let ns = format!("ns-{}", i % NAMESPACES);
        let name = format!("rb-{i}");
        let subjects = vec![
            subject("User", format!("user-{}", rng.below(100_000))),
            subject("Group", format!("group-{}", rng.below(groups))),
        ];
        p.role_bindings.insert(
            (ns.clone(), name.clone()),
            RoleBinding {
                metadata: ObjectMeta {
                    name,
                    namespace: Some(ns),
                    ..ObjectMeta::default()
                },
                subjects,
                role_ref: role_ref(&roles[rng.below(roles.len())]),
                ..RoleBinding::default()
            },
        );
    }
    p.aggregate();
    p
}

const VERBS: [&str; 5] = ["get", "list", "watch", "create", "delete"];
const RESOURCES: [&str; 5] = ["pods", "services", "secrets", "deployments", "workspaces"];

/// One request, as the numbers it is made of. The bench writes it into an [`Attributes`] whose
/// buffers are reused just before deciding it (see [`measure`]).
#[derive(Clone, Copy)]
struct Request {
    user: u32,
    groups: [u32; 2],
    verb: u8,
    apps: bool,
    resource: u8,
    namespace: u16,
}

fn requests(n: usize, crbs: usize) -> Vec<Request> {
    let groups = group_pool(crbs);
    let mut rng = Rng(42);
    (0..n)
        .map(|_| Request {
            user: rng.below(100_000) as u32,
            groups: [rng.below(groups) as u32, rng.below(groups) as u32],
            verb: rng.below(VERBS.len()) as u8,
            apps: rng.below(2) == 1,
            resource: rng.below(RESOURCES.len()) as u8,
            namespace: rng.below(NAMESPACES) as u16,
        })
        .collect()
}

/// `prefix` followed by `n` in decimal, into `out` (cleared first; no allocation once grown).
fn write_name(out: &mut String, prefix: &str, mut n: u32) {
    out.clear();
    out.push_str(prefix);
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap());
}

fn set(out: &mut String, value: &str) {
    out.clear();
    out.push_str(value);
}

impl Request {
    /// Writes this request into `a`, reusing its buffers.
    fn fill(&self, a: &mut Attributes) {
        a.resource_request = true;
        write_name(&mut a.user, "user-", self.user);
        a.groups.resize_with(3, String::new);
        write_name(&mut a.groups[0], "group-", self.groups[0]);
        write_name(&mut a.groups[1], "group-", self.groups[1]);
        set(&mut a.groups[2], "system:authenticated");
        set(&mut a.verb, VERBS[usize::from(self.verb)]);
        set(&mut a.api_group, if self.apps { "apps" } else { "" });
        set(&mut a.resource, RESOURCES[usize::from(self.resource)]);
        write_name(&mut a.namespace, "ns-", u32::from(self.namespace));
    }

    fn attributes(&self) -> Attributes {
        let mut a = Attributes::default();
        self.fill(&mut a);
        a
    }
}

/// Passes over the requests whose throughputs are reported by their median: one pass on a
/// shared machine can be slowed by a neighbour several-fold.
const PASSES: usize = 5;

/// Requests written before each timed run of decisions: few enough that their attributes stay
/// in cache, enough that reading the clock around them costs little.
const BATCH: usize = 32;

/// (decisions per second, p99 latency, share allowed). Each batch of [`BATCH`] requests is
/// written into reused buffers, as a server writes a request it has just parsed, and then only
/// its decisions are timed: what is measured is the decision, with its request in cache, not
/// the building of requests nor reading 200,000 cold ones from memory. Throughput is from the
/// median batch of [`PASSES`] passes: on a shared machine a neighbour can slow a whole pass
/// several-fold, but not most batches. Latencies are of single decisions on a further pass.
fn measure(reqs: &[Request], mut decide: impl FnMut(&Attributes) -> bool) -> (f64, Duration, f64) {
    let mut batch: Vec<Attributes> = (0..BATCH).map(|_| Attributes::default()).collect();
    let mut allowed = 0usize;
    // Seconds per decision, of each batch.
    let mut per_decision = Vec::with_capacity(PASSES * reqs.len().div_ceil(BATCH));
    for _ in 0..PASSES {
        allowed = 0;
        for chunk in reqs.chunks(BATCH) {
            for (r, a) in chunk.iter().zip(batch.iter_mut()) {
                r.fill(a);
            }
            let start = Instant::now();
            for a in &batch[..chunk.len()] {
                if black_box(decide(black_box(a))) {
                    allowed += 1;
                }
            }
            per_decision.push(start.elapsed().as_secs_f64() / chunk.len() as f64);
        }
    }
    per_decision.sort_by(f64::total_cmp);
    let rate = 1.0 / per_decision[per_decision.len() / 2];
    let mut a = Attributes::default();
    let mut lat: Vec<Duration> = reqs
        .iter()
        .take(50_000)
        .map(|r| {
            r.fill(&mut a);
            let t = Instant::now();
            black_box(decide(black_box(&a)));
            t.elapsed()
        })
        .collect();
    lat.sort();
    (
        rate,
        lat[lat.len() * 99 / 100],
        allowed as f64 / reqs.len() as f64,
    )
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

fn main() {
    let mut rows = Vec::new();
    let mut n_requests = 0;
    let mut smallest: Option<f64> = None;
    // `RBAC_BENCH_ONLY=10000` measures one size (for profiling).
    let only: Option<usize> = std::env::var("RBAC_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    for crbs in [100, 1_000, 10_000] {
        if only.is_some_and(|o| o != crbs) {
            continue;
        }
        let reqs = requests(200_000, crbs);
        n_requests = reqs.len();
        let p = policy(crbs);
        let before = rss_kib();
        let t = Instant::now();
        let compiled = CompiledPolicy::new(&p);
        let build = t.elapsed();
        let memory = rss_kib().saturating_sub(before);
        let (c_rate, c_p99, c_allowed) = measure(&reqs, |a| compiled.authorize(a).allowed);
        let flat = c_rate / *smallest.get_or_insert(c_rate);
        if std::env::var_os("RBAC_BENCH_INDEX_ONLY").is_some() {
            println!("{crbs}: {}", fmt_rate(c_rate));
            continue;
        }
        // The reference evaluator is measured on fewer requests: it is far slower.
        let few = &reqs[..reqs.len().min(if crbs >= 10_000 { 5_000 } else { 20_000 })];
        let (r_rate, r_p99, _) = measure(few, |a| authorize(&p, a).allowed);
        // Both must agree on what they measured.
        for a in few.iter().take(2_000).map(Request::attributes) {
            assert_eq!(compiled.authorize(&a).allowed, authorize(&p, &a).allowed);
        }
        let who = Attributes {
            verb: "get".into(),
            resource_request: true,
            resource: "pods".into(),
            namespace: "ns-7".into(),
            ..Attributes::default()
        };
        let t = Instant::now();
        let n = portcullis_rbac::review::who_can(&p, &who).len();
        let who_latency = t.elapsed();
        rows.push(format!(
            "| {crbs} + {ROLE_BINDINGS} | {} | {:.0}% | {:.2} µs | {} | {:.1} µs | {:.0}× | {:.0}% | {:.1} ms | {} MiB | {:.2} ms ({n} subjects) |",
            fmt_rate(c_rate),
            flat * 100.0,
            c_p99.as_secs_f64() * 1e6,
            fmt_rate(r_rate),
            r_p99.as_secs_f64() * 1e6,
            c_rate / r_rate,
            c_allowed * 100.0,
            build.as_secs_f64() * 1e3,
            memory / 1024,
            who_latency.as_secs_f64() * 1e3,
        ));
        drop(compiled);
    }
    let table = format!(
        "## RBAC decisions (rbac)\n\nOne core, {} requests (throughput: from the median time of a batch of 32 decisions, over 5 passes) with random users, groups and namespaces against bootstrap roles plus 50 custom \
roles, N ClusterRoleBindings and 50,000 RoleBindings over 2,000 namespaces; each binding names a user (of 100,000) and a group \
(of 5,000, or 5 × N when larger). The more ClusterRoleBindings, the more requesters hold cluster-wide grants that a decision must \
read, as in a larger real cluster (the \"allowed\" column grows with them). Requests are written into reused \
buffers in batches of 32 just before they are decided, as a server decides a request it has just parsed (its attributes in cache); \
only the decisions are timed, and p99 is of single decisions. The competitor \
is the reference evaluator (the straightforward scan kube-apiserver's authorizer also does), measured in the same run on a prefix \
of the same requests; both agree on every request compared. \"vs smallest\" is the index's throughput against its own at 100 \
ClusterRoleBindings in the same run: how flat it stays as bindings grow. Machine: {}.\n\n\
| ClusterRoleBindings + RoleBindings | compiled index | vs smallest | p99 | reference scan | p99 | speed-up | allowed | index build | RSS growth at build | who-can (all subjects) |\n\
|---|---|---|---|---|---|---|---|---|---|---|\n{}\n",
        n_requests,
        portcullis_testkit::machine(),
        rows.join("\n")
    );
    if rows.is_empty() {
        return; // profiling runs measure the index alone
    }
    println!("{table}");
    if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
        std::fs::write(std::path::Path::new(&out).join("rbac.md"), table).unwrap();
    }
}
