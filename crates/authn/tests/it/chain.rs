//! The filter chain, tested in-process with `oneshot`: each layer's effect on its own, then the
//! whole chain in kube-apiserver's order, with audit events checked against the
//! `audit.k8s.io/v1` `Event` schema.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use portcullis_authn::chain::audit::{AuditLog, Policy};
use portcullis_authn::chain::metrics::Metrics;
use portcullis_authn::chain::{
    AuthenticationLayer, Chain, MetricsLayer, OriginalUser, RequestInfoLayer, SharedAuthorizer,
};
use portcullis_authn::{
    Authenticated, Authenticator, AuthenticatorChain, Credentials, Outcome, RequestInfo, UserInfo,
};
use portcullis_rbac::{Attributes, Decision};
use serde::Deserialize;
use serde_json::Value;
use tower::{Layer, Service, ServiceExt, service_fn};

/// Bearer tokens `good-NAME` are user NAME in group `devs`; `bad` is refused; anything else
/// is not this authenticator's.
struct Tokens;

#[async_trait::async_trait]
impl Authenticator for Tokens {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        let Some(token) = credentials.bearer_token() else {
            return Outcome::NotMine;
        };
        let token = secrecy::ExposeSecret::expose_secret(&token).to_owned();
        match token.strip_prefix("good-") {
            Some(name) => Outcome::Authenticated(Authenticated {
                user: Arc::new(UserInfo {
                    name: name.to_owned(),
                    uid: format!("uid-{name}"),
                    groups: vec!["devs".into(), "system:authenticated".into()],
                    extra: BTreeMap::new(),
                }),
                expires_at: None,
            }),
            None => Outcome::Failed(portcullis_authn::Error::Claims("bad token".into())),
        }
    }
}

/// Allows alice everything; bob only `get` on pods and impersonating user `carol`; nobody else
/// anything.
fn authorizer() -> SharedAuthorizer {
    Arc::new(|a: &Attributes| {
        let allowed = match a.user.as_str() {
            "alice" => true,
            "bob" => {
                (a.verb == "get" && a.resource == "pods")
                    || (a.verb == "impersonate" && a.resource == "users" && a.name == "carol")
            }
            _ => false,
        };
        Decision {
            allowed,
            reason: if allowed {
                "test".into()
            } else {
                String::new()
            },
        }
    })
}

/// What the handler saw, as a JSON answer: the request's user, original user, verb and the
/// headers left on it.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let user = req.extensions().get::<Arc<UserInfo>>().cloned();
    let original = req
        .extensions()
        .get::<OriginalUser>()
        .map(|o| o.0.name.clone());
    let verb = req
        .extensions()
        .get::<RequestInfo>()
        .map(|i| i.verb().as_str().to_owned());
    let headers: Vec<String> = req
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .collect();
    let body = serde_json::json!({
        "user": user.as_ref().map(|u| u.name.clone()),
        "groups": user.map(|u| u.groups.clone()),
        "original": original,
        "verb": verb,
        "headers": headers,
    });
    Ok(Response::new(body.to_string()))
}

fn chain(audit: Option<Arc<AuditLog>>, metrics: Arc<Metrics>) -> Chain {
    Chain {
        authenticator: AuthenticatorChain::new().with(Arc::new(Tokens)),
        authorizer: authorizer(),
        anonymous: false,
        audit,
        metrics,
        max_read_only: 8,
        max_mutating: 8,
    }
}

fn request(method: &str, uri: &str, token: Option<&str>) -> Request<String> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(String::new()).unwrap()
}

async fn call(chain: &Chain, req: Request<String>) -> (StatusCode, Value, http::HeaderMap) {
    let service = chain.layer().layer(service_fn(echo));
    let response = service.oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        serde_json::from_str(&body).unwrap_or(Value::Null),
        parts.headers,
    )
}

#[tokio::test]
async fn request_info_is_parsed_once_and_an_unreadable_path_is_a_bad_request() {
    let svc = RequestInfoLayer.layer(service_fn(echo));
    let ok = svc
        .clone()
        .oneshot(request("GET", "/api/v1/namespaces/a/pods?watch=1", None))
        .await
        .unwrap();
    let body: Value = serde_json::from_str(ok.body()).unwrap();
    assert_eq!(body["verb"], "watch");
    let bad = svc
        .oneshot(request("GET", "/api/v1/watch", None))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let status: Value = serde_json::from_str(bad.body()).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "BadRequest");
}

