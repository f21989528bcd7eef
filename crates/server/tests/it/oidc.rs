//! The issuer is served at the management plane's URL, and its ID tokens authenticate to the
//! management API as bearer tokens.

use serde_json::{Value, json};

use crate::support::TestServer;

fn claims(s: &TestServer, extra: Value) -> Value {
    let now = portcullis_jose::unix_now();
    let mut c = json!({
        "iss": s.url, "aud": "portcullis", "sub": "u-1", "iat": now, "exp": now + 300,
        "email": "jane@example.com", "email_verified": true, "groups": ["portcullis:admins"],
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn discovery_and_jwks_are_served_at_the_issuer() {
    let s = TestServer::start().await;
    let doc: Value = s
        .anonymous()
        .get(format!("{}/.well-known/openid-configuration", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], s.url.as_str());
    let jwks_uri = doc["jwks_uri"].as_str().unwrap();
    let jwks: Value = s
        .anonymous()
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!jwks["keys"].as_array().unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn id_tokens_authenticate_and_idp_groups_cannot_pose_as_portcullis_groups() {
    let s = TestServer::start().await;
    let provider = s.running.as_ref().unwrap().provider.clone();
    let token = provider.sign(&claims(&s, json!({}))).unwrap();
    let workspaces = format!("{}/apis/portcullis.dev/v1alpha1/workspaces", s.url);
    let resp = s
        .anonymous()
        .get(&workspaces)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    // Authenticated (not 401), but the IdP's "portcullis:admins" is "oidc:portcullis:admins".
    assert_eq!(resp.status(), 403);
    let status: Value = resp.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("jane@example.com"),
        "{status}"
    );

    for bad in [
        json!({ "aud": "someone-else" }),
        json!({ "iss": "https://evil.example" }),
        json!({ "email_verified": false }),
        json!({ "exp": portcullis_jose::unix_now() - 3600 }),
    ] {
        let token = provider.sign(&claims(&s, bad.clone())).unwrap();
        let resp = s
            .anonymous()
            .get(&workspaces)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
    }
    let resp = s
        .anonymous()
        .get(&workspaces)
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn signing_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let first = TestServer::start_with(|c| {
        c.data_dir = path.clone();
        c.store = portcullis_server::config::StoreConfig::Redb;
    })
    .await;
    let jwks_before = first.running.as_ref().unwrap().provider.jwks();
    first.stop().await;
    let second = TestServer::start_with(|c| {
        c.data_dir = path.clone();
        c.store = portcullis_server::config::StoreConfig::Redb;
    })
    .await;
    assert_eq!(
        second.running.as_ref().unwrap().provider.jwks(),
        jwks_before
    );
    second.stop().await;
}
