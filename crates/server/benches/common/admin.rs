//! What the management API's benches share: a client with the admin's certificate.

use std::sync::Arc;

use portcullis_server::kubeconfig::{Kubeconfig, decode_data};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A client of the management plane whose data directory is `dir`, with the admin's client
/// certificate from its `admin.conf`, keeping up to `pool` connections.
pub fn admin_client(dir: &std::path::Path, pool: usize) -> reqwest::Client {
    let kc = Kubeconfig::read(&dir.join("admin.conf")).unwrap();
    let ca = decode_data(
        kc.clusters[0]
            .cluster
            .certificate_authority_data
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    let user = &kc.users[0].user;
    let cert = decode_data(user.client_certificate_data.as_ref().unwrap()).unwrap();
    let key = decode_data(secrecy::ExposeSecret::expose_secret(
        user.client_key_data.as_ref().unwrap(),
    ))
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_slice(&cert).unwrap()],
        PrivateKeyDer::from_pem_slice(&key).unwrap(),
    )
    .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(pool)
        .build()
        .unwrap()
}
