//! End to end: a user of the organisation's LDAP directory (a real slapd) logs in at the
//! issuer through the authorization code flow, and the prefixed groups of their ID token are
//! what a ClusterRoleBinding on the management API grants to. The connector is created
//! through the API, its bind password set through `connectors/NAME/bindpassword`, and its
//! `Ready` condition reports the server's connect-and-bind check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_model::kinds::connector::LdapSecurity;
use portcullis_model::{Client, ClientSpec, GrantType};
use portcullis_testkit::slapd::{self, Slapd};
use serde_json::{Value, json};

use crate::support::TestServer;

const REDIRECT: &str = "http://127.0.0.1:8000/callback";

/// The fixture's Connector, StartTLS with the test CA, as the API takes it.
fn connector_object(slapd: &Slapd) -> Value {
    let spec = slapd::connector_spec(&slapd.ldap_addr, LdapSecurity::StartTLS, slapd.ca_pem());
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Connector",
        "metadata": { "name": "corp" },
        "spec": serde_json::to_value(spec).unwrap(),
    })
}

/// Creates `object` at `collection` (a URL) as the admin.
async fn create(s: &TestServer, collection: String, object: &Value) {
    let r = s
        .admin()
        .post(collection)
        .json(object)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Polls the connector's `Ready` condition until it has `status` (the server checks a
/// connector after every change, apart from validation).
async fn ready_condition(s: &TestServer, status: &str) -> Value {
    let url = format!("{}/apis/portcullis.dev/v1alpha1/connectors/corp", s.url);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let object: Value = s
            .admin()
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ready = object["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
        if let Some(c) = ready.filter(|c| c["status"] == status) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "Ready never became {status}: {object}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn set_bind_password(s: &TestServer, password: &str) {
    let r = s
        .admin()
        .post(format!(
            "{}/apis/portcullis.dev/v1alpha1/connectors/corp/bindpassword",
            s.url
        ))
        .json(&json!({ "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// The value of `name="…" value="…"` inputs of the page.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for tag in html.split("<input").skip(1) {
        let tag = tag.split('>').next().unwrap();
        if !tag.contains("type=\"hidden\"") {
            continue;
        }
        let attr = |name: &str| {
            let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
            Some(tag[start..].split('"').next()?.to_owned())
        };
        out.push((attr("name").unwrap(), attr("value").unwrap_or_default()));
    }
    out
}

fn form_body(fields: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Logs `user` in through the code flow with PKCE (public client `portcullis`, the management
/// API's audience) and returns the ID token.
async fn id_token_of(s: &TestServer, user: &str, password: &str) -> String {
    let http = s.anonymous();
    let verifier = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let challenge = URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let mut url = url::Url::parse(&format!("{}/auth", s.url)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "portcullis")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email groups")
        .append_pair("state", "st")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("connector_id", "corp");
    let page = http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookies: Vec<String> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let mut fields = hidden_fields(&page.text().await.unwrap());
    fields.push(("login".into(), user.into()));
    fields.push(("password".into(), password.into()));
    let done = http
        .post(format!("{}/auth/login", s.url))
        .header("cookie", cookies.join("; "))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&fields))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303, "{}", done.text().await.unwrap());
    let location = url::Url::parse(done.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    let tokens: Value = http
        .post(format!("{}/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), q["code"].clone()),
            ("redirect_uri".to_owned(), REDIRECT.to_owned()),
            ("client_id".to_owned(), "portcullis".to_owned()),
            ("code_verifier".to_owned(), verifier.clone()),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{tokens}"))
        .to_owned()
}

async fn can_list_workspaces(s: &TestServer, token: &str) -> Value {
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": { "verb": "list", "group": "portcullis.dev", "resource": "workspaces" } },
    });
    let r = s
        .anonymous()
        .post(format!(
            "{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            s.url
        ))
        .bearer_auth(token)
        .json(&review)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "authenticated by the ID token");
    r.json().await.unwrap()
}

#[tokio::test]
async fn an_ldap_user_gets_what_a_binding_grants_to_their_prefixed_group() {
    let slapd = Slapd::start().unwrap();
    let s = TestServer::start_with(|c| {
        c.oidc.static_clients.push(Client::new(
            "portcullis",
            ClientSpec {
                public: true,
                redirect_uris: vec![REDIRECT.into()],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                ..Default::default()
            },
        ));
    })
    .await;
    // `apply`: the object is valid, but its bind password is not set yet: Ready=False.
    create(
        &s,
        format!("{}/apis/portcullis.dev/v1alpha1/connectors", s.url),
        &connector_object(&slapd),
    )
    .await;
    let missing = ready_condition(&s, "False").await;
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("set-bind-password"),
        "{missing}"
    );
    // A wrong bind password: the LDAP result code and text.
    set_bind_password(&s, "not-the-password").await;
    let wrong = loop {
        let c = ready_condition(&s, "False").await;
        if c["message"].as_str().unwrap().contains("LDAP result 49") {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        wrong["message"]
            .as_str()
            .unwrap()
            .contains("invalidCredentials"),
        "{wrong}"
    );
    set_bind_password(&s, slapd::SERVICE_PASSWORD).await;
    ready_condition(&s, "True").await;
    // The password is sealed at rest and `get` never shows it.
    let object = s
        .admin()
        .get(format!(
            "{}/apis/portcullis.dev/v1alpha1/connectors/corp",
            s.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!object.contains(slapd::SERVICE_PASSWORD), "{object}");
    // `portcullis connector test corp`: the server logs the user in through the connector it
    // serves and answers the identity and the LDAP operations made.
    let test = |password: &'static str| {
        let http = s.admin();
        let url = format!(
            "{}/apis/portcullis.dev/v1alpha1/connectors/corp/test",
            s.url
        );
        async move {
            let r = http
                .post(url)
                .json(&json!({ "username": "alice", "password": password }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        }
    };
    let ok = test("alice-pw").await;
    assert_eq!(ok["identity"]["groups"], json!(["admins", "devs"]), "{ok}");
    assert_eq!(ok["identity"]["subject"], "corp:YWxpY2U");
    let operations = ok["operations"].as_array().unwrap();
    assert!(
        operations.iter().any(|o| o
            .as_str()
            .unwrap()
            .contains("filter (uid=alice): 1 entries")),
        "{ok}"
    );
    let refused = test("wrong").await;
    assert!(
        refused["identity"].is_null() && refused["error"].is_null(),
        "{refused}"
    );
    assert!(!refused.to_string().contains("wrong"), "{refused}");

    let alice = id_token_of(&s, "alice", "alice-pw").await;
    let bob = id_token_of(&s, "bob", "bob-pw").await;
    // The API sees alice by e-mail with the directory's groups behind `oidc:`.
    let before = can_list_workspaces(&s, &alice).await;
    assert_eq!(before["status"]["allowed"], false, "{before}");

    let rbac = format!("{}/apis/rbac.authorization.k8s.io/v1", s.url);
    for (plural, obj) in [
        (
            "clusterroles",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": { "name": "workspace-reader" },
                "rules": [{ "apiGroups": ["portcullis.dev"], "resources": ["workspaces"], "verbs": ["get", "list"] }],
            }),
        ),
        (
            "clusterrolebindings",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": { "name": "ldap-admins-read" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "workspace-reader" },
                "subjects": [{ "kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oidc:admins" }],
            }),
        ),
    ] {
        create(&s, format!("{rbac}/{plural}"), &obj).await;
    }
    // Policy changes apply asynchronously: poll with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let review = can_list_workspaces(&s, &alice).await;
        if review["status"]["allowed"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "never allowed: {review}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // bob is in ops, not admins: the binding does not reach him.
    let review = can_list_workspaces(&s, &bob).await;
    assert_eq!(review["status"]["allowed"], false, "{review}");
    s.stop().await;
}

/// An upstream OpenID Connect connector applied through the API: its client secret set
/// through `connectors/NAME/bindpassword` (sealed, never shown by `get`), its `Ready`
/// condition from discovery and the keys of the upstream (another portcullis, trusted through
/// `caBundle`), and `connector_id` sending the browser straight to the upstream with PKCE.
#[tokio::test]
async fn an_upstream_oidc_connector_is_served_from_its_object() {
    const SECRET: &str = "upstream-client-secret-0123456789";
    let upstream = TestServer::start().await;
    let s = TestServer::start_with(|c| {
        c.oidc.static_clients.push(Client::new(
            "portcullis",
            ClientSpec {
                public: true,
                redirect_uris: vec![REDIRECT.into()],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                ..Default::default()
            },
        ));
    })
    .await;
    let object = json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Connector",
        "metadata": { "name": "corp" },
        "spec": {
            "type": "oidc",
            "displayName": "Upstream IdP",
            "oidc": {
                "issuerURL": upstream.url,
                "caBundle": upstream.ca_pem(),
                "clientID": "downstream",
                "clientSecretRef": { "name": "corp-oidc", "key": "clientSecret" },
                "scopes": ["email", "groups", "offline_access"],
                "insecureSkipEmailVerified": true,
                "allowedEmailDomains": ["example.org"],
            },
        },
    });
    create(
        &s,
        format!("{}/apis/portcullis.dev/v1alpha1/connectors", s.url),
        &object,
    )
    .await;
    let missing = ready_condition(&s, "False").await;
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("client secret"),
        "{missing}"
    );
    set_bind_password(&s, SECRET).await;
    ready_condition(&s, "True").await;
    let shown = s
        .admin()
        .get(format!(
            "{}/apis/portcullis.dev/v1alpha1/connectors/corp",
            s.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!shown.contains(SECRET), "{shown}");

    let mut url = url::Url::parse(&format!("{}/auth", s.url)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "portcullis")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email")
        .append_pair("code_challenge", &"a".repeat(43))
        .append_pair("code_challenge_method", "S256")
        .append_pair("connector_id", "corp");
    let r = s.anonymous().get(url.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/auth?", upstream.url)),
        "{location}"
    );
    let q: HashMap<String, String> = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["client_id"], "downstream");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], format!("{}/callback", s.url));
    assert_eq!(q["scope"], "openid email groups offline_access");
    s.stop().await;
    upstream.stop().await;
}
