//! The whole flow through real proxies: anonymous → login at the management plane → back at
//! the original URL with the identity upstream; a viewer cannot edit; logout ends the cookie.

use serde_json::Value;

use crate::support::{Browser, EDITOR, VIEWER, env, proxies};

/// Walks the flow in front of `site` (nginx or Caddy): returns the session cookie.
async fn log_in_through(site: &str, login: &str, expect_groups: &str) -> (Browser, String) {
    let e = env();
    let mut b = Browser::new(&e.ca_pem);
    let original = format!("{site}/app/page?tab=1");
    let (page, visited) = b.follow(&original).await;
    let login_url = visited.last().unwrap().clone();
    assert!(
        login_url.starts_with(&format!("{}/auth?", e.server_url)),
        "anonymous browser not sent to the issuer: {visited:?}"
    );
    let (answer, visited) = b.log_in(&login_url, page, login).await;
    assert_eq!(answer.status(), 200, "after login: {visited:?}");
    assert_eq!(
        visited.last().unwrap(),
        &original,
        "not back at the original URL: {visited:?}"
    );
    let echo: Value = answer.json().await.unwrap();
    let h = &echo["headers"];
    assert_eq!(echo["uri"], "/app/page?tab=1");
    assert_eq!(h["x-auth-request-user"], login);
    assert_eq!(h["x-auth-request-email"], login);
    assert_eq!(h["x-auth-request-groups"], expect_groups);
    assert!(h["x-auth-request-preferred-username"].is_string(), "{echo}");
    let upstream_cookie = h["cookie"].as_str().unwrap_or("");
    assert!(
        !upstream_cookie.contains("_portcullis_auth"),
        "the proxy's own cookie reached the upstream: {upstream_cookie}"
    );
    let cookie = b
        .jar
        .get("_portcullis_auth")
        .expect("session cookie")
        .0
        .clone();
    assert!(cookie.len() + "_portcullis_auth=".len() <= 4096);
    (b, cookie)
}

async fn view_user_cannot_edit_and_logout_ends_the_cookie(site: &str) {
    let (mut b, cookie) = log_in_through(site, VIEWER, "oidc:viewers").await;
    // The other cookies of the site still reach the upstream; this endpoint's do not.
    b.jar.insert("theme".into(), ("dark".into(), false));
    let again = b.get(&format!("{site}/app/other")).await;
    assert_eq!(again.status(), 200);
    let echo: Value = again.json().await.unwrap();
    assert_eq!(echo["headers"]["cookie"], "theme=dark");
    b.jar.remove("theme");
    let post = b
        .request("POST", &format!("{site}/app/page"), Some("a=1".into()))
        .await;
    assert_eq!(post.status(), 403, "a viewer may not post");
    let outside = b.get(&format!("{site}/admin/")).await;
    assert_eq!(outside.status(), 403, "nothing outside /app is granted");
    let logout = b.get(&format!("{site}/_oauth/logout")).await;
    assert_eq!(logout.status(), 302);
    let to = logout.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with(&format!("{}/logout?", env().server_url)),
        "{to}"
    );
    assert!(to.contains("id_token_hint="), "{to}");
    assert!(
        !b.jar.contains_key("_portcullis_auth"),
        "cookie not cleared"
    );
    // The old cookie, replayed, no longer works.
    let replay = b
        .client
        .get(format!("{site}/app/page"))
        .header("cookie", format!("_portcullis_auth={cookie}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert!(
        replay.status() == 401 || replay.status() == 302,
        "a logged-out cookie still works: {}",
        replay.status()
    );
}

/// An editor may post; a viewer may not; logout ends the cookie.
async fn full_flow(site: &str, logs: impl Fn() -> String) {
    let (mut b, _) = log_in_through(site, EDITOR, "oidc:editors").await;
    let post = b
        .request("POST", &format!("{site}/app/page"), Some("a=1".into()))
        .await;
    assert_eq!(post.status(), 200, "an editor may post: {}", logs());
    view_user_cannot_edit_and_logout_ends_the_cookie(site).await;
}

#[tokio::test]
async fn nginx_auth_request_logs_in_passes_identity_and_enforces_rbac() {
    let nginx = &proxies().nginx;
    full_flow(&nginx.url, || nginx.error_log()).await;
}

#[tokio::test]
async fn caddy_forward_auth_logs_in_passes_identity_and_enforces_rbac() {
    let caddy = &proxies().caddy;
    full_flow(&caddy.url, || caddy.logs()).await;
}

#[tokio::test]
async fn api_clients_get_401_and_may_use_an_id_token_instead_of_a_cookie() {
    let tokens = crate::support::tokens_for(EDITOR).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    for site in [&proxies().nginx.url, &proxies().caddy.url] {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let anonymous = client
            .get(format!("{site}/app/api"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        // nginx turns the 401 into the login redirect for everyone; Caddy passes it on.
        assert!(
            anonymous.status() == 401 || anonymous.status() == 302,
            "{site}"
        );
        let with_token = client
            .get(format!("{site}/app/api"))
            .bearer_auth(id_token)
            .send()
            .await
            .unwrap();
        assert_eq!(with_token.status(), 200, "{site}");
        let echo: Value = with_token.json().await.unwrap();
        assert_eq!(echo["headers"]["x-auth-request-user"], EDITOR);
        let forged = client
            .get(format!("{site}/app/api"))
            .bearer_auth(format!("{id_token}x"))
            .send()
            .await
            .unwrap();
        assert_ne!(forged.status(), 200, "{site}");
    }
}

#[tokio::test]
async fn identity_headers_injected_through_the_proxies_never_reach_the_upstream() {
    let tokens = crate::support::tokens_for(VIEWER).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let client = reqwest::Client::new();
    let p = proxies();
    // nginx: the check refuses (403: all nginx understands besides 2xx and 401). nginx itself
    // drops headers with underscores (`underscores_in_headers off`).
    for (site, name, want) in [
        (&p.nginx.url, "X-Auth-Request-User", 403),
        (&p.nginx.url, "x-auth-request-groups", 403),
        (&p.caddy.url, "X-Auth-Request-User", 400),
        (&p.caddy.url, "X_Auth_Request_User", 400),
        (&p.caddy.url, "x_forwarded_email", 400),
    ] {
        let r = client
            .get(format!("{site}/app/x"))
            .bearer_auth(id_token)
            .header(name, "admin@example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{site} {name}");
    }
    let underscore = client
        .get(format!("{}/app/x", p.nginx.url))
        .bearer_auth(id_token)
        .header("X_Auth_Request_User", "admin@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(underscore.status(), 200);
    let echo: Value = underscore.json().await.unwrap();
    let seen = echo["headers"].as_object().unwrap();
    assert_eq!(echo["headers"]["x-auth-request-user"], VIEWER);
    assert!(
        !seen.keys().any(|k| k.contains('_')),
        "an underscore header reached the upstream: {echo}"
    );
}
