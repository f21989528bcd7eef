//! The scope table, row by row, and what each change does where.

use portcullis_federation::objects::{CONTENT_HASH_ANNOTATION, MANAGED_BY_LABEL, SOURCE_LABEL};
use portcullis_federation::{ObjectKind, RbacObject, Target};

use crate::fixtures::*;

fn has(plan: &portcullis_federation::Plan, t: &Target, s: &str) -> bool {
    keys(plan, t).iter().any(|k| k == s)
}

#[test]
fn global_roles_reach_the_management_plane_or_every_workspace_cluster() {
    let mut objects = fleet();
    objects.push(cluster("nowhere", "orphan", &[]));
    objects.push(kommander_role(GLOBAL, "auditor", read_pods(), false));
    objects.push(cluster_scope_role(GLOBAL, "reader", read_pods()));
    objects.push(kommander_binding(
        GLOBAL,
        "auditors",
        "auditor",
        vec![user("ann")],
    ));
    objects.push(cluster_scope_binding(
        GLOBAL,
        "readers",
        "reader",
        vec![group("oidc:sre")],
    ));
    let p = planner(objects);
    let plan = p.plan();
    let m = Target::Management;
    assert!(has(plan, &m, "ClusterRole/portcullis:global:auditor"));
    assert!(has(
        plan,
        &m,
        "ClusterRoleBinding/portcullis:global:auditors"
    ));
    assert!(!has(plan, &m, "ClusterRole/portcullis:global:reader"));
    for c in ["a1", "a2", "b1"] {
        let t = cluster_target(c);
        assert!(has(plan, &t, "ClusterRole/portcullis:global:reader"), "{c}");
        assert!(
            has(plan, &t, "ClusterRoleBinding/portcullis:global:readers"),
            "{c}"
        );
        assert!(
            !has(plan, &t, "ClusterRole/portcullis:global:auditor"),
            "{c}"
        );
    }
    // A cluster outside any workspace is no target, and says why.
    assert!(!plan.has_target(&cluster_target("orphan")));
    assert!(
        plan.conflicts()
            .iter()
            .any(|c| c.object == "Cluster/nowhere/orphan")
    );
}

#[test]
fn workspace_roles_become_a_role_on_the_management_plane_and_cluster_roles_on_its_clusters() {
    let mut objects = fleet();
    objects.push(kommander_role("ws-a", "ops", read_pods(), false));
    objects.push(kommander_binding("ws-a", "ops", "ops", vec![user("ann")]));
    objects.push(cluster_scope_role("ws-a", "ops", read_pods()));
    objects.push(cluster_scope_binding(
        "ws-a",
        "ops",
        "ops",
        vec![user("ann")],
    ));
    let plan = planner(objects).plan().clone();
    let m = Target::Management;
    assert!(has(&plan, &m, "Role/ws-a/portcullis:ws:a:ops"));
    assert!(has(&plan, &m, "RoleBinding/ws-a/portcullis:ws:a:ops"));
    for c in ["a1", "a2"] {
        assert!(has(
            &plan,
            &cluster_target(c),
            "ClusterRole/portcullis:ws:a:ops"
        ));
        assert!(has(
            &plan,
            &cluster_target(c),
            "ClusterRoleBinding/portcullis:ws:a:ops"
        ));
    }
    assert!(!has(
        &plan,
        &cluster_target("b1"),
        "ClusterRole/portcullis:ws:a:ops"
    ));
    let RbacObject::RoleBinding(b) =
        &plan.desired(&m)[&key(ObjectKind::RoleBinding, "ws-a", "portcullis:ws:a:ops")].object
    else {
        panic!("not a RoleBinding")
    };
    assert_eq!(b.role_ref.kind, "Role");
    assert_eq!(b.role_ref.name, "portcullis:ws:a:ops");
}

