//! `portcullis can-i` as a binary: the recorded kube-apiserver answers replayed through
//! `--batch`, and the single-question form's output and exit codes.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn recorded(name: &str) -> String {
    format!(
        "{}/../rbac/tests/data/recorded/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn batch_replays_the_recorded_apiserver_answers() {
    let out = Command::new(BIN)
        .args([
            "can-i",
            "--policy",
            &recorded("policy.yaml"),
            "--batch",
            &recorded("requests.jsonl"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<serde_json::Value> = std::fs::read_to_string(recorded("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 312);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g["allowed"], w["allowed"], "line {}", i + 1);
        assert!(g["reason"].is_string());
    }
}

#[test]
fn single_questions_answer_yes_or_no_with_exit_codes() {
    let ask = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("can-i")
            .args(args)
            .args(["--policy", &recorded("policy.yaml")]);
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };
    assert_eq!(
        ask(&["get", "pods", "-n", "ns-a", "--as", "alice"]),
        (0, "yes".into())
    );
    assert_eq!(
        ask(&["delete", "pods", "-n", "ns-a", "--as", "alice"]),
        (1, "no".into())
    );
    assert_eq!(
        ask(&[
            "get",
            "/healthz",
            "--as",
            "x",
            "--as-group",
            "system:unauthenticated"
        ]),
        (0, "yes".into())
    );
    let (code, _) = ask(&["get", "pods"]);
    assert_eq!(code, 2, "no --as is an error");
}

#[test]
fn a_bad_policy_file_is_an_error_naming_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Rolebinding\nmetadata: {name: x}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["can-i", "get", "pods", "--as", "a", "--policy"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml: document 1: kind: unknown kind"),
        "{err}"
    );
}

#[test]
fn who_can_lists_subjects_with_their_binding_and_role() {
    let out = Command::new(BIN)
        .args([
            "who-can",
            "get",
            "pods",
            "-n",
            "ns-a",
            "-o",
            "json",
            "--policy",
            &recorded("policy.yaml"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answers.iter().any(|w| w["kind"] == "User"
        && w["name"] == "alice"
        && w["binding"] == "RoleBinding/ns-a/rb-alice-pod-reader"
        && w["role"] == "ClusterRole/cr-pod-reader"));
    assert!(
        !answers
            .iter()
            .any(|w| w["name"] == "alice" && w["binding"].as_str().unwrap().contains("ns-b"))
    );
    let nobody = Command::new(BIN)
        .args([
            "who-can",
            "frobnicate",
            "gizmos.nowhere.example",
            "--policy",
            &recorded("policy.yaml"),
        ])
        .output()
        .unwrap();
    // Only cluster-admin's `*` grants a made-up verb; system:masters holds it.
    assert!(String::from_utf8_lossy(&nobody.stdout).contains("system:masters"));
}

#[test]
fn auth_rules_lists_what_a_user_holds_in_a_namespace() {
    let out = Command::new(BIN)
        .args([
            "auth",
            "rules",
            "--as",
            "alice",
            "-n",
            "ns-a",
            "-o",
            "json",
            "--policy",
            &recorded("policy.yaml"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = status["resourceRules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "pods")),
        "{status}"
    );
    assert_eq!(status["incomplete"], false);
}
