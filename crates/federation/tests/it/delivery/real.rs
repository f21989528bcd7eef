//! Delivery against two real kube-apiservers (v1.28.4 from `KUBEBUILDER_ASSETS`): server-side
//! apply and its field-manager conflicts, drift repair, a pre-existing object, cleanup — decided
//! by the real servers. Skipped when `KUBEBUILDER_ASSETS` is unset.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube_client::api::{DeleteParams, Patch, PatchParams, PostParams};
use portcullis_federation::delivery::{KubeCluster, Reconciler, StatusBoard};
use portcullis_federation::{ObjectKind, Target};
use portcullis_testkit::envtest::{Envtest, KubeApiServer};
use serde_json::json;

use super::{Connections, WAIT, api, config_for, desired, eventually, everything, get, managed};
use crate::fixtures::{
    GLOBAL, cluster, cluster_scope_binding, cluster_scope_role, group, planner, project, read_pods,
    workspace,
};

fn start() -> Option<KubeApiServer> {
    match KubeApiServer::start().unwrap() {
        Envtest::Started(s) => Some(s),
        Envtest::Skipped(why) => {
            eprintln!("{why}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_to_two_real_api_servers() {
    let (s1, s2) = tokio::join!(
        tokio::task::spawn_blocking(start),
        tokio::task::spawn_blocking(start)
    );
    let (Some(s1), Some(s2)) = (s1.unwrap(), s2.unwrap()) else {
        return;
    };
    let conns = Arc::new(Connections::default());
    let mut clients = BTreeMap::new();
    for (name, s) in [("a1", &s1), ("b1", &s2)] {
        let config = config_for(s.url(), s.ca_pem(), s.admin_token()).await;
        conns.set(name, config.clone());
        clients.insert(name, KubeCluster::new(name, config).unwrap());
    }
    let (a1, b1) = (&clients["a1"], &clients["b1"]);

    // b1 already has an object with a planned object's name, not portcullis's.
    api(b1, ObjectKind::ClusterRole, "")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "portcullis:global:reader"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let a1_before = everything(a1).await;
    let b1_before = everything(b1).await;

    let p = planner(vec![
        workspace("a", "ws-a"),
        workspace("b", "ws-b"),
        cluster("ws-a", "a1", &[("env", "prod")]),
        cluster("ws-b", "b1", &[("env", "prod")]),
        project("ws-a", "web", "web", &[], Some("env=prod")),
        cluster_scope_role(GLOBAL, "reader", read_pods()),
        cluster_scope_role(GLOBAL, "auditor", read_pods()),
        cluster_scope_binding(GLOBAL, "readers", "reader", vec![group("devs")]),
        cluster_scope_role("web", "dev", read_pods()),
        cluster_scope_binding("web", "devs", "dev", vec![group("devs")]),
    ]);
    let plan = Arc::new(p.plan().clone());
    let board = StatusBoard::new();
    let reconciler = Reconciler::start(
        super::test_config(),
        conns.clone(),
        plan.clone(),
        board.clone(),
        None,
    );

    // a1 holds exactly the plan; b1 all but the pre-existing object, which is reported.
    assert!(
        eventually(WAIT, || async { managed(a1).await == desired(&plan, "a1") }).await,
        "{:#?}",
        board.cluster("a1")
    );
    assert!(
        eventually(WAIT, || async {
            board.cluster("b1").is_some_and(|s| {
                s.last_error.is_none()
                    && s.conflicts().len() == 1
                    && s.in_sync_objects() + 1 == s.desired
            })
        })
        .await,
        "{:#?}",
        board.cluster("b1")
    );
    let b1_after = everything(b1).await;
    for (k, rv) in &b1_before {
        assert_eq!(b1_after.get(k), Some(rv), "{k} changed on b1");
    }
    let pre = get(b1, ObjectKind::ClusterRole, "", "portcullis:global:reader")
        .await
        .unwrap();
    assert!(pre["metadata"]["labels"].is_null(), "{pre}");
    assert_eq!(pre["rules"][0]["resources"], json!(["secrets"]));

    // The real server's field managers: portcullis applied, nobody else.
    let applied = get(a1, ObjectKind::ClusterRole, "", "portcullis:global:auditor")
        .await
        .unwrap();
    let managers: Vec<(String, String)> = applied["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(managers, [("portcullis".to_owned(), "Apply".to_owned())]);

    // A manual edit (`kubectl edit` is an Update by field manager kubectl-edit) is reverted.
    let roles = api(a1, ObjectKind::ClusterRole, "");
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
            get(a1, ObjectKind::ClusterRole, "", "portcullis:global:reader")
                .await
                .is_some_and(|v| v["rules"][0]["resources"] == json!(["pods"]))
        })
        .await,
        "{:#?}",
        board.cluster("a1")
    );
    // A manual deletion comes back.
    let rb = plan
        .desired(&Target::Cluster("a1".into()))
        .into_keys()
        .find(|k| k.kind == ObjectKind::RoleBinding)
        .unwrap();
    api(a1, ObjectKind::RoleBinding, &rb.namespace)
        .delete(&rb.name, &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            get(a1, ObjectKind::RoleBinding, &rb.namespace, &rb.name)
                .await
                .is_some()
        })
        .await
    );
    assert!(
        eventually(WAIT, || async { managed(a1).await == desired(&plan, "a1") }).await,
        "{:#?}",
        managed(a1).await
    );
    assert!(board.cluster("a1").unwrap().drift_repairs >= 2);

    // Another applier (server-side apply, forced, by its own field manager) takes `rules`:
    // portcullis's apply then conflicts, which is reported and never forced.
    roles
        .patch(
            "portcullis:global:auditor",
            &PatchParams::apply("other-tool").force(),
            &Patch::Apply(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "portcullis:global:auditor"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
            ),
        )
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            board.cluster("a1").is_some_and(|s| {
                s.conflicts().iter().any(|(k, why)| {
                    k.name == "portcullis:global:auditor" && why.contains("other-tool")
                })
            })
        })
        .await,
        "{:#?}",
        board.cluster("a1")
    );
    let taken = get(a1, ObjectKind::ClusterRole, "", "portcullis:global:auditor")
        .await
        .unwrap();
    assert_eq!(taken["rules"][0]["resources"], json!(["configmaps"]));

    // Cleanup: nothing of ours is left (the namespace portcullis created is Terminating: no
    // namespace controller runs), and nothing else changed.
    let report = reconciler.cleanup("a1").await.unwrap();
    assert!(!report.deleted.is_empty());
    assert!(managed(a1).await.is_empty(), "{:#?}", managed(a1).await);
    let a1_after = everything(a1).await;
    for (k, rv) in &a1_before {
        assert_eq!(a1_after.get(k), Some(rv), "{k} changed on a1");
    }
    let web = get(a1, ObjectKind::Namespace, "", "web").await;
    assert!(web.is_none_or(|w| !w["metadata"]["deletionTimestamp"].is_null()));
    reconciler.shutdown().await;
}
