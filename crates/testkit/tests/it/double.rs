//! The double on its own: HTTP/2, many in one process, the impersonation allow-list, recorded
//! request headers, and the WebSocket exec protocol as client-go speaks it.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use portcullis_testkit::kube_apiserver::{Config, Decision, Double, UserInfo};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support;

async fn h2_get(double: &Double, path: &str) -> (http::Version, u16, String) {
    let tls = support::tls_config(double.ca_pem(), &[b"h2"]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(double.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("{}{path}", double.url()))
        .header("authorization", format!("Bearer {}", double.admin_token()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let version = resp.version();
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (version, status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn serves_http2_by_alpn() {
    let double = Double::start(Config::new()).await.unwrap();
    let (version, status, body) = h2_get(&double, "/version").await;
    assert_eq!((version, status), (http::Version::HTTP_2, 200));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["gitVersion"],
        "v1.28.4"
    );
    assert_eq!(double.requests()[0].version, "HTTP/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_doubles_in_one_process_are_independent() {
    let doubles = futures::future::join_all((0..40).map(|_| Double::start(Config::new()))).await;
    let doubles: Vec<Double> = doubles.into_iter().map(Result::unwrap).collect();
    for (i, d) in doubles.iter().enumerate() {
        d.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("only-in-{i}")}}))
            .unwrap();
    }
    for (i, d) in doubles.iter().enumerate() {
        let client = support::client_as(d.ca_pem(), "t");
        let list: Value = client
            .get(format!("{}/api/v1/namespaces", d.url()))
            .bearer_auth(d.admin_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&format!("only-in-{i}").as_str()));
        assert_eq!(
            names.iter().filter(|n| n.starts_with("only-in-")).count(),
            1
        );
        // Another double's admin token is not this one's.
        let other = &doubles[(i + 1) % doubles.len()];
        let r = client
            .get(format!("{}/version", d.url()))
            .bearer_auth(other.admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Stopped on drop: the port refuses connections afterwards.
    let addr = doubles[0].addr();
    drop(doubles);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the double still listens after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn whoami(double: &Double, token: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let client = support::client_as(double.ca_pem(), "t");
    let mut b = client
        .post(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            double.url()
        ))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
                .to_string(),
        );
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = b.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn impersonation_is_allowed_only_to_configured_impersonators() {
    let double = Double::start(
        Config::new()
            .token("proxy-token", UserInfo::new("proxy", &["proxies"]))
            .token("other-token", UserInfo::new("other", &[]))
            .impersonator("proxy"),
    )
    .await
    .unwrap();
    let headers = [
        ("Impersonate-User", "jane"),
        ("Impersonate-Group", "oidc:devs"),
        ("Impersonate-Extra-Reason", "a%20b"),
    ];
    let (status, review) = whoami(&double, "proxy-token", &headers).await;
    assert_eq!(status, 201);
    assert_eq!(
        review["status"]["userInfo"],
        json!({"username": "jane", "groups": ["oidc:devs", "system:authenticated"], "extra": {"reason": ["a%20b"]}})
    );
    let (status, review) = whoami(&double, "other-token", &headers).await;
    assert_eq!(status, 403);
    assert_eq!(
        review["message"],
        "users \"jane\" is forbidden: User \"other\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    // What the proxy sent is recorded, header by header.
    let seen = double.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("impersonate-user"), Some("jane"));
    assert_eq!(
        seen[0].header_values("impersonate-group"),
        vec!["oidc:devs"]
    );
    assert_eq!(seen[0].header("authorization"), Some("Bearer proxy-token"));
}

#[tokio::test]
async fn a_custom_authorizer_decides_before_rbac() {
    let double = Double::start(
        Config::new()
            .token("t", UserInfo::new("alice", &[]))
            .authorizer(|a| {
                (a.user.username == "alice" && a.verb == "list")
                    .then(|| Decision::allow("test says so"))
            }),
    )
    .await
    .unwrap();
    let client = support::client_as(double.ca_pem(), "t");
    let list = client
        .get(format!("{}/api/v1/namespaces", double.url()))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let get = client
        .get(format!("{}/api/v1/namespaces/default", double.url()))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 403);
    let review: Value = client
        .post(format!(
            "{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            double.url()
        ))
        .bearer_auth("t")
        .header("content-type", "application/json")
        .body(
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "x"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        review["status"],
        json!({"allowed": true, "reason": "test says so"})
    );
}

#[tokio::test]
async fn websocket_exec_v4_echoes_until_the_client_closes() {
    let double = Double::start(Config::new()).await.unwrap();
    double
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}))
        .unwrap();
    double.seed_running_pod("ns", "p").unwrap();
    let url = format!(
        "{}/api/v1/namespaces/ns/pods/p/exec?command=cat&stdin=true&stdout=true",
        double.url().replace("https://", "wss://")
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", double.admin_token()).parse().unwrap(),
    );
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let tls = support::tls_config(double.ca_pem(), &[b"http/1.1"]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(double.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "v4.channel.k8s.io"
    );
    ws.send(Message::Binary([&[0u8][..], b"ping"].concat().into()))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap().into_data();
    assert_eq!(&echoed[..], &[&[1u8][..], b"ping"].concat()[..]);
    ws.close(None).await.unwrap();
    let mut status = None;
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Binary(b) = m
            && b.first() == Some(&3)
        {
            status = Some(String::from_utf8_lossy(&b[1..]).into_owned());
        }
    }
    // After the client's close no status is owed; what matters is that nothing else came.
    assert!(status.is_none() || status.as_deref() == Some(r#"{"metadata":{},"status":"Success"}"#));
}

#[tokio::test]
async fn client_tls_config_trusts_the_double() {
    let double = Double::start(Config::new()).await.unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(double.client_tls_config().unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/readyz", double.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    // And another double's CA is not trusted.
    let other = Double::start(Config::new()).await.unwrap();
    assert!(
        client
            .get(format!("{}/readyz", other.url()))
            .send()
            .await
            .is_err()
    );
}

async fn admin(
    double: &Double,
    method: reqwest::Method,
    path: &str,
    ct: &str,
    body: Value,
) -> (u16, Value) {
    let client = support::client_as(double.ca_pem(), "t");
    let mut b = client
        .request(method, format!("{}{path}", double.url()))
        .bearer_auth(double.admin_token());
    if !body.is_null() {
        b = b.header("content-type", ct).body(body.to_string());
    }
    let r = b.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_a_selector_sees_objects_enter_and_leave_it() {
    let double = Double::start(Config::new()).await.unwrap();
    double
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "w"}}))
        .unwrap();
    let cm = "/api/v1/namespaces/w/configmaps";
    let (s, _) = admin(&double, reqwest::Method::POST, cm, "application/json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"team": "a"}}})).await;
    assert_eq!(s, 201);
    let rv = double.resource_version().to_string();
    let client = support::client_as(double.ca_pem(), "t");
    let watch = client
        .get(format!(
            "{}{cm}?watch=1&labelSelector=team%3Db&resourceVersion={rv}&timeoutSeconds=3",
            double.url()
        ))
        .bearer_auth(double.admin_token())
        .send();
    let changes = async {
        let patch = |team: &'static str| {
            let double = &double;
            async move {
                admin(
                    double,
                    reqwest::Method::PATCH,
                    &format!("{cm}/c"),
                    "application/merge-patch+json",
                    json!({"metadata": {"labels": {"team": team}}}),
                )
                .await
            }
        };
        // Change things once the watch has arrived (polled, with a deadline).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !double
            .requests()
            .iter()
            .any(|r| r.query.contains("watch=1"))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the watch never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(patch("b").await.0, 200);
        assert_eq!(patch("b").await.0, 200); // no change: no event
        assert_eq!(
            admin(
                &double,
                reqwest::Method::PATCH,
                &format!("{cm}/c"),
                "application/merge-patch+json",
                json!({"data": {"k": "v"}})
            )
            .await
            .0,
            200
        );
        assert_eq!(patch("c").await.0, 200);
    };
    let (resp, ()) = tokio::join!(watch, changes);
    let text = resp.unwrap().text().await.unwrap();
    let events: Vec<(String, Value)> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["object"]["metadata"]["labels"]["team"].clone(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            ("ADDED".to_owned(), json!("b")),
            ("MODIFIED".to_owned(), json!("b")),
            ("DELETED".to_owned(), json!("b")),
        ]
    );
}

