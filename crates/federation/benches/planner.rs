//! The planner and the fleet index at fleet scale: 1,000 clusters in 50 workspaces, 500
//! projects, 10,000 bindings. Full plan time and memory; one change end to end (plan delta and
//! index patch) at each scope and for a new project; `who-can --fleet` over the index. Writes
//! `$PORTCULLIS_BENCH_OUT/federation.md` when that is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use portcullis_federation::{
    Change, FleetIndex, FleetSnapshot, Model, Planner, PlannerConfig, defaults,
};
use portcullis_model::{
    Cluster, ClusterScopeRoleBinding, ClusterSpec, GLOBAL_NAMESPACE, KommanderRoleBinding,
    LabelSelector, Project, ProjectPlacement, ProjectSpec, Resource, Subject, SubjectKind,
    Workspace, WorkspaceSpec,
};
use portcullis_rbac::Attributes;

/// Resident memory of this process, KiB (after a fresh start the growth is what the plan
/// holds; the allocator may keep freed memory, so it is an upper bound).
fn rss_kib() -> isize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

const CLUSTERS: usize = 1_000;
const WORKSPACES: usize = 50;
const PROJECTS: usize = 500;
const GLOBAL_BINDINGS: usize = 200;
const WORKSPACE_BINDINGS: usize = 40; // per workspace: 2,000
const PROJECT_BINDINGS: usize = 16; // per project: 8,000

fn ws_ns(w: usize) -> String {
    format!("ws-{w}")
}

fn user(i: usize) -> Subject {
    Subject {
        kind: SubjectKind::User,
        name: format!("user-{i}@example.com"),
        api_group: String::new(),
    }
}

fn group(name: String) -> Subject {
    Subject {
        kind: SubjectKind::Group,
        name,
        api_group: String::new(),
    }
}

fn project(w: usize, p: usize) -> Project {
    let mut pr = Project::new(
        format!("p-{p}"),
        ProjectSpec {
            namespace_name: format!("proj-{p}"),
            placement: ProjectPlacement {
                clusters: Vec::new(),
                cluster_selector: Some(
                    LabelSelector::parse(if p.is_multiple_of(2) {
                        "env=prod"
                    } else {
                        "env=dev"
                    })
                    .unwrap(),
                ),
            },
            ..ProjectSpec::default()
        },
    );
    pr.metadata.namespace = Some(ws_ns(w));
    pr
}

