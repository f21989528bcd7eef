//! Property tests: the incremental plan equals the plan from scratch after any sequence of
//! changes; the plan is deterministic; the fleet index patched by deltas equals one built from
//! scratch; and the RBAC engine's decisions over each cluster's planned objects equal what the
//! scope table implies, computed here by a naive reading of the model.

use std::collections::BTreeMap;

use portcullis_federation::{
    FleetIndex, FleetSnapshot, Model, Plane, Planner, PlannerConfig, Target, plan,
};
use portcullis_model::{
    GLOBAL_NAMESPACE, PolicyRule, ProjectPlacement, Resource, Scope, Subject, SubjectKind,
    resolve_scope,
};
use portcullis_rbac::Attributes;
use proptest::prelude::*;

use crate::fixtures::*;

// === generators ===

const NAMESPACES: &[&str] = &["n0", "n1", "n2", "n3", "n4", GLOBAL_NAMESPACE];
const CLUSTERS: &[&str] = &["c0", "c1", "c2", "c3", "c4"];
const STAMPS: &[&str] = &[
    "2026-01-01T00:00:00Z",
    "2026-02-01T00:00:00Z",
    "2026-03-01T00:00:00Z",
];

fn rules_strategy() -> impl Strategy<Value = Vec<PolicyRule>> {
    prop::sample::select(vec![
        vec![rule(&["get", "list"], &[""], &["pods"])],
        vec![rule(&["*"], &["apps"], &["deployments"])],
        vec![rule(&["*"], &["*"], &["*"])],
        vec![
            rule(&["get"], &[""], &["pods"]),
            rule(&["delete"], &[""], &["secrets"]),
        ],
        vec![PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into()],
            ..PolicyRule::default()
        }],
    ])
}

fn subjects_strategy() -> impl Strategy<Value = Vec<Subject>> {
    prop::collection::vec(
        prop::sample::select(vec![
            user("ann"),
            user("bob"),
            group("oidc:sre"),
            portcullis_group("devs"),
        ]),
        1..3,
    )
    .prop_map(|mut v| {
        v.sort_by(|a, b| {
            (a.name.clone(), a.api_group.clone()).cmp(&(b.name.clone(), b.api_group.clone()))
        });
        v.dedup();
        v
    })
}

fn with_stamp(mut r: Resource, stamp: &str) -> Resource {
    r.meta_mut().creation_timestamp = Some(stamp.into());
    r
}

/// Any object of the universe, conflicts (shared namespaces, duplicate cluster names) included.
fn object_strategy() -> impl Strategy<Value = Resource> {
    let ns = || prop::sample::select(NAMESPACES.to_vec());
    let name = |pool: &'static [&'static str]| prop::sample::select(pool.to_vec());
    let stamp = || prop::sample::select(STAMPS.to_vec());
    prop_oneof![
        (name(&["w0", "w1", "w2"]), ns(), stamp()).prop_map(|(n, ns, s)| with_stamp(
            workspace(n, if ns == GLOBAL_NAMESPACE { "n9" } else { ns }),
            s
        )),
        (
            name(&["p0", "p1", "p2", "p3"]),
            ns(),
            name(&["n2", "n3", "n4", "n5", "n6"]),
            prop::collection::vec(name(CLUSTERS), 0..2),
            prop::option::of(prop::sample::select(vec!["env=prod", "env in (dev)", ""])),
            stamp(),
        )
            .prop_map(|(n, ws_ns, ns, clusters, sel, s)| {
                let mut clusters = clusters;
                clusters.sort_unstable();
                clusters.dedup();
                with_stamp(project(ws_ns, n, ns, &clusters, sel), s)
            }),
        (
            name(CLUSTERS),
            ns(),
            prop::sample::select(vec!["prod", "dev"]),
            stamp()
        )
            .prop_map(|(n, ns, env, s)| with_stamp(cluster(ns, n, &[("env", env)]), s)),
        (
            prop::bool::ANY,
            name(&[
                "r0",
                "r1",
                "kommander-workspace-admin",
                "kommander-project-admin"
            ]),
            ns(),
            rules_strategy(),
            prop::bool::ANY,
            prop::option::of(name(&["r0", "r1"]))
        )
            .prop_map(|(mgmt, n, ns, rules, sync, map)| {
                let mut r = if mgmt {
                    kommander_role(ns, n, rules, sync)
                } else {
                    let mut r = cluster_scope_role(ns, n, rules);
                    if sync {
                        r.meta_mut().annotations.insert(
                            portcullis_model::SYNC_TO_PROJECT_ANNOTATION.into(),
                            "true".into(),
                        );
                    }
                    r
                };
                if let Some(m) = map {
                    r.meta_mut()
                        .annotations
                        .insert("portcullis.dev/project-role".into(), m.into());
                }
                r
            }),
        (
            prop::bool::ANY,
            name(&["b0", "b1", "b2"]),
            ns(),
            name(&[
                "r0",
                "r1",
                "kommander-workspace-admin",
                "kommander-project-admin"
            ]),
            subjects_strategy()
        )
            .prop_map(|(mgmt, n, ns, role, subjects)| if mgmt {
                kommander_binding(ns, n, role, subjects)
            } else {
                cluster_scope_binding(ns, n, role, subjects)
            }),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(Resource),
    Delete(String, String, String),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => object_strategy().prop_map(Op::Upsert),
        1 => object_strategy().prop_map(|r| Op::Delete(
            r.kind_info().kind.to_owned(),
            r.meta().namespace.clone().unwrap_or_default(),
            r.meta().name.clone(),
        )),
    ]
}

