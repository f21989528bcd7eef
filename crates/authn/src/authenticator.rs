//! The authenticator contract and the chain that asks authenticators in turn.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use secrecy::SecretString;

use crate::{Error, UserInfo};

/// What an authenticator may look at: the request headers and the client certificate chain
/// the TLS layer received (leaf first; empty without a client certificate).
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The peer's certificate chain as presented, leaf first. Not assumed verified.
    pub peer_certificates: &'a [CertificateDer<'static>],
}

impl<'a> Credentials<'a> {
    /// Credentials with headers only.
    pub fn from_headers(headers: &'a http::HeaderMap) -> Credentials<'a> {
        Credentials {
            headers,
            peer_certificates: &[],
        }
    }

    /// The bearer token of the `Authorization` header, as kube-apiserver's bearer-token
    /// authenticator reads it: scheme `Bearer` (any case), then the token up to the next space,
    /// non-empty.
    /// `None` when the header is absent or not a bearer token (not this authenticator's).
    pub fn bearer_token(&self) -> Option<SecretString> {
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
        Some(SecretString::from(token.to_owned()))
    }
}

/// An identity with how long it may be trusted without checking the credential again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Who.
    pub user: UserInfo,
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
            match authenticator.authenticate(credentials).await {
                Outcome::NotMine => continue,
                Outcome::Authenticated(a) => return Ok(Some(a)),
                Outcome::Failed(e) => return Err(e),
            }
        }
        if credentials.bearer_token().is_some() {
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
