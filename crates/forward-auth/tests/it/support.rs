//! The shared world of these tests: one portcullis management plane (issuer, RBAC, forward
//! auth for its own routes) with a viewer and an editor, an upstream that echoes what it
//! receives, and real nginx and Caddy in front of it. Started once per test process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, Request};
use portcullis_forward_auth::roles::{Level, bind_group, route_roles};
use portcullis_forward_auth::{Config, Dependencies, ForwardAuth};
use portcullis_server::config::StoreConfig;
use portcullis_testkit::caddy::Caddy;
use portcullis_testkit::nginx::Nginx;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "forward-auth";
pub const PASSWORD: &str = "correct horse battery staple 1";
pub const VIEWER: &str = "viewer@example.com";
pub const EDITOR: &str = "editor@example.com";
/// A user in so many groups that they cannot fit in one 4 KB cookie.
pub const CROWD: &str = "crowd@example.com";

/// The login name of a test user (the User's name; the ID token names them by e-mail).
pub fn login_name(email: &str) -> &str {
    email.split('@').next().unwrap()
}

#[allow(dead_code)]
pub struct Env {
    pub server_url: String,
    pub ca_pem: String,
    pub ca_path: std::path::PathBuf,
    pub runtime: tokio::runtime::Runtime,
    _running: portcullis_server::Running,
    _dir: tempfile::TempDir,
}

/// nginx and Caddy in front of the echoing upstream, both asking the management plane.
#[allow(dead_code)]
pub struct Proxies {
    pub upstream: String,
    pub nginx: Nginx,
    pub caddy: Caddy,
}

static ENV: OnceLock<Env> = OnceLock::new();
static PROXIES: OnceLock<Proxies> = OnceLock::new();

/// The management plane, started on first use (on a runtime of its own that outlives each
/// test's).
pub fn env() -> &'static Env {
    ENV.get_or_init(|| {
        std::thread::spawn(start_env)
            .join()
            .unwrap_or_else(|_| panic!("starting the management plane failed"))
    })
}

/// The proxies, started on first use.
pub fn proxies() -> &'static Proxies {
    let e = env();
    PROXIES.get_or_init(|| {
        std::thread::spawn(|| start_proxies(e))
            .join()
            .unwrap_or_else(|_| panic!("starting the proxies failed"))
    })
}

fn start_proxies(e: &'static Env) -> Proxies {
    {
        let upstream = e.runtime.block_on(serve_echo());
        let server = e.server_url.clone();
        let up = upstream.clone();
        let nginx = Nginx::start(1, |port| nginx_site(port, &server, &up)).unwrap();
        let ca = e.ca_path.display().to_string();
        let caddy = Caddy::start(|port| caddy_site(port, &server, &ca, &up)).unwrap();
        Proxies {
            upstream,
            nginx,
            caddy,
        }
    }
}

fn forward_auth_client() -> portcullis_model::Client {
    portcullis_model::Client::new(
        CLIENT_ID,
        portcullis_model::ClientSpec {
            display_name: "Test dashboards".into(),
            public: true,
            redirect_uris: vec![
                "http://127.0.0.1/_oauth".into(),
                "http://127.0.0.1/cb".into(),
                "https://app.test/_oauth".into(),
                "https://auth.app.test/_oauth".into(),
            ],
            ..Default::default()
        },
    )
}

/// The forward-auth configuration the management plane runs with.
pub fn fa_config(issuer: &str) -> Config {
    let mut c = Config::new(issuer, CLIENT_ID);
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    c.allowed_redirect_domains = vec!["127.0.0.1".into(), "app.test".into()];
    c
}

