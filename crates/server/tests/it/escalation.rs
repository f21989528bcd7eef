//! RBAC writes answered as kube-apiserver v1.28's RBAC registry answers them: the recorded
//! escalation vectors (`../shared/escalation-vectors/`) replayed over the real HTTP stack, as
//! recorded (an admin client certificate with `Impersonate-User` / `Impersonate-Group`), and one
//! named test for each kind of difference that replay found.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestServer;

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

/// The shared ground truth, a sibling of the workspace (`shared/` next to the clone).
fn vectors(name: &str) -> String {
    let path = format!(
        "{}/../../../shared/escalation-vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{path}: {e}; the shared ground truth must be checked out next to the workspace")
    })
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "Role" => "roles",
        "ClusterRole" => "clusterroles",
        "RoleBinding" => "rolebindings",
        "ClusterRoleBinding" => "clusterrolebindings",
        other => panic!("not an RBAC kind: {other}"),
    }
}

/// The collection URL path of `object` (POST), and its own (PUT, GET, DELETE).
fn paths(object: &Value) -> (String, String) {
    let kind = object["kind"].as_str().unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    let collection = match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{RBAC}/namespaces/{ns}/{}", plural(kind)),
        None => format!("{RBAC}/{}", plural(kind)),
    };
    let one = format!("{collection}/{name}");
    (collection, one)
}

/// What the server answered: status, `Status.reason`, `Status.message` (empty for 2xx), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    reason: String,
    message: String,
    body: Value,
}

/// A management plane with the escalation vectors' base policy, driven as the recording was.
struct Writes {
    s: TestServer,
    admin: reqwest::Client,
}

impl Writes {
    async fn start() -> Writes {
        let s = TestServer::start().await;
        let admin = s.admin();
        let w = Writes { s, admin };
        let docs: Vec<Value> = serde_saphyr::from_multiple(&vectors("policy.yaml")).unwrap();
        for doc in docs.iter().filter(|d| d["apiVersion"] == RBAC[6..]) {
            let a = w.admin_write(Method::POST, doc).await;
            assert_eq!(a.status, 201, "{doc}: {a:?}");
        }
        w.settle().await;
        w
    }

    async fn stop(self) {
        self.s.stop().await;
    }