#[test]
fn project_roles_become_roles_in_the_project_namespace_where_it_is_placed() {
    let mut objects = fleet();
    objects.push(kommander_role("web", "dev", read_pods(), false));
    objects.push(kommander_binding("web", "dev", "dev", vec![user("bob")]));
    objects.push(cluster_scope_role("web", "dev", read_pods()));
    objects.push(cluster_scope_binding(
        "web",
        "dev",
        "dev",
        vec![portcullis_group("devs")],
    ));
    let plan = planner(objects).plan().clone();
    assert!(has(
        &plan,
        &Target::Management,
        "Role/web/portcullis:project:dev"
    ));
    assert!(has(
        &plan,
        &Target::Management,
        "RoleBinding/web/portcullis:project:dev"
    ));
    // `web` is placed on env=prod: a1 only (b1 is prod but in another workspace).
    let a1 = cluster_target("a1");
    assert!(has(&plan, &a1, "Role/web/portcullis:project:dev"));
    assert!(has(&plan, &a1, "RoleBinding/web/portcullis:project:dev"));
    assert!(has(&plan, &a1, "Namespace/web"));
    for c in ["a2", "b1"] {
        assert!(
            !has(&plan, &cluster_target(c), "Role/web/portcullis:project:dev"),
            "{c}"
        );
        assert!(!has(&plan, &cluster_target(c), "Namespace/web"), "{c}");
    }
    // A portcullis Group subject is the token's group with the groups prefix.
    let RbacObject::RoleBinding(b) =
        &plan.desired(&a1)[&key(ObjectKind::RoleBinding, "web", "portcullis:project:dev")].object
    else {
        panic!("not a RoleBinding")
    };
    assert_eq!(b.subjects[0].kind, "Group");
    assert_eq!(b.subjects[0].name, "oidc:devs");
    // `api` is placed on a2 by name.
    let mut p = planner(fleet());
    p.apply(upsert(cluster_scope_role("api", "dev", read_pods())));
    assert!(has(
        p.plan(),
        &cluster_target("a2"),
        "Role/api/portcullis:project:dev"
    ));
    assert!(!has(
        p.plan(),
        &cluster_target("a1"),
        "Role/api/portcullis:project:dev"
    ));
}

#[test]
fn every_object_is_labelled_annotated_and_parses_as_kubernetes_rbac() {
    let mut objects = fleet();
    objects.push(kommander_role(GLOBAL, "a:b", read_pods(), false));
    objects.push(cluster_scope_role("web", "dev", read_pods()));
    objects.push(cluster_scope_binding(
        "web",
        "dev",
        "dev",
        vec![user("bob")],
    ));
    objects.push(cluster_scope_binding(
        "ws-a",
        "long",
        "x",
        vec![user("bob")],
    ));
    let plan = planner(objects).plan().clone();
    let mut seen = 0;
    for t in plan.targets().cloned().collect::<Vec<_>>() {
        for (k, o) in plan.desired(&t) {
            let meta = o.object.meta();
            assert_eq!(meta.labels[MANAGED_BY_LABEL], "portcullis");
            assert!(meta.labels.contains_key(SOURCE_LABEL));
            assert_eq!(meta.annotations[CONTENT_HASH_ANNOTATION].len(), 32);
            let json = o.object.to_json();
            match k.kind {
                ObjectKind::ClusterRole => {
                    serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRole>(json)
                        .unwrap();
                }
                ObjectKind::ClusterRoleBinding => {
                    serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(json)
                        .unwrap();
                }
                ObjectKind::Role => {
                    serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(json).unwrap();
                }
                ObjectKind::RoleBinding => {
                    serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(json)
                        .unwrap();
                }
                ObjectKind::Namespace => {
                    serde_json::from_value::<k8s_openapi::api::core::v1::Namespace>(json).unwrap();
                }
            }
            seen += 1;
        }
    }
    assert!(seen > 5);
    // The source label of a name that is no valid label value is shortened with a hash.
    let l = labels_of(
        &plan,
        &Target::Management,
        &key(ObjectKind::ClusterRole, "", "portcullis:global:a:b"),
    );
    assert!(
        l[SOURCE_LABEL].starts_with("KommanderRole.portcullis-global.a-b-"),
        "{l:?}"
    );
}

