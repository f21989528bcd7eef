//! Store throughput, every backend in one run: put (create), get, list of 10,000 keys, and the
//! fan-out of one write to 100 watchers. Writes `$PORTCULLIS_BENCH_OUT/store.md` when set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use portcullis_store::{ListOptions, Store};

const PUTS: usize = 10_000;
const CONCURRENCY: usize = 32;
const WATCHERS: usize = 100;

struct Row {
    name: &'static str,
    put: f64,
    put_p99: Duration,
    get: f64,
    list: Duration,
    fanout: Duration,
}

async fn run(name: &'static str, store: Arc<dyn Store>) -> Row {
    // Puts from 32 concurrent writers, as an API server under load issues them.
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in (w..PUTS).step_by(CONCURRENCY) {
                    let t = Instant::now();
                    s.create(&format!("/bench/{i:06}"), vec![b'x'; 512])
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let put = PUTS as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    let put_p99 = lat[lat.len() * 99 / 100];

    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in (w..PUTS).step_by(CONCURRENCY) {
                    s.get(&format!("/bench/{i:06}")).await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let get = PUTS as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let page = store.list("/bench/", ListOptions::default()).await.unwrap();
    let list = start.elapsed();
    assert_eq!(page.items.len(), PUTS);

    // One write, delivered to 100 watchers: time until the last has it.
    let from = store.current_revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        watchers.push(store.watch("/fan/", from).await.unwrap());
    }
    let start = Instant::now();
    store.create("/fan/one", b"x".to_vec()).await.unwrap();
    let waits: Vec<_> = watchers
        .into_iter()
        .map(|mut w| tokio::spawn(async move { w.next().await.unwrap().unwrap() }))
        .collect();
    for w in waits {
        w.await.unwrap();
    }
    let fanout = start.elapsed();
    Row {
        name,
        put,
        put_p99,
        get,
        list,
        fanout,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    rows.push(rt.block_on(run(
        "memory",
        Arc::new(portcullis_store::memory::MemoryStore::new()),
    )));
    let dir = tempfile::tempdir().unwrap();
    let redb = portcullis_store::redb::RedbStore::open(&dir.path().join("bench.redb")).unwrap();
    rows.push(rt.block_on(run(
        "redb (embedded, fsync per commit, group commit)",
        Arc::new(redb),
    )));
    let etcd = portcullis_testkit::Etcd::start().expect("etcd for the bench: cargo xtask deps");
    let store = rt
        .block_on(portcullis_store::etcd::EtcdStore::connect(
            std::slice::from_ref(&etcd.endpoint),
            "/bench",
        ))
        .unwrap();
    rows.push(rt.block_on(run(
        "etcd (single member on loopback, its defaults)",
        Arc::new(store),
    )));
    let table = format!(
        "## Store (store)\n\n{PUTS} creates of 512-byte values from {CONCURRENCY} concurrent writers, {PUTS} gets likewise, one list \
of all {PUTS} keys, and one write delivered to {WATCHERS} watchers. Same run, same machine: {}.\n\n\
| backend | creates/s | create p99 | gets/s | list 10k | watch fan-out to 100 |\n|---|---|---|---|---|---|\n{}\n",
        portcullis_testkit::machine(),
        rows.iter()
            .map(|r| format!(
                "| {} | {:.0} | {:.2} ms | {:.0} | {:.1} ms | {:.2} ms |",
                r.name,
                r.put,
                r.put_p99.as_secs_f64() * 1e3,
                r.get,
                r.list.as_secs_f64() * 1e3,
                r.fanout.as_secs_f64() * 1e3
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("{table}");
    if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
        std::fs::write(std::path::Path::new(&out).join("store.md"), table).unwrap();
    }
}
