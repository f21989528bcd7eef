//! `up` serves over TLS with its generated CA; client certificates authenticate; only
//! `portcullis:admins` is authorized until the RBAC engine is wired.

use serde_json::Value;

use crate::support::{TestServer, client};

#[tokio::test]
async fn healthz_is_served_over_tls_with_the_generated_ca() {
    let s = TestServer::start().await;
    let resp = s
        .anonymous()
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    let ready = s
        .anonymous()
        .get(format!("{}/readyz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_fails_the_handshake() {
    let s = TestServer::start().await;
    let other = tempfile::tempdir().unwrap();
    let other_pki = portcullis_server::pki::load_or_create(other.path(), &[]).unwrap();
    let err = client(&other_pki.ca.cert_pem, None)
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    s.stop().await;
}

#[tokio::test]
async fn anonymous_requests_to_the_api_get_401_status() {
    let s = TestServer::start().await;
    let resp = s
        .anonymous()
        .get(format!("{}/apis", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
    s.stop().await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_rejected() {
    let s = TestServer::start().await;
    let other = tempfile::tempdir().unwrap();
    let other_pki = portcullis_server::pki::load_or_create(other.path(), &[]).unwrap();
    let forged = portcullis_server::pki::issue_client(
        &other_pki.ca,
        portcullis_server::pki::ADMIN_USER,
        &[portcullis_server::pki::ADMINS_GROUP],
        1,
    )
    .unwrap();
    let result = client(
        &s.ca_pem(),
        Some((forged.cert_pem.as_bytes(), forged.key_pem.as_bytes())),
    )
    .get(format!("{}/apis", s.url))
    .send()
    .await;
    assert!(
        result.is_err(),
        "a forged admin certificate must not get a response: {result:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_admin_kubeconfig_is_a_private_kubeconfig_that_authenticates() {
    let s = TestServer::start().await;
    let path = s.dir.path().join("admin.conf");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let kc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(kc["kind"], "Config");
    assert_eq!(kc["clusters"][0]["cluster"]["server"], s.url.as_str());
    let resp = s
        .admin()
        .get(format!("{}/apis", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let groups: Value = resp.json().await.unwrap();
    assert_eq!(groups["kind"], "APIGroupList");
    s.stop().await;
}

#[tokio::test]
async fn metrics_need_authorization_and_count_requests() {
    let s = TestServer::start().await;
    let denied = s
        .user("bob", &[])
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let listed = s
        .admin()
        .get(format!("{}/apis/portcullis.dev/v1alpha1/workspaces", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let discovery = s
        .admin()
        .get(format!("{}/.well-known/openid-configuration", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), 200);
    let scraped = s
        .admin()
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = scraped.text().await.unwrap();
    // kube-apiserver's names and labels.
    for want in [
        "# TYPE apiserver_request counter",
        "apiserver_request_total{verb=\"LIST\",group=\"portcullis.dev\",version=\"v1alpha1\",resource=\"workspaces\",subresource=\"\",scope=\"cluster\",component=\"apiserver\",code=\"200\"} 1",
        // The issuer's endpoints are counted too, and the denied scrape.
        "apiserver_request_total{verb=\"GET\",group=\"\",version=\"\",resource=\"\",subresource=\"\",scope=\"\",component=\"apiserver\",code=\"403\"} 1",
        "# TYPE apiserver_request_duration_seconds histogram",
        "apiserver_request_duration_seconds_count{verb=\"LIST\",group=\"portcullis.dev\"",
        "authentication_attempts_total{result=\"success\"}",
        "apiserver_authorization_decisions_total{type=\"RBAC\",name=\"rbac\",decision=\"denied\"} 1",
        "apiserver_authorization_decisions_total{type=\"RBAC\",name=\"rbac\",decision=\"allowed\"}",
        "portcullis_tls_connections_total",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    let oidc_gets = text
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{verb=\"GET\"") && l.contains("code=\"200\"")
        })
        .count();
    assert!(oidc_gets >= 1, "{text}");
    s.stop().await;
}

#[tokio::test]
async fn the_audit_log_records_every_api_request_by_policy_and_never_a_secret() {
    let files = tempfile::tempdir().unwrap();
    let policy = files.path().join("audit-policy.yaml");
    let log = files.path().join("audit.log");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/metrics]\n- level: Request\n",
    )
    .unwrap();
    let (policy_file, log_path) = (policy.clone(), log.clone());
    let s = TestServer::start_with(move |c| {
        c.audit = Some(portcullis_server::config::AuditConfig {
            policy_file,
            log_path,
        });
    })
    .await;
    let workspace = serde_json::json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Workspace",
        "metadata": {"name": "audited"}, "spec": {"displayName": "Audited"},
    });
    let created = s
        .admin()
        .post(format!("{}/apis/portcullis.dev/v1alpha1/workspaces", s.url))
        .json(&workspace)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // A password reset answers with the new password: its event has no objects.
    let reset = s
        .admin()
        .post(format!(
            "{}/apis/portcullis.dev/v1alpha1/users/admin/password",
            s.url
        ))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 201);
    let password = reset.json::<Value>().await.unwrap()["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = s
        .user("bob", &["team"])
        .get(format!("{}/apis/portcullis.dev/v1alpha1/workspaces", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let scrape = s
        .admin()
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    let found = portcullis_testkit::wait_until(std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 3)
    });
    assert!(found);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(&password),
        "the new password is in the audit log"
    );
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    let create = &events[0];
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["level"], "Request");
    assert_eq!(create["verb"], "create");
    assert_eq!(create["user"]["username"], "portcullis-admin");
    assert_eq!(create["objectRef"]["resource"], "workspaces");
    assert_eq!(create["requestObject"]["metadata"]["name"], "audited");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(
        create["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    // With an audit log, an allow carries the grant that made it.
    let reason = create["annotations"]["authorization.k8s.io/reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.starts_with("RBAC: allowed by ClusterRoleBinding "),
        "{reason}"
    );
    let reset = &events[1];
    assert_eq!(reset["level"], "Metadata");
    assert_eq!(reset["objectRef"]["subresource"], "password");
    assert!(reset.get("requestObject").is_none());
    let denied = &events[2];
    assert_eq!(denied["user"]["username"], "bob");
    assert_eq!(denied["verb"], "list");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    s.stop().await;
}