    /// Waits until the authorizer's snapshot holds everything written so far: a sentinel
    /// binding written last is visible only once the snapshot is at least that recent (the
    /// policy is reloaded whole, at one revision).
    async fn settle(&self) {
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": "sentinel" },
            "rules": [{ "apiGroups": ["example.com"], "resources": ["sentinels"], "verbs": ["get"] }],
        });
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": "sentinel" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sentinel" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "sentinel" }],
        });
        self.admin_write(Method::POST, &role).await;
        self.admin_write(Method::POST, &binding).await;
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": { "user": "sentinel", "resourceAttributes": { "verb": "get", "group": "example.com", "resource": "sentinels" } },
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r: Value = self
                .admin
                .post(format!(
                    "{}/apis/authorization.k8s.io/v1/subjectaccessreviews",
                    self.s.url
                ))
                .json(&review)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if r["status"]["allowed"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "the RBAC policy never settled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for o in [&binding, &role] {
            self.delete(o).await;
        }
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        impersonate: Option<(&str, &[String])>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = client.request(method, format!("{}{path}", self.s.url));
        if let Some((user, groups)) = impersonate {
            req = req.header("Impersonate-User", user);
            for g in groups {
                req = req.header("Impersonate-Group", g);
            }
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let (reason, message) = if status < 300 {
            (String::new(), String::new())
        } else {
            (
                body["reason"].as_str().unwrap_or_default().to_owned(),
                body["message"].as_str().unwrap_or_default().to_owned(),
            )
        };
        Answer {
            status,
            reason,
            message,
            body,
        }
    }

    async fn admin_write(&self, method: Method, object: &Value) -> Answer {
        let (collection, one) = paths(object);
        let path = if method == Method::POST {
            collection
        } else {
            one
        };
        self.send(&self.admin, None, method, &path, Some(object))
            .await
    }

    /// `user` (in `groups`) writes `object`: POST to its collection (`create`) or PUT to its
    /// URL (`update`), through the admin's credential and impersonation, as recorded.
    async fn write_as(&self, user: &str, groups: &[&str], verb: &str, object: &Value) -> Answer {
        let (collection, one) = paths(object);
        let (method, path) = match verb {
            "create" => (Method::POST, collection),
            "update" => (Method::PUT, one),
            other => panic!("unknown verb {other}"),
        };
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        self.send(
            &self.admin,
            Some((user, &groups)),
            method,
            &path,
            Some(object),
        )
        .await
    }

    /// Removes `object` if it exists (finalizers first, or the delete only marks it).
    async fn delete(&self, object: &Value) {
        let (_, one) = paths(object);
        let got = self.send(&self.admin, None, Method::GET, &one, None).await;
        if got.status != 200 {
            return;
        }
        if got.body["metadata"]["finalizers"].is_array() {
            let r = self
                .admin
                .patch(format!("{}{one}", self.s.url))
                .header("Content-Type", "application/merge-patch+json")
                .body(json!({ "metadata": { "finalizers": null } }).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
        let gone = self
            .send(&self.admin, None, Method::DELETE, &one, None)
            .await;
        assert_eq!(gone.status, 200, "{gone:?}");
    }

    /// One attempt of `attempts.jsonl`, and the clean-up after it.
    async fn attempt(&self, a: &Value) -> Answer {
        let mut object = a["object"].clone();
        let existing = a.get("existing").filter(|e| !e.is_null());
        if let Some(existing) = existing {
            let created = self.admin_write(Method::POST, existing).await;
            assert_eq!(created.status, 201, "{existing}: {created:?}");
            if a["copy_server_metadata"] == true {
                for field in ["uid", "resourceVersion", "creationTimestamp"] {
                    object["metadata"][field] = created.body["metadata"][field].clone();
                }
            }
        }
        let groups: Vec<&str> = a["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap())
            .collect();
        let answer = self
            .write_as(
                a["user"].as_str().unwrap(),
                &groups,
                a["verb"].as_str().unwrap(),
                &object,
            )
            .await;
        self.delete(&object).await;
        answer
    }
}

/// The message up to the rules dump (whose layout the recording calls informational).
fn before_dump(message: &str) -> &str {
    message.split('\n').next().unwrap_or_default()
}

#[tokio::test]
async fn the_recorded_escalation_vectors_are_answered_as_kube_apiserver_answered_them() {
    let w = Writes::start().await;
    let attempts: Vec<Value> = vectors("attempts.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<Value> = vectors("expected.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(attempts.len(), expected.len());
    let mut differences = Vec::new();
    let mut exact_messages = 0;
    for (i, (a, want)) in attempts.iter().zip(&expected).enumerate() {
        let got = w.attempt(a).await;
        let (status, reason, message) = (
            want["status"].as_u64().unwrap() as u16,
            want["reason"].as_str().unwrap(),
            want["message"].as_str().unwrap(),
        );
        if got.message == message {
            exact_messages += 1;
        }
        if got.status != status
            || got.reason != reason
            || before_dump(&got.message) != before_dump(message)
        {
            differences.push(format!(
                "#{i} {} ({}): apiserver {status} {reason} {message:?}\n   portcullis {} {} {:?}",
                a["note"], a["user"], got.status, got.reason, got.message
            ));
        } else if got.message != message {
            eprintln!(
                "#{i} rules dump differs:\n  apiserver  {message:?}\n  portcullis {:?}",
                got.message
            );
        }
    }
    eprintln!(
        "{} of {} statuses and reasons match; {exact_messages} of {} messages match exactly",
        attempts.len() - differences.len(),
        attempts.len(),
        attempts.len()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    w.stop().await;
}

fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": name, "namespace": ns }, "rules": rules,
    })
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": name }, "rules": rules,
    })
}

fn role_binding(ns: &str, name: &str, kind: &str, role: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": name, "namespace": ns },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "someone" }],
    })
}

