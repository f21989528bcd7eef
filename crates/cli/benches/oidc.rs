//! The token endpoint side by side with npm `oidc-provider` in one run: refresh-token grants
//! per second (rotation on, ES256 ID tokens) from 64 concurrent clients, full password logins
//! per second (authorize → login form → argon2id → code → token) from 8, p50/p99 latency, and
//! resident memory idle and under load.
//!
//! portcullis runs as `portcullis up` (its real binary, embedded redb store: every rotation is
//! a durable write) over TLS; oidc-provider runs with its in-memory store over plain HTTP (its
//! own TLS would be a reverse proxy's). Writes `$PORTCULLIS_BENCH_OUT/portcullis.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_testkit::{ChildGuard, free_port, machine};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;

const CLIENT_ID: &str = "bench-web";
const CLIENT_SECRET: &str = "bench-secret-0123456789abcdef0123456789";
const REDIRECT: &str = "https://rp.example/callback";
const REFRESH_WORKERS: usize = 64;
const LOGIN_WORKERS: usize = 8;
const PHASE: Duration = Duration::from_secs(10);

/// One provider under test.
struct Target {
    name: &'static str,
    issuer: String,
    login: String,
    password: String,
    pid: u32,
    ca_pem: Option<String>,
}

#[derive(Default)]
struct Results {
    refresh_rate: f64,
    refresh_p50: Duration,
    refresh_p99: Duration,
    login_rate: f64,
    login_p99: Duration,
    rss_idle_mb: f64,
    rss_refresh_mb: f64,
    rss_login_mb: f64,
    errors: usize,
}

fn http_client(ca_pem: Option<&str>) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .pool_max_idle_per_host(4);
    let builder = match ca_pem {
        Some(pem) => {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.tls_backend_preconfigured(tls)
        }
        None => builder,
    };
    builder.build().unwrap()
}

/// Resident and peak resident memory of a process, MiB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Samples the resident memory of `pid` until `deadline`; resolves to the largest reading.
fn peak_rss(pid: u32, deadline: Instant) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut max = 0.0_f64;
        while Instant::now() < deadline {
            max = max.max(rss_mb(pid).0);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        max
    })
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = start + tag[start..].find('"')?;
    Some(tag[start..end].replace("&amp;", "&").replace("&#38;", "&"))
}

/// The login form of a page: its action and hidden fields.
fn login_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let end = rest[start..]
            .find("</form>")
            .map_or(rest.len(), |e| start + e);
        let form = &rest[start..end];
        if form.contains("name=\"password\"") {
            let action = attribute(form, "action")?;
            let mut hidden = Vec::new();
            let mut inputs = form;
            while let Some(i) = inputs.find("<input") {
                let close = inputs[i..].find('>').map_or(inputs.len(), |e| i + e);
                let tag = &inputs[i..close];
                if attribute(tag, "type").as_deref() == Some("hidden") {
                    hidden.push((attribute(tag, "name")?, attribute(tag, "value")?));
                }
                inputs = &inputs[close..];
            }
            return Some((action, hidden));
        }
        rest = &rest[end..];
    }
    None
}

/// Cookies by name (paths ignored: sending a cookie to a path that does not read it is
/// harmless here).
#[derive(Default)]
struct Jar(HashMap<String, String>);