fn start_env() -> Env {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = runtime.block_on(async {
        let mut config = portcullis_server::Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            store: StoreConfig::Memory,
            shutdown_grace_seconds: 1,
            ..portcullis_server::Config::default()
        };
        config.oidc.static_clients = vec![forward_auth_client()];
        // Short ID tokens: the renewal test moves forward auth's clock past one.
        config.oidc.id_token_seconds = 300;
        // The issuer is filled in by the server (its own URL and CA).
        let mut fa = fa_config("https://placeholder.invalid");
        fa.issuer = String::new();
        config.forward_auth = Some(fa);
        portcullis_server::start(config).await.unwrap()
    });
    let server_url = running.url.clone();
    let ca_path = running.ca_path.clone();
    let ca_pem = std::fs::read_to_string(&ca_path).unwrap();
    runtime.block_on(seed(&server_url, &ca_pem, dir.path()));
    Env {
        server_url,
        ca_pem,
        ca_path,
        runtime,
        _running: running,
        _dir: dir,
    }
}

/// nginx's internal check location `/_portcullis_check`: an `auth_request` subrequest to
/// `forward_auth` (its base URL) with the original method, URI, host and scheme; `extra` adds
/// directives (TLS to the upstream, keep-alive).
pub fn nginx_check_location(forward_auth: &str, extra: &str) -> String {
    format!(
        r#"  location = /_portcullis_check {{
    internal;
    proxy_pass {forward_auth}/auth-request;
    {extra}
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header X-Original-URI $request_uri;
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-Proto $scheme;
  }}"#
    )
}

/// The nginx site under test: `auth_request` to the management plane's forward auth.
pub fn nginx_site(port: u16, server: &str, upstream: &str) -> String {
    let check = nginx_check_location(server, "proxy_ssl_verify off;");
    format!(
        r#"
server {{
  listen 127.0.0.1:{port};
{check}
  location ~ ^/(_oauth|oauth2/) {{
    proxy_pass {server};
    proxy_redirect off;
    proxy_ssl_verify off;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-Proto $scheme;
  }}
  location @portcullis_login {{
    return 302 /oauth2/start?rd=$scheme://$http_host$request_uri;
  }}
  location / {{
    auth_request /_portcullis_check;
    error_page 401 = @portcullis_login;
    auth_request_set $auth_user $upstream_http_x_auth_request_user;
    auth_request_set $auth_email $upstream_http_x_auth_request_email;
    auth_request_set $auth_groups $upstream_http_x_auth_request_groups;
    auth_request_set $auth_username $upstream_http_x_auth_request_preferred_username;
    auth_request_set $auth_cookie $upstream_http_x_auth_request_cookie;
    proxy_set_header X-Auth-Request-User $auth_user;
    proxy_set_header X-Auth-Request-Email $auth_email;
    proxy_set_header X-Auth-Request-Groups $auth_groups;
    proxy_set_header X-Auth-Request-Preferred-Username $auth_username;
    proxy_set_header Cookie $auth_cookie;
    proxy_pass {upstream};
  }}
}}
"#
    )
}

/// The Caddy site under test: `forward_auth` to the management plane's forward auth.
pub fn caddy_site(port: u16, server: &str, ca_path: &str, upstream: &str) -> String {
    let upstream = upstream.trim_start_matches("http://");
    format!(
        r#"
http://127.0.0.1:{port} {{
  forward_auth {server} {{
    uri /forward-auth
    copy_headers X-Auth-Request-User X-Auth-Request-Email X-Auth-Request-Groups X-Auth-Request-Preferred-Username X-Auth-Request-Cookie>Cookie
    transport http {{
      tls_trusted_ca_certs {ca_path}
    }}
  }}
  reverse_proxy {upstream}
}}
"#
    )
}

/// An HTTPS client trusting the management plane's CA, with the admin's certificate.
fn admin_client(ca_pem: &str, data_dir: &std::path::Path) -> reqwest::Client {
    let kc = portcullis_server::kubeconfig::Kubeconfig::read(&data_dir.join("admin.conf")).unwrap();
    let user = &kc.users[0].user;
    let cert =
        portcullis_server::kubeconfig::decode_data(user.client_certificate_data.as_ref().unwrap())
            .unwrap();
    let key = portcullis_server::kubeconfig::decode_data(secrecy::ExposeSecret::expose_secret(
        user.client_key_data.as_ref().unwrap(),
    ))
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_slice(&cert).unwrap()],
        rustls_pki_types::PrivateKeyDer::from_pem_slice(&key).unwrap(),
    )
    .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The RBAC objects of the test: the `app` service's route roles, viewers may view, editors
