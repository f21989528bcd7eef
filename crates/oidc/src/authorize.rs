//! The authorization endpoint (OpenID Connect Core 1.0 §3.1.2, RFC 6749 §4.1) and the login
//! form it shows.

use std::collections::HashMap;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_model::GrantType;

use crate::grants::{
    CODE_LIFETIME_SECS, CodeGrant, Identity, PENDING_LIFETIME_SECS, PendingAuthorization,
};
use crate::login_page::{error_page, login_form};
use crate::provider::Provider;
use crate::{Error, registry};

/// Scopes understood (OpenID Connect Core 1.0 §5.4, plus Dex's `groups`).
pub(crate) const SCOPES: &[&str] = &["openid", "profile", "email", "groups"];

const MAX_PARAM_LEN: usize = 2048;
const MAX_LOGIN_LEN: usize = 253;
const MAX_PASSWORD_LEN: usize = 1024;

/// Request parameters as a map, refusing repeated or oversized ones (RFC 6749 §3.1: parameters
/// must not be included more than once).
pub(crate) fn single_params(
    pairs: Vec<(String, String)>,
) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if value.len() > MAX_PARAM_LEN {
            return Err(format!("parameter {name:?} is too long"));
        }
        if map.contains_key(&name) {
            return Err(format!("parameter {name:?} is repeated"));
        }
        map.insert(name, value);
    }
    Ok(map)
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The redirect URI is not valid."),
    }
}

/// Redirects to the client with `params` added to the redirect URI's query, plus `state` and
/// `iss` (RFC 9207, against mix-up attacks).
fn redirect_to_client(
    provider: &Provider,
    redirect_uri: &str,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "The redirect URI is not valid.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &provider.endpoints().issuer);
    }
    see_other(url.as_str())
}

fn redirect_error(
    provider: &Provider,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    redirect_to_client(
        provider,
        redirect_uri,
        state,
        &[("error", error), ("error_description", description)],
    )
}

fn internal(e: &Error) -> Response {
    tracing::warn!(error = %e, "authorization request failed");
    match e {
        Error::Busy => error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        _ => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The login service failed; try again later.",
        ),
    }
}

/// Whether `s` is a PKCE code challenge or verifier alphabet string (RFC 7636 §4.1).
pub(crate) fn pkce_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `GET /auth`: checks the request, then shows the login form.
pub(crate) async fn authorize(
    State(provider): State<Provider>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = match single_params(pairs) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let get = |name: &str| params.get(name).map(String::as_str);

    // Until client and redirect URI are verified, errors are shown here, never redirected.
    let Some(client_id) = get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, "The request has no client_id.");
    };
    let client = match registry::client(&provider, client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, "Unknown client."),
        Err(e) => return internal(&e),
    };
    // OpenID Connect Core 1.0 §3.1.2.1: redirect_uri is required and matched exactly.
    let Some(redirect_uri) = get("redirect_uri") else {
        return error_page(StatusCode::BAD_REQUEST, "The request has no redirect_uri.");
    };
    if !client.spec.redirect_uri_allowed(redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The redirect_uri is not registered for this client.",
        );
    }
    let state = get("state");
    let fail = |error: &str, description: &str| {
        redirect_error(&provider, redirect_uri, state, error, description)
    };

    if get("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "only the authorization code flow (response_type=code) is supported",
        );
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return fail("invalid_request", "only response_mode=query is supported");
    }
    if !client.spec.allows_grant(GrantType::AuthorizationCode) {
        return fail(
            "unauthorized_client",
            "the client may not use the authorization code grant",
        );
    }
    let scopes: Vec<String> = get("scope")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return fail("invalid_scope", "the openid scope is required");
    }
    if let Some(unknown) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return fail("invalid_scope", &format!("unsupported scope {unknown:?}"));
    }

    // RFC 7636 §4.3; plain is refused (RFC 9700 §2.1.1), and a missing method means plain.
    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) if client.spec.public => {
            return fail(
                "invalid_request",
                "public clients must use PKCE (code_challenge_method=S256)",
            );
        }
        (None, None) => None,
        (Some(challenge), Some("S256")) => {
            if challenge.len() != 43 || !pkce_chars(challenge) {
                return fail(
                    "invalid_request",
                    "code_challenge must be the base64url SHA-256 of the verifier",
                );
            }
            Some(challenge.to_owned())
        }
        (_, Some("S256")) | (None, Some(_)) => {
            return fail("invalid_request", "code_challenge is missing");
        }
        (Some(_), _) => {
            return fail(
                "invalid_request",
                "only code_challenge_method=S256 is supported; plain is refused",
            );
        }
    };

    // No sessions yet: every authorization needs a login, so prompt=none cannot succeed
    // (OpenID Connect Core 1.0 §3.1.2.6).
    if get("prompt").is_some_and(|p| p.split(' ').any(|v| v == "none")) {
        return fail("login_required", "the user is not logged in");
    }

    let now = provider.now();
    let pending = PendingAuthorization {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        nonce: get("nonce").map(str::to_owned),
        scopes,
        code_challenge,
        expires_at: now + PENDING_LIFETIME_SECS,
    };
    let request = match provider.grants().insert_pending(pending, now) {
        Ok(id) => id,
        Err(e) => return internal(&e),
    };
    let display = if client.spec.display_name.is_empty() {
        client_id
    } else {
        client.spec.display_name.as_str()
    };
    let login_hint = get("login_hint").unwrap_or_default();
    login_form(
        StatusCode::OK,
        &provider.endpoints().url("/auth/login"),
        &request,
        display,
        login_hint,
        None,
    )
}