impl Jar {
    fn absorb(&mut self, headers: &reqwest::header::HeaderMap) {
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap_or_default();
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty()
                    || set.contains("Max-Age=0")
                    || set.contains("expires=Thu, 01 Jan 1970")
                {
                    self.0.remove(name.trim());
                } else {
                    self.0.insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The whole login: authorize, follow redirects to the login form, post it, follow
/// redirects back to the client, redeem the code. Returns the token response.
async fn login(http: &reqwest::Client, target: &Target) -> Result<Value, String> {
    let mut jar = Jar::default();
    let mut url = url::Url::parse(&format!("{}/auth", target.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email offline_access")
        .append_pair("state", "bench-state")
        .append_pair("nonce", "bench-nonce");
    let mut next = Some(url);
    let mut post: Option<(url::Url, Vec<(String, String)>)> = None;
    let code = loop {
        let response = if let Some((action, fields)) = post.take() {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            http.post(action)
                .header("cookie", jar.header())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
        } else {
            let Some(u) = next.take() else {
                return Err("lost the flow".into());
            };
            http.get(u).header("cookie", jar.header()).send().await
        }
        .map_err(|e| e.to_string())?;
        jar.absorb(response.headers());
        let status = response.status().as_u16();
        let here = response.url().clone();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or("redirect without location")?;
            let target_url = here.join(location).map_err(|e| e.to_string())?;
            if target_url.as_str().starts_with(REDIRECT) {
                let q: HashMap<String, String> = target_url.query_pairs().into_owned().collect();
                break q.get("code").cloned().ok_or(format!("no code: {q:?}"))?;
            }
            next = Some(target_url);
        } else if status == 200 {
            let html = response.text().await.map_err(|e| e.to_string())?;
            let (action, mut fields) = login_form(&html).ok_or("no login form")?;
            fields.push(("login".into(), target.login.clone()));
            fields.push(("password".into(), target.password.clone()));
            post = Some((here.join(&action).map_err(|e| e.to_string())?, fields));
        } else {
            return Err(format!(
                "status {status}: {}",
                response.text().await.unwrap_or_default()
            ));
        }
    };
    let response = http
        .post(format!("{}/token", target.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ]))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() || body.get("refresh_token").is_none() {
        return Err(format!("token: {status} {body}"));
    }
    Ok(body)
}

async fn refresh(http: &reqwest::Client, target: &Target, token: &str) -> Result<String, String> {
    let response = http
        .post(format!("{}/token", target.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
        ]))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    match (
        status.is_success(),
        body.get("refresh_token").and_then(Value::as_str),
    ) {
        (true, Some(next)) if body.get("id_token").is_some() => Ok(next.to_owned()),
        _ => Err(format!("refresh: {status} {body}")),
    }
}

fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(target: Arc<Target>) -> Results {
    let mut results = Results {
        rss_idle_mb: rss_mb(target.pid).0,
        ..Results::default()
    };
    // Phase A: 64 clients, each with its own refresh token family.
    let mut tokens = Vec::new();
    // Logged in eight at a time.
    for _ in 0..REFRESH_WORKERS / 8 {
        let mut batch = Vec::new();
        for _ in 0..8 {
            let t = Arc::clone(&target);
            batch.push(tokio::spawn(async move {
                let http = http_client(t.ca_pem.as_deref());
                let tokens = login(&http, &t)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", t.name));
                let token = tokens["refresh_token"].as_str().unwrap().to_owned();
                (http, t, token)
            }));
        }
        for b in batch {
            tokens.push(b.await.unwrap());
        }
    }
    let refresh_phase = run_phase(target.pid, tokens, |(http, t, token)| async move {
        let next = refresh(&http, &t, &token).await?;
        Ok((http, t, next))
    })
    .await;
    results.refresh_rate = refresh_phase.rate;
    results.refresh_p50 = refresh_phase.p50;
    results.refresh_p99 = refresh_phase.p99;
    results.rss_refresh_mb = refresh_phase.peak_mb;
    results.errors += refresh_phase.errors;

    // Phase B: full password logins.
    let browsers = (0..LOGIN_WORKERS)
        .map(|_| (http_client(target.ca_pem.as_deref()), Arc::clone(&target)))
        .collect();
    let login_phase = run_phase(target.pid, browsers, |(http, t)| async move {
        login(&http, &t).await?;
        Ok((http, t))
    })
    .await;
    results.login_rate = login_phase.rate;
    results.login_p99 = login_phase.p99;
    results.rss_login_mb = login_phase.peak_mb;
    results.errors += login_phase.errors;
    results
}

/// One load phase: its rate, latencies, peak memory of the server and errors.
struct Phase {
    rate: f64,
    p50: Duration,
    p99: Duration,
    peak_mb: f64,
    errors: usize,
}

/// Runs one worker per state for [`PHASE`], each repeating `step` on its state (a worker
/// stops at its first error), while sampling the server's memory.
async fn run_phase<S, F, Fut>(pid: u32, states: Vec<S>, step: F) -> Phase
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<S, String>> + Send,
{
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let workers: Vec<_> = states
        .into_iter()
        .map(|state| {
            let step = step.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut state = state;
                while Instant::now() < deadline {
                    let begin = Instant::now();
                    match step(state).await {
                        Ok(next) => {
                            latencies.push(begin.elapsed());
                            state = next;
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            return (latencies, 1);
                        }
                    }
                }
                (latencies, 0)
            })
        })
        .collect();
    let sampler = peak_rss(pid, deadline);
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let peak_mb = sampler.await.unwrap().max(rss_mb(pid).0);
    all.sort();
    Phase {
        rate: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        peak_mb,
        errors,
    }
}

fn wait_for_line(child: &mut std::process::Child, prefix: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no {prefix:?} line");
        let line = lines.next().expect("the server exited").unwrap();
        if let Some(rest) = line.strip_prefix(prefix) {
            std::thread::spawn(move || for _ in lines {});
            return rest.trim().to_owned();
        }
    }
}

