//! LDAP logins per second through the connector against a real slapd: 8 concurrent logins
//! for a few seconds each (service bind, user search, group searches, user bind), with the
//! connection pool, and with a new connection per login (what Dex does), over plain LDAP and
//! LDAPS. Writes `$PORTCULLIS_BENCH_OUT/connectors.md` when that is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_connectors::ldap::{LdapConnector, LdapOptions};
use portcullis_connectors::{PasswordConnector, Trace};
use portcullis_model::kinds::connector::LdapSecurity;
use portcullis_testkit::slapd::{self, Slapd};
use secrecy::SecretString;

const WORKERS: usize = 8;
const PHASE: Duration = Duration::from_secs(5);

fn connector(host: &str, security: LdapSecurity, ca: &str, pool_size: usize) -> LdapConnector {
    LdapConnector::new(
        "bench",
        &slapd::connector_spec(host, security, ca),
        Some(SecretString::from(slapd::SERVICE_PASSWORD)),
        LdapOptions {
            pool_size,
            ..LdapOptions::default()
        },
    )
    .unwrap()
}

/// Logins per second and p99 latency of `WORKERS` concurrent logins of alice for `PHASE`.
async fn measure(c: LdapConnector) -> (f64, Duration) {
    let c = Arc::new(c);
    let password = SecretString::from("alice-pw");
    // Warm up (and fill the pool).
    for _ in 0..WORKERS {
        assert!(
            c.login("alice", &password, &mut Trace::default())
                .await
                .unwrap()
                .is_some()
        );
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let c = Arc::clone(&c);
            let password = password.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while start.elapsed() < PHASE {
                    let t = Instant::now();
                    let who = c.login("alice", &password, &mut Trace::default()).await;
                    assert!(who.unwrap().is_some());
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    let p99 = all[((all.len() as f64 - 1.0) * 0.99).round() as usize];
    (all.len() as f64 / elapsed.as_secs_f64(), p99)
}

#[tokio::main]
async fn main() {
    let slapd = Slapd::start().unwrap();
    let ca = slapd.ca_pem().to_owned();
    let mut rows = Vec::new();
    for (name, host, security) in [
        (
            "plain LDAP",
            slapd.ldap_addr.clone(),
            LdapSecurity::InsecureNone,
        ),
        ("LDAPS", slapd.ldaps_addr.clone(), LdapSecurity::Ldaps),
    ] {
        let (pooled, pooled_p99) = measure(connector(&host, security, &ca, WORKERS)).await;
        let (fresh, fresh_p99) = measure(connector(&host, security, &ca, 0)).await;
        rows.push(format!(
            "| {name} | {pooled:.0} | {:.1} ms | {fresh:.0} | {:.1} ms | {:.1}× |",
            pooled_p99.as_secs_f64() * 1e3,
            fresh_p99.as_secs_f64() * 1e3,
            pooled / fresh
        ));
    }
    let table = format!(
        "## LDAP logins through the connector (connectors)\n\n\
         Machine: {}. A real slapd (OpenLDAP, mdb backend, the testkit fixture) on loopback; \
         {WORKERS} concurrent logins for {} s per row, each a full login: service bind, user \
         search, two group searches (member→DN, memberUid→uid), bind as the user. \"Pooled\" \
         reuses connections (TCP, TLS and the LDAP session) from the connector's pool; \"new \
         connection\" opens one per login, as Dex does. slapd and the load run on the same \
         cores, which other builds shared: figures are indicative.\n\n\
         | transport | pooled logins/s | pooled p99 | new connection logins/s | new connection p99 | pool gain |\n\
         |---|---|---|---|---|---|\n{}\n",
        portcullis_testkit::machine(),
        PHASE.as_secs(),
        rows.join("\n")
    );
    println!("{table}");
    if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
        std::fs::write(std::path::Path::new(&out).join("connectors.md"), table).unwrap();
    }
}
