//! `portcullis cluster attach|list|detach` and `portcullis status` against `portcullis up` and
//! kube-apiserver doubles: missing permissions reported, credentials never printed, the plan
//! delivered, the status table, cleanup on detach.

use std::process::Output;
use std::time::{Duration, Instant};

use portcullis_testkit::kube_apiserver::{Config as DoubleConfig, Double, UserInfo};

use crate::up::{Up, ok, write};

const FLEET: &str = "apiVersion: portcullis.dev/v1alpha1
kind: Workspace
metadata:
  name: ws-a
---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterScopeRole
metadata:
  name: pod-reader
  namespace: portcullis-global
rules:
- verbs: [get, list]
  apiGroups: [\"\"]
  resources: [pods]
---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterScopeRoleBinding
metadata:
  name: alice-reads-pods
  namespace: portcullis-global
subjects:
- kind: User
  name: alice
roleRef:
  apiGroup: portcullis.dev
  kind: ClusterScopeRole
  name: pod-reader
";

const BINDING: &str = "portcullis:global:alice-reads-pods";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `check` until it holds, at most 30 s.
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn cluster_attach_list_status_and_detach_with_cleanup() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt
        .block_on(Double::start(
            DoubleConfig::new().token("weak-token", UserInfo::new("weak", &[])),
        ))
        .unwrap();
    let up = Up::start();
    let dir = up.dir.path();
    let fleet = write(dir, "fleet.yaml", FLEET);
    ok(&up.cli(&["apply", "-f", fleet.to_str().unwrap()]));
    let admin_conf = write(
        dir,
        "edge.conf",
        &double.kubeconfig(double.admin_token(), "default"),
    );
    let weak_conf = write(
        dir,
        "weak.conf",
        &double.kubeconfig("weak-token", "default"),
    );

    // Credentials that cannot manage RBAC: refused, with what is missing and what to do.
    let out = up.cli(&[
        "cluster",
        "attach",
        "weak",
        "--kubeconfig",
        weak_conf.to_str().unwrap(),
        "--workspace",
        "ws-a",
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    for needed in [
        "create, get, list, watch, patch, delete on clusterrolebindings.rbac.authorization.k8s.io",
        "create, get, list, watch, patch, delete on namespaces",
        "escalate, bind on roles.rbac.authorization.k8s.io",
        "pass --force",
    ] {
        assert!(err.contains(needed), "{needed:?} not in {err}");
    }

    let out = ok(&up.cli(&[
        "cluster",
        "attach",
        "edge",
        "--kubeconfig",
        admin_conf.to_str().unwrap(),
        "--workspace",
        "ws-a",
        "--label",
        "env=prod",
    ]));
    assert!(out.contains("attached to workspace \"ws-a\""), "{out}");
    // The credential is never printed.
    let yaml = ok(&up.cli(&["get", "clusters", "edge", "-n", "ws-a", "-o", "yaml"]));
    assert!(!yaml.contains(double.admin_token()), "{yaml}");
    assert!(yaml.contains("cluster-credentials.ws-a.edge"), "{yaml}");

    until("the Global binding reaches the cluster", || {
        double.get("clusterrolebindings", "", BINDING).is_some()
    });
    until("cluster list shows it reachable and synced", || {
        let out = stdout(&up.cli(&["cluster", "list"]));
        out.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(..4) == Some(&["edge", "ws-a", "True", "True"][..])
        })
    });
    let table = ok(&up.cli(&["status"]));
    assert!(table.contains("DRIFT REPAIRS"), "{table}");
    assert!(table.contains("kubernetes"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&up.cli(&["status", "-o", "json"]))).unwrap();
    let edge = &json["clusters"][0];
    assert_eq!(edge["name"], "edge");
    assert_eq!(edge["synced"], true, "{edge}");
    assert_eq!(edge["driftRepairs"], 0);

    let by_source = ok(&up.cli(&[
        "status",
        "--source",
        "ClusterScopeRoleBinding/portcullis-global/alice-reads-pods",
    ]));
    assert!(
        by_source.contains("edge") && by_source.contains(BINDING),
        "{by_source}"
    );

    let out = ok(&up.cli(&["cluster", "detach", "edge", "--cleanup"]));
    assert!(out.contains("were removed"), "{out}");
    assert!(double.get("clusterrolebindings", "", BINDING).is_none());
    assert!(
        double
            .get("clusterroles", "", "portcullis:global:pod-reader")
            .is_none()
    );
    let list = ok(&up.cli(&["cluster", "list"]));
    assert!(!list.contains("edge"), "{list}");
    drop(up);
    drop(double);
}

/// A cluster attached with --pull: the CLI writes the agent's credential and CA, and a
/// `portcullis agent` with that `pull:` configuration applies the cluster's desired set there.
#[test]
fn cluster_attach_pull_and_an_agent_that_pulls() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(Double::start(DoubleConfig::new())).unwrap();
    let up = Up::start();
    let dir = up.dir.path();
    let fleet = write(dir, "fleet.yaml", FLEET);
    ok(&up.cli(&["apply", "-f", fleet.to_str().unwrap()]));
    let upstream = write(
        dir,
        "edge.conf",
        &double.kubeconfig(double.admin_token(), "default"),
    );
    let creds = dir.join("pull-creds");
    let out = ok(&up.cli(&[
        "cluster",
        "attach",
        "natted",
        "--kubeconfig",
        upstream.to_str().unwrap(),
        "--workspace",
        "ws-a",
        "--pull",
        "--pull-credentials-dir",
        creds.to_str().unwrap(),
    ]));
    assert!(out.contains("in pull mode"), "{out}");
    let credential = std::fs::read_to_string(creds.join("credential.pem")).unwrap();
    assert!(credential.contains("PRIVATE KEY"));
    // The management plane never pushes to it.
    std::thread::park_timeout(Duration::from_millis(500));
    assert!(double.get("clusterrolebindings", "", BINDING).is_none());

    let agent_config = write(
        dir,
        "agent.yaml",
        &format!(
            "cluster: natted\nlisten: 127.0.0.1:0\ndataDir: {}\nissuer:\n  url: {}\n  certificateAuthority: {}\nupstream:\n  kubeconfig: {}\npull:\n  managementURL: {}\n  credentialFile: {}\n  caFile: {}\n  intervalSeconds: 1\n",
            dir.join("agent").display(),
            up.url,
            dir.join("pki/ca.crt").display(),
            upstream.display(),
            up.url,
            creds.join("credential.pem").display(),
            creds.join("ca.crt").display(),
        ),
    );
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["agent", "--config", agent_config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while double.get("clusterrolebindings", "", BINDING).is_none() {
        if Instant::now() > deadline {
            let _ = agent.kill();
            let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
            panic!("the agent never applied the pulled binding:\n{log}");
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    until("status shows the cluster pulling", || {
        let json: serde_json::Value =
            serde_json::from_str(&stdout(&up.cli(&["status", "-o", "json"]))).unwrap_or_default();
        json["clusters"][0]["sink"] == "pull" && json["clusters"][0]["lastSync"].is_string()
    });
    let _ = agent.kill();
    let _ = agent.wait();
}
