//! The TokenReview webhook: a cluster's `--authentication-token-webhook-config-file` may point
//! at the proxy, which answers for the issuer's tokens with the same authenticator.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use portcullis_authn::chain::status_response;
use portcullis_authn::{Authenticator, Credentials, Outcome};
use serde::Deserialize;
use serde_json::json;

/// Largest TokenReview accepted.
const MAX_REVIEW_BYTES: usize = 64 * 1024;

/// Answers TokenReviews with an authenticator (the issuer's JWT authenticator).
#[derive(Clone)]
pub struct TokenReviewer {
    /// Verifies the token.
    pub authenticator: Arc<dyn Authenticator>,
    /// The audiences tokens are accepted for, when a review names none.
    pub audiences: Vec<String>,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: String,
    kind: String,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(default)]
    token: String,
    #[serde(default)]
    audiences: Vec<String>,
}

/// The route: `POST /apis/authentication.k8s.io/{v1,v1beta1}/tokenreviews`.
pub fn router(reviewer: TokenReviewer) -> axum::Router {
    axum::Router::new()
        .route(
            "/apis/authentication.k8s.io/{version}/tokenreviews",
            axum::routing::post(review),
        )
        .with_state(Arc::new(reviewer))
}

fn bad_request(message: &str) -> Response {
    status_response::<Body>(StatusCode::BAD_REQUEST, "BadRequest", message).into_response()
}

async fn review(
    State(reviewer): State<Arc<TokenReviewer>>,
    Path(version): Path<String>,
    body: Body,
) -> Response {
    if version != "v1" && version != "v1beta1" {
        return status_response::<Body>(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("authentication.k8s.io/{version} is not served; use v1 or v1beta1"),
        )
        .into_response();
    }
    let api_version = format!("authentication.k8s.io/{version}");
    let bytes = match http_body_util::Limited::new(body, MAX_REVIEW_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return status_response::<Body>(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("a TokenReview is at most {MAX_REVIEW_BYTES} bytes"),
            )
            .into_response();
        }
    };
    let review: Review = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return bad_request(&format!("the TokenReview is not valid JSON: {e}")),
    };
    if review.kind != "TokenReview" || review.api_version != api_version {
        return bad_request(&format!(
            "expected kind TokenReview of {api_version}, got {} of {}",
            review.kind, review.api_version
        ));
    }
    let status = decide(&reviewer, &review.spec).await;
    let answer = json!({
        "apiVersion": api_version,
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": {"audiences": review.spec.audiences},
        "status": status,
    });
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

async fn decide(reviewer: &TokenReviewer, spec: &Spec) -> serde_json::Value {
    let unauthenticated = |error: &str| json!({"authenticated": false, "user": {}, "error": error});
    if spec.token.is_empty() {
        return unauthenticated("no token given");
    }
    let Ok(mut value) = HeaderValue::try_from(format!("Bearer {}", spec.token)) else {
        return unauthenticated("the token is not valid header text");
    };
    value.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    let user = match reviewer
        .authenticator
        .authenticate(&Credentials::from_headers(&headers))
        .await
    {
        Outcome::Authenticated(a) => a.user,
        Outcome::NotMine => return unauthenticated("the token is not one of this issuer's"),
        Outcome::Failed(e) => {
            tracing::info!(reason = %e, "token review: authentication failed");
            return unauthenticated("invalid bearer token");
        }
    };
    // The token is verified: its audiences, intersected with those asked for (or, when none
    // are asked for, with the configured ones), are the ones it is good for here.
    let wanted = if spec.audiences.is_empty() {
        &reviewer.audiences
    } else {
        &spec.audiences
    };
    let mut audiences: Vec<String> = token_audiences(&spec.token)
        .into_iter()
        .filter(|a| wanted.contains(a) && reviewer.audiences.contains(a))
        .collect();
    audiences.sort_unstable();
    audiences.dedup();
    if audiences.is_empty() {
        return unauthenticated("the token's audiences do not match the ones asked for");
    }
    let mut user_json = serde_json::Map::new();
    user_json.insert("username".into(), json!(user.name));
    if !user.uid.is_empty() {
        user_json.insert("uid".into(), json!(user.uid));
    }
    user_json.insert("groups".into(), json!(user.groups));
    if !user.extra.is_empty() {
        user_json.insert("extra".into(), json!(user.extra));
    }
    json!({"authenticated": true, "user": user_json, "audiences": audiences})
}

/// The `aud` claim of a token already verified (one string or a list).
fn token_audiences(token: &str) -> Vec<String> {
    let Some(payload) = token.split('.').nth(1) else {
        return Vec::new();
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return Vec::new();
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    match claims.get("aud") {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}
