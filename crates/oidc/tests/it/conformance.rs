//! The OpenID conformance items of issue 23, each through the `openidconnect` relying party:
//! RS256 by default and the client's registered ID token algorithm, POST at the authorization
//! endpoint, `id_token_hint`, unknown scopes, revocation of another client's token, and the
//! access token in a userinfo form body.

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use portcullis_jose::{Algorithm, KeySpec, SigningKey};
use portcullis_model::{
    Client, ClientSpec, GrantType, IdTokenSigningAlg, User, UserSpec, hash_client_secret,
};
use serde_json::Value;

use crate::browser::{Browser, Page};
use crate::flow::{
    DASHBOARD_REDIRECT, DASHBOARD_SECRET, PASSWORD, TestClock, provider, provider_with_clock, put,
};
use crate::support::{Http, Served};

const APP_SECRET: &str = "app-secret-0123456789abcdef0123456789";
const APP_REDIRECT: &str = "https://app.example/callback";

/// Adds a confidential client `name` with `spec` tweaks (redirect `APP_REDIRECT`).
async fn add_client(served: &Served, name: &str, tweak: impl FnOnce(&mut ClientSpec)) {
    let mut spec = ClientSpec {
        redirect_uris: vec![APP_REDIRECT.into()],
        secret_hash: hash_client_secret(APP_SECRET),
        ..ClientSpec::default()
    };
    tweak(&mut spec);
    put(
        &served.store,
        format!("/registry/portcullis.dev/clients/{name}"),
        &Client::new(name, spec),
    )
    .await;
}

async fn add_user(served: &Served, name: &str) {
    use argon2::PasswordHasher as _;
    let hash: argon2::PasswordHash = argon2::Argon2::default()
        .hash_password(PASSWORD.as_bytes())
        .unwrap();
    let user = User::new(
        name,
        UserSpec {
            email: format!("{name}@example.com"),
            email_verified: true,
            display_name: name.into(),
            groups: vec![],
            password_hash: hash.to_string(),
            disabled: false,
        },
    );
    put(
        &served.store,
        format!("/registry/portcullis.dev/users/{name}"),
        &user,
    )
    .await;
}

type Rp = openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn rp(metadata: &CoreProviderMetadata, id: &str, secret: &str, redirect: &str) -> Rp {
    CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(id.into()),
        Some(ClientSecret::new(secret.into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap())
}

fn header_alg(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    header["alg"].as_str().unwrap().to_owned()
}

/// An authorization request of `client` with `scopes` and extra parameters; returns the URL,
/// the nonce and the PKCE verifier.
fn authorization(
    client: &Rp,
    scopes: &[&str],
    extra: &[(&str, &str)],
    prompt_none: bool,
) -> (url::Url, Nonce, openidconnect::PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in scopes {
        request = request.add_scope(Scope::new((*s).into()));
    }
    for (k, v) in extra {
        request = request.add_extra_param(*k, *v);
    }
    if prompt_none {
        request = request.add_prompt(CoreAuthPrompt::None);
    }
    let (url, _, nonce) = request.url();
    (url, nonce, verifier)
}

/// Logs `user` in through `browser` for `client`, and redeems the code.
async fn log_in(
    client: &Rp,
    browser: &Browser,
    user: &str,
    scopes: &[&str],
) -> (CoreTokenResponse, Nonce) {
    let (url, nonce, verifier) = authorization(client, scopes, &[], false);
    let page = browser.get(url.as_str()).await;
    let page = if page.status == 200 {
        browser
            .submit(
                &page.form("/auth/login"),
                &[("login", user), ("password", PASSWORD)],
            )
            .await
    } else {
        page
    };
    (redeem(client, &page, verifier).await, nonce)
}

async fn redeem(
    client: &Rp,
    page: &Page,
    verifier: openidconnect::PkceCodeVerifier,
) -> CoreTokenResponse {
    assert_eq!(page.status, 303, "{}", page.body);
    let code = page.redirect_query()["code"].clone();
    client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&Http::new())
        .await
        .unwrap()
}

/// A verifier that accepts RS256 only, as kube-apiserver does with its default
/// `--oidc-signing-algs`.
fn rs256_only(client: &Rp) -> CoreIdTokenVerifier<'_> {
    client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
}

