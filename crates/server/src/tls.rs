//! rustls configuration of the management plane's listener.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
    server_config_with(
        vec![pki.serving.cert_der()?, pki.ca.cert_der()?],
        pki.serving.key_der()?,
        Some(vec![pki.ca.cert_der()?]),
    )
}

/// A listener's TLS configuration: `chain` and `key` served, TLS 1.2 and 1.3, ALPN `h2` and
/// `http/1.1`; client certificates optional and verified against `client_cas` when given.
pub fn server_config_with(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: Option<Vec<CertificateDer<'static>>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_cas {
        Some(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots.add(ca)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