/// The fleet: every default role, and bindings of the defaults at each scope.
fn fleet() -> Vec<Resource> {
    let mut out: Vec<Resource> = defaults::global();
    for w in 0..WORKSPACES {
        let ws = Workspace::new(
            format!("w-{w}"),
            WorkspaceSpec {
                namespace_name: ws_ns(w),
                ..WorkspaceSpec::default()
            },
        );
        out.extend(defaults::workspace(&ws));
        out.push(Resource::Workspace(ws));
    }
    for c in 0..CLUSTERS {
        let mut cl = Cluster::new(
            format!("cluster-{c}"),
            ClusterSpec {
                api_server_url: format!("https://c{c}.example.com:6443"),
                ..ClusterSpec::default()
            },
        );
        cl.metadata.namespace = Some(ws_ns(c % WORKSPACES));
        cl.metadata
            .labels
            .insert("env".into(), if c % 2 == 0 { "prod" } else { "dev" }.into());
        out.push(Resource::Cluster(cl));
    }
    for p in 0..PROJECTS {
        let pr = project(p % WORKSPACES, p);
        out.extend(defaults::project(&pr));
        out.push(Resource::Project(pr));
    }
    let levels = ["admin", "edit", "view"];
    for i in 0..GLOBAL_BINDINGS {
        let role = format!("kommander-dashboard-{}", levels[i % 3]);
        let subjects = vec![user(i), group(format!("oidc:team-{}", i % 20))];
        out.push(if i % 2 == 0 {
            Resource::KommanderRoleBinding(KommanderRoleBinding::new(
                GLOBAL_NAMESPACE,
                &format!("g-{i}"),
                &role,
                subjects,
            ))
        } else {
            Resource::ClusterScopeRoleBinding(ClusterScopeRoleBinding::new(
                GLOBAL_NAMESPACE,
                &format!("g-{i}"),
                &role,
                subjects,
            ))
        });
    }
    for w in 0..WORKSPACES {
        for i in 0..WORKSPACE_BINDINGS {
            let role = format!("kommander-workspace-{}", levels[i % 3]);
            let subjects = vec![user(w * 100 + i)];
            let name = format!("wb-{i}");
            out.push(if i % 2 == 0 {
                Resource::KommanderRoleBinding(KommanderRoleBinding::new(
                    &ws_ns(w),
                    &name,
                    &role,
                    subjects,
                ))
            } else {
                Resource::ClusterScopeRoleBinding(ClusterScopeRoleBinding::new(
                    &ws_ns(w),
                    &name,
                    &role,
                    subjects,
                ))
            });
        }
    }
    for p in 0..PROJECTS {
        for i in 0..PROJECT_BINDINGS {
            let role = format!("kommander-project-{}", levels[i % 3]);
            let subjects = vec![user(10_000 + p * 20 + i)];
            let name = format!("pb-{i}");
            let ns = format!("proj-{p}");
            out.push(if i % 2 == 0 {
                Resource::KommanderRoleBinding(KommanderRoleBinding::new(
                    &ns, &name, &role, subjects,
                ))
            } else {
                Resource::ClusterScopeRoleBinding(ClusterScopeRoleBinding::new(
                    &ns, &name, &role, subjects,
                ))
            });
        }
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Applies `change` and patches the index: (time, objects changed over all clusters).
fn one_change(planner: &mut Planner, index: &FleetIndex, change: Change) -> (Duration, usize) {
    let t = Instant::now();
    let delta = planner.apply(change);
    index.apply(&delta);
    (t.elapsed(), delta.object_changes())
}

fn main() {
    let objects = fleet();
    let bindings = objects
        .iter()
        .filter(|r| {
            matches!(
                r,
                Resource::KommanderRoleBinding(_) | Resource::ClusterScopeRoleBinding(_)
            )
        })
        .count();
    let cfg = PlannerConfig::default();

    // Full plan: model, plan and index from scratch, median of 5.
    let mut full = Vec::new();
    let mut index_build = Vec::new();
    let mut memory = 0isize;
    let mut index_memory = 0isize;
    let mut produced = 0usize;
    for _ in 0..5 {
        let input = objects.clone();
        let before = rss_kib();
        let t = Instant::now();
        let planner = Planner::new(cfg.clone(), Model::from_resources(input));
        full.push(t.elapsed());
        memory = memory.max(rss_kib() - before);
        produced = planner
            .plan()
            .targets()
            .map(|t| planner.plan().desired(t).len())
            .sum();
        let before = rss_kib();
        let t = Instant::now();
        let index = FleetSnapshot::new(planner.plan());
        index_build.push(t.elapsed());
        index_memory = index_memory.max(rss_kib() - before);
        black_box(index);
    }
    let full = median(full);
    let index_build = median(index_build);

    let mut planner = Planner::new(cfg.clone(), Model::from_resources(objects.clone()));
    let index = FleetIndex::new(planner.plan());

    // One change at each scope: a binding's subjects changed back and forth, 101 times.
    let mut rows = Vec::new();
    let scenarios: [(&str, String, &str); 4] = [
        (
            "Global ClusterScopeRoleBinding (all 1,000 clusters)",
            GLOBAL_NAMESPACE.into(),
            "g-1",
        ),
        (
            "Workspace ClusterScopeRoleBinding (20 clusters)",
            ws_ns(7),
            "wb-1",
        ),
        (
            "Workspace KommanderRoleBinding to a synced role (management plane, 10 projects)",
            ws_ns(7),
            "wb-0",
        ),
        (
            "Project ClusterScopeRoleBinding (10 clusters)",
            "proj-7".into(),
            "pb-1",
        ),
    ];
    for (label, ns, name) in scenarios {
        let kommander = name.ends_with('0');
        let mut times = Vec::new();
        let mut changed = 0;
        for i in 0..101 {
            let subjects = vec![user(900_000 + i)];
            let role = if name.starts_with('g') {
                "kommander-dashboard-view"
            } else if name.starts_with('w') {
                "kommander-workspace-admin"
            } else {
                "kommander-project-edit"
            };
            let r = if kommander {
                Resource::KommanderRoleBinding(KommanderRoleBinding::new(&ns, name, role, subjects))
            } else {
                Resource::ClusterScopeRoleBinding(ClusterScopeRoleBinding::new(
                    &ns, name, role, subjects,
                ))
            };
            let (d, n) = one_change(&mut planner, &index, Change::Upsert(Box::new(r)));
            times.push(d);
            changed = n;
        }
        rows.push((label.to_owned(), median(times.clone()), p99(times), changed));
    }
    // A new project (in a workspace of 20 clusters, placed on its 10 env=prod ones).
    let mut times = Vec::new();
    let mut changed = 0;
    for i in 0..101 {
        // Odd projects select env=dev, which the odd clusters of workspace 7 have.
        let p = PROJECTS + 2 * i + 1;
        let (d, n) = one_change(
            &mut planner,
            &index,
            Change::Upsert(Box::new(Resource::Project(project(7, p)))),
        );
        times.push(d);
        changed = n;
        // and gone again, so every round creates one.
        one_change(
            &mut planner,
            &index,
            Change::Delete {
                kind: "Project".into(),
                namespace: ws_ns(7),
                name: format!("p-{p}"),
            },
        );
    }
    rows.push((
        "Project created (10 clusters and the management plane)".to_owned(),
        median(times.clone()),
        p99(times),
        changed,
    ));

    // who-can --fleet over the index.
    let snap = index.load();
    let mut who = Vec::new();
    let mut who_rows = Vec::new();
    for (label, a) in [
        (
            "get pods -n proj-7",
            Attributes {
                verb: "get".into(),
                resource_request: true,
                resource: "pods".into(),
                namespace: "proj-7".into(),
                ..Attributes::default()
            },
        ),
        (
            "delete deployments.apps (all namespaces)",
            Attributes {
                verb: "delete".into(),
                resource_request: true,
                api_group: "apps".into(),
                resource: "deployments".into(),
                ..Attributes::default()
            },
        ),
        (
            "get /dashboard/grafana",
            Attributes {
                verb: "get".into(),
                path: "/dashboard/grafana".into(),
                ..Attributes::default()
            },
        ),
    ] {
        let mut times = Vec::new();
        let mut answers = 0;
        for _ in 0..51 {
            let t = Instant::now();
            let w = black_box(snap.who_can(&a));
            times.push(t.elapsed());
            answers = w.targets.keys().map(|t| w.on(t).count()).sum();
        }
        who.extend(times.iter().copied());
        who_rows.push((label, median(times.clone()), p99(times), answers));
    }

    let mut md = String::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(md, "## Federation planner and fleet index (federation)\n");
    let _ = writeln!(
        md,
        "A fleet of {CLUSTERS} clusters in {WORKSPACES} workspaces, {PROJECTS} projects (each placed by label on the 10 clusters of its workspace that match), {bindings} bindings ({} Global, {} Workspace, {} Project, half of each plane) of the default roles of every scope, {} objects in all. In-process (the planner is a pure library the management plane runs; delivery to clusters is federation part 2). One change is the time from the change to the fleet index serving it: the plan's delta and the patched index (recompiling the one layer it touched). Median and p99 of 101 changes. Machine: {cpus} cores. No other tool plans federated RBAC in-process to compare with: Kommander and KubeFed propagate through controllers (part 2 measures propagation).\n",
        GLOBAL_BINDINGS,
        WORKSPACES * WORKSPACE_BINDINGS,
        PROJECTS * PROJECT_BINDINGS,
        objects.len()
    );
    let _ = writeln!(md, "| measure | result | target |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| full plan from scratch ({produced} objects over {} targets) | {} | ≤ 1 s: {} |",
        CLUSTERS + 1,
        ms(full),
        if full <= Duration::from_secs(1) {
            "met"
        } else {
            "not met"
        }
    );
    let _ = writeln!(
        md,
        "| memory of the model and plan | {:.1} MiB | |",
        memory as f64 / 1024.0
    );
    let _ = writeln!(
        md,
        "| fleet index from scratch | {} ({:.1} MiB) | |",
        ms(index_build),
        index_memory as f64 / 1024.0
    );
    for (label, med, p, n) in &rows {
        let _ = writeln!(
            md,
            "| one change: {label}, {n} object changes | {} (p99 {}) | ≤ 5 ms: {} |",
            ms(*med),
            ms(*p),
            if *p <= Duration::from_millis(5) {
                "met"
            } else {
                "not met"
            }
        );
    }
    for (label, med, p, n) in &who_rows {
        let _ = writeln!(
            md,
            "| who-can --fleet `{label}`: {n} answers | {} (p99 {}) | ≤ 50 ms: {} |",
            ms(*med),
            ms(*p),
            if *p <= Duration::from_millis(50) {
                "met"
            } else {
                "not met"
            }
        );
    }
    print!("{md}");
    if let Ok(dir) = std::env::var("PORTCULLIS_BENCH_OUT") {
        std::fs::write(std::path::Path::new(&dir).join("federation.md"), md).unwrap();
    }
}