/// Kind 1: the rule resolver's lookup error is the answer when the writer has no `bind`.
#[tokio::test]
async fn a_binding_to_a_missing_role_is_not_found_unless_the_writer_may_bind_it() {
    let w = Writes::start().await;
    // u-nsadmin (admin in ns-a) has no bind: 404, with the lookup's message.
    let a = w
        .write_as(
            "u-nsadmin",
            &[],
            "create",
            &role_binding("ns-a", "to-ghost", "Role", "ghost"),
        )
        .await;
    assert_eq!(
        (a.status, a.reason.as_str(), a.message.as_str()),
        (
            404,
            "NotFound",
            "roles.rbac.authorization.k8s.io \"ghost\" not found"
        )
    );
    let a = w
        .write_as(
            "u-nsadmin",
            &[],
            "create",
            &role_binding("ns-a", "to-ghost", "ClusterRole", "ghost"),
        )
        .await;
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(
        a.message,
        "clusterroles.rbac.authorization.k8s.io \"ghost\" not found"
    );
    // u-binder-any may bind any role in ns-b: the missing role is no obstacle.
    let a = w
        .write_as(
            "u-binder-any",
            &[],
            "create",
            &role_binding("ns-b", "to-ghost", "Role", "ghost"),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    w.stop().await;
}

/// Kind 2: finalizers and ownerReferences are the garbage collector's; changing only them is
/// not a grant.
#[tokio::test]
async fn updates_changing_only_gc_metadata_skip_the_escalation_check() {
    let w = Writes::start().await;
    // u-limited holds far less than admin, and may update RoleBindings in ns-a.
    let existing = role_binding("ns-a", "gc", "ClusterRole", "admin");
    let created = w.admin_write(Method::POST, &existing).await;
    assert_eq!(created.status, 201);
    let mut body = existing.clone();
    for field in ["uid", "resourceVersion", "creationTimestamp"] {
        body["metadata"][field] = created.body["metadata"][field].clone();
    }
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    body["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "0b9e2c4e-0000-4000-8000-000000000001",
    }]);
    let a = w.write_as("u-limited", &[], "update", &body).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["metadata"]["finalizers"],
        json!(["example.com/hold"])
    );
    // Without the stored uid and resourceVersion the body changes more than GC fields: the
    // escalation check runs, and refuses.
    let mut changed = existing.clone();
    changed["metadata"]["finalizers"] = json!(["example.com/other"]);
    let a = w.write_as("u-limited", &[], "update", &changed).await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        a.message
            .contains("is attempting to grant RBAC permissions not currently held")
    );
    w.delete(&existing).await;
    w.stop().await;
}

/// Kind 3: RBAC storage creates on update; the create verb is needed too.
#[tokio::test]
async fn a_put_to_a_missing_rbac_object_creates_it_with_the_create_verb_and_the_checks() {
    let w = Writes::start().await;
    let rules = json!([{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] }]);
    // u-updater may update but not create roles in ns-a, and holds get on configmaps.
    let a = w
        .write_as(
            "u-updater",
            &[],
            "update",
            &role("ns-a", "fresh", rules.clone()),
        )
        .await;
    assert_eq!(
        (a.status, a.reason.as_str(), a.message.as_str()),
        (
            403,
            "Forbidden",
            "roles.rbac.authorization.k8s.io \"fresh\" is forbidden: "
        )
    );
    // With rules the writer does not hold, the escalation check answers first.
    let wider = json!([{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }]);
    let a = w
        .write_as(
            "u-updater",
            &[],
            "update",
            &role("ns-a", "fresh", wider.clone()),
        )
        .await;
    assert_eq!(a.status, 403);
    assert!(
        a.message.contains(
            "not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
        ),
        "{a:?}"
    );
    // u-star-ns (everything in ns-a) creates by PUT: 201.
    let a = w
        .write_as("u-star-ns", &[], "update", &role("ns-a", "fresh", wider))
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["metadata"]["name"], "fresh");
    assert!(a.body["metadata"]["uid"].is_string());
    // And a PUT to it now is an ordinary update.
    let a = w
        .write_as("u-star-ns", &[], "update", &role("ns-a", "fresh", rules))
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    w.stop().await;
}