#[test]
fn sync_to_project_grants_the_project_role_in_every_project_including_later_ones() {
    let mut objects = fleet();
    objects.push(kommander_role(
        "ws-a",
        "kommander-workspace-admin",
        read_pods(),
        true,
    ));
    objects.push(kommander_role(
        "web",
        "kommander-project-admin",
        read_pods(),
        false,
    ));
    objects.push(kommander_binding(
        "ws-a",
        "admins",
        "kommander-workspace-admin",
        vec![user("ann")],
    ));
    let mut p = planner(objects);
    let m = Target::Management;
    for ns in ["web", "api"] {
        assert!(
            has(
                p.plan(),
                &m,
                &format!("RoleBinding/{ns}/portcullis:ws:a:admins")
            ),
            "{ns}"
        );
    }
    let rb = &p.plan().desired(&m)[&key(ObjectKind::RoleBinding, "web", "portcullis:ws:a:admins")];
    let RbacObject::RoleBinding(b) = &rb.object else {
        panic!()
    };
    assert_eq!(
        b.role_ref.name,
        "portcullis:project:kommander-project-admin"
    );

    // A project created later gets it too.
    let d = p.apply(upsert(project("ws-a", "late", "late", &["a1"], None)));
    assert!(has(p.plan(), &m, "RoleBinding/late/portcullis:ws:a:admins"));
    assert!(
        d.clusters[&m]
            .upserts
            .iter()
            .any(|o| o.key.to_string() == "RoleBinding/late/portcullis:ws:a:admins")
    );
    // Not in the other workspace's projects.
    p.apply(upsert(project("ws-b", "other", "other", &[], None)));
    assert!(!has(
        p.plan(),
        &m,
        "RoleBinding/other/portcullis:ws:a:admins"
    ));

    // Removing the annotation withdraws it everywhere.
    let d = p.apply(upsert(kommander_role(
        "ws-a",
        "kommander-workspace-admin",
        read_pods(),
        false,
    )));
    for ns in ["web", "api", "late"] {
        assert!(
            !has(
                p.plan(),
                &m,
                &format!("RoleBinding/{ns}/portcullis:ws:a:admins")
            ),
            "{ns}"
        );
    }
    assert_eq!(d.clusters[&m].deletes.len(), 3);
    // Back on, then the binding removed: withdrawn again.
    p.apply(upsert(kommander_role(
        "ws-a",
        "kommander-workspace-admin",
        read_pods(),
        true,
    )));
    assert!(has(p.plan(), &m, "RoleBinding/late/portcullis:ws:a:admins"));
    p.apply(delete("KommanderRoleBinding", "ws-a", "admins"));
    assert!(
        !keys(p.plan(), &m)
            .iter()
            .any(|k| k.contains("portcullis:ws:a:admins"))
    );
}

#[test]
fn a_synced_role_without_a_project_role_is_copied_into_each_project() {
    let mut objects = fleet();
    objects.push(kommander_role("ws-a", "auditor", read_pods(), true));
    objects.push(kommander_binding(
        "ws-a",
        "audit",
        "auditor",
        vec![user("ann")],
    ));
    let p = planner(objects);
    let m = Target::Management;
    for ns in ["web", "api"] {
        assert!(has(
            p.plan(),
            &m,
            &format!("Role/{ns}/portcullis:ws:a:auditor")
        ));
        let rb = &p.plan().desired(&m)[&key(ObjectKind::RoleBinding, ns, "portcullis:ws:a:audit")];
        let RbacObject::RoleBinding(b) = &rb.object else {
            panic!()
        };
        assert_eq!(b.role_ref.name, "portcullis:ws:a:auditor");
    }
    // The mapping annotation names a project role instead.
    let mut r = kommander_role("ws-a", "auditor", read_pods(), true);
    if let portcullis_model::Resource::KommanderRole(k) = &mut r {
        k.metadata
            .annotations
            .insert("portcullis.dev/project-role".into(), "viewer".into());
    }
    let mut p = p;
    p.apply(upsert(r));
    assert!(!has(p.plan(), &m, "Role/web/portcullis:ws:a:auditor"));
    let rb = &p.plan().desired(&m)[&key(ObjectKind::RoleBinding, "web", "portcullis:ws:a:audit")];
    let RbacObject::RoleBinding(b) = &rb.object else {
        panic!()
    };
    assert_eq!(b.role_ref.name, "portcullis:project:viewer");
}

