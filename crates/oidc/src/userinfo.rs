//! The userinfo endpoint (OpenID Connect Core 1.0 §5.3), with bearer tokens (RFC 6750 §2.1).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::provider::Provider;

fn invalid_token(description: &'static str) -> Response {
    // RFC 6750 §3: the challenge names the error.
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

/// `GET` or `POST /userinfo`: the claims of the access token's user, as allowed by its
/// scopes, read fresh from the user's record (a disabled or deleted user, or a revoked
/// grant, gets 401).
pub(crate) async fn userinfo(State(provider): State<Provider>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        )
            .into_response();
    };
    let (verified, _, grant) = match crate::revoke::active_access_token(&provider, token).await {
        Ok(Some(active)) => active,
        Ok(None) => return invalid_token("the access token is invalid, expired or revoked"),
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
