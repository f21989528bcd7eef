//! The authenticator contract and the chain that asks authenticators in turn.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use secrecy::SecretString;

use crate::{Error, UserInfo};

/// What an authenticator may look at: the request headers and the client certificate chain
/// the TLS layer received (empty without a client certificate).
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The peer's certificate chain as presented, leaf first. Not assumed verified.
    pub peer_certificates: &'a PeerCertificates,
}

/// A client certificate chain as the TLS layer received it at the handshake (leaf first, not
/// assumed verified), with the SHA-256 that [`ClientCertificate`](crate::ClientCertificate)
/// remembers verified chains by: computed here, once per connection, from these very
/// certificates (the fields are private, so the two cannot disagree). The accept loop inserts
/// it into every request's extensions; never read from headers.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(Option<Arc<PeerChain>>);

#[derive(Debug)]
struct PeerChain {
    certificates: Vec<CertificateDer<'static>>,
    hash: [u8; 32],
}

impl PeerCertificates {
    /// No client certificate.
    pub const NONE: PeerCertificates = PeerCertificates(None);

    /// The chain a client presented, leaf first (empty: none).
    pub fn new(certificates: Vec<CertificateDer<'static>>) -> PeerCertificates {
        if certificates.is_empty() {
            return PeerCertificates::NONE;
        }
        let hash = chain_hash(&certificates);
        PeerCertificates(Some(Arc::new(PeerChain { certificates, hash })))
    }

    /// The certificates, leaf first.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        self.0.as_ref().map_or(&[], |c| &c.certificates)
    }

    /// Whether the client presented no certificate.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The SHA-256 of the chain ([`chain_hash`]), `None` without certificates.
    pub(crate) fn hash(&self) -> Option<&[u8; 32]> {
        self.0.as_ref().map(|c| &c.hash)
    }
}

/// The SHA-256 of a chain's certificates, each length-prefixed (so that no two chains share it).
pub(crate) fn chain_hash(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for c in chain {
        ctx.update(&(c.as_ref().len() as u64).to_be_bytes());
        ctx.update(c.as_ref());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl<'a> Credentials<'a> {
    /// Credentials with headers only.
    pub fn from_headers(headers: &'a http::HeaderMap) -> Credentials<'a> {
        Credentials {
            headers,
            peer_certificates: &PeerCertificates::NONE,
        }
    }

    /// The bearer token of the `Authorization` header, as kube-apiserver's bearer-token
    /// authenticator reads it: scheme `Bearer` (any case), then the token up to the next space,
    /// non-empty.
    /// `None` when the header is absent or not a bearer token (not this authenticator's).
    pub fn bearer_token(&self) -> Option<SecretString> {
        self.bearer().map(|t| SecretString::from(t.to_owned()))
    }

    /// [`Credentials::bearer_token`] borrowed from the header (never logged, never kept).
    pub(crate) fn bearer(&self) -> Option<&'a str> {
        let value = self
            .headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let mut parts = value.trim().splitn(3, ' ');
        let (Some(scheme), Some(token)) = (parts.next(), parts.next()) else {
            return None;
        };
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return None;
        }
        Some(token)
    }
}

/// An identity with how long it may be trusted without checking the credential again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Who: shared, so that an identity remembered for a credential is handed to each of its
    /// requests without a copy.
    pub user: Arc<UserInfo>,
    /// Unix seconds after which the credential is no longer valid (a JWT's `exp`), if known.
    pub expires_at: Option<u64>,
}

/// What one authenticator says about a request.
#[derive(Debug)]
pub enum Outcome {
    /// The request carries no credential of this kind: ask the next authenticator.
    NotMine,
    /// The credential is valid.
    Authenticated(Authenticated),
    /// The credential is this authenticator's but bad: the request is denied.
    Failed(Error),
}

/// One way of authenticating a request.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync {
    /// Looks at the credentials of a request.
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome;

    /// The same outcome as [`Authenticator::authenticate`], given without waiting by an
    /// authenticator that never needs to (no allocated future per request); `None` (the
    /// default) to be asked `authenticate`. A shortcut, never another decision.
    fn authenticate_now(&self, _credentials: &Credentials<'_>) -> Option<Outcome> {
        None
    }
}