// === 1. RS256 by default, the client's registered algorithm otherwise ===

#[tokio::test]
async fn default_settings_sign_rs256_id_tokens_for_clients_without_an_alg_and_es256_for_es256_clients()
 {
    let served = provider().await;
    add_client(&served, "es-app", |s| {
        s.id_token_signed_response_alg = Some(IdTokenSigningAlg::ES256)
    })
    .await;
    let metadata = served.discover().await;

    // The dashboard registered no algorithm: RS256 (Dynamic Client Registration 1.0 §2),
    // verified with the published JWKS.
    let dashboard = rp(&metadata, "dashboard", DASHBOARD_SECRET, DASHBOARD_REDIRECT);
    let browser = Browser::new();
    let (tokens, nonce) = log_in(&dashboard, &browser, "alice", &["email"]).await;
    let id_token = tokens.id_token().unwrap();
    assert_eq!(header_alg(&id_token.to_string()), "RS256");
    let claims = id_token.claims(&rs256_only(&dashboard), &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), "alice");
    // Access tokens are signed with the provider's default (ES256).
    assert_eq!(header_alg(tokens.access_token().secret()), "ES256");

    // A client registered with ES256 gets ES256, which an RS256-only verifier refuses.
    let es_app = rp(&metadata, "es-app", APP_SECRET, APP_REDIRECT);
    let (tokens, nonce) = log_in(&es_app, &browser, "alice", &[]).await;
    let id_token = tokens.id_token().unwrap();
    assert_eq!(header_alg(&id_token.to_string()), "ES256");
    assert!(id_token.claims(&rs256_only(&es_app), &nonce).is_err());
    let verifier: CoreIdTokenVerifier<'_> = es_app
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    assert_eq!(
        id_token
            .claims(&verifier, &nonce)
            .unwrap()
            .subject()
            .as_str(),
        "alice"
    );
    served.stop().await;
}

#[tokio::test]
async fn a_client_whose_alg_the_issuer_does_not_publish_is_refused_before_login() {
    let served = provider().await;
    add_client(&served, "ed-app", |s| {
        s.id_token_signed_response_alg = Some(IdTokenSigningAlg::EdDSA)
    })
    .await;
    let metadata = served.discover().await;
    let client = rp(&metadata, "ed-app", APP_SECRET, APP_REDIRECT);
    let (url, _, _) = authorization(&client, &[], &[], false);
    let page = Browser::new().get(url.as_str()).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let q = page.redirect_query();
    assert_eq!(q["error"], "unauthorized_client");
    assert!(q["error_description"].contains("EdDSA"), "{q:?}");
    served.stop().await;
}

#[tokio::test]
async fn an_eddsa_client_gets_eddsa_when_the_issuer_publishes_it() {
    let store = crate::support::memory_store();
    crate::flow::seed(&store).await;
    let served = Served::start_with("/dex", store, |c| portcullis_oidc::ProviderConfig {
        signing_keys: vec![KeySpec::Es256, KeySpec::Rs256Bits2048, KeySpec::Ed25519],
        ..c
    })
    .await;
    add_client(&served, "ed-app", |s| {
        s.id_token_signed_response_alg = Some(IdTokenSigningAlg::EdDSA)
    })
    .await;
    let metadata = served.discover().await;
    let algs: Vec<Value> = metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    assert_eq!(algs, ["ES256", "RS256", "EdDSA"]);
    let client = rp(&metadata, "ed-app", APP_SECRET, APP_REDIRECT);
    let (tokens, nonce) = log_in(&client, &Browser::new(), "alice", &[]).await;
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EdDsa]);
    let id_token = tokens.id_token().unwrap();
    assert_eq!(header_alg(&id_token.to_string()), "EdDSA");
    id_token.claims(&verifier, &nonce).unwrap();
    served.stop().await;
}

// === 2. POST at the authorization endpoint ===

