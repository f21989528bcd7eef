//! A running server in a temporary data directory, and HTTPS clients with chosen credentials.

use std::sync::Arc;

use portcullis_server::config::StoreConfig;
use portcullis_server::kubeconfig::{Kubeconfig, decode_data};
use portcullis_server::pki::{self, CertifiedKey};
use portcullis_server::{Config, Running};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub struct TestServer {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestServer {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            store: StoreConfig::Memory,
            shutdown_grace_seconds: 2,
            ..Config::default()
        };
        edit(&mut config);
        let running = portcullis_server::start(config).await.unwrap();
        let url = running.url.clone();
        TestServer {
            running: Some(running),
            dir,
            url,
        }
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pki/ca.crt")).unwrap()
    }

    pub fn ca(&self) -> CertifiedKey {
        CertifiedKey {
            cert_pem: self.ca_pem(),
            key_pem: std::fs::read_to_string(self.dir.path().join("pki/ca.key")).unwrap(),
        }
    }

    /// A client authenticated with the generated admin.conf.
    pub fn admin(&self) -> reqwest::Client {
        let kc = Kubeconfig::read(&self.dir.path().join("admin.conf")).unwrap();
        let user = &kc.users[0].user;
        let cert = decode_data(user.client_certificate_data.as_ref().unwrap()).unwrap();
        let key = decode_data(secrecy::ExposeSecret::expose_secret(
            user.client_key_data.as_ref().unwrap(),
        ))
        .unwrap();
        client(&self.ca_pem(), Some((&cert, &key)))
    }

    /// A client with a certificate for `user` in `groups`, signed by the server's CA.
    pub fn user(&self, user: &str, groups: &[&str]) -> reqwest::Client {
        let c = pki::issue_client(&self.ca(), user, groups, 1).unwrap();
        client(
            &self.ca_pem(),
            Some((c.cert_pem.as_bytes(), c.key_pem.as_bytes())),
        )
    }

    /// A client without any credential.
    pub fn anonymous(&self) -> reqwest::Client {
        client(&self.ca_pem(), None)
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }
}

pub fn client(ca_pem: &str, identity: Option<(&[u8], &[u8])>) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let tls = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert).unwrap()],
                PrivateKeyDer::from_pem_slice(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    // Redirects are answers to check (the issuer's login), never followed.
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
