//! Authentication: who is making a request. A chain of authenticators is asked in turn, as
//! kube-apiserver's union authenticator does: the first that recognises the request decides;
//! one that recognises a credential but finds it bad fails the request (401) — it never falls
//! through to a weaker authenticator. Later issues add bearer-token authenticators (OIDC).

pub mod bearer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::request::Parts;
use rustls_pki_types::CertificateDer;

/// The group every authenticated user is in (kube-apiserver adds it too).
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";

/// A verified identity, spelled as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Unique id, when the source gives one.
    pub uid: String,
    /// Groups, `system:authenticated` included.
    pub groups: Vec<String>,
    /// Extra attributes (e.g. `authentication.kubernetes.io/credential-id`).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What the TLS layer learned about a connection; added to every request on it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Address of the peer.
    pub remote: SocketAddr,
    /// Client certificate chain, already verified against the CA by rustls.
    pub peer_certificates: Arc<Vec<CertificateDer<'static>>>,
}

/// Outcome of one authenticator.
#[derive(Debug)]
pub enum Authn {
    /// The request carries no credential of this kind.
    NotApplicable,
    /// The credential is valid.
    Authenticated(UserInfo),
    /// The credential is present but bad. The reason is for logs, never for the client.
    Rejected(String),
}

/// One way of authenticating a request.
pub trait Authenticator: Send + Sync {
    /// Looks at the request head (and connection info in its extensions).
    fn authenticate(&self, request: &Parts) -> Authn;
}

/// The X.509 client-certificate authenticator: user from the leaf's CN, groups from its O
/// attributes, as kube-apiserver's x509 authenticator maps them. Chain verification already
/// happened in the TLS handshake against the CA.
#[derive(Debug, Default)]
pub struct ClientCertificate;

impl Authenticator for ClientCertificate {
    fn authenticate(&self, request: &Parts) -> Authn {
        let Some(conn) = request.extensions.get::<ConnectionInfo>() else {
            return Authn::NotApplicable;
        };
        let Some(leaf) = conn.peer_certificates.first() else {
            return Authn::NotApplicable;
        };
        match user_from_certificate(leaf) {
            Ok(user) => Authn::Authenticated(user),
            Err(e) => Authn::Rejected(e),
        }
    }
}

/// Reads CN and O from a certificate.
pub fn user_from_certificate(der: &CertificateDer<'_>) -> Result<UserInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("client certificate does not parse: {e}"))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or("client certificate has no common name")?
        .to_owned();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    groups.push(SYSTEM_AUTHENTICATED.to_owned());
    let mut extra = BTreeMap::new();
    // As kube-apiserver 1.32+: a stable id of the credential for audit.
    extra.insert(
        "authentication.kubernetes.io/credential-id".to_owned(),
        vec![format!("X509SHA256={}", hex_sha256(der.as_ref()))],
    );
    Ok(UserInfo {
        name,
        uid: String::new(),
        groups,
        extra,
    })
}

fn hex_sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Authenticators asked in order.
#[derive(Clone, Default)]
pub struct AuthenticatorChain {
    chain: Vec<Arc<dyn Authenticator>>,
}

impl AuthenticatorChain {
    /// Adds an authenticator at the end of the chain.
    pub fn with(mut self, a: impl Authenticator + 'static) -> Self {
        self.chain.push(Arc::new(a));
        self
    }

    /// The first authenticator that recognises the request decides. `None` means anonymous.
    pub fn authenticate(&self, request: &Parts) -> Result<Option<UserInfo>, String> {
        for a in &self.chain {
            match a.authenticate(request) {
                Authn::NotApplicable => continue,
                Authn::Authenticated(u) => return Ok(Some(u)),
                Authn::Rejected(reason) => return Err(reason),
            }
        }
        Ok(None)
    }
}