#[tokio::test]
async fn authentication_sets_the_user_removes_the_credential_and_refuses_with_a_status() {
    let c = chain(None, Arc::new(Metrics::default()));
    let (code, body, _) = call(
        &c,
        request("GET", "/api/v1/namespaces/a/pods/p", Some("good-alice")),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["user"], "alice");
    // Nothing behind the chain sees the token.
    assert!(
        !body["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "authorization")
    );

    for token in [None, Some("bad")] {
        let (code, body, _) = call(&c, request("GET", "/api/v1/pods", token)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Unauthorized");
        assert_eq!(body["code"], 401);
    }
    // With anonymous requests allowed, no credential is system:anonymous; a bad one is not.
    let metrics = Arc::new(Metrics::default());
    let layer = AuthenticationLayerFor::anonymous(metrics);
    let svc = RequestInfoLayer.layer(layer.layer(service_fn(echo)));
    let response = svc
        .clone()
        .oneshot(request("GET", "/healthz", None))
        .await
        .unwrap();
    let body: Value = serde_json::from_str(response.body()).unwrap();
    assert_eq!(body["user"], "system:anonymous");
    assert_eq!(
        body["groups"],
        serde_json::json!(["system:unauthenticated"])
    );
    let response = svc
        .oneshot(request("GET", "/healthz", Some("bad")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// The authentication layer alone, built through a chain with anonymous requests allowed.
struct AuthenticationLayerFor;

impl AuthenticationLayerFor {
    fn anonymous(metrics: Arc<Metrics>) -> AuthenticationLayer {
        let mut c = chain(None, metrics);
        c.anonymous = true;
        c.authentication_layer()
    }
}

#[tokio::test]
async fn authorization_denies_with_kube_apiservers_message_and_counts_decisions() {
    let metrics = Arc::new(Metrics::default());
    let c = chain(None, metrics.clone());
    let (code, _, _) = call(
        &c,
        request("GET", "/api/v1/namespaces/a/pods/p", Some("good-bob")),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, body, _) = call(
        &c,
        request("DELETE", "/api/v1/namespaces/a/pods/p", Some("good-bob")),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        "pods \"p\" is forbidden: User \"bob\" cannot delete resource \"pods\" in API group \"\" in the namespace \"a\""
    );
    let (code, body, _) = call(&c, request("GET", "/metrics", Some("good-bob"))).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "forbidden: User \"bob\" cannot get path \"/metrics\""
    );
    // An HTTP method that maps to no verb is denied, never taken for another verb.
    let (code, _, _) = call(
        &c,
        request("BREW", "/api/v1/namespaces/a/pods/p", Some("good-bob")),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let text = metrics.render();
    assert!(
        text.contains("apiserver_authorization_decisions_total{type=\"RBAC\",name=\"rbac\",decision=\"denied\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("authentication_attempts_total{result=\"success\"} 4"),
        "{text}"
    );
}

/// Requests down every path of the chain: allowed, denied, unauthenticated, refused tokens,
/// an unreadable path, impersonation allowed, refused and malformed.
fn every_path() -> Vec<Request<String>> {
    let impersonating = |token: &str, headers: &[(&str, &str)]| {
        let mut req = request("GET", "/api/v1/namespaces/a/pods/p", Some(token));
        for (name, value) in headers {
            let name = http::HeaderName::try_from(*name).unwrap();
            req.headers_mut().append(name, value.parse().unwrap());
        }
        req
    };
    vec![
        request("GET", "/api/v1/namespaces/a/pods/p", Some("good-alice")),
        request("GET", "/api/v1/namespaces/a/pods/p", Some("good-bob")),
        request("DELETE", "/api/v1/namespaces/a/pods/p", Some("good-bob")),
        request("GET", "/metrics", Some("good-bob")),
        request("GET", "/api/v1/pods", None),
        request("GET", "/api/v1/pods", Some("bad")),
        request("GET", "/api/v1/watch", Some("good-alice")),
        impersonating("good-bob", &[("impersonate-user", "carol")]),
        impersonating("good-bob", &[("impersonate-user", "dave")]),
        impersonating("good-alice", &[("impersonate-group", "ops")]),
        impersonating(
            "good-alice",
            &[("impersonate-user", "dave"), ("impersonate-group", "ops")],
        ),
    ]
}

#[tokio::test]
async fn the_layers_stacked_answer_as_the_chains_one_service() {
    let c = chain(None, Arc::new(Metrics::default()));
    for (one, stacked) in every_path().into_iter().zip(every_path()) {
        let what = format!("{} {}", one.method(), one.uri());
        let one = call(&c, one).await;
        let response = c
            .layers()
            .layer(service_fn(echo))
            .oneshot(stacked)
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let stacked = (
            parts.status,
            serde_json::from_str(&body).unwrap_or(Value::Null),
            parts.headers,
        );
        assert_eq!(one, stacked, "{what}");
    }
}

#[tokio::test]
async fn impersonation_is_authorized_per_attribute_and_its_headers_are_removed() {
    let c = chain(None, Arc::new(Metrics::default()));
    let mut req = request("GET", "/api/v1/namespaces/a/pods/p", Some("good-bob"));
    req.headers_mut()
        .insert("Impersonate-User", "carol".parse().unwrap());
    // carol may do nothing: the request, made as carol, is denied after impersonation.
    let (code, body, _) = call(&c, req).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap().contains("User \"carol\""),
        "{body}"
    );

    let mut req = request("GET", "/api/v1/namespaces/a/pods/p", Some("good-alice"));
    req.headers_mut()
        .insert("impersonate-user", "dave".parse().unwrap());
    req.headers_mut()
        .append("IMPERSONATE-GROUP", "ops".parse().unwrap());
    let (code, body, _) = call(&c, req).await;
    // alice may impersonate anyone; dave (impersonated) may do nothing: 403 as dave.
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap().contains("User \"dave\""),
        "{body}"
    );

    // bob may not impersonate dave: 403 naming the impersonation check.
    let mut req = request("GET", "/api/v1/namespaces/a/pods/p", Some("good-bob"));
    req.headers_mut()
        .insert("impersonate-user", "dave".parse().unwrap());
    let (code, body, _) = call(&c, req).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot impersonate resource \"users\""),
        "{body}"
    );

    // A group without a user is malformed.
    let mut req = request("GET", "/api/v1/namespaces/a/pods/p", Some("good-alice"));
    req.headers_mut()
        .insert("impersonate-group", "ops".parse().unwrap());
    let (code, _, _) = call(&c, req).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_handler_sees_the_impersonated_user_and_the_original_one_and_no_impersonation_headers()
{
    // Impersonating carol, whom bob may impersonate, and asking what carol may not do is
    // refused; so the identity is checked on a chain whose authorizer allows carol's `get`.
    let mut c = chain(None, Arc::new(Metrics::default()));
    c.authorizer = Arc::new(|a: &Attributes| Decision {
        allowed: a.user == "bob" && a.verb == "impersonate" || a.user == "carol",
        reason: String::new(),
    });
    let mut req = request("GET", "/api/v1/namespaces/a/pods/p", Some("good-bob"));
    req.headers_mut()
        .insert("Impersonate-User", "carol".parse().unwrap());
    req.headers_mut()
        .insert("Impersonate-Extra-Reason", "oncall".parse().unwrap());
    let (code, body, _) = call(&c, req).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "carol");
    assert_eq!(body["original"], "bob");
    assert_eq!(body["groups"], serde_json::json!(["system:authenticated"]));
    let headers = body["headers"].as_array().unwrap();
    assert!(
        !headers
            .iter()
            .any(|h| h.as_str().unwrap().starts_with("impersonate-")),
        "{headers:?}"
    );
}

#[tokio::test]
async fn requests_over_the_in_flight_bound_get_429_with_retry_after() {
    let metrics = Arc::new(Metrics::default());
    let mut c = chain(None, metrics.clone());
    c.max_mutating = 1;
    let release = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let (release, entered) = (release.clone(), entered.clone());
        service_fn(move |_req: Request<String>| {
            let (release, entered) = (release.clone(), entered.clone());
            async move {
                entered.notify_one();
                release.notified().await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        })
    };
    let mut service = c.layer().layer(handler);
    let first = {
        let fut = service.ready().await.unwrap().call(request(
            "POST",
            "/api/v1/namespaces/a/pods",
            Some("good-alice"),
        ));
        tokio::spawn(fut)
    };
    entered.notified().await;
    let second = service
        .ready()
        .await
        .unwrap()
        .call(request(
            "POST",
            "/api/v1/namespaces/a/pods",
            Some("good-alice"),
        ))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.headers()["retry-after"], "1");
    // Reads have their own bound.
    let read = service.ready().await.unwrap().call(request(
        "GET",
        "/api/v1/namespaces/a/pods/p",
        Some("good-alice"),
    ));
    let read = tokio::spawn(read);
    entered.notified().await;
    release.notify_waiters();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    release.notify_waiters();
    assert_eq!(read.await.unwrap().unwrap().status(), StatusCode::OK);
    assert!(
        metrics
            .render()
            .contains("apiserver_dropped_requests_total{request_kind=\"mutating\"} 1")
    );
}

#[tokio::test]
async fn the_in_flight_bound_frees_each_place_and_zero_means_no_bound() {
    let metrics = Arc::new(Metrics::default());
    let mut c = chain(None, metrics.clone());
    c.max_mutating = 1;
    let quick = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut service = c.layer().layer(quick);
    // One place, taken and given back by each request in turn.
    for _ in 0..3 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request(
                "POST",
                "/api/v1/namespaces/a/pods",
                Some("good-alice"),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(
        metrics
            .render()
            .contains("apiserver_current_inflight_requests{request_kind=\"mutating\"} 0"),
        "{}",
        metrics.render()
    );

    // 0, as kube-apiserver's flags: no bound.
    let mut c = chain(None, Arc::new(Metrics::default()));
    c.max_mutating = 0;
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let entered = Arc::new(tokio::sync::Semaphore::new(0));
    let waiting = {
        let (release, entered) = (release.clone(), entered.clone());
        service_fn(move |_req: Request<String>| {
            let (release, entered) = (release.clone(), entered.clone());
            async move {
                entered.add_permits(1);
                release.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        })
    };
    let mut service = c.layer().layer(waiting);
    let mut held = Vec::new();
    for _ in 0..3 {
        let fut = service.ready().await.unwrap().call(request(
            "POST",
            "/api/v1/namespaces/a/pods",
            Some("good-alice"),
        ));
        held.push(tokio::spawn(fut));
    }
    // All three are in the handler at once.
    entered.acquire_many(3).await.unwrap().forget();
    release.add_permits(3);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

/// `audit.k8s.io/v1` `Event`, strictly: every field the schema defines and no other, the
/// required ones required.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct Event {
    kind: String,
    api_version: String,
    level: String,
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: String,
    #[serde(rename = "requestURI")]
    request_uri: String,
    verb: String,
    user: AuditUser,
    impersonated_user: Option<AuditUser>,
    #[serde(rename = "sourceIPs")]
    source_ips: Option<Vec<String>>,
    user_agent: Option<String>,
    object_ref: Option<ObjectReference>,
    response_status: Option<Value>,
    request_object: Option<Value>,
    response_object: Option<Value>,
    request_received_timestamp: String,
    stage_timestamp: String,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct AuditUser {
    username: String,
    uid: Option<String>,
    groups: Option<Vec<String>>,
    extra: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct ObjectReference {
    resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    api_group: Option<String>,
    api_version: Option<String>,
    resource_version: Option<String>,
    subresource: Option<String>,
}

#[tokio::test]
async fn audit_writes_one_schema_valid_event_per_request_at_the_policys_level_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let policy = Policy::from_yaml(
        r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [nobody-audited]
- level: None
  nonResourceURLs: ["/healthz*"]
- level: Request
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
"#,
    )
    .unwrap();
    let metrics = Arc::new(Metrics::default());
    let log = Arc::new(AuditLog::open(&path, policy, metrics.clone()).unwrap());
    let c = chain(Some(log), metrics.clone());
    let mut impersonating = request("GET", "/api/v1/namespaces/a/pods/p", Some("good-bob"));
    impersonating
        .headers_mut()
        .insert("impersonate-user", "carol".parse().unwrap());
    impersonating
        .headers_mut()
        .insert("user-agent", "kubectl/v1.32.5".parse().unwrap());
    let requests = [
        request("GET", "/api/v1/namespaces/a/pods/p", Some("good-alice")),
        request("DELETE", "/api/v1/namespaces/a/pods/p", Some("good-bob")),
        request("GET", "/healthz", Some("good-alice")),
        request("GET", "/api/v1/pods", Some("good-nobody-audited")),
        impersonating,
    ];
    for r in requests {
        call(&c, r).await;
    }
    // The log is written by a thread of its own: wait for the four events.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 3 || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::task::yield_now().await;
        std::thread::yield_now();
    };
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    assert!(!text.contains("good-"), "a token in the audit log: {text}");
    let allowed = &events[0];
    assert_eq!(
        (allowed.kind.as_str(), allowed.api_version.as_str()),
        ("Event", "audit.k8s.io/v1")
    );
    assert_eq!(allowed.level, "Metadata");
    assert_eq!(allowed.stage, "ResponseComplete");
    assert_eq!(allowed.verb, "get");
    assert_eq!(allowed.user.username, "alice");
    let object_ref = allowed.object_ref.as_ref().unwrap();
    assert_eq!(object_ref.resource.as_deref(), Some("pods"));
    assert_eq!(object_ref.name.as_deref(), Some("p"));
    assert_eq!(allowed.response_status.as_ref().unwrap()["code"], 200);
    let annotations = allowed.annotations.as_ref().unwrap();
    assert_eq!(annotations["authorization.k8s.io/decision"], "allow");
    let denied = &events[1];
    assert_eq!(denied.response_status.as_ref().unwrap()["code"], 403);
    assert_eq!(
        denied.annotations.as_ref().unwrap()["authorization.k8s.io/decision"],
        "forbid"
    );
    let impersonated = &events[2];
    assert_eq!(impersonated.user.username, "bob");
    assert_eq!(
        impersonated.impersonated_user.as_ref().unwrap().username,
        "carol"
    );
    assert_eq!(impersonated.user_agent.as_deref(), Some("kubectl/v1.32.5"));
    assert!(metrics.render().contains("apiserver_audit_event_total 3"));
}

#[tokio::test]
async fn audit_policies_are_read_strictly() {
    let err = Policy::from_yaml(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  userz: [a]\n",
    )
    .unwrap_err();
    assert!(err.contains("rules[0]") && err.contains("userz"), "{err}");
    let err = Policy::from_yaml("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\n").unwrap_err();
    assert!(err.contains("audit.k8s.io/v1"), "{err}");
    let err = Policy::from_yaml(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n",
    )
    .unwrap_err();
    assert!(err.contains("Everything"), "{err}");
}

#[tokio::test]
async fn the_metrics_layer_counts_every_route_with_kube_apiservers_labels() {
    let metrics = Arc::new(Metrics::default());
    let svc = MetricsLayer::new(metrics.clone()).layer(service_fn(echo));
    for (method, uri) in [
        (
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/a/roles",
        ),
        (
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/a/roles?watch=true",
        ),
        ("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterroles/x"),
        ("GET", "/.well-known/openid-configuration"),
    ] {
        svc.clone()
            .oneshot(request(method, uri, None))
            .await
            .unwrap();
    }
    let text = metrics.render();
    for want in [
        "apiserver_request_total{verb=\"LIST\",group=\"rbac.authorization.k8s.io\",version=\"v1\",resource=\"roles\",subresource=\"\",scope=\"namespace\",component=\"apiserver\",code=\"200\"} 1",
        "apiserver_request_total{verb=\"WATCH\",group=\"rbac.authorization.k8s.io\"",
        "apiserver_request_total{verb=\"PATCH\",group=\"rbac.authorization.k8s.io\",version=\"v1\",resource=\"clusterroles\",subresource=\"\",scope=\"resource\"",
        "apiserver_request_total{verb=\"GET\",group=\"\",version=\"\",resource=\"\",subresource=\"\",scope=\"\",component=\"apiserver\",code=\"200\"} 1",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}