fn change(op: &Op) -> portcullis_federation::Change {
    match op {
        Op::Upsert(r) => upsert(r.clone()),
        Op::Delete(k, ns, n) => delete(k, ns, n),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn incremental_plan_and_patched_index_equal_a_fresh_start(
        ops in prop::collection::vec(op_strategy(), 1..40)
    ) {
        let cfg = PlannerConfig::default();
        let mut planner = Planner::new(cfg.clone(), Model::new());
        let index = FleetIndex::new(planner.plan());
        for op in &ops {
            let delta = planner.apply(change(op));
            index.apply(&delta);
            let fresh = plan(&cfg, planner.model());
            prop_assert_eq!(planner.plan(), &fresh, "after {:?}", op);
            prop_assert!(*index.load() == FleetSnapshot::new(&fresh), "index after {:?}", op);
        }
    }

    #[test]
    fn deltas_replayed_on_each_cluster_give_its_desired_state(
        ops in prop::collection::vec(op_strategy(), 1..40)
    ) {
        // What a sink would hold: every cluster's objects, maintained from deltas alone.
        let mut planner = Planner::new(PlannerConfig::default(), Model::new());
        let mut held: BTreeMap<Target, BTreeMap<String, String>> = BTreeMap::new();
        for op in &ops {
            let delta = planner.apply(change(op));
            for (t, c) in &delta.clusters {
                let objects = held.entry(t.clone()).or_default();
                for k in &c.deletes {
                    objects.remove(&k.to_string());
                }
                for o in &c.upserts {
                    objects.insert(o.key.to_string(), o.content_hash().to_owned());
                }
            }
            held.retain(|t, _| planner.plan().has_target(t));
            for t in planner.plan().targets() {
                let want: BTreeMap<String, String> = planner
                    .plan()
                    .desired(t)
                    .into_iter()
                    .map(|(k, o)| (k.to_string(), o.content_hash().to_owned()))
                    .collect();
                let have = held.get(t).cloned().unwrap_or_default();
                prop_assert_eq!(have, want, "{} after {:?}", t, op);
            }
        }
    }

    #[test]
    fn the_plan_does_not_depend_on_the_order_objects_arrive_in(
        objects in prop::collection::vec(object_strategy(), 1..30),
        seed in any::<u64>(),
    ) {
        // Later upserts of the same object replace earlier ones; keep the last of each.
        let mut last: BTreeMap<(String, String, String), Resource> = BTreeMap::new();
        for r in objects {
            let k = (r.kind_info().kind.to_owned(), r.meta().namespace.clone().unwrap_or_default(), r.meta().name.clone());
            last.insert(k, r);
        }
        let forward: Vec<Resource> = last.values().cloned().collect();
        let mut shuffled = forward.clone();
        let n = shuffled.len();
        for i in 0..n {
            let j = ((seed.rotate_left(i as u32) ^ (i as u64 * 0x9e37_79b9)) % n as u64) as usize;
            shuffled.swap(i, j);
        }
        let cfg = PlannerConfig::default();
        let a = plan(&cfg, &Model::from_resources(forward));
        let b = plan(&cfg, &Model::from_resources(shuffled));
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &plan(&cfg, &Model::from_resources(last.into_values())));
    }
}

// === decisions against the scope table ===