#[tokio::test]
async fn the_authorization_endpoint_takes_a_form_post() {
    let served = provider().await;
    let metadata = served.discover().await;
    let dashboard = rp(&metadata, "dashboard", DASHBOARD_SECRET, DASHBOARD_REDIRECT);
    let (url, nonce, verifier) = authorization(&dashboard, &["profile"], &[], false);
    // The same parameters, form-serialised in the body (Core §3.1.2.1).
    let fields: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let endpoint = metadata.authorization_endpoint().url().clone();
    let mut endpoint = endpoint;
    endpoint.set_query(None);
    let browser = Browser::new();
    let page = browser.post(endpoint.as_str(), &fields).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = browser
        .submit(
            &page.form("/auth/login"),
            &[("login", "alice"), ("password", PASSWORD)],
        )
        .await;
    let tokens = redeem(&dashboard, &page, verifier).await;
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&dashboard.id_token_verifier(), &nonce)
        .unwrap();
    assert_eq!(claims.subject().as_str(), "alice");

    // With the session, a POST answers at once, like a GET.
    let (url, _, verifier) = authorization(&dashboard, &[], &[], true);
    let fields: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let page = browser.post(endpoint.as_str(), &fields).await;
    redeem(&dashboard, &page, verifier).await;

    // A body that is not a form is refused with a page, not a redirect.
    let response = reqwest::Client::new()
        .post(endpoint.as_str())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    served.stop().await;
}

// === 3. id_token_hint ===

#[tokio::test]
async fn id_token_hint_must_be_the_issuers_and_name_the_logged_in_user() {
    let clock = TestClock::new();
    let served = provider_with_clock(clock.clock()).await;
    add_user(&served, "bob").await;
    let metadata = served.discover().await;
    let dashboard = rp(&metadata, "dashboard", DASHBOARD_SECRET, DASHBOARD_REDIRECT);
    let alice_browser = Browser::new();
    let (alice_tokens, _) = log_in(&dashboard, &alice_browser, "alice", &[]).await;
    let alice_hint = alice_tokens.id_token().unwrap().to_string();
    let (bob_tokens, _) = log_in(&dashboard, &Browser::new(), "bob", &[]).await;
    let bob_hint = bob_tokens.id_token().unwrap().to_string();

    let ask = |hint: String| {
        let dashboard = &dashboard;
        let browser = &alice_browser;
        async move {
            let (url, _, verifier) =
                authorization(dashboard, &[], &[("id_token_hint", &hint)], true);
            (browser.get(url.as_str()).await, verifier)
        }
    };

    // Alice's own hint, even expired (Core §3.1.2.1 accepts expired hints): a code for her.
    clock.advance(2 * 3600);
    let (page, verifier) = ask(alice_hint.clone()).await;
    let tokens = redeem(&dashboard, &page, verifier).await;
    let verifier: CoreIdTokenVerifier<'_> = dashboard.id_token_verifier();
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .unwrap();
    assert_eq!(claims.subject().as_str(), "alice");

    // Bob's hint while Alice is logged in: login_required, never a code for Alice.
    let (page, _) = ask(bob_hint).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let q = page.redirect_query();
    assert_eq!(q["error"], "login_required", "{q:?}");
    assert!(!q.contains_key("code"));

    // Not one of the issuer's ID tokens: garbage, an access token, the right claims signed by
    // another key.
    let forged = {
        let key = SigningKey::generate(KeySpec::Rs256Bits2048).unwrap();
        assert_eq!(key.algorithm(), Algorithm::RS256);
        let payload = alice_hint.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        key.sign(&claims).unwrap()
    };
    for bad in [
        "garbage".to_owned(),
        alice_tokens.access_token().secret().clone(),
        forged,
    ] {
        let (page, _) = ask(bad).await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert_eq!(page.redirect_query()["error"], "invalid_request");
    }

    // Interactive: Bob's hint shows the login form instead of answering for Alice; logging in
    // as Alice still gets login_required, as Bob a code.
    for (user, expected) in [("alice", Some("login_required")), ("bob", None)] {
        let (url, _, verifier) = authorization(
            &dashboard,
            &[],
            &[("id_token_hint", &bob_tokens.id_token().unwrap().to_string())],
            false,
        );
        let page = alice_browser.get(url.as_str()).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let page = alice_browser
            .submit(
                &page.form("/auth/login"),
                &[("login", user), ("password", PASSWORD)],
            )
            .await;
        match expected {
            Some(error) => assert_eq!(page.redirect_query()["error"], error),
            None => {
                redeem(&dashboard, &page, verifier).await;
            }
        }
    }
    served.stop().await;
}

