//! kubectl against the management plane with the bootstrap policy of Kubernetes v1.28:
//! `kubectl auth whoami` (a SelfSubjectReview, which that policy lets every authenticated user
//! create) and `kubectl auth can-i`.

use serde_json::{Value, json};

use crate::support::TestServer;

/// Runs kubectl with the server's admin.conf (asynchronously: the server runs on this
/// test's runtime).
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

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_auth_whoami_and_can_i_work_with_the_v1_28_bootstrap_policy() {
    let s = TestServer::start().await;
    // Discovery lists the review, as kube-apiserver's does (kubectl whoami looks for it).
    let list: Value = s
        .admin()
        .get(format!("{}/apis/authentication.k8s.io/v1", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let review = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "selfsubjectreviews")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["verbs"], json!(["create"]));

    let me = stdout(&kubectl(&s, &["auth", "whoami"]).await);
    assert!(me.contains("Username"), "{me}");
    assert!(me.contains("portcullis:admins"), "{me}");
    let jane = stdout(
        &kubectl(
            &s,
            &[
                "auth",
                "whoami",
                "--as",
                "jane",
                "--as-group",
                "devs",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let jane: Value = serde_json::from_str(&jane).unwrap();
    assert_eq!(jane["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        jane["status"]["userInfo"]["groups"],
        json!(["devs", "system:authenticated"])
    );

    // jane may review herself (system:basic-user of v1.28); with edit in ns-a she reads
    // endpoints but, unlike older edit roles, no longer writes them.
    let can = async |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--as", "jane"]);
        let o = kubectl(&s, &all).await;
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert_eq!(
        can(&["create", "selfsubjectreviews.authentication.k8s.io"]).await,
        "yes"
    );
    assert_eq!(can(&["get", "endpoints", "-n", "ns-a"]).await, "no");
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "jane-edit", "namespace": "ns-a" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane" }],
    });
    let r = s
        .admin()
        .post(format!(
            "{}/apis/rbac.authorization.k8s.io/v1/namespaces/ns-a/rolebindings",
            s.url
        ))
        .json(&binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while can(&["get", "endpoints", "-n", "ns-a"]).await != "yes" {
        assert!(
            std::time::Instant::now() < deadline,
            "the binding never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(can(&["update", "endpoints", "-n", "ns-a"]).await, "no");
    assert_eq!(can(&["update", "configmaps", "-n", "ns-a"]).await, "yes");
    s.stop().await;
}
