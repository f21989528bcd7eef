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

use portcullis_authn::chain::audit::AuditRecord;
use portcullis_authn::chain::metrics::Metrics;
use portcullis_authn::chain::{Chain, SharedAuthorizer};
use portcullis_authn::{RequestInfo, UserInfo, Verb};

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
    /// The filter chain every API request passes: authentication, audit, impersonation,
    /// max-in-flight and authorization.
    pub chain: Arc<Chain>,
    /// The chain's authorizer, for the checks a handler makes itself (a PUT that creates).
    pub authz: SharedAuthorizer,
    /// What is served.
    pub registry: Arc<Registry>,
    /// Metrics of every route.
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
///
/// Health and version are public; every other route is behind the filter chain
/// ([`Chain::layer`]), so no handler is reached without authentication and authorization, and
/// a handler finds the request's [`RequestInfo`] and [`UserInfo`] in its extensions.
pub fn app(state: AppState) -> Router {
    let chain = state.chain.clone();
    protected_routes(state.clone())
        .layer(chain.layer())
        .merge(public_routes(state))
}

/// Health and version: served to anyone.
fn public_routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .with_state(state)
}

/// Every other route: the API's handlers, which [`app`] puts behind the filter chain.
pub(crate) fn protected_routes(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/openapi/v3", get(openapi))
        .route("/openapi/v3/{*rest}", get(openapi))
        .route("/api", any(discovery_core))
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

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(http::header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
        app.metrics.render(),
    )
        .into_response()
}

async fn discovery_core(req: Request) -> Response {
    match req.uri().path() {
        "/api" => axum::Json(discovery::core_versions()).into_response(),
        "/api/v1" => axum::Json(discovery::core_resources()).into_response(),
        _ => ApiError::path_not_found().into_response(),
    }
}

