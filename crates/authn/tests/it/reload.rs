//! The configuration file reloaded without a restart; a broken file keeps the old one.

use std::time::{Duration, Instant};

use portcullis_authn::{ReloadStatus, ReloadingJwtAuthenticator};
use serde_json::json;

use crate::support::*;

/// Polls `status` until `done` holds, for at most 10 s.
fn wait_for(r: &ReloadingJwtAuthenticator, done: impl Fn(&ReloadStatus) -> bool) -> ReloadStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = r.status();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {status:?}");
        std::thread::yield_now();
    }
}

#[tokio::test]
async fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_configuration() {
    let keys = key_set();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authn.yaml");
    std::fs::write(&path, basic_yaml(ISSUER_A, "one")).unwrap();
    let watcher = std::sync::Arc::new(
        ReloadingJwtAuthenticator::start(
            &path,
            factory(&[(ISSUER_A, &keys)]),
            Duration::from_millis(20),
        )
        .unwrap(),
    );
    assert_eq!(watcher.status().generation, 1);
    let chain = portcullis_authn::AuthenticatorChain::new().with(watcher.clone());
    let for_one = keys.sign(&claims(ISSUER_A, "one", json!({}))).unwrap();
    let for_two = keys.sign(&claims(ISSUER_A, "two", json!({}))).unwrap();
    assert!(auth(&chain, &for_one).await.unwrap().is_some());
    assert!(auth(&chain, &for_two).await.is_err());

    std::fs::write(&path, basic_yaml(ISSUER_A, "two")).unwrap();
    wait_for(&watcher, |s| s.generation == 2);
    assert!(auth(&chain, &for_two).await.unwrap().is_some());
    assert!(
        auth(&chain, &for_one).await.is_err(),
        "the old audience is gone"
    );

    // A broken file: the old configuration stays, the status says why.
    std::fs::write(
        &path,
        basic_yaml(ISSUER_A, "three").replace("audiences", "audiance"),
    )
    .unwrap();
    // `fs::write` truncates before it writes: a poll in between reads an empty file and
    // reports that error first. Waited for is the error of the file as written.
    let status = wait_for(&watcher, |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("audiance"))
    });
    assert_eq!(status.generation, 2);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("jwt[0].issuer.audiance"),
        "{status:?}"
    );
    assert!(auth(&chain, &for_two).await.unwrap().is_some());
    assert!(watcher.current().issuers().eq([ISSUER_A]));

    // Fixed again: loaded, error cleared.
    std::fs::write(&path, basic_yaml(ISSUER_A, "three")).unwrap();
    let status = wait_for(&watcher, |s| s.generation == 3);
    assert_eq!(status.last_error, None);
}

#[test]
fn a_broken_file_at_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authn.yaml");
    std::fs::write(
        &path,
        "apiVersion: nope\nkind: AuthenticationConfiguration\n",
    )
    .unwrap();
    let e = ReloadingJwtAuthenticator::start(&path, factory(&[]), Duration::from_millis(20))
        .unwrap_err();
    assert!(e.to_string().contains("apiVersion"), "{e}");
}

#[test]
fn reload_now_reads_the_file_at_once() {
    let keys = key_set();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authn.yaml");
    std::fs::write(&path, basic_yaml(ISSUER_A, "one")).unwrap();
    // An interval far longer than the test: only reload_now can pick the change up.
    let reloader = ReloadingJwtAuthenticator::start(
        &path,
        factory(&[(ISSUER_A, &keys)]),
        Duration::from_secs(3600),
    )
    .unwrap();
    std::fs::write(&path, basic_yaml(ISSUER_A, "two")).unwrap();
    assert_eq!(reloader.status().generation, 1);
    reloader.reload_now();
    assert_eq!(reloader.status().generation, 2);
    // Dropping the handle stops the poller (the join in Drop returns).
    drop(reloader);
}