#[test]
fn placement_follows_cluster_labels_and_names() {
    let mut objects = fleet();
    objects.push(cluster_scope_role("web", "dev", read_pods()));
    let mut p = planner(objects);
    let role = "Role/web/portcullis:project:dev";
    assert!(has(p.plan(), &cluster_target("a1"), role));
    assert!(!has(p.plan(), &cluster_target("a2"), role));
    // a2 relabelled to prod: gains the project; a1 relabelled to dev: loses it.
    let d = p.apply(upsert(cluster("ws-a", "a2", &[("env", "prod")])));
    assert!(has(p.plan(), &cluster_target("a2"), role));
    assert!(
        d.clusters[&cluster_target("a2")]
            .upserts
            .iter()
            .any(|o| o.key.to_string() == role)
    );
    let d = p.apply(upsert(cluster("ws-a", "a1", &[("env", "dev")])));
    assert!(!has(p.plan(), &cluster_target("a1"), role));
    let gone = &d.clusters[&cluster_target("a1")].deletes;
    assert!(gone.iter().any(|k| k.to_string() == role));
    assert!(gone.iter().any(|k| k.to_string() == "Namespace/web"));
    // Placement by name as well.
    p.apply(upsert(project(
        "ws-a",
        "web",
        "web",
        &["a1"],
        Some("env=prod"),
    )));
    assert!(has(p.plan(), &cluster_target("a1"), role));
}

#[test]
fn a_cluster_moving_between_workspaces_loses_the_old_and_gains_the_new() {
    let mut objects = fleet();
    objects.push(cluster_scope_role("ws-a", "a-ops", read_pods()));
    objects.push(cluster_scope_role("ws-b", "b-ops", read_pods()));
    let mut p = planner(objects);
    p.apply(delete("Cluster", "ws-a", "a1"));
    let d = p.apply(upsert(cluster("ws-b", "a1", &[("env", "prod")])));
    let t = cluster_target("a1");
    assert!(has(p.plan(), &t, "ClusterRole/portcullis:ws:b:b-ops"));
    assert!(!has(p.plan(), &t, "ClusterRole/portcullis:ws:a:a-ops"));
    assert!(!has(p.plan(), &t, "Namespace/web"));
    assert!(
        d.clusters[&t]
            .upserts
            .iter()
            .any(|o| o.key.name == "portcullis:ws:b:b-ops")
    );
    assert_eq!(p.plan().workspace_of("a1"), Some("b"));
}

#[test]
fn a_new_cluster_with_a_taken_name_is_refused_and_the_first_keeps_it() {
    let mut objects = fleet();
    objects.push(cluster_scope_role("ws-a", "a-ops", read_pods()));
    let mut older = cluster("ws-a", "dup", &[]);
    older.meta_mut().creation_timestamp = Some("2026-01-01T00:00:00Z".into());
    let mut newer = cluster("ws-b", "dup", &[]);
    newer.meta_mut().creation_timestamp = Some("2026-02-01T00:00:00Z".into());
    objects.push(newer);
    objects.push(older);
    let p = planner(objects);
    assert_eq!(p.plan().workspace_of("dup"), Some("a"));
    assert!(
        p.plan()
            .conflicts()
            .iter()
            .any(|c| c.object == "Cluster/ws-b/dup")
    );
    // A cluster may not take the management plane's name.
    let p = planner(vec![
        workspace("a", "ws-a"),
        cluster("ws-a", "management", &[]),
    ]);
    assert!(!p.plan().has_target(&cluster_target("management")));
    assert!(
        p.plan()
            .conflicts()
            .iter()
            .any(|c| c.message.contains("management plane"))
    );
}

#[test]
fn a_workspace_taking_another_ones_namespace_grants_nothing() {
    let mut first = workspace("a", "shared");
    first.meta_mut().creation_timestamp = Some("2026-01-01T00:00:00Z".into());
    let mut second = workspace("b", "shared");
    second.meta_mut().creation_timestamp = Some("2026-03-01T00:00:00Z".into());
    let p = planner(vec![
        second,
        first,
        kommander_role("shared", "ops", read_pods(), false),
    ]);
    assert!(has(
        p.plan(),
        &Target::Management,
        "Role/shared/portcullis:ws:a:ops"
    ));
    assert!(
        !keys(p.plan(), &Target::Management)
            .iter()
            .any(|k| k.contains(":ws:b:"))
    );
    assert!(
        p.plan()
            .conflicts()
            .iter()
            .any(|c| c.object == "Workspace/b")
    );
}