/// Kind 4: kube-apiserver's validation, after the escalation checks.
#[tokio::test]
async fn role_ref_api_group_and_kind_are_validated_and_role_ref_is_immutable() {
    let w = Writes::start().await;
    let mut b = role_binding("ns-a", "bad-group", "ClusterRole", "view");
    b["roleRef"]["apiGroup"] = json!("example.com");
    let a = w.write_as("u-nsadmin", &[], "create", &b).await;
    assert_eq!(
        (a.status, a.reason.as_str(), a.message.as_str()),
        (
            422,
            "Invalid",
            "RoleBinding.rbac.authorization.k8s.io \"bad-group\" is invalid: roleRef.apiGroup: Unsupported value: \"example.com\": supported values: \"rbac.authorization.k8s.io\""
        )
    );
    assert_eq!(
        a.body["details"]["causes"][0]["reason"],
        "FieldValueNotSupported"
    );
    // An unknown kind: 422 naming the field (kube-apiserver answers 500 here).
    let b = role_binding("ns-a", "bad-kind", "Group", "view");
    let a = w.write_as("u-nsadmin", &[], "create", &b).await;
    assert_eq!(a.status, 422, "{a:?}");
    assert!(
        a.message
            .contains("roleRef.kind: Unsupported value: \"Group\""),
        "{a:?}"
    );
    // An empty apiGroup is defaulted, as the v1 API does.
    let mut b = role_binding("ns-a", "defaulted", "ClusterRole", "view");
    b["roleRef"]["apiGroup"] = json!("");
    let a = w.write_as("u-nsadmin", &[], "create", &b).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    let changed = role_binding("ns-a", "defaulted", "ClusterRole", "edit");
    let a = w.admin_write(Method::PUT, &changed).await;
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(
        a.message,
        "RoleBinding.rbac.authorization.k8s.io \"defaulted\" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"
    );
    w.stop().await;
}

/// Kind 5: `escalate` is authorized with the request's attributes; a create names nothing.
#[tokio::test]
async fn escalate_limited_by_resource_names_does_not_allow_creating_that_role() {
    let w = Writes::start().await;
    let all = json!([{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }]);
    // u-rn has escalate on roles named special-role only.
    let a = w
        .write_as(
            "u-rn",
            &[],
            "create",
            &role("ns-a", "special-role", all.clone()),
        )
        .await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.message.starts_with("roles.rbac.authorization.k8s.io \"special-role\" is forbidden: user \"u-rn\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"), "{a:?}");
    // Updating it names it in the URL: escalate applies.
    let existing = role("ns-a", "special-role", json!([]));
    assert_eq!(w.admin_write(Method::POST, &existing).await.status, 201);
    let a = w
        .write_as(
            "u-rn",
            &[],
            "update",
            &role("ns-a", "special-role", all.clone()),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    // Any other name is checked in full.
    let other = role("ns-a", "not-special", json!([]));
    assert_eq!(w.admin_write(Method::POST, &other).await.status, 201);
    let a = w
        .write_as("u-rn", &[], "update", &role("ns-a", "not-special", all))
        .await;
    assert_eq!(a.status, 403, "{a:?}");
    w.stop().await;
}

