//! The management API through the real HTTP stack: CRUD, conflicts, validation errors as
//! `Status`, watch, paging, selectors, bounded input.

use serde_json::{Value, json};

use crate::support::TestServer;

const BASE: &str = "/apis/portcullis.dev/v1alpha1";

fn workspace(name: &str) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": { "name": name, "labels": { "tier": "gold" } },
        "spec": { "displayName": format!("Workspace {name}") },
    })
}

async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    ct: &str,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut req = c.request(method, url);
    if let Some(b) = body {
        req = req.header("Content-Type", ct).body(b);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post(s: &TestServer, path: &str, v: &Value) -> (u16, Value) {
    send(
        &s.admin(),
        reqwest::Method::POST,
        format!("{}{path}", s.url),
        "application/json",
        Some(v.to_string().into_bytes()),
    )
    .await
}

async fn get(s: &TestServer, path: &str) -> (u16, Value) {
    send(
        &s.admin(),
        reqwest::Method::GET,
        format!("{}{path}", s.url),
        "",
        None,
    )
    .await
}

#[tokio::test]
async fn discovery_lists_the_kinds() {
    let s = TestServer::start().await;
    let (code, list) = get(&s, BASE).await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "APIResourceList");
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for plural in [
        "workspaces",
        "projects",
        "clusters",
        "groups",
        "clients",
        "users",
        "connectors",
    ] {
        assert!(names.contains(&plural), "{plural} missing from {names:?}");
    }
    let (_, groups) = get(&s, "/apis").await;
    assert_eq!(groups["groups"][0]["name"], "portcullis.dev");
    s.stop().await;
}

