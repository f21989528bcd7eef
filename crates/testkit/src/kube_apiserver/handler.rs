//! Serving: TLS accept loop, the filter chain in kube-apiserver's order (authentication,
//! impersonation, authorization) and the handlers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::authz::{self, Attributes, Decision};
use super::objects::{self, Cause, Field, Kind, Managed, meta, meta_str, metadata_mut};
use super::{RecordedRequest, Shared, UserInfo, lock, streams};

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;
pub(crate) type Resp = Response<Body>;

const MAX_BODY: usize = 16 << 20;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub(crate) async fn serve(listener: TcpListener, tls: TlsAcceptor, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let tls = tls.clone();
                let shared = shared.clone();
                connections.spawn(async move {
                    let Ok(stream) = tls.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(shared, req).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

// === responses ===

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

pub(crate) fn text_response(status: StatusCode, text: String) -> Resp {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn page_not_found() -> Resp {
    text_response(StatusCode::NOT_FOUND, "404 page not found\n".into())
}

/// A `Status` failure body, as the recordings show them.
pub(crate) fn status_body(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), json!("Status"));
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("metadata".into(), json!({}));
    m.insert("status".into(), json!("Failure"));
    m.insert("message".into(), json!(message));
    if !reason.is_empty() {
        m.insert("reason".into(), json!(reason));
    }
    if let Some(d) = details {
        m.insert("details".into(), d);
    }
    m.insert("code".into(), json!(code));
    Value::Object(m)
}

pub(crate) fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let sc = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(sc, &status_body(code, reason, message, details));
    if code == 403 || code == 401 {
        r.headers_mut().insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    r
}

fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    Value::Object(d)
}

pub(crate) fn not_found(kind: &Kind, name: &str) -> Resp {
    status(
        404,
        "NotFound",
        &format!("{} {name:?} not found", kind.qualified()),
        Some(details(name, kind.group, kind.resource)),
    )
}

fn conflict_modified(kind: &Kind, name: &str) -> Resp {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
            kind.qualified()
        ),
        Some(details(name, kind.group, kind.resource)),
    )
}

fn bad_request(message: &str) -> Resp {
    status(400, "BadRequest", message, None)
}

fn invalid(kind: &Kind, name: &str, causes: &[Cause]) -> Resp {
    // The message lists each distinct cause once (field.ErrorList.ToAggregate), the causes all.
    let mut listed: Vec<String> = Vec::new();
    for c in causes {
        let line = format!("{}: {}", c.field, c.message);
        if !listed.contains(&line) {
            listed.push(line);
        }
    }
    let summary = match listed.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let mut d = match details(name, kind.group, kind.kind) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    d.insert(
        "causes".into(),
        Value::Array(
            causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect(),
        ),
    );
    status(
        422,
        "Invalid",
        &format!("{} {name:?} is invalid: {summary}", kind.qualified_kind()),
        Some(Value::Object(d)),
    )
}

fn method_not_allowed() -> Resp {
    status(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        Some(json!({})),
    )
}

fn resource_not_found() -> Resp {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

fn unsupported_media_type() -> Resp {
    status(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        None,
    )
}

// === request parsing ===

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters: every value of every name, decoded as Go's `url.ParseQuery`.
#[derive(Debug, Default)]
pub(crate) struct Query(BTreeMap<String, Vec<String>>);

impl Query {
    fn parse(raw: &str) -> Query {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.entry(percent_decode(k, true))
                .or_default()
                .push(percent_decode(v, true));
        }
        Query(m)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0.get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }
}

