//! A stock kube-apiserver (envtest's v1.28 binary) pointed at the issuer with its default
//! `--oidc-signing-algs` (RS256 only) accepts the ID token of a client that registered no
//! `idTokenSignedResponseAlg`, and refuses the ES256 token of a client that asked for ES256.
//!
//! Needs `kube-apiserver` in `$KUBEBUILDER_ASSETS` (as controller-runtime's envtest lays it
//! out; `.ci/run` sets it to `../shared/envtest` when that exists) and etcd; without it, the
//! test says it was skipped and why.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::{ChildGuard, Etcd, free_port};
use serde_json::{Value, json};

use crate::oidc::{cli_client, password_login, password_login_with_scope};
use crate::support::TestServer;

/// The envtest kube-apiserver, or `None` (and a line saying the test is skipped) without one.
fn kube_apiserver() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") else {
        eprintln!(
            "skipped: KUBEBUILDER_ASSETS is not set (a directory holding envtest's kube-apiserver)"
        );
        return None;
    };
    let bin = PathBuf::from(dir).join("kube-apiserver");
    assert!(
        bin.is_file(),
        "KUBEBUILDER_ASSETS is set but {} is missing",
        bin.display()
    );
    Some(bin)
}

#[tokio::test]
async fn a_stock_kube_apiserver_accepts_rs256_id_tokens_with_its_default_signing_algs() {
    let Some(bin) = kube_apiserver() else {
        return;
    };
    // The cluster's client "kubernetes" registered no algorithm (RS256); "kubectl-es" asked
    // for ES256 and is trusted to obtain tokens whose audience includes "kubernetes".
    let client = |name: &str, alg| {
        let mut c = cli_client();
        c.metadata.name = name.into();
        c.spec.id_token_signed_response_alg = alg;
        c
    };
    let mut cluster = client("kubernetes", None);
    cluster.spec.trusted_peers = vec!["kubectl-es".into()];
    let s = TestServer::start_with(|c| {
        c.oidc.static_clients = vec![
            cluster,
            client(
                "kubectl-es",
                Some(portcullis_model::IdTokenSigningAlg::ES256),
            ),
        ]
    })
    .await;
    let password = s.running.as_ref().unwrap().admin_password.clone().unwrap();
    let (status, tokens) = password_login(&s, "kubernetes", "admin", &password).await;
    assert_eq!(status, 200, "{tokens}");
    let rs256 = tokens["id_token"].as_str().unwrap().to_owned();
    let (status, tokens) = password_login_with_scope(
        &s,
        "kubectl-es",
        "admin",
        &password,
        "openid email groups audience:server:client_id:kubernetes",
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let es256 = tokens["id_token"].as_str().unwrap().to_owned();
    let part = |jwt: &str, i: usize| -> Value {
        use base64::Engine as _;
        let raw = jwt.split('.').nth(i).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(raw)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(part(&rs256, 0)["alg"], "RS256");
    assert_eq!(part(&es256, 0)["alg"], "ES256");
    assert_eq!(part(&rs256, 1)["aud"], "kubernetes");
    assert!(
        part(&es256, 1)["aud"]
            .as_array()
            .unwrap()
            .contains(&json!("kubernetes")),
        "only the algorithm differs"
    );

    let etcd = Etcd::start().unwrap();
    let pki = s.dir.path().join("pki");
    let work = tempfile::tempdir().unwrap();
    let admin_token = "admin-token-0123456789";
    let tokens_file = work.path().join("tokens.csv");
    std::fs::write(
        &tokens_file,
        format!("{admin_token},test-admin,1,\"system:masters\"\n"),
    )
    .unwrap();
    let port = free_port().unwrap();
    let child = Command::new(bin)
        .arg(format!("--etcd-servers={}", etcd.endpoint))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        // The management plane's serving certificate is valid for 127.0.0.1 too.
        .arg(format!(
            "--tls-cert-file={}",
            pki.join("serving.crt").display()
        ))
        .arg(format!(
            "--tls-private-key-file={}",
            pki.join("serving.key").display()
        ))
        .arg(format!("--cert-dir={}", work.path().display()))
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        .arg(format!(
            "--service-account-key-file={}",
            pki.join("serving.crt").display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            pki.join("serving.key").display()
        ))
        .arg("--api-audiences=https://kubernetes.default.svc")
        .arg("--service-cluster-ip-range=10.96.0.0/16")
        .arg("--authorization-mode=RBAC")
        .arg("--endpoint-reconciler-type=none")
        .arg(format!("--token-auth-file={}", tokens_file.display()))
        // As the README says, with the default --oidc-signing-algs (RS256).
        .arg(format!("--oidc-issuer-url={}", s.url))
        .arg("--oidc-client-id=kubernetes")
        .arg(format!("--oidc-ca-file={}", pki.join("ca.crt").display()))
        .arg("--oidc-username-claim=email")
        .arg("--oidc-groups-claim=groups")
        .arg("--oidc-groups-prefix=oidc:")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("kube-apiserver.log")).unwrap())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let log = || {
        let text =
            std::fs::read_to_string(work.path().join("kube-apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    let api = format!("https://127.0.0.1:{port}");
    let client = s.anonymous();

    // Ready, then the OIDC authenticator (it reads the issuer's discovery in the background).
    let review = |token: String| {
        let client = client.clone();
        let url = format!("{api}/apis/authentication.k8s.io/v1/selfsubjectreviews");
        async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "SelfSubjectReview",
                }))
                .send()
                .await;
            match response {
                Ok(r) => (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                ),
                Err(_) => (0, Value::Null),
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        let (status, body) = review(rs256.clone()).await;
        if status == 201 {
            break body;
        }
        assert!(
            Instant::now() < deadline && matches!(guard.0.try_wait(), Ok(None)),
            "kube-apiserver did not accept the RS256 ID token: {status} {body}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let user = &accepted["status"]["userInfo"];
    assert_eq!(user["username"], "admin@portcullis.invalid", "{accepted}");
    assert!(
        user["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("oidc:portcullis:admins")),
        "{accepted}"
    );
    // The same identity for the same audience, signed ES256: the default flags refuse it.
    let (status, body) = review(es256).await;
    assert_eq!(status, 401, "{body}");
    s.stop().await;
}