/// `POST /auth/login`: checks the password, then redirects to the client with a code.
pub(crate) async fn login(
    State(provider): State<Provider>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let params = match single_params(pairs) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let get = |name: &str| params.get(name).map(String::as_str);
    let now = provider.now();
    let expired = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "This login page has expired or was already used; go back to the application and start again.",
        )
    };
    let Some(request_id) = get("request") else {
        return expired();
    };
    let Some(pending) = provider.grants().pending(request_id, now) else {
        return expired();
    };
    let login = get("login").unwrap_or_default();
    let password = get("password").unwrap_or_default();
    let retry = |status: StatusCode, message: &str| {
        login_form(
            status,
            &provider.endpoints().url("/auth/login"),
            request_id,
            &pending.client_id,
            login,
            Some(message),
        )
    };
    if login.is_empty() || login.len() > MAX_LOGIN_LEN || password.len() > MAX_PASSWORD_LEN {
        return retry(StatusCode::UNAUTHORIZED, "Invalid username or password.");
    }
    let user = match registry::user(&provider, login).await {
        Ok(user) => user,
        Err(e) => return internal(&e),
    };
    // One message for every failure: unknown user, wrong password, disabled account.
    if !registry::verify_password(user.as_ref(), password.to_owned()).await {
        return retry(StatusCode::UNAUTHORIZED, "Invalid username or password.");
    }
    let Some(user) = user else {
        return retry(StatusCode::UNAUTHORIZED, "Invalid username or password.");
    };
    // The request is completed once, even if the form is posted twice.
    let Some(pending) = provider.grants().take_pending(request_id, now) else {
        return expired();
    };
    let identity = Identity {
        subject: user
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| user.metadata.name.clone()),
        username: user.metadata.name.clone(),
        name: user.spec.display_name.clone(),
        email: user.spec.email.clone(),
        email_verified: user.spec.email_verified,
        groups: user.spec.groups.clone(),
    };
    let redirect_uri = pending.redirect_uri.clone();
    let state = pending.state.clone();
    let grant = CodeGrant {
        request: pending,
        identity,
        auth_time: now,
        expires_at: now + CODE_LIFETIME_SECS,
    };
    let code = match provider.grants().insert_code(grant, now) {
        Ok(code) => code,
        Err(e) => return internal(&e),
    };
    redirect_to_client(
        &provider,
        &redirect_uri,
        state.as_deref(),
        &[("code", &code)],
    )
}
