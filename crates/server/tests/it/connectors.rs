//! End to end: a user of the organisation's LDAP directory (a real slapd) logs in at the
//! issuer through the authorization code flow, and the prefixed groups of their ID token are
//! what a ClusterRoleBinding on the management API grants to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_connectors::ldap::{LdapConnector, LdapOptions};
use portcullis_connectors::{Connectors, PasswordConnector};
use portcullis_model::kinds::connector::{
    LdapConnector as LdapSpec, LdapGroupSearch, LdapSecurity, LdapUserMatcher, LdapUserSearch,
};
use portcullis_model::{Client, ClientSpec, ConnectorSpec, GrantType};
use portcullis_testkit::slapd::{self, Slapd};
use serde_json::{Value, json};

use crate::support::TestServer;

const REDIRECT: &str = "http://127.0.0.1:8000/callback";

fn directory(slapd: &Slapd) -> Arc<dyn PasswordConnector> {
    let spec = ConnectorSpec {
        display_name: "Example Corp".into(),
        ldap: Some(LdapSpec {
            host: slapd.ldap_addr.clone(),
            security: LdapSecurity::StartTLS,
            ca_bundle: slapd.ca_pem().to_owned(),
            bind_dn: slapd::SERVICE_DN.into(),
            user_search: LdapUserSearch {
                base_dn: slapd::PEOPLE_DN.into(),
                username_attr: "uid".into(),
                id_attr: "uid".into(),
                email_attr: "mail".into(),
                ..Default::default()
            },
            group_search: Some(LdapGroupSearch {
                base_dn: slapd::GROUPS_DN.into(),
                user_matchers: vec![LdapUserMatcher {
                    user_attr: "DN".into(),
                    group_attr: "member".into(),
                }],
                name_attr: "cn".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Arc::new(
        LdapConnector::new(
            "corp",
            &spec,
            Some(secrecy::SecretString::from(slapd::SERVICE_PASSWORD)),
            LdapOptions::default(),
        )
        .unwrap(),
    )
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
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303, "{}", done.text().await.unwrap());
    let location = url::Url::parse(done.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    let tokens: Value = http
        .post(format!("{}/token", s.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "portcullis"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["id_token"].as_str().unwrap_or_else(|| panic!("{tokens}")).to_owned()
}

async fn can_list_workspaces(s: &TestServer, token: &str) -> Value {
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": { "verb": "list", "group": "portcullis.dev", "resource": "workspaces" } },
    });
    let r = s
        .anonymous()
        .post(format!("{}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", s.url))
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
    let provider = s.running.as_ref().unwrap().provider.clone();
    provider.set_connectors(Connectors::new(vec![directory(&slapd)]));

    let alice = id_token_of(&s, "alice", "alice-pw").await;
    let bob = id_token_of(&s, "bob", "bob-pw").await;
    // The API sees alice by e-mail with the directory's groups behind `oidc:`.
    let before = can_list_workspaces(&s, &alice).await;
    assert_eq!(before["status"]["allowed"], false, "{before}");

    let admin = s.admin();
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
        let r = admin.post(format!("{rbac}/{plural}")).json(&obj).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
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
