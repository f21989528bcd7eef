//! The API proxy as users run it: `portcullis agent` (the release binary) in front of a small,
//! fast HTTPS upstream, beside nginx `proxy_pass` (Debian nginx, started here) to the same
//! upstream, in one run on loopback. `GET /api/v1/namespaces` with a bearer token, over HTTP/1.1
//! (one request at a time on each of 32 connections) and HTTP/2 (32 streams on 2 connections).
//! portcullis verifies the issuer's token: with the identity cache warm (one token) and cold (a
//! new token for every request). nginx checks nothing. The upstream (nginx returning a fixed
//! `NamespaceList`) is also measured directly, for the latency the proxies add.
//!
//! Writes a markdown section to `$PORTCULLIS_BENCH_OUT/proxy.md` when that is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_testkit::{ChildGuard, free_port, wait_until};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

const CONNECTIONS: usize = 32;
const H2_CONNECTIONS: usize = 2;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
/// nginx and portcullis (cache warm) take turns this many times each, in alternating order:
/// the machine's speed drifts, and each turn is compared with the other's next to it.
const TURNS: usize = 5;
const COLD_TOKENS: usize = 60_000;
const PATH: &str = "/api/v1/namespaces";

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    H1,
    H2,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::H1 => "HTTP/1.1",
            Protocol::H2 => "HTTP/2",
        }
    }
}

/// Tokens: one for every request (cold), or the same one (warm).
#[derive(Clone)]
struct Tokens {
    list: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
}

impl Tokens {
    fn take(&self) -> Option<&str> {
        if self.list.len() == 1 {
            return self.list.first().map(String::as_str);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.list.get(i).map(String::as_str)
    }
}

struct Result {
    /// CPU time the proxy's processes used per measured request, in µs.
    cpu_us: f64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    errors: usize,
}

fn tls_config(cas: &[String], protocol: Protocol) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in cas {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = match protocol {
        Protocol::H1 => vec![b"http/1.1".to_vec()],
        Protocol::H2 => vec![b"h2".to_vec()],
    };
    Arc::new(config)
}

async fn connect(
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

fn request(port: u16, protocol: Protocol, token: Option<&str>) -> http::Request<Empty<Bytes>> {
    let mut b = http::Request::get(format!("https://127.0.0.1:{port}{PATH}"))
        .header("accept", "application/json");
    if protocol == Protocol::H1 {
        // HTTP/2 carries it as :authority.
        b = b.header("host", format!("127.0.0.1:{port}"));
    }
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Empty::new()).unwrap()
}

/// CPU time (user + system, in clock ticks of 10 ms) of a process and its children processes
/// (nginx's workers), from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let fields = |stat: &str| -> Option<(u32, u64)> {
        // After the parenthesised command name: state ppid ... utime(14) stime(15).
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        Some((ppid, utime + stime))
    };
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        if let Some((ppid, ticks)) = fields(&stat)
            && (p == pid || ppid == pid)
        {
            total += ticks;
        }
    }
    total
}

