//! Federation on the management plane: the plan authorizes the management API (a workspace
//! admin bound by a KommanderRoleBinding manages their workspace and, by sync-to-project, its
//! projects), escalation prevention across scopes, the default roles, and the fleet reviews.

use std::future::Future;
use std::time::{Duration, Instant};

use portcullis_server::config::StoreConfig;
use serde_json::{Value, json};

use crate::support::TestServer;

const V: &str = "/apis/portcullis.dev/v1alpha1";

/// POSTs `body` to `path`: the status and the answer.
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

async fn get(s: &TestServer, c: &reqwest::Client, path: &str) -> (u16, Value) {
    let r = c.get(format!("{}{V}{path}", s.url)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn delete(s: &TestServer, c: &reqwest::Client, path: &str) -> u16 {
    let r = c
        .delete(format!("{}{V}{path}", s.url))
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

/// Polls `check` until it holds (the plan follows the store asynchronously), at most 15 s.
async fn until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn workspace(name: &str) -> Value {
    json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "Workspace", "metadata": { "name": name } })
}

fn project(ws: &str, name: &str) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Project",
        "metadata": { "name": name, "namespace": ws },
        "spec": { "namespaceName": name },
    })
}

fn binding(kind: &str, ns: &str, name: &str, role: &str, user: &str) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": kind,
        "metadata": { "name": name, "namespace": ns },
        "subjects": [{ "kind": "User", "name": user }],
        "roleRef": { "apiGroup": "portcullis.dev", "kind": kind.trim_end_matches("Binding"), "name": role },
    })
}

fn role(kind: &str, ns: &str, name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": kind,
        "metadata": { "name": name, "namespace": ns },
        "rules": rules,
    })
}

/// Waits until the default `KommanderRole` `name` exists in `ns`.
async fn default_exists(s: &TestServer, ns: &str, name: &str) {
    let admin = s.admin();
    until(&format!("the default {ns}/{name} exists"), || async {
        get(
            s,
            &admin,
            &format!("/namespaces/{ns}/kommanderroles/{name}"),
        )
        .await
        .0 == 200
    })
    .await;
}

