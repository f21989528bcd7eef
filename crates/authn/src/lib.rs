//! The identity of a request, derived as kube-apiserver derives it.
//!
//! - [`UserInfo`]: a user name, uid, groups and extra attributes (Kubernetes' `user.Info`).
//! - [`AuthenticatorChain`]: authenticators asked in turn. Each says "not mine"
//!   ([`Outcome::NotMine`]), gives an identity, or fails; a failure denies the request and never
//!   falls through to a weaker authenticator (kube-apiserver's union authenticator with
//!   `FailOnError`).
//! - [`ClientCertificate`]: X.509 client certificates, the chain verified by this crate against
//!   a CA pool (expiry included), user from the leaf's CN and groups from its O attributes.
//! - [`JwtAuthenticator`]: bearer tokens of one or more JWT issuers, configured with Kubernetes'
//!   structured [`AuthenticationConfiguration`] (`apiserver.config.k8s.io/v1beta1` and `v1`),
//!   claim mappings and validation rules in CEL, or with the legacy `--oidc-*` flags
//!   ([`LegacyOidcFlags`]). Identities are cached by the SHA-256 of the token until `exp`
//!   ([`TokenCache`]). [`ReloadingJwtAuthenticator`] reloads the configuration file on change.
//! - [`impersonate`]: the `Impersonate-*` headers, each attribute authorized by the caller's
//!   authorizer, as kube-apiserver's impersonation filter.
//! - [`RequestInfo`]: the verb, resource, namespace… of a request, parsed as k8s.io/apiserver's
//!   `RequestInfoFactory`, and its [`portcullis_rbac::Attributes`] for a user.
//!
//! Tokens are held as [`secrecy::SecretString`] and never logged; a log line names a token by
//! a short hash at most.
//!
//! A front end parses the request once, authenticates, impersonates, then authorizes:
//!
//! ```no_run
//! use portcullis_authn::*;
//! use portcullis_rbac::{Attributes, Decision};
//!
//! # async fn handle(
//! #     chain: &AuthenticatorChain,
//! #     authorize: &dyn Fn(&Attributes) -> Decision,
//! #     request: &http::request::Parts,
//! #     peer_certificates: &PeerCertificates,
//! # ) -> Result<(), String> {
//! let info = RequestInfo::parse(&request.method, request.uri.path(), request.uri.query())
//!     .map_err(|e| e.to_string())?; // 400
//! let credentials = Credentials { headers: &request.headers, peer_certificates };
//! let user = match chain.authenticate(&credentials).await {
//!     Ok(Some(authenticated)) => (*authenticated.user).clone(),
//!     Ok(None) => UserInfo::anonymous(), // if anonymous requests are allowed
//!     Err(_) => return Err("Unauthorized".into()), // 401; log the error, never the token
//! };
//! let acting = impersonate(&authorize, user, &request.headers).map_err(|e| e.to_string())?;
//! if !authorize(&info.attributes(&acting.user)).allowed {
//!     return Err("Forbidden".into()); // 403
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod authenticator;
mod cache;
mod cel_eval;
pub mod chain;
pub mod config;
mod error;
mod impersonation;
mod jwt;
mod keys;
mod reload;
mod request_info;
mod user;
mod x509;

pub use authenticator::{
    Authenticated, Authenticator, AuthenticatorChain, Credentials, Outcome, PeerCertificates,
};
pub use cache::TokenCache;
pub use config::{AuthenticationConfiguration, LegacyOidcFlags};
pub use error::Error;
pub use impersonation::{
    Authorize, AuthorizeRemote, IMPERSONATE_EXTRA_PREFIX, IMPERSONATE_GROUP, IMPERSONATE_UID,
    IMPERSONATE_USER, Impersonated, ImpersonationError, ImpersonationRequest, impersonate,
    impersonate_remote,
};
pub use jwt::{JwtAuthenticator, KeySourceFactory};
pub use keys::{DiscoveryKeys, KeySource, StaticKeys};
pub use reload::{ReloadStatus, ReloadingJwtAuthenticator};
pub use request_info::{RequestInfo, RequestInfoError, Verb};
pub use user::{SYSTEM_ANONYMOUS, SYSTEM_AUTHENTICATED, SYSTEM_UNAUTHENTICATED, UserInfo};
pub use x509::ClientCertificate;

/// A short, non-reversible name for a secret in logs: the first 8 bytes of its SHA-256, in hex.
pub fn log_hash(secret: &[u8]) -> String {
    hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret)
            .as_ref()
            .get(..8)
            .unwrap_or_default(),
    )
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
