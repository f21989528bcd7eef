//! The authorization code flow end to end with `openidconnect` as the relying party and a
//! scripted browser (reqwest without redirects) filling in the login form.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreProviderMetadata,
    CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError,
    Scope, TokenResponse,
};
use portcullis_model::{Client, ClientSpec, GrantType, User, UserSpec, hash_client_secret};
use portcullis_store::Store;

use crate::browser::{Browser, Page};
use crate::support::{Http, Served, memory_store};

pub(crate) const KUBECTL_REDIRECT: &str = "http://127.0.0.1:8000/callback";
pub(crate) const DASHBOARD_REDIRECT: &str = "https://dashboard.example/callback";
pub(crate) const DASHBOARD_LOGGED_OUT: &str = "https://dashboard.example/logged-out";
pub(crate) const DASHBOARD_SECRET: &str = "dashboard-secret-0123456789abcdef";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) async fn put(store: &Arc<dyn Store>, key: String, value: &impl serde::Serialize) {
    store
        .create(&key, serde_json::to_vec(value).unwrap())
        .await
        .unwrap();
}

/// A provider at a path-prefixed issuer with a public client `kubectl`, a confidential client
/// `dashboard` and a local user `alice`.
pub(crate) async fn provider() -> Served {
    provider_with_clock(Arc::new(portcullis_jose::unix_now)).await
}

pub(crate) async fn provider_with_clock(clock: portcullis_oidc::Clock) -> Served {
    let store = memory_store();
    seed(&store).await;
    Served::start_full("/dex", store, |c| c, clock).await
}

/// Writes the test clients and user `alice` into `store`.
pub(crate) async fn seed(store: &Arc<dyn Store>) {
    use argon2::PasswordHasher as _;
    let kubectl = Client::new(
        "kubectl",
        ClientSpec {
            public: true,
            redirect_uris: vec![KUBECTL_REDIRECT.into()],
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::DeviceCode,
            ],
            ..ClientSpec::default()
        },
    );
    // A cluster's API server client, which trusts kubectl to obtain tokens for it.
    let kubernetes = Client::new(
        "kubernetes",
        ClientSpec {
            redirect_uris: vec!["https://kubernetes.example/callback".into()],
            trusted_peers: vec!["kubectl".into()],
            secret_hash: hash_client_secret("kubernetes-secret-0123456789abcdef"),
            ..ClientSpec::default()
        },
    );
    let dashboard = Client::new(
        "dashboard",
        ClientSpec {
            display_name: "Dashboard".into(),
            redirect_uris: vec![DASHBOARD_REDIRECT.into()],
            post_logout_redirect_uris: vec![DASHBOARD_LOGGED_OUT.into()],
            secret_hash: hash_client_secret(DASHBOARD_SECRET),
            ..ClientSpec::default()
        },
    );
    let hash: argon2::PasswordHash = argon2::Argon2::default()
        .hash_password(PASSWORD.as_bytes())
        .unwrap();
    let alice = User::new(
        "alice",
        UserSpec {
            email: "alice@example.com".into(),
            email_verified: true,
            display_name: "Alice Liddell".into(),
            groups: vec!["developers".into(), "ops".into()],
            password_hash: hash.to_string(),
            disabled: false,
        },
    );
    let base = "/registry/portcullis.dev";
    put(store, format!("{base}/clients/kubectl"), &kubectl).await;
    put(store, format!("{base}/clients/dashboard"), &dashboard).await;
    put(store, format!("{base}/clients/kubernetes"), &kubernetes).await;
    put(store, format!("{base}/users/alice"), &alice).await;
}

/// A clock the test moves by hand.
#[derive(Clone)]
pub(crate) struct TestClock(Arc<AtomicU64>);