/// One load run: requests for WARMUP + MEASURE, latencies of the measured part, and the CPU
/// the process `pid` (and its children) used over the measured part.
async fn run(
    port: u16,
    cas: &[String],
    protocol: Protocol,
    tokens: Option<Tokens>,
    pid: u32,
) -> Result {
    let tls = tls_config(cas, protocol);
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let mut tasks = Vec::new();
    let streams_per_connection = CONNECTIONS / H2_CONNECTIONS;
    let connections = match protocol {
        Protocol::H1 => CONNECTIONS,
        Protocol::H2 => H2_CONNECTIONS,
    };
    for _ in 0..connections {
        let stream = connect(port, &tls).await;
        match protocol {
            Protocol::H1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                tasks.push(tokio::spawn(load(
                    Sender::H1(sender),
                    port,
                    protocol,
                    tokens.clone(),
                    measure_from,
                    end,
                )));
            }
            Protocol::H2 => {
                let (sender, conn) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                for _ in 0..streams_per_connection {
                    tasks.push(tokio::spawn(load(
                        Sender::H2(sender.clone()),
                        port,
                        protocol,
                        tokens.clone(),
                        measure_from,
                        end,
                    )));
                }
            }
        }
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = cpu_ticks(pid);
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut last = measure_from;
    for t in tasks {
        let (l, e, finished) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
        last = last.max(finished);
    }
    let cpu_ticks_used = cpu_ticks(pid).saturating_sub(cpu_before);
    latencies.sort_unstable();
    let took = last.saturating_duration_since(measure_from).as_secs_f64();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Result {
        cpu_us: cpu_ticks_used as f64 * 10_000.0 / (latencies.len().max(1) as f64),
        rps: latencies.len() as f64 / took.max(1e-9),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        errors,
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn load(
    mut sender: Sender,
    port: u16,
    protocol: Protocol,
    tokens: Option<Tokens>,
    measure_from: Instant,
    end: Instant,
) -> (Vec<u64>, usize, Instant) {
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            return (latencies, errors, now);
        }
        let token = match &tokens {
            Some(t) => match t.take() {
                Some(tok) => Some(tok),
                // Cold tokens used up: the run ends here.
                None => return (latencies, errors, now),
            },
            None => None,
        };
        let req = request(port, protocol, token);
        let sent = match &mut sender {
            Sender::H1(s) => {
                if s.ready().await.is_err() {
                    return (latencies, errors + 1, Instant::now());
                }
                s.send_request(req).await
            }
            Sender::H2(s) => s.send_request(req).await,
        };
        let ok = match sent {
            Ok(resp) => {
                let status = resp.status();
                resp.into_body().collect().await.is_ok() && status == 200
            }
            Err(_) => false,
        };
        let done = Instant::now();
        if now >= measure_from {
            if ok {
                latencies.push(done.duration_since(now).as_micros() as u64);
            } else {
                errors += 1;
            }
        }
    }
}

fn write_nginx(dir: &Path, name: &str, server: &str) -> std::path::PathBuf {
    let conf = dir.join(format!("{name}.conf"));
    let tmp = dir.join(format!("{name}-tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    let text = format!(
        "worker_processes auto;\ndaemon off;\nmaster_process on;\npid {dir}/{name}.pid;\nerror_log {dir}/{name}-error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  keepalive_requests 1000000;\n{server}\n}}\n",
        dir = dir.display(),
        tmp = tmp.display(),
    );
    std::fs::write(&conf, text).unwrap();
    conf
}

/// nginx, stopped on drop with SIGTERM to its master (which stops its workers; a SIGKILL would
/// leave them running) and reaped.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.0.wait();
    }
}

fn start_nginx(conf: &Path, port: u16) -> Nginx {
    let child = Command::new("/usr/sbin/nginx")
        .arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(conf.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx is installed by `cargo xtask deps` (Debian nginx)");
    let guard = Nginx(child);
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nginx did not listen on {port}"
    );
    guard
}

