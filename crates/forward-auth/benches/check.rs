//! Forward-auth checks per second and p99 with a valid session cookie: straight at the check
//! endpoint, and through nginx `auth_request`, beside nginx serving the same static page
//! without auth, in the same run. The load generator is in this process (keep-alive HTTP/1.1
//! connections), so it shares the machine's cores with what it measures.
//!
//! Writes a markdown section to `$PORTCULLIS_BENCH_OUT/forward-auth.md` when that is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/it/support.rs"]
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use portcullis_testkit::nginx::Nginx;

/// Concurrent connections: enough to keep both cores busy, few enough that a request is not
/// queued behind dozens of others (latency at N connections is about N / throughput).
const CONNECTIONS: usize = 8;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

struct Outcome {
    rate: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// Sends `request()` on `CONNECTIONS` keep-alive connections to `addr` for `MEASURE`.
async fn load(
    addr: SocketAddr,
    request: impl Fn() -> http::Request<Empty<Bytes>> + Clone + Send + 'static,
) -> Outcome {
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut latencies = Vec::with_capacity(200_000);
            let mut errors = 0;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                // A connection the server closed (nginx's keepalive_requests) is opened again.
                if sender.ready().await.is_err() {
                    sender = connect(addr).await;
                    continue;
                }
                let Ok(response) = sender.send_request(request()).await else {
                    sender = connect(addr).await;
                    continue;
                };
                let ok = response.status().is_success();
                let _ = response.into_body().collect().await;
                if t >= measure_from {
                    latencies.push(t.elapsed());
                    if !ok {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Outcome {
        rate: all.len() as f64 / MEASURE.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        errors,
    }
}

/// The machine's load average when the run began (other builds share it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let load_at_start = load_average();
    let e = support::env();
    e.runtime.block_on(async {
        let (fa, _) = support::in_process(|_| {}).await;
        let cookie = format!("_portcullis_auth={}", support::session_for(&fa, support::VIEWER).await);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fa_addr = listener.local_addr().unwrap();
        let app = fa.router().into_make_service_with_connect_info::<SocketAddr>();
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });

        let www = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(www.path().join("app")).unwrap();
        std::fs::create_dir_all(www.path().join("plain")).unwrap();
        let page = "<!doctype html><title>page</title><p>hello</p>\n";
        std::fs::write(www.path().join("app/index.html"), page).unwrap();
        std::fs::write(www.path().join("plain/index.html"), page).unwrap();
        let root = www.path().display().to_string();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let check = support::nginx_check_location(
            "http://portcullis",
            "proxy_http_version 1.1; proxy_set_header Connection \"\";",
        );
        let nginx = Nginx::start(workers, |port| {
            format!(
                r#"
upstream portcullis {{ server {fa_addr}; keepalive 64; }}
server {{
  listen 127.0.0.1:{port};
  keepalive_requests 1000000;
  root {root};
{check}
  location /app/ {{ auth_request /_portcullis_check; }}
  location /plain/ {{ }}
}}
"#
            )
        })
        .unwrap();
        let nginx_addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();

        let c = cookie.clone();
        let direct = move || {
            http::Request::get("/forward-auth")
                .header("host", "forward-auth.internal")
                .header("x-forwarded-method", "GET")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "app.test")
                .header("x-forwarded-uri", "/app/index.html")
                .header("cookie", c.as_str())
                .body(Empty::new())
                .unwrap()
        };
        let c = cookie.clone();
        let through = move || {
            http::Request::get("/app/index.html")
                .header("host", "127.0.0.1")
                .header("cookie", c.as_str())
                .body(Empty::new())
                .unwrap()
        };
        let plain = move || {
            http::Request::get("/plain/index.html")
                .header("host", "127.0.0.1")
                .body(Empty::new())
                .unwrap()
        };
        // What one check costs in process (the router called directly, one task, no sockets).
        let router = fa.router();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let in_process = {
            use tower::ServiceExt as _;
            let request = || {
                let mut r = direct().map(|_| axum::body::Body::empty());
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            };
            for _ in 0..2000 {
                router.clone().oneshot(request()).await.unwrap();
            }
            let n = 50_000;
            let mut latencies = Vec::with_capacity(n);
            let started = Instant::now();
            for _ in 0..n {
                let t = Instant::now();
                let r = router.clone().oneshot(request()).await.unwrap();
                assert_eq!(r.status(), 200);
                latencies.push(t.elapsed());
            }
            let elapsed = started.elapsed();
            latencies.sort();
            Outcome {
                rate: n as f64 / elapsed.as_secs_f64(),
                p50: latencies[n / 2],
                p99: latencies[n * 99 / 100],
                errors: 0,
            }
        };
        // One check first: the setup must be right before it is timed.
        let probe = load_once(fa_addr, direct()).await;
        assert_eq!(probe, 200, "the direct check does not allow the session");
        let probe = load_once(nginx_addr, through()).await;
        assert_eq!(probe, 200, "nginx does not allow the session: {}", nginx.error_log());

        let rows = [
            ("forward auth in process, one task, no sockets (valid cookie)", in_process),
            ("forward auth, direct (valid cookie)", load(fa_addr, direct).await),
            ("nginx `auth_request` → forward auth (valid cookie)", load(nginx_addr, through).await),
            ("nginx, same page without auth", load(nginx_addr, plain).await),
        ];
        let mut table = String::from(
            "| path | checks/s | p50 | p99 | non-2xx |\n|---|---:|---:|---:|---:|\n",
        );
        for (name, o) in &rows {
            table.push_str(&format!(
                "| {name} | {:.0} | {:.3} ms | {:.3} ms | {} |\n",
                o.rate,
                o.p50.as_secs_f64() * 1e3,
                o.p99.as_secs_f64() * 1e3,
                o.errors
            ));
        }
        let section = format!(
            "## Forward auth checks (forward-auth)\n\n\
             {CONNECTIONS} keep-alive HTTP/1.1 connections from a load generator in the same process, \
             {}s measured after {}s of warm-up, one valid session cookie (a viewer allowed on \
             `/app/*` by a ClusterRole with `nonResourceURLs`); nginx with {workers} worker(s) serving a \
             static page. Machine: {}, load average {load_at_start} when the run began. The machine is shared with \
             other builds, and the load generator competes with what it measures for the same \
             cores, so the figures are a floor; compare the rows with each other.\n\n{table}",
            MEASURE.as_secs(),
            WARMUP.as_secs(),
            portcullis_testkit::machine(),
        );
        println!("{section}");
        if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
            std::fs::write(PathBuf::from(out).join("forward-auth.md"), section).unwrap();
        }
    });
}

use std::path::PathBuf;

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

async fn load_once(addr: SocketAddr, request: http::Request<Empty<Bytes>>) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}
