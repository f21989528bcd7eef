//! The device authorization grant (RFC 8628): the device authorization endpoint, the
//! verification page where the user enters the code, and the device's polling at the token
//! endpoint.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_model::{Client, GrantType};
use serde_json::{Value, json};

use crate::authorize::{check_scopes, single_params, start_device_login, with_cookies};
use crate::grants::{PENDING_LIFETIME_SECS, PendingAuthorization, random_token};
use crate::pages::{self, error_page};
use crate::provider::Provider;
use crate::session::{self, ClientAddr};
use crate::state::{self, DEVICES, DeviceRecord, DeviceState, USER_CODES, UserCodeRecord};
use crate::token::{OAuthError, OAuthForm, answer, client_request, oauth_error};

/// How long a device code can be used (RFC 8628 §3.2 `expires_in`).
const DEVICE_CODE_LIFETIME_SECS: u64 = 600;
/// Seconds between polls (§3.2 `interval`; §3.5 adds 5 on `slow_down`).
const POLL_INTERVAL_SECS: u64 = 5;
/// User-code alphabet: consonants only (§6.1: no vowels, so no words; no look-alikes).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code: 20^8 ≈ 2.6 × 10^10 codes against guessing at the rate limit.
const USER_CODE_LEN: usize = 8;

fn user_code() -> Result<String, crate::Error> {
    let mut bytes = [0u8; USER_CODE_LEN];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| crate::Error::Crypto("no randomness"))?;
    let mut code = String::with_capacity(USER_CODE_LEN + 1);
    for (i, b) in bytes.iter().enumerate() {
        if i == USER_CODE_LEN / 2 {
            code.push('-');
        }
        // 256 = 12 × 20 + 16: reduce modulo 20 from a range without bias.
        let mut v = *b;
        while usize::from(v) >= 240 {
            let mut one = [0u8; 1];
            aws_lc_rs::rand::fill(&mut one).map_err(|_| crate::Error::Crypto("no randomness"))?;
            v = one[0];
        }
        let letter = USER_CODE_ALPHABET
            .get(usize::from(v) % USER_CODE_ALPHABET.len())
            .copied()
            .unwrap_or(b'B');
        code.push(char::from(letter));
    }
    Ok(code)
}

/// The canonical form of what a user typed (§6.1: case and separators do not matter).
fn normalize_user_code(typed: &str) -> Option<String> {
    let letters: String = typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if letters.len() != USER_CODE_LEN || !letters.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)) {
        return None;
    }
    let (a, b) = letters.split_at(USER_CODE_LEN / 2);
    Some(format!("{a}-{b}"))
}