/// `/openapi/v3` (the index of group documents) and `/openapi/v3/apis/GROUP/VERSION`.
async fn openapi(State(app): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
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

fn parse_query(uri: &http::Uri) -> Query {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn apis(State(app): State<AppState>, req: Request) -> Response {
    match serve_apis(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
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
    let media = body::media_type(&parts.headers);
    let bytes = body::read_bounded(&parts.headers, body, app.limits.max_body_bytes).await?;
    // kubectl sends reviews as protobuf (and accepts JSON back).
    let object = if media == protobuf::MEDIA_TYPE {
        protobuf::review_to_json(&rt.kind, &bytes)?
    } else {
        body::parse_object(&bytes, &media, app.limits.max_json_depth)?
    };
    let answered = review.review(&user, object).await?;
    // Some answers carry a credential once (a pulling cluster's key): never cached.
    Ok((
        StatusCode::CREATED,
        [(http::header::CACHE_CONTROL, "no-store")],
        axum::Json(answered),
    )
        .into_response())
}

/// `POST /apis/portcullis.dev/v1alpha1/users/NAME/password`: sets a new random password for
/// a local user and revokes the user's sessions and refresh tokens. Authorized as `create` on
/// `users/password` (as a TokenRequest is `create` on `serviceaccounts/token`); the answer
/// carries the new password once.
async fn reset_password(
    app: &AppState,
    parts: &http::request::Parts,
    name: &str,
) -> Result<Response, ApiError> {
    if parts.method != Method::POST {
        return Err(ApiError::method_not_allowed(&parts.method));
    }
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

/// The JSON body (at most 8 KiB) of a POST to a connector subresource.
async fn small_json_post(
    app: &AppState,
    parts: &http::request::Parts,
    body: Body,
) -> Result<serde_json::Value, ApiError> {
    if parts.method != Method::POST {
        return Err(ApiError::method_not_allowed(&parts.method));
    }
    let bytes = body::read_bounded(&parts.headers, body, 8 * 1024).await?;
    body::parse_object(&bytes, "application/json", app.limits.max_json_depth)
}

/// `POST /apis/portcullis.dev/v1alpha1/connectors/NAME/bindpassword` with
/// `{"password": "…"}`: seals the LDAP service account's password as the secret the
/// connector's `bindPasswordRef` names, or an upstream OIDC connector's client secret as the
/// secret its `clientSecretRef` names (authorized as `create` on `connectors/bindpassword`).
/// The password is never part of the object and never answered.
async fn set_bind_password(
    app: &AppState,
    parts: &http::request::Parts,
    body: Body,
    name: &str,
) -> Result<Response, ApiError> {
    let object = small_json_post(app, parts, body).await?;
    let Some(password) = object.get("password").and_then(serde_json::Value::as_str) else {
        return Err(ApiError::bad_request(
            "send {\"password\": \"…\"}: the service account's bind password",
        ));
    };
    if password.is_empty() || password.len() > portcullis_oidc::MAX_SECRET_LEN {
        return Err(ApiError::bad_request(format!(
            "the bind password must be 1 to {} bytes",
            portcullis_oidc::MAX_SECRET_LEN
        )));
    }
    let key = portcullis_store::keys::object(portcullis_model::GROUP, "connectors", "", name);
    let stored = app
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::from_store(e, portcullis_model::GROUP, "connectors", name))?
        .ok_or_else(|| {
            ApiError::from_store(
                portcullis_store::StoreError::NotFound(name.to_owned()),
                portcullis_model::GROUP,
                "connectors",
                name,
            )
        })?;
    let connector: portcullis_model::Connector = serde_json::from_slice(&stored.value)
        .map_err(|e| ApiError::internal(format!("stored connector {name:?}: {e}")))?;
    let reference = match connector.spec.type_ {
        portcullis_model::ConnectorType::Ldap => connector
            .spec
            .ldap
            .as_ref()
            .and_then(|l| l.bind_password_ref.clone()),
        portcullis_model::ConnectorType::Oidc => connector
            .spec
            .oidc
            .as_ref()
            .and_then(|o| o.client_secret_ref.clone()),
    };
    let Some(reference) = reference else {
        return Err(ApiError::bad_request(format!(
            "connector {name:?} has no spec.ldap.bindPasswordRef (or spec.oidc.clientSecretRef): set it first"
        )));
    };
    let secret = secrecy::SecretString::from(password.to_owned());
    app.provider
        .put_secret(&reference.name, &reference.key, &secret)
        .await
        .map_err(|e| ApiError::internal(format!("sealing the bind password: {e}")))?;
    Ok((
        StatusCode::CREATED,
        [(http::header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "apiVersion": format!("{}/{}", portcullis_model::GROUP, portcullis_model::VERSION),
            "kind": "ConnectorBindPassword",
            "metadata": { "name": name },
            "secretRef": { "name": reference.name, "key": reference.key },
        })),
    )
        .into_response())
}

/// `POST /apis/portcullis.dev/v1alpha1/connectors/NAME/test` with `{"username": "…",
/// "password": "…"}`: logs the user in through the connector as the issuer would (authorized
/// as `create` on `connectors/test`) and answers the identity that would be issued, or why
/// not, and every LDAP operation made. Nothing is issued; the password is not kept.
async fn test_connector(
    app: &AppState,
    parts: &http::request::Parts,
    body: Body,
    name: &str,
) -> Result<Response, ApiError> {
    let object = small_json_post(app, parts, body).await?;
    let field = |f: &str| object.get(f).and_then(serde_json::Value::as_str);
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return Err(ApiError::bad_request(
            "send {\"username\": \"…\", \"password\": \"…\"}",
        ));
    };
    let connectors = app.provider.connectors();
    let Some(connector) = connectors.get(name) else {
        return Err(ApiError::bad_request(format!(
            "connector {name:?} is not serving logins: see its Ready condition (portcullis get connector {name} -o yaml)"
        )));
    };
    let mut trace = portcullis_connectors::Trace::default();
    let password = secrecy::SecretString::from(password.to_owned());
    let outcome = connector.login(username, &password, &mut trace).await;
    let operations: Vec<String> = trace.operations.iter().map(ToString::to_string).collect();
    let (identity, error) = match outcome {
        Ok(Some(user)) => (
            json!({
                "subject": portcullis_connectors::subject(name, &user.user_id),
                "userID": user.user_id,
                "username": user.username,
                "name": user.name,
                "email": user.email,
                "emailVerified": user.email_verified,
                "groups": user.groups,
            }),
            serde_json::Value::Null,
        ),
        Ok(None) => (serde_json::Value::Null, serde_json::Value::Null),
        Err(e) => (serde_json::Value::Null, json!(e.to_string())),
    };
    Ok((
        StatusCode::CREATED,
        [(http::header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "apiVersion": format!("{}/{}", portcullis_model::GROUP, portcullis_model::VERSION),
            "kind": "ConnectorTest",
            "metadata": { "name": name },
            "operations": operations,
            "identity": identity,
            "error": error,
        })),
    )
        .into_response())
}

