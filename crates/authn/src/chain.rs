//! The filter chain of every front end, as tower [`Layer`]s in kube-apiserver's order
//! (k8s.io/apiserver `DefaultBuildHandlerChain`):
//!
//! request info → authentication → audit → impersonation → max-in-flight → authorization →
//! handler.
//!
//! [`Chain::layer`] builds them in that order. A handler behind them finds the request's
//! [`RequestInfo`] and the `Arc<UserInfo>` it acts as in the request's extensions (and the
//! authenticated requester as [`OriginalUser`] when it impersonated someone): no route is
//! reachable without passing authentication and authorization. Every refusal is a Kubernetes
//! `Status` (401, 403, 429, 400) as kube-apiserver writes it. [`MetricsLayer`] goes around
//! everything a front end serves, the chain's routes and others alike.

pub mod audit;
pub mod metrics;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode};
use portcullis_rbac::Attributes;
use serde_json::json;
use tower::{Layer, Service, ServiceBuilder};

use crate::{
    AuthenticatorChain, Authorize, AuthorizeRemote, Credentials, ImpersonationError, RequestInfo,
    UserInfo, Verb, impersonate, impersonate_remote,
};
use audit::{AuditLog, AuditRecord};
use metrics::Metrics;

pub use crate::PeerCertificates;

/// The peer's address, for audit's `sourceIPs`; inserted by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// The authenticated requester of a request that impersonated someone (the `Arc<UserInfo>` in
/// the extensions is then the impersonated identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalUser(pub UserInfo);

/// The authorizer the chain asks (the front end's RBAC engine), shared by every request.
pub type SharedAuthorizer = Arc<dyn Authorize + Send + Sync>;

/// The filter chain's settings.
#[derive(Clone)]
pub struct Chain {
    /// Who is asking.
    pub authenticator: AuthenticatorChain,
    /// May they.
    pub authorizer: SharedAuthorizer,
    /// Requests without credentials go on as `system:anonymous` (kube-apiserver's
    /// `--anonymous-auth`); otherwise they get 401.
    pub anonymous: bool,
    /// Where audit events go, if anywhere.
    pub audit: Option<Arc<AuditLog>>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Most read-only requests served at once (`--max-requests-inflight`; 0 for no limit);
    /// long-running ones (watches) are not counted. The bound is the front end's: every chain
    /// counting into the same [`Metrics`] shares it.
    pub max_read_only: usize,
    /// Most mutating requests served at once (`--max-mutating-requests-inflight`; 0 for no
    /// limit).
    pub max_mutating: usize,
}

impl Chain {
    /// The authentication layer alone (for a front end, or a test, that needs only it).
    pub fn authentication_layer(&self) -> AuthenticationLayer {
        AuthenticationLayer {
            authenticator: Arc::new(self.authenticator.clone()),
            anonymous: self.anonymous,
            metrics: self.metrics.clone(),
        }
    }

    /// The chain's layers, in kube-apiserver's order (the first is the outermost).
    pub fn layer<S>(&self) -> impl Layer<S, Service = ChainService<S>> + Clone + use<S> {
        ServiceBuilder::new()
            .layer(RequestInfoLayer)
            .layer(self.authentication_layer())
            .layer(AuditLayer {
                log: self.audit.clone(),
            })
            .layer(ImpersonationLayer {
                authorizer: self.authorizer.clone(),
            })
            .layer(MaxInFlightLayer {
                max_read_only: self.max_read_only,
                max_mutating: self.max_mutating,
                metrics: self.metrics.clone(),
            })
            .layer(AuthorizationLayer {
                authorizer: self.authorizer.clone(),
                metrics: self.metrics.clone(),
            })
            .into_inner()
    }
}

impl Chain {
    /// The chain of a front end that forwards to a cluster which authorizes for itself (the
    /// API proxy): request info → authentication → audit → impersonation (each check asked of
    /// `impersonation`, the cluster) → max-in-flight → handler. There is no local authorization
    /// layer: the cluster decides every forwarded request as the identity the handler sends.
    pub fn forwarding_layer<S>(
        &self,
        impersonation: Arc<dyn AuthorizeRemote>,
    ) -> impl Layer<S, Service = ForwardingChainService<S>> + Clone + use<S> {
        ServiceBuilder::new()
            .layer(RequestInfoLayer)
            .layer(self.authentication_layer())
            .layer(AuditLayer {
                log: self.audit.clone(),
            })
            .layer(RemoteImpersonationLayer {
                authorizer: impersonation,
            })
            .layer(MaxInFlightLayer {
                max_read_only: self.max_read_only,
                max_mutating: self.max_mutating,
                metrics: self.metrics.clone(),
            })
            .into_inner()
    }
}