fn start_portcullis(dir: &Path) -> (ChildGuard, Target) {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let port = free_port().unwrap();
    let mut child = Command::new(bin)
        .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = wait_for_line(&mut child, "portcullis is running at ");
    let pid = child.id();
    let manifest = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Client\nmetadata:\n  name: {CLIENT_ID}\nspec:\n  redirectURIs: [\"{REDIRECT}\"]\n  secretHash: \"{}\"\n",
        portcullis_model::hash_client_secret(CLIENT_SECRET)
    );
    let file = dir.join("client.yaml");
    std::fs::write(&file, manifest).unwrap();
    let out = Command::new(bin)
        .args(["apply", "-f"])
        .arg(&file)
        .arg("--config")
        .arg(dir.join("admin.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let password = std::fs::read_to_string(dir.join("admin-password")).unwrap();
    (
        ChildGuard(child),
        Target {
            name: "portcullis",
            issuer: url,
            login: "admin".into(),
            password: password.trim().to_owned(),
            pid,
            ca_pem: Some(std::fs::read_to_string(dir.join("pki/ca.crt")).unwrap()),
        },
    )
}

fn start_oidc_provider() -> (ChildGuard, Target) {
    let peers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../peers/node");
    assert!(
        peers.join("node_modules/oidc-provider").exists(),
        "npm peers are not installed: run `cargo xtask deps`"
    );
    let port = free_port().unwrap();
    let password = "bench-password-0123456789";
    let mut child = Command::new("node")
        .arg(peers.join("oidc-provider-bench.mjs"))
        .args([
            &port.to_string(),
            CLIENT_ID,
            CLIENT_SECRET,
            REDIRECT,
            "alice",
            password,
        ])
        .current_dir(&peers)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "ready ");
    let pid = child.id();
    (
        ChildGuard(child),
        Target {
            name: "oidc-provider",
            issuer: format!("http://127.0.0.1:{port}"),
            login: "alice".into(),
            password: password.into(),
            pid,
            ca_pem: None,
        },
    )
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (guard_p, portcullis) = start_portcullis(dir.path());
    runtime.block_on(async { tokio::time::sleep(Duration::from_secs(1)).await });
    let ours = runtime.block_on(measure(Arc::new(portcullis)));
    drop(guard_p);
    let (guard_n, node) = start_oidc_provider();
    runtime.block_on(async { tokio::time::sleep(Duration::from_secs(1)).await });
    let theirs = runtime.block_on(measure(Arc::new(node)));
    drop(guard_n);

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let ratio = ours.refresh_rate / theirs.refresh_rate.max(1.0);
    let met = |ok: bool| if ok { "met" } else { "**not met**" };
    let table = format!(
        "## OpenID provider: token endpoint and logins (portcullis)\n\n\
         Machine: {machine}. `portcullis up` (release build, embedded redb store, every refresh \
         token rotation committed durably, TLS) beside npm oidc-provider 9 (its in-memory \
         store, plain HTTP) started by `peers/node/oidc-provider-bench.mjs`; both with \
         ES256 ID tokens, refresh token rotation on every use, a confidential client with \
         client_secret_basic, HTTP/1.1 keep-alive. Refresh: {REFRESH_WORKERS} concurrent clients \
         for {phase} s, each rotating its own token family. Logins: {LOGIN_WORKERS} concurrent \
         browsers for {phase} s, each doing authorize → login form → argon2id (m=19456, t=2, \
         p=1 on both) → code → token. The load generator runs on the same 2 cores.\n\n\
         | | portcullis | oidc-provider | target |\n|---|---|---|---|\n\
         | refresh grants/s | {:.0} | {:.0} | ≥ 3× ({ratio:.1}×): {} |\n\
         | refresh p50 / p99 | {} / {} | {} / {} | |\n\
         | password logins/s | {:.1} | {:.1} | |\n\
         | login p99 | {} | {} | |\n\
         | resident memory idle | {:.1} MB | {:.1} MB | ≤ 50 MB: {} |\n\
         | resident memory, refresh load (peak) | {:.1} MB | {:.1} MB | |\n\
         | resident memory, login load (peak) | {:.1} MB | {:.1} MB | |\n\
         | errors | {} | {} | |\n",
        ours.refresh_rate,
        theirs.refresh_rate,
        met(ratio >= 3.0),
        ms(ours.refresh_p50),
        ms(ours.refresh_p99),
        ms(theirs.refresh_p50),
        ms(theirs.refresh_p99),
        ours.login_rate,
        theirs.login_rate,
        ms(ours.login_p99),
        ms(theirs.login_p99),
        ours.rss_idle_mb,
        theirs.rss_idle_mb,
        met(ours.rss_idle_mb <= 50.0),
        ours.rss_refresh_mb,
        theirs.rss_refresh_mb,
        ours.rss_login_mb,
        theirs.rss_login_mb,
        ours.errors,
        theirs.errors,
        machine = machine(),
        phase = PHASE.as_secs(),
    );
    println!("{table}");
    if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
        std::fs::write(Path::new(&out).join("portcullis.md"), table).unwrap();
    }
}
