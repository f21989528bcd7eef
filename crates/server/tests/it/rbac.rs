//! The management API is authorized by the RBAC engine over the management plane's own RBAC
//! objects: `portcullis:admins` through a bootstrap binding, everyone else through bindings an
//! admin writes, with changes taking effect without a restart.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::TestServer;

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

async fn status_of(c: &reqwest::Client, url: String) -> u16 {
    c.get(url).send().await.unwrap().status().as_u16()
}

/// Polls until `f` returns the wanted status (policy changes apply asynchronously).
async fn eventually(want: u16, mut f: impl AsyncFnMut() -> u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = f().await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn admins_are_bound_to_cluster_admin_by_a_bootstrap_binding() {
    let s = TestServer::start().await;
    let b: Value = s
        .admin()
        .get(format!(
            "{}{RBAC}/clusterrolebindings/portcullis:admins",
            s.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["roleRef"]["name"], "cluster-admin");
    assert_eq!(b["subjects"][0]["name"], "portcullis:admins");
    // The upstream bootstrap roles are there too.
    for role in ["cluster-admin", "admin", "edit", "view", "system:discovery"] {
        assert_eq!(
            status_of(&s.admin(), format!("{}{RBAC}/clusterroles/{role}", s.url)).await,
            200,
            "{role}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn authenticated_users_get_discovery_but_nothing_else_until_bound() {
    let s = TestServer::start().await;
    let bob = s.user("bob", &["devs"]);
    assert_eq!(
        status_of(&bob, format!("{}/apis", s.url)).await,
        200,
        "system:discovery"
    );
    let ws = format!("{}/apis/portcullis.dev/v1alpha1/workspaces", s.url);
    let resp = bob.get(&ws).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(
        status["message"],
        "workspaces.portcullis.dev is forbidden: User \"bob\" cannot list resource \"workspaces\" in API group \"portcullis.dev\" at the cluster scope"
    );

    let admin = s.admin();
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "workspace-reader" },
        "rules": [{ "apiGroups": ["portcullis.dev"], "resources": ["workspaces"], "verbs": ["get", "list", "watch"] }],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": "devs-read-workspaces" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "workspace-reader" },
        "subjects": [{ "kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs" }],
    });
    for (plural, obj) in [("clusterroles", &role), ("clusterrolebindings", &binding)] {
        let r = admin
            .post(format!("{}{RBAC}/{plural}", s.url))
            .json(obj)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    eventually(200, async || status_of(&bob, ws.clone()).await).await;
    // Reading is not writing.
    let create = bob
        .post(&ws)
        .json(&json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Workspace", "metadata": {"name": "x"}, "spec": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 403);

    let r = admin
        .delete(format!(
            "{}{RBAC}/clusterrolebindings/devs-read-workspaces",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(403, async || status_of(&bob, ws.clone()).await).await;
    s.stop().await;
}

#[tokio::test]
async fn rbac_objects_are_validated_by_the_engine() {
    let s = TestServer::start().await;
    let bad = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "typo" },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["Get"] }],
    });
    let r = s
        .admin()
        .post(format!("{}{RBAC}/clusterroles", s.url))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["details"]["causes"][0]["field"], "rules[0].verbs");
    s.stop().await;
}

#[tokio::test]
async fn a_role_binding_grants_only_in_its_namespace() {
    let s = TestServer::start().await;
    let admin = s.admin();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "carol-admin", "namespace": "ws-a" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
        "subjects": [{ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "carol" }],
    });
    let r = admin
        .post(format!("{}{RBAC}/namespaces/ws-a/rolebindings", s.url))
        .json(&binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let carol = s.user("carol", &[]);
    let base = format!("{}/apis/portcullis.dev/v1alpha1", s.url);
    eventually(200, async || {
        status_of(&carol, format!("{base}/namespaces/ws-a/projects")).await
    })
    .await;
    assert_eq!(
        status_of(&carol, format!("{base}/namespaces/ws-b/projects")).await,
        403
    );
    assert_eq!(
        status_of(&carol, format!("{base}/projects")).await,
        403,
        "all namespaces needs a cluster grant"
    );
    s.stop().await;
}

