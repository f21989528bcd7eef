//! Single sign-on, prompts, consent, CSRF and throttling of the login form, refresh token
//! families, revocation, introspection, the device flow, logout and restarts.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreClient, CoreDeviceAuthorizationResponse, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    ClientId, DeviceAuthorizationUrl, OAuth2TokenResponse, PkceCodeChallenge, RefreshToken, Scope,
    TokenResponse,
};
use serde_json::Value;

use crate::browser::{Browser, Page};
use crate::flow::{
    DASHBOARD_LOGGED_OUT, DASHBOARD_REDIRECT, DASHBOARD_SECRET, KUBECTL_REDIRECT, PASSWORD,
    TestClock, provider, provider_with_clock, seed,
};
use crate::support::{Http, Served};

/// A relying party driven by hand: builds authorization URLs, redeems codes, refreshes.
pub(crate) struct Rp<'a> {
    pub(crate) served: &'a Served,
    pub(crate) client_id: &'static str,
    pub(crate) secret: Option<&'static str>,
    pub(crate) redirect: &'static str,
}

pub(crate) struct Authorization {
    pub(crate) url: String,
    pub(crate) verifier: String,
    pub(crate) state: String,
}

pub(crate) fn kubectl(served: &Served) -> Rp<'_> {
    Rp {
        served,
        client_id: "kubectl",
        secret: None,
        redirect: KUBECTL_REDIRECT,
    }
}

fn dashboard(served: &Served) -> Rp<'_> {
    Rp {
        served,
        client_id: "dashboard",
        secret: Some(DASHBOARD_SECRET),
        redirect: DASHBOARD_REDIRECT,
    }
}

pub(crate) fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

