//! The management API: Kubernetes-style REST under `/apis/GROUP/VERSION/...`, discovery,
//! health, metrics. Every request is authenticated and then authorized before it is served.

pub mod body;
pub mod discovery;
pub mod objects;
pub mod openapi;
pub mod protobuf;
pub mod registry;
pub mod selector;
pub mod status;
pub mod table;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{Method, StatusCode};
use portcullis_store::Store;
use serde_json::json;

use crate::authn::{AuthenticatorChain, UserInfo};
use crate::authz::{Authorizer, RequestAttributes, forbidden_message};
use crate::metrics::Metrics;
use objects::Target;
use registry::Registry;
use status::ApiError;

/// Query parameters of a request (last value wins).
pub type Query = HashMap<String, String>;

/// Bounds on request input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Deepest JSON nesting.
    pub max_json_depth: usize,
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Who is asking.
    pub authn: AuthenticatorChain,
    /// May they.
    pub authz: Arc<dyn Authorizer>,
    /// What is served.
    pub registry: Arc<Registry>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Input bounds.
    pub limits: Limits,
    /// Set once start-up has finished.
    pub ready: Arc<AtomicBool>,
    /// Turns true when the server shuts down: long-running responses (watches) end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The issuer, for the `users/password` subresource (password resets).
    pub provider: portcullis_oidc::Provider,
}

/// The router of the management plane. Built apart from `main` so tests call it in-process.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/openapi/v3", get(openapi))
        .route("/openapi/v3/{*rest}", get(openapi))
        .route("/api", get(discovery_core))
        .route("/api/{*rest}", any(discovery_core))
        .route("/apis", any(apis))
        .route("/apis/{*rest}", any(apis))
        .fallback(|| async { ApiError::path_not_found() })
        .with_state(state)
}

async fn readyz(State(app): State<AppState>) -> Response {
    if app.ready.load(Ordering::Acquire) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}