#[tokio::test]
async fn create_get_update_delete_with_resource_versions() {
    let s = TestServer::start().await;
    let (code, created) = post(&s, &format!("{BASE}/workspaces"), &workspace("team-a")).await;
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(created["metadata"]["uid"].is_string());
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert_eq!(created["metadata"]["generation"], 1);

    let (code, again) = post(&s, &format!("{BASE}/workspaces"), &workspace("team-a")).await;
    assert_eq!(code, 409);
    assert_eq!(again["reason"], "AlreadyExists");

    let (code, got) = get(&s, &format!("{BASE}/workspaces/team-a")).await;
    assert_eq!(code, 200);
    assert_eq!(got["metadata"]["resourceVersion"], rv.as_str());

    // An update with the current resourceVersion wins; a second with the same (stale) one conflicts.
    let mut edit = got.clone();
    edit["spec"]["displayName"] = json!("renamed");
    let put = |body: Value| {
        let s = &s;
        async move {
            send(
                &s.admin(),
                reqwest::Method::PUT,
                format!("{}{BASE}/workspaces/team-a", s.url),
                "application/json",
                Some(body.to_string().into_bytes()),
            )
            .await
        }
    };
    let (code, updated) = put(edit.clone()).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_ne!(updated["metadata"]["resourceVersion"], rv.as_str());
    let (code, conflict) = put(edit).await;
    assert_eq!(code, 409);
    assert_eq!(conflict["reason"], "Conflict");

    // Merge patch.
    let (code, patched) = send(
        &s.admin(),
        reqwest::Method::PATCH,
        format!("{}{BASE}/workspaces/team-a", s.url),
        "application/merge-patch+json",
        Some(br#"{"metadata":{"labels":{"tier":"silver"}}}"#.to_vec()),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["metadata"]["labels"]["tier"], "silver");
    assert_eq!(patched["spec"]["displayName"], "renamed");
    assert_eq!(
        patched["metadata"]["generation"], 2,
        "label changes do not bump generation"
    );

    let (code, deleted) = send(
        &s.admin(),
        reqwest::Method::DELETE,
        format!("{}{BASE}/workspaces/team-a", s.url),
        "",
        None,
    )
    .await;
    assert_eq!(code, 200, "{deleted}");
    let (code, missing) = get(&s, &format!("{BASE}/workspaces/team-a")).await;
    assert_eq!(code, 404);
    assert_eq!(missing["reason"], "NotFound");
    assert_eq!(
        missing["message"],
        "workspaces.portcullis.dev \"team-a\" not found"
    );
    s.stop().await;
}

#[tokio::test]
async fn unknown_fields_and_invalid_values_are_status_errors_naming_the_field() {
    let s = TestServer::start().await;
    let mut unknown = workspace("ok");
    unknown["spec"]["colour"] = json!("red");
    let (code, status) = post(&s, &format!("{BASE}/workspaces"), &unknown).await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(status["reason"], "BadRequest");
    assert!(
        status["message"].as_str().unwrap().contains("spec.colour"),
        "{status}"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec.colour");

    let (code, status) = post(&s, &format!("{BASE}/workspaces"), &workspace("Not_A_Name")).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    s.stop().await;
}

#[tokio::test]
async fn bodies_are_bounded_and_typed() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 4096).await;
    let mut big = workspace("big");
    big["metadata"]["annotations"] = json!({ "a": "x".repeat(8192) });
    let (code, status) = post(&s, &format!("{BASE}/workspaces"), &big).await;
    assert_eq!(code, 413, "{status}");
    assert_eq!(status["reason"], "RequestEntityTooLarge");

    let (code, status) = send(
        &s.admin(),
        reqwest::Method::POST,
        format!("{}{BASE}/workspaces", s.url),
        "application/json",
        Some(b"{\"apiVersion\":".to_vec()),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{status}"
    );

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let (code, status) = send(
        &s.admin(),
        reqwest::Method::POST,
        format!("{}{BASE}/workspaces", s.url),
        "application/json",
        Some(deep.into_bytes()),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        status["message"].as_str().unwrap().contains("nests deeper"),
        "{status}"
    );

    let (code, status) = send(
        &s.admin(),
        reqwest::Method::POST,
        format!("{}{BASE}/workspaces", s.url),
        "application/xml",
        Some(b"<a/>".to_vec()),
    )
    .await;
    assert_eq!(code, 415);
    assert_eq!(status["reason"], "UnsupportedMediaType");
    s.stop().await;
}

#[tokio::test]
async fn list_pages_with_continue_and_filters_by_label() {
    let s = TestServer::start().await;
    for i in 0..5 {
        let mut w = workspace(&format!("ws-{i}"));
        if i % 2 == 0 {
            w["metadata"]["labels"]["tier"] = json!("bronze");
        }
        assert_eq!(post(&s, &format!("{BASE}/workspaces"), &w).await.0, 201);
    }
    let (_, page1) = get(&s, &format!("{BASE}/workspaces?limit=2")).await;
    assert_eq!(page1["kind"], "WorkspaceList");
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let token = page1["metadata"]["continue"].as_str().unwrap();
    let (_, page2) = get(&s, &format!("{BASE}/workspaces?limit=10&continue={token}")).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 3);
    assert!(page2["metadata"].get("continue").is_none());

    let (_, bronze) = get(
        &s,
        &format!("{BASE}/workspaces?labelSelector=tier%3Dbronze"),
    )
    .await;
    let names: Vec<&str> = bronze["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ws-0", "ws-2", "ws-4"]);
    let (code, status) = get(
        &s,
        &format!("{BASE}/workspaces?labelSelector=tier%20in%20("),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    s.stop().await;
}

