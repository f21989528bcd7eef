//! Forwarding one authenticated request to the cluster as its user.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use portcullis_authn::chain::{OriginalUser, RemoteAddr, status_response};
use portcullis_authn::{
    IMPERSONATE_EXTRA_PREFIX, IMPERSONATE_GROUP, IMPERSONATE_UID, IMPERSONATE_USER,
    SYSTEM_AUTHENTICATED, UserInfo,
};

use crate::Proxy;

/// The extra key under which the upstream learns who asked for an impersonation made through
/// the proxy (`kubectl --as`): the requester's name, uid and groups as JSON, so that the
/// cluster's audit record names both users.
pub const ORIGINAL_USER_EXTRA: &str = "portcullis.dev/original-user";

/// Headers that belong to one connection (RFC 9110 §7.6.1), never forwarded as such.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a client header must not reach the upstream: credentials and every spelling of an
/// impersonation header (any case, `_` for `-`: some servers and proxies read one as the
/// other), which the proxy alone sets.
pub fn is_identity_header(name: &HeaderName) -> bool {
    // Header names are stored lower-case; `_` is read as `-` (with no copy of the name).
    const PREFIX: &[u8] = b"impersonate-";
    let n = name.as_str().as_bytes();
    *name == header::AUTHORIZATION
        || (n.len() >= PREFIX.len()
            && n.iter()
                .zip(PREFIX)
                .all(|(&b, &want)| b == want || (b == b'_' && want == b'-')))
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Header names the `Connection` header lists: hop-by-hop for this request.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Removes the hop-by-hop headers of a response: the fixed ones and those its `Connection`
/// header lists. Most responses have none, which one pass over their few names tells.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let any = headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(&name.as_str()));
    if !any {
        return;
    }
    let listed = connection_listed(headers);
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// Percent-encodes an extra key for an `Impersonate-Extra-` header name, as kube-apiserver
/// decodes it (lower-cased, then `%XX` unescaped): every byte that is not a lower-case letter,
/// digit or one of `-!#$&'*+.^_|~` is escaped.
pub fn encode_extra_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'!'
            | b'#'
            | b'$'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'.'
            | b'^'
            | b'_'
            | b'|'
            | b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `Impersonate-*` headers naming `user` (with `system:authenticated`), and, when the
/// request impersonated someone, the requester as [`ORIGINAL_USER_EXTRA`].
fn impersonation_headers(
    headers: &mut HeaderMap,
    user: &UserInfo,
    original: Option<&UserInfo>,
) -> Result<(), String> {
    let value =
        |v: &str| HeaderValue::try_from(v).map_err(|_| format!("{v:?} cannot be sent in a header"));
    headers.insert(IMPERSONATE_USER, value(&user.name)?);
    for group in &user.groups {
        headers.append(IMPERSONATE_GROUP, value(group)?);
    }
    if !user.groups.iter().any(|g| g == SYSTEM_AUTHENTICATED) && user.name != "system:anonymous" {
        headers.append(
            IMPERSONATE_GROUP,
            HeaderValue::from_static(SYSTEM_AUTHENTICATED),
        );
    }
    if !user.uid.is_empty() {
        headers.insert(IMPERSONATE_UID, value(&user.uid)?);
    }
    let mut extra_header = |key: &str, v: &str| -> Result<(), String> {
        let name = HeaderName::try_from(format!(
            "{IMPERSONATE_EXTRA_PREFIX}{}",
            encode_extra_key(key)
        ))
        .map_err(|_| format!("extra key {key:?} cannot be sent in a header"))?;
        headers.append(name, value(v)?);
        Ok(())
    };
    for (key, values) in &user.extra {
        if key == ORIGINAL_USER_EXTRA {
            continue;
        }
        for v in values {
            extra_header(key, v)?;
        }
    }
    if let Some(original) = original {
        let json = serde_json::json!({
            "username": original.name,
            "uid": original.uid,
            "groups": original.groups,
        });
        extra_header(ORIGINAL_USER_EXTRA, &json.to_string())?;
    }
    Ok(())
}

fn status<B: From<String>>(code: StatusCode, reason: &str, message: &str) -> Response<B> {
    status_response(code, reason, message)
}

/// Forwards `req` (behind the chain: its `Arc<UserInfo>` in the extensions) to the upstream as
/// that user.
pub(crate) async fn forward(proxy: Arc<Proxy>, mut req: Request<Body>) -> Response<Body> {
    let Some(user) = req.extensions().get::<Arc<UserInfo>>().cloned() else {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    };
    let original = req.extensions().get::<OriginalUser>().map(|o| o.0.clone());
    let upgrade = is_upgrade(req.headers());
    if req.headers().contains_key(header::TRANSFER_ENCODING)
        && req.headers().contains_key(header::CONTENT_LENGTH)
    {
        // RFC 9112 §6.3: a sign of request smuggling; never forwarded.
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the request has both Transfer-Encoding and Content-Length",
        );
    }
    // The declared length (Content-Length, or HTTP/2's): refused at once when too large.
    if let Some(length) = http_body::Body::size_hint(req.body()).upper().or_else(|| {
        req.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    }) && length > proxy.config.max_body_bytes
    {
        return status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!(
                "the request body is {length} bytes; at most {} are accepted",
                proxy.config.max_body_bytes
            ),
        );
    }

    let uri = match proxy.upstream.uri_of(req.uri().path_and_query()) {
        Ok(uri) => uri,
        Err(_) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the request path cannot be forwarded",
            );
        }
    };

    let listed = connection_listed(req.headers());
    let mut headers = HeaderMap::with_capacity(req.headers().len() + 8);
    // The client's `X-Forwarded-For` values, then its address, joined into one value.
    let mut forwarded_for = String::new();
    let mut forwarded = |v: &dyn std::fmt::Display| {
        use std::fmt::Write as _;
        let separator = if forwarded_for.is_empty() { "" } else { ", " };
        let _ = write!(forwarded_for, "{separator}{v}");
    };
    for (name, value) in req.headers() {
        let n = name.as_str();
        if is_identity_header(name) || n == "host" {
            continue;
        }
        if n == "x-forwarded-for" {
            if let Ok(v) = value.to_str() {
                forwarded(&v);
            }
            continue;
        }
        let hop = HOP_BY_HOP.contains(&n) || listed.iter().any(|l| l == n);
        if hop && !(upgrade && (n == "upgrade" || n == "connection")) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if let Some(remote) = req.extensions().get::<RemoteAddr>() {
        forwarded(&remote.0.ip());
    }
    if !forwarded_for.is_empty()
        && let Ok(v) = HeaderValue::try_from(forwarded_for)
    {
        headers.insert("x-forwarded-for", v);
    }
    if let Err(message) = impersonation_headers(&mut headers, &user, original.as_ref()) {
        return status(StatusCode::BAD_REQUEST, "BadRequest", &message);
    }
    match proxy.upstream.authorization() {
        Ok(Some(v)) => {
            headers.insert(header::AUTHORIZATION, v);
        }
        Ok(None) => {}
        Err(message) => {
            tracing::error!(%message, "the proxy's credential for the upstream");
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the proxy cannot read its own credential for the cluster; see its log",
            );
        }
    }

    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let method = req.method().clone();
    let max = proxy.config.max_body_bytes;
    let body = Body::new(http_body_util::Limited::new(req.into_body(), to_usize(max)));
    let mut out = Request::new(body);
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;

    let started = Instant::now();
    let sent = tokio::time::timeout(
        proxy.config.response_header_timeout,
        proxy.upstream.send(out, upgrade),
    )
    .await;
    let mut response = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if body_too_large(&e) => {
            proxy.metrics.upstream(upgrade, 0, started.elapsed());
            return status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!(
                    "the request body is larger than {} bytes; it was not forwarded whole",
                    proxy.config.max_body_bytes
                ),
            );
        }
        Ok(Err(e)) => {
            proxy.metrics.upstream(upgrade, 0, started.elapsed());
            tracing::warn!(upstream = %proxy.upstream.server(), error = %error_chain(&e), "upstream request failed");
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!(
                    "the cluster's API server {} did not answer: {}",
                    proxy.upstream.server(),
                    error_chain(&e)
                ),
            );
        }
        Err(_) => {
            proxy.metrics.upstream(upgrade, 0, started.elapsed());
            return status(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                &format!(
                    "the cluster's API server {} sent no response within {} s",
                    proxy.upstream.server(),
                    proxy.config.response_header_timeout.as_secs()
                ),
            );
        }
    };
    proxy
        .metrics
        .upstream(upgrade, response.status().as_u16(), started.elapsed());

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            // The upstream switched protocols on a request that did not ask to.
            return status(
                StatusCode::BAD_GATEWAY,
                "BadGateway",
                "the cluster's API server switched protocols unasked",
            );
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade not completed");
                    return;
                }
            };
            let mut client = hyper_util::rt::TokioIo::new(client);
            let mut upstream = hyper_util::rt::TokioIo::new(upstream);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "upgraded stream ended with an error");
            }
        });
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }

    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    // A small answer of declared length (the common get, an error Status) is read whole and
    // written to the client at once with its head: one write instead of two. Anything else
    // (watches, logs, large lists: chunked or long) streams.
    let small = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= SMALL_RESPONSE_BYTES);
    if small {
        return match http_body_util::Limited::new(body, SMALL_RESPONSE_BYTES)
            .collect()
            .await
        {
            Ok(collected) => Response::from_parts(parts, Body::from(collected.to_bytes())),
            Err(e) => {
                tracing::warn!(upstream = %proxy.upstream.server(), error = %e, "upstream response body failed");
                status(
                    StatusCode::BAD_GATEWAY,
                    "BadGateway",
                    "the cluster's API server ended its answer early",
                )
            }
        };
    }
    Response::from_parts(parts, Body::new(body.map_err(axum::Error::new)))
}

