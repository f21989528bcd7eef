//! What the filter chain costs: the management API's Group creates and gets through the
//! chain (X.509 authentication of the admin's certificate, audit off, impersonation check,
//! max-in-flight, RBAC authorization, metrics) against the same handlers with the identity and
//! `RequestInfo` set as the chain would set them, in one run: over TLS as clients use it (the
//! server's own accept loop, HTTP/1.1 keep-alive, 32 concurrent clients), and in-process (tower
//! `oneshot`), where nothing dilutes the difference.
//!
//! Writes a markdown section to `$PORTCULLIS_BENCH_OUT/chain.md` when that is set. For
//! experiments: `PORTCULLIS_CHAIN_ROUNDS` (41), `PORTCULLIS_CHAIN_THREADS` (the server's, 2),
//! and `PORTCULLIS_CHAIN_ALONE_ONLY` (stop after the chain-alone figure, for a profiler).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

/// The allocator of the `portcullis` binary, which serves the API users call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::body::Body;
#[path = "common/admin.rs"]
mod admin;

use portcullis_authn::chain::{PeerCertificates, RemoteAddr};
use portcullis_server::Config;
use portcullis_server::config::StoreConfig;
use portcullis_server::kubeconfig::{Kubeconfig, decode_data};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tower::ServiceExt;

const CONCURRENCY: usize = 32;
const OPS: usize = 8000;
const ROUNDS: usize = 41;
/// Creates, then gets (of the first `OPS` names created), per round over TLS.
const TLS_OPS: usize = 16_000;

async fn phase(
    router: &portcullis_server::bench_support::Served,
    peer: &PeerCertificates,
    prefix: &str,
    create: bool,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (router, peer, prefix) = (router.clone(), peer.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (worker..OPS).step_by(CONCURRENCY) {
                let name = format!("{prefix}-{i}");
                let mut req = if create {
                    let body = serde_json::json!({
                        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Group",
                        "metadata": { "name": name }, "spec": {},
                    });
                    http::Request::post("/apis/portcullis.dev/v1alpha1/groups")
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .unwrap()
                } else {
                    http::Request::get(format!("/apis/portcullis.dev/v1alpha1/groups/{name}"))
                        .body(Body::empty())
                        .unwrap()
                };
                req.extensions_mut().insert(peer.clone());
                req.extensions_mut()
                    .insert(RemoteAddr("127.0.0.1:40000".parse().unwrap()));
                let response = router.clone().oneshot(req).await.unwrap();
                let want = if create { 201 } else { 200 };
                assert_eq!(response.status(), want, "{name}");
                let _ = axum::body::to_bytes(response.into_body(), 1 << 20).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// `n` creates (of `prefix-0`…) or gets (of the names created, in turn) over the network,
/// `CONCURRENCY` at a time: the time taken, and the CPU time the server's threads used.
async fn phase_tls(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    create: bool,
    n: usize,
) -> (Duration, Duration) {
    let cpu = server_cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (client, url, prefix) = (client.clone(), url.to_owned(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (worker..n).step_by(CONCURRENCY) {
                // Creates name new objects; gets read the first `OPS` of them in turn.
                let name = if create {
                    format!("{prefix}-{i}")
                } else {
                    format!("{prefix}-{}", i % OPS)
                };
                let response = if create {
                    client
                        .post(format!("{url}/apis/portcullis.dev/v1alpha1/groups"))
                        .json(&serde_json::json!({
                            "apiVersion": "portcullis.dev/v1alpha1", "kind": "Group",
                            "metadata": { "name": name }, "spec": {},
                        }))
                        .send()
                        .await
                        .unwrap()
                } else {
                    client
                        .get(format!("{url}/apis/portcullis.dev/v1alpha1/groups/{name}"))
                        .send()
                        .await
                        .unwrap()
                };
                assert_eq!(response.status(), if create { 201 } else { 200 }, "{name}");
                let _ = response.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (start.elapsed(), server_cpu().saturating_sub(cpu))
}

/// Name of the server's runtime threads (their CPU time is measured).
const SERVER_THREAD: &str = "chain-server";

/// CPU time used so far by this process's threads named [`SERVER_THREAD`], from
/// `/proc/self/task/*/schedstat` (nanoseconds on the CPU).
fn server_cpu() -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|c| c.trim_end().starts_with(SERVER_THREAD));
        if !named {
            continue;
        }
        if let Some(n) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            ns += n;
        }
    }
    Duration::from_nanos(ns)
}

/// The chain's own cost: the time per request of `n` sequential GETs through the chain (with
/// the metrics layer) in front of a handler that answers at once, minus that of the handler
/// alone; the fastest of `rounds` alternations.
async fn chain_alone(
    chain: &portcullis_authn::chain::Chain,
    peer: &PeerCertificates,
) -> (f64, f64) {
    use tower::Layer;
    let handler = tower::service_fn(|_req: http::Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    });
    let metrics = std::sync::Arc::new(portcullis_authn::chain::metrics::Metrics::default());
    let through =
        portcullis_authn::chain::MetricsLayer::new(metrics).layer(chain.layer().layer(handler));
    let request = || {
        let mut req = http::Request::get("/apis/portcullis.dev/v1alpha1/groups/ws-1")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(peer.clone());
        req
    };
    let n = 100_000;
    let (mut best_chain, mut best_alone) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            let r = through.clone().oneshot(request()).await.unwrap();
            assert_eq!(r.status(), 200);
        }
        best_chain = best_chain.min(t.elapsed().as_secs_f64() / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            let r = handler.oneshot(request()).await.unwrap();
            assert_eq!(r.status(), 200);
        }
        best_alone = best_alone.min(t.elapsed().as_secs_f64() / n as f64);
    }
    (best_chain * 1e6, best_alone * 1e6)
}

