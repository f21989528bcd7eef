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

    fn audit_layer(&self) -> AuditLayer {
        AuditLayer {
            log: self.audit.clone(),
        }
    }

    fn max_in_flight_layer(&self) -> MaxInFlightLayer {
        MaxInFlightLayer {
            max_read_only: self.max_read_only,
            max_mutating: self.max_mutating,
            metrics: self.metrics.clone(),
        }
    }

    /// The settings of the chain's layers (each made here, whichever form the chain takes).
    fn steps(&self) -> Steps {
        Steps {
            authentication: self.authentication_layer(),
            audit: self.audit_layer(),
            impersonation: ImpersonationLayer {
                authorizer: self.authorizer.clone(),
            },
            max_in_flight: self.max_in_flight_layer(),
            authorization: AuthorizationLayer {
                authorizer: self.authorizer.clone(),
                metrics: self.metrics.clone(),
            },
        }
    }

    /// The chain's layers, in kube-apiserver's order, as one service: each request goes
    /// through the steps of [`RequestInfoLayer`], [`AuthenticationLayer`], [`AuditLayer`],
    /// [`ImpersonationLayer`], [`MaxInFlightLayer`] and [`AuthorizationLayer`] in turn, exactly
    /// as through those layers stacked, with their settings behind one reference count (a
    /// router clones its service for every request) and one future around the handler's.
    pub fn layer(&self) -> ChainLayer {
        ChainLayer {
            steps: Arc::new(self.steps()),
        }
    }

    /// The same chain as [`Chain::layer`], as its six layers stacked (the first is the
    /// outermost): for a front end that puts a layer of its own between two of them.
    pub fn layers<S>(&self) -> impl Layer<S, Service = StackedChainService<S>> + Clone + use<S> {
        let steps = self.steps();
        ServiceBuilder::new()
            .layer(RequestInfoLayer)
            .layer(steps.authentication)
            .layer(steps.audit)
            .layer(steps.impersonation)
            .layer(steps.max_in_flight)
            .layer(steps.authorization)
            .into_inner()
    }

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
            .layer(self.audit_layer())
            .layer(RemoteImpersonationLayer {
                authorizer: impersonation,
            })
            .layer(self.max_in_flight_layer())
            .into_inner()
    }
}

/// The service [`Chain::forwarding_layer`] makes of a handler.
pub type ForwardingChainService<S> = RequestInfoService<
    AuthenticationService<AuditService<RemoteImpersonationService<MaxInFlightService<S>>>>,
>;

/// The service [`Chain::layers`] makes of a handler.
pub type StackedChainService<S> = RequestInfoService<
    AuthenticationService<
        AuditService<ImpersonationService<MaxInFlightService<AuthorizationService<S>>>>,
    >,
>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a step of the chain does with a request: hands it on (`Ok`), or answers it.
type Step<B, R> = Result<Request<B>, Response<R>>;

// === the whole chain ===

/// The layer of [`Chain::layer`].
#[derive(Clone)]
pub struct ChainLayer {
    steps: Arc<Steps>,
}

/// The settings of the chain's layers, in their order (request info has none).
struct Steps {
    authentication: AuthenticationLayer,
    audit: AuditLayer,
    impersonation: ImpersonationLayer,
    max_in_flight: MaxInFlightLayer,
    authorization: AuthorizationLayer,
}

impl<S> Layer<S> for ChainLayer {
    type Service = ChainService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ChainService {
            inner,
            steps: self.steps.clone(),
        }
    }
}

/// The service [`Chain::layer`] makes of a handler.
#[derive(Clone)]
pub struct ChainService<S> {
    inner: S,
    steps: Arc<Steps>,
}

impl Steps {
    /// The steps after authentication, up to the handler called at once: the response's
    /// future, which holds the request's place in flight and writes its audit event.
    fn authenticated<S, B, R>(
        &self,
        inner: &mut S,
        mut req: Request<B>,
    ) -> ChainFuture<S::Future, R, S::Error>
    where
        S: Service<Request<B>, Response = Response<R>>,
        R: From<String>,
    {
        let audited = self.audit.begin(&mut req);
        let admitted = self.impersonation.step(req).and_then(|req| {
            let in_flight = self.max_in_flight.admit(&req)?;
            self.authorization.check(&req)?;
            Ok((req, in_flight))
        });
        let (inner, in_flight) = match admitted {
            // Called right away: `poll_ready` readied this very service.
            Ok((req, in_flight)) => (pass(inner.call(req)), in_flight),
            Err(refusal) => (answer(refusal), None),
        };
        ChainFuture {
            inner,
            _in_flight: in_flight,
            audited,
        }
    }
}