#[tokio::test]
async fn access_reviews_answer_with_the_same_engine() {
    let s = TestServer::start().await;
    let review = |kind: &str, spec: Value| json!({ "apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec });
    let attrs = json!({ "verb": "list", "group": "portcullis.dev", "resource": "workspaces" });
    // Self review: the subject is the requester, whatever the body claims.
    let bob = s.user("bob", &[]);
    let r: Value = bob
        .post(format!("{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", s.url))
        .json(&review("SelfSubjectAccessReview", json!({ "resourceAttributes": attrs, "user": "portcullis-admin", "groups": ["portcullis:admins"] })))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"]["allowed"], false, "{r}");
    // Asking about others needs create on subjectaccessreviews: bob has not, the admin has.
    let sar = review(
        "SubjectAccessReview",
        json!({ "user": "someone", "groups": ["portcullis:admins"], "resourceAttributes": attrs }),
    );
    let denied = bob
        .post(format!(
            "{}/apis/authorization.k8s.io/v1/subjectaccessreviews",
            s.url
        ))
        .json(&sar)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let r: Value = s
        .admin()
        .post(format!(
            "{}/apis/authorization.k8s.io/v1/subjectaccessreviews",
            s.url
        ))
        .json(&sar)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"]["allowed"], true, "{r}");
    assert_eq!(
        r["status"]["reason"],
        "RBAC: allowed by ClusterRoleBinding \"portcullis:admins\" of ClusterRole \"cluster-admin\" to Group \"portcullis:admins\""
    );
    s.stop().await;
}

#[tokio::test]
async fn escalation_is_prevented_on_roles_and_bindings() {
    let s = TestServer::start().await;
    let admin = s.admin();
    let post = |c: &reqwest::Client, path: String, body: Value| {
        let c = c.clone();
        async move { c.post(path).json(&body).send().await.unwrap() }
    };
    let ns = format!("{}{RBAC}/namespaces/ns-a", s.url);
    // dana may manage roles and bindings in ns-a, and read pods there.
    let manager = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "rbac-manager", "namespace": "ns-a" },
        "rules": [
            { "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "update", "get", "list"] },
            { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"] },
        ],
    });
    assert_eq!(
        post(&admin, format!("{ns}/roles"), manager).await.status(),
        201
    );
    let bind_dana = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "dana-manager", "namespace": "ns-a" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-manager" },
        "subjects": [{ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "dana" }],
    });
    assert_eq!(
        post(&admin, format!("{ns}/rolebindings"), bind_dana)
            .await
            .status(),
        201
    );
    let dana = s.user("dana", &[]);
    eventually(200, async || status_of(&dana, format!("{ns}/roles")).await).await;

    // Binding herself to cluster-admin: she does not hold its permissions and has no bind.
    let grab = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "grab", "namespace": "ns-a" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
        "subjects": [{ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "dana" }],
    });
    let r = post(&dana, format!("{ns}/rolebindings"), grab.clone()).await;
    assert_eq!(r.status(), 403);
    let status: Value = r.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("attempting to grant RBAC permissions not currently held"),
        "{status}"
    );

    // A role with rules she holds is fine; one with more is not.
    let reader = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "pod-reader", "namespace": "ns-a" },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] }],
    });
    assert_eq!(
        post(&dana, format!("{ns}/roles"), reader).await.status(),
        201
    );
    let deleter = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "secret-deleter", "namespace": "ns-a" },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"] }],
    });
    assert_eq!(
        post(&dana, format!("{ns}/roles"), deleter).await.status(),
        403
    );
    // Binding someone to a role whose rules she holds is fine.
    let share = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "bob-reads-pods", "namespace": "ns-a" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
        "subjects": [{ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob" }],
    });
    assert_eq!(
        post(&dana, format!("{ns}/rolebindings"), share)
            .await
            .status(),
        201
    );

    // With `bind` on cluster-admin, the binding is allowed without holding its rules.
    let binder = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "bind-cluster-admin" },
        "rules": [{ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["cluster-admin"], "verbs": ["bind"] }],
    });
    assert_eq!(
        post(&admin, format!("{}{RBAC}/clusterroles", s.url), binder)
            .await
            .status(),
        201
    );
    let grant_bind = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "dana-binds", "namespace": "ns-a" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bind-cluster-admin" },
        "subjects": [{ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "dana" }],
    });
    assert_eq!(
        post(&admin, format!("{ns}/rolebindings"), grant_bind)
            .await
            .status(),
        201
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post(&dana, format!("{ns}/rolebindings"), grab.clone()).await;
        if r.status() == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bind never took effect: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn self_subject_rules_review_lists_the_requesters_rules() {
    let s = TestServer::start().await;
    let r: Value = s
        .user("erin", &[])
        .post(format!("{}/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", s.url))
        .json(&json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": { "namespace": "ns-a" } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Every authenticated user holds system:basic-user's and system:discovery's rules.
    let rules = r["status"]["resourceRules"].as_array().unwrap();
    assert!(
        rules.iter().any(|x| x["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "selfsubjectaccessreviews")),
        "{r}"
    );
    assert!(
        r["status"]["nonResourceRules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["nonResourceURLs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u == "/apis")),
        "{r}"
    );
    assert_eq!(r["status"]["incomplete"], false);
    s.stop().await;
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb_and_then_acts_as_the_other_user() {
    let s = TestServer::start().await;
    let workspaces = format!("{}/apis/portcullis.dev/v1alpha1/workspaces", s.url);
    // The admin (cluster-admin) may impersonate; as bob, it may not list workspaces.
    let resp = s
        .admin()
        .get(&workspaces)
        .header("Impersonate-User", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert!(
        status["message"].as_str().unwrap().contains("User \"bob\""),
        "{status}"
    );
    // As a member of portcullis:admins, it may.
    let resp = s
        .admin()
        .get(&workspaces)
        .header("Impersonate-User", "bob")
        .header("Impersonate-Group", "portcullis:admins")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Someone without the verb cannot impersonate at all.
    let resp = s
        .user("mallory", &[])
        .get(&workspaces)
        .header("Impersonate-User", "admin")
        .header("Impersonate-Group", "portcullis:admins")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let status: serde_json::Value = resp.json().await.unwrap();
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("mallory") && message.contains("impersonate"),
        "{message}"
    );
    // Groups without a user are malformed.
    let resp = s
        .admin()
        .get(&workspaces)
        .header("Impersonate-Group", "portcullis:admins")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    s.stop().await;
}

/// The management plane's bootstrap policy is that of the Kubernetes version the rbac crate
/// names (v1.28): its system:basic-user lets everyone review themselves, its edit no longer
/// writes endpoints, and its namespaced controller roles are there too.
#[tokio::test]
async fn the_bootstrap_policy_is_kubernetes_v1_28s() {
    assert_eq!(portcullis_rbac::bootstrap::KUBERNETES_VERSION, "v1.28");
    let s = TestServer::start().await;
    let admin = s.admin();
    let get = async |path: &str| -> Value {
        admin
            .get(format!("{}{RBAC}/{path}", s.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let basic = get("clusterroles/system:basic-user").await;
    assert!(
        basic["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["apiGroups"] == json!(["authentication.k8s.io"])
                && r["resources"] == json!(["selfsubjectreviews"])),
        "{basic}"
    );
    let edit = get("clusterroles/system:aggregate-to-edit").await;
    for rule in edit["rules"].as_array().unwrap() {
        let writes = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "update" || v == "create");
        let endpoints = rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "endpoints");
        assert!(!(writes && endpoints), "{rule}");
    }
    let leader = get("namespaces/kube-system/roles/system::leader-locking-kube-scheduler").await;
    assert_eq!(leader["kind"], "Role", "{leader}");
    s.stop().await;
}
