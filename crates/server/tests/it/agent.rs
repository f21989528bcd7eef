//! `portcullis agent` in front of a cluster: the kube-apiserver double (and, with
//! `KUBEBUILDER_ASSETS`, a real kube-apiserver v1.28), an issuer (the management plane), real
//! kubectl with the issuer's token. The cluster sees the token's user by impersonation, with the
//! agent's own credential.

use std::time::Duration;

use base64::Engine as _;
use portcullis_server::agent::{AgentConfig, RunningAgent, start_agent};
use portcullis_testkit::envtest::{Envtest, KubeApiServer};
use portcullis_testkit::kube_apiserver::{Config as DoubleConfig, Double, UserInfo};
use portcullis_testkit::kubectl::{Kubectl, Output};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::{TestServer, client};

const AGENT_TOKEN: &str = "agent-token";
const AGENT_USER: &str = "portcullis-agent";
const CLUSTER: &str = "c1";

struct Fleet {
    issuer: TestServer,
    double: Double,
    agent: RunningAgent,
    agent_ca: String,
    _dir: tempfile::TempDir,
}

/// The double with the agent's token and rights (impersonation, SubjectAccessReviews), the
/// namespace `team` where the issuer's group `oidc:dev` is admin.
async fn cluster() -> Double {
    let double = Double::start(
        DoubleConfig::new()
            .token(AGENT_TOKEN, UserInfo::new(AGENT_USER, &[]))
            .impersonator(AGENT_USER),
    )
    .await
    .unwrap();
    for object in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "agent-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AGENT_USER}]}),
        // What docs/agent.md asks for, besides impersonation (which the double's
        // `impersonator` grants): reviews, and reading the RBAC that forward auth decides with.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "portcullis-agent-rbac-reader"},
            "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles", "clusterrolebindings"], "verbs": ["get", "list", "watch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "agent-rbac-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "portcullis-agent-rbac-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AGENT_USER}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "dev-admin", "namespace": "team"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "oidc:dev"}]}),
    ] {
        double.seed(object).unwrap();
    }
    double
}

impl Fleet {
    async fn start() -> Fleet {
        Fleet::start_with(|_| {}).await
    }

    /// The fleet with the agent's configuration edited by `edit`.
    async fn start_with(edit: impl FnOnce(&mut AgentConfig)) -> Fleet {
        let issuer = TestServer::start().await;
        let double = cluster().await;
        let dir = tempfile::tempdir().unwrap();
        let agent = start_agent(agent_config(
            &dir,
            &issuer,
            &double.kubeconfig(AGENT_TOKEN, "default"),
            edit,
        ))
        .await
        .unwrap();
        let agent_ca = std::fs::read_to_string(agent.ca_path.as_ref().unwrap()).unwrap();
        let fleet = Fleet {
            issuer,
            double,
            agent,
            agent_ca,
            _dir: dir,
        };
        fleet.wait_ready().await;
        fleet
    }

    async fn wait_ready(&self) {
        wait_ready(&self.agent.url, &self.agent_ca).await;
    }

    /// An ID token of the issuer for this cluster: alice in `dev`, with `extra` claims over.
    fn token(&self, extra: Value) -> String {
        alice_token(&self.issuer, extra)
    }

    fn kubectl(&self, token: &str, namespace: &str) -> Option<Kubectl> {
        Kubectl::new(&portcullis_testkit::kubectl::kubeconfig(
            &self.agent.url,
            &self.agent_ca,
            token,
            namespace,
        ))
        .unwrap()
    }

    /// HTTPS to the agent, without credentials.
    fn http(&self) -> reqwest::Client {
        client(&self.agent_ca, None)
    }
}