impl<S, B, R> Service<Request<B>> for ChainService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
    R: From<String> + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    /// Authenticated at once (a client certificate, a cached token's identity): the steps'
    /// future, with no allocation; otherwise the verification and the steps after it, boxed.
    type Future = futures::future::Either<
        ChainFuture<S::Future, R, S::Error>,
        BoxFuture<Result<Response<R>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        let req = match RequestInfoLayer::step(req) {
            Ok(req) => req,
            Err(refusal) => return Left(ChainFuture::answer(refusal)),
        };
        match self.steps.authentication.now(req) {
            Authenticating::Decided(Ok(req)) => {
                Left(self.steps.authenticated(&mut self.inner, req))
            }
            Authenticating::Decided(Err(refusal)) => Left(ChainFuture::answer(refusal)),
            Authenticating::Verify(req) => {
                let steps = self.steps.clone();
                let mut inner = take(&mut self.inner);
                Right(Box::pin(async move {
                    let req = match steps.authentication.verify(req).await {
                        Ok(req) => req,
                        Err(refusal) => return Ok(refusal),
                    };
                    steps.authenticated(&mut inner, req).await
                }))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of a request that passed authentication: the handler's (or the
    /// refusal of a later step), holding the request's place in flight until it completes,
    /// and writing the request's audit event when its response comes.
    pub struct ChainFuture<F, R, E> {
        #[pin]
        inner: Either<F, R, E>,
        _in_flight: Option<metrics::InFlight>,
        audited: Option<audit::Audited>,
    }
}

impl<F, R, E> ChainFuture<F, R, E> {
    /// A refusal, before authentication or by it (no audit event: as [`AuditLayer`] behind
    /// the authentication layer).
    fn answer(response: Response<R>) -> ChainFuture<F, R, E> {
        ChainFuture {
            inner: answer(response),
            _in_flight: None,
            audited: None,
        }
    }
}

impl<F, R, E> Future for ChainFuture<F, R, E>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(audited)) = (&output, this.audited.take()) {
            audited.write(response.status());
        }
        Poll::Ready(output)
    }
}

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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match RequestInfoLayer::step(req) {
            // Called right away: `poll_ready` readied this very service.
            Ok(req) => pass(self.inner.call(req)),
            Err(refusal) => answer(refusal),
        }
    }
}

impl RequestInfoLayer {
    /// The request with its [`RequestInfo`], or the 400 of a path that cannot be read.
    fn step<B, R: From<String>>(mut req: Request<B>) -> Step<B, R> {
        // Parsed already by [`MetricsLayer`] when it is in front.
        if req.extensions().get::<RequestInfo>().is_none() {
            match RequestInfo::parse(req.method(), req.uri().path(), req.uri().query()) {
                Ok(info) => {
                    req.extensions_mut().insert(info);
                }
                Err(e) => {
                    return Err(status_response(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &e.to_string(),
                    ));
                }
            }
        }
        Ok(req)
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures::future::Either::{Left, Right};
        match self.layer.now(req) {
            // Called right away: `poll_ready` readied this very service.
            Authenticating::Decided(Ok(req)) => Left(pass(self.inner.call(req))),
            Authenticating::Decided(Err(refusal)) => Left(answer(refusal)),
            Authenticating::Verify(req) => {
                let layer = self.layer.clone();
                let mut inner = take(&mut self.inner);
                Right(Box::pin(async move {
                    let req = match layer.verify(req).await {
                        Ok(req) => req,
                        Err(refusal) => return Ok(refusal),
                    };
                    inner.call(req).await
                }))
            }
        }
    }
}

/// Where authentication stands once asked at once.
enum Authenticating<B, R> {
    /// Decided: the request as its identity, or the 401.
    Decided(Step<B, R>),
    /// Its credential must be verified first ([`AuthenticationLayer::verify`]).
    Verify(Request<B>),
}

impl AuthenticationLayer {
    /// Authenticates `req` if that needs no waiting (a client certificate, a cached token's
    /// identity).
    fn now<B, R: From<String>>(&self, mut req: Request<B>) -> Authenticating<B, R> {
        let Some(outcome) = self.authenticator.authenticate_now(&credentials(&req)) else {
            return Authenticating::Verify(req);
        };
        Authenticating::Decided(self.admit(outcome).map(|user| {
            authenticated_as(&mut req, user);
            req
        }))
    }