/// Authenticators asked in order, as kube-apiserver's union authenticator with fail-on-error.
#[derive(Clone, Default)]
pub struct AuthenticatorChain {
    chain: Vec<Arc<dyn Authenticator>>,
}

impl std::fmt::Debug for AuthenticatorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatorChain")
            .field("len", &self.chain.len())
            .finish()
    }
}

impl AuthenticatorChain {
    /// An empty chain (every request is anonymous).
    pub fn new() -> AuthenticatorChain {
        AuthenticatorChain::default()
    }

    /// Adds an authenticator at the end of the chain.
    #[must_use]
    pub fn with(mut self, authenticator: Arc<dyn Authenticator>) -> AuthenticatorChain {
        self.chain.push(authenticator);
        self
    }

    /// The first authenticator that recognises the request decides: `Ok(Some(_))` is an
    /// identity, `Ok(None)` means the request carries no credential (anonymous, if the front
    /// end allows it), and `Err` denies the request — later authenticators are not asked. As
    /// kube-apiserver's bearer-token authenticator, a bearer token that no authenticator
    /// recognises is an error ("invalid bearer token"), never anonymous.
    pub async fn authenticate(
        &self,
        credentials: &Credentials<'_>,
    ) -> Result<Option<Authenticated>, Error> {
        for authenticator in &self.chain {
            let outcome = match authenticator.authenticate_now(credentials) {
                Some(outcome) => outcome,
                None => authenticator.authenticate(credentials).await,
            };
            match outcome {
                Outcome::NotMine => continue,
                Outcome::Authenticated(a) => return Ok(Some(a)),
                Outcome::Failed(e) => return Err(e),
            }
        }
        AuthenticatorChain::unrecognised(credentials)
    }

    /// [`AuthenticatorChain::authenticate`] decided without waiting, when every authenticator
    /// it asks can answer so (a client certificate, a token whose identity is cached); `None`
    /// when one of them needs to wait (a token to verify, perhaps with keys to fetch).
    pub fn authenticate_now(
        &self,
        credentials: &Credentials<'_>,
    ) -> Option<Result<Option<Authenticated>, Error>> {
        for authenticator in &self.chain {
            match authenticator.authenticate_now(credentials)? {
                Outcome::NotMine => continue,
                Outcome::Authenticated(a) => return Some(Ok(Some(a))),
                Outcome::Failed(e) => return Some(Err(e)),
            }
        }
        Some(AuthenticatorChain::unrecognised(credentials))
    }

    /// What credentials that no authenticator took are: a bearer token nobody recognises is an
    /// error, no credential at all is anonymous.
    fn unrecognised(credentials: &Credentials<'_>) -> Result<Option<Authenticated>, Error> {
        if credentials.bearer().is_some() {
            return Err(Error::Claims(
                "invalid bearer token: no authenticator recognises it".into(),
            ));
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl Authenticator for AuthenticatorChain {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        match AuthenticatorChain::authenticate(self, credentials).await {
            Ok(Some(a)) => Outcome::Authenticated(a),
            Ok(None) => Outcome::NotMine,
            Err(e) => Outcome::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn token(value: &str) -> Option<String> {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        Credentials::from_headers(&headers)
            .bearer_token()
            .map(|t| t.expose_secret().to_owned())
    }

    #[test]
    fn a_peer_chain_is_hashed_once_as_the_chain_it_holds() {
        let chain = vec![
            CertificateDer::from(vec![1u8, 2, 3]),
            CertificateDer::from(vec![4u8]),
        ];
        let peer = PeerCertificates::new(chain.clone());
        assert_eq!(peer.certificates(), chain.as_slice());
        assert_eq!(peer.hash(), Some(&chain_hash(&chain)));
        // Length-prefixed: the same bytes cut differently are another chain.
        let recut = [
            CertificateDer::from(vec![1u8, 2]),
            CertificateDer::from(vec![3u8, 4]),
        ];
        assert_ne!(chain_hash(&recut), chain_hash(&chain));
        let none = PeerCertificates::new(Vec::new());
        assert!(none.is_empty() && none.hash().is_none() && none.certificates().is_empty());
    }

    #[test]
    fn bearer_tokens_are_read_as_kube_apiserver_reads_them() {
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("BEARER abc ").as_deref(), Some("abc"));
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer a b").as_deref(), Some("a"));
        assert_eq!(token("Bearer  a"), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(token("Basic abc"), None);
    }
}