/// The service [`Chain::forwarding_layer`] makes of a handler.
pub type ForwardingChainService<S> = RequestInfoService<
    AuthenticationService<AuditService<RemoteImpersonationService<MaxInFlightService<S>>>>,
>;

/// The service the chain makes of a handler.
pub type ChainService<S> = RequestInfoService<
    AuthenticationService<
        AuditService<ImpersonationService<MaxInFlightService<AuthorizationService<S>>>>,
    >,
>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A layer's `Layer` impl and its service: the inner service and the layer's settings, shared
/// (the services are cloned for every request, and a clone is then one reference count).
macro_rules! layer_service {
    ($layer:ident => $service:ident) => {
        impl<S> Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> Self::Service {
                $service {
                    inner,
                    layer: Arc::new(self.clone()),
                }
            }
        }

        #[doc = concat!("The service of [`", stringify!($layer), "`].")]
        #[derive(Clone)]
        pub struct $service<S> {
            inner: S,
            layer: Arc<$layer>,
        }
    };
}

/// The future of a layer that either answers at once or hands the request on: no allocation.
pub type Either<F, R, E> = futures::future::Either<std::future::Ready<Result<Response<R>, E>>, F>;

fn answer<F, R, E>(response: Response<R>) -> Either<F, R, E> {
    futures::future::Either::Left(std::future::ready(Ok(response)))
}

fn pass<F, R, E>(future: F) -> Either<F, R, E> {
    futures::future::Either::Right(future)
}

// === Status responses ===

/// A Kubernetes `Status` failure as kube-apiserver writes it.
pub fn status_response<B: From<String>>(
    code: StatusCode,
    reason: &str,
    message: &str,
) -> Response<B> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// kube-apiserver's message for a denied request: `pods "x" is forbidden: User "u" cannot get
/// resource "pods" in API group "" in the namespace "ns"`, or for a path `forbidden: User "u"
/// cannot get path "/metrics"`.
pub fn forbidden_message(a: &Attributes) -> String {
    let user = &a.user;
    if !a.resource_request {
        return format!(
            "forbidden: User {user:?} cannot {} path {:?}",
            a.verb, a.path
        );
    }
    let qualified = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    let res = if a.subresource.is_empty() {
        format!("resource {:?}", a.resource)
    } else {
        format!("resource \"{}/{}\"", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace {:?}", a.namespace)
    };
    let target = if a.name.is_empty() {
        qualified
    } else {
        format!("{qualified} {:?}", a.name)
    };
    format!(
        "{target} is forbidden: User {user:?} cannot {} {res} in API group {:?} {scope}",
        a.verb, a.api_group
    )
}

// === request info ===

/// Parses the request's [`RequestInfo`] once, into its extensions; a path that cannot be
/// read is refused (400) before anything else.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfoLayer;

impl<S> Layer<S> for RequestInfoLayer {
    type Service = RequestInfoService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestInfoService { inner }
    }
}

/// The service of [`RequestInfoLayer`].
#[derive(Debug, Clone)]
pub struct RequestInfoService<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RequestInfoService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Parsed already by [`MetricsLayer`] when it is in front.
        if req.extensions().get::<RequestInfo>().is_none() {
            match RequestInfo::parse(req.method(), req.uri().path(), req.uri().query()) {
                Ok(info) => {
                    req.extensions_mut().insert(info);
                }
                Err(e) => {
                    return answer(status_response(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &e.to_string(),
                    ));
                }
            }
        }
        // Called right away: `poll_ready` readied this very service.
        pass(self.inner.call(req))
    }
}

/// The inner service ready to be called, leaving a clone in its place (tower's pattern for a
/// service called from a boxed future).
fn take<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

// === authentication ===

/// Authenticates the request with the chain's authenticators: the [`UserInfo`] goes into its
/// extensions and the `Authorization` header is removed (as kube-apiserver removes it), so
/// nothing behind the chain can see or forward the credential.
#[derive(Clone)]
pub struct AuthenticationLayer {
    authenticator: Arc<AuthenticatorChain>,
    anonymous: bool,
    metrics: Arc<Metrics>,
}

layer_service!(AuthenticationLayer => AuthenticationService);

