//! The reconciler and the Kubernetes sink against kube-apiserver doubles (one per cluster).

use std::collections::BTreeSet;
use std::sync::Arc;

use kube_client::api::{DeleteParams, Patch, PatchParams};
use portcullis_federation::ObjectKind;
use portcullis_federation::delivery::{Reconciler, StatusBoard};
use serde_json::json;

use super::{
    Harness, WAIT, api, config_for, desired, eventually, everything, get, managed, test_config,
};
use crate::fixtures::{
    GLOBAL, cluster, cluster_scope_binding, cluster_scope_role, delete, fleet, group, read_pods,
    rule, upsert,
};

const CLUSTERS: &[&str] = &["a1", "a2", "b1"];

/// Whether `cluster` holds a managed object whose key contains `needle`.
async fn holds(h: &Harness, cluster: &str, needle: &str) -> bool {
    managed(h.client(cluster))
        .await
        .keys()
        .any(|k| k.contains(needle))
}

async fn where_held(h: &Harness, needle: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for c in CLUSTERS {
        if holds(h, c, needle).await {
            out.push(*c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_at_each_scope_reach_exactly_the_right_clusters() {
    let mut h = Harness::start(fleet(), CLUSTERS).await;
    h.wait_converged().await;
    // Project namespaces where their projects are placed (web: env=prod → a1; api: a2).
    assert_eq!(where_held(&h, "Namespace/web").await, ["a1"]);
    assert_eq!(where_held(&h, "Namespace/api").await, ["a2"]);

    // Create.
    h.change(upsert(cluster_scope_role(GLOBAL, "reader", read_pods())));
    h.change(upsert(cluster_scope_binding(
        GLOBAL,
        "readers",
        "reader",
        vec![group("devs")],
    )));
    h.change(upsert(cluster_scope_role("ws-a", "ops", read_pods())));
    h.change(upsert(cluster_scope_role("web", "dev", read_pods())));
    h.wait_converged().await;
    assert_eq!(
        where_held(&h, "ClusterRole/portcullis:global:reader").await,
        CLUSTERS
    );
    assert_eq!(
        where_held(&h, "ClusterRoleBinding/portcullis:global:readers").await,
        CLUSTERS
    );
    assert_eq!(
        where_held(&h, "ClusterRole/portcullis:ws:a:ops").await,
        ["a1", "a2"]
    );
    assert_eq!(where_held(&h, "Role/web/").await, ["a1"]);

    // Update: the new content everywhere the object is.
    let before = managed(h.client("a2")).await;
    h.change(upsert(cluster_scope_role(
        GLOBAL,
        "reader",
        vec![rule(&["get"], &[""], &["pods", "services"])],
    )));
    h.change(upsert(cluster_scope_role(
        "ws-a",
        "ops",
        vec![rule(&["*"], &["apps"], &["deployments"])],
    )));
    h.wait_converged().await;
    let after = managed(h.client("a2")).await;
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        changed,
        [
            "ClusterRole/portcullis:global:reader",
            "ClusterRole/portcullis:ws:a:ops"
        ]
    );
    let live = get(
        h.client("b1"),
        ObjectKind::ClusterRole,
        "",
        "portcullis:global:reader",
    )
    .await
    .unwrap();
    assert_eq!(live["rules"][0]["resources"], json!(["pods", "services"]));

    // Delete: gone everywhere, and only it.
    h.change(delete("ClusterScopeRoleBinding", GLOBAL, "readers"));
    h.change(delete("ClusterScopeRole", "ws-a", "ops"));
    h.change(delete("ClusterScopeRole", "web", "dev"));
    h.wait_converged().await;
    assert!(where_held(&h, "portcullis:global:readers").await.is_empty());
    assert!(where_held(&h, "ws:a:ops").await.is_empty());
    assert!(where_held(&h, "Role/web/").await.is_empty());
    assert_eq!(
        where_held(&h, "ClusterRole/portcullis:global:reader").await,
        CLUSTERS
    );

    // Status: every cluster synced, with its objects' hashes.
    for c in CLUSTERS {
        let s = h.board.cluster(c).unwrap();
        assert!(s.in_sync(), "{c}: {s:#?}");
        assert_eq!(s.desired, desired(h.planner.plan(), c).len());
        let conditions = s.conditions();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Synced" && c.status == "True")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_moved_to_another_workspace_loses_the_old_objects_and_gains_the_new() {
    let mut objects = fleet();
    objects.push(cluster_scope_role("ws-a", "a-ops", read_pods()));
    objects.push(cluster_scope_role("ws-b", "b-ops", read_pods()));
    let mut h = Harness::start(objects, CLUSTERS).await;
    h.wait_converged().await;
    assert!(holds(&h, "a2", "ws:a:a-ops").await);
    assert!(holds(&h, "a2", "Namespace/api").await);

    h.change(delete("Cluster", "ws-a", "a2"));
    h.change(upsert(cluster("ws-b", "a2", &[("env", "dev")])));
    h.wait_converged().await;
    assert!(!holds(&h, "a2", "ws:a:").await);
    assert!(holds(&h, "a2", "ClusterRole/portcullis:ws:b:b-ops").await);
    // The project namespace portcullis created there went with the old workspace.
    assert!(!holds(&h, "a2", "Namespace/api").await);
    assert!(holds(&h, "a1", "ws:a:a-ops").await);
    assert!(!holds(&h, "b1", "ws:a:").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_deletion_and_edit_are_repaired_and_a_paused_object_is_left_alone() {
    let mut objects = fleet();
    objects.push(cluster_scope_role(GLOBAL, "reader", read_pods()));
    objects.push(cluster_scope_role(GLOBAL, "auditor", read_pods()));
    objects.push(cluster_scope_binding(
        GLOBAL,
        "readers",
        "reader",
        vec![group("devs")],
    ));
    let h = Harness::start(objects, CLUSTERS).await;
    h.wait_converged().await;
    let a1 = h.client("a1");
    let roles = api(a1, ObjectKind::ClusterRole, "");
    let rules_of = |v: Option<serde_json::Value>| v.map(|v| v["rules"].clone());
    let planned_rules =
        rules_of(get(a1, ObjectKind::ClusterRole, "", "portcullis:global:reader").await);

    // A manual deletion comes back.
    roles
        .delete("portcullis:global:reader", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            get(a1, ObjectKind::ClusterRole, "", "portcullis:global:reader")
                .await
                .is_some()
        })
        .await
    );
    h.wait_converged().await;

    // A manual edit (an Update by another field manager, as `kubectl edit` makes) is reverted.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    roles
        .patch(
            "portcullis:global:reader",
            &edit,
            &Patch::Merge(
                json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
            ),
        )
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            rules_of(get(a1, ObjectKind::ClusterRole, "", "portcullis:global:reader").await)
                == planned_rules
        })
        .await,
        "the edit was not reverted: {:#?}",
        h.board.cluster("a1")
    );
    // The board counts a repair when its pass ends, which may be just after the object is back.
    assert!(
        eventually(WAIT, || async {
            h.board.cluster("a1").is_some_and(|c| c.drift_repairs >= 2)
        })
        .await,
        "{:#?}",
        h.board.cluster("a1")
    );

    // Paused: the edit stays.
    roles
        .patch(
            "portcullis:global:auditor",
            &edit,
            &Patch::Merge(json!({
                "metadata": {"annotations": {"portcullis.dev/paused": "true"}},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            })),
        )
        .await
        .unwrap();
    // Another edit, repaired: a pass has run since the pause.
    api(a1, ObjectKind::ClusterRoleBinding, "")
        .delete("portcullis:global:readers", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_converged().await;
    assert!(
        eventually(WAIT, || async {
            h.board
                .cluster("a1")
                .unwrap()
                .objects
                .iter()
                .any(|(k, o)| k.name == "portcullis:global:auditor" && o.paused)
        })
        .await
    );
    let auditor = get(a1, ObjectKind::ClusterRole, "", "portcullis:global:auditor")
        .await
        .unwrap();
    assert_eq!(auditor["rules"][0]["verbs"], json!(["*"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_existing_and_unlabelled_objects_are_never_taken_over_changed_or_deleted() {
    let (conns, doubles, clients) = Harness::doubles(CLUSTERS).await;
    let d = &doubles["a1"];
    // An object with a planned object's name, one with portcullis's prefix that is not
    // planned, and the project namespace `web` with a Role of the team's own.
    d.seed(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "portcullis:global:reader"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
    )
    .unwrap();
    d.seed(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "portcullis:global:stale", "labels": {"team": "x"}},
        "rules": []}),
    )
    .unwrap();
    d.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}))
        .unwrap();
    d.seed(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "team-role", "namespace": "web"}, "rules": []}),
    )
    .unwrap();
    let before = everything(&clients["a1"]).await;

    let mut objects = fleet();
    objects.push(cluster_scope_role(GLOBAL, "reader", read_pods()));
    objects.push(cluster_scope_role("web", "dev", read_pods()));
    let mut h = Harness::start_on(objects, conns, doubles, clients);
    let a1 = h.client("a1");
    let done = eventually(WAIT, || async {
        h.board.cluster("a1").is_some_and(|s| {
            s.last_error.is_none()
                && s.conflicts().len() == 1
                && s.in_sync_objects() + 1 == s.desired
        })
    })
    .await;
    assert!(done, "{:#?}", h.board.cluster("a1"));
    let s = h.board.cluster("a1").unwrap();
    let (key, why) = s.conflicts()[0];
    assert_eq!(key.name, "portcullis:global:reader");
    assert!(why.contains("pre-existing"), "{why}");
    assert!(
        s.conditions()
            .iter()
            .any(|c| c.type_ == "Conflicts" && c.status == "True")
    );

    // Every object that was there is as it was (same resourceVersion), the namespace included.
    let after = everything(a1).await;
    for (k, rv) in &before {
        assert_eq!(after.get(k), Some(rv), "{k} changed or went");
    }
    // The planned Role went into the existing namespace, which portcullis did not label.
    assert!(holds(&h, "a1", "Role/web/").await);
    assert!(!holds(&h, "a1", "Namespace/web").await);
    // The other clusters got the role.
    assert!(holds(&h, "a2", "ClusterRole/portcullis:global:reader").await);

    // The project goes: its Role goes, the namespace (not portcullis's) stays.
    h.change(delete("Project", "ws-a", "web"));
    assert!(eventually(WAIT, || async { !holds(&h, "a1", "Role/web/").await }).await);
    let after = everything(h.client("a1")).await;
    for (k, rv) in &before {
        assert_eq!(after.get(k), Some(rv), "{k} changed or went");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_of_a_cluster_leaves_nothing_of_ours_and_nothing_else_touched() {
    let mut objects = fleet();
    objects.push(cluster_scope_role(GLOBAL, "reader", read_pods()));
    objects.push(cluster_scope_role("ws-a", "ops", read_pods()));
    objects.push(cluster_scope_role("web", "dev", read_pods()));
    let mut h = Harness::start(objects, CLUSTERS).await;
    h.wait_converged().await;
    let a1 = h.client("a1");
    let ours: BTreeSet<String> = managed(a1).await.into_keys().collect();
    assert!(ours.len() >= 4, "{ours:?}");
    let theirs: Vec<(String, String)> = everything(a1)
        .await
        .into_iter()
        .filter(|(k, _)| !ours.contains(k))
        .collect();

    let report = h.reconciler.cleanup("a1").await.unwrap();
    assert_eq!(report.deleted.len(), ours.len());
    assert!(managed(a1).await.is_empty());
    let after = everything(a1).await;
    for (k, rv) in &theirs {
        assert_eq!(after.get(k), Some(rv), "{k} changed or went");
    }
    assert!(h.board.cluster("a1").is_none());

    // Delivery to the others goes on; a1 stays clean.
    h.change(upsert(cluster_scope_role(GLOBAL, "auditor", read_pods())));
    assert!(
        eventually(WAIT, || async {
            holds(&h, "a2", "portcullis:global:auditor").await
                && holds(&h, "b1", "portcullis:global:auditor").await
        })
        .await
    );
    assert!(managed(h.client("a1")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_shows_its_error_does_not_block_the_others_and_catches_up() {
    let (conns, doubles, clients) = Harness::doubles(CLUSTERS).await;
    // b1's address first points at a closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let real = config_for(
        doubles["b1"].url(),
        doubles["b1"].ca_pem(),
        doubles["b1"].admin_token(),
    )
    .await;
    conns.set(
        "b1",
        config_for(
            &format!("https://127.0.0.1:{closed}"),
            doubles["b1"].ca_pem(),
            doubles["b1"].admin_token(),
        )
        .await,
    );
    let mut objects = fleet();
    objects.push(cluster_scope_role(GLOBAL, "reader", read_pods()));
    objects.push(cluster_scope_role(GLOBAL, "old", read_pods()));
    let mut h = Harness::start_on(objects, conns.clone(), doubles, clients);
    assert!(
        eventually(WAIT, || async {
            h.board
                .cluster("b1")
                .is_some_and(|s| s.last_error.is_some() && s.consecutive_failures >= 2)
        })
        .await
    );
    let s = h.board.cluster("b1").unwrap();
    assert!(
        s.conditions()
            .iter()
            .any(|c| c.type_ == "Reachable" && c.status == "False"),
        "{s:#?}"
    );
    // The others are delivered to, deletions included.
    assert!(eventually(WAIT, || async { holds(&h, "a1", "global:old").await }).await);
    h.change(delete("ClusterScopeRole", GLOBAL, "old"));
    assert!(
        eventually(WAIT, || async {
            !holds(&h, "a1", "global:old").await
                && !holds(&h, "a2", "global:old").await
                && holds(&h, "a2", "global:reader").await
        })
        .await
    );
    assert!(managed(h.client("b1")).await.is_empty());

    // It comes back: it catches up.
    conns.set("b1", real);
    h.wait_converged().await;
    assert!(
        eventually(WAIT, || async {
            h.board.cluster("b1").is_some_and(|s| s.in_sync())
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_sync_converges_without_duplicate_or_lost_work() {
    let mut objects = fleet();
    for i in 0..150 {
        objects.push(cluster_scope_role(GLOBAL, &format!("r{i:03}"), read_pods()));
    }
    let (conns, doubles, clients) = Harness::doubles(CLUSTERS).await;
    let planner = crate::fixtures::planner(objects);
    let plan = Arc::new(planner.plan().clone());
    let want = desired(&plan, "a1").len();
    let mut config = test_config();
    config.concurrency = 1;
    let first = Reconciler::start(
        config.clone(),
        conns.clone(),
        plan.clone(),
        StatusBoard::new(),
        None,
    );
    // Stop it once some, but not all, of a1's objects are there.
    let a1 = &clients["a1"];
    assert!(
        eventually(WAIT, || async {
            let n = managed(a1).await.len();
            n >= 5
        })
        .await
    );
    first.shutdown().await;
    let mut missing = 0;
    for (c, client) in &clients {
        let held = managed(client).await;
        let wanted = desired(&plan, c);
        missing += wanted
            .iter()
            .filter(|(k, v)| held.get(*k) != Some(v))
            .count();
        doubles[c].clear_requests();
    }
    assert!(
        missing > 0,
        "the first reconciler finished before it was stopped"
    );
    assert!(missing < want * 3);

    let board = StatusBoard::new();
    let second = Reconciler::start(config, conns, plan.clone(), board.clone(), None);
    for (c, client) in &clients {
        assert!(
            eventually(WAIT, || async {
                managed(client).await == desired(&plan, c)
            })
            .await,
            "{c}"
        );
    }
    // Each object that was missing was applied once; nothing already there was applied again.
    let mut applied = Vec::new();
    for (c, d) in &doubles {
        for r in d.requests() {
            if r.method == "PATCH"
                && r.header("content-type")
                    .is_some_and(|t| t.starts_with("application/apply-patch"))
            {
                applied.push(format!("{c}{}", r.path));
            }
        }
    }
    let unique: BTreeSet<&String> = applied.iter().collect();
    assert_eq!(unique.len(), applied.len(), "applied twice: {applied:?}");
    assert!(applied.len() <= missing, "{} > {missing}", applied.len());
    assert!(!applied.is_empty());
    assert!(
        eventually(WAIT, || async {
            ["a1", "a2", "b1"]
                .iter()
                .all(|c| board.cluster(c).is_some_and(|s| s.in_sync()))
        })
        .await
    );
    drop(second);
}