/// may edit.
pub fn rbac_objects() -> Vec<Value> {
    let mut objects = route_roles("app", "/app");
    objects.push(bind_group("app", Level::View, "oidc:viewers"));
    objects.push(bind_group("app", Level::Edit, "oidc:editors"));
    objects
}

async fn seed(url: &str, ca_pem: &str, data_dir: &std::path::Path) {
    let admin = admin_client(ca_pem, data_dir);
    let hash = portcullis_oidc::hash_password(PASSWORD.to_owned())
        .await
        .unwrap();
    let crowd: Vec<String> = (0..150)
        .map(|i| format!("a-group-with-a-long-name-{i:03}"))
        .collect();
    for (name, email, groups) in [
        ("viewer", VIEWER, vec!["viewers".to_owned()]),
        ("editor", EDITOR, vec!["editors".to_owned()]),
        ("crowd", CROWD, crowd),
    ] {
        let user = json!({
            "apiVersion": "portcullis.dev/v1alpha1",
            "kind": "User",
            "metadata": { "name": name },
            "spec": {
                "email": email, "emailVerified": true, "groups": groups,
                "displayName": name, "passwordHash": hash,
            },
        });
        let r = admin
            .post(format!("{url}/apis/portcullis.dev/v1alpha1/users"))
            .json(&user)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    for object in rbac_objects() {
        let plural = match object["kind"].as_str().unwrap() {
            "ClusterRole" => "clusterroles",
            _ => "clusterrolebindings",
        };
        let r = admin
            .post(format!("{url}/apis/rbac.authorization.k8s.io/v1/{plural}"))
            .json(&object)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    // The policy is reloaded in the background: wait until it grants the editor.
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": EDITOR, "groups": ["oidc:editors"],
            "nonResourceAttributes": { "path": "/app/x", "verb": "post" },
        },
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r: Value = admin
            .post(format!(
                "{url}/apis/authorization.k8s.io/v1/subjectaccessreviews"
            ))
            .json(&review)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["status"]["allowed"] == json!(true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "RBAC never loaded: {r}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An upstream answering every request with what it received, as JSON.
async fn serve_echo() -> String {
    let app = axum::Router::new().fallback(|req: Request| async move {
        let headers: HashMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        axum::Json(json!({
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "headers": headers,
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

// === a scripted browser ===

/// A browser that keeps cookies by name (every site here is 127.0.0.1, and browsers do not
/// separate cookies by port), sends `Secure` ones over https only, and follows nothing by
/// itself.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: HashMap<String, (String, bool)>,
}

impl Browser {
    pub fn new(ca_pem: &str) -> Browser {
        let client = reqwest::Client::builder()
            .tls_certs_only(vec![
                reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap(),
            ])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            client,
            jar: HashMap::new(),
        }
    }

    fn cookie_header(&self, url: &str) -> String {
        let https = url.starts_with("https://");
        self.jar
            .iter()
            .filter(|(_, (_, secure))| https || !secure)
            .map(|(n, (v, _))| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let attrs = attrs.to_ascii_lowercase();
            if attrs.contains("max-age=0") || value.is_empty() {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(
                    name.trim().to_owned(),
                    (value.trim().to_owned(), attrs.contains("secure")),
                );
            }
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        form: Option<String>,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .request(method.parse().unwrap(), url)
            .header("accept", "text/html,application/xhtml+xml");
        let cookies = self.cookie_header(url);
        if !cookies.is_empty() {
            r = r.header("cookie", cookies);
        }
        if let Some(form) = form {
            r = r
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
        }
        let response = r.send().await.unwrap();
        self.remember(&response);
        response
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        self.request("GET", url, None).await
    }

    /// Follows redirects from `url` (GET) until an answer that is not one; the URLs visited.
    pub async fn follow(&mut self, url: &str) -> (reqwest::Response, Vec<String>) {
        let mut url = url.to_owned();
        let mut visited = vec![url.clone()];
        for _ in 0..10 {
            let r = self.get(&url).await;
            if !r.status().is_redirection() {
                return (r, visited);
            }
            let location = r.headers()["location"].to_str().unwrap();
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(location)
                .unwrap()
                .to_string();
            visited.push(url.clone());
        }
        panic!("too many redirects: {visited:?}");
    }

    /// Fills the issuer's login form of `html` for `login` and posts it.
    pub async fn submit_login(&mut self, html: &str, login: &str) -> reqwest::Response {
        let hidden = |name: &str| {
            let needle = format!("name=\"{name}\" value=\"");
            let start = html.rfind(&needle).unwrap() + needle.len();
            html[start..start + html[start..].find('"').unwrap()].to_owned()
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("request", hidden("request").as_str()),
                ("csrf", hidden("csrf").as_str()),
                ("login", login_name(login)),
                ("password", PASSWORD),
            ])
            .finish();
        let action = format!("{}/auth/login", env().server_url);
        self.request("POST", &action, Some(form)).await
    }

    /// On the issuer's login page `page` (at `page_url`), logs in as `login` and follows the
    /// redirects back; the final answer and the URLs visited.
    pub async fn log_in(
        &mut self,
        page_url: &str,
        page: reqwest::Response,
        login: &str,
    ) -> (reqwest::Response, Vec<String>) {
        assert_eq!(page.status(), 200, "expected the login page at {page_url}");
        let html = page.text().await.unwrap();
        assert!(
            html.contains("name=\"password\""),
            "not a login page: {html}"
        );
        let action = reqwest::Url::parse(page_url)
            .unwrap()
            .join("/auth/login")
            .unwrap();
        let answer = self.submit_login(&html, login).await;
        assert_eq!(
            answer.status(),
            303,
            "login refused: {}",
            answer.text().await.unwrap()
        );
        let next = answer.headers()["location"].to_str().unwrap().to_owned();
        let (r, mut visited) = self.follow(&next).await;
        visited.insert(0, action.to_string());
        (r, visited)
    }
}

/// Logs in at the issuer as `login` for this test's client and returns the token answer.
pub async fn tokens_for(login: &str) -> Value {
    use base64::Engine as _;
    let e = env();
    let verifier = "a-fixed-but-long-enough-pkce-verifier-for-this-test-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let redirect = "http://127.0.0.1:9/cb";
    let mut auth = url::Url::parse(&format!("{}/auth", e.server_url)).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile groups")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut b = Browser::new(&e.ca_pem);
    let page = b.get(auth.as_str()).await;
    let html = page.text().await.unwrap();
    let answer = b.submit_login(&html, login).await;
    assert_eq!(answer.status(), 303);
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
            ("client_id", CLIENT_ID),
        ])
        .finish();
    b.request("POST", &format!("{}/token", e.server_url), Some(form))
        .await
        .json()
        .await
        .unwrap()
}

// === forward auth in process ===

/// A policy decided in process (the same objects the management plane has).
pub struct StaticPolicy(pub portcullis_rbac::CompiledPolicy);

impl portcullis_authn::Authorize for StaticPolicy {
    fn authorize(&self, a: &portcullis_rbac::Attributes) -> portcullis_rbac::Decision {
        self.0.authorize(a)
    }
}

pub fn static_policy() -> Arc<StaticPolicy> {
    let mut policy = portcullis_rbac::Policy::default();
    policy.add_documents("test", rbac_objects()).unwrap();
    policy.aggregate();
    Arc::new(StaticPolicy(portcullis_rbac::CompiledPolicy::new(&policy)))
}

/// A settable clock: the system clock plus an offset.
#[derive(Clone, Default)]
pub struct TestClock(pub Arc<std::sync::atomic::AtomicU64>);

impl TestClock {
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
    fn clock(&self) -> portcullis_forward_auth::Clock {
        let offset = self.0.clone();
        Arc::new(move || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + offset.load(std::sync::atomic::Ordering::SeqCst)
        })
    }
}

/// Forward auth in this process against the shared issuer, with its own memory store (so its
/// own cookie keys), the test policy and `edit` applied to its configuration.
pub async fn in_process(edit: impl FnOnce(&mut Config)) -> (ForwardAuth, TestClock) {
    let e = env();
    let mut config = fa_config(&e.server_url);
    config.issuer_ca = Some(e.ca_pem.clone());
    edit(&mut config);
    let clock = TestClock::default();
    let deps = Dependencies {
        authorizer: static_policy(),
        store: Arc::new(portcullis_store::memory::MemoryStore::default()),
        encryption_key: [9; 32],
        keys: portcullis_authn::JwtAuthenticator::discovery_key_sources(),
        tls: false,
        clock: Some(clock.clock()),
    };
    (ForwardAuth::new(config, deps).await.unwrap(), clock)
}

/// Sends `request` to `fa`'s router as if from `peer`.
pub async fn call(
    fa: &ForwardAuth,
    peer: &str,
    mut request: http::Request<axum::body::Body>,
) -> http::Response<axum::body::Body> {
    use tower::ServiceExt as _;
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    fa.router().oneshot(request).await.unwrap()
}

/// A Traefik-style check request for `method` `uri` on `host`, with extra headers.
pub fn check_request(
    method: &str,
    host: &str,
    uri: &str,
    extra: &[(&str, &str)],
) -> http::Request<axum::body::Body> {
    let mut b = http::Request::get("/forward-auth")
        .header("host", "forward-auth.internal:4180")
        .header("x-forwarded-method", method)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-for", "203.0.113.7");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(axum::body::Body::empty()).unwrap()
}

/// Logs `login` in through `fa` in process (start, the issuer's login page, callback) and
/// returns the session cookie's value.
pub async fn session_for(fa: &ForwardAuth, login: &str) -> String {
    let r = callback_for(fa, login).await;
    assert_eq!(r.status(), 302, "callback failed");
    assert_eq!(r.headers()["location"], "https://app.test/app/home");
    set_cookie_value(&r, "_portcullis_auth").unwrap()
}

/// Logs `login` in through `fa` in process up to the callback; its answer.
pub async fn callback_for(fa: &ForwardAuth, login: &str) -> http::Response<axum::body::Body> {
    callback_on(fa, login, "app.test", "app.test").await
}

/// [`callback_for`] starting on `host` with the callback on `callback_host`.
pub async fn callback_on(
    fa: &ForwardAuth,
    login: &str,
    host: &str,
    callback_host: &str,
) -> http::Response<axum::body::Body> {
    let e = env();
    let start = check_request("GET", host, "/app/home", &[("accept", "text/html")]);
    let r = call(fa, "127.0.0.1:5000", start).await;
    assert_eq!(r.status(), 302);
    let login_cookie = set_cookie_value(&r, "_portcullis_auth_login").unwrap();
    let authorize = r.headers()["location"].to_str().unwrap().to_owned();
    let mut b = Browser::new(&e.ca_pem);
    let page = b.get(&authorize).await;
    let html = page.text().await.unwrap();
    let answer = b.submit_login(&html, login).await;
    assert_eq!(answer.status(), 303);
    let callback = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(callback.path(), "/_oauth");
    assert_eq!(callback.host_str(), Some(callback_host));
    let target = format!("/_oauth?{}", callback.query().unwrap());
    call(
        fa,
        "127.0.0.1:5000",
        check_request(
            "GET",
            callback_host,
            &target,
            &[("cookie", &format!("_portcullis_auth_login={login_cookie}"))],
        ),
    )
    .await
}

/// The value a response sets for cookie `name`.
pub fn set_cookie_value<B>(r: &http::Response<B>, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let pair = v.split(';').next()?;
        let (n, value) = pair.split_once('=')?;
        (n == name && !value.is_empty()).then(|| value.to_owned())
    })
}
