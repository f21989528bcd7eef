//! Security cases, one test each, against forward auth in process (the issuer is the shared
//! management plane).

use http::StatusCode;

use crate::support::{
    EDITOR, VIEWER, call, check_request, in_process, session_for, set_cookie_value,
};

const PROXY: &str = "127.0.0.1:40000";

/// A browser's GET of `uri` on app.test with the `Cookie` header `cookie`.
async fn as_browser(
    fa: &portcullis_forward_auth::ForwardAuth,
    uri: &str,
    cookie: &str,
) -> http::Response<axum::body::Body> {
    let headers = [("cookie", cookie), ("accept", "text/html")];
    call(fa, PROXY, check_request("GET", "app.test", uri, &headers)).await
}

fn with_cookie(cookie: &str) -> String {
    format!("_portcullis_auth={cookie}")
}

async fn status_of(
    fa: &portcullis_forward_auth::ForwardAuth,
    method: &str,
    uri: &str,
    cookie: &str,
) -> StatusCode {
    let c = with_cookie(cookie);
    call(
        fa,
        PROXY,
        check_request(
            method,
            "app.test",
            uri,
            &[("cookie", &c), ("accept", "application/json")],
        ),
    )
    .await
    .status()
}

#[tokio::test]
async fn a_valid_cookie_allows_and_tells_who() {
    let (fa, _) = in_process(|_| {}).await;
    let cookie = session_for(&fa, VIEWER).await;
    let c = with_cookie(&cookie);
    let r = call(
        &fa,
        PROXY,
        check_request("GET", "app.test", "/app/x", &[("cookie", &c)]),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-request-user"], VIEWER);
    assert_eq!(r.headers()["x-auth-request-groups"], "oidc:viewers");
    assert!(
        r.headers().get("authorization").is_none(),
        "no ID token unless passIDToken"
    );
}

#[tokio::test]
async fn tampered_cookies_are_anonymous() {
    let (fa, _) = in_process(|_| {}).await;
    let cookie = session_for(&fa, VIEWER).await;
    assert_eq!(status_of(&fa, "GET", "/app/x", &cookie).await, 200);
    let mut chars: Vec<char> = cookie.chars().collect();
    for i in [0, chars.len() / 2, chars.len() - 1] {
        let original = chars[i];
        chars[i] = if original == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.iter().collect();
        assert_eq!(
            status_of(&fa, "GET", "/app/x", &tampered).await,
            401,
            "byte {i}"
        );
        chars[i] = original;
    }
    assert_eq!(
        status_of(&fa, "GET", "/app/x", &cookie[..cookie.len() - 4]).await,
        401
    );
}

#[tokio::test]
async fn expired_cookies_are_anonymous() {
    let (fa, clock) = in_process(|_| {}).await;
    let cookie = session_for(&fa, VIEWER).await;
    assert_eq!(status_of(&fa, "GET", "/app/x", &cookie).await, 200);
    // The ID token lives an hour; the session with it.
    clock.advance(3601);
    assert_eq!(status_of(&fa, "GET", "/app/x", &cookie).await, 401);
}

#[tokio::test]
async fn cookies_sealed_with_another_key_are_anonymous() {
    let (fa, _) = in_process(|_| {}).await;
    let (other, _) = in_process(|_| {}).await;
    let cookie = session_for(&other, EDITOR).await;
    assert_eq!(status_of(&other, "GET", "/app/x", &cookie).await, 200);
    assert_eq!(status_of(&fa, "GET", "/app/x", &cookie).await, 401);
}

#[tokio::test]
async fn every_open_redirect_variant_is_refused() {
    let (fa, _) = in_process(|c| c.allowed_redirect_domains = vec![".example.com".into()]).await;
    let start = |rd: &str| {
        let target = format!(
            "/_oauth/start?rd={}",
            percent_encoding::utf8_percent_encode(rd, percent_encoding::NON_ALPHANUMERIC)
        );
        check_request("GET", "app.test", &target, &[("accept", "text/html")])
    };
    for rd in [
        "//evil.com",
        "//evil.com/%2f..",
        "/\\evil.com",
        "\\/evil.com",
        "/%5cevil.com",
        "/%2f%2fevil.com",
        "/%09/evil.com",
        "/%0a/evil.com",
        "/%0b/evil.com",
        "/%0d/evil.com",
        "/\t/evil.com",
        " https://evil.com",
        "https://evil.com",
        "https://evil.com/",
        "https://app.test@evil.com",
        "https://app.test:443@evil.com/",
        "https://user:pass@app.example.com/",
        "https://app.example.com\\@evil.com",
        "https://evil.com#.example.com",
        "https://evil.com?.example.com",
        "https://example.com.evil.com/",
        "https://evilexample.com/",
        "https:evil.com",
        "https:/evil.com",
        "https:\\\\evil.com",
        "javascript:alert(1)",
        "JavaScript://app.example.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://app.example.com/",
        "http://app.example.com/",
        "http://app.test/",
        "evil.com",
    ] {
        let r = call(&fa, PROXY, start(rd)).await;
        assert_eq!(r.status(), 400, "rd {rd:?} was not refused");
        assert!(r.headers().get("location").is_none(), "{rd:?}");
    }
    // Allowed targets start the login (the target travels sealed in the login cookie; where
    // each one resolves to is `redirect::check`'s unit test).
    let issuer = format!("{}/auth?", crate::support::env().server_url);
    for rd in [
        "/app/page?x=1",
        "https://app.test/a",
        "https://grafana.example.com/d",
    ] {
        let r = call(&fa, PROXY, start(rd)).await;
        assert_eq!(r.status(), 302, "{rd}");
        let to = r.headers()["location"].to_str().unwrap();
        assert!(to.starts_with(&issuer), "{rd}: {to}");
        let cookie = set_cookie_value(&r, "_portcullis_auth_login").unwrap();
        assert!(
            !cookie.contains("app.") && !cookie.contains("grafana"),
            "{cookie}"
        );
    }
}

#[tokio::test]
async fn a_callback_with_another_state_is_refused() {
    let (fa, _) = in_process(|_| {}).await;
    let r = call(
        &fa,
        PROXY,
        check_request("GET", "app.test", "/app/home", &[("accept", "text/html")]),
    )
    .await;
    assert_eq!(r.status(), 302);
    let login_cookie = set_cookie_value(&r, "_portcullis_auth_login").unwrap();
    let c = format!("_portcullis_auth_login={login_cookie}");
    // An attacker's callback URL (their own code and state) in the victim's browser.
    let forged = call(
        &fa,
        PROXY,
        check_request(
            "GET",
            "app.test",
            "/_oauth?code=attackers-code&state=attackers-state",
            &[("cookie", &c)],
        ),
    )
    .await;
    assert_eq!(forged.status(), 403);
    assert!(set_cookie_value(&forged, "_portcullis_auth").is_none());
    // And without any login started in this browser.
    let none = call(
        &fa,
        PROXY,
        check_request("GET", "app.test", "/_oauth?code=x&state=y", &[]),
    )
    .await;
    assert_eq!(none.status(), 400);
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_address_are_ignored() {
    let (fa, _) = in_process(|_| {}).await;
    let cookie = session_for(&fa, EDITOR).await;
    let c = with_cookie(&cookie);
    let request = || {
        check_request(
            "GET",
            "app.test",
            "/app/x",
            &[("cookie", &c), ("accept", "application/json")],
        )
    };
    assert_eq!(call(&fa, PROXY, request()).await.status(), 200);
    // From elsewhere the request is judged on its own connection: GET /forward-auth, which no
    // role grants.
    let r = call(&fa, "10.1.2.3:5555", request()).await;
    assert_eq!(r.status(), 403);
    let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("\"/forward-auth\""),
        "{body:?}"
    );
    // The default trusts nobody, loopback included.
    let (default, _) = in_process(|c| c.trusted_proxies.clear()).await;
    let r = call(
        &default,
        PROXY,
        check_request(
            "GET",
            "app.test",
            "/_oauth/start?rd=https://evil.com",
            &[("accept", "text/html")],
        ),
    )
    .await;
    // Not read: the forwarded `rd` and host; the login is for the connection's own host.
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(location.contains("forward-auth.internal"), "{location}");
    assert!(
        !location.contains("app.test") && !location.contains("evil.com"),
        "{location}"
    );
}

#[tokio::test]
async fn path_tricks_are_decided_once_on_the_normalised_path() {
    let (fa, _) = in_process(|c| {
        c.hosts = vec![portcullis_forward_auth::HostRule {
            host: "app.test".into(),
            path_prefix: String::new(),
        }];
    })
    .await;
    let viewer = session_for(&fa, VIEWER).await;
    for (uri, want) in [
        ("/app/x", 200),
        ("/app/../admin", 403),
        ("/app/%2e%2e/admin", 403),
        ("/app/%2E%2E/admin", 403),
        ("/app/.%2e/admin", 403),
        ("/app%2f..%2fadmin", 403),
        ("/app/%2f../admin", 200),
        ("//app/x", 200),
        ("/app//x", 200),
        ("//admin", 403),
        ("/app/x;jsessionid=abc", 200),
        ("/admin;jsessionid=abc", 403),
        ("/admin;/../app/x", 200),
        ("/APP/x", 403),
        ("/App/x", 403),
        ("/app/x?next=/../admin", 200),
        ("/admin?/app/x", 403),
        ("/admin#/app/x", 403),
        ("/app/%252e%252e/admin", 200),
        ("/app/x%zz", 400),
    ] {
        assert_eq!(
            status_of(&fa, "GET", uri, &viewer).await.as_u16(),
            want,
            "{uri}"
        );
    }
    // A viewer may not post anywhere, however the path is spelled.
    for uri in ["/app/x", "/app/./x", "//app//x"] {
        assert_eq!(status_of(&fa, "POST", uri, &viewer).await, 403, "{uri}");
    }
    // Hosts compare without case and trailing dot; other hosts are refused.
    let c = with_cookie(&viewer);
    for (host, want) in [
        ("APP.test", 200),
        ("app.test.", 200),
        ("app.test:8443", 200),
        ("other.test", 403),
    ] {
        let r = call(
            &fa,
            PROXY,
            check_request(
                "GET",
                host,
                "/app/x",
                &[("cookie", &c), ("accept", "application/json")],
            ),
        )
        .await;
        assert_eq!(r.status().as_u16(), want, "{host}");
    }
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_are_refused() {
    let (fa, _) = in_process(|_| {}).await;
    let editor = session_for(&fa, EDITOR).await;
    let c = with_cookie(&editor);
    for name in [
        "X-Auth-Request-User",
        "x-auth-request-email",
        "X_Auth_Request_User",
        "x_auth_request_groups",
        "X-Forwarded-User",
        "x_forwarded_email",
        "X-Auth-Request-Cookie",
    ] {
        let r = call(
            &fa,
            PROXY,
            check_request(
                "GET",
                "app.test",
                "/app/x",
                &[("cookie", &c), (name, "admin@example.com")],
            ),
        )
        .await;
        assert_eq!(r.status(), 400, "{name}");
        assert!(r.headers().get("x-auth-request-user").is_none());
    }
}

#[tokio::test]
async fn an_oversized_cookie_is_anonymous_and_harmless() {
    let (fa, _) = in_process(|_| {}).await;
    let huge = "A".repeat(5000);
    assert_eq!(status_of(&fa, "GET", "/app/x", &huge).await, 401);
    let c = format!(
        "_portcullis_auth={huge}; _portcullis_auth={}",
        "B".repeat(3000)
    );
    let r = as_browser(&fa, "/app/x", &c).await;
    assert_eq!(
        r.status(),
        302,
        "a browser with a bad cookie is sent to log in"
    );
}

#[tokio::test]
async fn an_identity_too_large_for_one_cookie_is_refused_not_split() {
    let (fa, _) = in_process(|_| {}).await;
    let r = crate::support::callback_for(&fa, crate::support::CROWD).await;
    assert_eq!(r.status(), 403);
    assert!(set_cookie_value(&r, "_portcullis_auth").is_none());
    let body = axum::body::to_bytes(r.into_body(), 16384).await.unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("does not fit in one 4 KB cookie"),
        "{body:?}"
    );
}

#[tokio::test]
async fn the_session_cookie_is_one_cookie_with_the_right_attributes() {
    let (fa, _) = in_process(|c| c.pass_id_token = true).await;
    let cookie = session_for(&fa, EDITOR).await;
    assert!(cookie.len() + "_portcullis_auth=".len() <= 4096);
    let c = with_cookie(&cookie);
    let r = call(
        &fa,
        PROXY,
        check_request("GET", "app.test", "/app/x", &[("cookie", &c)]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let bearer = r.headers()["authorization"].to_str().unwrap();
    assert!(
        bearer.starts_with("Bearer ey"),
        "the ID token is passed with passIDToken"
    );
    let start = call(
        &fa,
        PROXY,
        check_request("GET", "app.test", "/app/y", &[("accept", "text/html")]),
    )
    .await;
    let set = start.headers()["set-cookie"].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
}

#[tokio::test]
async fn logout_ends_the_session_in_process() {
    let (fa, _) = in_process(|_| {}).await;
    let cookie = session_for(&fa, EDITOR).await;
    assert_eq!(status_of(&fa, "GET", "/app/x", &cookie).await, 200);
    let c = with_cookie(&cookie);
    let r = call(
        &fa,
        PROXY,
        check_request("GET", "app.test", "/_oauth/logout", &[("cookie", &c)]),
    )
    .await;
    assert_eq!(r.status(), 302);
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("_portcullis_auth=;"));
    assert!(cleared);
    assert_eq!(status_of(&fa, "GET", "/app/x", &cookie).await, 401);
}

#[tokio::test]
async fn an_expired_session_is_renewed_silently_with_the_refresh_token_kept_server_side() {
    let (fa, clock) = in_process(|_| {}).await;
    let cookie = session_for(&fa, VIEWER).await;
    // The refresh token is not in the cookie: it is ~200 bytes of sealed identity.
    assert!(cookie.len() < 600, "{}", cookie.len());
    // Past the ID token's five minutes (within the verifier's leeway for the new one).
    clock.advance(301);
    assert_eq!(status_of(&fa, "GET", "/app/x", &cookie).await, 401);
    let c = with_cookie(&cookie);
    let r = as_browser(&fa, "/app/x?y=1", &c).await;
    assert_eq!(r.status(), 302);
    // Straight back, without a trip to the issuer's login.
    assert_eq!(r.headers()["location"], "https://app.test/app/x?y=1");
    let renewed = set_cookie_value(&r, "_portcullis_auth").expect("a renewed cookie");
    assert_ne!(renewed, cookie);
    // After logout there is nothing left to renew with.
    let c = with_cookie(&renewed);
    let out = call(
        &fa,
        PROXY,
        check_request("GET", "app.test", "/_oauth/logout", &[("cookie", &c)]),
    )
    .await;
    assert_eq!(out.status(), 302);
    let again = as_browser(&fa, "/app/x", &c).await;
    assert_eq!(again.status(), 302);
    let to = again.headers()["location"].to_str().unwrap();
    assert!(
        to.contains("/auth?"),
        "a logged-out session was renewed: {to}"
    );
}

#[tokio::test]
async fn one_central_auth_host_logs_in_every_host_under_the_cookie_domain() {
    let (fa, _) = in_process(|c| {
        c.auth_host = Some("auth.app.test".into());
        c.cookie_domain = Some("app.test".into());
    })
    .await;
    let r = crate::support::callback_on(&fa, VIEWER, "grafana.app.test", "auth.app.test").await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://grafana.app.test/app/home");
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("_portcullis_auth="))
        .unwrap();
    assert!(set.contains("Domain=app.test"), "{set}");
    let cookie = set_cookie_value(&r, "_portcullis_auth").unwrap();
    let c = with_cookie(&cookie);
    for host in ["grafana.app.test", "prometheus.app.test"] {
        let r = call(
            &fa,
            PROXY,
            check_request("GET", host, "/app/x", &[("cookie", &c)]),
        )
        .await;
        assert_eq!(r.status(), 200, "{host}");
    }
}

#[tokio::test]
async fn cookies_sealed_before_a_key_rotation_still_open_and_new_ones_use_the_new_key() {
    use base64::Engine as _;
    let key_id = |cookie: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cookie)
            .unwrap()[1..5]
            .to_vec()
    };
    let (fa, clock) = in_process(|c| c.key_rotation_seconds = 60).await;
    let before = session_for(&fa, VIEWER).await;
    clock.advance(61);
    fa.rotate_keys().await.unwrap();
    assert_eq!(status_of(&fa, "GET", "/app/x", &before).await, 200);
    let after = session_for(&fa, EDITOR).await;
    assert_ne!(key_id(&before), key_id(&after), "the new key seals");
    assert_eq!(status_of(&fa, "GET", "/app/x", &after).await, 200);
}