/// Where a request goes: a resource of a served kind, or a non-resource path.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) namespace: String,
    pub(crate) resource: String,
    pub(crate) name: String,
    pub(crate) subresource: String,
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` into a resource target.
fn parse_target(path: &str) -> Option<Target> {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        [api, v, rest @ ..] if api == "api" => (String::new(), v.clone(), rest),
        [apis, g, v, rest @ ..] if apis == "apis" => (g.clone(), v.clone(), rest),
        _ => return None,
    };
    let mut t = Target {
        group,
        version,
        namespace: String::new(),
        resource: String::new(),
        name: String::new(),
        subresource: String::new(),
    };
    let rest: Vec<&String> = rest.iter().filter(|s| !s.is_empty()).collect();
    if rest.is_empty() {
        return Some(t);
    }
    let after_ns: Vec<&String> = match rest.as_slice() {
        [ns_word, ns, r @ ..] if ns_word.as_str() == "namespaces" && !r.is_empty() => {
            // `namespaces/{name}/status|finalize` are subresources of the namespace itself.
            if let [sub] = r
                && Kind::by_resource(&t.group, &t.version, sub).is_none()
                && (sub.as_str() == "status" || sub.as_str() == "finalize")
            {
                t.resource = "namespaces".into();
                t.name = (*ns).clone();
                t.subresource = (*sub).clone();
                return Some(t);
            }
            t.namespace = (*ns).clone();
            r.to_vec()
        }
        other => other.to_vec(),
    };
    match after_ns.as_slice() {
        [] => return Some(t),
        [r] => t.resource = (*r).clone(),
        [r, n] => {
            t.resource = (*r).clone();
            t.name = (*n).clone();
        }
        [r, n, s] => {
            t.resource = (*r).clone();
            t.name = (*n).clone();
            t.subresource = (*s).clone();
        }
        _ => return None,
    }
    if t.resource == "namespaces" && t.namespace.is_empty() && !t.name.is_empty() {
        // GET /api/v1/namespaces/{name}: the namespace is the object (A163: authorized in it).
    }
    Some(t)
}

fn verb_of(method: &Method, t: &Target, query: &Query) -> &'static str {
    let named = !t.name.is_empty();
    match *method {
        Method::GET | Method::HEAD if query.flag("watch") => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    }
}

// === authentication and impersonation ===

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

fn with_authenticated(mut user: UserInfo) -> UserInfo {
    if !user.groups.iter().any(|g| g == "system:authenticated") {
        user.groups.push("system:authenticated".into());
    }
    user
}

enum AuthnError {
    Unauthorized,
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<UserInfo, AuthnError> {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(UserInfo::new(
            "system:anonymous",
            &["system:unauthenticated"],
        ));
    };
    // As the bearer token authenticator: the scheme is case-insensitive.
    let token = auth
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or(AuthnError::Unauthorized)?;
    shared
        .config
        .tokens
        .iter()
        .find(|(t, _)| t == token)
        .map(|(_, u)| with_authenticated(u.clone()))
        .ok_or(AuthnError::Unauthorized)
}

fn decide(shared: &Shared, a: &Attributes) -> Decision {
    if let Some(custom) = &shared.config.authorizer
        && let Some(d) = custom(a)
    {
        return d;
    }
    // kube-apiserver's privileged-group authorizer: system:masters may do anything, no reason.
    if a.user.groups.iter().any(|g| g == "system:masters") {
        return Decision::allow("");
    }
    if a.verb == "impersonate" && shared.config.impersonators.contains(&a.user.username) {
        return Decision::allow("impersonator allowed by the double's configuration");
    }
    let store = lock(&shared.store);
    authz::rbac(&store, a)
}

/// Applies `Impersonate-*` headers as kube-apiserver's impersonation filter does (A133-A147).
fn impersonate(
    shared: &Shared,
    path: &str,
    headers: &HeaderMap,
    user: UserInfo,
) -> Result<UserInfo, Resp> {
    let users = header_values(headers, "impersonate-user");
    let groups = header_values(headers, "impersonate-group");
    let uids = header_values(headers, "impersonate-uid");
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut extra_order: Vec<(String, String)> = Vec::new();
    for (name, value) in headers.iter() {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key = percent_decode(key, false).to_ascii_lowercase();
            let value = value.to_str().unwrap_or("").to_owned();
            extra.entry(key.clone()).or_default().push(value.clone());
            extra_order.push((key, value));
        }
    }
    if users.is_empty() && groups.is_empty() && uids.is_empty() && extra.is_empty() {
        return Ok(user);
    }
    let Some(username) = users.first().cloned() else {
        let what = if let Some(g) = groups.first() {
            format!("{{Group  {g}    }}")
        } else if let Some(u) = uids.first() {
            format!("{{UID  {u}  authentication.k8s.io/v1  }}")
        } else {
            let (k, v) = extra_order.first().cloned().unwrap_or_default();
            format!("{{UserExtra  {v}  authentication.k8s.io/v1  {k}}}")
        };
        return Err(text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Internal Server Error: {path:?}: requested [{what}] without impersonating a user\n"
            ),
        ));
    };
    let check =
        |resource: &str, group: &str, sub: &str, name: &str, ns: &str| -> Result<(), Resp> {
            let a = Attributes {
                user: user.clone(),
                verb: "impersonate".into(),
                resource_request: true,
                api_group: group.into(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: ns.into(),
                name: name.into(),
                path: path.into(),
            };
            if decide(shared, &a).allowed {
                Ok(())
            } else {
                Err(status(
                    403,
                    "Forbidden",
                    &authz::forbidden_message(&a),
                    Some(details(name, group, resource)),
                ))
            }
        };
    let mut impersonated = UserInfo {
        username: username.clone(),
        uid: String::new(),
        groups: Vec::new(),
        extra: BTreeMap::new(),
    };
    if let Some(sa) = username.strip_prefix("system:serviceaccount:") {
        let (ns, name) = sa.split_once(':').unwrap_or(("", sa));
        check("serviceaccounts", "", "", name, ns)?;
        impersonated.groups.push("system:serviceaccounts".into());
        impersonated
            .groups
            .push(format!("system:serviceaccounts:{ns}"));
    } else {
        check("users", "", "", &username, "")?;
    }
    for g in &groups {
        check("groups", "", "", g, "")?;
        impersonated.groups.push(g.clone());
    }
    if let Some(uid) = uids.first() {
        check("uids", "authentication.k8s.io", "", uid, "")?;
        impersonated.uid = uid.clone();
    }
    for (k, v) in &extra_order {
        check("userextras", "authentication.k8s.io", k, v, "")?;
    }
    impersonated.extra = extra;
    if username != "system:anonymous" {
        impersonated = with_authenticated(impersonated);
    } else if !impersonated
        .groups
        .iter()
        .any(|g| g == "system:unauthenticated")
    {
        impersonated.groups.push("system:unauthenticated".into());
    }
    Ok(impersonated)
}

// === the handler ===

pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Query,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) user: UserInfo,
}

impl Req {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The field manager of a non-apply write: `?fieldManager=` or the User-Agent's product.
    fn manager(&self) -> String {
        match self.query.get("fieldManager") {
            Some(m) if !m.is_empty() => m.to_owned(),
            _ => {
                let ua = self.header("user-agent");
                let product = ua.split('/').next().unwrap_or("").trim();
                if product.is_empty() {
                    "unknown".into()
                } else {
                    product.to_owned()
                }
            }
        }
    }
}

async fn handle(shared: Arc<Shared>, mut req: http::Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let raw_query = req.uri().query().unwrap_or("").to_owned();
    lock(&shared.requests).push(RecordedRequest {
        method: req.method().to_string(),
        path: path.clone(),
        query: raw_query.clone(),
        version: format!("{:?}", req.version()),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    let user = match authenticate(&shared, req.headers()) {
        Ok(u) => u,
        Err(AuthnError::Unauthorized) => return status(401, "Unauthorized", "Unauthorized", None),
    };
    let user = match impersonate(&shared, &path, req.headers(), user) {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let query = Query::parse(&raw_query);
    let target = parse_target(&path);
    let attributes = match &target {
        Some(t) => Attributes {
            user: user.clone(),
            verb: verb_of(req.method(), t, &query).into(),
            resource_request: true,
            api_group: t.group.clone(),
            resource: t.resource.clone(),
            subresource: t.subresource.clone(),
            namespace: if t.resource == "namespaces" && t.namespace.is_empty() {
                t.name.clone()
            } else {
                t.namespace.clone()
            },
            name: t.name.clone(),
            path: path.clone(),
        },
        None => Attributes {
            user: user.clone(),
            verb: req
                .method()
                .as_str()
                .to_ascii_lowercase()
                .replace("head", "get"),
            resource_request: false,
            path: path.clone(),
            ..Attributes::default()
        },
    };
    let decision = decide(&shared, &attributes);
    if !decision.allowed {
        let d = if attributes.resource_request {
            details(
                &attributes.name,
                &attributes.api_group,
                &attributes.resource,
            )
        } else {
            json!({})
        };
        return status(
            403,
            "Forbidden",
            &authz::forbidden_message(&attributes),
            Some(d),
        );
    }
    let on_upgrade = req
        .headers()
        .contains_key(header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return status(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
                None,
            );
        }
    };
    let r = Req {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
        user,
    };
    match target {
        None => non_resource(&shared, &r),
        Some(t) => resource(&shared, &r, &t, on_upgrade).await,
    }
}

// === discovery and other non-resource paths ===

const AGGREGATED: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

fn recorded(name: &str) -> Option<&'static str> {
    Some(match name {
        "version" => include_str!("recorded/version.json"),
        "api" => include_str!("recorded/api.json"),
        "apis" => include_str!("recorded/apis.json"),
        "core-v1" => include_str!("recorded/core-v1.json"),
        "rbac.authorization.k8s.io/v1" => include_str!("recorded/rbac-v1.json"),
        "authentication.k8s.io/v1" => include_str!("recorded/authentication-v1.json"),
        "authorization.k8s.io/v1" => include_str!("recorded/authorization-v1.json"),
        "aggregated-api" => include_str!("recorded/aggregated-api.json"),
        "aggregated-apis" => include_str!("recorded/aggregated-apis.json"),
        "openapi-v3" => include_str!("recorded/openapi-v3.json"),
        "openapi-v3-rbac" => include_str!("recorded/openapi-v3-rbac-v1.json"),
        _ => return None,
    })
}

fn raw_json(status_code: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status_code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

fn etag_of(body: &str) -> String {
    // FNV-1a: stable across runs; the value is volatile in the recordings anyway.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016X}\"")
}

fn aggregated(r: &Req, body: &'static str) -> Resp {
    let etag = etag_of(body);
    let mut resp = if r.header("if-none-match") == etag {
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp
    } else {
        let mut resp = Response::new(full(body));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(AGGREGATED));
        resp
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    resp
}

fn wants_aggregated(r: &Req) -> bool {
    let accept = r.header("accept");
    accept
        .split(',')
        .any(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2beta1"))
}

fn non_resource(shared: &Shared, r: &Req) -> Resp {
    if r.method != Method::GET && r.method != Method::HEAD {
        return method_not_allowed();
    }
    let _ = shared;
    let path = r.path.trim_end_matches('/');
    match path {
        "/version" => {
            recorded("version").map_or_else(page_not_found, |b| raw_json(StatusCode::OK, b))
        }
        "/healthz" | "/readyz" | "/livez" => text_response(StatusCode::OK, "ok".into()),
        "/api" if wants_aggregated(r) => {
            recorded("aggregated-api").map_or_else(page_not_found, |b| aggregated(r, b))
        }
        "/apis" if wants_aggregated(r) => {
            recorded("aggregated-apis").map_or_else(page_not_found, |b| aggregated(r, b))
        }
        "/api" => recorded("api").map_or_else(page_not_found, |b| raw_json(StatusCode::OK, b)),
        "/apis" => recorded("apis").map_or_else(page_not_found, |b| raw_json(StatusCode::OK, b)),
        "/openapi/v3" => {
            let mut resp = recorded("openapi-v3").map_or_else(page_not_found, |b| {
                text_response(StatusCode::OK, b.to_owned())
            });
            resp.headers_mut().remove("x-content-type-options");
            resp
        }
        "/openapi/v3/apis/rbac.authorization.k8s.io/v1" => {
            let mut resp = recorded("openapi-v3-rbac")
                .map_or_else(page_not_found, |b| raw_json(StatusCode::OK, b));
            if r.query.get("hash").is_some() {
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, immutable"),
                );
            }
            resp
        }
        p => {
            if let Some(group) = p.strip_prefix("/apis/")
                && !group.contains('/')
            {
                return api_group(group);
            }
            page_not_found()
        }
    }
}

fn api_group(group: &str) -> Resp {
    let list: Value = recorded("apis")
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let found = list.get("groups").and_then(Value::as_array).and_then(|g| {
        g.iter()
            .find(|g| g.get("name").and_then(Value::as_str) == Some(group))
    });
    match found {
        Some(g) => {
            let mut body = Map::new();
            body.insert("kind".into(), json!("APIGroup"));
            body.insert("apiVersion".into(), json!("v1"));
            if let Some(m) = g.as_object() {
                for (k, v) in m {
                    body.insert(k.clone(), v.clone());
                }
            }
            json_response(StatusCode::OK, &Value::Object(body))
        }
        None => page_not_found(),
    }
}

// === resources ===

async fn resource(
    shared: &Arc<Shared>,
    r: &Req,
    t: &Target,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Resp {
    let gv = if t.group.is_empty() {
        t.version.clone()
    } else {
        format!("{}/{}", t.group, t.version)
    };
    let discovery = if t.group.is_empty() {
        Some("core-v1")
    } else {
        None
    };
    let discovery_doc = discovery.or(match gv.as_str() {
        "rbac.authorization.k8s.io/v1" | "authentication.k8s.io/v1" | "authorization.k8s.io/v1" => {
            Some(gv.as_str())
        }
        _ => None,
    });
    // `/api/v1` and `/apis/{g}/{v}` themselves.
    if t.resource.is_empty() {
        return match discovery_doc.and_then(recorded) {
            Some(doc) if r.method == Method::GET => raw_json(StatusCode::OK, doc),
            _ => page_not_found(),
        };
    }
    match (gv.as_str(), t.resource.as_str()) {
        ("authorization.k8s.io/v1", "selfsubjectrulesreviews") => {
            return reviews::self_subject_rules_review(shared, r);
        }
        ("authentication.k8s.io/v1", "selfsubjectreviews") => {
            return reviews::self_subject_review(r);
        }
        ("authorization.k8s.io/v1", "selfsubjectaccessreviews")
        | ("authorization.k8s.io/v1", "subjectaccessreviews")
        | ("authorization.k8s.io/v1", "localsubjectaccessreviews") => {
            return reviews::access_review(shared, r, t);
        }
        _ => {}
    }
    let Some(kind) = Kind::by_resource(&t.group, &t.version, &t.resource) else {
        return if discovery_doc.is_some() {
            resource_not_found()
        } else {
            page_not_found()
        };
    };
    if kind.namespaced == t.namespace.is_empty()
        && !(kind.namespaced && t.name.is_empty() && r.method == Method::GET)
    {
        return resource_not_found();
    }
    if !t.subresource.is_empty() {
        return streams::subresource(shared, r, &kind, t, on_upgrade).await;
    }
    match (r.method.clone(), t.name.is_empty()) {
        (Method::GET, true) if r.query.flag("watch") => {
            streams::watch(shared, r, &kind, &t.namespace)
        }
        (Method::GET, true) => list(shared, r, &kind, &t.namespace).await,
        (Method::GET, false) => get(shared, r, &kind, t),
        (Method::POST, true) => create(shared, r, &kind, &t.namespace),
        (Method::PUT, false) => update(shared, r, &kind, t),
        (Method::PATCH, false) => patch(shared, r, &kind, t),
        (Method::DELETE, false) => delete(shared, r, &kind, t),
        (Method::DELETE, true) if kind.kind != "Namespace" => {
            delete_collection(shared, r, &kind, &t.namespace)
        }
        _ => method_not_allowed(),
    }
}

fn accept_as(r: &Req) -> &'static str {
    let accept = r.header("accept");
    let first = accept.split(',').next().unwrap_or("");
    if first.contains("as=Table") {
        "Table"
    } else if first.contains("as=PartialObjectMetadataList") {
        "PartialObjectMetadataList"
    } else if first.contains("as=PartialObjectMetadata") {
        "PartialObjectMetadata"
    } else {
        ""
    }
}

fn get(shared: &Shared, r: &Req, kind: &Kind, t: &Target) -> Resp {
    let found = lock(&shared.store).get(kind, &t.namespace, &t.name);
    let Some(object) = found else {
        return not_found(kind, &t.name);
    };
    match accept_as(r) {
        "Table" => json_response(
            StatusCode::OK,
            &json!({
                "kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": meta_str(&object, "resourceVersion")},
                "columnDefinitions": objects::table_columns(kind),
                "rows": [objects::table_row(kind, &object)],
            }),
        ),
        "PartialObjectMetadata" | "PartialObjectMetadataList" => {
            json_response(StatusCode::OK, &objects::partial_metadata(&object))
        }
        _ => json_response(StatusCode::OK, &objects::with_type(kind, &object)),
    }
}

fn continue_token(rv: u64, start: &str) -> String {
    use base64::Engine as _;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

/// Go's quoting of one byte in a JSON syntax error (`'\x9e'`, `'a'`).
fn go_char(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("'{}'", b as char)
    } else {
        format!("'\\x{b:02x}'")
    }
}

fn parse_continue(token: &str) -> Result<(u64, String), String> {
    use base64::Engine as _;
    // As Go's base64.RawURLEncoding: trailing bits are not checked.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = lenient
        .decode(token)
        .map_err(|e| format!("continue key is not valid: {e}"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| match bytes.first() {
        Some(&b) if !b"{[\"tfn-0123456789 \t\r\n".contains(&b) => format!(
            "continue key is not valid: invalid character {} looking for beginning of value",
            go_char(b)
        ),
        _ => format!("continue key is not valid: {e}"),
    })?;
    let rv = v
        .get("rv")
        .and_then(Value::as_u64)
        .ok_or("continue key is not valid: no rv")?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or("continue key is not valid: no start")?;
    Ok((rv, start.trim_end_matches('\u{0}').to_owned()))
}

async fn list(shared: &Arc<Shared>, r: &Req, kind: &Kind, namespace: &str) -> Resp {
    let selector = match objects::parse_label_selector(r.query.get("labelSelector").unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let field_selector = r.query.get("fieldSelector").unwrap_or("").to_owned();
    let rv_param = r.query.get("resourceVersion").unwrap_or("");
    let rv_match = r.query.get("resourceVersionMatch").unwrap_or("");
    if let Ok(wanted) = rv_param.parse::<u64>() {
        if rv_match == "Exact" && wanted < lock(&shared.store).revision() {
            return status(
                410,
                "Expired",
                "The resourceVersion for the provided list is too old.",
                None,
            );
        }
        // A resourceVersion in the future: wait up to 3 s for it, then 504 (A131).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut events = shared.events.subscribe();
        loop {
            let current = lock(&shared.store).revision();
            if wanted <= current {
                break;
            }
            if tokio::time::timeout_at(deadline, events.recv())
                .await
                .is_err()
            {
                return status(
                    504,
                    "Timeout",
                    &format!("Timeout: Too large resource version: {wanted}, current: {current}"),
                    Some(
                        json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
                    ),
                );
            }
        }
    }
    let (objects_now, revision) = {
        let store = lock(&shared.store);
        (store.list(kind, namespace), store.revision())
    };
    let mut items = Vec::new();
    for o in objects_now {
        if !objects::matches_labels(&o, &selector) {
            continue;
        }
        match objects::matches_fields(&o, &field_selector) {
            Ok(true) => items.push(o),
            Ok(false) => {}
            Err(e) => return bad_request(&e),
        }
    }
    let key = |o: &Value| {
        if namespace.is_empty() && kind.namespaced {
            format!("{}/{}", meta_str(o, "namespace"), meta_str(o, "name"))
        } else {
            meta_str(o, "name").to_owned()
        }
    };
    if let Some(token) = r.query.get("continue").filter(|c| !c.is_empty()) {
        match parse_continue(token) {
            Ok((_, start)) => items.retain(|o| key(o) > start),
            Err(e) => return bad_request(&format!("invalid continue token: {e}")),
        }
    }
    let limit = r
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    // resourceVersion=0 is served from the watch cache, which ignores limit (A122).
    let limit = if rv_param == "0" { None } else { limit };
    let mut list_meta = Map::new();
    list_meta.insert("resourceVersion".into(), json!(revision.to_string()));
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            list_meta.insert(
                "continue".into(),
                json!(continue_token(revision, &key(last))),
            );
        }
        if selector.is_empty() && field_selector.is_empty() {
            list_meta.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    let body = match accept_as(r) {
        "Table" => json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": Value::Object(list_meta),
            "columnDefinitions": objects::table_columns(kind),
            "rows": items.iter().map(|o| objects::table_row(kind, o)).collect::<Vec<_>>(),
        }),
        "PartialObjectMetadataList" | "PartialObjectMetadata" => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": Value::Object(list_meta),
            "items": items.iter().map(objects::partial_metadata).collect::<Vec<_>>(),
        }),
        _ => json!({
            "kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
            "metadata": Value::Object(list_meta),
            "items": items.iter().map(|o| {
                let mut o = o.clone();
                if let Some(m) = o.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                o
            }).collect::<Vec<_>>(),
        }),
    };
    json_response(StatusCode::OK, &body)
}

// === writes ===

/// The body as JSON: JSON or YAML by Content-Type; the error response otherwise.
fn decode_body(r: &Req, kind: &Kind) -> Result<Value, Resp> {
    let ct = r.header("content-type");
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" | "" => serde_json::from_slice(&r.body).map_err(|e| {
            let text = String::from_utf8_lossy(&r.body);
            let excerpt: String = text.chars().take(30).collect();
            let more = if text.chars().count() > 30 { " ..." } else { "" };
            let _ = e;
            bad_request(&format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: unexpected end of JSON input ({excerpt}{more})",
                kind.kind
            ))
        }),
        "application/yaml" => {
            let text = String::from_utf8_lossy(&r.body);
            serde_saphyr::from_str::<Value>(&text).map_err(|e| {
                bad_request(&format!(
                    "the object provided is unrecognized (must be of type {}): couldn't get version/kind; yaml parse error: {e}",
                    kind.kind
                ))
            })
        }
        _ => Err(unsupported_media_type()),
    }
}

fn field_validation(r: &Req, operation: &str) -> Result<String, Resp> {
    let v = r.query.get("fieldValidation").unwrap_or("").to_owned();
    if ["", "Ignore", "Strict", "Warn"].contains(&v.as_str()) {
        return Ok(v);
    }
    Err(status(
        422,
        "Invalid",
        &format!(
            "{operation}.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: {v:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
        ),
        Some(
            json!({"group": "meta.k8s.io", "kind": operation, "causes": [{
            "reason": "FieldValueNotSupported",
            "message": format!("Unsupported value: {v:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""),
            "field": "fieldValidation"}]}),
        ),
    ))
}

/// Checks kind/apiVersion and unknown fields; returns the cleaned object and Warning values.
fn typed_object(r: &Req, kind: &Kind, operation: &str) -> Result<(Value, Vec<String>), Resp> {
    let validation = field_validation(r, operation)?;
    let object = decode_body(r, kind)?;
    if !object.is_object() {
        return Err(bad_request(&format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: expected an object",
            kind.kind
        )));
    }
    let body_kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let body_av = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_kind.is_empty() || body_av.is_empty() {
        return Err(bad_request(&format!(
            "Object 'Kind' is missing in '{}'",
            String::from_utf8_lossy(&r.body)
        )));
    }
    if body_kind != kind.kind || body_av != kind.api_version() {
        let version = body_av.rsplit('/').next().unwrap_or(body_av);
        let internal_group = if kind.group.is_empty() {
            "core"
        } else {
            "rbac"
        };
        return Err(bad_request(&format!(
            "{body_kind} in version {version:?} cannot be handled as a {}: converting ({version}.{body_kind}) to ({internal_group}.{}): unknown conversion",
            kind.kind, kind.kind
        )));
    }
    let (unknown, clean) = objects::unknown_fields(kind, &object);
    let mut warnings: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    if r.header("content-type").starts_with("application/json") {
        let duplicates = objects::duplicate_fields(&r.body);
        warnings.extend(duplicates.iter().map(|f| format!("duplicate field {f:?}")));
    }
    match validation.as_str() {
        "Strict" if !warnings.is_empty() => Err(bad_request(&format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
            kind.kind,
            kind.version,
            kind.kind,
            warnings.join(", ")
        ))),
        "Ignore" => Ok((clean, Vec::new())),
        _ => Ok((clean, warnings)),
    }
}

fn add_warnings(mut resp: Resp, warnings: &[String]) -> Resp {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {w:?}")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn dry_run(r: &Req) -> bool {
    r.query.all("dryRun").iter().any(|d| d == "All")
}

/// Namespace lifecycle admission: the namespace must exist and not be terminating (A026-A027).
fn namespace_admission(
    shared: &Shared,
    kind: &Kind,
    namespace: &str,
    name: &str,
) -> Result<(), Resp> {
    if !kind.namespaced {
        return Ok(());
    }
    let ns_kind = Kind::by_resource("", "v1", "namespaces");
    let found = ns_kind.and_then(|k| lock(&shared.store).get(&k, "", namespace));
    match found {
        None => Err(status(
            404,
            "NotFound",
            &format!("namespaces {namespace:?} not found"),
            Some(details(namespace, "", "namespaces")),
        )),
        Some(ns) if meta(&ns, "deletionTimestamp").is_some() => Err(status(
            403,
            "Forbidden",
            &format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                kind.qualified()
            ),
            Some(
                json!({"name": name, "group": kind.group, "kind": kind.resource, "causes": [{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {namespace} is being terminated"),
                "field": "metadata.namespace"}]}),
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn publish(shared: &Shared, event: objects::Event) {
    let _ = shared.events.send(event);
}

fn create(shared: &Arc<Shared>, r: &Req, kind: &Kind, namespace: &str) -> Resp {
    let (mut object, warnings) = match typed_object(r, kind, "CreateOptions") {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let body_ns = meta_str(&object, "namespace").to_owned();
    if kind.namespaced {
        if !body_ns.is_empty() && body_ns != namespace {
            return bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            );
        }
        metadata_mut(&mut object).insert("namespace".into(), json!(namespace));
    } else {
        metadata_mut(&mut object).remove("namespace");
    }
    if meta_str(&object, "name").is_empty() {
        let generate = meta_str(&object, "generateName").to_owned();
        if !generate.is_empty() {
            let suffix: String = uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .chars()
                .take(5)
                .collect();
            metadata_mut(&mut object).insert("name".into(), json!(format!("{generate}{suffix}")));
        }
    }
    let name = meta_str(&object, "name").to_owned();
    objects::normalize(kind, &mut object);
    let causes = objects::validate(kind, &object);
    if !causes.is_empty() {
        return invalid(kind, &name, &causes);
    }
    if let Err(resp) = namespace_admission(shared, kind, namespace, &name) {
        return resp;
    }
    if kind.kind == "Pod" {
        // The ServiceAccount admission plugin (A182).
        let sa = object
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        let has_sa = Kind::by_resource("", "v1", "serviceaccounts")
            .and_then(|k| lock(&shared.store).get(&k, namespace, &sa))
            .is_some();
        if !has_sa {
            return status(
                403,
                "Forbidden",
                &format!(
                    "pods {name:?} is forbidden: error looking up service account {namespace}/{sa}: serviceaccount {sa:?} not found"
                ),
                Some(details(&name, "", "pods")),
            );
        }
    }
    let mut store = lock(&shared.store);
    if store.get(kind, namespace, &name).is_some() {
        return status(
            409,
            "AlreadyExists",
            &format!("{} {name:?} already exists", kind.qualified()),
            Some(details(&name, kind.group, kind.resource)),
        );
    }
    let md = metadata_mut(&mut object);
    for volatile in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
        "deletionTimestamp",
        "generation",
        "selfLink",
    ] {
        md.remove(volatile);
    }
    md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    md.insert("creationTimestamp".into(), json!(objects::now()));
    objects::normalize(kind, &mut object);
    objects::record_update(kind, None, &mut object, &r.manager());
    objects::defaults(kind, &mut object);
    let stored = if dry_run(r) {
        object
    } else {
        let (stored, event) = store.put(*kind, object, true);
        drop(store);
        publish(shared, event);
        stored
    };
    add_warnings(
        json_response(StatusCode::CREATED, &objects::with_type(kind, &stored)),
        &warnings,
    )
}

fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        let md = metadata_mut(&mut v);
        md.remove("resourceVersion");
        md.remove("managedFields");
        v
    };
    strip(a) == strip(b)
}

fn role_ref_go(v: Option<&Value>) -> String {
    let f = |n: &str| {
        v.and_then(|r| r.get(n))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        f("apiGroup"),
        f("kind"),
        f("name")
    )
}

/// Writes `object` over `old` (update and patch): immutable fields, validation, precondition on
/// resourceVersion, no-op detection, managedFields.
fn write_over(
    shared: &Arc<Shared>,
    r: &Req,
    kind: &Kind,
    old: &Value,
    mut object: Value,
    manager: Option<&str>,
) -> Result<(Value, bool), Resp> {
    let name = meta_str(old, "name").to_owned();
    let given_rv = meta_str(&object, "resourceVersion").to_owned();
    if !given_rv.is_empty() && given_rv != meta_str(old, "resourceVersion") {
        return Err(conflict_modified(kind, &name));
    }
    if kind.kind.ends_with("Binding") && object.get("roleRef") != old.get("roleRef") {
        return Err(invalid(
            kind,
            &name,
            &[Cause {
                reason: "FieldValueInvalid",
                message: format!(
                    "Invalid value: {}: cannot change roleRef",
                    role_ref_go(object.get("roleRef"))
                ),
                field: "roleRef".into(),
            }],
        ));
    }
    {
        let md = metadata_mut(&mut object);
        for keep in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "name",
        ] {
            match meta(old, keep) {
                Some(v) => {
                    md.insert(keep.into(), v.clone());
                }
                None => {
                    md.remove(keep);
                }
            }
        }
        if manager.is_some() {
            md.insert(
                "managedFields".into(),
                meta(old, "managedFields").cloned().unwrap_or(Value::Null),
            );
        }
    }
    if kind.kind == "Namespace" || kind.kind == "Pod" {
        // status is written through the status subresource only.
        if let (Some(map), Some(st)) = (object.as_object_mut(), old.get("status")) {
            map.insert("status".into(), st.clone());
        }
    }
    objects::defaults(kind, &mut object);
    let mut causes = objects::validate(kind, &object);
    if !causes.is_empty() {
        if kind.group == objects::RBAC {
            // The RBAC strategies validate the new object, then run the update validation, which
            // validates it again: every cause is listed twice (A113); the message lists it once.
            causes.extend(causes.clone());
        }
        return Err(invalid(kind, &name, &causes));
    }
    if let Some(manager) = manager {
        objects::record_update(kind, Some(old), &mut object, manager);
    }
    if same_content(old, &object) {
        return Ok((old.clone(), false));
    }
    if dry_run(r) {
        return Ok((object, false));
    }
    let mut store = lock(&shared.store);
    if store
        .get(kind, meta_str(old, "namespace"), &name)
        .as_ref()
        .map(|o| meta_str(o, "resourceVersion").to_owned())
        != Some(meta_str(old, "resourceVersion").to_owned())
    {
        return Err(conflict_modified(kind, &name));
    }
    let (stored, event) = store.put(*kind, object, false);
    drop(store);
    publish(shared, event);
    Ok((stored, true))
}

fn update(shared: &Arc<Shared>, r: &Req, kind: &Kind, t: &Target) -> Resp {
    let (object, warnings) = match typed_object(r, kind, "UpdateOptions") {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let body_name = meta_str(&object, "name").to_owned();
    if body_name != t.name {
        return bad_request(&format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            t.name
        ));
    }
    let body_ns = meta_str(&object, "namespace").to_owned();
    if kind.namespaced && !body_ns.is_empty() && body_ns != t.namespace {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    let old = lock(&shared.store).get(kind, &t.namespace, &t.name);
    let Some(old) = old else {
        if kind.create_on_update() {
            return create(shared, r, kind, &t.namespace);
        }
        return not_found(kind, &t.name);
    };
    match write_over(shared, r, kind, &old, object, Some(&r.manager())) {
        Ok((stored, _)) => add_warnings(
            json_response(StatusCode::OK, &objects::with_type(kind, &stored)),
            &warnings,
        ),
        Err(resp) => resp,
    }
}

fn patch(shared: &Arc<Shared>, r: &Req, kind: &Kind, t: &Target) -> Resp {
    let ct = r.header("content-type");
    let media = ct.split(';').next().unwrap_or("").trim().to_owned();
    if media == "application/apply-patch+yaml" || media == "application/apply-patch+cbor" {
        return apply::server_side_apply(shared, r, kind, t);
    }
    if !matches!(
        media.as_str(),
        "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/json-patch+json"
    ) {
        return status(
            415,
            "UnsupportedMediaType",
            "415: Unsupported Media Type",
            Some(json!({})),
        );
    }
    if let Err(resp) = field_validation(r, "PatchOptions") {
        return resp;
    }
    let old = lock(&shared.store).get(kind, &t.namespace, &t.name);
    let Some(old) = old else {
        return not_found(kind, &t.name);
    };
    let patch: Value = match serde_json::from_slice(&r.body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("error decoding patch: {e}")),
    };
    let mut patched = objects::with_type(kind, &old);
    if media == "application/json-patch+json" {
        let ops: json_patch::Patch = match serde_json::from_value(patch) {
            Ok(p) => p,
            Err(e) => {
                return bad_request(&format!(
                    "the server rejected our request due to an error in our request: {e}"
                ));
            }
        };
        if json_patch::patch(&mut patched, &ops).is_err() {
            return status(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
                Some(json!({})),
            );
        }
    } else {
        // Strategic merge on the served kinds: RBAC lists have no merge key, so a strategic merge
        // replaces them exactly as a merge patch does (A109).
        json_patch::merge(&mut patched, &patch);
    }
    if meta_str(&patched, "resourceVersion").is_empty() {
        metadata_mut(&mut patched).insert(
            "resourceVersion".into(),
            json!(meta_str(&old, "resourceVersion")),
        );
    }
    match write_over(shared, r, kind, &old, patched, Some(&r.manager())) {
        Ok((stored, _)) => json_response(StatusCode::OK, &objects::with_type(kind, &stored)),
        Err(resp) => resp,
    }
}

fn delete(shared: &Arc<Shared>, r: &Req, kind: &Kind, t: &Target) -> Resp {
    let options: Value = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    };
    let mut store = lock(&shared.store);
    let Some(old) = store.get(kind, &t.namespace, &t.name) else {
        return not_found(kind, &t.name);
    };
    if let Some(rv) = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        && rv != meta_str(&old, "resourceVersion")
    {
        return status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} {:?}: the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                kind.qualified_kind(),
                t.name,
                meta_str(&old, "resourceVersion")
            ),
            Some(details(&t.name, kind.group, kind.kind)),
        );
    }
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        && uid != meta_str(&old, "uid")
    {
        return conflict_modified(kind, &t.name);
    }
    if dry_run(r) {
        return json_response(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": t.name, "group": kind.group, "kind": kind.resource, "uid": meta_str(&old, "uid")}}),
        );
    }
    if kind.kind == "Namespace" {
        // No namespace controller runs: the namespace goes Terminating and stays (A024-A025).
        if meta(&old, "deletionTimestamp").is_some() {
            return json_response(StatusCode::OK, &objects::with_type(kind, &old));
        }
        let mut object = old.clone();
        metadata_mut(&mut object).insert("deletionTimestamp".into(), json!(objects::now()));
        if let Some(st) = object.get_mut("status").and_then(Value::as_object_mut) {
            st.insert("phase".into(), json!("Terminating"));
        }
        let (stored, event) = store.put(*kind, object, false);
        let mut events = vec![event];
        if shared.config.namespace_controller {
            events.extend(store.remove_namespace_contents(&t.name));
            if let Some((_, event)) = store.remove(*kind, "", &t.name) {
                events.push(event);
            }
        }
        drop(store);
        for event in events {
            publish(shared, event);
        }
        return json_response(StatusCode::OK, &objects::with_type(kind, &stored));
    }
    let Some((removed, event)) = store.remove(*kind, &t.namespace, &t.name) else {
        return not_found(kind, &t.name);
    };
    drop(store);
    publish(shared, event);
    if kind.kind == "Pod" {
        return json_response(StatusCode::OK, &objects::with_type(kind, &removed));
    }
    let mut d = Map::new();
    d.insert("name".into(), json!(t.name));
    if !kind.group.is_empty() {
        d.insert("group".into(), json!(kind.group));
    }
    d.insert("kind".into(), json!(kind.resource));
    d.insert("uid".into(), json!(meta_str(&removed, "uid")));
    json_response(
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": Value::Object(d)}),
    )
}

/// `deletecollection`: every object matching the selectors goes; the answer is the list of
/// what was deleted, as the generic registry returns it.
fn delete_collection(shared: &Arc<Shared>, r: &Req, kind: &Kind, namespace: &str) -> Resp {
    let selector = match objects::parse_label_selector(r.query.get("labelSelector").unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let fields = r.query.get("fieldSelector").unwrap_or("").to_owned();
    let mut store = lock(&shared.store);
    let mut deleted = Vec::new();
    let mut events = Vec::new();
    for o in store.list(kind, namespace) {
        match objects::matches_fields(&o, &fields) {
            Ok(true) if objects::matches_labels(&o, &selector) => {}
            Ok(_) => continue,
            Err(e) => return bad_request(&e),
        }
        if dry_run(r) {
            deleted.push(o);
            continue;
        }
        if let Some((removed, event)) =
            store.remove(*kind, meta_str(&o, "namespace"), meta_str(&o, "name"))
        {
            deleted.push(removed);
            events.push(event);
        }
    }
    let revision = store.revision();
    drop(store);
    for event in events {
        publish(shared, event);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
            "items": deleted,
        }),
    )
}

// === server-side apply ===

mod apply {
    use super::*;

    fn conflict(conflicts: &[(String, Field)]) -> Resp {
        let n = conflicts.len();
        let listed: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with {m:?}: {}", f.path()))
            .collect();
        let message = match listed.as_slice() {
            [one] => format!("Apply failed with 1 conflict: {one}"),
            many => format!("Apply failed with {n} conflicts: {}", many.join("\n")),
        };
        status(
            409,
            "Conflict",
            &message,
            Some(json!({"causes": conflicts.iter().map(|(m, f)| json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {m:?}"),
                "field": f.path(),
            })).collect::<Vec<_>>()})),
        )
    }

    /// Server-side apply with ownership per top-level field and per label/annotation key
    /// (A094-A107).
    pub(super) fn server_side_apply(
        shared: &Arc<Shared>,
        r: &Req,
        kind: &Kind,
        t: &Target,
    ) -> Resp {
        let Some(manager) = r
            .query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
        else {
            return status(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                Some(
                    json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{
                    "reason": "FieldValueRequired",
                    "message": "Required value: is required for apply patch",
                    "field": "fieldManager"}]}),
                ),
            );
        };
        let validation = match field_validation(r, "PatchOptions") {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let force = r.query.flag("force");
        let text = String::from_utf8_lossy(&r.body);
        let applied: Value = match serde_saphyr::from_str::<Value>(&text) {
            Ok(v) if v.is_object() => v,
            Ok(_) => {
                return bad_request(
                    "error decoding YAML: the apply configuration is not an object",
                );
            }
            Err(e) => return bad_request(&format!("error decoding YAML: {e}")),
        };
        let (unknown, applied) = objects::unknown_fields(kind, &applied);
        if let Some(first) = unknown.first()
            && validation == "Strict"
        {
            return status(
                500,
                "",
                &format!(
                    "failed to create typed patch object (/{}; {}, Kind={}): .{first}: field not declared in schema",
                    t.name,
                    kind.api_version(),
                    kind.kind
                ),
                None,
            );
        }
        let body_name = meta_str(&applied, "name").to_owned();
        if body_name != t.name {
            return bad_request(&format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                t.name
            ));
        }
        let body_ns = meta_str(&applied, "namespace").to_owned();
        if kind.namespaced && !body_ns.is_empty() && body_ns != t.namespace {
            return bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            );
        }
        let applied_fields = objects::fields_of(&applied);
        let old = lock(&shared.store).get(kind, &t.namespace, &t.name);
        let Some(old) = old else {
            // Create: every applied field is the manager's.
            let mut object = applied.clone();
            let md = metadata_mut(&mut object);
            for volatile in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "managedFields",
            ] {
                md.remove(volatile);
            }
            if kind.namespaced {
                md.insert("namespace".into(), json!(t.namespace));
            }
            md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            md.insert("creationTimestamp".into(), json!(objects::now()));
            let causes = objects::validate(kind, &object);
            if !causes.is_empty() {
                return invalid(kind, &t.name, &causes);
            }
            if let Err(resp) = namespace_admission(shared, kind, &t.namespace, &t.name) {
                return resp;
            }
            objects::defaults(kind, &mut object);
            let entry = Managed {
                manager: manager.clone(),
                operation: "Apply".into(),
                api_version: kind.api_version(),
                time: objects::now(),
                fields: applied_fields,
                subresource: None,
            };
            objects::set_managed_fields(&mut object, &[entry]);
            let stored = if dry_run(r) {
                object
            } else {
                let mut store = lock(&shared.store);
                if store.get(kind, &t.namespace, &t.name).is_some() {
                    return conflict_modified(kind, &t.name);
                }
                let (stored, event) = store.put(*kind, object, true);
                drop(store);
                publish(shared, event);
                stored
            };
            return json_response(StatusCode::CREATED, &objects::with_type(kind, &stored));
        };
        let mut entries = objects::managed_fields(&old);
        let mut conflicts = Vec::new();
        for f in &applied_fields {
            if f.value(&old) == f.value(&applied) {
                continue;
            }
            for e in entries
                .iter()
                .filter(|e| e.manager != manager || e.operation != "Apply")
            {
                if e.fields.contains(f) {
                    conflicts.push((e.manager.clone(), f.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return conflict(&conflicts);
        }
        let previously: std::collections::BTreeSet<Field> = entries
            .iter()
            .find(|e| e.manager == manager && e.operation == "Apply")
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let mut object = objects::with_type(kind, &old);
        for f in &applied_fields {
            f.set(&mut object, f.value(&applied).cloned());
        }
        for e in entries.iter_mut() {
            if e.manager == manager && e.operation == "Apply" {
                continue;
            }
            if force {
                e.fields.retain(|f| !applied_fields.contains(f));
            } else {
                // Same value applied: ownership is shared; nothing to take away.
            }
        }
        // Fields this manager applied before and no longer applies are removed, unless someone
        // else owns them too.
        for f in previously.difference(&applied_fields) {
            let owned_elsewhere = entries
                .iter()
                .any(|e| !(e.manager == manager && e.operation == "Apply") && e.fields.contains(f));
            if !owned_elsewhere {
                f.set(&mut object, None);
            }
        }
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Apply")
        {
            Some(e) => {
                if e.fields != applied_fields {
                    e.fields = applied_fields.clone();
                    e.time = objects::now();
                }
            }
            None => entries.push(Managed {
                manager: manager.clone(),
                operation: "Apply".into(),
                api_version: kind.api_version(),
                time: objects::now(),
                fields: applied_fields.clone(),
                subresource: None,
            }),
        }
        objects::set_managed_fields(&mut object, &entries);
        metadata_mut(&mut object).insert(
            "resourceVersion".into(),
            json!(meta_str(&old, "resourceVersion")),
        );
        match write_over(shared, r, kind, &old, object, None) {
            Ok((stored, _)) => json_response(StatusCode::OK, &objects::with_type(kind, &stored)),
            Err(resp) => resp,
        }
    }
}

// === access reviews ===

mod reviews {
    use super::*;

    /// `SelfSubjectReview`: the (impersonated) identity, as A132-A137.
    pub(super) fn self_subject_review(r: &Req) -> Resp {
        if r.method != Method::POST {
            return method_not_allowed();
        }
        let mut info = Map::new();
        info.insert("username".into(), json!(r.user.username));
        if !r.user.uid.is_empty() {
            info.insert("uid".into(), json!(r.user.uid));
        }
        info.insert("groups".into(), json!(r.user.groups));
        if !r.user.extra.is_empty() {
            info.insert("extra".into(), json!(r.user.extra));
        }
        json_response(
            StatusCode::CREATED,
            &json!({
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": objects::now()},
                "status": {"userInfo": Value::Object(info)},
            }),
        )
    }

    fn protobuf_fields(mut b: &[u8]) -> Vec<(u64, &[u8])> {
        fn varint(b: &mut &[u8]) -> Option<u64> {
            let mut v: u64 = 0;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = b.split_first()?;
                *b = rest;
                v |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let Some(tag) = varint(&mut b) else { break };
            match tag & 7 {
                0 => {
                    if varint(&mut b).is_none() {
                        break;
                    }
                }
                2 => {
                    let Some(len) = varint(&mut b) else { break };
                    let Ok(len) = usize::try_from(len) else { break };
                    let Some((field, rest)) = b.split_at_checked(len) else {
                        break;
                    };
                    out.push((tag >> 3, field));
                    b = rest;
                }
                _ => break,
            }
        }
        out
    }

    fn pb_string(fields: &[(u64, &[u8])], n: u64) -> String {
        fields
            .iter()
            .find(|(f, _)| *f == n)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    fn pb_message<'a>(fields: &[(u64, &'a [u8])], n: u64) -> Option<&'a [u8]> {
        fields.iter().find(|(f, _)| *f == n).map(|(_, v)| *v)
    }

    /// The `SelfSubjectAccessReview` protobuf that `kubectl auth can-i` sends, as JSON: the
    /// `k8s\0` envelope (`runtime.Unknown`), then `spec.resourceAttributes` or
    /// `spec.nonResourceAttributes`.
    fn from_protobuf(body: &[u8]) -> Option<Value> {
        let unknown = protobuf_fields(body.strip_prefix(b"k8s\0")?);
        let raw = pb_message(&unknown, 2)?;
        let review = protobuf_fields(raw);
        let spec = protobuf_fields(pb_message(&review, 2)?);
        let mut spec_json = Map::new();
        if let Some(ra) = pb_message(&spec, 1) {
            let ra = protobuf_fields(ra);
            let mut m = Map::new();
            for (n, name) in [
                (1, "namespace"),
                (2, "verb"),
                (3, "group"),
                (4, "version"),
                (5, "resource"),
                (6, "subresource"),
                (7, "name"),
            ] {
                let v = pb_string(&ra, n);
                if !v.is_empty() {
                    m.insert(name.into(), json!(v));
                }
            }
            spec_json.insert("resourceAttributes".into(), Value::Object(m));
        }
        if let Some(nra) = pb_message(&spec, 2) {
            let nra = protobuf_fields(nra);
            spec_json.insert(
                "nonResourceAttributes".into(),
                json!({"path": pb_string(&nra, 1), "verb": pb_string(&nra, 2)}),
            );
        }
        Some(json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "spec": Value::Object(spec_json),
        }))
    }

    fn fields_v1_of_spec(spec: &Value) -> Value {
        let mut out = Map::new();
        if let Some(m) = spec.as_object() {
            for (k, v) in m {
                let mut inner = Map::new();
                inner.insert(".".into(), json!({}));
                if let Some(vm) = v.as_object() {
                    let mut keys: Vec<&String> = vm.keys().collect();
                    keys.sort();
                    for kk in keys {
                        inner.insert(format!("f:{kk}"), json!({}));
                    }
                }
                if v.is_object() {
                    out.insert(format!("f:{k}"), Value::Object(inner));
                } else {
                    out.insert(format!("f:{k}"), json!({}));
                }
            }
        }
        json!({"f:spec": Value::Object(out)})
    }

    /// `SelfSubjectRulesReview`: the RBAC rules of the (impersonated) user in `spec.namespace`,
    /// as kube-apiserver's RBAC rule resolver lists them (A159).
    pub(super) fn self_subject_rules_review(shared: &Arc<Shared>, r: &Req) -> Resp {
        if r.method != Method::POST {
            return method_not_allowed();
        }
        let body: Value = match serde_json::from_slice(&r.body) {
            Ok(v) => v,
            Err(_) => {
                return bad_request(
                    "the object provided is unrecognized: couldn't get version/kind",
                );
            }
        };
        let namespace = body
            .pointer("/spec/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (resource_rules, non_resource_rules) =
            authz::rules_for(&lock(&shared.store), &r.user, namespace);
        json_response(
            StatusCode::CREATED,
            &json!({
                "kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": null}, "spec": {},
                "status": {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false},
            }),
        )
    }

    /// Self, subject and local subject access reviews, answered by the double's authorizer.
    pub(super) fn access_review(shared: &Arc<Shared>, r: &Req, t: &Target) -> Resp {
        if r.method != Method::POST || !t.name.is_empty() {
            return method_not_allowed();
        }
        let media = r
            .header("content-type")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let body: Value = if media == "application/vnd.kubernetes.protobuf" {
            match from_protobuf(&r.body) {
                Some(v) => v,
                None => {
                    return bad_request("the double could not decode this protobuf access review");
                }
            }
        } else {
            match serde_json::from_slice(&r.body) {
                Ok(v) => v,
                Err(_) => {
                    return bad_request(
                        "the object provided is unrecognized: couldn't get version/kind",
                    );
                }
            }
        };
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let kind = match t.resource.as_str() {
            "selfsubjectaccessreviews" => "SelfSubjectAccessReview",
            "subjectaccessreviews" => "SubjectAccessReview",
            _ => "LocalSubjectAccessReview",
        };
        let user = if kind == "SelfSubjectAccessReview" {
            r.user.clone()
        } else {
            let s = |f: &str| spec.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if s("user").is_empty() && groups.is_empty() {
                return status(
                    422,
                    "Invalid",
                    ".authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified",
                    Some(json!({"group": "authorization.k8s.io", "causes": [{
                        "reason": "FieldValueInvalid",
                        "message": "Invalid value: \"\": at least one of user or group must be specified",
                        "field": "spec.user"}]})),
                );
            }
            let extra = spec
                .get("extra")
                .and_then(|e| {
                    serde_json::from_value::<BTreeMap<String, Vec<String>>>(e.clone()).ok()
                })
                .unwrap_or_default();
            UserInfo {
                username: s("user"),
                uid: s("uid"),
                groups,
                extra,
            }
        };
        let a = if let Some(ra) = spec.get("resourceAttributes") {
            let f = |n: &str| ra.get(n).and_then(Value::as_str).unwrap_or("").to_owned();
            let namespace = if kind == "LocalSubjectAccessReview" {
                t.namespace.clone()
            } else {
                f("namespace")
            };
            Attributes {
                user,
                verb: f("verb"),
                resource_request: true,
                api_group: f("group"),
                resource: f("resource"),
                subresource: f("subresource"),
                namespace,
                name: f("name"),
                path: String::new(),
            }
        } else {
            let nra = spec.get("nonResourceAttributes");
            let f = |n: &str| {
                nra.and_then(|x| x.get(n))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            Attributes {
                user,
                verb: f("verb"),
                resource_request: false,
                path: f("path"),
                ..Attributes::default()
            }
        };
        let decision = decide(shared, &a);
        let mut st = Map::new();
        st.insert("allowed".into(), json!(decision.allowed));
        if decision.allowed && !decision.reason.is_empty() {
            st.insert("reason".into(), json!(decision.reason));
        }
        let mut md = Map::new();
        md.insert("creationTimestamp".into(), Value::Null);
        if kind == "LocalSubjectAccessReview" {
            md.insert("namespace".into(), json!(t.namespace));
        }
        md.insert(
            "managedFields".into(),
            json!([{
                "manager": r.manager(), "operation": "Update", "apiVersion": "authorization.k8s.io/v1",
                "time": objects::now(), "fieldsType": "FieldsV1", "fieldsV1": fields_v1_of_spec(&spec),
            }]),
        );
        json_response(
            StatusCode::CREATED,
            &json!({
                "kind": kind, "apiVersion": "authorization.k8s.io/v1",
                "metadata": Value::Object(md), "spec": spec, "status": Value::Object(st),
            }),
        )
    }
}
