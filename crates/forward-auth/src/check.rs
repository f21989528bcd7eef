//! The check: whose request this is (forwarded headers believed only from trusted proxies),
//! who is asking (session cookie or bearer ID token), and whether RBAC lets them.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{ACCEPT, AUTHORIZATION, COOKIE, HOST};
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis_authn::{Credentials, Outcome, SYSTEM_AUTHENTICATED};
use portcullis_rbac::Attributes;

use crate::path::{normalize, path_of};
use crate::redirect::{Origin, host_of};
use crate::session::{SESSION, SessionCookie};
use crate::{
    CALLBACK_PATH, COOKIE_HEADER, EMAIL_HEADER, ForwardAuth, GROUPS_HEADER, LOGOUT_PATH,
    OAUTH2_START_PATH, PREFERRED_USERNAME_HEADER, START_PATH, USER_HEADER, login, pages,
};

/// Which proxy protocol asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Traefik `forwardAuth`, Caddy `forward_auth`: any answer goes to the browser.
    Forward,
    /// nginx `auth_request`: only 2xx, 401 and 403 mean anything.
    Nginx,
}

/// Longest forwarded URI accepted.
const MAX_TARGET_LEN: usize = 8192;
/// Longest host accepted (RFC 1035 names are at most 253 characters, plus a port).
const MAX_AUTHORITY_LEN: usize = 262;

/// Identity headers only the proxy may set, compared after lower-casing and `_` → `-`.
const IDENTITY_HEADERS: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
    "x-auth-request-cookie",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "remote-user",
    "x-remote-user",
    "x-remote-group",
];

/// The request as judged: method, origin and target of the original request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) origin: Origin,
    pub(crate) target: String,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) user: String,
    pub(crate) groups: Vec<String>,
    pub(crate) email: String,
    pub(crate) preferred_username: String,
    pub(crate) id_token: Option<String>,
}

// === handlers ===

pub(crate) async fn forward_auth(State(fa): State<ForwardAuth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    check(&fa, &parts, Mode::Forward).await
}

pub(crate) async fn auth_request(State(fa): State<ForwardAuth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    check(&fa, &parts, Mode::Nginx).await
}

// === the request as judged ===

/// The client's address, from the connection (never from a header).
fn remote(parts: &http::request::Parts) -> Option<IpAddr> {
    if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        return Some(addr.ip());
    }
    parts
        .extensions
        .get::<portcullis_authn::chain::RemoteAddr>()
        .map(|r| r.0.ip())
}

/// Whether the hop is a configured trusted proxy (USER-ASKS 9: the default trusts none).
pub(crate) fn trusted(fa: &ForwardAuth, parts: &http::request::Parts) -> bool {
    let proxies = &fa.inner.config.trusted_proxies;
    if proxies.is_empty() {
        return false;
    }
    remote(parts).is_some_and(|ip| {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        proxies.iter().any(|net| net.contains(&ip))
    })
}

/// The one value of a header, if present once and readable; a repeated header is refused
/// (two `X-Forwarded-Host` values are a smuggling attempt, not a choice).
fn single(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Result<Option<&str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    first.to_str().map(|s| Some(s.trim())).map_err(|_| ())
}