impl TestClock {
    pub(crate) fn new() -> Self {
        TestClock(Arc::new(AtomicU64::new(portcullis_jose::unix_now())))
    }
    pub(crate) fn clock(&self) -> portcullis_oidc::Clock {
        let now = Arc::clone(&self.0);
        Arc::new(move || now.load(Ordering::SeqCst))
    }
    pub(crate) fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    pub(crate) fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

fn rp(
    metadata: CoreProviderMetadata,
    id: &str,
    secret: Option<&str>,
    redirect: &str,
) -> RelyingParty {
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(id.into()),
        secret.map(|s| ClientSecret::new(s.into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
    RelyingParty { client }
}

type DiscoveredClient = openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

struct RelyingParty {
    client: DiscoveredClient,
}

/// What the relying party keeps between redirect and callback.
struct Started {
    url: url::Url,
    state: CsrfToken,
    nonce: Nonce,
    verifier: Option<PkceCodeVerifier>,
}

impl RelyingParty {
    fn start(&self, pkce: bool) -> Started {
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("groups".into()));
        let mut verifier = None;
        if pkce {
            let (challenge, v) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            verifier = Some(v);
        }
        let (url, state, nonce) = request.url();
        Started {
            url,
            state,
            nonce,
            verifier,
        }
    }

    async fn exchange(
        &self,
        code: &str,
        verifier: Option<PkceCodeVerifier>,
    ) -> Result<CoreTokenResponse, CoreErrorResponseType> {
        let mut request = self
            .client
            .exchange_code(AuthorizationCode::new(code.into()))
            .unwrap();
        if let Some(v) = verifier {
            request = request.set_pkce_verifier(v);
        }
        request
            .request_async(&Http::new())
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => r.error().clone(),
                other => panic!("token request failed: {other:?}"),
            })
    }
}

/// A browser that does not follow redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub(crate) fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Opens the authorization URL in `browser`, logs in, returns the answer to the login.
pub(crate) async fn login_in(
    browser: &Browser,
    url: &url::Url,
    user: &str,
    password: &str,
) -> Page {
    let page = browser.get(url.as_str()).await;
    assert_eq!(page.status, 200, "login page: {}", page.body);
    let form = page.form("/auth/login");
    browser
        .submit(&form, &[("login", user), ("password", password)])
        .await
}

/// Opens the authorization URL in a new browser, logs in, returns the redirect's query.
pub(crate) async fn login(
    _served: &Served,
    url: &url::Url,
    user: &str,
    password: &str,
) -> HashMap<String, String> {
    let response = login_in(&Browser::new(), url, user, password).await;
    assert_eq!(response.status, 303, "login redirects: {}", response.body);
    response.redirect_query()
}

/// The redirect (or error page) the authorization endpoint answers `url` with.
async fn authorize_response(url: &str) -> reqwest::Response {
    browser().get(url).send().await.unwrap()
}

#[tokio::test]
async fn public_client_code_flow_with_pkce() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    assert_eq!(callback["state"], *started.state.secret());
    assert_eq!(callback["iss"], served.issuer);

    let tokens = rp
        .exchange(&callback["code"], started.verifier)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap();
    let verifier = rp.client.id_token_verifier();
    let claims = id_token.claims(&verifier, &started.nonce).unwrap();
    assert_eq!(claims.subject().as_str(), "alice");
    assert_eq!(claims.email().unwrap().as_str(), "alice@example.com");
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(claims.preferred_username().unwrap().as_str(), "alice");
    assert!(claims.auth_time().is_some());
    // at_hash binds the ID token to the access token.
    let expected = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected));
    let raw: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            id_token.to_string().split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(raw["groups"], serde_json::json!(["developers", "ops"]));

    // userinfo answers for the access token.
    let info: CoreUserInfoClaims = rp
        .client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&Http::new())
        .await
        .unwrap();
    assert_eq!(info.subject().as_str(), "alice");
    assert_eq!(info.email().unwrap().as_str(), "alice@example.com");
    assert_eq!(
        info.name().unwrap().get(None).unwrap().as_str(),
        "Alice Liddell"
    );
    served.stop().await;
}

