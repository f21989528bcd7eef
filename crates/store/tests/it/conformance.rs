//! One suite of checks of the Kubernetes registry semantics; a macro runs each check against
//! each backend.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use portcullis_store::{ListOptions, Store, StoreError, WatchEvent};

type S = Arc<dyn Store>;

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub async fn create_then_get_and_no_second_create(s: S) {
    let kv = s.create("/t/a", v("1")).await.unwrap();
    assert!(kv.mod_revision > 0);
    assert_eq!(kv.create_revision, kv.mod_revision);
    let got = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!(got, kv);
    assert!(matches!(
        s.create("/t/a", v("2")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(s.get("/t/missing").await.unwrap(), None);
}

pub async fn update_is_compare_and_swap_on_the_revision(s: S) {
    let a = s.create("/t/a", v("1")).await.unwrap();
    match s.update("/t/a", v("x"), Some(a.mod_revision + 100)).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!(expected, a.mod_revision + 100);
            assert_eq!(actual, a.mod_revision);
        }
        other => panic!("{other:?}"),
    }
    let b = s
        .update("/t/a", v("2"), Some(a.mod_revision))
        .await
        .unwrap();
    assert!(b.mod_revision > a.mod_revision);
    assert_eq!(b.create_revision, a.create_revision);
    let c = s.update("/t/a", v("3"), None).await.unwrap();
    assert!(c.mod_revision > b.mod_revision);
    assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, v("3"));
    assert!(matches!(
        s.update("/t/none", v("1"), None).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn delete_honours_its_precondition(s: S) {
    let a = s.create("/t/a", v("1")).await.unwrap();
    assert!(matches!(
        s.delete("/t/a", Some(a.mod_revision + 1)).await,
        Err(StoreError::Conflict { .. })
    ));
    let gone = s.delete("/t/a", Some(a.mod_revision)).await.unwrap();
    assert_eq!(gone.value, v("1"));
    assert!(
        gone.mod_revision > a.mod_revision,
        "the deletion has its own revision"
    );
    assert_eq!(s.get("/t/a").await.unwrap(), None);
    assert!(matches!(
        s.delete("/t/a", None).await,
        Err(StoreError::NotFound(_))
    ));
    // A key can be created again after deletion.
    let again = s.create("/t/a", v("2")).await.unwrap();
    assert!(again.create_revision > a.create_revision);
}

pub async fn revisions_increase_across_keys(s: S) {
    let mut last = s.current_revision().await.unwrap();
    for i in 0..5 {
        let kv = s.create(&format!("/t/k{i}"), v("x")).await.unwrap();
        assert!(kv.mod_revision > last);
        last = kv.mod_revision;
    }
    assert_eq!(s.current_revision().await.unwrap(), last);
}

pub async fn list_returns_the_prefix_in_key_order(s: S) {
    for k in ["/a/x", "/b/2", "/b/1", "/b/3", "/c/1", "/b"] {
        s.create(k, v(k)).await.unwrap();
    }
    let page = s.list("/b/", ListOptions::default()).await.unwrap();
    let keys: Vec<&str> = page.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/b/1", "/b/2", "/b/3"]);
    assert_eq!(page.revision, s.current_revision().await.unwrap());
    assert!(page.continue_token.is_none());
}

pub async fn list_pages_with_limit_and_continue(s: S) {
    for i in 0..7 {
        s.create(
            &format!("/p/{i}"),
            v(if i % 2 == 0 { "even" } else { "odd" }),
        )
        .await
        .unwrap();
    }
    let mut keys = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = s
            .list(
                "/p/",
                ListOptions {
                    limit: Some(3),
                    continue_token: token.clone(),
                    filter: None,
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        keys.extend(page.items.iter().map(|kv| kv.key.clone()));
        pages += 1;
        match page.continue_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(keys, (0..7).map(|i| format!("/p/{i}")).collect::<Vec<_>>());
    // A filter is applied before the limit counts.
    let even = |kv: &portcullis_store::KeyValue| kv.value == b"even";
    let page = s
        .list(
            "/p/",
            ListOptions {
                limit: Some(2),
                continue_token: None,
                filter: Some(&even),
            },
        )
        .await
        .unwrap();
    let keys: Vec<&str> = page.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/0", "/p/2"]);
    let rest = s
        .list(
            "/p/",
            ListOptions {
                limit: Some(10),
                continue_token: page.continue_token,
                filter: Some(&even),
            },
        )
        .await
        .unwrap();
    let keys: Vec<&str> = rest.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/4", "/p/6"]);
}

pub async fn bad_continue_tokens_are_refused(s: S) {
    for i in 0..3 {
        s.create(&format!("/p/{i}"), v("x")).await.unwrap();
        s.create(&format!("/q/{i}"), v("x")).await.unwrap();
    }
    let opts = |t: &str| ListOptions {
        limit: Some(1),
        continue_token: Some(t.to_owned()),
        filter: None,
    };
    assert!(matches!(
        s.list("/p/", opts("garbage!")).await,
        Err(StoreError::InvalidContinue(_))
    ));
    let other = s
        .list(
            "/q/",
            ListOptions {
                limit: Some(1),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap()
        .continue_token
        .unwrap();
    assert!(matches!(
        s.list("/p/", opts(&other)).await,
        Err(StoreError::InvalidContinue(_))
    ));
}

async fn next(stream: &mut portcullis_store::WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch event in time")
        .expect("stream open")
        .unwrap()
}

pub async fn watch_replays_and_follows_in_order(s: S) {
    let start = s.current_revision().await.unwrap();
    let a = s.create("/w/a", v("1")).await.unwrap();
    s.create("/other/x", v("1")).await.unwrap();
    let a2 = s.update("/w/a", v("2"), None).await.unwrap();
    let mut w = s.watch("/w/", start).await.unwrap();
    assert_eq!(next(&mut w).await, WatchEvent::Added(a.clone()));
    assert_eq!(next(&mut w).await, WatchEvent::Modified(a2.clone()));
    // Live events after the replay.
    let gone = s.delete("/w/a", None).await.unwrap();
    match next(&mut w).await {
        WatchEvent::Deleted(kv) => {
            assert_eq!(kv.key, "/w/a");
            assert_eq!(kv.mod_revision, gone.mod_revision);
        }
        other => panic!("{other:?}"),
    }
    let b = s.create("/w/b", v("1")).await.unwrap();
    assert_eq!(next(&mut w).await, WatchEvent::Added(b));
}

pub async fn watch_resumes_from_a_middle_revision(s: S) {
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(
            s.create(&format!("/w/{i}"), v("x"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    let mut w = s.watch("/w/", revs[2]).await.unwrap();
    for i in 3..5 {
        match next(&mut w).await {
            WatchEvent::Added(kv) => assert_eq!(kv.key, format!("/w/{i}")),
            other => panic!("{other:?}"),
        }
    }
}

pub async fn a_compacted_revision_is_too_old(s: S) {
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(
            s.create(&format!("/w/{i}"), v("x"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    s.compact(revs[3]).await.unwrap();
    match s.watch("/w/", revs[0]).await {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, revs[0]),
        Ok(mut stream) => {
            // etcd reports compaction on the stream itself.
            let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .unwrap()
                .unwrap();
            assert!(
                matches!(first, Err(StoreError::Compacted { .. })),
                "{first:?}"
            );
        }
        Err(e) => panic!("{e:?}"),
    }
    let mut w = s.watch("/w/", revs[3]).await.unwrap();
    match next(&mut w).await {
        WatchEvent::Added(kv) => assert_eq!(kv.key, "/w/4"),
        other => panic!("{other:?}"),
    }
}

pub async fn exactly_one_concurrent_compare_and_swap_wins(s: S) {
    let a = s.create("/c/a", v("0")).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.update("/c/a", v(&i.to_string()), Some(a.mod_revision))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(wins, 1);
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            suite!(@tests $make;
                create_then_get_and_no_second_create,
                update_is_compare_and_swap_on_the_revision,
                delete_honours_its_precondition,
                revisions_increase_across_keys,
                list_returns_the_prefix_in_key_order,
                list_pages_with_limit_and_continue,
                bad_continue_tokens_are_refused,
                watch_replays_and_follows_in_order,
                watch_resumes_from_a_middle_revision,
                a_compacted_revision_is_too_old,
                exactly_one_concurrent_compare_and_swap_wins,
            );
        }
    };
    (@tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $make.await;
                super::$check(store).await;
            }
        )*
    };
}

suite!(memory, async {
    (
        Arc::new(portcullis_store::memory::MemoryStore::new()) as S,
        (),
    )
});

suite!(redb, async {
    let dir = tempfile::tempdir().unwrap();
    let store = portcullis_store::redb::RedbStore::open(&dir.path().join("store.redb")).unwrap();
    (Arc::new(store) as S, dir)
});

#[tokio::test]
async fn redb_keeps_acknowledged_writes_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let (rev, watch_from) = {
        let s = portcullis_store::redb::RedbStore::open(&path).unwrap();
        let start = s.current_revision().await.unwrap();
        s.create("/r/a", v("1")).await.unwrap();
        (
            s.update("/r/a", v("2"), None).await.unwrap().mod_revision,
            start,
        )
    };
    let s = portcullis_store::redb::RedbStore::open(&path).unwrap();
    let kv = s.get("/r/a").await.unwrap().unwrap();
    assert_eq!((kv.value, kv.mod_revision), (v("2"), rev));
    assert_eq!(s.current_revision().await.unwrap(), rev);
    // The watch history survives too.
    let mut w = s.watch("/r/", watch_from).await.unwrap();
    assert!(matches!(next(&mut w).await, WatchEvent::Added(_)));
    assert!(matches!(next(&mut w).await, WatchEvent::Modified(_)));
}

#[cfg(feature = "etcd")]
suite!(etcd, async {
    // One etcd per test (nextest runs each test in its own process), so key prefixes never meet.
    let etcd = portcullis_testkit::Etcd::start().expect("etcd for the conformance suite");
    let store = portcullis_store::etcd::EtcdStore::connect(
        std::slice::from_ref(&etcd.endpoint),
        "/conformance",
    )
    .await
    .unwrap();
    (Arc::new(store) as S, etcd)
});