async fn version() -> Response {
    axum::Json(json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("v{}", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
    .into_response()
}

async fn metrics(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(e) = authorize_path(&app, &parts) {
        return e.into_response();
    }
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

async fn discovery_core(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(e) = authorize_path(&app, &parts) {
        return e.into_response();
    }
    match parts.uri.path() {
        "/api" => axum::Json(discovery::core_versions()).into_response(),
        "/api/v1" => axum::Json(discovery::core_resources()).into_response(),
        _ => ApiError::path_not_found().into_response(),
    }
}

/// `/openapi/v3` (the index of group documents) and `/openapi/v3/apis/GROUP/VERSION`.
async fn openapi(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(e) = authorize_path(&app, &parts) {
        return e.into_response();
    }
    let requested = parts
        .uri
        .path()
        .trim_start_matches("/openapi/v3")
        .trim_matches('/');
    let mut index = serde_json::Map::new();
    for (group, versions) in app.registry.groups() {
        for version in versions {
            let doc_path = format!("apis/{group}/{version}");
            if requested == doc_path {
                let base =
                    if group == portcullis_model::GROUP && version == portcullis_model::VERSION {
                        portcullis_model::openapi_document()
                    } else {
                        openapi::generic_document(&app.registry, &group, &version)
                    };
                return axum::Json(openapi::group_version_document(
                    &app.registry,
                    &group,
                    &version,
                    base,
                ))
                .into_response();
            }
            index.insert(
                doc_path.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{doc_path}") }),
            );
        }
    }
    if requested.is_empty() {
        axum::Json(json!({ "paths": index })).into_response()
    } else {
        ApiError::path_not_found().into_response()
    }
}

/// Authenticates a request, then applies `Impersonate-*` headers if the requester may;
/// `Err` is the 401, 400 or 403 to send.
fn authenticate(app: &AppState, parts: &http::request::Parts) -> Result<UserInfo, ApiError> {
    let user = match app.authn.authenticate(parts) {
        Ok(Some(user)) => user,
        Ok(None) => return Err(ApiError::unauthorized()),
        Err(reason) => {
            tracing::info!(%reason, "authentication failed");
            return Err(ApiError::unauthorized());
        }
    };
    crate::impersonation::resolve(&*app.authz, user, &parts.headers).map_err(
        |refused| match refused {
            crate::impersonation::Refused::BadRequest(message) => ApiError::bad_request(message),
            crate::impersonation::Refused::Forbidden(attrs) => {
                tracing::info!(
                    user = %attrs.user.name,
                    resource = %attrs.resource,
                    name = %attrs.name,
                    "impersonation forbidden"
                );
                app.metrics.forbidden.fetch_add(1, Ordering::Relaxed);
                ApiError::forbidden(forbidden_message(&attrs))
            }
        },
    )
}

fn authorize(app: &AppState, attrs: &RequestAttributes) -> Result<(), ApiError> {
    let decision = app.authz.authorize(attrs);
    if decision.allowed {
        if !matches!(attrs.verb.as_str(), "get" | "list" | "watch") {
            // An audit line for every allowed change; reads are too many to log.
            tracing::info!(
                user = %attrs.user.name,
                verb = %attrs.verb,
                resource = %attrs.resource,
                namespace = %attrs.namespace,
                name = %attrs.name,
                reason = %decision.reason,
                "allowed"
            );
        }
        Ok(())
    } else {
        tracing::info!(
            user = %attrs.user.name,
            verb = %attrs.verb,
            resource = %attrs.resource,
            namespace = %attrs.namespace,
            name = %attrs.name,
            path = %attrs.path,
            "forbidden"
        );
        app.metrics.forbidden.fetch_add(1, Ordering::Relaxed);
        // As kube-apiserver: the authorizer's reason, if any, follows the message.
        let message = if decision.reason.is_empty() {
            forbidden_message(attrs)
        } else {
            format!("{}: {}", forbidden_message(attrs), decision.reason)
        };
        Err(ApiError::forbidden(message))
    }
}

/// Authenticates and authorizes a non-resource request (discovery, metrics).
fn authorize_path(app: &AppState, parts: &http::request::Parts) -> Result<UserInfo, ApiError> {
    let user = authenticate(app, parts)?;
    let attrs = RequestAttributes {
        user: user.clone(),
        verb: parts.method.as_str().to_ascii_lowercase(),
        resource_request: false,
        api_group: String::new(),
        api_version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        path: parts.uri.path().to_owned(),
    };
    authorize(app, &attrs)?;
    Ok(user)
}

fn parse_query(uri: &http::Uri) -> Query {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn apis(State(app): State<AppState>, req: Request) -> Response {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let response = match serve_apis(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    app.metrics.count_status(response.status());
    response
}

/// POST of a review kind: authorized as `create` on it, answered, never stored.
async fn serve_review(
    app: &AppState,
    parts: &http::request::Parts,
    body: Body,
    rt: &registry::ResourceType,
    review: &dyn registry::Review,
    user: UserInfo,
) -> Result<Response, ApiError> {
    if parts.method != Method::POST {
        return Err(ApiError::method_not_allowed(&parts.method));
    }
    let attrs = RequestAttributes {
        user,
        verb: "create".into(),
        resource_request: true,
        api_group: rt.group.clone(),
        api_version: rt.version.clone(),
        resource: rt.plural.clone(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        path: parts.uri.path().to_owned(),
    };
    authorize(app, &attrs)?;
    let media = body::media_type(&parts.headers);
    let bytes = body::read_bounded(&parts.headers, body, app.limits.max_body_bytes).await?;
    // kubectl sends reviews as protobuf (and accepts JSON back).
    let object = if media == protobuf::MEDIA_TYPE {
        protobuf::review_to_json(&rt.kind, &bytes)?
    } else {
        body::parse_object(&bytes, &media, app.limits.max_json_depth)?
    };
    let answered = review.review(&attrs.user, object)?;
    Ok((StatusCode::CREATED, axum::Json(answered)).into_response())
}

/// `POST /apis/portcullis.dev/v1alpha1/users/NAME/password`: sets a new random password for
/// a local user and revokes the user's sessions and refresh tokens. Authorized as `create` on
/// `users/password` (as a TokenRequest is `create` on `serviceaccounts/token`); the answer
/// carries the new password once.
async fn reset_password(
    app: &AppState,
    parts: &http::request::Parts,
    user: UserInfo,
    name: &str,
) -> Result<Response, ApiError> {
    if parts.method != Method::POST {
        return Err(ApiError::method_not_allowed(&parts.method));
    }
    let attrs = RequestAttributes {
        user,
        verb: "create".into(),
        resource_request: true,
        api_group: portcullis_model::GROUP.into(),
        api_version: portcullis_model::VERSION.into(),
        resource: "users".into(),
        subresource: "password".into(),
        namespace: String::new(),
        name: name.to_owned(),
        path: parts.uri.path().to_owned(),
    };
    authorize(app, &attrs)?;
    match app.provider.reset_password(name).await {
        Ok(password) => Ok((
            StatusCode::CREATED,
            [(http::header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({
                "apiVersion": format!("{}/{}", portcullis_model::GROUP, portcullis_model::VERSION),
                "kind": "UserPassword",
                "metadata": { "name": name },
                "password": password,
            })),
        )
            .into_response()),
        Err(portcullis_oidc::Error::UnknownUser(_)) => Err(ApiError::from_store(
            portcullis_store::StoreError::NotFound(name.to_owned()),
            portcullis_model::GROUP,
            "users",
            name,
        )),
        Err(e) => Err(ApiError::internal(format!(
            "password reset of {name:?}: {e}"
        ))),
    }
}

async fn serve_apis(app: &AppState, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path
        .trim_start_matches("/apis")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    // Discovery documents are non-resource paths.
    match segments.as_slice() {
        [] => {
            authorize_path(app, &parts)?;
            return Ok(axum::Json(discovery::groups(&app.registry)).into_response());
        }
        [group] => {
            authorize_path(app, &parts)?;
            return discovery::api_group(&app.registry, group)
                .map(|d| axum::Json(d).into_response())
                .ok_or_else(ApiError::path_not_found);
        }
        [group, version] => {
            authorize_path(app, &parts)?;
            return discovery::resources(&app.registry, group, version)
                .map(|d| axum::Json(d).into_response())
                .ok_or_else(ApiError::path_not_found);
        }
        _ => {}
    }
    let user = authenticate(app, &parts)?;
    let (group, version, rest) = match segments.as_slice() {
        [g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (*ns, rest),
        _ => ("", rest),
    };
    let (plural, name, subresource) = match rest {
        [p] => (*p, "", ""),
        [p, n] => (*p, *n, ""),
        [p, n, s] => (*p, *n, *s),
        _ => return Err(ApiError::path_not_found()),
    };
    let rt = app
        .registry
        .find(group, version, plural)
        .ok_or_else(ApiError::path_not_found)?;
    if !namespace.is_empty() && !rt.namespaced {
        return Err(ApiError::path_not_found());
    }
    if rt.namespaced && !name.is_empty() && namespace.is_empty() {
        return Err(ApiError::path_not_found());
    }
    let password_reset = subresource == "password"
        && group == portcullis_model::GROUP
        && plural == "users"
        && !name.is_empty();
    if !(subresource.is_empty() || subresource == "status" && rt.has_status || password_reset) {
        return Err(ApiError::path_not_found());
    }
    if password_reset {
        return reset_password(app, &parts, user, name).await;
    }
    if let Some(review) = &rt.review {
        return serve_review(app, &parts, body, rt, review.as_ref(), user).await;
    }
    let query = parse_query(&parts.uri);
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&parts.method, name.is_empty()) {
        (&Method::GET, true) if watching => "watch",
        (&Method::GET, true) => "list",
        (&Method::GET, false) => "get",
        (&Method::POST, true) => "create",
        (&Method::PUT, false) => "update",
        (&Method::PATCH, false) => "patch",
        (&Method::DELETE, false) => "delete",
        (m, _) => return Err(ApiError::method_not_allowed(m)),
    };
    let attrs = RequestAttributes {
        user,
        verb: verb.to_owned(),
        resource_request: true,
        api_group: group.to_owned(),
        api_version: version.to_owned(),
        resource: plural.to_owned(),
        subresource: subresource.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        path: path.clone(),
    };
    authorize(app, &attrs)?;
    let target = Target {
        rt,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        subresource: subresource.to_owned(),
        user: &attrs.user,
    };
    let body: Body = body;
    match verb {
        "watch" => objects::watch(app, &target, &query).await,
        "list" => objects::list(app, &target, &query, &parts.headers).await,
        "get" => objects::get(app, &target).await,
        "create" => objects::create(app, &target, &parts.headers, body).await,
        "update" => objects::update(app, &target, &parts.headers, body).await,
        "patch" => objects::patch(app, &target, &parts.headers, body).await,
        _ => objects::delete(app, &target, &parts.headers, body).await,
    }
}
