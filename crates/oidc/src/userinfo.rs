//! The userinfo endpoint (OpenID Connect Core 1.0 §5.3), with bearer tokens (RFC 6750 §2.1).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::grants::Identity;
use crate::provider::Provider;
use crate::registry;

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
/// scopes, read fresh from the user's record (a disabled or deleted user gets 401).
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
    let Ok(verified) = provider.verify_access_token(token, provider.now()) else {
        return invalid_token("the access token is invalid or expired");
    };
    let Some(username) = verified.claim_str("preferred_username") else {
        return invalid_token("the access token names no user");
    };
    let user = match registry::user(&provider, username).await {
        Ok(Some(user)) if !user.spec.disabled => user,
        Ok(_) => return invalid_token("the user no longer exists or is disabled"),
        Err(e) => {
            tracing::warn!(error = %e, "userinfo failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let subject = user
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| user.metadata.name.clone());
    if verified.subject.as_deref() != Some(subject.as_str()) {
        return invalid_token("the access token's user was replaced");
    }
    let scopes: Vec<String> = verified
        .claim_str("scope")
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect();
    let identity = Identity {
        subject: subject.clone(),
        username: user.metadata.name.clone(),
        name: user.spec.display_name.clone(),
        email: user.spec.email.clone(),
        email_verified: user.spec.email_verified,
        groups: user.spec.groups.clone(),
    };
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(subject));
    crate::token::scoped_claims(&mut claims, &scopes, &identity);
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(Value::Object(claims)),
    )
        .into_response()
}