/// Responses of at most this many declared bytes are read whole before they are forwarded.
const SMALL_RESPONSE_BYTES: usize = 64 * 1024;

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Whether sending failed because the client's body went over the limit.
fn body_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error and its causes, joined (hyper's client errors say little at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_in_any_spelling() {
        for name in [
            "impersonate-user",
            "Impersonate-Group",
            "IMPERSONATE-UID",
            "impersonate_user",
            "Impersonate_Extra_scopes",
            "impersonate-extra-x",
            "authorization",
        ] {
            let name = HeaderName::try_from(name).expect("header name");
            assert!(is_identity_header(&name), "{name} must be stripped");
        }
        for name in ["accept", "x-impersonate-user", "content-type"] {
            let name = HeaderName::try_from(name).expect("header name");
            assert!(!is_identity_header(&name), "{name} must pass");
        }
    }

    #[test]
    fn extra_keys_encode_as_kube_apiserver_decodes() {
        assert_eq!(encode_extra_key("scopes"), "scopes");
        assert_eq!(
            encode_extra_key("portcullis.dev/original-user"),
            "portcullis.dev%2Foriginal-user"
        );
        assert_eq!(encode_extra_key("A b%"), "%41%20b%25");
    }

    #[test]
    fn impersonation_headers_name_user_groups_uid_extra_and_original() {
        let mut headers = HeaderMap::new();
        let mut user = UserInfo {
            name: "alice@example.com".into(),
            uid: "u-1".into(),
            groups: vec!["oidc:dev".into()],
            ..UserInfo::default()
        };
        user.extra
            .insert("example.com/team".into(), vec!["a".into(), "b".into()]);
        let original = UserInfo {
            name: "bob".into(),
            groups: vec!["g".into()],
            ..UserInfo::default()
        };
        impersonation_headers(&mut headers, &user, Some(&original)).expect("headers");
        assert_eq!(headers["impersonate-user"], "alice@example.com");
        let groups: Vec<_> = headers.get_all("impersonate-group").iter().collect();
        assert_eq!(groups, ["oidc:dev", "system:authenticated"]);
        assert_eq!(headers["impersonate-uid"], "u-1");
        let extra: Vec<_> = headers
            .get_all("impersonate-extra-example.com%2Fteam")
            .iter()
            .collect();
        assert_eq!(extra, ["a", "b"]);
        let original: serde_json::Value = serde_json::from_slice(
            headers["impersonate-extra-portcullis.dev%2Foriginal-user"].as_bytes(),
        )
        .expect("json");
        assert_eq!(original["username"], "bob");
    }
}