#[tokio::test]
async fn deletecollection_and_the_namespace_controller() {
    let double = Double::start(Config::new().namespace_controller())
        .await
        .unwrap();
    double
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}))
        .unwrap();
    for (name, owner) in [("a", "fed"), ("b", "fed"), ("c", "someone")] {
        double
            .seed(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": "gone", "labels": {"owner": owner}}}),
            )
            .unwrap();
    }
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/gone/roles";
    let (status, list) = admin(
        &double,
        reqwest::Method::DELETE,
        &format!("{roles}?labelSelector=owner%3Dfed"),
        "",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "RoleList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(double.get("roles", "gone", "a").is_none());
    assert!(double.get("roles", "gone", "c").is_some());
    let (status, ns) = admin(
        &double,
        reqwest::Method::DELETE,
        "/api/v1/namespaces/gone",
        "",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(double.get("namespaces", "", "gone").is_none());
    assert!(double.get("roles", "gone", "c").is_none());
    // Without the controller the namespace stays Terminating, as recorded (A024-A025).
    let plain = Double::start(Config::new()).await.unwrap();
    plain
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stays"}}))
        .unwrap();
    assert_eq!(
        admin(
            &plain,
            reqwest::Method::DELETE,
            "/api/v1/namespaces/stays",
            "",
            Value::Null
        )
        .await
        .0,
        200
    );
    assert_eq!(
        plain.get("namespaces", "", "stays").unwrap()["status"]["phase"],
        "Terminating"
    );
}

#[tokio::test]
async fn dropping_the_double_ends_its_upgraded_sessions() {
    let double = Double::start(Config::new()).await.unwrap();
    double
        .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}))
        .unwrap();
    double.seed_running_pod("ns", "p").unwrap();
    let url = format!(
        "{}/api/v1/namespaces/ns/pods/p/attach?stdin=true&stdout=true",
        double.url().replace("https://", "wss://")
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", double.admin_token()).parse().unwrap(),
    );
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let connector = tokio_rustls::TlsConnector::from(Arc::new(support::tls_config(
        double.ca_pem(),
        &[b"http/1.1"],
    )));
    let tcp = tokio::net::TcpStream::connect(double.addr()).await.unwrap();
    let stream = connector
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    ws.send(Message::Binary([&[0u8][..], b"x"].concat().into()))
        .await
        .unwrap();
    assert_eq!(
        &ws.next().await.unwrap().unwrap().into_data()[..],
        &[1u8, b'x'][..]
    );
    drop(double);
    // The session ends with the double, not when the client gives up.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the attach session outlived the double");
}