impl AuthenticationLayer {
    /// The identity a request goes on as, or the 401 it gets (counted either way).
    fn admit<R: From<String>>(
        &self,
        outcome: Result<Option<crate::Authenticated>, crate::Error>,
    ) -> Result<Arc<UserInfo>, Response<R>> {
        match outcome {
            Ok(Some(a)) => {
                self.metrics.authentication("success");
                Ok(a.user)
            }
            Ok(None) if self.anonymous => Ok(ANONYMOUS.clone()),
            Ok(None) => {
                self.metrics.authentication("failure");
                Err(unauthorized())
            }
            Err(e) => {
                // For the log only: the reason may describe the credential.
                tracing::info!(reason = %e, "authentication failed");
                self.metrics.authentication("error");
                Err(unauthorized())
            }
        }
    }
}

/// The credentials a request presents: its headers, and the client certificate chain the accept
/// loop put in its extensions (never read from a header).
fn credentials<B>(req: &Request<B>) -> Credentials<'_> {
    Credentials {
        headers: req.headers(),
        peer_certificates: req
            .extensions()
            .get::<PeerCertificates>()
            .unwrap_or(&PeerCertificates::NONE),
    }
}

/// Goes on as `user`: the credential removed from the request, the identity in its extensions.
fn authenticated_as<B>(req: &mut Request<B>, user: Arc<UserInfo>) {
    req.headers_mut().remove(http::header::AUTHORIZATION);
    req.extensions_mut().insert(user);
}

impl<S, B, R> Service<Request<B>> for AuthenticationService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    /// Decided at once (a client certificate, a cached token's identity): the inner service's
    /// future or the refusal, with no allocation; otherwise the verification, boxed.
    type Future = futures::future::Either<
        Either<S::Future, R, S::Error>,
        BoxFuture<Result<Response<R>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let now = self
            .layer
            .authenticator
            .authenticate_now(&credentials(&req));
        if let Some(outcome) = now {
            return futures::future::Either::Left(match self.layer.admit(outcome) {
                Ok(user) => {
                    authenticated_as(&mut req, user);
                    // Called right away: `poll_ready` readied this very service.
                    pass(self.inner.call(req))
                }
                Err(refusal) => answer(refusal),
            });
        }
        let layer = self.layer.clone();
        let mut inner = take(&mut self.inner);
        futures::future::Either::Right(Box::pin(async move {
            let outcome = layer.authenticator.authenticate(&credentials(&req)).await;
            let user = match layer.admit(outcome) {
                Ok(user) => user,
                Err(refusal) => return Ok(refusal),
            };
            authenticated_as(&mut req, user);
            inner.call(req).await
        }))
    }
}

/// The identity of requests without credentials, when they are let in.
static ANONYMOUS: std::sync::LazyLock<Arc<UserInfo>> =
    std::sync::LazyLock::new(|| Arc::new(UserInfo::anonymous()));

fn unauthorized<R: From<String>>() -> Response<R> {
    status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

// === audit ===

/// Writes one `audit.k8s.io/v1` event per request when the response is complete, at the level
/// the audit policy gives it (none without an [`AuditLog`]). Inner layers add what they learn
/// (the impersonated user, the authorization decision) to the request's [`AuditRecord`].
#[derive(Clone)]
pub struct AuditLayer {
    log: Option<Arc<AuditLog>>,
}

layer_service!(AuditLayer => AuditService);

impl<S, B, R> Service<Request<B>> for AuditService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = futures::future::Either<BoxFuture<Result<Response<R>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Without an audit log (the default) the request passes with no allocation.
        let Some(log) = self.layer.log.clone() else {
            return futures::future::Either::Right(self.inner.call(req));
        };
        let mut inner = take(&mut self.inner);
        let record = AuditRecord::new(&req, log.policy());
        req.extensions_mut().insert(record.clone());
        futures::future::Either::Left(Box::pin(async move {
            let response = inner.call(req).await?;
            log.write(&record, response.status());
            Ok(response)
        }))
    }
}

// === impersonation ===

/// Acts on `Impersonate-*` headers: every part of the impersonated identity authorized for
/// the requester, then the request goes on as that identity (with the requester as
/// [`OriginalUser`]); the headers are removed so nothing behind the chain forwards them.
#[derive(Clone)]
pub struct ImpersonationLayer {
    authorizer: SharedAuthorizer,
}

layer_service!(ImpersonationLayer => ImpersonationService);