/// `POST /device/code`: a device asks for a device code and a user code (§3.1, §3.2).
pub(crate) async fn authorization(
    State(provider): State<Provider>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Response {
    let result = async {
        let (params, client) = client_request(&provider, &headers, form).await?;
        start(&provider, &client, &params).await.map(Some)
    };
    answer(result.await)
}

async fn start(
    provider: &Provider,
    client: &Client,
    params: &std::collections::HashMap<String, String>,
) -> Result<Value, OAuthError> {
    if !client.spec.allows_grant(GrantType::DeviceCode) {
        return Err(oauth_error(
            "unauthorized_client",
            "the client may not use the device authorization grant",
        ));
    }
    let (scopes, audiences) =
        check_scopes(provider, client, params.get("scope").map(String::as_str))
            .await?
            .map_err(|e| oauth_error("invalid_scope", e))?;
    if !scopes.iter().any(|s| s == "openid") {
        return Err(oauth_error("invalid_scope", "the openid scope is required"));
    }
    let now = provider.now();
    let device_code = random_token()?;
    let device_key = format!("{DEVICES}{}", state::digest_hex(&device_code));
    // A user code clash (one in 10^10 per live code) is retried with a new code.
    let mut user_code = user_code()?;
    for attempt in 0.. {
        let index = UserCodeRecord {
            device: device_key.clone(),
            expires_at: now + DEVICE_CODE_LIFETIME_SECS,
        };
        match state::create(
            provider.store(),
            &format!("{USER_CODES}{user_code}"),
            &index,
        )
        .await
        {
            Ok(_) => break,
            Err(crate::Error::Store(portcullis_store::StoreError::AlreadyExists(_)))
                if attempt < 3 =>
            {
                user_code = self::user_code()?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let record = DeviceRecord {
        client_id: client.metadata.name.clone(),
        scopes,
        audiences,
        user_code: user_code.clone(),
        expires_at: now + DEVICE_CODE_LIFETIME_SECS,
        interval: POLL_INTERVAL_SECS,
        last_poll: 0,
        state: DeviceState::Pending,
    };
    state::create(provider.store(), &device_key, &record).await?;
    let verification_uri = provider.endpoints().url("/device");
    let complete = format!("{verification_uri}?user_code={user_code}");
    Ok(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": complete,
        "expires_in": DEVICE_CODE_LIFETIME_SECS,
        "interval": POLL_INTERVAL_SECS,
    }))
}

fn device_page(
    provider: &Provider,
    status: StatusCode,
    csrf: &str,
    user_code: &str,
    error: Option<&str>,
) -> Response {
    pages::render(
        status,
        &pages::Device {
            action: &provider.endpoints().url("/device"),
            csrf,
            user_code,
            error,
        },
    )
}

/// `GET /device`: the verification page (§3.3), with the code filled in from
/// `verification_uri_complete`.
pub(crate) async fn verification_page(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let typed = pairs
        .iter()
        .find(|(k, _)| k == "user_code")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let prefill = normalize_user_code(typed).unwrap_or_default();
    let (csrf, cookie) = match session::csrf(&headers) {
        Ok(c) => c,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    with_cookies(
        device_page(&provider, StatusCode::OK, &csrf, &prefill, None),
        cookie,
    )
}

/// `POST /device`: the user entered a code; continue to login or consent.
pub(crate) async fn verify(
    State(provider): State<Provider>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let Ok(params) = single_params(pairs) else {
        return error_page(StatusCode::BAD_REQUEST, "The form is not valid.");
    };
    let field = params.get("csrf").map(String::as_str);
    if !session::csrf_ok(&headers, field, None) {
        return error_page(
            StatusCode::FORBIDDEN,
            "The form is missing its anti-forgery token (cookies must be enabled); open the page again.",
        );
    }
    let csrf = field.unwrap_or_default();
    let typed = params.get("user_code").map(String::as_str).unwrap_or("");
    let now = provider.now();
    // Guessing codes is throttled per client address (as an "account" of its own, so that
    // one address's wrong codes never slow down another's).
    let throttle_key = format!(
        "\u{0}device-code:{}",
        address.map(|a| a.to_string()).unwrap_or_default()
    );
    let throttle_key = throttle_key.as_str();
    if let Some(wait) = provider.throttle().wait(throttle_key, address, now) {
        let message = format!("Too many wrong codes; try again in {wait} seconds.");
        return device_page(
            &provider,
            StatusCode::TOO_MANY_REQUESTS,
            csrf,
            typed,
            Some(&message),
        );
    }
    let invalid = |provider: &Provider| {
        provider.throttle().failed(throttle_key, address, now);
        device_page(
            provider,
            StatusCode::BAD_REQUEST,
            csrf,
            typed,
            Some("That code is not valid or has expired."),
        )
    };
    let Some(code) = normalize_user_code(typed) else {
        return invalid(&provider);
    };
    let index = match state::get::<UserCodeRecord>(provider.store(), &format!("{USER_CODES}{code}"))
        .await
    {
        Ok(Some((index, _))) if index.expires_at > now => index,
        Ok(_) => return invalid(&provider),
        Err(e) => return internal(&e),
    };
    let record = match state::get::<DeviceRecord>(provider.store(), &index.device).await {
        Ok(Some((record, _)))
            if record.expires_at > now && matches!(record.state, DeviceState::Pending) =>
        {
            record
        }
        Ok(_) => return invalid(&provider),
        Err(e) => return internal(&e),
    };
    let pending = PendingAuthorization {
        client_id: record.client_id,
        redirect_uri: String::new(),
        state: None,
        nonce: None,
        scopes: record.scopes,
        audiences: record.audiences,
        code_challenge: None,
        form_post: false,
        consent: true,
        csrf: csrf.to_owned(),
        device: Some(index.device),
        hinted_subject: None,
        connector_id: None,
        expires_at: (now + PENDING_LIFETIME_SECS).min(record.expires_at),
    };
    start_device_login(&provider, &headers, pending, now).await
}

fn internal(e: &crate::Error) -> Response {
    tracing::warn!(error = %e, "device verification failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The login service failed; try again later.",
    )
}

/// Records the user's decision on a device (approved with `authn`, or denied).
pub(crate) async fn decide(
    provider: &Provider,
    device_key: &str,
    approved: Option<&state::Authentication>,
) -> Response {
    let now = provider.now();
    for _ in 0..5 {
        let (mut record, revision) =
            match state::get::<DeviceRecord>(provider.store(), device_key).await {
                Ok(Some(r)) if r.0.expires_at > now => r,
                Ok(_) => return error_page(StatusCode::BAD_REQUEST, "The code has expired."),
                Err(e) => return internal(&e),
            };
        if !matches!(record.state, DeviceState::Pending) {
            return error_page(StatusCode::BAD_REQUEST, "The code was already used.");
        }
        record.state = match approved {
            Some(authn) => DeviceState::Approved {
                authn: authn.clone(),
            },
            None => DeviceState::Denied,
        };
        match state::replace(provider.store(), device_key, &record, revision).await {
            Ok(true) => {
                let (title, message) = if approved.is_some() {
                    (
                        "Device connected",
                        "You can close this window and return to your device.",
                    )
                } else {
                    ("Access denied", "The device was not given access.")
                };
                return pages::render(StatusCode::OK, &pages::Message { title, message });
            }
            Ok(false) => continue,
            Err(e) => return internal(&e),
        }
    }
    error_page(StatusCode::CONFLICT, "The code is busy; try again.")
}

/// The device polls the token endpoint (§3.4, §3.5). On approval, the grant is created and
/// the authentication returned for issuing tokens.
pub(crate) async fn poll(
    provider: &Provider,
    client: &Client,
    device_code: &str,
    now: u64,
) -> Result<(DeviceRecord, state::Authentication, String), OAuthError> {
    let key = format!("{DEVICES}{}", state::digest_hex(device_code));
    let invalid = || oauth_error("invalid_grant", "the device code is invalid");
    for _ in 0..5 {
        let Some((mut record, revision)) =
            state::get::<DeviceRecord>(provider.store(), &key).await?
        else {
            return Err(invalid());
        };
        if record.client_id != client.metadata.name {
            return Err(invalid());
        }
        if record.expires_at <= now {
            return Err(oauth_error("expired_token", "the device code has expired"));
        }
        match record.state.clone() {
            DeviceState::Pending => {
                let too_soon = record.last_poll + record.interval > now;
                if too_soon {
                    record.interval += 5;
                }
                record.last_poll = now;
                if !state::replace(provider.store(), &key, &record, revision).await? {
                    continue;
                }
                return Err(if too_soon {
                    oauth_error("slow_down", "poll less often")
                } else {
                    oauth_error(
                        "authorization_pending",
                        "the user has not yet approved the device",
                    )
                });
            }
            DeviceState::Denied => {
                return Err(oauth_error("access_denied", "the user denied the device"));
            }
            DeviceState::Redeemed { .. } => return Err(invalid()),
            DeviceState::Approved { authn } => {
                let grant = crate::grants::random_id()?;
                record.state = DeviceState::Redeemed {
                    grant: grant.clone(),
                };
                if !state::replace(provider.store(), &key, &record, revision).await? {
                    continue;
                }
                return Ok((record, authn, grant));
            }
        }
    }
    Err(oauth_error("slow_down", "the device code is busy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_consonants_in_two_groups() {
        for _ in 0..100 {
            let code = user_code().unwrap();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
        }
    }

    #[test]
    fn typed_codes_are_normalized() {
        assert_eq!(
            normalize_user_code(" bcdf ghjk ").as_deref(),
            Some("BCDF-GHJK")
        );
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDF-GHJK")
        );
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels never appear"
        );
        assert_eq!(normalize_user_code("BCDF"), None);
        assert_eq!(normalize_user_code("../x"), None);
    }
}
