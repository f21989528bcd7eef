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

// === at real scale ===

use portcullis_rbac::batch::SubjectAccessReviewSpec;
use portcullis_rbac::{Policy, authorize};
use portcullis_testkit::rbac_dump::{self, Size};

/// Runs `can-i --batch` over `dump` (a file in `dir`) and `n` generated reviews; checks that
/// every review is answered in order, and a sample of the answers against the reference
/// evaluator (allowed and reason alike). Returns how many were allowed.
fn batch_agrees_with_the_reference(
    dir: &std::path::Path,
    dump: &str,
    size: Size,
    n: usize,
) -> usize {
    let reviews = dir.join("reviews.jsonl");
    let lines = rbac_dump::reviews_jsonl(size, n);
    std::fs::write(&reviews, &lines).unwrap();
    let out = Command::new(BIN)
        .args([
            "can-i",
            "--policy",
            dump,
            "--batch",
            reviews.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), n);
    let text = std::fs::read_to_string(dump).unwrap();
    let policy = Policy::from_documents([(dump, text.as_str())]).unwrap();
    let mut sampled = 0;
    for (i, (line, answer)) in lines.lines().zip(&answers).enumerate().step_by(37) {
        let spec: SubjectAccessReviewSpec = serde_json::from_str(line).unwrap();
        let a = spec.attributes().unwrap();
        let want = authorize(&policy, &a);
        assert_eq!(answer["allowed"], want.allowed, "line {}: {line}", i + 1);
        let reason = answer["reason"].as_str().unwrap();
        if want.allowed {
            // Where several bindings grant, kube-apiserver names whichever its authorizer
            // visits first (its listers' order is not fixed): the reason must name one that
            // really binds one of the requester's names.
            assert!(
                names_a_granting_binding(&policy, &a, reason),
                "line {}: {reason}",
                i + 1
            );
        } else {
            assert_eq!(reason, "", "line {}", i + 1);
        }
        sampled += 1;
    }
    assert!(sampled > n / 40);
    answers.iter().filter(|a| a["allowed"] == true).count()
}

/// Whether `reason` (`RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to Group "g"`)
/// names a binding of `policy` that binds one of the requester's names to that role.
fn names_a_granting_binding(
    policy: &Policy,
    a: &portcullis_rbac::Attributes,
    reason: &str,
) -> bool {
    let quoted: Vec<&str> = reason.split('"').skip(1).step_by(2).collect();
    let [binding, role, subject] = quoted[..] else {
        return false;
    };
    let (role_ref, subjects) = if reason.starts_with("RBAC: allowed by ClusterRoleBinding") {
        let Some(b) = policy.cluster_role_bindings.get(binding) else {
            return false;
        };
        (&b.role_ref, &b.subjects)
    } else {
        // `NAME/NAMESPACE`, as kube-apiserver writes it.
        let binding = binding.split('/').next().unwrap();
        let Some(b) = policy
            .role_bindings
            .get(&(a.namespace.clone(), binding.to_owned()))
        else {
            return false;
        };
        (&b.role_ref, &b.subjects)
    };
    let requester = std::iter::once(&a.user).chain(&a.groups);
    role_ref.name == role
        && subjects.iter().any(|s| s.name == subject)
        && requester.into_iter().any(|n| n == subject)
}

#[test]
fn batch_over_a_large_clusters_dump_in_one_json_file_agrees_with_the_reference() {
    // 50 ClusterRoles, 10,000 ClusterRoleBindings, 2,000 Roles and 50,000 RoleBindings in one
    // `List`, as kubectl prints it: once refused by a YAML parser budget.
    let dir = tempfile::tempdir().unwrap();
    let size = Size::large(10_000);
    let dump = dir.path().join("dump.json");
    std::fs::write(&dump, rbac_dump::policy_json(size)).unwrap();
    let allowed = batch_agrees_with_the_reference(dir.path(), dump.to_str().unwrap(), size, 20_000);
    // Both answers are well represented, so a wrong one in the sample is seen.
    assert!((1_000..19_000).contains(&allowed), "{allowed} allowed");

    // who-can answers from the same dump, exactly: every subject it names holds the grant.
    let out = Command::new(BIN)
        .args(["who-can", "list", "secrets", "-n", "ns-7", "-o", "json"])
        .args(["--policy", dump.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let subjects: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(subjects.len() > 100, "{}", subjects.len());
    let text = std::fs::read_to_string(&dump).unwrap();
    let policy = Policy::from_documents([("dump.json", text.as_str())]).unwrap();
    for s in subjects.iter().step_by(23) {
        let name = s["name"].as_str().unwrap().to_owned();
        let a = portcullis_rbac::Attributes {
            user: if s["kind"] == "User" {
                name.clone()
            } else {
                "nobody".into()
            },
            groups: if s["kind"] == "Group" {
                vec![name]
            } else {
                vec![]
            },
            verb: "list".into(),
            resource_request: true,
            resource: "secrets".into(),
            namespace: "ns-7".into(),
            ..portcullis_rbac::Attributes::default()
        };
        assert!(authorize(&policy, &a).allowed, "{s}");
    }
}

#[test]
fn batch_over_a_yaml_dump_past_the_network_budget_and_over_a_small_policy() {
    let dir = tempfile::tempdir().unwrap();
    // 11,250 objects of YAML: more nodes than a request from the network may hold.
    let size = Size {
        cluster_roles: 50,
        cluster_role_bindings: 1_000,
        role_bindings: 10_000,
        namespaces: 200,
    };
    let json: serde_json::Value = serde_json::from_str(&rbac_dump::policy_json(size)).unwrap();
    let dump = dir.path().join("dump.yaml");
    std::fs::write(&dump, serde_saphyr::to_string(&json).unwrap()).unwrap();
    batch_agrees_with_the_reference(dir.path(), dump.to_str().unwrap(), size, 5_000);

    let small = Size {
        cluster_roles: 10,
        cluster_role_bindings: 100,
        role_bindings: 300,
        namespaces: 10,
    };
    let dump = dir.path().join("small.json");
    std::fs::write(&dump, rbac_dump::policy_json(small)).unwrap();
    let allowed = batch_agrees_with_the_reference(dir.path(), dump.to_str().unwrap(), small, 5_000);
    assert!(allowed > 0);
}

#[test]
fn batch_lines_that_fail_answer_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let reviews = dir.path().join("reviews.jsonl");
    let good = r#"{"user":"alice","resourceAttributes":{"namespace":"ns-a","verb":"get","resource":"pods"}}"#;
    let long = format!(r#"{{"user":"{}"}}"#, "x".repeat(70 * 1024));
    std::fs::write(
        &reviews,
        format!("{good}\nnot json\n{long}\n\n{good}\n{{\"user\":\"a\"}}\n{good}"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["can-i", "--policy", &recorded("policy.yaml")])
        .args(["--batch", reviews.to_str().unwrap()])
        .output()
        .unwrap();
    // Some lines were bad: exit 2, and every line still has its answer in its place.
    assert_eq!(out.status.code(), Some(2));
    let answers: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert_eq!(answers[0]["allowed"], true);
    assert!(
        answers[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("error: line 2: not a SubjectAccessReview spec")
    );
    assert_eq!(
        answers[2]["reason"],
        "error: line 3: longer than 65536 bytes"
    );
    assert_eq!(answers[3]["allowed"], true);
    assert!(
        answers[4]["reason"]
            .as_str()
            .unwrap()
            .starts_with("error: line 6: exactly one of")
    );
    assert_eq!(answers[5]["allowed"], true);
}