/// Kind 6: escalate covers aggregationRule; without it, full authority is needed to set,
/// change or remove one.
#[tokio::test]
async fn aggregation_rules_need_escalate_or_full_authority_also_to_be_removed() {
    let w = Writes::start().await;
    let mut aggregated = cluster_role("agg", json!([]));
    aggregated["aggregationRule"] =
        json!({ "clusterRoleSelectors": [{ "matchLabels": { "example.com/agg": "true" } }] });
    // u-cr-escalator has escalate on clusterroles: allowed.
    let a = w
        .write_as("u-cr-escalator", &[], "create", &aggregated)
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    // u-cr-creator has create/update but not escalate: refused, to set it...
    let mut other = aggregated.clone();
    other["metadata"]["name"] = json!("agg-2");
    let a = w.write_as("u-cr-creator", &[], "create", &other).await;
    assert_eq!(
        (a.status, a.message.as_str()),
        (
            403,
            "clusterroles.rbac.authorization.k8s.io \"agg-2\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
        )
    );
    // ...and to remove it (the stored object has one).
    let plain = cluster_role(
        "agg",
        json!([{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] }]),
    );
    let a = w.write_as("u-cr-creator", &[], "update", &plain).await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        a.message
            .ends_with("must have cluster-admin privileges to use the aggregationRule")
    );
    // u-cr-escalator may remove it.
    let a = w.write_as("u-cr-escalator", &[], "update", &plain).await;
    assert_eq!(a.status, 200, "{a:?}");
    w.stop().await;
}

/// Kind 8: the message of a refused grant, as kube-apiserver writes it.
#[tokio::test]
async fn escalation_messages_name_user_groups_and_the_compacted_missing_rules() {
    let w = Writes::start().await;
    let wanted = json!([
        { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "delete"] },
        { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"], "resourceNames": ["web"] },
    ]);
    let a = w
        .write_as("u-limited", &[], "create", &role("ns-a", "msg", wanted))
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.message,
        "roles.rbac.authorization.k8s.io \"msg\" is forbidden: user \"u-limited\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"watch\" \"delete\"]}\n\
         {APIGroups:[\"apps\"], Resources:[\"deployments\"], ResourceNames:[\"web\"], Verbs:[\"get\"]}"
    );
    w.stop().await;
}

/// As kube-apiserver's rule resolver, which reads storage: a role written a moment ago is
/// there for the next write's escalation check (the policy reload is waited for).
#[tokio::test]
async fn a_role_just_written_is_seen_by_the_next_bindings_escalation_check() {
    let w = Writes::start().await;
    for i in 0..5 {
        let name = format!("mine-{i}");
        let rules = json!([{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] }]);
        let a = w
            .write_as("u-limited", &[], "create", &role("ns-a", &name, rules))
            .await;
        assert_eq!(a.status, 201, "{a:?}");
        let a = w
            .write_as(
                "u-limited",
                &[],
                "create",
                &role_binding("ns-a", &name, "Role", &name),
            )
            .await;
        assert_eq!(a.status, 201, "{a:?}");
    }
    w.stop().await;
}

/// A requester bound to a role that does not exist: kube-apiserver's authorizer denies with the
/// lookup error as its reason, and the escalation check lists it after the missing rules.
#[tokio::test]
async fn a_dangling_binding_is_named_in_denials_and_in_escalation_messages() {
    let w = Writes::start().await;
    // u-dangling holds `limited` in ns-a, plus a binding to the missing Role ghost-role.
    let a = w
        .write_as(
            "u-dangling",
            &[],
            "create",
            &cluster_role("nope", json!([])),
        )
        .await;
    assert_eq!(
        a.message,
        "clusterroles.rbac.authorization.k8s.io is forbidden: User \"u-dangling\" cannot create resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
    );
    let a = w
        .write_as(
            "u-dangling",
            &[],
            "create",
            &json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": "x", "namespace": "ns-a" }, "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" }, "subjects": [] }),
        )
        .await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        a.message.ends_with(
            "; resolution errors: [roles.rbac.authorization.k8s.io \"ghost-role\" not found]"
        ),
        "{a:?}"
    );
    // In ns-a, where the dangling binding is, a denial carries the authorizer's reason.
    let a = w
        .send(
            &w.admin,
            Some(("u-dangling", &[])),
            Method::PATCH,
            &format!("{RBAC}/namespaces/ns-a/roles/limited"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        (a.status, a.message.as_str()),
        (
            403,
            "roles.rbac.authorization.k8s.io \"limited\" is forbidden: User \"u-dangling\" cannot patch resource \"roles\" in API group \"rbac.authorization.k8s.io\" in the namespace \"ns-a\": RBAC: role.rbac.authorization.k8s.io \"ghost-role\" not found"
        )
    );
    w.stop().await;
}