// === 4. revocation of another client's token ===

#[tokio::test]
async fn revoking_another_clients_token_answers_unauthorized_client_and_keeps_it() {
    let served = provider().await;
    add_client(&served, "other-app", |_| {}).await;
    let metadata = served.discover().await;
    let dashboard = rp(&metadata, "dashboard", DASHBOARD_SECRET, DASHBOARD_REDIRECT);
    let (tokens, _) = log_in(&dashboard, &Browser::new(), "alice", &["offline_access"]).await;
    let refresh = tokens.refresh_token().unwrap().clone();

    // (openidconnect revokes over https only; the test issuer is loopback http, so the
    // revocation requests are made by hand, with client_secret_basic as the library would.)
    let revoke = |id: &'static str, secret: &'static str, token: String| {
        let endpoint = format!("{}/token/revoke", served.issuer);
        async move {
            let response = reqwest::Client::new()
                .post(endpoint)
                .basic_auth(id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={token}"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let unauthorized = (400, Value::from("unauthorized_client"));
    let (status, body) = revoke("other-app", APP_SECRET, refresh.secret().clone()).await;
    assert_eq!((status, body["error"].clone()), unauthorized, "{body}");
    let access = tokens.access_token().secret().clone();
    let (status, body) = revoke("other-app", APP_SECRET, access).await;
    assert_eq!((status, body["error"].clone()), unauthorized, "{body}");
    // Still valid for its own client, which may revoke it.
    let refreshed = dashboard
        .exchange_refresh_token(&refresh)
        .unwrap()
        .request_async(&Http::new())
        .await
        .unwrap();
    let (status, _) = revoke(
        "dashboard",
        DASHBOARD_SECRET,
        refreshed.refresh_token().unwrap().secret().clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        dashboard
            .exchange_refresh_token(refreshed.refresh_token().unwrap())
            .unwrap()
            .request_async(&Http::new())
            .await
            .is_err()
    );
    served.stop().await;
}

// === 5. unknown scopes ===

#[tokio::test]
async fn unknown_scopes_are_ignored_and_left_out_of_the_granted_scope() {
    let served = provider().await;
    add_client(&served, "no-refresh", |s| {
        s.grant_types = vec![GrantType::AuthorizationCode]
    })
    .await;
    let metadata = served.discover().await;
    let dashboard = rp(&metadata, "dashboard", DASHBOARD_SECRET, DASHBOARD_REDIRECT);
    let (tokens, _) = log_in(
        &dashboard,
        &Browser::new(),
        "alice",
        &["email", "address", "phone", "x-unknown"],
    )
    .await;
    let mut granted: Vec<String> = tokens
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    granted.sort();
    assert_eq!(granted, ["email", "openid"]);

    // offline_access from a client that may not refresh is still refused.
    let client = rp(&metadata, "no-refresh", APP_SECRET, APP_REDIRECT);
    let (url, _, _) = authorization(&client, &["offline_access"], &[], false);
    let page = Browser::new().get(url.as_str()).await;
    assert_eq!(page.redirect_query()["error"], "invalid_scope");
    served.stop().await;
}

// === 6. userinfo with the token in a form body ===

#[tokio::test]
async fn userinfo_takes_the_access_token_in_a_form_body_but_never_in_the_query() {
    let served = provider().await;
    let metadata = served.discover().await;
    let dashboard = rp(&metadata, "dashboard", DASHBOARD_SECRET, DASHBOARD_REDIRECT);
    let (tokens, _) = log_in(&dashboard, &Browser::new(), "alice", &["email"]).await;
    let access = tokens.access_token().secret().clone();
    let endpoint = metadata.userinfo_endpoint().unwrap().url().to_string();
    let http = reqwest::Client::new();

    // RFC 6750 §2.2.
    let response = http
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["email"], "alice@example.com");

    let check_error = |response: reqwest::Response, status: u16, error: &'static str| async move {
        assert_eq!(response.status(), status);
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], error, "{body}");
        challenge
    };
    // A bad token in the body: invalid_token in the challenge and the body.
    let response = http
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={}", "not-a-token"))
        .send()
        .await
        .unwrap();
    let challenge = check_error(response, 401, "invalid_token").await;
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // RFC 6750 §2.3 stays refused, on GET and POST.
    for request in [
        http.get(format!("{endpoint}?access_token={access}")),
        http.post(format!("{endpoint}?access_token={access}")),
    ] {
        let response = request.send().await.unwrap();
        check_error(response, 400, "invalid_request").await;
    }
    // Two methods at once (§2).
    let response = http
        .post(&endpoint)
        .bearer_auth(&access)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={access}"))
        .send()
        .await
        .unwrap();
    check_error(response, 400, "invalid_request").await;
    // The token in a body that is not a form is not read.
    let response = http
        .post(&endpoint)
        .header("content-type", "application/json")
        .body(format!("{{\"access_token\":\"{access}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // And the header still works on POST.
    let response = http
        .post(&endpoint)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    served.stop().await;
}

// === 7. a changed oidc.signingKey, seen by relying parties ===

#[tokio::test]
async fn an_installation_gaining_rs256_keeps_answering_while_its_first_rs256_key_is_only_published()
{
    let clock = TestClock::new();
    let store = crate::support::memory_store();
    crate::flow::seed(&store).await;
    let start = |specs: Vec<KeySpec>| {
        let store = std::sync::Arc::clone(&store);
        let clock = clock.clock();
        async move {
            Served::start_full(
                "/dex",
                store,
                |c| portcullis_oidc::ProviderConfig {
                    signing_keys: specs,
                    ..c
                },
                clock,
            )
            .await
        }
    };
    let id_token_alg = |served: &Served| {
        let served_issuer = served.issuer.clone();
        async move {
            let served_metadata = CoreProviderMetadata::discover_async(
                openidconnect::IssuerUrl::new(served_issuer).unwrap(),
                &Http::new(),
            )
            .await
            .unwrap();
            let dashboard = rp(
                &served_metadata,
                "dashboard",
                DASHBOARD_SECRET,
                DASHBOARD_REDIRECT,
            );
            let (tokens, _) = log_in(&dashboard, &Browser::new(), "alice", &[]).await;
            header_alg(&tokens.id_token().unwrap().to_string())
        }
    };

    // Installed with ES256 only: a client without idTokenSignedResponseAlg gets the issuer's
    // default, as before RS256 was offered.
    let served = start(vec![KeySpec::Es256]).await;
    add_client(&served, "rs-app", |s| {
        s.id_token_signed_response_alg = Some(IdTokenSigningAlg::RS256)
    })
    .await;
    assert_eq!(id_token_alg(&served).await, "ES256");
    served.stop().await;

    // Restarted with RS256 added: while the RS256 key is only published, that client still
    // gets ES256, and one that registered RS256 is told to come back later.
    let served = start(vec![KeySpec::Es256, KeySpec::Rs256Bits2048]).await;
    assert_eq!(id_token_alg(&served).await, "ES256");
    let metadata = served.discover().await;
    let rs_app = rp(&metadata, "rs-app", APP_SECRET, APP_REDIRECT);
    let (url, _, _) = authorization(&rs_app, &[], &[], false);
    let page = Browser::new().get(url.as_str()).await;
    assert_eq!(page.redirect_query()["error"], "temporarily_unavailable");
    let from = served.provider.signs_from(Algorithm::RS256).unwrap();
    served.stop().await;

    // Once it signs: RS256 for both.
    clock.advance(from - clock.now());
    let served = start(vec![KeySpec::Es256, KeySpec::Rs256Bits2048]).await;
    assert_eq!(id_token_alg(&served).await, "RS256");
    let metadata = served.discover().await;
    let rs_app = rp(&metadata, "rs-app", APP_SECRET, APP_REDIRECT);
    let (tokens, nonce) = log_in(&rs_app, &Browser::new(), "alice", &[]).await;
    tokens
        .id_token()
        .unwrap()
        .claims(&rs256_only(&rs_app), &nonce)
        .unwrap();
    served.stop().await;
}
