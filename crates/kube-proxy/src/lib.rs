//! The Kubernetes API proxy of an attached cluster (kube-oidc-proxy's job).
//!
//! `kubectl` sends the management issuer's token; the proxy authenticates it with the
//! [`portcullis_authn`] chain, removes every credential and `Impersonate-*` header the client
//! sent, and forwards the request to the cluster's API server with its own credential, as the
//! user: `Impersonate-User`, one `Impersonate-Group` per group (with `system:authenticated`),
//! `Impersonate-Uid` and `Impersonate-Extra-*`. The cluster's RBAC decides.
//!
//! - `kubectl --as/--as-group` through the proxy: each `impersonate` check is a
//!   SubjectAccessReview to the cluster naming the requester ([`ClusterAuthorizer`]); the
//!   upstream then sees the impersonated identity, with the requester under the extra key
//!   [`ORIGINAL_USER_EXTRA`] so that its audit record names both.
//! - Bodies stream both ways (watch, `logs -f`, large lists are never buffered); upgrades
//!   (exec, attach, `cp`, port-forward over SPDY/3.1 or WebSocket) are passed through byte for
//!   byte on an HTTP/1.1 upstream connection.
//! - An unreachable upstream is a 503 `Status` naming it; no response head within the timeout
//!   a 504.
//! - [`token_review::router`]: the TokenReview webhook for the issuer's tokens.
//!
//! The proxy's credential needs, on the cluster: `impersonate` on `users`, `groups`,
//! `serviceaccounts`, `uids` and `userextras/*`, and `create` on `subjectaccessreviews`.
#![deny(missing_docs)]

mod forward;
mod review;
pub mod token_review;
pub mod upstream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use portcullis_authn::chain::Chain;
use portcullis_authn::chain::metrics::Metrics;
use tower::ServiceBuilder;

pub use forward::{ORIGINAL_USER_EXTRA, encode_extra_key, is_identity_header};
pub use review::ClusterAuthorizer;
pub use upstream::{Credential, Upstream, UpstreamConfig, UpstreamError};

/// The proxy's limits.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Largest request body forwarded (kube-apiserver's own limit is 3 MiB): a larger declared
    /// `Content-Length` gets 413 at once; a streamed body is cut off there.
    pub max_body_bytes: u64,
    /// How long the upstream may take to send a response head.
    pub response_header_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            max_body_bytes: 3 * 1024 * 1024,
            response_header_timeout: Duration::from_secs(60),
        }
    }
}

/// A proxy to one cluster.
#[derive(Debug)]
pub struct Proxy {
    config: ProxyConfig,
    upstream: Arc<Upstream>,
    metrics: Arc<Metrics>,
}

impl Proxy {
    /// A proxy to `upstream`, timing its answers into `metrics`.
    pub fn new(config: ProxyConfig, upstream: Arc<Upstream>, metrics: Arc<Metrics>) -> Arc<Proxy> {
        Arc::new(Proxy {
            config,
            upstream,
            metrics,
        })
    }

    /// The upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Every request not routed elsewhere, through `chain`'s forwarding layers (request info,
    /// authentication, audit, impersonation asked of the cluster, max-in-flight), forwarded.
    pub fn router(self: &Arc<Proxy>, chain: &Chain) -> axum::Router {
        let proxy = self.clone();
        let authorizer = Arc::new(ClusterAuthorizer::new(self.upstream.clone()));
        let service = ServiceBuilder::new()
            .layer(chain.forwarding_layer(authorizer))
            .service_fn(move |req: http::Request<Body>| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(forward::forward(proxy, req).await) }
            });
        axum::Router::new().fallback_service(service)
    }
}
