//! A throwaway CA and a serving certificate for 127.0.0.1 and localhost.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::Error;

pub(crate) struct ServingTls {
    pub(crate) ca_pem: String,
    pub(crate) acceptor: TlsAcceptor,
}

/// A CA and a leaf signed by it, both as PEM, the leaf's key as PEM.
pub(crate) struct Issued {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) key_pem: String,
    pub(crate) key_der: Vec<u8>,
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error(format!("{what}: {e}"))
}

/// Generates a CA and a serving certificate with SAN IP 127.0.0.1 and DNS localhost.
pub(crate) fn issue() -> Result<Issued, Error> {
    let ca_key = KeyPair::generate().map_err(err("generating the test CA key"))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(err("test CA parameters"))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portcullis testkit CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(err("self-signing the test CA"))?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().map_err(err("generating the serving key"))?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])
        .map_err(err("serving certificate parameters"))?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(err("signing the serving certificate"))?;
    Ok(Issued {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    })
}

impl ServingTls {
    pub(crate) fn generate() -> Result<ServingTls, Error> {
        let issued = issue()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(issued.cert_der)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_der)),
            )
            .map_err(|e| Error(format!("serving certificate: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServingTls {
            ca_pem: issued.ca_pem,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}