/// An ID token of `issuer` for this cluster: alice in `dev`, with `extra` claims over.
fn alice_token(issuer: &TestServer, extra: Value) -> String {
    let now = portcullis_jose::unix_now();
    let mut claims = json!({
        "iss": issuer.url, "aud": CLUSTER, "sub": "u-alice", "iat": now, "exp": now + 600,
        "email": "alice@example.com", "email_verified": true, "groups": ["dev"],
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    issuer
        .running
        .as_ref()
        .unwrap()
        .provider
        .sign(&claims)
        .unwrap()
}

/// Polls the agent at `url` (serving with `ca_pem`) until `/readyz` is 200.
async fn wait_ready(url: &str, ca_pem: &str) {
    let http = client(ca_pem, None);
    for _ in 0..500 {
        let r = http.get(format!("{url}/readyz")).send().await.unwrap();
        if r.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the agent never became ready");
}

fn agent_config(
    dir: &tempfile::TempDir,
    issuer: &TestServer,
    upstream_kubeconfig: &str,
    edit: impl FnOnce(&mut AgentConfig),
) -> AgentConfig {
    let upstream = dir.path().join("upstream.kubeconfig");
    std::fs::write(&upstream, upstream_kubeconfig).unwrap();
    let issuer_ca = dir.path().join("issuer-ca.crt");
    std::fs::write(&issuer_ca, issuer.ca_pem()).unwrap();
    let mut config = AgentConfig {
        cluster: CLUSTER.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("agent"),
        shutdown_grace_seconds: 1,
        ..AgentConfig::default()
    };
    config.issuer.url = issuer.url.clone();
    config.issuer.certificate_authority = Some(issuer_ca);
    config.upstream.kubeconfig = Some(upstream);
    edit(&mut config);
    config
}

/// The next line of a streaming kubectl command, within 30 s.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    what: &str,
) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what}"))
        .unwrap()
        .expect("kubectl ended its output")
}