/// Whether a header name is one of the `Impersonate-*` headers (any case: header names are
/// case-insensitive and stored lower-case).
pub fn is_impersonation_header(name: &http::HeaderName) -> bool {
    name.as_str().starts_with("impersonate-")
}

impl<S, B, R> Service<Request<B>> for ImpersonationService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let impersonating = req.headers().keys().any(is_impersonation_header);
        if !impersonating {
            return pass(self.inner.call(req));
        }
        let Some(requester) = req.extensions().get::<Arc<UserInfo>>() else {
            // Cannot happen behind authentication: deny.
            return answer(unauthorized());
        };
        let requester = UserInfo::clone(requester);
        match impersonate(&*self.layer.authorizer, requester, req.headers()) {
            Ok(impersonated) => {
                act_as(&mut req, impersonated);
                pass(self.inner.call(req))
            }
            Err(e) => answer(impersonation_refused(e)),
        }
    }
}

/// The answer to a refused impersonation.
fn impersonation_refused<R: From<String>>(error: ImpersonationError) -> Response<R> {
    match error {
        // kube-apiserver answers 500 here; a malformed request is the client's error.
        ImpersonationError::Invalid(message) => {
            status_response(StatusCode::BAD_REQUEST, "BadRequest", &message)
        }
        ImpersonationError::Forbidden(attributes) => {
            tracing::info!(
                user = %attributes.user,
                resource = %attributes.resource,
                name = %attributes.name,
                "impersonation forbidden"
            );
            status_response(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &forbidden_message(&attributes),
            )
        }
    }
}

/// The request goes on as the impersonated identity: the `Impersonate-*` headers removed, the
/// audit record and the extensions told.
fn act_as<B>(req: &mut Request<B>, impersonated: crate::Impersonated) {
    let names: Vec<http::HeaderName> = req
        .headers()
        .keys()
        .filter(|n| is_impersonation_header(n))
        .cloned()
        .collect();
    for name in names {
        req.headers_mut().remove(name);
    }
    if let Some(record) = req.extensions().get::<AuditRecord>() {
        record.impersonated(&impersonated.user);
    }
    if let Some(original) = impersonated.original {
        req.extensions_mut().insert(OriginalUser(original));
    }
    req.extensions_mut().insert(Arc::new(impersonated.user));
}

/// The impersonation layer of a front end whose authorizer is elsewhere (the API proxy asks
/// the cluster behind it with SubjectAccessReviews): the same rules as [`ImpersonationLayer`],
/// each check awaited.
#[derive(Clone)]
pub struct RemoteImpersonationLayer {
    authorizer: Arc<dyn AuthorizeRemote>,
}

layer_service!(RemoteImpersonationLayer => RemoteImpersonationService);

impl<S, B, R> Service<Request<B>> for RemoteImpersonationService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, BoxFuture<Result<Response<R>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !req.headers().keys().any(is_impersonation_header) {
            return futures::future::Either::Left(self.inner.call(req));
        }
        let authorizer = self.layer.authorizer.clone();
        let mut inner = take(&mut self.inner);
        futures::future::Either::Right(Box::pin(async move {
            let Some(requester) = req.extensions().get::<Arc<UserInfo>>() else {
                return Ok(unauthorized());
            };
            let requester = UserInfo::clone(requester);
            match impersonate_remote(&*authorizer, requester, req.headers()).await {
                Ok(impersonated) => {
                    act_as(&mut req, impersonated);
                    inner.call(req).await
                }
                Err(e) => Ok(impersonation_refused(e)),
            }
        }))
    }
}

// === max in flight ===

/// Bounds the requests served at once, read-only and mutating apart, as kube-apiserver's
/// max-in-flight filter; a request over the bound gets 429 `TooManyRequests` with
/// `Retry-After: 1`. Long-running requests (watches, exec, logs…) are not counted.
#[derive(Clone)]
pub struct MaxInFlightLayer {
    max_read_only: usize,
    max_mutating: usize,
    metrics: Arc<Metrics>,
}

layer_service!(MaxInFlightLayer => MaxInFlightService);