fn valid_authority(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= MAX_AUTHORITY_LEN
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// Judges the request: with `mode`, a check whose original request the proxy describes in
/// headers; without, a request made directly (through a proxy's `location`) whose own target
/// counts. Forwarded headers count only from a trusted proxy.
pub(crate) fn judge(
    fa: &ForwardAuth,
    parts: &http::request::Parts,
    mode: Option<Mode>,
) -> Result<Seen, Box<Response>> {
    let bad = |what: &str| {
        Box::new(pages::message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!(
                "{what}; the proxy in front of this service must send it once and well-formed."
            ),
        ))
    };
    let headers = &parts.headers;
    let own_authority = single(headers, HOST)
        .map_err(|()| bad("the Host header is repeated or unreadable"))?
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    let own_scheme = if fa.inner.tls { "https" } else { "http" };
    let own_target = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let (method, scheme, authority, target) = if trusted(fa, parts) {
        let get = |name: &str| {
            single(headers, name).map_err(|()| bad(&format!("{name} is repeated or unreadable")))
        };
        let proto = get("x-forwarded-proto")?
            .map(|p| p.split(',').next().unwrap_or(p).trim().to_ascii_lowercase());
        let host = get("x-forwarded-host")?.map(str::to_owned);
        let (method, target) = match mode {
            Some(Mode::Forward) => (
                get("x-forwarded-method")?.map(str::to_owned),
                get("x-forwarded-uri")?.map(str::to_owned),
            ),
            Some(Mode::Nginx) => (
                single(headers, &fa.inner.original_method)
                    .map_err(|()| bad("the original method header is repeated"))?
                    .map(str::to_owned),
                single(headers, &fa.inner.original_uri)
                    .map_err(|()| bad("the original URI header is repeated"))?
                    .map(str::to_owned),
            ),
            None => (None, None),
        };
        (
            method.unwrap_or_else(|| parts.method.as_str().to_owned()),
            proto.unwrap_or_else(|| own_scheme.to_owned()),
            host.unwrap_or(own_authority),
            target.unwrap_or(own_target),
        )
    } else {
        (
            parts.method.as_str().to_owned(),
            own_scheme.to_owned(),
            own_authority,
            own_target,
        )
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad("X-Forwarded-Proto is neither http nor https"));
    }
    if !valid_authority(&authority) {
        return Err(bad("the host is missing or not a host name"));
    }
    if target.len() > MAX_TARGET_LEN || !target.starts_with('/') {
        return Err(bad("the request target is missing, too long or not a path"));
    }
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(bad("the method is not a method"));
    }
    Ok(Seen {
        method: method.to_ascii_uppercase(),
        origin: Origin {
            scheme,
            authority: authority.to_ascii_lowercase(),
        },
        target,
    })
}

/// The first identity header a client sent, if any (USER-ASKS 8: `X_Auth_Request_User` and
/// `x-auth-request-user` are the same header to many applications).
pub(crate) fn injected_identity_header(headers: &HeaderMap) -> Option<String> {
    // Header names arrive lower-case; `_` counts as `-`. No allocation per header: this runs
    // on every check.
    let same = |name: &str, want: &str| {
        name.len() == want.len()
            && name
                .bytes()
                .zip(want.bytes())
                .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
    };
    headers.keys().find_map(|name| {
        IDENTITY_HEADERS
            .iter()
            .any(|want| same(name.as_str(), want))
            .then(|| name.as_str().to_owned())
    })
}

/// The RBAC verb of a method (GET and HEAD read).
pub(crate) fn verb_of(method: &str) -> Option<&'static str> {
    Some(match method {
        "GET" | "HEAD" => "get",
        "POST" => "post",
        "PUT" => "put",
        "PATCH" => "patch",
        "DELETE" => "delete",
        "OPTIONS" => "options",
        _ => return None,
    })
}

/// Whether the client is a browser (asks for HTML), which is redirected rather than told 401.
pub(crate) fn is_browser(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// The cookies of the request, name and value, in order.
pub(crate) fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim(), value.trim().trim_matches('"')))
        })
}

/// The session cookie, opened; expired ones too (for renewal and logout).
pub(crate) fn session_cookie(fa: &ForwardAuth, headers: &HeaderMap) -> Option<SessionCookie> {
    let ring = fa.inner.ring.load();
    cookies(headers)
        .filter(|(name, _)| *name == fa.inner.config.cookie_name)
        .find_map(|(_, value)| {
            let plain = ring.open(SESSION, value)?;
            serde_json::from_slice::<SessionCookie>(&plain).ok()
        })
}