fn ok(out: &Output) -> &str {
    assert_eq!(
        out.code, 0,
        "kubectl failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    &out.stdout
}

/// The last request the cluster received at a path ending so.
fn received(double: &Double, suffix: &str) -> portcullis_testkit::kube_apiserver::RecordedRequest {
    double
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.ends_with(suffix))
        .unwrap_or_else(|| panic!("no request to …{suffix} reached the cluster"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_through_the_agent_acts_as_the_token_user() {
    let f = Fleet::start().await;
    let token = f.token(json!({}));
    let Some(k) = f.kubectl(&token, "team") else {
        return;
    };

    // whoami: the cluster answers for the impersonated identity.
    let out = k.run(&["auth", "whoami", "-o", "json"]).await;
    let review: Value = serde_json::from_str(ok(&out)).unwrap();
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "alice@example.com"
    );
    let groups = review["status"]["userInfo"]["groups"].as_array().unwrap();
    assert!(groups.contains(&json!("oidc:dev")), "{review}");
    assert!(groups.contains(&json!("system:authenticated")), "{review}");

    // What the cluster received: the agent's credential, the user by impersonation.
    let seen = received(&f.double, "/selfsubjectreviews");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {AGENT_TOKEN}").as_str())
    );
    assert_eq!(seen.header("impersonate-user"), Some("alice@example.com"));
    assert_eq!(
        seen.header_values("impersonate-group"),
        vec!["oidc:dev", "system:authenticated"]
    );
    assert!(
        seen.header("x-forwarded-for")
            .unwrap()
            .contains("127.0.0.1")
    );

    // can-i: the cluster's RBAC decides.
    let out = k.run(&["auth", "can-i", "create", "configmaps"]).await;
    assert_eq!(ok(&out).trim(), "yes");
    let out = k
        .run(&["auth", "can-i", "create", "configmaps", "-n", "default"])
        .await;
    assert_eq!(out.stdout.trim(), "no");

    // apply, client-side then server-side (RBAC kinds: the double serves their OpenAPI,
    // which kubectl's validation reads).
    let role = k
        .file(
            "role.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: reader\nrules:\n- apiGroups: [\"\"]\n  resources: [\"configmaps\"]\n  verbs: [\"get\"]\n",
        )
        .unwrap();
    let out = k.run(&["apply", "-f", &role]).await;
    assert!(
        ok(&out).contains("role.rbac.authorization.k8s.io/reader created"),
        "{}",
        out.stdout
    );
    let stored = f.double.get("roles", "team", "reader").unwrap();
    assert_eq!(stored["rules"][0]["verbs"], json!(["get"]));
    let role2 = k
        .file(
            "role2.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: ssa\nrules:\n- apiGroups: [\"\"]\n  resources: [\"configmaps\"]\n  verbs: [\"list\"]\n",
        )
        .unwrap();
    let out = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=team-tool",
            "-f",
            &role2,
        ])
        .await;
    assert!(ok(&out).contains("serverside-applied"), "{}", out.stdout);
    let stored = f.double.get("roles", "team", "ssa").unwrap();
    assert_eq!(
        stored["metadata"]["managedFields"][0]["manager"],
        "team-tool"
    );
    for name in ["settings", "other"] {
        f.double
            .seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "team"}}))
            .unwrap();
    }

    // get, and a watch that streams what happens after it started.
    let out = k.run(&["get", "configmaps", "-o", "name"]).await;
    assert!(ok(&out).contains("configmap/settings"), "{}", out.stdout);
    let mut watch = k
        .command(&[
            "get",
            "configmaps",
            "-w",
            "-o",
            "name",
            "--output-watch-events",
        ])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = next_line(&mut lines, "the watch sent nothing").await;
        assert!(line.contains("configmap/"), "{line}");
    }
    f.double
        .seed(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later", "namespace": "team"}}))
        .unwrap();
    let line = next_line(&mut lines, "the change never streamed through the agent").await;
    assert!(line.ends_with("configmap/later"), "{line}");
    watch.kill().await.unwrap();

    // A forbidden request is the cluster's 403, for the user.
    let out = k.run(&["get", "secrets", "-n", "default"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("User \"alice@example.com\" cannot list resource \"secrets\""),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_port_forward_and_logs_stream_through_the_agent() {
    let f = Fleet::start().await;
    f.double.seed_running_pod("team", "run").unwrap();
    f.double.append_log("team", "run", "first");
    let token = f.token(json!({}));
    let Some(k) = f.kubectl(&token, "team") else {
        return;
    };
    // exec over WebSocket (kubectl 1.32's first choice), then over SPDY/3.1.
    let out = k
        .run_with(
            &["exec", "-i", "run", "--", "cat"],
            "through the agent\n",
            &[],
        )
        .await;
    assert_eq!(ok(&out), "through the agent\n");
    let seen = received(&f.double, "/exec");
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("impersonate-user"), Some("alice@example.com"));
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let out = k
        .run_with(
            &["exec", "-i", "run", "--", "cat"],
            "over SPDY/3.1\n",
            &spdy,
        )
        .await;
    assert_eq!(ok(&out), "over SPDY/3.1\n");
    let seen = received(&f.double, "/exec");
    assert_eq!(seen.header("upgrade"), Some("SPDY/3.1"));

    // port-forward over WebSocket tunnelling SPDY, then SPDY.
    for env in [&[][..], &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")][..]] {
        k.port_forward_echo("pod/run", env, 2).await.unwrap();
        let seen = received(&f.double, "/portforward");
        assert_eq!(seen.header("impersonate-user"), Some("alice@example.com"));
    }

    // logs -f: a line appended later streams through.
    let mut child = k.command(&["logs", "-f", "run"]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "first");
    f.double
        .append_log("team", "run", "second, while following");
    let line = next_line(&mut lines, "the followed line never arrived").await;
    assert_eq!(line, "second, while following");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_as_is_asked_of_the_cluster_and_names_both_users() {
    let f = Fleet::start().await;
    let token = f.token(json!({}));
    let Some(k) = f.kubectl(&token, "team") else {
        return;
    };
    // kubectl: refused (its discovery client cannot decode a Status under its aggregated
    // Accept header, so it prints "Forbidden: unknown" — as with kube-apiserver itself).
    let out = k.run(&["get", "configmaps", "--as", "bob"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Error from server (Forbidden)"),
        "{}",
        out.stderr
    );
    // The Status itself names the refusal.
    let r = f
        .http()
        .get(format!("{}/api/v1/namespaces/team/configmaps", f.agent.url))
        .bearer_auth(&token)
        .header("impersonate-user", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let status: Value = r.json().await.unwrap();
    assert_eq!(
        status["message"],
        "users \"bob\" is forbidden: User \"alice@example.com\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    let sar = received(&f.double, "/subjectaccessreviews");
    assert_eq!(
        sar.header("authorization"),
        Some(format!("Bearer {AGENT_TOKEN}").as_str())
    );
    assert!(
        !f.double
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/selfsubjectreviews"))
    );

    f.double
        .seed(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "impersonate-bob"},
            "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["bob"]},
                      {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": ["qa"]}]}))
        .unwrap();
    f.double
        .seed(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "alice-impersonates-bob"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonate-bob"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice@example.com"}]}))
        .unwrap();
    let out = k
        .run(&[
            "auth",
            "whoami",
            "--as",
            "bob",
            "--as-group",
            "qa",
            "-o",
            "json",
        ])
        .await;
    let review: Value = serde_json::from_str(ok(&out)).unwrap();
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "bob", "{review}");
    assert_eq!(
        user["groups"],
        json!(["qa", "system:authenticated"]),
        "{review}"
    );
    let original: Value = serde_json::from_str(
        user["extra"]["portcullis.dev/original-user"][0]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(original["username"], "alice@example.com");
    // One group impersonated that alice may not: refused.
    let r = f
        .http()
        .get(format!("{}/api/v1/namespaces/team/configmaps", f.agent.url))
        .bearer_auth(&token)
        .header("impersonate-user", "bob")
        .header("impersonate-group", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let status: Value = r.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("cannot impersonate resource \"groups\""),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_never_reach_the_cluster() {
    let f = Fleet::start().await;
    let token = f.token(json!({}));
    let http = f.http();
    let spoofed = [
        ("Impersonate-User", "system:admin"),
        ("impersonate-group", "system:masters"),
        ("IMPERSONATE-UID", "0"),
        ("Impersonate-Extra-Scopes", "all"),
        ("Impersonate_User", "system:admin"),
        ("impersonate_group", "system:masters"),
        ("Impersonate_Extra_scopes", "all"),
    ];
    // Hyphenated ones are impersonation requests: asked of the cluster, refused.
    let r = http
        .get(format!("{}/api/v1/namespaces/team/configmaps", f.agent.url))
        .bearer_auth(&token)
        .header("Impersonate-User", "system:admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Underscored ones are stripped; the request goes on as alice.
    f.double.clear_requests();
    let mut req = http
        .get(format!("{}/api/v1/namespaces/team/configmaps", f.agent.url))
        .bearer_auth(&token);
    for (name, value) in &spoofed[4..] {
        req = req.header(*name, *value);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = received(&f.double, "/configmaps");
    for (name, value) in &seen.headers {
        let folded = name.to_ascii_lowercase().replace('_', "-");
        if folded.starts_with("impersonate-") {
            assert!(
                !spoofed.iter().any(|(_, v)| v == value),
                "{name}: {value} reached the cluster"
            );
        }
    }
    assert_eq!(seen.header("impersonate-user"), Some("alice@example.com"));
    assert_eq!(
        seen.header_values("authorization"),
        vec![format!("Bearer {AGENT_TOKEN}")]
    );
}

/// A JWT with this header and payload and a signature of garbage or `signature`.
fn forged(header: Value, payload: &Value, signature: &[u8]) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes()),
        b64(signature)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_the_cluster_is_asked() {
    let f = Fleet::start().await;
    let http = f.http();
    let now = portcullis_jose::unix_now();
    let good = f.token(json!({}));
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(good.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(good.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let jwks = f.issuer.running.as_ref().unwrap().provider.jwks();
    let public_jwk = serde_json::to_vec(&jwks).unwrap();
    let hs256 = {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public_jwk);
        let unsigned = forged(json!({"alg": "HS256", "kid": header["kid"]}), &payload, b"");
        let signing_input = unsigned.trim_end_matches('.');
        let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    };
    let real_signature = good.split('.').nth(2).unwrap();
    let unknown_kid = {
        let mut h = header.clone();
        h["kid"] = json!("no-such-key");
        let forged = forged(h, &payload, b"");
        format!("{}{real_signature}", forged)
    };
    let cases = [
        (
            "another issuer",
            f.token(json!({"iss": "https://elsewhere.example"})),
        ),
        ("another cluster's audience", f.token(json!({"aud": "c2"}))),
        (
            "expired",
            f.token(json!({"exp": now - 3600, "iat": now - 7200})),
        ),
        ("nbf ahead", f.token(json!({"nbf": now + 3600}))),
        (
            "email_verified false",
            f.token(json!({"email_verified": false})),
        ),
        (
            "alg none",
            forged(json!({"alg": "none", "typ": "JWT"}), &payload, b""),
        ),
        ("HS256 keyed with the public key", hs256),
        ("unknown kid", unknown_kid),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    f.double.clear_requests();
    for (what, token) in &cases {
        let r = http
            .get(format!("{}/api/v1/namespaces", f.agent.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let status: Value = r.json().await.unwrap();
        assert_eq!(status["kind"], "Status", "{what}");
        assert_eq!(status["reason"], "Unauthorized", "{what}");
    }
    // No credentials at all: 401 too.
    let r = http
        .get(format!("{}/api/v1/namespaces", f.agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(f.double.requests().is_empty(), "{:?}", f.double.requests());
    // The good token passes.
    let r = http
        .get(format!("{}/api/v1/namespaces/team/configmaps", f.agent.url))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Sends raw bytes over TLS to the agent and returns the response head's first line.
async fn raw(f: &Fleet, request: &[u8]) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(f.agent_ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(f.agent.local_addr)
        .await
        .unwrap();
    let mut stream = connector
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => head.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_ambiguous_requests_are_refused() {
    let f = Fleet::start().await;
    let token = f.token(json!({}));
    let http = f.http();
    f.double.clear_requests();
    // A header block beyond 64 KiB.
    let r = http
        .get(format!("{}/api/v1/namespaces", f.agent.url))
        .bearer_auth(&token)
        .header("x-padding", "a".repeat(100 * 1024))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    // A body beyond the limit.
    // (413 at once, before the body is read: the client may instead see the connection
    // closed under its upload.)
    let r = http
        .post(format!("{}/api/v1/namespaces/team/configmaps", f.agent.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                "data": {"x": "a".repeat(4 * 1024 * 1024)}})
            .to_string(),
        )
        .send()
        .await;
    match r {
        Ok(r) => {
            assert_eq!(r.status(), 413);
            let status: Value = r.json().await.unwrap();
            assert_eq!(status["reason"], "RequestEntityTooLarge");
        }
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    // Content-Length and Transfer-Encoding together (request smuggling): refused.
    let line = raw(
        &f,
        format!(
            "POST /api/v1/namespaces/team/configmaps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/v1/secrets HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 400"), "{line}");
    // Two different Content-Lengths.
    let line = raw(
        &f,
        format!(
            "POST /api/v1/namespaces/team/configmaps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}"
        )
        .as_bytes(),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 400"), "{line}");
    assert!(
        !f.double
            .requests()
            .iter()
            .any(|r| r.path.contains("secrets")),
        "{:?}",
        f.double.requests()
    );
    // Nothing oversized was created.
    assert!(f.double.get("configmaps", "team", "big").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_a_clear_503() {
    let issuer = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let double = cluster().await;
    // A kubeconfig naming a port where nothing listens.
    let closed = portcullis_testkit::free_port().unwrap();
    let kubeconfig = double
        .kubeconfig(AGENT_TOKEN, "default")
        .replace(double.url(), &format!("https://127.0.0.1:{closed}"));
    drop(double);
    let agent = start_agent(agent_config(&dir, &issuer, &kubeconfig, |_| {}))
        .await
        .unwrap();
    let ca = std::fs::read_to_string(agent.ca_path.as_ref().unwrap()).unwrap();
    let token = alice_token(&issuer, json!({}));
    let http = client(&ca, None);
    let mut answer = None;
    for _ in 0..500 {
        let r = http
            .get(format!("{}/api/v1/namespaces", agent.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        // 401 until the issuer's keys are fetched.
        if r.status() != 401 {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = answer.expect("the token was never accepted");
    assert_eq!(r.status(), 503);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "ServiceUnavailable");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("127.0.0.1:{closed}")) && message.contains("did not answer"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_issuer_and_break_glass_certificates_work_without_it() {
    let issuer = TestServer::start().await;
    let double = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let client_ca = dir.path().join("break-glass-ca.crt");
    std::fs::write(&client_ca, issuer.ca_pem()).unwrap();
    let closed = portcullis_testkit::free_port().unwrap();
    let agent = start_agent(agent_config(
        &dir,
        &issuer,
        &double.kubeconfig(AGENT_TOKEN, "default"),
        |c| {
            c.issuer.url = format!("https://127.0.0.1:{closed}");
            c.client_ca_file = Some(client_ca.clone());
        },
    ))
    .await
    .unwrap();
    let ca = std::fs::read_to_string(agent.ca_path.as_ref().unwrap()).unwrap();
    let http = client(&ca, None);
    for _ in 0..3 {
        let r = http
            .get(format!("{}/readyz", agent.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("issuer"));
    }
    let r = http
        .get(format!("{}/healthz", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A break-glass certificate of the client CA: forwarded as its user.
    let cert =
        portcullis_server::pki::issue_client(&issuer.ca(), "breakglass", &["ops"], 1).unwrap();
    let with_cert = client(
        &ca,
        Some((cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())),
    );
    let r = with_cert
        .post(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            agent.url
        ))
        .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let review: Value = r.json().await.unwrap();
    assert_eq!(review["status"]["userInfo"]["username"], "breakglass");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["ops", "system:authenticated"])
    );
    // A token meanwhile: 401 (no keys), not a crash.
    let r = http
        .get(format!("{}/api/v1/namespaces", agent.url))
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let metrics = http
        .get(format!("{}/portcullis/metrics", agent.url))
        .send()
        .await
        .unwrap();
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("portcullis_upstream_duration_seconds")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reviews_answer_for_the_issuers_tokens() {
    let f = Fleet::start().await;
    let http = f.http();
    let token = f.token(json!({}));
    for version in ["v1", "v1beta1"] {
        let review = |token: &str, audiences: Value| {
            json!({"apiVersion": format!("authentication.k8s.io/{version}"), "kind": "TokenReview",
                "spec": {"token": token, "audiences": audiences}})
        };
        let url = format!(
            "{}/apis/authentication.k8s.io/{version}/tokenreviews",
            f.agent.url
        );
        let r = http
            .post(&url)
            .json(&review(&token, json!([])))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(
            answer["apiVersion"],
            format!("authentication.k8s.io/{version}")
        );
        assert_eq!(answer["status"]["authenticated"], true, "{answer}");
        assert_eq!(answer["status"]["user"]["username"], "alice@example.com");
        assert_eq!(
            answer["status"]["user"]["groups"],
            json!(["oidc:dev", "system:authenticated"])
        );
        assert_eq!(answer["status"]["audiences"], json!([CLUSTER]));
        let r = http
            .post(&url)
            .json(&review(&token, json!(["another-cluster"])))
            .send()
            .await
            .unwrap();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["status"]["authenticated"], false, "{answer}");
        let expired = f.token(json!({"exp": portcullis_jose::unix_now() - 60}));
        let answer: Value = http
            .post(&url)
            .json(&review(&expired, json!([])))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["status"]["authenticated"], false, "{answer}");
        assert!(!answer["status"]["error"].as_str().unwrap().is_empty());
    }
    assert!(
        !f.double
            .requests()
            .iter()
            .any(|r| r.path.contains("tokenreviews"))
    );
}

/// The envtest kube-apiserver, or `None` and a line saying why the test is skipped.
fn real_cluster() -> Option<KubeApiServer> {
    match KubeApiServer::start().unwrap() {
        Envtest::Started(e) => Some(e),
        Envtest::Skipped(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_through_the_agent_against_a_real_kube_apiserver() {
    let Some(real) = tokio::task::spawn_blocking(real_cluster).await.unwrap() else {
        return;
    };
    let issuer = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // (envtest runs no controller manager: the aggregated roles such as `admin` stay empty, so
    // the binding names cluster-admin, within the namespace.)
    // The agent's credential: the envtest admin (system:masters may impersonate and review).
    let upstream = portcullis_testkit::kubectl::kubeconfig(
        real.url(),
        real.ca_pem(),
        real.admin_token(),
        "default",
    );
    let agent = start_agent(agent_config(&dir, &issuer, &upstream, |_| {}))
        .await
        .unwrap();
    let agent_ca = std::fs::read_to_string(agent.ca_path.as_ref().unwrap()).unwrap();
    let Some(admin) = Kubectl::new(&upstream).unwrap() else {
        return;
    };
    ok(&admin.run(&["create", "namespace", "team"]).await);
    ok(&admin
        .run(&[
            "create",
            "rolebinding",
            "dev-admin",
            "-n",
            "team",
            "--clusterrole=cluster-admin",
            "--group=oidc:dev",
        ])
        .await);
    let f_token = alice_token(&issuer, json!({}));
    let k = Kubectl::new(&portcullis_testkit::kubectl::kubeconfig(
        &agent.url, &agent_ca, &f_token, "team",
    ))
    .unwrap()
    .unwrap();
    // Readiness first (the issuer's keys).
    wait_ready(&agent.url, &agent_ca).await;
    let out = k.run(&["auth", "whoami", "-o", "json"]).await;
    let review: Value = serde_json::from_str(ok(&out)).unwrap();
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "alice@example.com"
    );
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["oidc:dev", "system:authenticated"])
    );
    assert_eq!(
        ok(&k.run(&["auth", "can-i", "create", "configmaps"]).await).trim(),
        "yes"
    );
    assert_eq!(
        k.run(&["auth", "can-i", "create", "configmaps", "-n", "default"])
            .await
            .stdout
            .trim(),
        "no"
    );
    let cm = k
        .file(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n",
        )
        .unwrap();
    assert!(ok(&k.run(&["apply", "-f", &cm]).await).contains("created"));
    assert!(
        ok(&k.run(&["apply", "--server-side", "-f", &cm]).await).contains("serverside-applied")
    );
    let mut watch = k
        .command(&[
            "get",
            "configmaps",
            "-w",
            "-o",
            "name",
            "--output-watch-events",
        ])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("configmap/settings"))
    {
        seen.push(next_line(&mut lines, "the watch sent nothing").await);
    }
    ok(&admin
        .run(&["create", "configmap", "later", "-n", "team"])
        .await);
    loop {
        let line = next_line(&mut lines, "the change never streamed through the agent").await;
        if line.ends_with("configmap/later") {
            break;
        }
    }
    watch.kill().await.unwrap();
    // --as without the right: the real server's SubjectAccessReview says no.
    let out = k.run(&["get", "configmaps", "--as", "bob"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("Forbidden"), "{}", out.stderr);
    let out = k.run(&["get", "secrets", "-n", "default"]).await;
    assert!(
        out.stderr
            .contains("User \"alice@example.com\" cannot list"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_on_the_agent_decides_paths_with_the_clusters_rbac() {
    let issuer = TestServer::start().await;
    let double = cluster().await;
    for object in [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "grafana-view"},
            "rules": [{"nonResourceURLs": ["/grafana", "/grafana/*"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "dev-grafana-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "grafana-view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "oidc:dev"}]}),
    ] {
        double.seed(object).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(agent_config(
        &dir,
        &issuer,
        &double.kubeconfig(AGENT_TOKEN, "default"),
        |c| {
            c.forward_auth = Some(
                serde_json::from_value(
                    json!({"clientID": "grafana", "trustedProxies": ["127.0.0.1/32"]}),
                )
                .unwrap(),
            );
        },
    ))
    .await
    .unwrap();
    let ca = std::fs::read_to_string(agent.ca_path.as_ref().unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = alice_token(&issuer, json!({"aud": "grafana"}));
    let check = |method: &'static str, uri: &'static str, bearer: Option<String>| {
        let mut r = http
            .get(format!("{}/forward-auth", agent.url))
            .header("x-forwarded-method", method)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "apps.example.com")
            .header("x-forwarded-uri", uri)
            .header("accept", "text/html");
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    // Allowed once the cluster's roles are read and the issuer's keys fetched.
    let mut allowed = None;
    for _ in 0..500 {
        let r = check("GET", "/grafana/d/home", Some(token.clone()))
            .await
            .unwrap();
        if r.status() == 200 {
            allowed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = allowed.expect("the check never allowed the dev group's path");
    assert_eq!(r.headers()["x-auth-request-user"], "alice@example.com");
    // A verb the role does not grant, and a path outside it: 403.
    assert_eq!(
        check("POST", "/grafana/d/home", Some(token.clone()))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        check("GET", "/prometheus/", Some(token.clone()))
            .await
            .unwrap()
            .status(),
        403
    );
    // A browser without a session goes to the management issuer to log in.
    let r = check("GET", "/grafana/", None).await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    // The proxied API still works beside it.
    let r = http
        .get(format!("{}/api/v1/namespaces/team/configmaps", agent.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a token for grafana's audience is not one for the cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_reached_over_http11_by_default_and_http2_when_asked() {
    for (http2, version) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
        let issuer = TestServer::start().await;
        let double = cluster().await;
        let dir = tempfile::tempdir().unwrap();
        let agent = start_agent(agent_config(
            &dir,
            &issuer,
            &double.kubeconfig(AGENT_TOKEN, "default"),
            |c| c.upstream.http2 = http2,
        ))
        .await
        .unwrap();
        let ca = std::fs::read_to_string(agent.ca_path.as_ref().unwrap()).unwrap();
        let token = alice_token(&issuer, json!({}));
        let http = client(&ca, None);
        let mut status = 0;
        for _ in 0..500 {
            status = http
                .get(format!("{}/api/v1/namespaces/team/configmaps", agent.url))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status != 401 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, 200);
        assert_eq!(received(&double, "/configmaps").version, version);
    }
}

/// Connections are spread over worker threads, each with its own upstream connections: every
/// connection is served, and on shutdown the workers let requests in flight run until the
/// grace period ends, then stop with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_serve_every_connection_and_stop_with_the_agent() {
    let f = Fleet::start_with(|c| c.workers = 3).await;
    let (agent, agent_ca) = (f.agent, f.agent_ca);
    let token = alice_token(&f.issuer, json!({}));

    // Seven connections of their own (a client each): round-robin puts them on every worker.
    let mut clients = Vec::new();
    for _ in 0..7 {
        clients.push(client(&agent_ca, None));
    }
    for (i, http) in clients.iter().enumerate() {
        for _ in 0..3 {
            let r = http
                .get(format!("{}/api/v1/namespaces/team/configmaps", agent.url))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "connection {i}");
        }
    }

    // A watch in flight when the agent stops: it ends after the grace period (1 s here), and
    // the agent's shutdown returns.
    let mut watch = clients[1]
        .get(format!(
            "{}/api/v1/namespaces/team/configmaps?watch=1",
            agent.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    let url = agent.url.clone();
    tokio::time::timeout(Duration::from_secs(20), agent.shutdown())
        .await
        .expect("the agent stopped within its grace period")
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(_)) = watch.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch was not ended by the shutdown");
    // And nothing listens any more.
    let refused = clients[0]
        .get(format!("{url}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(refused.is_err(), "the agent still answers after shutdown");
}