impl<S, B, R> Service<Request<B>> for MaxInFlightService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = futures::future::Either<Either<S::Future, R, S::Error>, Holding<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        let info = req.extensions().get::<RequestInfo>();
        if info.is_some_and(RequestInfo::is_long_running) {
            return Left(pass(self.inner.call(req)));
        }
        let (kind, max) = match info.map(RequestInfo::verb) {
            // As kube-apiserver: get and list are read-only, every other verb mutating.
            Some(Verb::Get | Verb::List) | None => ("readOnly", self.layer.max_read_only),
            Some(_) => ("mutating", self.layer.max_mutating),
        };
        // The in-flight gauge is the count the bound applies to.
        let Some(in_flight) = self.layer.metrics.try_in_flight(kind, max) else {
            self.layer.metrics.rejected_for_in_flight(kind);
            let mut response = status_response(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests, please try again later.",
            );
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Left(answer(response));
        };
        // Counted from here: the inner service is called at once (`poll_ready` readied it),
        // and the count is held until its response.
        Right(Holding {
            inner: self.inner.call(req),
            _in_flight: in_flight,
        })
    }
}

pin_project_lite::pin_project! {
    /// A response future holding its request's place in flight until it completes.
    pub struct Holding<F> {
        #[pin]
        inner: F,
        _in_flight: metrics::InFlight,
    }
}

impl<F: Future> Future for Holding<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

// === authorization ===

/// Authorizes the request ([`RequestInfo`] and the [`UserInfo`] it acts as) with the chain's
/// authorizer; a denial is kube-apiserver's 403 `Status`, with the authorizer's reason after
/// the message when it has one.
#[derive(Clone)]
pub struct AuthorizationLayer {
    authorizer: SharedAuthorizer,
    metrics: Arc<Metrics>,
}

layer_service!(AuthorizationLayer => AuthorizationService);

impl<S, B, R> Service<Request<B>> for AuthorizationService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: From<String>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (Some(info), Some(user)) = (
            req.extensions().get::<RequestInfo>(),
            req.extensions().get::<Arc<UserInfo>>(),
        ) else {
            // Cannot happen behind the earlier layers: deny.
            return answer(unauthorized());
        };
        // An allow from the borrowed attributes first; the owned ones only when needed.
        if let Some(decision) = self.layer.authorizer.allow_now(&info.attributes_ref(user)) {
            self.layer.metrics.authorization(true);
            if let Some(record) = req.extensions().get::<AuditRecord>() {
                record.decision(&decision);
            }
            return pass(self.inner.call(req));
        }
        let attributes = info.attributes(user);
        let decision = self.layer.authorizer.authorize(&attributes);
        self.layer.metrics.authorization(decision.allowed);
        if let Some(record) = req.extensions().get::<AuditRecord>() {
            record.decision(&decision);
        }
        if !decision.allowed {
            tracing::info!(
                user = %attributes.user,
                verb = %attributes.verb,
                resource = %attributes.resource,
                namespace = %attributes.namespace,
                name = %attributes.name,
                path = %attributes.path,
                "forbidden"
            );
            let message = if decision.reason.is_empty() {
                forbidden_message(&attributes)
            } else {
                format!("{}: {}", forbidden_message(&attributes), decision.reason)
            };
            return answer(status_response(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &message,
            ));
        }
        pass(self.inner.call(req))
    }
}

// === metrics ===

/// Counts every request a front end serves and times it, labelled as kube-apiserver labels
/// `apiserver_request_total` and `apiserver_request_duration_seconds` (the request's
/// [`RequestInfo`] parsed here when no inner layer has). Goes around everything: the chain's
/// routes, the issuer's endpoints, health.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    /// Counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> MetricsLayer {
        MetricsLayer { metrics }
    }
}

layer_service!(MetricsLayer => MetricsService);

impl<S, B, R> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Parsed once here, for the labels, and left for the chain's request info layer.
        if req.extensions().get::<RequestInfo>().is_none()
            && let Ok(info) = RequestInfo::parse(req.method(), req.uri().path(), req.uri().query())
        {
            req.extensions_mut().insert(info);
        }
        let series = self.layer.metrics.request_series(&req);
        let start = Instant::now();
        // Called at once (`poll_ready` readied it): only the response is awaited.
        Measured {
            inner: self.inner.call(req),
            layer: self.layer.clone(),
            series,
            start,
        }
    }
}

pin_project_lite::pin_project! {
    /// A response future whose response is counted, with its duration, when it comes.
    pub struct Measured<F> {
        #[pin]
        inner: F,
        layer: Arc<MetricsLayer>,
        series: metrics::RequestSeries,
        start: Instant,
    }
}

impl<F, R, E> Future for Measured<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &output {
            this.layer
                .metrics
                .request(this.series, response.status(), this.start.elapsed());
        }
        Poll::Ready(output)
    }
}
