//! Replays SubjectAccessReviews recorded from a real kube-apiserver through the same code path
//! as `portcullis can-i --batch`; every `allowed` must match the server's.

use portcullis_rbac::batch::{self, Answer};
use portcullis_rbac::{CompiledPolicy, Policy};

fn data(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/data/recorded/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn every_recorded_decision_is_reproduced() {
    let policy_text = data("policy.yaml");
    let policy = Policy::from_documents([("policy.yaml", policy_text.as_str())]).unwrap();
    let requests = data("requests.jsonl");
    let mut out = Vec::new();
    let errors = batch::run(&CompiledPolicy::new(&policy), requests.as_bytes(), &mut out).unwrap();
    assert_eq!(errors, 0);
    let got: Vec<Answer> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<Answer> = data("expected.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    let mismatches: Vec<String> = requests
        .lines()
        .zip(got.iter().zip(&want))
        .filter(|(_, (g, w))| g.allowed != w.allowed)
        .map(|(req, (g, w))| {
            format!(
                "{req}\n  got {} ({}), apiserver {} ({})",
                g.allowed, g.reason, w.allowed, w.reason
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        want.len(),
        mismatches.join("\n")
    );
}

#[test]
fn allowed_reasons_name_the_granting_binding_as_the_apiserver_does() {
    let policy_text = data("policy.yaml");
    let policy = Policy::from_documents([("policy.yaml", policy_text.as_str())]).unwrap();
    let first = data("requests.jsonl").lines().next().unwrap().to_owned();
    let mut out = Vec::new();
    batch::run(&CompiledPolicy::new(&policy), first.as_bytes(), &mut out).unwrap();
    let got: Answer = serde_json::from_slice(&out[..out.len() - 1]).unwrap();
    let want: Answer =
        serde_json::from_str(data("expected.jsonl").lines().next().unwrap()).unwrap();
    assert_eq!(got, want);
}
