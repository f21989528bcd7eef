//! Delivery from the management plane: clusters attached through `ClusterAttachment` (the
//! credentials sealed, never served; missing permissions reported from the cluster's own
//! SelfSubjectRulesReview), the plan applied to them by the reconciler, the board in each
//! Cluster's `status.conditions` and in `DeliveryStatusReview`, `ClusterDetachment` with
//! cleanup, an unreachable cluster's error, and the GitOps sink.

use std::future::Future;
use std::time::{Duration, Instant};

use portcullis_testkit::kube_apiserver::{Config as DoubleConfig, Double, UserInfo};
use serde_json::{Value, json};

use crate::support::{TestServer, client};

const V: &str = "/apis/portcullis.dev/v1alpha1";
const MANAGED: &str = "app.kubernetes.io/managed-by=portcullis";

async fn post(s: &TestServer, c: &reqwest::Client, path: &str, body: &Value) -> (u16, Value) {
    let r = c
        .post(format!("{}{V}{path}", s.url))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(s: &TestServer, c: &reqwest::Client, path: &str) -> (u16, String) {
    let r = c.get(format!("{}{V}{path}", s.url)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Polls `check` until it holds, at most 30 s.
async fn until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A workspace `ws` and a Global ClusterScopeRole with its binding to `alice`, which every
/// cluster of every workspace must hold.
async fn fleet(s: &TestServer, ws: &str) {
    let admin = s.admin();
    let g = "portcullis-global";
    for (path, o) in [
        (
            "/workspaces".to_owned(),
            json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "Workspace", "metadata": { "name": ws } }),
        ),
        (
            format!("/namespaces/{g}/clusterscoperoles"),
            json!({
                "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterScopeRole",
                "metadata": { "name": "pod-reader", "namespace": g },
                "rules": [{ "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"] }],
            }),
        ),
        (
            format!("/namespaces/{g}/clusterscoperolebindings"),
            json!({
                "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterScopeRoleBinding",
                "metadata": { "name": "alice-reads-pods", "namespace": g },
                "subjects": [{ "kind": "User", "name": "alice" }],
                "roleRef": { "apiGroup": "portcullis.dev", "kind": "ClusterScopeRole", "name": "pod-reader" },
            }),
        ),
    ] {
        let (code, body) = post(s, &admin, &path, &o).await;
        assert_eq!(code, 201, "{path}: {body}");
    }
}

fn attachment(name: &str, ws: &str, server: &str, ca: &str, token: &str, force: bool) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterAttachment",
        "spec": {
            "clusterName": name, "workspace": ws, "labels": { "env": "test" },
            "server": server, "certificateAuthorityData": ca, "token": token, "force": force,
        },
    })
}

/// Names of the objects of `plural` (an RBAC kind) carrying portcullis's managed-by label.
async fn managed(double: &Double, plural: &str) -> Vec<String> {
    let c = client(double.ca_pem(), None);
    let r = c
        .get(format!(
            "{}/apis/rbac.authorization.k8s.io/v1/{plural}?labelSelector={MANAGED}",
            double.url()
        ))
        .bearer_auth(double.admin_token())
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn status_of(s: &TestServer, name: &str) -> Value {
    let (code, body) = post(
        s,
        &s.admin(),
        "/deliverystatusreviews",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "DeliveryStatusReview", "spec": { "clusterName": name } }),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body["status"]["clusters"][0].clone()
}

