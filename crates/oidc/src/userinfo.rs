//! The userinfo endpoint (OpenID Connect Core 1.0 §5.3), with the bearer token in the
//! `Authorization` header (RFC 6750 §2.1) or, on POST, in a form-encoded body (§2.2). The URI
//! query parameter (§2.3) is refused: it ends up in logs and browser history.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::provider::Provider;

/// An error answer of a protected resource (RFC 6750 §3): the `WWW-Authenticate` challenge,
/// and the same error as a JSON body for clients that read bodies.
fn bearer_error(status: StatusCode, error: Option<&'static str>, description: &str) -> Response {
    let challenge = match error {
        // §3.1: a request without any authentication gets no error code in the challenge.
        None => "Bearer realm=\"userinfo\"".to_owned(),
        Some(error) => {
            // §3: error_description holds only %x20-21 / %x23-5B / %x5D-7E.
            let header_description: String = description
                .chars()
                .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
                .collect();
            format!(
                "Bearer realm=\"userinfo\", error=\"{error}\", error_description=\"{header_description}\""
            )
        }
    };
    let body = json!({
        "error": error.unwrap_or("invalid_request"),
        "error_description": description,
    });
    (
        status,
        [
            (
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        axum::Json(body),
    )
        .into_response()
}

fn invalid_request(description: &'static str) -> Response {
    bearer_error(
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        description,
    )
}

/// The token of an `Authorization: Bearer` header: `None` without the header, an error for
/// another scheme or a malformed value.
fn header_token(headers: &HeaderMap) -> Result<Option<&str>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| Some(token.trim()))
        .filter(|t| t.is_some_and(|t| !t.is_empty()))
        .ok_or("the Authorization header must be \"Bearer TOKEN\"")
}

/// RFC 6750 §2.3 is not offered: an access token in the query is refused, not ignored, so
/// that the client learns why.
fn refuse_query_token(query: &[(String, String)]) -> Result<(), &'static str> {
    if query.iter().any(|(name, _)| name == "access_token") {
        return Err(
            "send the access token in the Authorization header or a form-encoded POST body, \
             never in the URI (RFC 6750 §2.3)",
        );
    }
    Ok(())
}

/// `GET /userinfo`: the token in the `Authorization` header.
pub(crate) async fn userinfo(
    State(provider): State<Provider>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = refuse_query_token(&query) {
        return invalid_request(why);
    }
    match header_token(&headers) {
        Ok(Some(token)) => claims(&provider, token).await,
        Ok(None) => no_token(),
        Err(why) => invalid_request(why),
    }
}

/// `POST /userinfo`: the token in the `Authorization` header, or as `access_token` in an
/// `application/x-www-form-urlencoded` body (RFC 6750 §2.2); never both (§2).
pub(crate) async fn userinfo_post(
    State(provider): State<Provider>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = refuse_query_token(&query) {
        return invalid_request(why);
    }
    let from_header = match header_token(&headers) {
        Ok(t) => t,
        Err(why) => return invalid_request(why),
    };
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let mut from_body = None;
    if is_form {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        let params = match crate::authorize::single_params(pairs) {
            Ok(p) => p,
            Err(_) => return invalid_request("the form has a repeated or oversized parameter"),
        };
        from_body = params.get("access_token").cloned();
    }
    match (from_header, from_body.as_deref()) {
        (Some(_), Some(_)) => invalid_request(
            "send the access token one way only, not in both the Authorization header and the body",
        ),
        (Some(token), None) | (None, Some(token)) => claims(&provider, token).await,
        (None, None) => no_token(),
    }
}

fn no_token() -> Response {
    bearer_error(
        StatusCode::UNAUTHORIZED,
        None,
        "an access token is required: send Authorization: Bearer TOKEN",
    )
}

/// The claims of the access token's user, as allowed by its scopes, read fresh from the
/// user's record (a disabled or deleted user, or a revoked grant, gets 401).
async fn claims(provider: &Provider, token: &str) -> Response {
    let (verified, _, grant) = match crate::revoke::active_access_token(provider, token).await {
        Ok(Some(active)) => active,
        Ok(None) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token is invalid, expired or revoked",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "userinfo failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let scopes: Vec<String> = verified
        .claim_str("scope")
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect();
    let identity = &grant.authn.identity;
    let subject = identity.subject.clone();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(subject));
    crate::token::scoped_claims(&mut claims, &scopes, identity);
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(Value::Object(claims)),
    )
        .into_response()
}
