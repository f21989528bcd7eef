//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): `end_session_endpoint`.
//!
//! Logging out ends the browser session and the grants of the client that asked, made in
//! that browser session; other clients' grants (the same user's kubectl credentials, say)
//! survive. The logout happens without a question only when `id_token_hint` names the
//! browser's own live session (its `sid`); otherwise the user is asked to confirm (§2), so a
//! replayed or foreign `id_token_hint` cannot log anyone out.

use std::collections::HashMap;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_jose::VerifiedToken;
use portcullis_model::Client;

use crate::authorize::{page_params, see_other, with_cookies};
use crate::pages::{self, error_page};
use crate::provider::Provider;
use crate::session::{self, SESSION_COOKIE};
use crate::state::{self, GRANTS, GrantRecord};
use crate::{Error, registry};

/// Parameters carried through the confirmation form.
const CARRIED: &[&str] = &[
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
];

/// ID tokens are accepted as hints long after they expire (§2: the OP should accept expired
/// hints); a week bounds how old.
const HINT_MAX_AGE_SECS: u64 = 7 * 24 * 3600;

/// A checked logout request.
struct LogoutRequest {
    client: Option<Client>,
    /// `sid` of the verified `id_token_hint`.
    hinted_sid: Option<String>,
    redirect: Option<String>,
    state: Option<String>,
}

fn audience_of_hint(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    if let Some(azp) = claims.get("azp").and_then(|v| v.as_str()) {
        return Some(azp.to_owned());
    }
    match claims.get("aud")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => a.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Verifies an `id_token_hint`: an ID token signed by this issuer, for any of its clients,
/// expired up to a week ago at most (hints are accepted after they expire). The audience is
/// read unverified only to choose the verifier's expected audience; signature and issuer are
/// then verified, and an access token is refused.
pub(crate) fn verify_id_token_hint(provider: &Provider, hint: &str) -> Option<VerifiedToken> {
    let audience = audience_of_hint(hint)?;
    hinted_token(provider, hint, audience)
}

fn hinted_token(provider: &Provider, hint: &str, audience: String) -> Option<VerifiedToken> {
    let verifier = portcullis_jose::Verifier::new(provider.endpoints().issuer.clone(), audience)
        .with_leeway(HINT_MAX_AGE_SECS);
    let verified = verifier
        .verify(hint, &provider.shared_verification_keys(), provider.now())
        .ok()?;
    (verified.typ.as_deref() != Some(crate::token::ACCESS_TOKEN_TYP)).then_some(verified)
}

async fn check(
    provider: &Provider,
    params: &HashMap<String, String>,
) -> Result<Result<LogoutRequest, &'static str>, Error> {
    let get = |name: &str| params.get(name).map(String::as_str);
    let mut client_id = get("client_id").map(str::to_owned);
    let mut hinted_sid = None;
    if let Some(hint) = get("id_token_hint") {
        // The audience is read unverified only to pick the key check's expected audience; the
        // signature and issuer are then verified with it.
        let Some(audience) = client_id.clone().or_else(|| audience_of_hint(hint)) else {
            return Ok(Err("The id_token_hint is not valid."));
        };
        let Some(verified) = hinted_token(provider, hint, audience.clone()) else {
            return Ok(Err("The id_token_hint is not a valid ID token."));
        };
        hinted_sid = verified.claim_str("sid").map(str::to_owned);
        client_id = Some(audience);
    }
    let client = match &client_id {
        Some(id) => match registry::client(provider, id).await? {
            Some(c) => Some(c),
            None => return Ok(Err("Unknown client.")),
        },
        None => None,
    };
    let redirect = match get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => match &client {
            Some(c) if c.spec.post_logout_redirect_uri_allowed(uri) => Some(uri.to_owned()),
            Some(_) => {
                return Ok(Err(
                    "The post_logout_redirect_uri is not registered for this client.",
                ));
            }
            // §3: without a client, the URI cannot be checked, so it is not used.
            None => {
                return Ok(Err(
                    "A post_logout_redirect_uri needs a client_id or id_token_hint.",
                ));
            }
        },
    };
    Ok(Ok(LogoutRequest {
        client,
        hinted_sid,
        redirect,
        state: get("state").map(str::to_owned),
    }))
}