fn condition(cluster: &Value, type_: &str) -> Option<(String, String)> {
    cluster["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

#[tokio::test]
async fn an_attached_cluster_gets_its_plan_and_a_detach_with_cleanup_leaves_nothing_of_ours() {
    let double = Double::start(DoubleConfig::new()).await.unwrap();
    let s = TestServer::start().await;
    let admin = s.admin();
    fleet(&s, "ws-a").await;
    // Not ours: never touched, whatever happens.
    double
        .seed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": "local-role" }, "rules": [],
        }))
        .unwrap();

    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment(
            "edge-1",
            "ws-a",
            double.url(),
            double.ca_pem(),
            double.admin_token(),
            false,
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["attached"], true);
    assert!(
        !body.to_string().contains(double.admin_token()),
        "the answer carries the credential: {body}"
    );

    // The credential is sealed: no read of the Cluster (or of anything) shows it.
    let (code, stored) = get(&s, &admin, "/namespaces/ws-a/clusters/edge-1").await;
    assert_eq!(code, 200, "{stored}");
    assert!(!stored.contains(double.admin_token()), "{stored}");
    let cluster: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        cluster["spec"]["credentialsRef"]["name"],
        "cluster-credentials.ws-a.edge-1"
    );
    assert_eq!(cluster["spec"]["apiServerURL"], double.url());
    assert_eq!(cluster["metadata"]["labels"]["env"], "test");

    // The Global binding reaches the cluster.
    until("the Global role and binding reach the cluster", || async {
        managed(&double, "clusterroles")
            .await
            .contains(&"portcullis:global:pod-reader".to_owned())
            && managed(&double, "clusterrolebindings").await
                == ["portcullis:global:alice-reads-pods"]
    })
    .await;
    // The board, in the Cluster's conditions and in the status review.
    until("the Cluster's status says Synced", || async {
        let (_, text) = get(&s, &admin, "/namespaces/ws-a/clusters/edge-1").await;
        let c: Value = serde_json::from_str(&text).unwrap_or_default();
        condition(&c, "Synced").is_some_and(|(s, _)| s == "True")
            && condition(&c, "Reachable").is_some_and(|(s, _)| s == "True")
            && condition(&c, "Conflicts").is_some_and(|(s, _)| s == "False")
    })
    .await;
    let st = status_of(&s, "edge-1").await;
    assert_eq!(st["workspace"], "ws-a", "{st}");
    assert_eq!(st["synced"], true, "{st}");
    assert_eq!(st["desired"], st["inSyncObjects"], "{st}");
    assert!(st["lastSync"].is_string(), "{st}");
    // Per source object: what it produced there, with the applied hash.
    let objects = st["objects"].as_array().unwrap();
    let binding = objects
        .iter()
        .find(|o| o["object"] == "ClusterRoleBinding/portcullis:global:alice-reads-pods")
        .unwrap();
    assert_eq!(
        binding["source"],
        "ClusterScopeRoleBinding/portcullis-global/alice-reads-pods"
    );
    assert!(binding["appliedHash"].is_string(), "{binding}");
    // And in the source object's own status.
    until(
        "the binding's status says Synced on its one cluster",
        || async {
            let (_, text) = get(
                &s,
                &admin,
                "/namespaces/portcullis-global/clusterscoperolebindings/alice-reads-pods",
            )
            .await;
            let b: Value = serde_json::from_str(&text).unwrap_or_default();
            b["status"]["clusters"] == 1
                && b["status"]["syncedClusters"] == 1
                && condition(&b, "Synced").is_some_and(|(s, _)| s == "True")
        },
    )
    .await;
    // Per source object, across clusters.
    let (code, body) = post(
        &s,
        &admin,
        "/deliverystatusreviews",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "DeliveryStatusReview",
                 "spec": { "source": "ClusterScopeRoleBinding/portcullis-global/alice-reads-pods" } }),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let by_source = body["status"]["source"].as_array().unwrap();
    assert_eq!(by_source.len(), 1, "{body}");
    assert_eq!(by_source[0]["cluster"], "edge-1");
    assert_eq!(by_source[0]["appliedHash"], binding["appliedHash"]);
    assert_eq!(by_source[0]["driftRepairs"], 0);
    let ours = managed(&double, "clusterroles").await.len()
        + managed(&double, "clusterrolebindings").await.len();
    // A second attach of the same name is refused.
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment(
            "edge-1",
            "ws-a",
            double.url(),
            double.ca_pem(),
            double.admin_token(),
            false,
        ),
    )
    .await;
    assert_eq!(code, 409, "{body}");

    // The metrics of the management plane include delivery's.
    let metrics = admin
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("edge-1"), "no per-cluster delivery metric");

    let (code, body) = post(
        &s,
        &admin,
        "/clusterdetachments",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterDetachment", "spec": { "clusterName": "edge-1", "cleanup": true } }),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["deleted"].as_array().unwrap().len(), ours);
    assert!(managed(&double, "clusterroles").await.is_empty());
    assert!(managed(&double, "clusterrolebindings").await.is_empty());
    assert!(double.get("clusterroles", "", "local-role").is_some());
    assert_eq!(
        get(&s, &admin, "/namespaces/ws-a/clusters/edge-1").await.0,
        404
    );
    // Attached again under the same name: delivered again.
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment(
            "edge-1",
            "ws-a",
            double.url(),
            double.ca_pem(),
            double.admin_token(),
            false,
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    until("the plan is delivered again after a re-attach", || async {
        managed(&double, "clusterrolebindings").await.len() == 1
    })
    .await;
    // Detached without cleanup: the objects stay.
    let (code, body) = post(
        &s,
        &admin,
        "/clusterdetachments",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterDetachment", "spec": { "clusterName": "edge-1" } }),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(managed(&double, "clusterrolebindings").await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn missing_permissions_are_reported_and_refused_unless_forced() {
    let double = Double::start(DoubleConfig::new().token("weak-token", UserInfo::new("weak", &[])))
        .await
        .unwrap();
    let s = TestServer::start().await;
    let admin = s.admin();
    fleet(&s, "ws-b").await;
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment(
            "weak-1",
            "ws-b",
            double.url(),
            double.ca_pem(),
            "weak-token",
            false,
        ),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let message = body["message"].as_str().unwrap();
    for needed in [
        "create, get, list, watch, patch, delete on clusterroles.rbac.authorization.k8s.io",
        "create, get, list, watch, patch, delete on rolebindings.rbac.authorization.k8s.io",
        "create, get, list, watch, patch, delete on namespaces",
        "escalate, bind on clusterroles.rbac.authorization.k8s.io",
        "--force",
    ] {
        assert!(message.contains(needed), "{needed:?} not in {message}");
    }
    // Nothing was stored.
    assert_eq!(
        get(&s, &admin, "/namespaces/ws-b/clusters/weak-1").await.0,
        404
    );
    // Forced: attached, and the failure shows in its status.
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment(
            "weak-1",
            "ws-b",
            double.url(),
            double.ca_pem(),
            "weak-token",
            true,
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(!body["status"]["warnings"].as_array().unwrap().is_empty());
    until("the forbidden writes show in the status", || async {
        let st = status_of(&s, "weak-1").await;
        st["synced"] == false && st["lastError"].as_str().is_some_and(|e| !e.is_empty())
            || st["objects"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["lastError"].is_string()))
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn an_unreachable_cluster_is_refused_and_forced_shows_its_error_in_status() {
    let double = Double::start(DoubleConfig::new()).await.unwrap();
    let s = TestServer::start().await;
    let admin = s.admin();
    fleet(&s, "ws-c").await;
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = format!("https://127.0.0.1:{port}");
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment("down-1", "ws-c", &server, double.ca_pem(), "t", false),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not reachable"),
        "{body}"
    );
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment("down-1", "ws-c", &server, double.ca_pem(), "t", true),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    until(
        "the Cluster's Reachable condition is False with the error",
        || async {
            let (_, text) = get(&s, &admin, "/namespaces/ws-c/clusters/down-1").await;
            let c: Value = serde_json::from_str(&text).unwrap_or_default();
            condition(&c, "Reachable").is_some_and(|(s, m)| s == "False" && !m.is_empty())
        },
    )
    .await;
    let st = status_of(&s, "down-1").await;
    assert_eq!(st["reachable"], false, "{st}");
    // Cleanup of a cluster that cannot be reached keeps the Cluster, and says so.
    let (code, body) = post(
        &s,
        &admin,
        "/clusterdetachments",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterDetachment", "spec": { "clusterName": "down-1", "cleanup": true } }),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        get(&s, &admin, "/namespaces/ws-c/clusters/down-1").await.0,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn attaching_into_a_workspace_needs_create_on_its_clusters() {
    let double = Double::start(DoubleConfig::new()).await.unwrap();
    let s = TestServer::start().await;
    fleet(&s, "ws-d").await;
    let bob = s.user("bob", &[]);
    let (code, body) = post(
        &s,
        &bob,
        "/clusterattachments",
        &attachment(
            "bobs",
            "ws-d",
            double.url(),
            double.ca_pem(),
            double.admin_token(),
            false,
        ),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("needs create on clusters.portcullis.dev in namespace \"ws-d\""),
        "{body}"
    );
    // And bob sees no cluster in the status review.
    let (code, body) = post(
        &s,
        &bob,
        "/deliverystatusreviews",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "DeliveryStatusReview" }),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["clusters"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn the_gitops_sink_writes_each_clusters_objects_instead_of_applying() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_path_buf();
    let s = TestServer::start_with(|c| {
        c.delivery.sink = portcullis_server::config::Sink::Gitops;
        c.delivery.gitops_dir = Some(dir);
    })
    .await;
    fleet(&s, "ws-g").await;
    let cluster = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "git-1", "namespace": "ws-g" },
        "spec": { "apiServerURL": "https://git-1.example.com:6443" },
    });
    let (code, body) = post(&s, &s.admin(), "/namespaces/ws-g/clusters", &cluster).await;
    assert_eq!(code, 201, "{body}");
    let kustomization = out.path().join("git-1/kustomization.yaml");
    until("the cluster's directory is written", || async {
        std::fs::read_to_string(&kustomization)
            .is_ok_and(|k| k.contains("clusterrole") && k.contains("clusterrolebinding"))
    })
    .await;
    s.stop().await;
}

/// Under `KUBEBUILDER_ASSETS`: a real kube-apiserver attached (its own SelfSubjectRulesReview
/// decides the permission check), a Global binding applied by it, and removed by detach
/// --cleanup.
#[tokio::test]
async fn a_real_kube_apiserver_is_attached_gets_a_global_binding_and_is_cleaned_up() {
    use portcullis_testkit::envtest::{Envtest, KubeApiServer};
    let server = match tokio::task::spawn_blocking(KubeApiServer::start)
        .await
        .unwrap()
        .unwrap()
    {
        Envtest::Started(s) => s,
        Envtest::Skipped(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let s = TestServer::start().await;
    let admin = s.admin();
    fleet(&s, "ws-r").await;
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment(
            "real-1",
            "ws-r",
            server.url(),
            server.ca_pem(),
            server.admin_token(),
            false,
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(
        body["status"]["kubernetesVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1."),
        "{body}"
    );
    let c = client(server.ca_pem(), None);
    let binding = format!(
        "{}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/portcullis:global:alice-reads-pods",
        server.url()
    );
    let status = || async {
        c.get(&binding)
            .bearer_auth(server.admin_token())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    until("the Global binding is on the real API server", || async {
        status().await == 200
    })
    .await;
    let (code, body) = post(
        &s,
        &admin,
        "/clusterdetachments",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterDetachment", "spec": { "clusterName": "real-1", "cleanup": true } }),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    // Deletion of RBAC objects has no finalizers: gone at once.
    assert_eq!(status().await, 404);
    s.stop().await;
}

/// Pull mode: a cluster attached with `pull` gets a client certificate that reads only its own
/// desired set; an agent's puller applies that set with the same sink, and ends up with the same
/// objects as a cluster the management plane pushes to, changes included.
#[tokio::test]
async fn a_pulling_agent_applies_the_same_set_as_push() {
    let pushed = Double::start(DoubleConfig::new()).await.unwrap();
    let pulled = Double::start(DoubleConfig::new()).await.unwrap();
    let s = TestServer::start().await;
    let admin = s.admin();
    fleet(&s, "ws-p").await;
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &attachment(
            "push-1",
            "ws-p",
            pushed.url(),
            pushed.ca_pem(),
            pushed.admin_token(),
            false,
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(
        &s,
        &admin,
        "/clusterattachments",
        &json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterAttachment",
            "spec": {
                "clusterName": "pull-1", "workspace": "ws-p", "pull": true,
                "server": pulled.url(), "certificateAuthorityData": pulled.ca_pem(),
            },
        }),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let p = &body["status"]["pull"];
    let (cert, key) = (
        p["certificate"].as_str().unwrap(),
        p["key"].as_str().unwrap(),
    );
    // The pull credential reads its own set only.
    let puller_client = client(&s.ca_pem(), Some((cert.as_bytes(), key.as_bytes())));
    let desired = |name: &str| json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "DesiredSetReview", "spec": { "clusterName": name } });
    let (code, body) = post(&s, &puller_client, "/desiredsetreviews", &desired("push-1")).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = post(&s, &puller_client, "/desiredsetreviews", &desired("pull-1")).await;
    assert_eq!(code, 201, "{body}");
    // Nor anything else of the management API.
    let (code, _) = get(&s, &puller_client, "/namespaces/ws-p/clusters").await;
    assert_eq!(code, 403);

    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("credential.pem");
    std::fs::write(&credential, format!("{cert}{key}")).unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, p["caCertificate"].as_str().unwrap()).unwrap();
    let upstream = dir.path().join("upstream.kubeconfig");
    std::fs::write(
        &upstream,
        pulled.kubeconfig(pulled.admin_token(), "default"),
    )
    .unwrap();
    let config = portcullis_server::pull::PullConfig {
        management_url: s.url.clone(),
        credential_file: credential,
        ca_file: ca,
        interval_seconds: 1,
    };
    let upstream = portcullis_server::pull::upstream_config(Some(&upstream), None)
        .await
        .unwrap();
    let puller = portcullis_server::pull::Puller::start("pull-1", &config, upstream)
        .await
        .unwrap();

    let same = || async {
        let (a, b) = (
            managed(&pushed, "clusterrolebindings").await,
            managed(&pulled, "clusterrolebindings").await,
        );
        let (c, d) = (
            managed(&pushed, "clusterroles").await,
            managed(&pulled, "clusterroles").await,
        );
        (a == b && c == d, a, c)
    };
    until(
        "the pulled cluster holds what the pushed one does",
        || async {
            let (equal, bindings, roles) = same().await;
            equal && bindings == ["portcullis:global:alice-reads-pods"] && !roles.is_empty()
        },
    )
    .await;
    let st = status_of(&s, "pull-1").await;
    assert_eq!(st["sink"], "pull", "{st}");
    assert!(st["lastSync"].is_string(), "{st}");
    assert!(puller.board.cluster("pull-1").unwrap().in_sync());

    // A change reaches both: the Global binding deleted.
    let r = admin
        .delete(format!(
            "{}{V}/namespaces/portcullis-global/clusterscoperolebindings/alice-reads-pods",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    until("the deletion reaches both clusters", || async {
        let (equal, bindings, _) = same().await;
        equal && bindings.is_empty()
    })
    .await;
    // Cleanup of a pulling cluster is the cluster's to do: refused, saying how.
    let (code, body) = post(
        &s,
        &admin,
        "/clusterdetachments",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterDetachment", "spec": { "clusterName": "pull-1", "cleanup": true } }),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("-l app.kubernetes.io/managed-by=portcullis"),
        "{body}"
    );
    // Detached: its credential reads nothing any more.
    let (code, body) = post(
        &s,
        &admin,
        "/clusterdetachments",
        &json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterDetachment", "spec": { "clusterName": "pull-1" } }),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, _) = post(&s, &puller_client, "/desiredsetreviews", &desired("pull-1")).await;
    assert_eq!(code, 403);
    puller.task.abort();
    s.stop().await;
}