#[tokio::test]
async fn watch_streams_events_in_order_from_a_resource_version() {
    let s = TestServer::start().await;
    let (_, created) = post(&s, &format!("{BASE}/workspaces"), &workspace("w1")).await;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut resp = s
        .admin()
        .get(format!(
            "{}{BASE}/workspaces?watch=true&resourceVersion={rv}",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    post(&s, &format!("{BASE}/workspaces"), &workspace("w2")).await;
    send(
        &s.admin(),
        reqwest::Method::DELETE,
        format!("{}{BASE}/workspaces/w1", s.url),
        "",
        None,
    )
    .await;
    let mut buf = String::new();
    let mut events = Vec::new();
    while events.len() < 2 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(i) = buf.find('\n') {
            let line: Value = serde_json::from_str(&buf[..i]).unwrap();
            buf.drain(..=i);
            events.push((
                line["type"].as_str().unwrap().to_owned(),
                line["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ));
        }
    }
    assert_eq!(
        events,
        [
            ("ADDED".to_owned(), "w2".to_owned()),
            ("DELETED".to_owned(), "w1".to_owned())
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn namespaced_kinds_live_under_their_namespace() {
    let s = TestServer::start().await;
    let project = json!({
        "apiVersion": "portcullis.dev/v1alpha1",
        "kind": "Project",
        "metadata": { "name": "p1" },
        "spec": {},
    });
    let (code, status) = post(&s, &format!("{BASE}/projects"), &project).await;
    assert_eq!(code, 400, "{status}");
    let (code, created) = post(&s, &format!("{BASE}/namespaces/ws-a/projects"), &project).await;
    assert!(code == 201 || code == 422, "{created}");
    if code == 201 {
        assert_eq!(created["metadata"]["namespace"], "ws-a");
        let (code, _) = get(&s, &format!("{BASE}/namespaces/ws-b/projects/p1")).await;
        assert_eq!(code, 404);
    }
    s.stop().await;
}

#[tokio::test]
async fn watch_from_nothing_lists_first_and_ends_at_timeout_seconds() {
    let s = TestServer::start().await;
    post(&s, &format!("{BASE}/workspaces"), &workspace("w1")).await;
    let resp = s
        .admin()
        .get(format!(
            "{}{BASE}/workspaces?watch=1&timeoutSeconds=1",
            s.url
        ))
        .send()
        .await
        .unwrap();
    // The body ends by itself after timeoutSeconds; the initial state came first as ADDED.
    let text = tokio::time::timeout(std::time::Duration::from_secs(20), resp.text())
        .await
        .unwrap()
        .unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "w1");
    s.stop().await;
}

#[tokio::test]
async fn watch_from_a_compacted_revision_reports_410_expired() {
    let s = TestServer::start_with(|c| c.watch_history = 2).await;
    let (_, first) = post(&s, &format!("{BASE}/workspaces"), &workspace("w0")).await;
    let old = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 1..5 {
        post(
            &s,
            &format!("{BASE}/workspaces"),
            &workspace(&format!("w{i}")),
        )
        .await;
    }
    let resp = s
        .admin()
        .get(format!(
            "{}{BASE}/workspaces?watch=true&resourceVersion={old}&timeoutSeconds=5",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let event: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ERROR", "{text}");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    let (code, status) = get(
        &s,
        &format!("{BASE}/workspaces?watch=true&resourceVersion=abc"),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    s.stop().await;
}

#[tokio::test]
async fn openapi_v3_serves_the_schemas_of_the_kinds() {
    let s = TestServer::start().await;
    let (code, index) = get(&s, "/openapi/v3").await;
    assert_eq!(code, 200);
    let url = index["paths"]["apis/portcullis.dev/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, doc) = get(&s, &url).await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(
        doc["components"]["schemas"]["dev.portcullis.v1alpha1.Workspace"].is_object(),
        "{doc}"
    );
    s.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches_instead_of_waiting_for_them() {
    let s = TestServer::start_with(|c| c.shutdown_grace_seconds = 60).await;
    let resp = s
        .admin()
        .get(format!("{}{BASE}/workspaces?watch=true", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(30), s.stop())
        .await
        .expect("shutdown waited for the watch");
    // Not a speed assertion: the 60 s grace period was not needed to end the watch.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    drop(resp);
}

/// The same API over a real etcd (`serve --store etcd`).
#[cfg(feature = "etcd")]
#[tokio::test]
async fn the_api_runs_on_etcd() {
    let etcd = portcullis_testkit::Etcd::start().expect("etcd: cargo xtask deps");
    let endpoint = etcd.endpoint.clone();
    let s = TestServer::start_with(move |c| {
        c.store = portcullis_server::config::StoreConfig::Etcd {
            endpoints: vec![endpoint],
            prefix: "/portcullis".into(),
        }
    })
    .await;
    let (code, created) = post(&s, &format!("{BASE}/workspaces"), &workspace("on-etcd")).await;
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, got) = get(&s, &format!("{BASE}/workspaces/on-etcd")).await;
    assert_eq!(code, 200);
    assert_eq!(got["metadata"]["resourceVersion"], rv.as_str());
    let (code, conflict) = post(&s, &format!("{BASE}/workspaces"), &workspace("on-etcd")).await;
    assert_eq!(
        (code, conflict["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    s.stop().await;
}
