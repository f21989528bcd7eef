//! The double against a real kube-apiserver v1.28.4 started by the envtest launcher (when
//! `KUBEBUILDER_ASSETS` names a directory with `kube-apiserver`, e.g. `shared/envtest`): the same
//! requests to both, compared by status, Content-Type, body shape and Status message.

use portcullis_testkit::envtest::{Envtest, KubeApiServer};
use portcullis_testkit::kube_apiserver::{Config, Double};
use serde_json::{Value, json};

use crate::replay::shape;
use crate::support;

/// What, method, path, extra headers, body.
type Step<'a> = (
    &'a str,
    &'a str,
    String,
    &'a [(&'a str, &'a str)],
    Option<Value>,
);

struct Target {
    url: String,
    token: String,
    client: reqwest::Client,
}

struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

impl Target {
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut b = self
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.url),
            )
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(body) = body {
            b = b
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let r = b.send().await.unwrap();
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            content_type,
            body,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_answers_as_the_real_kube_apiserver() {
    let started = tokio::task::spawn_blocking(KubeApiServer::start)
        .await
        .unwrap()
        .unwrap();
    let real = match started {
        Envtest::Skipped(why) => {
            println!("{why}");
            return;
        }
        Envtest::Started(server) => server,
    };
    let double = Double::start(Config::new()).await.unwrap();
    let targets = [
        Target {
            url: real.url().to_owned(),
            token: real.admin_token().to_owned(),
            client: support::client_as(real.ca_pem(), "python-requests/2.34.2"),
        },
        Target {
            url: double.url().to_owned(),
            token: double.admin_token().to_owned(),
            client: support::client_as(double.ca_pem(), "python-requests/2.34.2"),
        },
    ];
    let role = |verbs: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "cmp-role", "labels": {"app": "cmp"}},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}]})
    };
    const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/cmp/roles";
    let ssr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let impersonating: &[(&str, &str)] = &[
        ("Impersonate-User", "jane"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Uid", "u-1"),
        ("Impersonate-Extra-Scopes", "view"),
    ];
    let steps: Vec<Step<'_>> = vec![
        (
            "SelfSubjectReview",
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews".into(),
            &[],
            Some(ssr.clone()),
        ),
        (
            "SelfSubjectReview impersonating",
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews".into(),
            impersonating,
            Some(ssr.clone()),
        ),
        (
            "impersonating a group without a user",
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews".into(),
            &[("Impersonate-Group", "devs")],
            Some(ssr),
        ),
        (
            "create namespace",
            "POST",
            "/api/v1/namespaces".into(),
            &[],
            Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cmp"}})),
        ),
        (
            "create Role",
            "POST",
            ROLES.into(),
            &[],
            Some(role(json!(["get"]))),
        ),
        ("get Role", "GET", format!("{ROLES}/cmp-role"), &[], None),
        (
            "list Roles",
            "GET",
            format!("{ROLES}?labelSelector=app%3Dcmp"),
            &[],
            None,
        ),
        (
            "get a missing Role (404)",
            "GET",
            format!("{ROLES}/nope"),
            &[],
            None,
        ),
        (
            "create the Role again (409)",
            "POST",
            ROLES.into(),
            &[],
            Some(role(json!(["get"]))),
        ),
        (
            "update with a stale resourceVersion (409)",
            "PUT",
            format!("{ROLES}/cmp-role"),
            &[],
            Some({
                let mut r = role(json!(["list"]));
                r["metadata"]["resourceVersion"] = json!("1");
                r
            }),
        ),
        (
            "invalid Role (422)",
            "POST",
            ROLES.into(),
            &[],
            Some({
                let mut r = role(json!([]));
                r["metadata"]["name"] = json!("bad");
                r
            }),
        ),
        (
            "delete Role",
            "DELETE",
            format!("{ROLES}/cmp-role"),
            &[],
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (what, method, path, headers, body) in steps {
        let real_answer = targets[0].send(method, &path, headers, body.clone()).await;
        let double_answer = targets[1].send(method, &path, headers, body).await;
        let mut diffs = Vec::new();
        if real_answer.status != double_answer.status {
            diffs.push(format!(
                "status {} != real {}",
                double_answer.status, real_answer.status
            ));
        }
        if real_answer.content_type != double_answer.content_type {
            diffs.push(format!(
                "Content-Type {:?} != real {:?}",
                double_answer.content_type, real_answer.content_type
            ));
        }
        shape("", &real_answer.body, &double_answer.body, &mut diffs);
        if real_answer.body.get("kind") == Some(&json!("Status"))
            && real_answer.body.get("message") != double_answer.body.get("message")
        {
            diffs.push(format!(
                "message {} != real {}",
                double_answer.body["message"], real_answer.body["message"]
            ));
        }
        if let (Value::String(a), Value::String(b)) = (&real_answer.body, &double_answer.body)
            && a != b
        {
            diffs.push(format!("text {b:?} != real {a:?}"));
        }
        if what.starts_with("SelfSubjectReview") {
            assert_eq!(
                real_answer.body["status"], double_answer.body["status"],
                "{what}"
            );
        }
        println!(
            "{what}: {}",
            if diffs.is_empty() {
                "same".to_owned()
            } else {
                diffs.join("; ")
            }
        );
        if !diffs.is_empty() {
            failures.push(format!("{what}: {}", diffs.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "the double answers differently:\n{}",
        failures.join("\n")
    );
}
