//! `portcullis explain`, `who-can --fleet`, `plan` and `defaults reset` against `portcullis up`:
//! the answers name the source objects.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::up::{Up, ok, write};

const FLEET: &str = "apiVersion: portcullis.dev/v1alpha1
kind: Workspace
metadata:
  name: ws-a
---
apiVersion: portcullis.dev/v1alpha1
kind: Cluster
metadata:
  name: c1
  namespace: ws-a
  labels:
    env: prod
spec:
  apiServerURL: https://c1.example.com:6443
---
apiVersion: portcullis.dev/v1alpha1
kind: Project
metadata:
  name: p1
  namespace: ws-a
spec:
  namespaceName: p1
  placement:
    clusterSelector:
      matchLabels:
        env: prod
---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterScopeRoleBinding
metadata:
  name: alice-edit
  namespace: ws-a
subjects:
- kind: User
  name: alice
roleRef:
  apiGroup: portcullis.dev
  kind: ClusterScopeRole
  name: kommander-workspace-edit
";

const BOB_VIEW: &str = "apiVersion: portcullis.dev/v1alpha1
kind: ClusterScopeRoleBinding
metadata:
  name: bob-view
subjects:
- kind: User
  name: bob
roleRef:
  apiGroup: portcullis.dev
  kind: ClusterScopeRole
  name: kommander-workspace-view
";

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `args` until it exits 0 (the plan follows the store asynchronously), at most 15 s.
fn eventually(up: &Up, args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = up.cli(args);
        if out.status.success() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never succeeded: {out:?}"
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn explain_who_can_fleet_plan_and_defaults_reset_name_the_sources() {
    let up = Up::start();
    let fleet = write(up.dir.path(), "fleet.yaml", FLEET);
    ok(&up.cli(&["apply", "-f", fleet.to_str().unwrap()]));

    // explain: yes, through the workspace binding and the default workspace role.
    let out = eventually(
        &up,
        &[
            "explain",
            "--as",
            "alice",
            "--cluster",
            "c1",
            "get",
            "pods",
            "-n",
            "p1",
        ],
    );
    let text = stdout(&out);
    assert!(text.starts_with("yes\n"), "{text}");
    for want in [
        "Workspace ws-a",
        "ClusterScopeRoleBinding/ws-a/alice-edit",
        "ClusterScopeRole/ws-a/kommander-workspace-edit",
        "ClusterRoleBinding/portcullis:ws:ws-a:alice-edit",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let out = up.cli(&[
        "explain",
        "--as",
        "bob",
        "--cluster",
        "c1",
        "get",
        "pods",
        "-n",
        "p1",
    ]);
    assert_eq!((code(&out), stdout(&out).trim()), (1, "no"));
    let out = up.cli(&[
        "explain",
        "--as",
        "alice",
        "--cluster",
        "nowhere",
        "get",
        "pods",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in the fleet"),
        "{out:?}"
    );

    // who-can --fleet: per cluster, the subject, scope and source.
    let text = ok(&up.cli(&["who-can", "--fleet", "get", "pods", "-n", "p1"]));
    let row = text
        .lines()
        .find(|l| l.contains("User/alice"))
        .unwrap_or_else(|| panic!("{text}"));
    for want in [
        "c1",
        "Workspace ws-a",
        "ClusterScopeRoleBinding/ws-a/alice-edit",
    ] {
        assert!(row.contains(want), "{want} in {row}");
    }
    assert!(text.starts_with("CLUSTER"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&ok(&up.cli(&[
        "who-can", "--fleet", "get", "pods", "-n", "p1", "-o", "json",
    ])))
    .unwrap();
    // Each scope's subjects once; per cluster, the scopes it holds.
    assert_eq!(
        json["clusters"]["c1"],
        serde_json::json!(["fleet/Workspace ws-a"]),
        "{json}"
    );
    assert!(
        json["scopes"]["fleet/Workspace ws-a"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "alice" && s["source"]["name"] == "alice-edit"),
        "{json}"
    );

    // plan: what a new binding would add on c1, without adding it.
    let bob = write(up.dir.path(), "bob.yaml", BOB_VIEW);
    let text = ok(&up.cli(&["plan", "-f", bob.to_str().unwrap(), "-n", "ws-a"]));
    assert!(text.contains("cluster c1:"), "{text}");
    assert!(
        text.contains("+ ClusterRoleBinding/portcullis:ws:ws-a:bob-view  (from ClusterScopeRoleBinding/ws-a/bob-view"),
        "{text}"
    );
    assert!(!text.contains("cluster management:"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&ok(&up.cli(&[
        "plan",
        "-f",
        bob.to_str().unwrap(),
        "-n",
        "ws-a",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(
        json["clusters"]["c1"]["apply"][0]["source"],
        "ClusterScopeRoleBinding/ws-a/bob-view"
    );
    assert!(
        json["clusters"]["c1"]["apply"][0]["contentHash"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
    let out = up.cli(&[
        "explain",
        "--as",
        "bob",
        "--cluster",
        "c1",
        "get",
        "pods",
        "-n",
        "p1",
    ]);
    assert_eq!(code(&out), 1, "plan applied nothing");

    // defaults reset: a deleted default comes back only then.
    ok(&up.cli(&[
        "delete",
        "clusterscoperoles",
        "kommander-workspace-view",
        "-n",
        "ws-a",
    ]));
    let out = up.cli(&[
        "get",
        "clusterscoperoles",
        "kommander-workspace-view",
        "-n",
        "ws-a",
    ]);
    assert!(!out.status.success());
    let text = ok(&up.cli(&["defaults", "reset", "--workspace", "ws-a"]));
    assert!(
        text.contains("ClusterScopeRole/ws-a/kommander-workspace-view"),
        "{text}"
    );
    ok(&up.cli(&[
        "get",
        "clusterscoperoles",
        "kommander-workspace-view",
        "-n",
        "ws-a",
    ]));
    ok(&up.cli(&["defaults", "reset", "--project", "p1", "-n", "ws-a"]));
    ok(&up.cli(&["defaults", "reset", "--global"]));
    let out = up.cli(&["defaults", "reset"]);
    assert_eq!(code(&out), 2, "a scope is required: {out:?}");
}
