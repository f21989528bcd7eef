//! What the filter chain costs: the management API's Workspace creates and gets through the
//! chain (X.509 authentication of the admin's certificate, audit off, impersonation check,
//! max-in-flight, RBAC authorization, metrics) against the same handlers with the identity and
//! `RequestInfo` set as the chain would set them, in one run: over TLS as clients use it (the
//! server's own accept loop, HTTP/1.1 keep-alive, 32 concurrent clients), and in-process (tower
//! `oneshot`), where nothing dilutes the difference.
//!
//! Writes a markdown section to `$PORTCULLIS_BENCH_OUT/chain.md` when that is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
#[path = "common/admin.rs"]
mod admin;

use portcullis_authn::chain::{PeerCertificates, RemoteAddr};
use portcullis_server::Config;
use portcullis_server::config::StoreConfig;
use portcullis_server::kubeconfig::{Kubeconfig, decode_data};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tower::ServiceExt;

const CONCURRENCY: usize = 32;
const OPS: usize = 8000;
const ROUNDS: usize = 3;

async fn phase(
    router: &axum::Router,
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
                        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Workspace",
                        "metadata": { "name": name }, "spec": {},
                    });
                    http::Request::post("/apis/portcullis.dev/v1alpha1/workspaces")
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .unwrap()
                } else {
                    http::Request::get(format!("/apis/portcullis.dev/v1alpha1/workspaces/{name}"))
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

/// `OPS` creates or gets over the network, `CONCURRENCY` at a time.
async fn phase_tls(client: &reqwest::Client, url: &str, prefix: &str, create: bool) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (client, url, prefix) = (client.clone(), url.to_owned(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (worker..OPS).step_by(CONCURRENCY) {
                let name = format!("{prefix}-{i}");
                let response = if create {
                    client
                        .post(format!("{url}/apis/portcullis.dev/v1alpha1/workspaces"))
                        .json(&serde_json::json!({
                            "apiVersion": "portcullis.dev/v1alpha1", "kind": "Workspace",
                            "metadata": { "name": name }, "spec": {},
                        }))
                        .send()
                        .await
                        .unwrap()
                } else {
                    client
                        .get(format!(
                            "{url}/apis/portcullis.dev/v1alpha1/workspaces/{name}"
                        ))
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
    start.elapsed()
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
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
        let peer = PeerCertificates(Arc::new(vec![der]));
        let (with_chain, without) = portcullis_server::bench_support::routers(&running);
        let mut urls = Vec::new();
        let mut stops = Vec::new();
        for router in [with_chain.clone(), without.clone()] {
            let (url, stop) = portcullis_server::bench_support::serve(dir.path(), router)
                .await
                .unwrap();
            urls.push(url);
            stops.push(stop);
        }
        let client = admin::admin_client(dir.path(), CONCURRENCY);
        // Best of several rounds, the two variants alternated, so that neither is measured
        // only while the machine is busier.
        let mut best = [[Duration::MAX; 2]; 2]; // in-process: [variant][create, get]
        let mut best_tls = [[Duration::MAX; 2]; 2]; // over TLS
        for round in 0..ROUNDS {
            for (v, router) in [&with_chain, &without].into_iter().enumerate() {
                let prefix = format!("r{round}-v{v}");
                let create = phase(router, &peer, &prefix, true).await;
                let get = phase(router, &peer, &prefix, false).await;
                best[v][0] = best[v][0].min(create);
                best[v][1] = best[v][1].min(get);
                let prefix = format!("t{round}-v{v}");
                let create = phase_tls(&client, &urls[v], &prefix, true).await;
                let get = phase_tls(&client, &urls[v], &prefix, false).await;
                best_tls[v][0] = best_tls[v][0].min(create);
                best_tls[v][1] = best_tls[v][1].min(get);
            }
        }
        drop(stops);
        let rate = |d: Duration| OPS as f64 / d.as_secs_f64();
        let row = |name: &str, best: &[[Duration; 2]; 2], v: usize| {
            format!(
                "| {name} | {:.0} | {:.1} µs | {:.0} | {:.1} µs |",
                rate(best[v][0]),
                best[v][0].as_secs_f64() * 1e6 / OPS as f64,
                rate(best[v][1]),
                best[v][1].as_secs_f64() * 1e6 / OPS as f64,
            )
        };
        let cost = |best: &[[Duration; 2]; 2], op: usize| {
            100.0 * (1.0 - rate(best[0][op]) / rate(best[1][op]))
        };
        let table = format!(
            "## The filter chain's cost (chain)\n\n\
{OPS} Workspace creates then {OPS} gets per round, {CONCURRENCY} concurrent clients, memory store, best of {ROUNDS} rounds \
with the two variants alternated, in one run. \"with the chain\" is the management API as served: metrics, request info, \
X.509 authentication of the admin's client certificate (its chain verified against the CA once, then remembered by its \
hash), audit (off), impersonation check, max-in-flight, RBAC authorization, then the handlers; \"handlers alone\" are the \
same handlers with the request info and the admin's identity set as the chain sets them. Over TLS: the server's own accept \
loop and serving certificate, HTTP/1.1 keep-alive clients with the admin's client certificate, client and server on the \
same 2 cores. In-process: tower `oneshot`, nothing but the chain and the handlers. Throughput lost to the chain over TLS: \
**creates {:.1}%, gets {:.1}%**; in-process: creates {:.1}%, gets {:.1}% (target: at most 5%). Machine: {}.\n\n\
| variant | creates/s | per create | gets/s | per get |\n|---|---|---|---|---|\n{}\n{}\n{}\n{}\n",
            cost(&best_tls, 0),
            cost(&best_tls, 1),
            cost(&best, 0),
            cost(&best, 1),
            portcullis_testkit::machine(),
            row("over TLS, with the chain", &best_tls, 0),
            row("over TLS, handlers alone", &best_tls, 1),
            row("in-process, with the chain", &best, 0),
            row("in-process, handlers alone", &best, 1),
        );
        println!("{table}");
        if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
            std::fs::write(std::path::Path::new(&out).join("chain.md"), table).unwrap();
        }
        running.shutdown().await.unwrap();
    });
}