#[test]
fn deleting_each_kind_removes_what_it_produced_where_it_was() {
    let mut objects = fleet();
    objects.push(kommander_role(GLOBAL, "g", read_pods(), false));
    objects.push(kommander_binding(GLOBAL, "g", "g", vec![user("ann")]));
    objects.push(cluster_scope_role("ws-a", "w", read_pods()));
    objects.push(cluster_scope_binding("ws-a", "w", "w", vec![user("ann")]));
    objects.push(cluster_scope_role("web", "p", read_pods()));
    objects.push(cluster_scope_binding("web", "p", "p", vec![user("ann")]));
    let mut p = planner(objects);
    let m = Target::Management;
    let a1 = cluster_target("a1");

    let d = p.apply(delete("KommanderRole", GLOBAL, "g"));
    assert_eq!(d.clusters.keys().collect::<Vec<_>>(), vec![&m]);
    assert_eq!(
        d.clusters[&m].deletes[0].to_string(),
        "ClusterRole/portcullis:global:g"
    );
    let d = p.apply(delete("KommanderRoleBinding", GLOBAL, "g"));
    assert_eq!(
        d.clusters[&m].deletes[0].to_string(),
        "ClusterRoleBinding/portcullis:global:g"
    );

    let d = p.apply(delete("ClusterScopeRoleBinding", "ws-a", "w"));
    let mut reached: Vec<_> = d.clusters.keys().map(ToString::to_string).collect();
    reached.sort();
    assert_eq!(reached, ["a1", "a2"]);
    let d = p.apply(delete("ClusterScopeRole", "ws-a", "w"));
    assert_eq!(d.clusters.len(), 2);

    // Deleting the project removes its namespace, role and binding from a1 only.
    let d = p.apply(delete("Project", "ws-a", "web"));
    assert_eq!(d.clusters[&a1].deletes.len(), 3);
    assert!(!d.clusters.contains_key(&cluster_target("a2")));
    // Deleting a cluster takes it out of the plan (detaching is part 2's business).
    let d = p.apply(delete("Cluster", "ws-b", "b1"));
    assert_eq!(d.targets.get(&cluster_target("b1")), Some(&None));
    assert!(!p.plan().has_target(&cluster_target("b1")));
    // Deleting a workspace: its clusters leave the plan, and the management plane loses its
    // workspace and project objects.
    p.apply(upsert(kommander_role("ws-a", "r", read_pods(), false)));
    let d = p.apply(delete("Workspace", "", "a"));
    assert!(!p.plan().has_target(&a1));
    assert!(
        d.clusters[&m]
            .deletes
            .iter()
            .any(|k| k.to_string() == "Role/ws-a/portcullis:ws:a:r")
    );
}

#[test]
fn project_scoped_cluster_roles_cannot_hold_non_resource_urls() {
    let mut objects = fleet();
    let mut rules = read_pods();
    rules.push(portcullis_model::PolicyRule {
        verbs: vec!["get".into()],
        non_resource_urls: vec!["/healthz".into()],
        ..Default::default()
    });
    objects.push(cluster_scope_role("web", "bad", rules));
    let p = planner(objects);
    assert!(!has(
        p.plan(),
        &cluster_target("a1"),
        "Role/web/portcullis:project:bad"
    ));
    let c = p.plan().conflicts();
    assert!(
        c.iter().any(
            |c| c.object == "ClusterScopeRole/web/bad" && c.message.contains("nonResourceURLs")
        ),
        "{c:?}"
    );
}

#[test]
fn long_names_are_cut_with_a_hash() {
    let long = "r".repeat(250);
    let mut objects = fleet();
    objects.push(cluster_scope_role("ws-a", &long, read_pods()));
    objects.push(cluster_scope_role("ws-a", &format!("{long}x"), read_pods()));
    let plan = planner(objects).plan().clone();
    let names: Vec<String> = plan
        .desired(&cluster_target("a1"))
        .keys()
        .filter(|k| k.name.contains("rrrr"))
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| n.len() == 253));
    assert_ne!(names[0], names[1]);
}

#[test]
fn changes_to_fields_that_do_not_matter_do_nothing() {
    let mut p = planner(fleet());
    let mut ws = workspace("a", "ws-a");
    if let portcullis_model::Resource::Workspace(w) = &mut ws {
        w.spec.display_name = "Team A".into();
    }
    assert!(p.apply(upsert(ws)).is_empty());
    // A role rewritten identically changes nothing.
    p.apply(upsert(cluster_scope_role(GLOBAL, "r", read_pods())));
    assert!(
        p.apply(upsert(cluster_scope_role(GLOBAL, "r", read_pods())))
            .is_empty()
    );
}