impl Rp<'_> {
    pub(crate) fn authorize(&self, scope: &str, extra: &[(&str, &str)]) -> Authorization {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = format!("state-{}", rand_suffix());
        let mut url = url::Url::parse(&format!("{}/auth", self.served.issuer)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", self.client_id)
            .append_pair("redirect_uri", self.redirect)
            .append_pair("response_type", "code")
            .append_pair("scope", scope)
            .append_pair("state", &state)
            .append_pair("nonce", "n-0S6_WzA2Mj")
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra);
        Authorization {
            url: url.to_string(),
            verifier: verifier.secret().clone(),
            state,
        }
    }

    async fn token_request(&self, fields: &[(&str, &str)]) -> (u16, Value) {
        self.post("/token", fields).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let mut fields = fields.to_vec();
        let mut request = reqwest::Client::new().post(format!("{}{path}", self.served.issuer));
        match self.secret {
            Some(secret) => request = request.basic_auth(self.client_id, Some(secret)),
            None => fields.push(("client_id", self.client_id)),
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn redeem(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub(crate) async fn refresh(&self, token: &str) -> (u16, Value) {
        self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .await
    }

    /// Logs in through `browser` (password form unless the session answers) and redeems the
    /// code.
    pub(crate) async fn login(&self, browser: &Browser, scope: &str) -> Value {
        let auth = self.authorize(scope, &[]);
        let mut page = browser.get(&auth.url).await;
        if page.status == 200 {
            page = browser
                .submit(
                    &page.form("/auth/login"),
                    &[("login", "alice"), ("password", PASSWORD)],
                )
                .await;
        }
        self.finish(&auth, &page).await
    }

    pub(crate) async fn finish(&self, auth: &Authorization, page: &Page) -> Value {
        assert_eq!(page.status, 303, "{}", page.body);
        let q = page.redirect_query();
        assert_eq!(q["state"], auth.state);
        let (status, body) = self.redeem(&q["code"], &auth.verifier).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    URL_SAFE_NO_PAD.encode(b)
}

pub(crate) async fn userinfo_status(served: &Served, access_token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/userinfo", served.issuer))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub(crate) fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

// === single sign-on and prompts ===

#[tokio::test]
async fn second_client_logs_in_without_a_password() {
    let served = provider().await;
    let browser = Browser::new();
    let first = kubectl(&served).login(&browser, "openid").await;
    let session = browser.cookie("__Host-portcullis-session").unwrap();
    // The dashboard gets a code straight from the session: no form.
    let rp = dashboard(&served);
    let auth = rp.authorize("openid profile", &[]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 303, "SSO answers at once: {}", page.body);
    let tokens = rp.finish(&auth, &page).await;
    let a = claims(str_of(&first, "id_token"));
    let b = claims(str_of(&tokens, "id_token"));
    assert_eq!(a["sub"], b["sub"]);
    assert_eq!(a["sid"], b["sid"], "one browser session");
    assert_eq!(a["auth_time"], b["auth_time"]);
    assert_ne!(a["sid"].as_str().unwrap(), session, "sid is not the cookie");
    served.stop().await;
}

#[tokio::test]
async fn prompt_none_answers_from_the_session() {
    let served = provider().await;
    let browser = Browser::new();
    kubectl(&served).login(&browser, "openid").await;
    let rp = dashboard(&served);
    let auth = rp.authorize("openid", &[("prompt", "none")]);
    let page = browser.get(&auth.url).await;
    rp.finish(&auth, &page).await;
    // Another browser has no session.
    let page = Browser::new().get(&auth.url).await;
    assert_eq!(page.redirect_query()["error"], "login_required");
    served.stop().await;
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_login() {
    let clock = TestClock::new();
    let served = provider_with_clock(clock.clock()).await;
    let browser = Browser::new();
    let first = kubectl(&served).login(&browser, "openid").await;
    let rp = dashboard(&served);
    let auth = rp.authorize("openid", &[("prompt", "login")]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 200, "prompt=login shows the form");
    page.form("/auth/login");

    clock.advance(100);
    let auth = rp.authorize("openid", &[("max_age", "50")]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 200, "max_age exceeded shows the form");
    let page = browser
        .submit(
            &page.form("/auth/login"),
            &[("login", "alice"), ("password", PASSWORD)],
        )
        .await;
    let tokens = rp.finish(&auth, &page).await;
    let before = claims(str_of(&first, "id_token"))["auth_time"]
        .as_u64()
        .unwrap();
    let after = claims(str_of(&tokens, "id_token"))["auth_time"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 100, "auth_time is the new login");

    // Within max_age the session answers.
    let auth = rp.authorize("openid", &[("max_age", "50")]);
    assert_eq!(browser.get(&auth.url).await.status, 303);
    // prompt=none with an old login is login_required.
    clock.advance(60);
    let auth = rp.authorize("openid", &[("max_age", "50"), ("prompt", "none")]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.redirect_query()["error"], "login_required");
    served.stop().await;
}

#[tokio::test]
async fn select_account_offers_to_continue_as_the_session_user() {
    let served = provider().await;
    let browser = Browser::new();
    kubectl(&served).login(&browser, "openid").await;
    let rp = dashboard(&served);
    let auth = rp.authorize("openid", &[("prompt", "select_account")]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Continue as alice"));
    let page = browser
        .submit(&page.form("/auth/continue"), &[("decision", "continue")])
        .await;
    rp.finish(&auth, &page).await;
    served.stop().await;
}

#[tokio::test]
async fn consent_can_be_given_or_refused() {
    let served = provider().await;
    let browser = Browser::new();
    kubectl(&served).login(&browser, "openid").await;
    let rp = dashboard(&served);
    let auth = rp.authorize("openid email offline_access", &[("prompt", "consent")]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("your e-mail address"));
    let denied = browser
        .submit(&page.form("/auth/consent"), &[("decision", "deny")])
        .await;
    assert_eq!(denied.redirect_query()["error"], "access_denied");

    let auth = rp.authorize("openid", &[("prompt", "consent")]);
    let page = browser.get(&auth.url).await;
    let allowed = browser
        .submit(&page.form("/auth/consent"), &[("decision", "approve")])
        .await;
    rp.finish(&auth, &allowed).await;
    served.stop().await;
}

#[tokio::test]
async fn form_post_response_mode_posts_the_code() {
    let served = provider().await;
    let browser = Browser::new();
    kubectl(&served).login(&browser, "openid").await;
    let rp = dashboard(&served);
    let auth = rp.authorize("openid", &[("response_mode", "form_post")]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 200);
    let form = page.forms().pop().unwrap();
    assert_eq!(form.action, DASHBOARD_REDIRECT);
    let fields: HashMap<_, _> = form.hidden.into_iter().collect();
    assert_eq!(fields["state"], auth.state);
    assert_eq!(fields["iss"], served.issuer);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert!(
        csp.contains("form-action https://dashboard.example"),
        "{csp}"
    );
    let (status, _) = rp.redeem(&fields["code"], &auth.verifier).await;
    assert_eq!(status, 200);
    served.stop().await;
}

// === the login form ===

#[tokio::test]
async fn login_without_the_csrf_cookie_or_field_is_forbidden() {
    let served = provider().await;
    let rp = kubectl(&served);
    let browser = Browser::new();
    let page = browser.get(&rp.authorize("openid", &[]).url).await;
    let form = page.form("/auth/login");
    let request = form.hidden.iter().find(|(k, _)| k == "request").unwrap();
    // The field without the cookie (a cross-site post carries no SameSite=Lax cookie).
    let csrf = browser.cookie("__Host-portcullis-csrf").unwrap();
    browser.clear_cookies();
    let page = browser
        .post(
            &form.action,
            &[
                ("request", &request.1),
                ("csrf", &csrf),
                ("login", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    // The cookie without the field.
    browser.set_cookie("__Host-portcullis-csrf", &csrf);
    let page = browser
        .post(
            &form.action,
            &[
                ("request", &request.1),
                ("login", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.headers.get("location").is_none());
    // Both: accepted.
    let page = browser
        .submit(&form, &[("login", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, 303);
    served.stop().await;
}

#[tokio::test]
async fn two_login_tabs_share_the_csrf_value() {
    let served = provider().await;
    let rp = kubectl(&served);
    let browser = Browser::new();
    let first = browser.get(&rp.authorize("openid", &[]).url).await;
    let second = browser
        .get(&dashboard(&served).authorize("openid", &[]).url)
        .await;
    // The first tab's form still posts.
    let page = browser
        .submit(
            &first.form("/auth/login"),
            &[("login", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(second.status, 200);
    served.stop().await;
}

#[tokio::test]
async fn repeated_failures_are_throttled_even_with_the_right_password() {
    let served = provider().await;
    let rp = kubectl(&served);
    let browser = Browser::new();
    let page = browser.get(&rp.authorize("openid", &[]).url).await;
    let form = page.form("/auth/login");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let page = browser
            .submit(&form, &[("login", "alice"), ("password", "guess")])
            .await;
        statuses.push(page.status);
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert_eq!(statuses[5], 429, "backoff after five failures");
    let page = browser
        .submit(&form, &[("login", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, 429, "not even checked while blocked");
    assert!(page.headers.get("retry-after").is_some());
    assert!(page.body.contains("Too many failed logins"));
    served.stop().await;
}

// === refresh tokens ===

#[tokio::test]
async fn refresh_tokens_need_offline_access_and_rotate() {
    let served = provider().await;
    let rp = kubectl(&served);
    let online = rp.login(&Browser::new(), "openid").await;
    assert!(online.get("refresh_token").is_none());

    let tokens = rp
        .login(&Browser::new(), "openid groups offline_access")
        .await;
    let first = str_of(&tokens, "refresh_token").to_owned();
    let (status, refreshed) = rp.refresh(&first).await;
    assert_eq!(status, 200, "{refreshed}");
    let second = str_of(&refreshed, "refresh_token").to_owned();
    assert_ne!(first, second, "rotated on use");
    let id = claims(str_of(&refreshed, "id_token"));
    assert_eq!(id["groups"], serde_json::json!(["developers", "ops"]));
    assert!(id.get("nonce").is_none());
    let (status, _) = rp.refresh(&second).await;
    assert_eq!(status, 200);
    served.stop().await;
}

#[tokio::test]
async fn reuse_of_a_rotated_token_revokes_the_family() {
    let clock = TestClock::new();
    let served = provider_with_clock(clock.clock()).await;
    let rp = kubectl(&served);
    let tokens = rp.login(&Browser::new(), "openid offline_access").await;
    let first = str_of(&tokens, "refresh_token").to_owned();
    let (_, refreshed) = rp.refresh(&first).await;
    let second = str_of(&refreshed, "refresh_token").to_owned();
    let access = str_of(&refreshed, "access_token").to_owned();
    clock.advance(11);
    // An attacker replays the old token after the grace window: the family is revoked.
    let (status, body) = rp.refresh(&first).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    let (status, _) = rp.refresh(&second).await;
    assert_eq!(status, 400, "the legitimate holder is logged out too");
    assert_eq!(userinfo_status(&served, &access).await, 401);
    served.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_all_succeed() {
    let served = provider().await;
    let rp = kubectl(&served);
    let tokens = rp.login(&Browser::new(), "openid offline_access").await;
    let shared = str_of(&tokens, "refresh_token").to_owned();
    // kubectl, k9s and an IDE refresh with the same token at once.
    let answers = futures_join(&rp, &shared, 8).await;
    let mut next = None;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let token = str_of(body, "refresh_token");
        assert_eq!(
            *next.get_or_insert(token),
            token,
            "everyone gets the same new token"
        );
    }
    let (status, _) = rp.refresh(next.unwrap()).await;
    assert_eq!(status, 200, "the family lives on");
    served.stop().await;
}

/// `n` refreshes of `token` by the public client kubectl, sent at the same time.
pub(crate) async fn futures_join(rp: &Rp<'_>, token: &str, n: usize) -> Vec<(u16, Value)> {
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = format!("{}/token", rp.served.issuer);
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token),
                    ("client_id", "kubectl"),
                ])
                .finish();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let request = reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body);
                start.wait().await;
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn every_login_is_its_own_offline_session() {
    let served = provider().await;
    let rp = kubectl(&served);
    let laptop = rp.login(&Browser::new(), "openid offline_access").await;
    let desktop = rp.login(&Browser::new(), "openid offline_access").await;
    let (status, _) = rp.refresh(str_of(&laptop, "refresh_token")).await;
    assert_eq!(status, 200);
    let (status, _) = rp.refresh(str_of(&desktop, "refresh_token")).await;
    assert_eq!(status, 200, "a second login does not end the first");
    served.stop().await;
}

#[tokio::test]
async fn a_refresh_token_works_only_for_its_client() {
    let served = provider().await;
    let tokens = kubectl(&served)
        .login(&Browser::new(), "openid offline_access")
        .await;
    let (status, body) = dashboard(&served)
        .refresh(str_of(&tokens, "refresh_token"))
        .await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    served.stop().await;
}

#[tokio::test]
async fn refresh_cannot_widen_the_scope() {
    let served = provider().await;
    let rp = kubectl(&served);
    let tokens = rp.login(&Browser::new(), "openid offline_access").await;
    let (status, body) = rp
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", str_of(&tokens, "refresh_token")),
            ("scope", "openid offline_access groups"),
        ])
        .await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_scope"));
    served.stop().await;
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued() {
    let served = provider().await;
    let rp = kubectl(&served);
    let browser = Browser::new();
    let auth = rp.authorize("openid offline_access", &[]);
    let page = browser.get(&auth.url).await;
    let page = browser
        .submit(
            &page.form("/auth/login"),
            &[("login", "alice"), ("password", PASSWORD)],
        )
        .await;
    let code = page.redirect_query()["code"].clone();
    let (status, tokens) = rp.redeem(&code, &auth.verifier).await;
    assert_eq!(status, 200);
    let (status, _) = rp.redeem(&code, &auth.verifier).await;
    assert_eq!(status, 400);
    let (status, _) = rp.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!(
        status, 400,
        "the refresh token of the replayed code is revoked"
    );
    assert_eq!(
        userinfo_status(&served, str_of(&tokens, "access_token")).await,
        401
    );
    served.stop().await;
}

#[tokio::test]
async fn a_password_reset_revokes_sessions_and_refresh_tokens() {
    let served = provider().await;
    let rp = kubectl(&served);
    let browser = Browser::new();
    let tokens = rp.login(&browser, "openid offline_access").await;
    let new_password = served.provider.reset_password("alice").await.unwrap();
    assert_eq!(new_password.len(), 24);
    let (status, _) = rp.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, 400);
    assert_eq!(
        userinfo_status(&served, str_of(&tokens, "access_token")).await,
        401
    );
    // The browser session is gone: the form is shown, and the old password fails.
    let auth = rp.authorize("openid", &[]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 200);
    let form = page.form("/auth/login");
    let failed = browser
        .submit(&form, &[("login", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(failed.status, 401);
    let page = browser
        .submit(&form, &[("login", "alice"), ("password", &new_password)])
        .await;
    rp.finish(&auth, &page).await;
    served.stop().await;
}

// === revocation and introspection ===

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_grant() {
    let served = provider().await;
    let rp = kubectl(&served);
    let tokens = rp.login(&Browser::new(), "openid offline_access").await;
    let other = rp.login(&Browser::new(), "openid offline_access").await;
    let (status, _) = rp
        .post(
            "/token/revoke",
            &[
                ("token", str_of(&tokens, "refresh_token")),
                ("token_type_hint", "refresh_token"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = rp.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, 400);
    assert_eq!(
        userinfo_status(&served, str_of(&tokens, "access_token")).await,
        401
    );
    // Only that grant.
    assert_eq!(
        userinfo_status(&served, str_of(&other, "access_token")).await,
        200
    );
    // Unknown tokens get 200 too (RFC 7009 §2.2).
    let (status, _) = rp.post("/token/revoke", &[("token", "garbage")]).await;
    assert_eq!(status, 200);
    served.stop().await;
}

#[tokio::test]
async fn another_client_cannot_revoke_a_token() {
    let served = provider().await;
    let tokens = kubectl(&served)
        .login(&Browser::new(), "openid offline_access")
        .await;
    // RFC 7009 §2.1: the client is told the token was not issued to it, and it stays valid.
    for token in ["refresh_token", "access_token"] {
        let (status, body) = dashboard(&served)
            .post("/token/revoke", &[("token", str_of(&tokens, token))])
            .await;
        assert_eq!(
            (status, str_of(&body, "error")),
            (400, "unauthorized_client"),
            "{token}: {body}"
        );
    }
    let (status, _) = kubectl(&served)
        .refresh(str_of(&tokens, "refresh_token"))
        .await;
    assert_eq!(status, 200, "still valid");
    served.stop().await;
}

#[tokio::test]
async fn introspection_reports_active_and_revoked_tokens() {
    let served = provider().await;
    let rp = dashboard(&served);
    let tokens = rp.login(&Browser::new(), "openid offline_access").await;
    let access = str_of(&tokens, "access_token");
    let (status, body) = rp.post("/token/introspect", &[("token", access)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], "dashboard");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["token_type"], "Bearer");
    let refresh = str_of(&tokens, "refresh_token");
    let (_, body) = rp.post("/token/introspect", &[("token", refresh)]).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "refresh_token");

    rp.post("/token/revoke", &[("token", access)]).await;
    let (_, body) = rp.post("/token/introspect", &[("token", access)]).await;
    assert_eq!(body, serde_json::json!({"active": false}));
    let (_, body) = rp.post("/token/introspect", &[("token", refresh)]).await;
    assert_eq!(body["active"], false);
    // Public clients may not introspect.
    let (status, _) = kubectl(&served)
        .post("/token/introspect", &[("token", access)])
        .await;
    assert_eq!(status, 401);
    served.stop().await;
}

// === audiences ===

#[tokio::test]
async fn a_trusted_peer_gets_tokens_for_another_audience() {
    let served = provider().await;
    let rp = kubectl(&served);
    let tokens = rp
        .login(
            &Browser::new(),
            "openid audience:server:client_id:kubernetes",
        )
        .await;
    let id = claims(str_of(&tokens, "id_token"));
    assert_eq!(id["aud"], serde_json::json!(["kubernetes", "kubectl"]));
    assert_eq!(id["azp"], "kubectl");
    // The dashboard is not trusted by the kubernetes client.
    let auth = dashboard(&served).authorize("openid audience:server:client_id:kubernetes", &[]);
    let page = Browser::new().get(&auth.url).await;
    assert_eq!(page.redirect_query()["error"], "invalid_scope");
    served.stop().await;
}

// === device flow ===

async fn approve_device(served: &Served, browser: &Browser, uri_complete: &str, approve: bool) {
    let page = browser.get(uri_complete).await;
    assert_eq!(page.status, 200);
    let form = page.form("/device");
    let user_code = url::Url::parse(uri_complete)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "user_code")
        .unwrap()
        .1
        .to_lowercase();
    let mut page = browser.submit(&form, &[("user_code", &user_code)]).await;
    if page.body.contains("/auth/login") {
        page = browser
            .submit(
                &page.form("/auth/login"),
                &[("login", "alice"), ("password", PASSWORD)],
            )
            .await;
    }
    let decision = if approve { "approve" } else { "deny" };
    let done = browser
        .submit(&page.form("/auth/consent"), &[("decision", decision)])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let _ = served;
}

#[tokio::test]
async fn device_flow_with_openidconnect() {
    let served = provider().await;
    let metadata: CoreProviderMetadata = served.discover().await;
    let device_url = DeviceAuthorizationUrl::new(format!("{}/device/code", served.issuer)).unwrap();
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new("kubectl".into()), None)
            .set_device_authorization_url(device_url);
    let http = Http::new();
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&http)
        .await
        .unwrap();
    let complete = details
        .verification_uri_complete()
        .unwrap()
        .secret()
        .clone();
    let browser = Browser::new();
    // Polling before approval: authorization_pending.
    let (status, body) = kubectl(&served)
        .token_request(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", details.device_code().secret()),
        ])
        .await;
    assert_eq!(
        (status, str_of(&body, "error")),
        (400, "authorization_pending")
    );
    approve_device(&served, &browser, &complete, true).await;
    let tokens: CoreTokenResponse = client
        .exchange_device_access_token(&details)
        .unwrap()
        .set_max_backoff_interval(std::time::Duration::from_secs(6))
        .request_async(&http, tokio::time::sleep, None)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap();
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, |_: Option<&openidconnect::Nonce>| Ok(()))
        .unwrap();
    assert_eq!(claims.subject().as_str(), "alice");
    // And the refresh token works with openidconnect too.
    let refreshed: CoreTokenResponse = client
        .exchange_refresh_token(&RefreshToken::new(
            tokens.refresh_token().unwrap().secret().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert!(refreshed.id_token().is_some());
    // The device code is spent.
    let (status, _) = kubectl(&served)
        .token_request(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", details.device_code().secret()),
        ])
        .await;
    assert_eq!(status, 400);
    served.stop().await;
}

async fn poll_device(rp: &Rp<'_>, device_code: &str) -> (u16, Value) {
    rp.token_request(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
    ])
    .await
}

#[tokio::test]
async fn device_flow_denied_fast_polling_and_expiry() {
    let clock = TestClock::new();
    let served = provider_with_clock(clock.clock()).await;
    let rp = kubectl(&served);
    let (status, details) = rp.post("/device/code", &[("scope", "openid")]).await;
    assert_eq!(status, 200, "{details}");
    let device_code = str_of(&details, "device_code").to_owned();
    let poll = || poll_device(&rp, &device_code);
    assert_eq!(str_of(&poll().await.1, "error"), "authorization_pending");
    assert_eq!(str_of(&poll().await.1, "error"), "slow_down");
    let browser = Browser::new();
    approve_device(
        &served,
        &browser,
        str_of(&details, "verification_uri_complete"),
        false,
    )
    .await;
    clock.advance(20);
    assert_eq!(str_of(&poll().await.1, "error"), "access_denied");

    let (_, details) = rp.post("/device/code", &[("scope", "openid")]).await;
    clock.advance(601);
    let (_, body) = rp
        .token_request(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", str_of(&details, "device_code")),
        ])
        .await;
    assert_eq!(str_of(&body, "error"), "expired_token");
    // A wrong user code is refused on the page.
    let page = browser.get(&format!("{}/device", served.issuer)).await;
    let page = browser
        .submit(&page.form("/device"), &[("user_code", "BCDF-GHJK")])
        .await;
    assert_eq!(page.status, 400);
    served.stop().await;
}

// === logout ===

#[tokio::test]
async fn logout_with_the_sessions_own_hint_ends_only_that_clients_grants() {
    let served = provider().await;
    let browser = Browser::new();
    let cli = kubectl(&served)
        .login(&browser, "openid offline_access")
        .await;
    let web = dashboard(&served)
        .login(&browser, "openid offline_access")
        .await;
    let mut url = url::Url::parse(&format!("{}/logout", served.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", str_of(&web, "id_token"))
        .append_pair("post_logout_redirect_uri", DASHBOARD_LOGGED_OUT)
        .append_pair("state", "bye");
    let page = browser.get(url.as_str()).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), format!("{DASHBOARD_LOGGED_OUT}?state=bye"));
    assert!(browser.cookie("__Host-portcullis-session").is_none());
    // The dashboard's grant is gone; kubectl's survives the web logout.
    let (status, _) = dashboard(&served)
        .refresh(str_of(&web, "refresh_token"))
        .await;
    assert_eq!(status, 400);
    let (status, _) = kubectl(&served)
        .refresh(str_of(&cli, "refresh_token"))
        .await;
    assert_eq!(status, 200);
    // The browser must log in again.
    let page = browser
        .get(&dashboard(&served).authorize("openid", &[]).url)
        .await;
    assert_eq!(page.status, 200);
    served.stop().await;
}

#[tokio::test]
async fn a_foreign_hint_needs_confirmation_and_bad_redirects_are_refused() {
    let served = provider().await;
    let victim = Browser::new();
    dashboard(&served).login(&victim, "openid").await;
    let attacker_tokens = dashboard(&served).login(&Browser::new(), "openid").await;
    let mut url = url::Url::parse(&format!("{}/logout", served.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", str_of(&attacker_tokens, "id_token"));
    let page = victim.get(url.as_str()).await;
    assert_eq!(page.status, 200, "asks first");
    assert!(victim.cookie("__Host-portcullis-session").is_some());
    let page = victim
        .submit(&page.form("/logout"), &[("decision", "logout")])
        .await;
    assert_eq!(page.status, 200);
    assert!(victim.cookie("__Host-portcullis-session").is_none());

    for bad in [
        "https://evil.example/logged-out",
        "https://dashboard.example/logged-out/../x",
        "https://dashboard.example@evil.example/logged-out",
        "https://dashboard.example:8443/logged-out",
    ] {
        let mut url = url::Url::parse(&format!("{}/logout", served.issuer)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", "dashboard")
            .append_pair("post_logout_redirect_uri", bad);
        let page = Browser::new().get(url.as_str()).await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.headers.get("location").is_none());
    }
    served.stop().await;
}

// === restart ===

#[tokio::test]
async fn sessions_and_refresh_tokens_survive_a_restart_over_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let open = || async {
        let store: Arc<dyn portcullis_store::Store> =
            Arc::new(portcullis_store::redb::RedbStore::open(&path).unwrap());
        store
    };
    let store = open().await;
    seed(&store).await;
    let served = Served::start("/dex", store).await;
    let browser = Browser::new();
    let tokens = kubectl(&served)
        .login(&browser, "openid offline_access")
        .await;
    served.stop().await;

    let served = Served::start("/dex", open().await).await;
    // The refresh token (a new issuer address, the same store).
    let (status, body) = kubectl(&served)
        .refresh(str_of(&tokens, "refresh_token"))
        .await;
    assert_eq!(status, 200, "{body}");
    // The browser session.
    let auth = dashboard(&served).authorize("openid", &[]);
    assert_eq!(browser.get(&auth.url).await.status, 303);
    served.stop().await;
}

#[tokio::test]
async fn guessing_user_codes_is_throttled() {
    let served = provider().await;
    let browser = Browser::new();
    let page = browser.get(&format!("{}/device", served.issuer)).await;
    let form = page.form("/device");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            browser
                .submit(&form, &[("user_code", "BCDF-GHJK")])
                .await
                .status,
        );
    }
    assert_eq!(statuses[..5], [400; 5]);
    assert_eq!(statuses[5], 429);
    served.stop().await;
}

#[tokio::test]
async fn a_new_login_replaces_the_previous_session() {
    let served = provider().await;
    let browser = Browser::new();
    kubectl(&served).login(&browser, "openid").await;
    let old = browser.cookie("__Host-portcullis-session").unwrap();
    let rp = dashboard(&served);
    let auth = rp.authorize("openid", &[("prompt", "login")]);
    let page = browser.get(&auth.url).await;
    let page = browser
        .submit(
            &page.form("/auth/login"),
            &[("login", "alice"), ("password", PASSWORD)],
        )
        .await;
    rp.finish(&auth, &page).await;
    let new = browser.cookie("__Host-portcullis-session").unwrap();
    assert_ne!(old, new);
    // The old cookie no longer logs anyone in.
    let stale = Browser::new();
    stale.set_cookie("__Host-portcullis-session", &old);
    let page = stale
        .get(&rp.authorize("openid", &[("prompt", "none")]).url)
        .await;
    assert_eq!(page.redirect_query()["error"], "login_required");
    served.stop().await;
}

/// Changes user alice in the store, as the management API would.
async fn edit_alice(served: &Served, change: impl FnOnce(&mut Value)) {
    let key = "/registry/portcullis.dev/users/alice";
    let kv = served.store.get(key).await.unwrap().unwrap();
    let mut user: Value = serde_json::from_slice(&kv.value).unwrap();
    change(&mut user);
    served
        .store
        .update(key, serde_json::to_vec(&user).unwrap(), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn group_changes_reach_the_user_at_refresh_and_disabling_ends_it() {
    let served = provider().await;
    let rp = kubectl(&served);
    let tokens = rp
        .login(&Browser::new(), "openid groups offline_access")
        .await;
    edit_alice(&served, |u| {
        u["spec"]["groups"] = serde_json::json!(["platform"])
    })
    .await;
    let (status, refreshed) = rp.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, 200);
    let id = claims(str_of(&refreshed, "id_token"));
    assert_eq!(
        id["groups"],
        serde_json::json!(["platform"]),
        "no re-login needed"
    );

    edit_alice(&served, |u| u["spec"]["disabled"] = serde_json::json!(true)).await;
    let (status, _) = rp.refresh(str_of(&refreshed, "refresh_token")).await;
    assert_eq!(status, 400, "a disabled user's refresh tokens stop working");
    assert_eq!(
        userinfo_status(&served, str_of(&refreshed, "access_token")).await,
        401
    );
    served.stop().await;
}