    /// Authenticates `req`, verifying its credential.
    async fn verify<B, R: From<String>>(&self, mut req: Request<B>) -> Step<B, R> {
        let outcome = self.authenticator.authenticate(&credentials(&req)).await;
        let user = self.admit(outcome)?;
        authenticated_as(&mut req, user);
        Ok(req)
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
        let Some(audited) = self.layer.begin(&mut req) else {
            return futures::future::Either::Right(self.inner.call(req));
        };
        let mut inner = take(&mut self.inner);
        futures::future::Either::Left(Box::pin(async move {
            let response = inner.call(req).await?;
            audited.write(response.status());
            Ok(response)
        }))
    }
}

impl AuditLayer {
    /// The audit record of `req`, put in its extensions for the later steps, and where its
    /// event goes once the response is known; `None` without an audit log.
    fn begin<B>(&self, req: &mut Request<B>) -> Option<audit::Audited> {
        let log = self.log.clone()?;
        let record = AuditRecord::new(req, log.policy());
        req.extensions_mut().insert(record.clone());
        Some(audit::Audited { log, record })
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.layer.step(req) {
            Ok(req) => pass(self.inner.call(req)),
            Err(refusal) => answer(refusal),
        }
    }
}

impl ImpersonationLayer {
    /// The request as the identity it impersonates (if it does), or the refusal.
    fn step<B, R: From<String>>(&self, mut req: Request<B>) -> Step<B, R> {
        let impersonating = req.headers().keys().any(is_impersonation_header);
        if !impersonating {
            return Ok(req);
        }
        let Some(requester) = req.extensions().get::<Arc<UserInfo>>() else {
            // Cannot happen behind authentication: deny.
            return Err(unauthorized());
        };
        let requester = UserInfo::clone(requester);
        match impersonate(&*self.authorizer, requester, req.headers()) {
            Ok(impersonated) => {
                act_as(&mut req, impersonated);
                Ok(req)
            }
            Err(e) => Err(impersonation_refused(e)),
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
        match self.layer.admit(&req) {
            Err(refusal) => Left(answer(refusal)),
            Ok(None) => Left(pass(self.inner.call(req))),
            // Counted from here: the inner service is called at once (`poll_ready` readied
            // it), and the count is held until its response.
            Ok(Some(in_flight)) => Right(Holding {
                inner: self.inner.call(req),
                _in_flight: in_flight,
            }),
        }
    }
}

impl MaxInFlightLayer {
    /// The place in flight `req` holds until its response (none for a long-running request),
    /// or the 429 when the bound is reached.
    fn admit<B, R: From<String>>(
        &self,
        req: &Request<B>,
    ) -> Result<Option<metrics::InFlight>, Response<R>> {
        let info = req.extensions().get::<RequestInfo>();
        if info.is_some_and(RequestInfo::is_long_running) {
            return Ok(None);
        }
        let (kind, max) = match info.map(RequestInfo::verb) {
            // As kube-apiserver: get and list are read-only, every other verb mutating.
            Some(Verb::Get | Verb::List) | None => ("readOnly", self.max_read_only),
            Some(_) => ("mutating", self.max_mutating),
        };
        // The in-flight gauge is the count the bound applies to.
        if let Some(in_flight) = self.metrics.try_in_flight(kind, max) {
            return Ok(Some(in_flight));
        }
        self.metrics.rejected_for_in_flight(kind);
        let mut response = status_response(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        Err(response)
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
        match self.layer.check(&req) {
            Ok(()) => pass(self.inner.call(req)),
            Err(refusal) => answer(refusal),
        }
    }
}

impl AuthorizationLayer {
    /// Whether the request's identity may make it: `Ok`, or kube-apiserver's 403.
    fn check<B, R: From<String>>(&self, req: &Request<B>) -> Result<(), Response<R>> {
        let (Some(info), Some(user)) = (
            req.extensions().get::<RequestInfo>(),
            req.extensions().get::<Arc<UserInfo>>(),
        ) else {
            // Cannot happen behind the earlier layers: deny.
            return Err(unauthorized());
        };
        // An allow from the borrowed attributes first; the owned ones only when needed. The
        // reason is written only for an audit record.
        let record = req.extensions().get::<AuditRecord>();
        let attributes = info.attributes_ref(user);
        let allowed_now = match record {
            None => self.authorizer.allows_now(&attributes),
            Some(record) => match self.authorizer.allow_now(&attributes) {
                Some(decision) => {
                    record.decision(&decision);
                    true
                }
                None => false,
            },
        };
        if allowed_now {
            self.metrics.authorization(true);
            return Ok(());
        }
        let attributes = info.attributes(user);
        let decision = self.authorizer.authorize(&attributes);
        self.metrics.authorization(decision.allowed);
        if let Some(record) = record {
            record.decision(&decision);
        }
        if decision.allowed {
            return Ok(());
        }
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
        Err(status_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &message,
        ))
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