#[test]
fn explain_and_who_can_name_the_source() {
    let mut objects = fleet();
    objects.push(cluster_scope_role("ws-a", "reader", read_pods()));
    objects.push(cluster_scope_binding(
        "ws-a",
        "readers",
        "reader",
        vec![group("oidc:sre")],
    ));
    objects.push(cluster_scope_role(
        "web",
        "dev",
        vec![rule(&["*"], &["apps"], &["deployments"])],
    ));
    objects.push(cluster_scope_binding(
        "web",
        "devs",
        "dev",
        vec![user("bob")],
    ));
    let p = planner(objects);
    let index = portcullis_federation::FleetIndex::new(p.plan());
    let snap = index.load();
    let a = |user: &str, groups: &[&str], verb: &str, group: &str, resource: &str, ns: &str| {
        portcullis_rbac::Attributes {
            user: user.into(),
            groups: groups.iter().map(|s| (*s).into()).collect(),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    };
    let e = snap.explain(
        &cluster_target("a2"),
        &a("x", &["oidc:sre"], "list", "", "pods", "kube-system"),
    );
    assert!(e.allowed);
    assert_eq!(e.grants[0].scope, "Workspace a");
    assert_eq!(
        e.grants[0].binding_source.to_string(),
        "ClusterScopeRoleBinding/ws-a/readers"
    );
    assert_eq!(
        e.grants[0].role_source.as_ref().unwrap().to_string(),
        "ClusterScopeRole/ws-a/reader"
    );
    assert!(
        !snap
            .explain(
                &cluster_target("b1"),
                &a("x", &["oidc:sre"], "list", "", "pods", "")
            )
            .allowed
    );
    // bob may change deployments in `web` on a1 (placed), not on a2, not in another namespace.
    let bob = a("bob", &[], "update", "apps", "deployments", "web");
    assert!(snap.explain(&cluster_target("a1"), &bob).allowed);
    assert!(snap.authorize(&cluster_target("a1"), &bob).allowed);
    assert!(!snap.authorize(&cluster_target("a2"), &bob).allowed);
    assert!(
        !snap
            .authorize(
                &cluster_target("a1"),
                &a("bob", &[], "update", "apps", "deployments", "api")
            )
            .allowed
    );

    let w = snap.who_can(&a("", &[], "list", "", "pods", "web"));
    let on_a1: Vec<_> = w
        .on(&cluster_target("a1"))
        .map(|x| (x.name.clone(), x.source.to_string()))
        .collect();
    assert_eq!(
        on_a1,
        vec![(
            "oidc:sre".to_owned(),
            "ClusterScopeRoleBinding/ws-a/readers".to_owned()
        )]
    );
    assert!(w.on(&cluster_target("b1")).next().is_none());
    let w = snap.who_can(&a("", &[], "delete", "apps", "deployments", "web"));
    assert_eq!(
        w.targets
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["a1"]
    );
}

/// What a pulling agent receives is what was planned: every produced object (namespaces,
/// project Roles and RoleBindings, ClusterRoles and bindings) reads back from its JSON as the
/// same `Planned`, and a one-cluster plan of them desires exactly that set.
#[test]
fn planned_objects_read_back_from_json_and_make_a_one_cluster_plan() {
    let mut objects = fleet();
    objects.push(cluster_scope_role(GLOBAL, "reader", read_pods()));
    objects.push(cluster_scope_binding(
        GLOBAL,
        "readers",
        "reader",
        vec![group("devs")],
    ));
    objects.push(cluster_scope_role("ws-a", "ops", read_pods()));
    objects.push(cluster_scope_binding(
        "ws-a",
        "ops",
        "ops",
        vec![user("alice")],
    ));
    let planner = planner(objects);
    let target = cluster_target("a1");
    let desired = planner.plan().desired(&target);
    assert!(desired.len() >= 4, "{:?}", desired.keys());
    for p in desired.values() {
        let back = portcullis_federation::Planned::from_json(&p.object.to_json()).unwrap();
        assert_eq!(&back, p.as_ref());
    }
    let single =
        portcullis_federation::Plan::single_cluster("a1", desired.values().map(|p| (**p).clone()));
    assert_eq!(single.desired(&target), desired);
    assert_eq!(single.targets().collect::<Vec<_>>(), vec![&target]);
    assert!(
        portcullis_federation::Planned::from_json(&serde_json::json!({"kind": "Pod"})).is_err()
    );
}