#[tokio::test]
async fn a_workspace_admin_manages_their_workspace_and_its_projects_only() {
    let s = TestServer::start().await;
    let admin = s.admin();
    let alice = s.user("alice", &[]);
    for ws in ["ws-a", "ws-b"] {
        assert_eq!(post(&s, &admin, "/workspaces", &workspace(ws)).await.0, 201);
    }
    let (code, _) = post(
        &s,
        &admin,
        "/namespaces/ws-a/projects",
        &project("ws-a", "p0"),
    )
    .await;
    assert_eq!(code, 201);
    default_exists(&s, "ws-a", "kommander-workspace-admin").await;
    default_exists(&s, "p0", "kommander-project-admin").await;

    // Before the binding: nothing.
    let (code, _) = post(
        &s,
        &alice,
        "/namespaces/ws-a/projects",
        &project("ws-a", "px"),
    )
    .await;
    assert_eq!(code, 403);

    let b = binding(
        "KommanderRoleBinding",
        "ws-a",
        "alice-admin",
        "kommander-workspace-admin",
        "alice",
    );
    let (code, body) = post(&s, &admin, "/namespaces/ws-a/kommanderrolebindings", &b).await;
    assert_eq!(code, 201, "{body}");

    // Projects in her workspace, created after the binding too.
    until("alice may create a project in ws-a", || async {
        post(
            &s,
            &alice,
            "/namespaces/ws-a/projects",
            &project("ws-a", "p1"),
        )
        .await
        .0 == 201
    })
    .await;
    // Not in another workspace.
    let (code, body) = post(
        &s,
        &alice,
        "/namespaces/ws-b/projects",
        &project("ws-b", "p2"),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    // Project admin in the projects of her workspace, by sync-to-project: the one made before
    // the binding and the one she made after it.
    default_exists(&s, "p1", "kommander-project-admin").await;
    for ns in ["p0", "p1"] {
        until(&format!("alice is project admin in {ns}"), || async {
            get(
                &s,
                &alice,
                &format!("/namespaces/{ns}/kommanderrolebindings"),
            )
            .await
            .0 == 200
        })
        .await;
    }
    // …and kubectl, impersonating her, creates a project the same way.
    let file = s.dir.path().join("p3.json");
    std::fs::write(&file, project("ws-a", "p3").to_string()).unwrap();
    let out = kubectl(
        &s,
        &["create", "-f", file.to_str().unwrap(), "--as", "alice"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let file = s.dir.path().join("p4.json");
    std::fs::write(&file, project("ws-b", "p4").to_string()).unwrap();
    let out = kubectl(
        &s,
        &["create", "-f", file.to_str().unwrap(), "--as", "alice"],
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{out:?}"
    );

    // kubectl's own questions see the plan too: SubjectAccessReview and her rules.
    let out = kubectl(
        &s,
        &[
            "auth",
            "can-i",
            "create",
            "projects.portcullis.dev",
            "-n",
            "ws-a",
            "--as",
            "alice",
        ],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "yes",
        "{out:?}"
    );
    let r = alice
        .post(format!(
            "{}/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            s.url
        ))
        .json(&json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": { "namespace": "ws-a" },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rules: Value = r.json().await.unwrap();
    assert!(
        rules["status"]["resourceRules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"]
                .as_array()
                .unwrap()
                .contains(&json!("projects"))
                && r["verbs"].as_array().unwrap().contains(&json!("create"))),
        "{rules}"
    );

    // She may ask the fleet about herself, and it names the source objects…
    let review = |user: &str| {
        json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "FleetAccessReview",
            "spec": {
                "user": user,
                "resourceAttributes": { "verb": "create", "group": "portcullis.dev", "resource": "projects", "namespace": "ws-a" },
            },
        })
    };
    let (code, answer) = post(&s, &alice, "/fleetaccessreviews", &review("alice")).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["status"]["allowed"], true, "{answer}");
    let grant = &answer["status"]["grants"][0];
    assert_eq!(grant["scope"], "Workspace ws-a");
    assert_eq!(
        grant["bindingSource"],
        json!({ "kind": "KommanderRoleBinding", "namespace": "ws-a", "name": "alice-admin" })
    );
    assert_eq!(grant["roleSource"]["name"], "kommander-workspace-admin");
    // …but not about someone else; the admin may.
    let (code, answer) = post(&s, &alice, "/fleetaccessreviews", &review("bob")).await;
    assert_eq!(code, 403, "{answer}");
    let (code, answer) = post(&s, &admin, "/fleetaccessreviews", &review("bob")).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["status"]["allowed"], false);

    // Losing the binding withdraws it everywhere.
    assert_eq!(
        delete(
            &s,
            &admin,
            "/namespaces/ws-a/kommanderrolebindings/alice-admin"
        )
        .await,
        200
    );
    until("alice's project admin is withdrawn", || async {
        get(&s, &alice, "/namespaces/p1/kommanderrolebindings")
            .await
            .0
            == 403
    })
    .await;
    let (code, _) = post(
        &s,
        &alice,
        "/namespaces/ws-a/projects",
        &project("ws-a", "p5"),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        get(&s, &alice, "/namespaces/p0/kommanderrolebindings")
            .await
            .0,
        403
    );
    s.stop().await;
}

async fn kubectl(s: &TestServer, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.dir.path().join("admin.conf"))
        .args(args)
        .env("HOME", s.dir.path())
        .output()
        .await
        .expect("kubectl is installed by `cargo xtask test`")
}