async fn serve_apis(app: &AppState, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // Both are set by the filter chain in front of this handler; without them, nothing.
    let (Some(info), Some(user)) = (
        parts.extensions.get::<RequestInfo>().cloned(),
        parts.extensions.get::<Arc<UserInfo>>().cloned(),
    ) else {
        return Err(ApiError::unauthorized());
    };
    // Discovery documents are non-resource paths.
    if !info.is_resource_request() {
        let segments: Vec<&str> = parts
            .uri
            .path()
            .trim_start_matches("/apis")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        return match segments.as_slice() {
            [] => Ok(axum::Json(discovery::groups(&app.registry)).into_response()),
            [group] => discovery::api_group(&app.registry, group)
                .map(|d| axum::Json(d).into_response())
                .ok_or_else(ApiError::path_not_found),
            [group, version] => discovery::resources(&app.registry, group, version)
                .map(|d| axum::Json(d).into_response())
                .ok_or_else(ApiError::path_not_found),
            _ => Err(ApiError::path_not_found()),
        };
    }
    // RESOURCE[/NAME[/SUBRESOURCE]]: anything deeper is no path of this API.
    if info.parts().count() > 3 {
        return Err(ApiError::path_not_found());
    }
    let (group, version) = (info.api_group(), info.api_version());
    let (namespace, plural, name, subresource) = (
        info.namespace(),
        info.resource(),
        info.name(),
        info.subresource(),
    );
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
    let connector_sub = |s: &str| {
        subresource == s
            && group == portcullis_model::GROUP
            && plural == "connectors"
            && !name.is_empty()
    };
    let bind_password = connector_sub("bindpassword");
    let connector_test = connector_sub("test");
    if !(subresource.is_empty()
        || subresource == "status" && rt.has_status
        || password_reset
        || bind_password
        || connector_test)
    {
        return Err(ApiError::path_not_found());
    }
    if password_reset {
        return reset_password(app, &parts, name).await;
    }
    if bind_password {
        return set_bind_password(app, &parts, body, name).await;
    }
    if connector_test {
        return test_connector(app, &parts, body, name).await;
    }
    if let Some(review) = &rt.review {
        return serve_review(
            app,
            &parts,
            body,
            rt,
            review.as_ref(),
            UserInfo::clone(&user),
        )
        .await;
    }
    let query = parse_query(&parts.uri);
    let target = Target {
        rt,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        subresource: subresource.to_owned(),
        user: &user,
    };
    let named = !name.is_empty();
    // At the audit policy's Request level the event records the object as sent.
    let body = match parts.extensions.get::<AuditRecord>() {
        Some(record)
            if record.wants_request_object()
                && matches!(info.verb(), Verb::Create | Verb::Update | Verb::Patch) =>
        {
            let bytes = body::read_bounded(&parts.headers, body, app.limits.max_body_bytes).await?;
            let media = body::media_type(&parts.headers);
            if let Ok(object) = body::parse_object(&bytes, &media, app.limits.max_json_depth) {
                record.request_object(&object);
            }
            Body::from(bytes)
        }
        _ => body,
    };
    match (info.verb(), named) {
        (Verb::Watch, false) => objects::watch(app, &target, &query).await,
        (Verb::List, false) => objects::list(app, &target, &query, &parts.headers).await,
        (Verb::Get, true) => objects::get(app, &target).await,
        (Verb::Create, false) => objects::create(app, &target, &parts.headers, body).await,
        (Verb::Update, true) => objects::update(app, &target, &parts.headers, body).await,
        (Verb::Patch, true) => objects::patch(app, &target, &parts.headers, body).await,
        (Verb::Delete, true) => objects::delete(app, &target, &parts.headers, body).await,
        // Other verbs (a POST to a name, a collection DELETE, …) are not served.
        _ => Err(ApiError::method_not_allowed(&parts.method)),
    }
}
