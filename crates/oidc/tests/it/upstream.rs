//! The upstream OpenID Connect connector against a real upstream provider: a second portcullis
//! issuer on another loopback port, with a confidential client registered for the downstream
//! issuer, and a layer counting the refresh grants its token endpoint answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_connectors::Connectors;
use portcullis_connectors::oidc::OidcConnector;
use portcullis_model::kinds::connector::{
    GroupMapping, OidcClaimMapping, OidcConnector as OidcSpec,
};
use portcullis_model::{
    Client, ClientSpec, ConnectorSpec, ConnectorType, GrantType, SecretKeySelector, User, UserSpec,
    hash_client_secret,
};
use portcullis_oidc::{Provider, ProviderConfig};
use portcullis_store::{ListOptions, Store};
use secrecy::SecretString;
use serde_json::Value;

use crate::browser::{Browser, Page};
use crate::flow::{PASSWORD, provider, put, seed};
use crate::sessions::{claims, kubectl, str_of};
use crate::support::{ENCRYPTION_KEY, Served, memory_store};

const SECRET: &str = "downstream-secret-0123456789abcdef";
const SCOPES: &str = "openid profile email groups offline_access";

/// The upstream issuer, serving its router behind a layer that counts refresh grants.
struct Upstream {
    issuer: String,
    store: Arc<dyn Store>,
    refreshes: Arc<AtomicUsize>,
    _provider: Provider,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn count_refreshes(
    counter: Arc<AtomicUsize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    if parts.uri.path().ends_with("/token")
        && url::form_urlencoded::parse(&bytes)
            .any(|(k, v)| k == "grant_type" && v == "refresh_token")
    {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Starts the upstream, with the test users of `seed` and client `downstream` redirecting
/// to `downstream`'s callback.
async fn upstream(downstream: &Served) -> Upstream {
    let store = memory_store();
    seed(&store).await;
    let client = Client::new(
        "downstream",
        ClientSpec {
            redirect_uris: vec![format!("{}/callback", downstream.issuer)],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            secret_hash: hash_client_secret(SECRET),
            ..ClientSpec::default()
        },
    );
    put(
        &store,
        "/registry/portcullis.dev/clients/downstream".into(),
        &client,
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/up", listener.local_addr().unwrap());
    let provider = Provider::new(
        ProviderConfig::new(issuer.clone()),
        Arc::clone(&store),
        ENCRYPTION_KEY,
    )
    .await
    .unwrap();
    let refreshes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&refreshes);
    let app = axum::Router::new()
        .nest("/up", provider.router())
        .layer(axum::middleware::from_fn(move |req, next| {
            count_refreshes(Arc::clone(&counter), req, next)
        }));
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Upstream {
        issuer,
        store,
        refreshes,
        _provider: provider,
        server,
    }
}

fn spec(up: &Upstream, tweak: impl FnOnce(&mut OidcSpec)) -> ConnectorSpec {
    let mut oidc = OidcSpec {
        issuer_url: up.issuer.clone(),
        client_id: "downstream".into(),
        client_secret_ref: Some(SecretKeySelector {
            name: "upstream".into(),
            key: "clientSecret".into(),
        }),
        scopes: vec![
            "profile".into(),
            "email".into(),
            "groups".into(),
            "offline_access".into(),
        ],
        claim_mapping: OidcClaimMapping {
            username: "preferred_username".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    tweak(&mut oidc);
    ConnectorSpec {
        type_: ConnectorType::Oidc,
        display_name: "Upstream IdP".into(),
        oidc: Some(oidc),
        group_mappings: vec![GroupMapping {
            from: "ops".into(),
            to: "operators".into(),
        }],
        ..Default::default()
    }
}

fn install(served: &Served, spec: &ConnectorSpec) {
    let connector = OidcConnector::new(
        "upstream",
        spec,
        Some(SecretString::from(SECRET.to_owned())),
    )
    .unwrap();
    served
        .provider
        .set_connectors(Connectors::new(vec![]).with_redirect(vec![Arc::new(connector)]));
}

/// Follows the upstream leg: from the downstream's redirect to the upstream, through the
/// upstream's login form, back to the downstream's callback. Returns the callback's answer.
async fn through_upstream(up: &Upstream, browser: &Browser, to_upstream: &Page) -> Page {
    assert_eq!(to_upstream.status, 303, "{}", to_upstream.body);
    let location = to_upstream.location().to_owned();
    assert!(
        location.starts_with(&format!("{}/auth?", up.issuer)),
        "{location}"
    );
    let q = to_upstream.redirect_query();
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(!q["state"].is_empty() && !q["nonce"].is_empty());
    // The upstream is another site: its own cookies.
    let upstream_browser = Browser::new();
    let page = upstream_browser.get(&location).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let back = upstream_browser
        .submit(
            &page.form("/auth/login"),
            &[("login", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(
        back.location().contains("/callback?"),
        "{}",
        back.location()
    );
    browser.get(back.location()).await
}

/// Logs in through the upstream with `connector_id` and redeems the downstream code.
async fn login(served: &Served, up: &Upstream) -> Value {
    let rp = kubectl(served);
    let browser = Browser::new();
    let auth = rp.authorize(SCOPES, &[("connector_id", "upstream")]);
    let first = browser.get(&auth.url).await;
    let page = through_upstream(up, &browser, &first).await;
    rp.finish(&auth, &page).await
}

fn groups(id: &Value) -> Vec<String> {
    let mut g: Vec<String> = serde_json::from_value(id["groups"].clone()).unwrap();
    g.sort();
    g
}

#[tokio::test]
async fn upstream_login_through_the_chooser_maps_claims_and_groups() {
    let served = provider().await;
    let up = upstream(&served).await;
    install(&served, &spec(&up, |_| {}));
    let rp = kubectl(&served);

    // The chooser offers the upstream next to the local accounts.
    let browser = Browser::new();
    let auth = rp.authorize(SCOPES, &[]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Sign in with Upstream IdP"),
        "{}",
        page.body
    );
    let form = page
        .forms()
        .into_iter()
        .find(|f| {
            f.hidden
                .iter()
                .any(|(k, v)| k == "connector" && v == "upstream")
        })
        .unwrap();
    let to_upstream = browser.submit(&form, &[]).await;
    let callback = through_upstream(&up, &browser, &to_upstream).await;
    // A replayed callback finds nothing.
    let replay = browser
        .get(&format!(
            "{}/callback?{}",
            served.issuer,
            url::Url::parse(to_upstream.location())
                .unwrap()
                .query_pairs()
                .filter(|(k, _)| k == "state")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<String>()
        ))
        .await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    let tokens = rp.finish(&auth, &callback).await;
    let id = claims(str_of(&tokens, "id_token"));
    let sub = id["sub"].as_str().unwrap().to_owned();
    assert!(sub.starts_with("upstream:"), "{sub}");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["name"], "Alice Liddell");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    // Upstream groups, with the connector's mapping ops → operators.
    assert_eq!(groups(&id), ["developers", "operators"]);

    // connector_id skips the chooser and goes straight upstream; the subject is stable.
    let again = login(&served, &up).await;
    assert_eq!(claims(str_of(&again, "id_token"))["sub"], sub.as_str());

    // The local alice is another user.
    let local = rp.login(&Browser::new(), "openid").await;
    assert_ne!(claims(str_of(&local, "id_token"))["sub"], sub.as_str());

    // A callback without the browser's anti-forgery cookie is refused.
    let auth = rp.authorize(SCOPES, &[("connector_id", "upstream")]);
    let b = Browser::new();
    let first = b.get(&auth.url).await;
    let stolen = Browser::new();
    let page = through_upstream(&up, &stolen, &first).await;
    assert_eq!(page.status, 403, "{}", page.body);
    served.stop().await;
}

async fn set_alice_email_verified(up: &Upstream, verified: bool) {
    let key = "/registry/portcullis.dev/users/alice";
    let kv = up.store.get(key).await.unwrap().unwrap();
    let mut alice: User = serde_json::from_slice(&kv.value).unwrap();
    alice.spec = UserSpec {
        email_verified: verified,
        ..alice.spec
    };
    up.store
        .update(
            key,
            serde_json::to_vec(&alice).unwrap(),
            Some(kv.mod_revision),
        )
        .await
        .unwrap();
}

/// The callback's answer to a login through the upstream with `connector_id`.
async fn attempt(served: &Served, up: &Upstream) -> (Page, crate::sessions::Authorization) {
    let rp = kubectl(served);
    let browser = Browser::new();
    let auth = rp.authorize(SCOPES, &[("connector_id", "upstream")]);
    let first = browser.get(&auth.url).await;
    (through_upstream(up, &browser, &first).await, auth)
}

#[tokio::test]
async fn unverified_email_is_refused_unless_insecure_skip_email_verified() {
    let served = provider().await;
    let up = upstream(&served).await;
    set_alice_email_verified(&up, false).await;
    install(&served, &spec(&up, |_| {}));
    let (page, _) = attempt(&served, &up).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("not verified"), "{}", page.body);

    install(
        &served,
        &spec(&up, |o| o.insecure_skip_email_verified = true),
    );
    let (page, auth) = attempt(&served, &up).await;
    let tokens = kubectl(&served).finish(&auth, &page).await;
    assert_eq!(claims(str_of(&tokens, "id_token"))["email_verified"], true);
    served.stop().await;
}

#[tokio::test]
async fn allowed_domains_and_groups_are_enforced() {
    let served = provider().await;
    let up = upstream(&served).await;
    install(
        &served,
        &spec(&up, |o| {
            o.allowed_email_domains = vec!["example.org".into()]
        }),
    );
    let (page, _) = attempt(&served, &up).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("domain"), "{}", page.body);

    install(
        &served,
        &spec(&up, |o| o.allowed_groups = vec!["auditors".into()]),
    );
    let (page, _) = attempt(&served, &up).await;
    assert_eq!(page.status, 403, "{}", page.body);

    // Allowed: the domain matches, and only the allowed groups pass through.
    install(
        &served,
        &spec(&up, |o| {
            o.allowed_email_domains = vec!["EXAMPLE.com".into()];
            o.allowed_groups = vec!["ops".into()];
        }),
    );
    let (page, auth) = attempt(&served, &up).await;
    let tokens = kubectl(&served).finish(&auth, &page).await;
    assert_eq!(groups(&claims(str_of(&tokens, "id_token"))), ["operators"]);
    served.stop().await;
}

#[tokio::test]
async fn upstream_refresh_failure_ends_the_downstream_session() {
    let served = provider().await;
    let up = upstream(&served).await;
    install(&served, &spec(&up, |_| {}));
    let rp = kubectl(&served);
    let tokens = login(&served, &up).await;
    let (status, refreshed) = rp.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(up.refreshes.load(Ordering::SeqCst), 1);

    // Revoke every grant at the upstream (the user's upstream session ends).
    let grants = up
        .store
        .list("/oidc/grants/", ListOptions::default())
        .await
        .unwrap();
    assert!(!grants.items.is_empty());
    for kv in grants.items {
        up.store.delete(&kv.key, None).await.unwrap();
    }
    let next = str_of(&refreshed, "refresh_token").to_owned();
    let (status, body) = rp.refresh(&next).await;
    assert_eq!(
        (status, str_of(&body, "error")),
        (400, "invalid_grant"),
        "{body}"
    );
    assert_eq!(up.refreshes.load(Ordering::SeqCst), 2);
    // The downstream family is revoked: the same token fails again without asking upstream.
    let (status, body) = rp.refresh(&next).await;
    assert_eq!(
        (status, str_of(&body, "error")),
        (400, "invalid_grant"),
        "{body}"
    );
    assert_eq!(up.refreshes.load(Ordering::SeqCst), 2);
    served.stop().await;
}

#[tokio::test]
async fn eight_concurrent_downstream_refreshes_redeem_the_upstream_token_once() {
    let served = provider().await;
    let up = upstream(&served).await;
    install(&served, &spec(&up, |_| {}));
    let rp = kubectl(&served);
    let tokens = login(&served, &up).await;
    let token = str_of(&tokens, "refresh_token").to_owned();
    assert_eq!(up.refreshes.load(Ordering::SeqCst), 0);

    let answers = futures::future::join_all((0..8).map(|_| rp.refresh(&token))).await;
    let mut next = Vec::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        next.push(str_of(body, "refresh_token").to_owned());
    }
    assert_eq!(
        up.refreshes.load(Ordering::SeqCst),
        1,
        "upstream refresh grants"
    );
    // Every racing client got the same new token (the downstream grace window).
    assert!(next.iter().all(|t| *t == next[0]));

    // The next downstream refresh redeems the (rotated) upstream token once more.
    let (status, body) = rp.refresh(&next[0]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.refreshes.load(Ordering::SeqCst), 2);
    served.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_across_two_replicas_redeem_the_upstream_token_once() {
    let served = provider().await;
    // A second replica of the downstream issuer on the same store.
    let replica = Served::start("/dex", Arc::clone(&served.store)).await;
    let up = upstream(&served).await;
    install(&served, &spec(&up, |_| {}));
    install(&replica, &spec(&up, |_| {}));
    let tokens = login(&served, &up).await;
    let token = str_of(&tokens, "refresh_token").to_owned();

    let (a, b) = (kubectl(&served), kubectl(&replica));
    let answers = futures::future::join_all((0..8).map(|i| {
        let rp = if i % 2 == 0 { &a } else { &b };
        rp.refresh(&token)
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(
        up.refreshes.load(Ordering::SeqCst),
        1,
        "upstream refresh grants"
    );
    replica.stop().await;
    served.stop().await;
}

#[tokio::test]
async fn upstream_group_changes_reach_the_next_id_token_at_refresh() {
    let served = provider().await;
    let up = upstream(&served).await;
    install(&served, &spec(&up, |_| {}));
    let rp = kubectl(&served);
    let tokens = login(&served, &up).await;
    assert_eq!(
        groups(&claims(str_of(&tokens, "id_token"))),
        ["developers", "operators"]
    );
    let key = "/registry/portcullis.dev/users/alice";
    let kv = up.store.get(key).await.unwrap().unwrap();
    let mut alice: User = serde_json::from_slice(&kv.value).unwrap();
    alice.spec.groups = vec!["developers".into(), "auditors".into()];
    up.store
        .update(
            key,
            serde_json::to_vec(&alice).unwrap(),
            Some(kv.mod_revision),
        )
        .await
        .unwrap();
    let (status, refreshed) = rp.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(
        groups(&claims(str_of(&refreshed, "id_token"))),
        ["auditors", "developers"]
    );
    served.stop().await;
}

#[tokio::test]
async fn an_upstream_error_answer_is_access_denied_for_the_client() {
    let served = provider().await;
    let up = upstream(&served).await;
    install(&served, &spec(&up, |_| {}));
    let rp = kubectl(&served);
    let browser = Browser::new();
    let auth = rp.authorize(SCOPES, &[("connector_id", "upstream")]);
    let first = browser.get(&auth.url).await;
    let state = first.redirect_query()["state"].clone();
    let mut callback = url::Url::parse(&format!("{}/callback", served.issuer)).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("state", &state);
    let page = browser.get(callback.as_str()).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let q = page.redirect_query();
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], auth.state);
    // A forged state leads nowhere.
    let mut forged = url::Url::parse(&format!("{}/callback", served.issuer)).unwrap();
    forged
        .query_pairs_mut()
        .append_pair("code", "x")
        .append_pair("state", "forged");
    assert_eq!(browser.get(forged.as_str()).await.status, 400);
    served.stop().await;
}