/// The claims of a token the authenticator has verified.
pub(crate) fn claims_of(token: &str) -> serde_json::Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn claim(claims: &serde_json::Value, name: &str) -> String {
    claims
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Verifies an ID token of the issuer for this client: the identity, its `exp`, its claims.
pub(crate) async fn verify_id_token(
    fa: &ForwardAuth,
    token: &str,
) -> Result<(Identity, u64, serde_json::Value), String> {
    let secret = secrecy::SecretString::from(token.to_owned());
    match fa
        .inner
        .authenticator
        .authenticate_token(&secret, fa.now())
        .await
    {
        Outcome::Authenticated(a) => {
            let claims = claims_of(token);
            let exp = a.expires_at.unwrap_or_default();
            let user = std::sync::Arc::unwrap_or_clone(a.user);
            let identity = Identity {
                user: user.name,
                groups: user
                    .groups
                    .into_iter()
                    .filter(|g| g != SYSTEM_AUTHENTICATED)
                    .collect(),
                email: claim(&claims, "email"),
                preferred_username: claim(&claims, "preferred_username"),
                id_token: None,
            };
            Ok((identity, exp, claims))
        }
        Outcome::NotMine => Err(format!(
            "the token is not an ID token of {}",
            fa.inner.config.issuer
        )),
        Outcome::Failed(e) => Err(e.to_string()),
    }
}

/// Who is asking: a bearer ID token, else a live unexpired session cookie, else nobody.
/// `Err` for a bad bearer token (never falls back to the cookie).
async fn authenticate(fa: &ForwardAuth, headers: &HeaderMap) -> Result<Option<Identity>, String> {
    if headers.contains_key(AUTHORIZATION) {
        let Some(token) = Credentials::from_headers(headers).bearer_token() else {
            return Err("the Authorization header is not a bearer token".into());
        };
        let token = secrecy::ExposeSecret::expose_secret(&token).to_owned();
        let (mut identity, _, _) = verify_id_token(fa, &token).await?;
        identity.id_token = Some(token);
        return Ok(Some(identity));
    }
    let Some(cookie) = session_cookie(fa, headers) else {
        return Ok(None);
    };
    let now = fa.now();
    if cookie.exp <= now || !fa.inner.sessions.is_live(&cookie.sid, now).await {
        return Ok(None);
    }
    Ok(Some(Identity {
        user: cookie.u,
        groups: cookie.g,
        email: cookie.e,
        preferred_username: cookie.p,
        id_token: cookie.t,
    }))
}

/// The path RBAC decides for `host`: under the host's prefix; `None` when rules exist and
/// none is the host's.
fn rbac_path(fa: &ForwardAuth, origin: &Origin, path: &str) -> Option<String> {
    let rules = &fa.inner.config.hosts;
    if rules.is_empty() {
        return Some(path.to_owned());
    }
    let host = host_of(&origin.authority);
    let rule = rules.iter().find(|r| {
        let h = r.host.to_ascii_lowercase();
        h.strip_suffix('.').unwrap_or(&h) == host
    })?;
    Some(format!("{}{path}", rule.path_prefix))
}

/// The `Cookie` header without this endpoint's cookies (USER-ASKS 10).
fn upstream_cookies(fa: &ForwardAuth, headers: &HeaderMap) -> String {
    let c = &fa.inner.config;
    cookies(headers)
        .filter(|(name, _)| *name != c.cookie_name && *name != fa.inner.login_cookie)
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn allowed(fa: &ForwardAuth, identity: &Identity, headers: &HeaderMap) -> Response {
    let mut out = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| -> Result<(), ()> {
        if !value.is_empty() {
            out.insert(name, HeaderValue::from_str(value).map_err(|_| ())?);
        }
        Ok(())
    };
    let groups = identity.groups.join(",");
    let ok = set(USER_HEADER, &identity.user)
        .and_then(|()| set(EMAIL_HEADER, &identity.email))
        .and_then(|()| set(GROUPS_HEADER, &groups))
        .and_then(|()| set(PREFERRED_USERNAME_HEADER, &identity.preferred_username))
        .and_then(|()| set(COOKIE_HEADER, &upstream_cookies(fa, headers)));
    if ok.is_err() {
        // Fail closed: an identity that cannot be written as a header is not passed on.
        return pages::message(
            StatusCode::FORBIDDEN,
            "Identity not representable",
            "Your user name, e-mail or groups hold characters an HTTP header cannot carry; ask an administrator to fix the account.",
        );
    }
    if fa.inner.config.pass_id_token
        && let Some(token) = &identity.id_token
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        out.insert(AUTHORIZATION, v);
    }
    let mut response = Response::new(axum::body::Body::empty());
    *response.headers_mut() = out;
    pages::no_store(response)
}

/// Answers a check. nginx understands only 2xx, 401 and 403 from `auth_request` (anything
/// else becomes a 500): every other refusal is a 403 there.
pub(crate) async fn check(fa: &ForwardAuth, parts: &http::request::Parts, mode: Mode) -> Response {
    let mut response = decide(fa, parts, mode).await;
    let status = response.status();
    if mode == Mode::Nginx
        && !status.is_success()
        && status != StatusCode::UNAUTHORIZED
        && status != StatusCode::FORBIDDEN
    {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

async fn decide(fa: &ForwardAuth, parts: &http::request::Parts, mode: Mode) -> Response {
    if let Some(name) = injected_identity_header(&parts.headers) {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!(
                "The request carries the header {name}, which only the proxy may set. Remove it and retry."
            ),
        );
    }
    let seen = match judge(fa, parts, Some(mode)) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let path = match normalize(path_of(&seen.target)) {
        Ok(p) => p,
        Err(e) => {
            return pages::message(StatusCode::BAD_REQUEST, "Bad request", &format!("{e}."));
        }
    };
    // Traefik and Caddy send every request of the host here, the login's too.
    if mode == Mode::Forward {
        match path.as_str() {
            CALLBACK_PATH => return login::callback(fa, &seen, &parts.headers).await,
            START_PATH | OAUTH2_START_PATH => {
                return login::start(fa, &seen, &parts.headers).await;
            }
            LOGOUT_PATH => return login::logout(fa, &seen, &parts.headers).await,
            _ => {}
        }
    }
    let identity = match authenticate(fa, &parts.headers).await {
        Ok(Some(identity)) => identity,
        Ok(None) => return unauthenticated(fa, &seen, &parts.headers, mode).await,
        Err(why) => {
            tracing::debug!(reason = %why, "forward auth: bearer token refused");
            return pages::unauthorized(
                "The bearer token was refused; get a new ID token from the issuer.",
            );
        }
    };
    let Some(rbac_path) = rbac_path(fa, &seen.origin, &path) else {
        return pages::forbidden(
            &identity,
            seen.method.to_ascii_lowercase().as_str(),
            &seen.origin.authority,
            &path,
            "this host is not one of the hosts forward auth protects",
            is_browser(&parts.headers),
        );
    };
    let Some(verb) = verb_of(&seen.method) else {
        return pages::forbidden(
            &identity,
            &seen.method.to_ascii_lowercase(),
            &seen.origin.authority,
            &rbac_path,
            "the method is not one forward auth decides",
            is_browser(&parts.headers),
        );
    };
    let mut groups = identity.groups.clone();
    groups.push(SYSTEM_AUTHENTICATED.to_owned());
    let attributes = Attributes {
        user: identity.user.clone(),
        groups,
        verb: verb.to_owned(),
        resource_request: false,
        path: rbac_path.clone(),
        ..Attributes::default()
    };
    let decision = fa.inner.authorizer.authorize(&attributes);
    if decision.allowed {
        return allowed(fa, &identity, &parts.headers);
    }
    tracing::debug!(user = %identity.user, verb, path = %rbac_path, "forward auth: denied");
    pages::forbidden(
        &identity,
        verb,
        &seen.origin.authority,
        &rbac_path,
        "no ClusterRole bound to you grants this verb on this path",
        is_browser(&parts.headers),
    )
}

async fn unauthenticated(
    fa: &ForwardAuth,
    seen: &Seen,
    headers: &HeaderMap,
    mode: Mode,
) -> Response {
    if mode == Mode::Forward && is_browser(headers) && seen.method == "GET" {
        let rd = format!("{}{}", seen.origin.url(), seen.target);
        return login::begin(fa, &seen.origin, &rd, headers).await;
    }
    pages::unauthorized(
        "Log in first: open this page in a browser, or send an ID token of the issuer as `Authorization: Bearer`.",
    )
}
