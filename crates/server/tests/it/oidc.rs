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

/// Logs in at the issuer's own login page as a public client with PKCE and returns the token
/// response (a scripted browser keeping the CSRF cookie by hand).
pub(crate) async fn password_login(
    s: &TestServer,
    client_id: &str,
    login: &str,
    password: &str,
) -> (u16, Value) {
    password_login_with_scope(
        s,
        client_id,
        login,
        password,
        "openid email groups offline_access",
    )
    .await
}

/// [`password_login`] asking for `scope`.
pub(crate) async fn password_login_with_scope(
    s: &TestServer,
    client_id: &str,
    login: &str,
    password: &str,
    scope: &str,
) -> (u16, Value) {
    use base64::Engine as _;
    let verifier = "a-fixed-but-long-enough-pkce-verifier-for-this-test-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let redirect = "http://127.0.0.1:8000/callback";
    let mut auth = url::Url::parse(&format!("{}/auth", s.url)).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let browser = s.anonymous();
    let page = browser.get(auth.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-portcullis-csrf="))
        .unwrap();
    let html = page.text().await.unwrap();
    let hidden = |name: &str| {
        let needle = format!("name=\"{name}\" value=\"");
        let start = html.find(&needle).unwrap() + needle.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    };
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("request", hidden("request").as_str()),
            ("csrf", hidden("csrf").as_str()),
            ("login", login),
            ("password", password),
        ])
        .finish();
    let answer = browser
        .post(format!("{}/auth/login", s.url))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    if answer.status() != 303 {
        return (answer.status().as_u16(), Value::Null);
    }
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("client_id", client_id),
        ])
        .finish();
    let tokens = browser
        .post(format!("{}/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    (tokens.status().as_u16(), tokens.json().await.unwrap())
}

fn header_alg(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["alg"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_management_api_verifies_id_tokens_of_every_published_algorithm() {
    let mut es256 = cli_client();
    es256.spec.id_token_signed_response_alg = Some(portcullis_model::IdTokenSigningAlg::ES256);
    let s = TestServer::start_with(|c| c.oidc.static_clients = vec![es256]).await;
    let password = s.running.as_ref().unwrap().admin_password.clone().unwrap();
    let (status, tokens) = password_login(&s, "portcullis", "admin", &password).await;
    assert_eq!(status, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(header_alg(id_token), "ES256");
    let workspaces = format!("{}/apis/portcullis.dev/v1alpha1/workspaces", s.url);
    let resp = s
        .anonymous()
        .get(&workspaces)
        .bearer_auth(id_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    s.stop().await;
}

pub(crate) fn cli_client() -> portcullis_model::Client {
    portcullis_model::Client::new(
        "portcullis",
        portcullis_model::ClientSpec {
            public: true,
            redirect_uris: vec!["http://127.0.0.1:8000/callback".into()],
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn the_static_admin_logs_in_is_cluster_admin_and_its_password_can_be_reset() {
    let s = TestServer::start_with(|c| c.oidc.static_clients = vec![cli_client()]).await;
    let password = s.running.as_ref().unwrap().admin_password.clone().unwrap();
    let file = s.dir.path().join("admin-password");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (status, tokens) = password_login(&s, "portcullis", "admin", &password).await;
    assert_eq!(status, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap();
    // A client without idTokenSignedResponseAlg gets RS256, which the API verifies too.
    assert_eq!(header_alg(id_token), "RS256");
    // The bootstrap binding makes the static admin cluster-admin on the management API.
    let workspaces = format!("{}/apis/portcullis.dev/v1alpha1/workspaces", s.url);
    let resp = s
        .anonymous()
        .get(&workspaces)
        .bearer_auth(id_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Someone without rights cannot reset it.
    let reset = format!(
        "{}/apis/portcullis.dev/v1alpha1/users/admin/password",
        s.url
    );
    let resp = s
        .user("mallory", &[])
        .post(&reset)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The admin (break-glass certificate) can.
    let resp = s
        .admin()
        .post(&reset)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let answer: Value = resp.json().await.unwrap();
    let new_password = answer["password"].as_str().unwrap().to_owned();
    assert_ne!(new_password, password);
    let refresh = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "portcullis"),
        ])
        .finish();
    let resp = s
        .anonymous()
        .post(format!("{}/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "the old refresh token is revoked");
    let (status, _) = password_login(&s, "portcullis", "admin", &password).await;
    assert_eq!(status, 401, "the old password no longer works");
    let (status, _) = password_login(&s, "portcullis", "admin", &new_password).await;
    assert_eq!(status, 200);
    let resp = s
        .admin()
        .post(format!(
            "{}/apis/portcullis.dev/v1alpha1/users/nobody/password",
            s.url
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    s.stop().await;
}

#[tokio::test]
async fn the_static_admin_can_be_disabled_only_once_a_connector_exists() {
    let s = TestServer::start().await;
    let admin_url = format!("{}/apis/portcullis.dev/v1alpha1/users/admin", s.url);
    let disable = json!({ "spec": { "disabled": true } });
    let patch = |body: Value| {
        s.admin()
            .patch(&admin_url)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
    };
    let resp = patch(disable.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let status: Value = resp.json().await.unwrap();
    assert!(
        status["message"].as_str().unwrap().contains("Connector"),
        "{status}"
    );
    let resp = s.admin().delete(&admin_url).send().await.unwrap();
    assert_eq!(resp.status(), 403);

    // Other users are not affected.
    let connector = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Connector",
        "metadata": { "name": "corp-ldap" },
        "spec": { "type": "ldap", "ldap": { "host": "127.0.0.1:389", "userSearch": { "baseDN": "ou=people,dc=example,dc=org", "usernameAttr": "uid" } } },
    });
    let mut incomplete = connector.clone();
    incomplete["spec"]["ldap"]["userSearch"]["usernameAttr"] = json!("");
    let resp = s
        .admin()
        .post(format!("{}/apis/portcullis.dev/v1alpha1/connectors", s.url))
        .json(&incomplete)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let status: Value = resp.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("Connector.portcullis.dev \"corp-ldap\" is invalid"),
        "the error names the object of the body: {status}"
    );
    let resp = s
        .admin()
        .post(format!("{}/apis/portcullis.dev/v1alpha1/connectors", s.url))
        .json(&connector)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = patch(disable).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    s.stop().await;
}
