//! Crash consistency of the redb backend: a child process writes as fast as it can and prints
//! every acknowledged write; the parent kills it with SIGKILL mid-storm, reopens the file and
//! checks that what is stored is exactly a prefix of each writer's sequence that contains every
//! acknowledged write, and that nothing is corrupt.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use portcullis_store::{ListOptions, Store};

const WRITERS: usize = 4;
const ENV: &str = "PORTCULLIS_CRASH_CHILD_STORE";

/// The child: run only by the parent test (ignored otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by redb_survives_sigkill_mid_write_storm"]
async fn child_write_storm() {
    let Ok(path) = std::env::var(ENV) else { return };
    let store = std::sync::Arc::new(
        portcullis_store::redb::RedbStore::open(std::path::Path::new(&path)).unwrap(),
    );
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0u64.. {
                    store
                        .create(&format!("/crash/{w}/{i:010}"), i.to_string().into_bytes())
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {w} {i}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn redb_survives_sigkill_mid_write_storm() {
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crash.redb");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::child_write_storm",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked: BTreeMap<usize, u64> = BTreeMap::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = 150 + round * 100;
        let mut seen = 0;
        while seen < target {
            let line = lines.next().expect("the child stopped early").unwrap();
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ack") {
                continue;
            }
            let w: usize = parts.next().unwrap().parse().unwrap();
            let i: u64 = parts.next().unwrap().parse().unwrap();
            acked.insert(w, i);
            seen += 1;
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();

        let store = portcullis_store::redb::RedbStore::open(&path).unwrap();
        let page = store.list("/crash/", ListOptions::default()).await.unwrap();
        let mut stored: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for kv in &page.items {
            let mut parts = kv.key.trim_start_matches("/crash/").split('/');
            let w: usize = parts.next().unwrap().parse().unwrap();
            let i: u64 = parts.next().unwrap().parse().unwrap();
            assert_eq!(
                kv.value,
                i.to_string().into_bytes(),
                "corrupt value at {}",
                kv.key
            );
            stored.entry(w).or_default().push(i);
        }
        for (w, last_acked) in &acked {
            let seq = stored.get(w).cloned().unwrap_or_default();
            // A prefix: 0, 1, 2, … with no gap, containing every acknowledged write.
            assert!(
                seq.iter().enumerate().all(|(n, i)| *i == n as u64),
                "writer {w}: not a prefix"
            );
            assert!(
                seq.len() as u64 > *last_acked,
                "writer {w}: acknowledged write {last_acked} lost"
            );
        }
        assert_eq!(
            store.current_revision().await.unwrap(),
            page.items.len() as u64,
            "revision counts every stored write"
        );
    }
}