/// A number the environment may set, for experiments (`docs/benchmarks.md` is written with
/// the defaults).
fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The served API runs on threads of its own, whose CPU time is measured.
    let threads = setting("PORTCULLIS_CHAIN_THREADS", 2);
    let rounds = setting("PORTCULLIS_CHAIN_ROUNDS", ROUNDS);
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let running = portcullis_server::start(Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            store: StoreConfig::Memory,
            ..Config::default()
        })
        .await
        .unwrap();
        let kc = Kubeconfig::read(&dir.path().join("admin.conf")).unwrap();
        let cert = decode_data(kc.users[0].user.client_certificate_data.as_ref().unwrap()).unwrap();
        let der = CertificateDer::from_pem_slice(&cert).unwrap().into_owned();
        let peer = PeerCertificates::new(vec![der]);
        let (with_chain, without) = portcullis_server::bench_support::routers(&running);
        let (chain_us, alone_us) =
            chain_alone(&portcullis_server::bench_support::chain(&running), &peer).await;
        eprintln!("the chain alone: {chain_us:.2} µs against {alone_us:.2} µs");
        if std::env::var_os("PORTCULLIS_CHAIN_ALONE_ONLY").is_some() {
            return;
        }
        let mut urls = Vec::new();
        let mut stops = Vec::new();
        for router in [with_chain.clone(), without.clone()] {
            let data_dir = dir.path().to_path_buf();
            let (url, stop) = server_runtime
                .spawn(async move {
                    portcullis_server::bench_support::serve(&data_dir, router)
                        .await
                        .unwrap()
                })
                .await
                .unwrap();
            urls.push(url);
            stops.push(stop);
        }
        let client = admin::admin_client(dir.path(), CONCURRENCY);
        // Rounds with the two variants in alternating order (the store grows as it goes, and
        // the machine's load varies): each round compares the variants run back to back, and
        // the median round is reported.
        let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]]; // in-process
        let mut times_tls = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        let mut cpu_tls = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        for round in 0..rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for v in order {
                let router = if v == 0 { &with_chain } else { &without };
                let prefix = format!("r{round}-v{v}");
                times[v][0].push(phase(router, &peer, &prefix, true).await);
                times[v][1].push(phase(router, &peer, &prefix, false).await);
                let prefix = format!("t{round}-v{v}");
                for (op, n) in [(0, TLS_OPS), (1, TLS_OPS)] {
                    let (took, cpu) = phase_tls(&client, &urls[v], &prefix, op == 0, n).await;
                    times_tls[v][op].push(took / (n / OPS) as u32);
                    cpu_tls[v][op].push(cpu / n as u32);
                }
            }
        }
        drop(stops);
        let median = |d: &[Duration]| {
            let mut d = d.to_vec();
            d.sort();
            d[d.len() / 2]
        };
        // Per round: what the chain costs, in per cent of the variant without it.
        let paired = |m: &[[Vec<Duration>; 2]; 2], op: usize| {
            let mut costs: Vec<f64> = (0..rounds)
                .map(|r| {
                    let (with, alone) = (m[0][op][r].as_secs_f64(), m[1][op][r].as_secs_f64());
                    100.0 * (with - alone) / with
                })
                .collect();
            costs.sort_by(f64::total_cmp);
            costs[costs.len() / 2]
        };
        let best = times.each_ref().map(|ops| ops.each_ref().map(|d| median(d)));
        let best_tls = times_tls
            .each_ref()
            .map(|ops| ops.each_ref().map(|d| median(d)));
        let cpu = cpu_tls.each_ref().map(|ops| ops.each_ref().map(|d| median(d)));
        let rate = |d: Duration| OPS as f64 / d.as_secs_f64();
        let per = |d: Duration| d.as_secs_f64() * 1e6 / OPS as f64;
        let row = |name: &str, best: &[[Duration; 2]; 2], cpu: Option<&[[Duration; 2]; 2]>, v: usize| {
            let cpu_col = |op: usize| {
                cpu.map_or_else(|| "".to_owned(), |c| format!("{:.1} µs", c[v][op].as_secs_f64() * 1e6))
            };
            format!(
                "| {name} | {:.0} | {:.1} µs | {} | {:.0} | {:.1} µs | {} |",
                rate(best[v][0]),
                per(best[v][0]),
                cpu_col(0),
                rate(best[v][1]),
                per(best[v][1]),
                cpu_col(1),
            )
        };
        let get_tls_us = per(best_tls[0][1]);
        let table = format!(
            "## The filter chain's cost (chain)\n\n\
The management API's creates and gets of Groups (a kind no controller reacts to: nothing else in the process works as they are written) with the filter chain and without it, in one run: {rounds} rounds, each running \
the two variants back to back (in alternating order), {CONCURRENCY} concurrent clients, memory store; per round {TLS_OPS} creates \
and {TLS_OPS} gets over TLS, {OPS} of each in-process. \"with the chain\" is the management API as served: metrics, request info, \
X.509 authentication of the admin's client certificate (its chain hashed once per connection, verified against the CA \
once, then remembered by that hash), audit (off), impersonation check, max-in-flight, RBAC authorization, then the handlers; \"handlers alone\" are the \
same handlers with the request info and the admin's identity set as the chain sets them. Over TLS: the server's own accept \
loop and serving certificate on a runtime of its own ({threads} threads, whose CPU time is read from the kernel), HTTP/1.1 keep-alive clients with the admin's \
client certificate in the same process, all on the same 2 cores. In-process: tower `oneshot`, nothing but the chain and the handlers.\n\n\
What the chain costs, the median of the rounds (target: at most 5% of throughput):\n\n\
- over TLS, throughput: **creates {:.1}%, gets {:.1}%**; the server's CPU time per request: **creates {:.1}%, gets {:.1}%** \
(the server's capacity on a busy machine: its requests/s per core);\n\
- in-process, where the handler does almost nothing: creates {:.1}%, gets {:.1}%;\n\
- the chain alone (sequential GETs through the chain, with metrics, in front of a handler that answers at once, against that handler \
alone, fastest of 5): **{:.2} µs per request** ({:.2} µs against {:.2} µs), {:.1}% of a get over TLS.\n\n\
Machine: {}.\n\n\
| variant | creates/s | per create | server CPU per create | gets/s | per get | server CPU per get |\n|---|---|---|---|---|---|---|\n{}\n{}\n{}\n{}\n",
            paired(&times_tls, 0),
            paired(&times_tls, 1),
            paired(&cpu_tls, 0),
            paired(&cpu_tls, 1),
            paired(&times, 0),
            paired(&times, 1),
            chain_us - alone_us,
            chain_us,
            alone_us,
            100.0 * (chain_us - alone_us) / get_tls_us,
            portcullis_testkit::machine(),
            row("over TLS, with the chain", &best_tls, Some(&cpu), 0),
            row("over TLS, handlers alone", &best_tls, Some(&cpu), 1),
            row("in-process, with the chain", &best, None, 0),
            row("in-process, handlers alone", &best, None, 1),
        );
        println!("{table}");
        if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
            std::fs::write(std::path::Path::new(&out).join("chain.md"), table).unwrap();
        }
        running.shutdown().await.unwrap();
    });
}