#[tokio::test]
async fn confidential_client_with_client_secret_basic() {
    let served = provider().await;
    let rp = rp(
        served.discover().await,
        "dashboard",
        Some(DASHBOARD_SECRET),
        DASHBOARD_REDIRECT,
    );
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    let tokens = rp
        .exchange(&callback["code"], started.verifier)
        .await
        .unwrap();
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&rp.client.id_token_verifier(), &started.nonce)
        .unwrap();
    assert_eq!(claims.audiences()[0].as_str(), "dashboard");
    served.stop().await;
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client() {
    let served = provider().await;
    let metadata = served.discover().await;
    let good = rp(
        metadata.clone(),
        "dashboard",
        Some(DASHBOARD_SECRET),
        DASHBOARD_REDIRECT,
    );
    let bad = rp(
        metadata,
        "dashboard",
        Some("not-the-secret"),
        DASHBOARD_REDIRECT,
    );
    let started = good.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    let err = bad
        .exchange(&callback["code"], started.verifier)
        .await
        .unwrap_err();
    assert_eq!(err, CoreErrorResponseType::InvalidClient);
    served.stop().await;
}

#[tokio::test]
async fn wrong_pkce_verifier_is_refused() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    let wrong = PkceCodeChallenge::new_random_sha256().1;
    let err = rp
        .exchange(&callback["code"], Some(wrong))
        .await
        .unwrap_err();
    assert_eq!(err, CoreErrorResponseType::InvalidGrant);
    // The code was burnt by the failed attempt.
    let err = rp
        .exchange(&callback["code"], started.verifier)
        .await
        .unwrap_err();
    assert_eq!(err, CoreErrorResponseType::InvalidGrant);
    served.stop().await;
}

#[tokio::test]
async fn missing_pkce_verifier_is_refused() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    let err = rp.exchange(&callback["code"], None).await.unwrap_err();
    assert_eq!(err, CoreErrorResponseType::InvalidGrant);
    served.stop().await;
}

#[tokio::test]
async fn code_replay_is_refused() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    let verifier = started.verifier.unwrap();
    let again = PkceCodeVerifier::new(verifier.secret().clone());
    rp.exchange(&callback["code"], Some(verifier))
        .await
        .unwrap();
    let err = rp
        .exchange(&callback["code"], Some(again))
        .await
        .unwrap_err();
    assert_eq!(err, CoreErrorResponseType::InvalidGrant);
    served.stop().await;
}

#[tokio::test]
async fn code_for_another_client_is_refused() {
    let served = provider().await;
    let metadata = served.discover().await;
    let kubectl = rp(metadata.clone(), "kubectl", None, KUBECTL_REDIRECT);
    // The dashboard presents kubectl's code (with its own valid credentials).
    let dashboard = rp(
        metadata,
        "dashboard",
        Some(DASHBOARD_SECRET),
        KUBECTL_REDIRECT,
    );
    let started = kubectl.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    let err = dashboard
        .exchange(&callback["code"], started.verifier)
        .await
        .unwrap_err();
    assert_eq!(err, CoreErrorResponseType::InvalidGrant);
    served.stop().await;
}

#[tokio::test]
async fn public_client_without_pkce_is_refused() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(false);
    let response = authorize_response(started.url.as_str()).await;
    assert_eq!(response.status(), 303);
    let q = query(response.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], *started.state.secret());
    served.stop().await;
}

#[tokio::test]
async fn plain_pkce_is_refused() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let mut url = rp.start(false).url;
    url.query_pairs_mut()
        .append_pair(
            "code_challenge",
            "a-plain-verifier-that-is-long-enough-0123456789",
        )
        .append_pair("code_challenge_method", "plain");
    let response = authorize_response(url.as_str()).await;
    let q = query(response.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("plain"));
    served.stop().await;
}

