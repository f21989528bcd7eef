//! The conformance table in `tests/data/conformance.yaml`: every case, each citing the
//! Kubernetes behaviour it checks, through the reference evaluator and the compiled index.

use portcullis_rbac::{Attributes, CompiledPolicy, Policy, authorize};
use serde::Deserialize;

#[derive(Deserialize)]
struct Table {
    policy: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    why: String,
    request: Request,
    allowed: bool,
}

#[derive(Deserialize)]
struct Request {
    user: String,
    groups: Vec<String>,
    verb: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    path: Option<String>,
}

#[test]
fn every_case_of_the_conformance_table_holds() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/conformance.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let table: Table = serde_saphyr::from_str(&text).unwrap();
    assert!(table.cases.len() >= 150, "{} cases", table.cases.len());
    let policy = Policy::from_documents([("conformance.yaml", table.policy.as_str())]).unwrap();
    let compiled = CompiledPolicy::new(&policy);
    let mut failures = Vec::new();
    for (i, c) in table.cases.iter().enumerate() {
        let r = &c.request;
        let a = Attributes {
            user: r.user.clone(),
            groups: r.groups.clone(),
            verb: r.verb.clone(),
            resource_request: r.path.is_none(),
            api_group: r.group.clone().unwrap_or_default(),
            resource: r.resource.clone(),
            subresource: r.subresource.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            path: r.path.clone().unwrap_or_default(),
            ..Attributes::default()
        };
        let reference = authorize(&policy, &a).allowed;
        let index = compiled.authorize(&a).allowed;
        if reference != c.allowed || index != c.allowed {
            failures.push(format!(
                "case {i} ({}): want {}, reference {reference}, index {index}: {a:?}",
                c.why, c.allowed
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