#[tokio::test]
async fn granting_beyond_ones_holdings_on_any_cluster_is_refused_naming_cluster_and_rule() {
    let s = TestServer::start().await;
    let admin = s.admin();
    let alice = s.user("alice", &[]);
    assert_eq!(
        post(&s, &admin, "/workspaces", &workspace("ws-e")).await.0,
        201
    );
    let cluster = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Cluster",
        "metadata": { "name": "c1", "namespace": "ws-e" },
        "spec": { "apiServerURL": "https://c1.example.com:6443" },
    });
    assert_eq!(
        post(&s, &admin, "/namespaces/ws-e/clusters", &cluster)
            .await
            .0,
        201
    );
    let g = "portcullis-global";
    let everything = role(
        "ClusterScopeRole",
        g,
        "everything",
        json!([{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] }]),
    );
    let binder = role(
        "KommanderRole",
        g,
        "binder",
        json!([{ "verbs": ["create", "get"], "apiGroups": ["portcullis.dev"], "resources": ["clusterscoperolebindings"] }]),
    );
    for (path, o) in [
        (format!("/namespaces/{g}/clusterscoperoles"), everything),
        (format!("/namespaces/{g}/kommanderroles"), binder),
        (
            format!("/namespaces/{g}/kommanderrolebindings"),
            binding("KommanderRoleBinding", g, "alice-binder", "binder", "alice"),
        ),
    ] {
        let (code, body) = post(&s, &admin, &path, &o).await;
        assert_eq!(code, 201, "{path}: {body}");
    }
    default_exists(&s, "ws-e", "kommander-workspace-admin").await;
    let (code, _) = post(
        &s,
        &admin,
        "/namespaces/ws-e/kommanderrolebindings",
        &binding(
            "KommanderRoleBinding",
            "ws-e",
            "alice-admin",
            "kommander-workspace-admin",
            "alice",
        ),
    )
    .await;
    assert_eq!(code, 201);

    // cluster-admin on every cluster: refused, naming the cluster and the missing rule.
    let mint = binding(
        "ClusterScopeRoleBinding",
        g,
        "alice-everything",
        "everything",
        "alice",
    );
    // Until the binder binding is planned, the create is refused by authorization instead.
    let deadline = Instant::now() + Duration::from_secs(15);
    let last = loop {
        let (code, body) = post(
            &s,
            &alice,
            "/namespaces/portcullis-global/clusterscoperolebindings",
            &mint,
        )
        .await;
        assert_ne!(code, 201, "escalation allowed: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        if code == 403 && message.contains("attempting to grant") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "never refused by escalation: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let message = last["message"].as_str().unwrap();
    assert!(message.contains(r#"cluster "c1""#), "{message}");
    assert!(
        message.contains(r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#),
        "{message}"
    );
    assert_eq!(last["reason"], "Forbidden");

    // Within her holdings (workspace view at workspace scope): accepted.
    let (code, body) = post(
        &s,
        &alice,
        "/namespaces/ws-e/kommanderrolebindings",
        &binding(
            "KommanderRoleBinding",
            "ws-e",
            "bob-view",
            "kommander-workspace-view",
            "bob",
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");

    // A binding to a role that does not exist: 404, as kube-apiserver's binding registry
    // answers one who may not `bind` it.
    let (code, body) = post(
        &s,
        &alice,
        "/namespaces/ws-e/kommanderrolebindings",
        &binding(
            "KommanderRoleBinding",
            "ws-e",
            "bob-later",
            "not-yet",
            "bob",
        ),
    )
    .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        body["message"], r#"kommanderroles.portcullis.dev "not-yet" not found"#,
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn defaults_are_created_once_and_come_back_only_by_a_reset() {
    let mut s = TestServer::start_with(|c| c.store = StoreConfig::Redb).await;
    let admin = s.admin();
    // The global defaults, at first start.
    default_exists(&s, "portcullis-global", "kommander-dashboard-view").await;
    let (code, created) = post(&s, &admin, "/workspaces", &workspace("ws-d")).await;
    assert_eq!(code, 201);
    default_exists(&s, "ws-d", "kommander-workspace-view").await;
    let (_, roles) = get(&s, &admin, "/namespaces/ws-d/clusterscoperoles").await;
    assert_eq!(roles["items"].as_array().unwrap().len(), 3, "{roles}");
    // The workspace itself is not rewritten to record it.
    assert_eq!(
        get(&s, &admin, "/workspaces/ws-d").await.1["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    // A workspace may opt out.
    let mut bare = workspace("ws-bare");
    bare["metadata"]["annotations"] = json!({ "portcullis.dev/defaults-created": "false" });
    assert_eq!(post(&s, &admin, "/workspaces", &bare).await.0, 201);
    assert_eq!(
        post(
            &s,
            &admin,
            "/namespaces/ws-d/projects",
            &project("ws-d", "pd")
        )
        .await
        .0,
        201
    );
    default_exists(&s, "pd", "kommander-project-view").await;

    // Deleted and edited defaults stay so: after other changes, and after a restart.
    for path in [
        "/namespaces/ws-d/kommanderroles/kommander-workspace-view",
        "/namespaces/portcullis-global/kommanderroles/kommander-dashboard-edit",
    ] {
        assert_eq!(delete(&s, &admin, path).await, 200, "{path}");
    }
    let edit_path = "/namespaces/ws-d/kommanderroles/kommander-workspace-edit";
    let (_, mut edited) = get(&s, &admin, edit_path).await;
    edited["rules"] =
        json!([{ "verbs": ["get"], "apiGroups": ["portcullis.dev"], "resources": ["projects"] }]);
    let r = admin
        .put(format!("{}{V}{edit_path}", s.url))
        .json(&edited)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut ws = get(&s, &admin, "/workspaces/ws-d").await.1;
    ws["spec"]["displayName"] = json!("Renamed");
    let r = admin
        .put(format!("{}{V}/workspaces/ws-d", s.url))
        .json(&ws)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data_dir = s.dir.path().to_path_buf();
    s.running.take().unwrap().shutdown().await.unwrap();
    let running = portcullis_server::start(portcullis_server::Config {
        data_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreConfig::Redb,
        shutdown_grace_seconds: 2,
        ..portcullis_server::Config::default()
    })
    .await
    .unwrap();
    s.url = running.url.clone();
    s.running = Some(running);
    let admin = s.admin();
    // A create after the restart has been planned: the earlier ones have too.
    assert_eq!(
        post(&s, &admin, "/workspaces", &workspace("ws-later"))
            .await
            .0,
        201
    );
    default_exists(&s, "ws-later", "kommander-workspace-view").await;
    let (_, none) = get(&s, &admin, "/namespaces/ws-bare/kommanderroles").await;
    assert_eq!(none["items"], json!([]), "{none}");
    for path in [
        "/namespaces/ws-d/kommanderroles/kommander-workspace-view",
        "/namespaces/portcullis-global/kommanderroles/kommander-dashboard-edit",
    ] {
        assert_eq!(get(&s, &admin, path).await.0, 404, "{path} came back");
    }
    assert_eq!(
        get(&s, &admin, edit_path).await.1["rules"][0]["verbs"],
        json!(["get"])
    );

    // A reset brings them back and overwrites the edit.
    let reset = |spec: Value| json!({ "apiVersion": "portcullis.dev/v1alpha1", "kind": "DefaultsReset", "spec": spec });
    let (code, body) = post(
        &s,
        &admin,
        "/defaultsresets",
        &reset(json!({ "workspace": "ws-d" })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        get(
            &s,
            &admin,
            "/namespaces/ws-d/kommanderroles/kommander-workspace-view"
        )
        .await
        .0,
        200
    );
    assert_ne!(
        get(&s, &admin, edit_path).await.1["rules"][0]["verbs"],
        json!(["get"])
    );
    let (code, _) = post(
        &s,
        &admin,
        "/defaultsresets",
        &reset(json!({ "global": true })),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        get(
            &s,
            &admin,
            "/namespaces/portcullis-global/kommanderroles/kommander-dashboard-edit"
        )
        .await
        .0,
        200
    );
    // Someone without escalate on the role kinds may not reset.
    let (code, _) = post(
        &s,
        &s.user("mallory", &[]),
        "/defaultsresets",
        &reset(json!({ "global": true })),
    )
    .await;
    assert_eq!(code, 403);
    s.stop().await;
}
