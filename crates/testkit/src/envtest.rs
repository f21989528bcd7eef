//! A real kube-apiserver for tests (what controller-runtime calls envtest): etcd and the
//! `kube-apiserver` binary of `KUBEBUILDER_ASSETS`, on free loopback ports, stopped on drop.
//!
//! ```no_run
//! use portcullis_testkit::envtest::{Envtest, KubeApiServer};
//!
//! match KubeApiServer::start().expect("envtest") {
//!     Envtest::Skipped(why) => println!("{why}"),
//!     Envtest::Started(server) => {
//!         // server.url(), server.ca_pem(), server.admin_token()
//!     }
//! }
//! ```
//!
//! The server runs with `--authorization-mode=RBAC`, `--endpoint-reconciler-type=none`, a
//! `--token-auth-file` holding one admin (`admin`, uid `admin-uid`, group `system:masters`, as in
//! the recordings), a serving certificate for 127.0.0.1 from a throwaway CA and a service-account
//! signing key, all in a temporary directory. No controller manager runs: see
//! `shared/envtest/README.md` for what that leaves out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};

use crate::kube_apiserver::tls;
use crate::{ChildGuard, Error, Etcd, free_port, wait_until};

/// What [`KubeApiServer::start`] found.
#[derive(Debug)]
pub enum Envtest {
    /// The server runs.
    Started(KubeApiServer),
    /// `KUBEBUILDER_ASSETS` is not set: the reason, to print as the test's skip.
    Skipped(String),
}

/// A running kube-apiserver (and its etcd), killed on drop.
#[derive(Debug)]
pub struct KubeApiServer {
    url: String,
    ca_pem: String,
    admin_token: String,
    // Declared before etcd: dropped (killed) first.
    _child: ChildGuard,
    _etcd: Etcd,
    _dir: tempfile::TempDir,
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver from `KUBEBUILDER_ASSETS` and waits until `/readyz`
    /// answers 200 (up to 60 s); [`Envtest::Skipped`] when the variable is unset or empty.
    pub fn start() -> Result<Envtest, Error> {
        let assets = match std::env::var_os("KUBEBUILDER_ASSETS") {
            Some(a) if !a.is_empty() => PathBuf::from(a),
            _ => {
                return Ok(Envtest::Skipped(
                    "skipped: KUBEBUILDER_ASSETS is not set (set it to a directory holding kube-apiserver, e.g. shared/envtest)".into(),
                ));
            }
        };
        let binary = assets.join("kube-apiserver");
        if !binary.is_file() {
            return Err(Error(format!(
                "KUBEBUILDER_ASSETS is {} but it holds no kube-apiserver: point it at a directory with the binary (setup-envtest, or shared/envtest)",
                assets.display()
            )));
        }
        let mut last = String::new();
        for _attempt in 0..3 {
            match Self::start_once(&binary) {
                Ok(server) => return Ok(Envtest::Started(server)),
                Err(e) => last = e.0,
            }
        }
        Err(Error(format!(
            "kube-apiserver did not become ready after 3 attempts: {last}"
        )))
    }

    fn start_once(binary: &Path) -> Result<KubeApiServer, Error> {
        let etcd = Etcd::start()?;
        let dir = tempfile::tempdir().map_err(|e| Error(e.to_string()))?;
        let issued = tls::issue()?;
        let sa_key = rcgen::KeyPair::generate()
            .map_err(|e| Error(format!("generating the service-account key: {e}")))?;
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let write = |name: &str, content: &str| -> Result<PathBuf, Error> {
            let path = dir.path().join(name);
            std::fs::write(&path, content)
                .map_err(|e| Error(format!("writing {}: {e}", path.display())))?;
            Ok(path)
        };
        let cert = write("serving.crt", &issued.cert_pem)?;
        let key = write("serving.key", &issued.key_pem)?;
        let sa = write("sa.key", &sa_key.serialize_pem())?;
        let sa_pub = write("sa.pub", &sa_key.public_key_pem())?;
        let tokens = write(
            "tokens.csv",
            &format!("{admin_token},admin,admin-uid,\"system:masters\"\n"),
        )?;
        let log_path = dir.path().join("kube-apiserver.log");
        let log = std::fs::File::create(&log_path).map_err(|e| Error(e.to_string()))?;
        let log_err = log.try_clone().map_err(|e| Error(e.to_string()))?;
        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let child = Command::new(binary)
            .arg(format!("--etcd-servers={}", etcd.endpoint))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", dir.path().display()))
            .arg(format!("--tls-cert-file={}", cert.display()))
            .arg(format!("--tls-private-key-file={}", key.display()))
            .arg(format!("--service-account-issuer={url}"))
            .arg(format!("--service-account-key-file={}", sa_pub.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa.display()
            ))
            .arg(format!("--api-audiences={url}"))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--authorization-mode=RBAC")
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--endpoint-reconciler-type=none")
            .arg("--allow-privileged=false")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| Error(format!("starting {}: {e}", binary.display())))?;
        let mut guard = ChildGuard(child);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Stop waiting as soon as it answers ready, or exits.
        let _ = wait_until(Duration::from_secs(60), || {
            !matches!(guard.0.try_wait(), Ok(None))
                || readyz(addr, &issued.ca_pem, &admin_token).unwrap_or(false)
        });
        let ready = matches!(guard.0.try_wait(), Ok(None))
            && readyz(addr, &issued.ca_pem, &admin_token).unwrap_or(false);
        if !ready {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Error(format!(
                "kube-apiserver on port {port} exited or was not ready within 60 s; its log ends:\n{}",
                tail.join("\n")
            )));
        }
        Ok(KubeApiServer {
            url,
            ca_pem: issued.ca_pem,
            admin_token,
            _child: guard,
            _etcd: etcd,
            _dir: dir,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token of `admin` (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }
}

/// One blocking `GET /readyz` with the admin token: true on 200.
fn readyz(addr: SocketAddr, ca_pem: &str, token: &str) -> Result<bool, Error> {
    let e = |what: &str| {
        let what = what.to_owned();
        move |err: &dyn std::fmt::Display| Error(format!("{what}: {err}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|x| e("CA")(&x))?;
    roots.add(ca).map_err(|x| e("CA")(&x))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|x| e("TLS")(&x))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").map_err(|x| e("name")(&x))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name.to_owned())
        .map_err(|x| e("TLS")(&x))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|x| e("connect")(&x))?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|x| e("timeout")(&x))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|x| e("write")(&x))?;
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).map_err(|x| e("read")(&x))?;
    Ok(head.starts_with(b"HTTP/1.1 200"))
}