/// `GET /logout` (and a plain `POST` from a client's form, §2).
pub(crate) async fn end_session(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = match page_params(pairs) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    respond(&provider, &headers, params, false).await
}

/// `POST /logout`: the confirmation form, or a client's form post.
pub(crate) async fn end_session_post(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let params = match page_params(pairs) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let confirmed = params.contains_key("decision")
        && session::csrf_ok(&headers, params.get("csrf").map(String::as_str), None);
    if params.contains_key("decision") && !confirmed {
        return error_page(
            StatusCode::FORBIDDEN,
            "The form is missing its anti-forgery token; open the page again.",
        );
    }
    respond(&provider, &headers, params, confirmed).await
}

async fn respond(
    provider: &Provider,
    headers: &HeaderMap,
    params: HashMap<String, String>,
    confirmed: bool,
) -> Response {
    let request = match check(provider, &params).await {
        Ok(Ok(r)) => r,
        Ok(Err(message)) => return error_page(StatusCode::BAD_REQUEST, message),
        Err(e) => return internal(&e),
    };
    let now = provider.now();
    let session = match session::current(provider, headers, now).await {
        Ok(s) => s,
        Err(e) => return internal(&e),
    };
    let stay = params.get("decision").map(String::as_str) == Some("stay");
    let hint_matches = matches!(
        (&session, &request.hinted_sid),
        (Some((_, s)), Some(sid)) if s.authn.sid.as_deref().is_some_and(|own| state::same(own, sid))
    );
    if session.is_some() && !confirmed && !hint_matches {
        // Ask first.
        let (csrf, cookie) = match session::csrf(headers) {
            Ok(c) => c,
            Err(e) => return internal(&e),
        };
        let fields = CARRIED
            .iter()
            .filter_map(|name| params.get(*name).map(|v| (*name, v.clone())))
            .collect();
        let client = request.client.as_ref().map(|c| {
            if c.spec.display_name.is_empty() {
                c.metadata.name.as_str()
            } else {
                c.spec.display_name.as_str()
            }
        });
        let page = pages::render(
            StatusCode::OK,
            &pages::Logout {
                client,
                action: &provider.endpoints().url("/logout"),
                csrf: &csrf,
                fields,
            },
        );
        return with_cookies(page, cookie);
    }
    let mut cookies = Vec::new();
    if let (Some((key, s)), false) = (&session, stay) {
        if let Err(e) = log_out(provider, key, &s.authn, request.client.as_ref()).await {
            return internal(&e);
        }
        cookies.push(session::clear_cookie(SESSION_COOKIE));
    }
    let response = match &request.redirect {
        Some(uri) => {
            let Ok(mut url) = url::Url::parse(uri) else {
                return error_page(StatusCode::BAD_REQUEST, "The redirect URI is not valid.");
            };
            if let Some(state) = &request.state {
                url.query_pairs_mut().append_pair("state", state);
            }
            see_other(url.as_str())
        }
        None => pages::render(
            StatusCode::OK,
            &pages::Message {
                title: if stay {
                    "Still logged in"
                } else {
                    "Logged out"
                },
                message: if stay {
                    "Your session continues."
                } else {
                    "You are logged out. You can close this window."
                },
            },
        ),
    };
    with_cookies(response, cookies)
}

/// Ends the browser session, and the grants the client got in it.
async fn log_out(
    provider: &Provider,
    session_key: &str,
    authn: &state::Authentication,
    client: Option<&Client>,
) -> Result<(), Error> {
    state::remove(provider.store(), session_key).await?;
    if let (Some(client), Some(sid)) = (client, &authn.sid) {
        let name = &client.metadata.name;
        state::sweep::<GrantRecord>(provider.store(), GRANTS, |g| {
            &g.client_id == name && g.authn.sid.as_deref() == Some(sid.as_str())
        })
        .await?;
    }
    tracing::info!(user = %authn.identity.username, "logout");
    Ok(())
}

fn internal(e: &Error) -> Response {
    tracing::warn!(error = %e, "logout failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The login service failed; try again later.",
    )
}