#[tokio::test]
async fn redirect_uri_mismatch_shows_an_error_and_never_redirects() {
    let served = provider().await;
    let metadata = served.discover().await;
    for evil in [
        "http://127.0.0.1:8000/callback/extra",
        "http://127.0.0.1:8000/callback?x=1",
        "http://evil@127.0.0.1:8000/callback",
        "http://127.0.0.1.evil.example:8000/callback",
        "https://127.0.0.1:8000/callback",
        "http://127.0.0.1:8000//evil.example/callback",
    ] {
        let rp = rp(metadata.clone(), "kubectl", None, evil);
        let response = authorize_response(rp.start(true).url.as_str()).await;
        assert_eq!(response.status(), 400, "{evil}");
        assert!(response.headers().get("location").is_none(), "{evil}");
    }
    // Non-loopback URIs of a confidential client: not even another port.
    let rp = rp(
        metadata,
        "dashboard",
        Some(DASHBOARD_SECRET),
        "https://dashboard.example:8443/callback",
    );
    let response = authorize_response(rp.start(true).url.as_str()).await;
    assert_eq!(response.status(), 400);
    served.stop().await;
}

#[tokio::test]
async fn loopback_redirect_may_use_another_port() {
    // RFC 8252 §7.3: a native app listens on whatever port is free.
    let served = provider().await;
    let rp = rp(
        served.discover().await,
        "kubectl",
        None,
        "http://127.0.0.1:53127/callback",
    );
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    rp.exchange(&callback["code"], started.verifier)
        .await
        .unwrap();
    served.stop().await;
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let mut url = rp.start(true).url;
    url.query_pairs_mut().append_pair("prompt", "none");
    let response = authorize_response(url.as_str()).await;
    let q = query(response.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "login_required");
    served.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let browser = Browser::new();
    let page = browser.get(rp.start(true).url.as_str()).await;
    let form = page.form("/auth/login");
    let mut answers = Vec::new();
    for (user, password) in [("alice", "wrong"), ("mallory", PASSWORD)] {
        let response = browser
            .submit(&form, &[("login", user), ("password", password)])
            .await;
        assert_eq!(response.status, 401);
        assert!(response.body.contains("Invalid username or password."));
        answers.push(response.body.replace(user, "USER"));
    }
    assert_eq!(answers[0], answers[1]);
    served.stop().await;
}

