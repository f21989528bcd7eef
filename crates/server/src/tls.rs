//! rustls configuration of the management plane's listener.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

use crate::pki::Pki;

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key was not usable.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// PEM decoding failed.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
}

/// The server's TLS configuration: the serving certificate, TLS 1.2 and 1.3, ALPN `h2` and
/// `http/1.1`, and optional client certificates verified against the CA (a client without one
/// goes on to bearer-token authentication; one with a certificate from another CA fails the
/// handshake, as kube-apiserver's `--client-ca-file` does).
pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.cert_der()?)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![pki.serving.cert_der()?, pki.ca.cert_der()?],
            pki.serving.key_der()?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
