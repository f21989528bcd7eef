//! Management API throughput: creates and gets of Workspaces through the real TLS + HTTP stack
//! with the admin client certificate, for each store backend, in one run.
//!
//! Writes a markdown section to `$PORTCULLIS_BENCH_OUT/server.md` when that is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

#[path = "common/admin.rs"]
mod admin;

use portcullis_server::Config;
use portcullis_server::config::StoreConfig;

const CONCURRENCY: usize = 32;
const OPS: usize = 4000;

struct Result {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

async fn run_phase(client: &reqwest::Client, url: &str, create: bool) -> Result {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (worker..OPS).step_by(CONCURRENCY) {
                let t = Instant::now();
                let resp = if create {
                    let body = serde_json::json!({
                        "apiVersion": "portcullis.dev/v1alpha1",
                        "kind": "Workspace",
                        "metadata": { "name": format!("ws-{i}") },
                        "spec": { "displayName": "bench" },
                    });
                    client
                        .post(format!("{url}/apis/portcullis.dev/v1alpha1/workspaces"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap()
                } else {
                    client
                        .get(format!(
                            "{url}/apis/portcullis.dev/v1alpha1/workspaces/ws-{i}"
                        ))
                        .send()
                        .await
                        .unwrap()
                };
                assert!(resp.status().is_success(), "{}", resp.status());
                resp.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    Result {
        rate: OPS as f64 / elapsed.as_secs_f64(),
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
    }
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for (label, store) in [
        ("memory", StoreConfig::Memory),
        ("redb (durable, group commit)", StoreConfig::Redb),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            store,
            ..Config::default()
        };
        let (create, get) = rt.block_on(async {
            let running = portcullis_server::start(config).await.unwrap();
            let client = admin::admin_client(dir.path(), CONCURRENCY);
            let create = run_phase(&client, &running.url, true).await;
            let get = run_phase(&client, &running.url, false).await;
            running.shutdown().await.unwrap();
            (create, get)
        });
        rows.push(format!(
            "| {label} | {:.0} | {:.1} / {:.1} | {:.0} | {:.1} / {:.1} |",
            create.rate,
            create.p50.as_secs_f64() * 1e3,
            create.p99.as_secs_f64() * 1e3,
            get.rate,
            get.p50.as_secs_f64() * 1e3,
            get.p99.as_secs_f64() * 1e3,
        ));
    }
    let table = format!(
        "## Management API (server)\n\n{OPS} Workspace creates, then {OPS} gets, {CONCURRENCY} concurrent clients over TLS with a client \
certificate (HTTP/1.1, pooled), client and server in one process on {}. Same run, two store backends.\n\n\
| store | creates/s | create p50 / p99 ms | gets/s | get p50 / p99 ms |\n|---|---|---|---|---|\n{}\n",
        portcullis_testkit::machine(),
        rows.join("\n")
    );
    println!("{table}");
    if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
        std::fs::write(std::path::Path::new(&out).join("server.md"), table).unwrap();
    }
}