#[tokio::test]
async fn login_without_the_form_token_is_refused() {
    let served = provider().await;
    let response = browser()
        .post(format!("{}/auth/login", served.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("login", "alice"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    served.stop().await;
}

#[tokio::test]
async fn userinfo_refuses_an_id_token() {
    let served = provider().await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    let tokens = rp
        .exchange(&callback["code"], started.verifier)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap().to_string();
    let result: Result<CoreUserInfoClaims, _> = rp
        .client
        .user_info(AccessToken::new(id_token), None)
        .unwrap()
        .request_async(&Http::new())
        .await;
    assert!(result.is_err());
    let status = reqwest::Client::new()
        .get(format!("{}/userinfo", served.issuer))
        .bearer_auth(tokens.id_token().unwrap().to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    served.stop().await;
}

#[tokio::test]
async fn expired_code_is_refused() {
    let clock = TestClock::new();
    let served = provider_with_clock(clock.clock()).await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    clock.advance(60);
    let err = rp
        .exchange(&callback["code"], started.verifier)
        .await
        .unwrap_err();
    assert_eq!(err, CoreErrorResponseType::InvalidGrant);
    served.stop().await;
}

#[tokio::test]
async fn code_used_within_its_lifetime_works() {
    let clock = TestClock::new();
    let served = provider_with_clock(clock.clock()).await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    clock.advance(59);
    rp.exchange(&callback["code"], started.verifier)
        .await
        .unwrap();
    served.stop().await;
}

#[tokio::test]
async fn expired_login_page_is_refused() {
    let clock = TestClock::new();
    let served = provider_with_clock(clock.clock()).await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let browser = Browser::new();
    let page = browser.get(rp.start(true).url.as_str()).await;
    let form = page.form("/auth/login");
    clock.advance(600);
    let response = browser
        .submit(&form, &[("login", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(response.status, 400);
    assert!(response.headers.get("location").is_none());
    served.stop().await;
}

#[tokio::test]
async fn expired_access_token_is_refused_by_userinfo() {
    let clock = TestClock::new();
    let served = provider_with_clock(clock.clock()).await;
    let rp = rp(served.discover().await, "kubectl", None, KUBECTL_REDIRECT);
    let started = rp.start(true);
    let callback = login(&served, &started.url, "alice", PASSWORD).await;
    let tokens = rp
        .exchange(&callback["code"], started.verifier)
        .await
        .unwrap();
    clock.advance(3600 + 60);
    let status = reqwest::Client::new()
        .get(format!("{}/userinfo", served.issuer))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    served.stop().await;
}

#[tokio::test]
async fn token_request_that_is_not_a_form_gets_an_oauth_error() {
    let served = provider().await;
    let response = reqwest::Client::new()
        .post(format!("{}/token", served.issuer))
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"authorization_code"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    served.stop().await;
}

#[tokio::test]
async fn repeated_token_parameters_are_refused() {
    let served = provider().await;
    let response = reqwest::Client::new()
        .post(format!("{}/token", served.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "kubectl"),
            ("code", "a"),
            ("code", "b"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    served.stop().await;
}

#[tokio::test]
async fn open_redirect_tricks_are_refused_without_redirecting() {
    let served = provider().await;
    for (client, evil) in [
        ("dashboard", "https://dashboard.example/callback/../evil"),
        ("dashboard", "https://dashboard.example/callback/"),
        (
            "dashboard",
            "https://dashboard.example\\@evil.example/callback",
        ),
        (
            "dashboard",
            "https://dashboard.example/\\evil.example/callback",
        ),
        (
            "dashboard",
            "https://dashboard.example@evil.example/callback",
        ),
        (
            "dashboard",
            "https://evil.example#@dashboard.example/callback",
        ),
        ("dashboard", "//evil.example/callback"),
        ("dashboard", "/\\evil.example/callback"),
        ("dashboard", "https://dashboard.example/callback%09"),
        ("dashboard", "https://dashboard.example/callback\t"),
        ("dashboard", "https://dashboard.example/callback\n"),
        ("dashboard", "https://dashboard.example/callback%0a"),
        ("dashboard", "https://dashboard.example/callback%0b"),
        ("dashboard", "https://dashboard.example/callback%0d"),
        ("dashboard", " https://dashboard.example/callback"),
        ("dashboard", "http://dashboard.example/callback"),
        ("dashboard", "HTTPS://dashboard.example/callback"),
        ("dashboard", "https://dashboard.example./callback"),
        ("dashboard", "https://dashboard.example:443/callback"),
        ("dashboard", "https://dashboard.example:8443/callback"),
        (
            "dashboard",
            "javascript:alert(1)//https://dashboard.example/callback",
        ),
        ("dashboard", "https://dashboard.example/callback#fragment"),
        ("kubectl", "http://localhost.evil.example:8000/callback"),
        ("kubectl", "http://127.0.0.1:8000/callback/.."),
        ("kubectl", "http://127.0.0.2:8000/callback"),
        ("kubectl", "custom.scheme:/callback"),
    ] {
        let mut url = url::Url::parse(&format!("{}/auth", served.issuer)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", client)
            .append_pair("redirect_uri", evil)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid")
            .append_pair(
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            )
            .append_pair("code_challenge_method", "S256");
        let response = authorize_response(url.as_str()).await;
        assert_eq!(response.status(), 400, "{client} {evil:?}");
        assert!(
            response.headers().get("location").is_none(),
            "{client} {evil:?}"
        );
    }
    served.stop().await;
}

#[tokio::test]
async fn login_hint_fills_in_the_login_name_escaped() {
    let served = provider().await;
    let mut url = url::Url::parse(&format!("{}/auth", served.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "kubectl")
        .append_pair("redirect_uri", KUBECTL_REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", "alice\"><script>x</script>");
    let page = Browser::new().get(url.as_str()).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>x"));
    assert!(
        page.body.contains("value=\"alice&#34;&#62;")
            || page.body.contains("value=\"alice&quot;&gt;"),
        "{}",
        page.body
    );
    served.stop().await;
}
