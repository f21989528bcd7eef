//! Real kubectl (v1.32, as in `kubectl-requests.jsonl`) against the double, each command with a
//! kubeconfig and an empty cache directory in a temporary directory.

use std::time::Duration;

use portcullis_testkit::kube_apiserver::{Config, Double, UserInfo};
use portcullis_testkit::kubectl::{Kubectl, Output};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// kubectl for `double` with a token, or `None` when kubectl is not installed.
fn kubectl(double: &Double, token: &str, namespace: &str) -> Option<Kubectl> {
    Kubectl::new(&double.kubeconfig(token, namespace)).unwrap()
}

async fn double_with_namespace(ns: &str) -> Double {
    let double = Double::start(
        Config::new()
            .token("token-nobody", UserInfo::new("nobody", &[]))
            .impersonator("admin"),
    )
    .await
    .unwrap();
    double
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .unwrap();
    double
}

fn ok(out: &Output) {
    assert_eq!(
        out.code, 0,
        "kubectl failed:\n{}\n{}",
        out.stdout, out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_lists_through_tables() {
    let double = double_with_namespace("rec-k").await;
    double.seed_running_pod("rec-k", "web").unwrap();
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let out = k.run(&["get", "pods"]).await;
    ok(&out);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("web"))
        .unwrap_or_default();
    assert!(
        line.contains("1/1") && line.contains("Running"),
        "{}",
        out.stdout
    );
    let out = k.run(&["get", "namespaces"]).await;
    ok(&out);
    for ns in ["default", "kube-system", "rec-k"] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(ns)),
            "{}",
            out.stdout
        );
    }
    // kubectl asked for Tables, as the recording shows.
    let list = double
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/namespaces/rec-k/pods")
        .unwrap();
    assert!(
        list.header("accept")
            .unwrap()
            .starts_with("application/json;as=Table")
    );
    let missing = k.run(&["get", "pod", "nopod"]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("pods \"nopod\" not found"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_streams_changes() {
    let double = double_with_namespace("rec-k").await;
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let mut child = k.command(&["get", "configmaps", "-w"]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait (with a deadline) until kubectl's watch has arrived, then change something.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !double
        .requests()
        .iter()
        .any(|r| r.query.contains("watch=true"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl never watched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    double
        .seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "streamed", "namespace": "rec-k"}, "data": {"a": "1"}}))
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("streamed") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("the change never reached kubectl get -w");
    assert!(seen.contains('1'), "{seen}");
    child.kill().await.unwrap();
}

const ROLE_V1: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: kubectl-role\nrules:\n- apiGroups: [\"\"]\n  resources: [\"configmaps\"]\n  verbs: [\"get\"]\n";
const ROLE_V2: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: kubectl-role\n  labels:\n    v: \"2\"\nrules:\n- apiGroups: [\"\"]\n  resources: [\"configmaps\"]\n  verbs: [\"get\", \"list\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_client_side_creates_then_patches() {
    let double = double_with_namespace("rec-k").await;
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let out = k
        .run(&["apply", "-f", &k.file("role.yaml", ROLE_V1).unwrap()])
        .await;
    ok(&out);
    assert!(
        out.stdout
            .contains("role.rbac.authorization.k8s.io/kubectl-role created"),
        "{}",
        out.stdout
    );
    let out = k
        .run(&["apply", "-f", &k.file("role-v2.yaml", ROLE_V2).unwrap()])
        .await;
    ok(&out);
    assert!(
        out.stdout.contains("kubectl-role configured"),
        "{}",
        out.stdout
    );
    let role = double.get("roles", "rec-k", "kubectl-role").unwrap();
    assert_eq!(role["rules"][0]["verbs"], json!(["get", "list"]));
    assert_eq!(role["metadata"]["labels"]["v"], "2");
    let last = role["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(last.contains("\"list\""), "{last}");
    // The update was a strategic merge patch, as kubectl sends for built-in kinds.
    assert!(double.requests().iter().any(|r| r.method == "PATCH"
        && r.header("content-type") == Some("application/strategic-merge-patch+json")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_server_side_records_the_field_manager() {
    let double = double_with_namespace("rec-k").await;
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let file = k.file("role.yaml", ROLE_V1).unwrap();
    let out = k.run(&["apply", "--server-side", "-f", &file]).await;
    ok(&out);
    assert!(
        out.stdout.contains("kubectl-role serverside-applied"),
        "{}",
        out.stdout
    );
    let role = double.get("roles", "rec-k", "kubectl-role").unwrap();
    let managers: Vec<(&str, &str)> = role["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap(),
                m["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(managers, vec![("kubectl", "Apply")]);
    // A second manager that changes the rules conflicts, as A097.
    let other = k
        .file("other.yaml", &ROLE_V1.replace("[\"get\"]", "[\"delete\"]"))
        .unwrap();
    let out = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &other,
        ])
        .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("conflict with \"kubectl\": .rules"),
        "{}",
        out.stderr
    );
    let out = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            &other,
        ])
        .await;
    ok(&out);
    let role = double.get("roles", "rec-k", "kubectl-role").unwrap();
    assert_eq!(role["rules"][0]["verbs"], json!(["delete"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_whoami_with_and_without_impersonation() {
    let double = double_with_namespace("rec-k").await;
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let out = k.run(&["auth", "whoami", "-o", "json"]).await;
    ok(&out);
    let review: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(review["status"]["userInfo"]["username"], "admin");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    let out = k
        .run(&[
            "auth",
            "whoami",
            "-o",
            "json",
            "--as",
            "jane",
            "--as-group",
            "devs",
            "--as-group",
            "ops",
            "--as-uid",
            "u-1",
        ])
        .await;
    ok(&out);
    let review: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        review["status"]["userInfo"],
        json!({"username": "jane", "uid": "u-1", "groups": ["devs", "ops", "system:authenticated"]})
    );
    let arrived = double
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/selfsubjectreviews"))
        .unwrap();
    assert_eq!(
        arrived.header_values("impersonate-group"),
        vec!["devs", "ops"]
    );
    assert_eq!(arrived.header("impersonate-user"), Some("jane"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_answers_from_rbac() {
    let double = double_with_namespace("rec-k").await;
    let Some(admin) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let out = admin.run(&["auth", "can-i", "create", "pods"]).await;
    ok(&out);
    assert_eq!(out.stdout.trim(), "yes");
    let Some(nobody) = kubectl(&double, "token-nobody", "rec-k") else {
        return;
    };
    let out = nobody.run(&["auth", "can-i", "create", "pods"]).await;
    assert_eq!((out.code, out.stdout.trim()), (1, "no"), "{}", out.stderr);
    // Bind nobody to `edit` in rec-k: the bootstrap `edit` role allows it now.
    double
        .seed(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "nobody-edit", "namespace": "rec-k"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "nobody"}]}))
        .unwrap();
    let out = nobody.run(&["auth", "can-i", "create", "pods"]).await;
    ok(&out);
    assert_eq!(out.stdout.trim(), "yes");
    let out = nobody
        .run(&["auth", "can-i", "create", "pods", "-n", "default"])
        .await;
    assert_eq!(out.stdout.trim(), "no");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_echoes_stdin_over_websocket() {
    let double = double_with_namespace("rec-k").await;
    double.seed_running_pod("rec-k", "run").unwrap();
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let out = k
        .run_with(
            &["exec", "-i", "run", "--", "cat"],
            "hello through the double\nsecond line\n",
            &[],
        )
        .await;
    ok(&out);
    assert_eq!(out.stdout, "hello through the double\nsecond line\n");
    let out = k.run(&["exec", "run", "--", "echo", "one", "two"]).await;
    ok(&out);
    assert_eq!(out.stdout, "echo one two\n");
    let upgrade = double
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/exec"))
        .unwrap();
    assert_eq!(upgrade.method, "GET");
    assert_eq!(upgrade.header("upgrade"), Some("websocket"));
    assert_eq!(
        upgrade.header("sec-websocket-protocol"),
        Some("v5.channel.k8s.io")
    );
    // A pod without a node: refused before any upgrade, as the recording (exec-pending-pod).
    double
        .seed(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "rec-k"},
            "spec": {"containers": [{"name": "web", "image": "x"}]}}))
        .unwrap();
    let out = k.run(&["exec", "web", "--", "true"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("pod web does not have a host assigned"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reads_and_follows() {
    let double = double_with_namespace("rec-k").await;
    double.seed_running_pod("rec-k", "run").unwrap();
    double.append_log("rec-k", "run", "first");
    double.append_log("rec-k", "run", "second");
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let out = k.run(&["logs", "run"]).await;
    ok(&out);
    assert_eq!(out.stdout, "first\nsecond\n");
    let mut child = k.command(&["logs", "-f", "run"]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "first");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "second");
    double.append_log("rec-k", "run", "third, while following");
    let third = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the followed line never arrived")
        .unwrap()
        .unwrap();
    assert_eq!(third, "third, while following");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_echoes_stdin_over_spdy() {
    let double = double_with_namespace("rec-k").await;
    double.seed_running_pod("rec-k", "run").unwrap();
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return;
    };
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let out = k
        .run_with(
            &["exec", "-i", "run", "--", "cat"],
            "over SPDY/3.1\n",
            &spdy,
        )
        .await;
    ok(&out);
    assert_eq!(out.stdout, "over SPDY/3.1\n");
    let out = k
        .run_with(&["exec", "run", "--", "echo", "hi"], "", &spdy)
        .await;
    ok(&out);
    assert_eq!(out.stdout, "echo hi\n");
    let upgrade = double
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/exec"))
        .unwrap();
    assert_eq!(upgrade.method, "POST");
    assert_eq!(upgrade.header("upgrade"), Some("SPDY/3.1"));
    assert_eq!(
        upgrade.header_values("x-stream-protocol-version"),
        vec![
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io"
        ]
    );
}

async fn port_forward_echo(env: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    let double = double_with_namespace("rec-k").await;
    double.seed_running_pod("rec-k", "run").unwrap();
    let Some(k) = kubectl(&double, double.admin_token(), "rec-k") else {
        return Vec::new();
    };
    k.port_forward_echo("pod/run", env, 2).await.unwrap();
    double
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/portforward"))
        .map(|r| (r.method.clone(), r.header("upgrade").map(str::to_owned)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_echoes_over_websocket_tunnelled_spdy() {
    let tries = port_forward_echo(&[]).await;
    if tries.is_empty() {
        return;
    }
    // kubectl 1.32 asks for the WebSocket tunnel first; the double serves it.
    assert_eq!(
        tries,
        vec![("GET".to_owned(), Some("websocket".to_owned()))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_echoes_over_spdy() {
    let tries = port_forward_echo(&[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]).await;
    if tries.is_empty() {
        return;
    }
    assert_eq!(
        tries,
        vec![("POST".to_owned(), Some("SPDY/3.1".to_owned()))]
    );
}