/// A conflict-free fleet: workspaces w0..w2 in namespaces ws-0..ws-2, projects in them, clusters
/// with unique names, and random roles and bindings at every scope.
fn fleet_strategy() -> impl Strategy<Value = Vec<Resource>> {
    let projects = prop::collection::vec(
        (
            0usize..3,
            prop::collection::vec(prop::sample::select(CLUSTERS.to_vec()), 0..3),
            prop::option::of(prop::sample::select(vec!["env=prod", ""])),
        ),
        0..4,
    );
    let clusters =
        prop::collection::vec((0usize..3, prop::sample::select(vec!["prod", "dev"])), 1..6);
    let scopes: Vec<String> = [
        GLOBAL_NAMESPACE,
        "ws-0",
        "ws-1",
        "ws-2",
        "proj-0",
        "proj-1",
        "proj-2",
        "proj-3",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Mostly a role and a binding to it in one namespace, plus strays of each.
    let grants = prop::collection::vec(
        (
            prop::bool::ANY,
            prop::sample::select(scopes.clone()),
            prop::sample::select(vec![
                "r0",
                "r1",
                "kommander-workspace-admin",
                "kommander-project-admin",
            ]),
            rules_strategy(),
            prop::bool::ANY,
            prop::sample::select(vec!["b0", "b1", "b2"]),
            subjects_strategy(),
            0u8..10,
        ),
        0..14,
    );
    (projects, clusters, grants).prop_map(|(projects, clusters, grants)| {
        let mut out = vec![
            workspace("w0", "ws-0"),
            workspace("w1", "ws-1"),
            workspace("w2", "ws-2"),
        ];
        for (i, (ws, cs, sel)) in projects.into_iter().enumerate() {
            let mut cs = cs;
            cs.sort_unstable();
            cs.dedup();
            out.push(project(
                &format!("ws-{ws}"),
                &format!("p{i}"),
                &format!("proj-{i}"),
                &cs,
                sel,
            ));
        }
        for (i, (ws, env)) in clusters.into_iter().enumerate() {
            out.push(cluster(&format!("ws-{ws}"), CLUSTERS[i], &[("env", env)]));
        }
        for (mgmt, ns, role, rules, sync, binding, subjects, shape) in grants {
            // shape 0: a role alone; 1: a binding alone; else both.
            if shape != 1 {
                out.push(if mgmt {
                    kommander_role(&ns, role, rules, sync)
                } else {
                    cluster_scope_role(&ns, role, rules)
                });
            }
            if shape != 0 {
                out.push(if mgmt {
                    kommander_binding(&ns, binding, role, subjects)
                } else {
                    cluster_scope_binding(&ns, binding, role, subjects)
                });
            }
        }
        out
    })
}

fn requests() -> Vec<Attributes> {
    let mut out = Vec::new();
    let identities: [(&str, &[&str]); 4] = [
        ("ann", &[]),
        ("bob", &[]),
        ("carl", &["oidc:sre"]),
        ("dora", &["oidc:devs"]),
    ];
    for (user, groups) in identities {
        for ns in ["", "proj-0", "proj-1", "proj-3", "ws-0", "ws-1", "other"] {
            for (verb, group, resource) in [
                ("get", "", "pods"),
                ("list", "", "pods"),
                ("patch", "apps", "deployments"),
                ("delete", "", "secrets"),
            ] {
                out.push(Attributes {
                    user: user.into(),
                    groups: groups.iter().map(|g| (*g).into()).collect(),
                    verb: verb.into(),
                    resource_request: true,
                    api_group: group.into(),
                    resource: resource.into(),
                    namespace: ns.into(),
                    ..Attributes::default()
                });
            }
        }
        out.push(Attributes {
            user: user.into(),
            groups: groups.iter().map(|g| (*g).into()).collect(),
            verb: "get".into(),
            path: "/healthz".into(),
            ..Attributes::default()
        });
    }
    out
}

fn allows(rules: &[PolicyRule], a: &Attributes) -> bool {
    rules.iter().any(|r| {
        let r = portcullis_rbac::v1::PolicyRule {
            verbs: r.verbs.clone(),
            api_groups: r.api_groups.clone(),
            resources: r.resources.clone(),
            resource_names: r.resource_names.clone(),
            non_resource_urls: r.non_resource_urls.clone(),
        };
        portcullis_rbac::evaluate::rule_allows(&r, a)
    })
}

fn names_requester(subjects: &[Subject], a: &Attributes) -> bool {
    subjects.iter().any(|s| match s.kind {
        SubjectKind::User => s.name == a.user,
        SubjectKind::Group if s.api_group == portcullis_model::GROUP => {
            a.groups.contains(&format!("oidc:{}", s.name))
        }
        SubjectKind::Group => a.groups.contains(&s.name),
    })
}

/// The scope table read naively: is `a` allowed on `target`?
fn reference(model: &Model, target: &Target, a: &Attributes) -> bool {
    let workspaces: Vec<_> = model.workspaces().cloned().collect();
    let projects: Vec<_> = model.projects().cloned().collect();
    let plane = if *target == Target::Management {
        Plane::Management
    } else {
        Plane::Fleet
    };
    let cluster = match target {
        Target::Management => None,
        Target::Cluster(c) => model.clusters().find(|x| x.metadata.name == *c),
    };
    let cluster_ws = cluster.and_then(|c| {
        workspaces
            .iter()
            .find(|w| Some(w.namespace_name()) == c.metadata.namespace.as_deref())
    });
    let placed = |p: &str| -> bool {
        let (Some(c), Some(ws)) = (cluster, cluster_ws) else {
            return false;
        };
        projects.iter().any(|x| {
            x.metadata.name == p
                && x.metadata.namespace.as_deref() == Some(ws.namespace_name())
                && ProjectPlacement::selects(
                    &x.spec.placement,
                    &c.metadata.name,
                    &c.metadata.labels,
                )
        })
    };
    let project_ns = |w: &str, p: &str| -> String {
        projects
            .iter()
            .find(|x| {
                x.metadata.name == p
                    && workspaces.iter().any(|ws| {
                        ws.metadata.name == w
                            && Some(ws.namespace_name()) == x.metadata.namespace.as_deref()
                    })
            })
            .map(|x| x.spec.namespace_name.clone())
            .unwrap_or_default()
    };
    let namespaced_ok = |rules: &[PolicyRule]| rules.iter().all(|r| r.non_resource_urls.is_empty());
    for (p, ns, _, b) in model.bindings() {
        if p != plane || !names_requester(&b.subjects, a) {
            continue;
        }
        let Some(role) = model.role(plane, ns, &b.role) else {
            continue;
        };
        let scope = resolve_scope(ns, &workspaces, &projects);
        let granted = match (&scope, plane) {
            (Some(Scope::Global), Plane::Management) => allows(&role.rules, a),
            (Some(Scope::Global), Plane::Fleet) => cluster_ws.is_some() && allows(&role.rules, a),
            (Some(Scope::Workspace { .. }), Plane::Management) => {
                namespaced_ok(&role.rules) && a.namespace == ns && allows(&role.rules, a)
            }
            (Some(Scope::Workspace { workspace }), Plane::Fleet) => {
                cluster_ws.is_some_and(|w| w.metadata.name == *workspace) && allows(&role.rules, a)
            }
            (Some(Scope::Project { workspace, project }), Plane::Management) => {
                namespaced_ok(&role.rules)
                    && a.namespace == project_ns(workspace, project)
                    && allows(&role.rules, a)
            }
            (Some(Scope::Project { project, .. }), Plane::Fleet) => {
                placed(project)
                    && namespaced_ok(&role.rules)
                    && a.namespace == ns
                    && allows(&role.rules, a)
            }
            (None, _) => false,
        };
        if granted {
            return true;
        }
        // Inheritance: a workspace binding to a synced role, on the management plane.
        if let (Some(Scope::Workspace { workspace }), Plane::Management) = (&scope, plane) {
            let synced = role
                .annotations
                .get(portcullis_model::SYNC_TO_PROJECT_ANNOTATION)
                .is_some_and(|v| v == "true");
            if !synced {
                continue;
            }
            let mapped = role
                .annotations
                .get("portcullis.dev/project-role")
                .cloned()
                .or_else(|| {
                    portcullis_federation::defaults::project_role_for(&b.role).map(str::to_owned)
                });
            for proj in projects
                .iter()
                .filter(|x| x.metadata.namespace.as_deref() == Some(ns))
            {
                let pns = project_ns(workspace, &proj.metadata.name);
                if a.namespace != pns {
                    continue;
                }
                let rules = match &mapped {
                    Some(m) => model.role(plane, &pns, m).map(|r| r.rules.clone()),
                    None => Some(role.rules.clone()),
                };
                if rules.is_some_and(|r| namespaced_ok(&r) && allows(&r, a)) {
                    return true;
                }
            }
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn decisions_over_planned_objects_equal_the_scope_table(objects in fleet_strategy()) {
        let model = Model::from_resources(objects);
        let planner = Planner::new(PlannerConfig::default(), model.clone());
        let snap = FleetSnapshot::new(planner.plan());
        let mut targets = vec![Target::Management];
        targets.extend(CLUSTERS.iter().map(|c| cluster_target(c)));
        for t in &targets {
            for a in requests() {
                let want = reference(&model, t, &a);
                let got = snap.authorize(t, &a).allowed;
                prop_assert_eq!(got, want, "{} {:?}", t, a);
                prop_assert_eq!(snap.explain(t, &a).allowed, want, "explain {} {:?}", t, a);
            }
        }
        // who-can names exactly the subjects through whom each identity is allowed.
        for a in requests() {
            let question = Attributes { user: String::new(), groups: Vec::new(), ..a.clone() };
            let answer = snap.who_can(&question);
            for t in &targets {
                let named = answer.on(t).any(|w| {
                    (w.kind == "User" && w.name == a.user) || (w.kind == "Group" && a.groups.contains(&w.name))
                });
                prop_assert_eq!(named, reference(&model, t, &a), "who-can {} {:?}", t, a);
            }
        }
    }
}