fn fmt_ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !Path::new("/usr/sbin/nginx").exists() {
        eprintln!("skipped: nginx is not installed (`cargo xtask deps` installs it)");
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The issuer, in process: it serves its keys to the agent and signs the bench's tokens.
    let issuer = portcullis_server::start(portcullis_server::Config {
        data_dir: d.join("issuer"),
        listen: "127.0.0.1:0".parse().unwrap(),
        store: portcullis_server::config::StoreConfig::Memory,
        ..portcullis_server::Config::default()
    })
    .await
    .unwrap();
    let issuer_ca = d.join("issuer-ca.crt");
    std::fs::copy(&issuer.ca_path, &issuer_ca).unwrap();

    // Certificates for the nginx servers.
    let pki = portcullis_server::pki::load_or_create(&d.join("nginx-pki"), &["127.0.0.1".into()])
        .unwrap();
    let cert = d.join("nginx.crt");
    let key = d.join("nginx.key");
    std::fs::write(
        &cert,
        format!("{}{}", pki.serving.cert_pem, pki.ca.cert_pem),
    )
    .unwrap();
    std::fs::write(&key, &pki.serving.key_pem).unwrap();
    let nginx_ca = pki.ca.cert_pem.clone();

    // The upstream: nginx answering a fixed NamespaceList.
    let up_port = free_port().unwrap();
    let body = json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []});
    let upstream_conf = write_nginx(
        d,
        "upstream",
        &format!(
            "  server {{\n    listen 127.0.0.1:{up_port} ssl http2;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    location / {{ default_type application/json; return 200 '{body}'; }}\n  }}",
            cert = cert.display(),
            key = key.display(),
        ),
    );
    let upstream = start_nginx(&upstream_conf, up_port);

    // nginx proxy_pass to it, as a reverse proxy in front of an API server is configured:
    // pooled upstream connections, the upstream's certificate verified, a credential set.
    let nginx_port = free_port().unwrap();
    let ca_file = d.join("nginx-ca.crt");
    std::fs::write(&ca_file, &nginx_ca).unwrap();
    let proxy_conf = write_nginx(
        d,
        "proxy",
        &format!(
            "  upstream api {{ server 127.0.0.1:{up_port}; keepalive 64; }}\n  server {{\n    listen 127.0.0.1:{nginx_port} ssl http2;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    location / {{\n      proxy_pass https://api;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Authorization \"Bearer upstream-token\";\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_ssl_trusted_certificate {ca};\n      proxy_ssl_verify on;\n      proxy_ssl_name localhost;\n      proxy_ssl_session_reuse on;\n      proxy_buffering off;\n    }}\n  }}",
            cert = cert.display(),
            key = key.display(),
            ca = ca_file.display(),
        ),
    );
    let nginx = start_nginx(&proxy_conf, nginx_port);

    // portcullis agent, the release binary, to the same upstream.
    let kubeconfig = d.join("upstream.kubeconfig");
    std::fs::write(
        &kubeconfig,
        portcullis_testkit::kubectl::kubeconfig(
            &format!("https://127.0.0.1:{up_port}"),
            &nginx_ca,
            "upstream-token",
            "default",
        ),
    )
    .unwrap();
    let agent_port = free_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["agent", "--cluster", "bench", "--issuer-url", &issuer.url])
        .arg("--issuer-ca")
        .arg(&issuer_ca)
        .arg("--upstream-kubeconfig")
        .arg(&kubeconfig)
        .args(["--listen", &format!("127.0.0.1:{agent_port}")])
        .arg("--data-dir")
        .arg(d.join("agent"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = lines.next().unwrap().unwrap();
    assert!(started.contains("is running at"), "{started}");
    std::thread::spawn(move || for _ in lines {});
    let agent = ChildGuard(child);
    let agent_ca = std::fs::read_to_string(d.join("agent/pki/ca.crt")).unwrap();
    let cas = vec![nginx_ca.clone(), agent_ca];
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cas[1].as_bytes()).unwrap())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("https://127.0.0.1:{agent_port}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the agent never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Tokens: one for the warm cache, one per request for the cold runs.
    let now = portcullis_jose::unix_now();
    let sign = |i: usize| {
        issuer
            .provider
            .sign(
                &json!({"iss": issuer.url, "aud": "bench", "sub": format!("u-{i}"),
                "iat": now, "exp": now + 3600, "email": format!("user{i}@example.com"),
                "email_verified": true, "groups": ["dev"]}),
            )
            .unwrap()
    };
    let warm = Tokens {
        list: Arc::new(vec![sign(0)]),
        next: Arc::new(AtomicUsize::new(0)),
    };
    let cold_list: Arc<Vec<String>> = Arc::new((1..=COLD_TOKENS).map(sign).collect());

    let mut rows = Vec::new();
    // (The upstream alone is measured too: what a proxy costs is what it adds to that.)
    let mut summary = Vec::new();
    for protocol in [Protocol::H1, Protocol::H2] {
        let direct = run(up_port, &cas, protocol, None, upstream.0.id()).await;
        // One turn each first, not counted: both proxies' upstream pools and caches filled.
        run(nginx_port, &cas, protocol, Some(warm.clone()), nginx.0.id()).await;
        run(agent_port, &cas, protocol, Some(warm.clone()), agent.0.id()).await;
        let (mut nginx_turns, mut agent_turns) = (Vec::new(), Vec::new());
        for turn in 0..TURNS {
            let nginx_first = turn % 2 == 0;
            for agent_now in [!nginx_first, nginx_first] {
                if agent_now {
                    agent_turns.push(
                        run(agent_port, &cas, protocol, Some(warm.clone()), agent.0.id()).await,
                    );
                } else {
                    nginx_turns.push(
                        run(nginx_port, &cas, protocol, Some(warm.clone()), nginx.0.id()).await,
                    );
                }
            }
        }
        // Each turn of portcullis against nginx's in the same pair; the median pair reported.
        let mut ratios: Vec<(f64, usize)> = agent_turns
            .iter()
            .zip(&nginx_turns)
            .enumerate()
            .map(|(i, (a, n))| (a.rps / n.rps, i))
            .collect();
        ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, median) = ratios[ratios.len() / 2];
        let all_ratios: Vec<String> = agent_turns
            .iter()
            .zip(&nginx_turns)
            .map(|(a, n)| format!("{:.2}", a.rps / n.rps))
            .collect();
        let (nginx_run, agent_warm) = (&nginx_turns[median], &agent_turns[median]);
        let cold = Tokens {
            list: cold_list.clone(),
            next: Arc::new(AtomicUsize::new(0)),
        };
        let agent_cold = run(agent_port, &cas, protocol, Some(cold), agent.0.id()).await;
        for (name, r) in [
            ("upstream, direct", &direct),
            ("nginx proxy_pass", nginx_run),
            ("portcullis agent, identity cache warm", agent_warm),
            ("portcullis agent, a new token per request", &agent_cold),
        ] {
            rows.push(format!(
                "| {} | {name} | {:.0} | {} | {} | {:.0} µs | {} |",
                protocol.name(),
                r.rps,
                fmt_ms(r.p50_us),
                fmt_ms(r.p99_us),
                r.cpu_us,
                r.errors
            ));
        }
        summary.push(format!(
            "- {}: portcullis (cache warm) serves {ratio:.2}× nginx's requests/s ({:.0} against {:.0}; the {TURNS} pairs of turns: {}) at {:.0} µs of CPU per request against nginx's {:.0}; with a new token per request {:.2}×. p99 {} through portcullis, {} through nginx ({} more).",
            protocol.name(),
            agent_warm.rps,
            nginx_run.rps,
            all_ratios.join(", "),
            agent_warm.cpu_us,
            nginx_run.cpu_us,
            agent_cold.rps / nginx_run.rps,
            fmt_ms(agent_warm.p99_us),
            fmt_ms(nginx_run.p99_us),
            if agent_warm.p99_us >= nginx_run.p99_us {
                fmt_ms(agent_warm.p99_us - nginx_run.p99_us)
            } else {
                format!("-{}", fmt_ms(nginx_run.p99_us - agent_warm.p99_us))
            },
        ));
    }
    let markdown = format!(
        "## The API proxy against nginx proxy_pass (proxy)\n\n\
         `cargo xtask bench proxy` (`crates/cli/benches/proxy.rs`). `GET {PATH}` with a bearer token through `portcullis agent` (the release binary, a worker thread per core with its own upstream connections as nginx has a worker process per core: token verified, client identity headers stripped, the user set as `Impersonate-*`, forwarded with the agent's own token over pooled TLS connections) and through Debian nginx `proxy_pass` (worker_processes auto, keepalive pool, upstream certificate verified, no token check), both to the same nginx upstream answering a fixed `NamespaceList` over TLS; everything on loopback on this 2-core machine, the load generator included. HTTP/1.1: {CONNECTIONS} connections, one request at a time each; HTTP/2: {CONNECTIONS} streams over {H2_CONNECTIONS} connections. Each run measures {}s after {}s of warm-up on new connections; after one uncounted turn each, nginx and portcullis (cache warm) take {TURNS} turns each in alternating order (ABBA…), and the rows show the pair whose ratio is the median; a cold run stops early when its {COLD_TOKENS} tokens are used up. \"CPU per request\" is the user and system time of the proxy's processes (nginx: master and workers; the upstream for the direct rows) over the measured part, divided by the requests served: it is steadier than requests/s on a shared machine.\n\n\
         | protocol | path | requests/s | p50 | p99 | CPU per request | errors |\n|---|---|---|---|---|---|---|\n{}\n\n{}\n",
        MEASURE.as_secs_f64(),
        WARMUP.as_secs_f64(),
        rows.join("\n"),
        summary.join("\n"),
    );
    println!("{markdown}");
    if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
        std::fs::write(Path::new(&out).join("proxy.md"), markdown).unwrap();
    }
    issuer.shutdown().await.unwrap();
}
