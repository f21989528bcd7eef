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
