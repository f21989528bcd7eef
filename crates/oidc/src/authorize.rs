//! The authorization endpoint (OpenID Connect Core 1.0 §3.1.2, RFC 6749 §4.1), the login,
//! account-selection and consent forms it shows, and single sign-on from the browser session.

use std::collections::HashMap;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_model::{Client, GrantType};

use crate::grants::{CODE_LIFETIME_SECS, PENDING_LIFETIME_SECS, PendingAuthorization};
use crate::pages::{self, error_page};
use crate::provider::Provider;
use crate::session::{self, ClientAddr};
use crate::state::{self, Authentication, CODES, CodeRecord};
use crate::{Error, registry};
use portcullis_connectors::LOCAL;

/// Scopes understood (OpenID Connect Core 1.0 §5.4, plus Dex's `groups`), besides
/// `audience:server:client_id:ID`.
pub(crate) const SCOPES: &[&str] = &["openid", "profile", "email", "groups", "offline_access"];

/// Prefix of the cross-client audience scope (as Dex spells it).
pub(crate) const AUDIENCE_SCOPE_PREFIX: &str = "audience:server:client_id:";

/// Longest parameter value (an `id_token_hint` with many groups and an RSA-3072 signature
/// needs several kilobytes).
const MAX_PARAM_LEN: usize = 8 * 1024;
const MAX_LOGIN_LEN: usize = 253;
const MAX_PASSWORD_LEN: usize = 1024;
/// Most scopes in one request.
const MAX_SCOPES: usize = 32;

/// The one message for every failed login: unknown user, wrong password, disabled account.
const INVALID_LOGIN: &str = "Invalid username or password.";

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

pub(crate) fn see_other(location: &str) -> Response {
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

/// Sends the authorization response to the client: `params` plus `state` and `iss` (RFC 9207,
/// against mix-up attacks), in the redirect URI's query or as an auto-submitted form post.
pub(crate) fn respond_to_client(
    provider: &Provider,
    redirect_uri: &str,
    form_post: bool,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> Response {
    let mut fields: Vec<(&str, String)> =
        params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    if let Some(state) = state {
        fields.push(("state", state.to_owned()));
    }
    fields.push(("iss", provider.endpoints().issuer.clone()));
    if form_post {
        let Ok(nonce) = crate::grants::random_token() else {
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "No randomness.");
        };
        return pages::render_form_post(&pages::FormPost {
            action: redirect_uri,
            fields,
            nonce: &nonce,
        });
    }
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "The redirect URI is not valid.");
    };
    url.query_pairs_mut()
        .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())));
    see_other(url.as_str())
}

pub(crate) fn internal(e: &Error) -> Response {
    tracing::warn!(error = %e, "authorization request failed");
    match e {
        Error::Busy => error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        _ => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The login service failed; try again later.",
        ),
    }
}

pub(crate) fn expired_page() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This page has expired or was already used; go back to the application and start again.",
    )
}

pub(crate) fn csrf_failed() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "The form is missing its anti-forgery token (cookies must be enabled); go back to the application and start again.",
    )
}

/// Adds `Set-Cookie` headers to a response.
pub(crate) fn with_cookies(
    mut response: Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> Response {
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// Whether `s` is a PKCE code challenge or verifier alphabet string (RFC 7636 §4.1).
pub(crate) fn pkce_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Splits and checks a `scope` parameter: known scopes, and audience scopes naming clients
/// that trust `client` (their `trustedPeers` lists it). Returns the granted scopes and the
/// audiences. Values not understood are left out (OpenID Connect Core 1.0 §3.1.2.1: they
/// "SHOULD be ignored"); `offline_access` from a client that may not use refresh tokens and
/// an audience that does not trust the client are refused.
pub(crate) async fn check_scopes(
    provider: &Provider,
    client: &Client,
    scope: Option<&str>,
) -> Result<Result<(Vec<String>, Vec<String>), String>, Error> {
    let mut scopes: Vec<String> = Vec::new();
    let mut audiences = Vec::new();
    for (i, s) in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        if i >= MAX_SCOPES {
            return Ok(Err("too many scopes".into()));
        }
        if scopes.iter().any(|x| x == s) {
            continue;
        }
        if let Some(peer) = s.strip_prefix(AUDIENCE_SCOPE_PREFIX) {
            if peer != client.metadata.name {
                let trusted = registry::client(provider, peer)
                    .await?
                    .is_some_and(|p| p.spec.trusted_peers.contains(&client.metadata.name));
                if !trusted {
                    return Ok(Err(format!(
                        "client {peer:?} does not list {:?} among its trusted peers",
                        client.metadata.name
                    )));
                }
            }
            audiences.push(peer.to_owned());
        } else if s == "offline_access" && !client.spec.allows_grant(GrantType::RefreshToken) {
            // Refused rather than dropped: the client asked for a refresh token it cannot get.
            return Ok(Err(
                "the client may not use refresh tokens (offline_access); add refresh_token to \
                 its grantTypes or leave offline_access out"
                    .into(),
            ));
        } else if !SCOPES.contains(&s) {
            continue;
        }
        scopes.push(s.to_owned());
    }
    Ok(Ok((scopes, audiences)))
}

/// The parsed `prompt` parameter (OpenID Connect Core 1.0 §3.1.2.1).
#[derive(Default)]
struct Prompt {
    none: bool,
    login: bool,
    consent: bool,
    select_account: bool,
}

fn parse_prompt(value: Option<&str>) -> Result<Prompt, String> {
    let mut prompt = Prompt::default();
    for v in value
        .unwrap_or_default()
        .split(' ')
        .filter(|v| !v.is_empty())
    {
        match v {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            "select_account" => prompt.select_account = true,
            other => return Err(format!("unsupported prompt value {other:?}")),
        }
    }
    if prompt.none && (prompt.login || prompt.consent || prompt.select_account) {
        return Err("prompt=none cannot be combined with other values".into());
    }
    Ok(prompt)
}

/// `GET /auth`: checks the request, then answers from the browser session or shows the
/// login form.
pub(crate) async fn authorize(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    authorization_request(&provider, &headers, pairs).await
}

/// `POST /auth`: the same request with its parameters form-serialised in the body (OpenID
/// Connect Core 1.0 §3.1.2.1: the authorization endpoint must support GET and POST).
pub(crate) async fn authorize_post(
    State(provider): State<Provider>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(pairs)) = form else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "An authorization request sent with POST must be an \
             application/x-www-form-urlencoded form.",
        );
    };
    authorization_request(&provider, &headers, pairs).await
}

async fn authorization_request(
    provider: &Provider,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
) -> Response {
    let provider = provider.clone();
    let params = match page_params(pairs) {
        Ok(p) => p,
        Err(response) => return *response,
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
    let form_post = match get("response_mode") {
        None | Some("query") => false,
        Some("form_post") => true,
        Some(_) => {
            return respond_to_client(
                &provider,
                redirect_uri,
                false,
                state,
                &[
                    ("error", "invalid_request"),
                    (
                        "error_description",
                        "response_mode must be query or form_post",
                    ),
                ],
            );
        }
    };
    let fail = |error: &str, description: &str| {
        respond_to_client(
            &provider,
            redirect_uri,
            form_post,
            state,
            &[("error", error), ("error_description", description)],
        )
    };

    if get("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "only the authorization code flow (response_type=code) is supported",
        );
    }
    if get("request").is_some() || get("request_uri").is_some() {
        return fail("request_not_supported", "request objects are not supported");
    }
    if !client.spec.allows_grant(GrantType::AuthorizationCode) {
        return fail(
            "unauthorized_client",
            "the client may not use the authorization code grant",
        );
    }
    // Before the user logs in for nothing: the client's ID tokens must be signable here.
    match crate::token::id_token_algorithm(&provider, &client) {
        Ok(_) => {}
        Err(e @ crate::token::IdTokenAlgError::NotPublished(_)) => {
            return fail("unauthorized_client", &e.description());
        }
        // RFC 6749 §4.1.2.1: a temporary condition.
        Err(e @ crate::token::IdTokenAlgError::NotYet(..)) => {
            return fail("temporarily_unavailable", &e.description());
        }
    }
    let (scopes, audiences) = match check_scopes(&provider, &client, get("scope")).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail("invalid_scope", &e),
        Err(e) => return internal(&e),
    };
    if !scopes.iter().any(|s| s == "openid") {
        return fail("invalid_scope", "the openid scope is required");
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
    let prompt = match parse_prompt(get("prompt")) {
        Ok(p) => p,
        Err(e) => return fail("invalid_request", &e),
    };
    let max_age = match get("max_age").map(str::parse::<u64>) {
        None => None,
        Some(Ok(age)) => Some(age),
        Some(Err(_)) => {
            return fail(
                "invalid_request",
                "max_age must be a non-negative number of seconds",
            );
        }
    };

    // OpenID Connect Core 1.0 §3.1.2.1: id_token_hint names the End-User the client expects;
    // it must be an ID token of this issuer (expired ones are fine).
    let hinted_subject = match get("id_token_hint") {
        None => None,
        Some(hint) => match crate::logout::verify_id_token_hint(&provider, hint)
            .and_then(|verified| verified.subject)
        {
            Some(subject) => Some(subject),
            None => {
                return fail(
                    "invalid_request",
                    "id_token_hint is not an ID token issued by this issuer",
                );
            }
        },
    };

    // Dex's `connector_id`: log in with this connector, without the chooser.
    let connector_id = match get("connector_id") {
        None => None,
        Some(id)
            if id == LOCAL
                || provider.connectors().get(id).is_some()
                || provider.connectors().redirect(id).is_some() =>
        {
            Some(id.to_owned())
        }
        Some(_) => {
            return fail(
                "invalid_request",
                "connector_id names no connector of this issuer",
            );
        }
    };

    let now = provider.now();
    let session = match session::current(&provider, headers, now).await {
        // A session of another End-User than the hinted one, or from another connector than
        // the one asked for, does not answer the request.
        Ok(s) => s.filter(|(_, s)| {
            hinted_subject
                .as_ref()
                .is_none_or(|h| *h == s.authn.identity.subject)
                && connector_id
                    .as_deref()
                    .is_none_or(|c| c == connector_of(&s.authn))
        }),
        Err(e) => return internal(&e),
    };
    // OpenID Connect Core 1.0 §3.1.2.1: max_age forces a new login once the last one is older.
    let fresh = |s: &state::BrowserSession| {
        max_age.is_none_or(|age| now.saturating_sub(s.authn.auth_time) <= age)
    };
    let (csrf, csrf_cookie) = match session::csrf(headers) {
        Ok(c) => c,
        Err(e) => return internal(&e),
    };
    let pending = PendingAuthorization {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        nonce: get("nonce").map(str::to_owned),
        scopes,
        audiences,
        code_challenge,
        form_post,
        consent: prompt.consent,
        csrf,
        device: None,
        hinted_subject,
        connector_id,
        expires_at: now + PENDING_LIFETIME_SECS,
    };

    if prompt.none {
        // §3.1.2.6: no interaction; answer from the session or fail.
        return match session {
            Some((_, s)) if fresh(&s) => issue_code(&provider, pending, &s.authn, now).await,
            _ => fail("login_required", "the user is not logged in"),
        };
    }
    let usable = session.filter(|(_, s)| fresh(s) && !prompt.login);
    match usable {
        Some((_, s)) if !prompt.select_account && !prompt.consent => {
            issue_code(&provider, pending, &s.authn, now).await
        }
        Some((_, s)) if !prompt.select_account => {
            let response = show_consent(&provider, &client, pending, &s.authn.identity.username);
            with_cookies(response, csrf_cookie)
        }
        None if pending
            .connector_id
            .as_deref()
            .is_some_and(|id| provider.connectors().redirect(id).is_some()) =>
        {
            // connector_id names an upstream provider: no page of ours, straight there.
            let response = crate::upstream::begin(&provider, pending).await;
            with_cookies(response, csrf_cookie)
        }
        current => {
            let user = current
                .as_ref()
                .map(|(_, s)| s.authn.identity.username.clone());
            let login_hint = get("login_hint").unwrap_or_default().to_owned();
            let response = show_login(&provider, &client, pending, &login_hint, user.as_deref());
            with_cookies(response, csrf_cookie)
        }
    }
}

fn display_name(client: &Client) -> &str {
    if client.spec.display_name.is_empty() {
        &client.metadata.name
    } else {
        &client.spec.display_name
    }
}

fn show_login(
    provider: &Provider,
    client: &Client,
    pending: PendingAuthorization,
    login: &str,
    current_user: Option<&str>,
) -> Response {
    let now = provider.now();
    let csrf = pending.csrf.clone();
    let connector = pending.connector_id.clone();
    let request = match provider.grants().insert_pending(pending, now) {
        Ok(id) => id,
        Err(e) => return internal(&e),
    };
    login_page(
        provider,
        StatusCode::OK,
        &LoginForm {
            client: display_name(client),
            request: &request,
            csrf: &csrf,
            login,
            fixed_connector: connector.as_deref(),
            selected: connector.as_deref().unwrap_or(LOCAL),
        },
        None,
        current_user,
    )
}

/// What the login form shows besides messages.
struct LoginForm<'a> {
    client: &'a str,
    request: &'a str,
    csrf: &'a str,
    login: &'a str,
    /// The request's `connector_id`: only this connector is offered.
    fixed_connector: Option<&'a str>,
    /// The connector chosen (checked in the chooser).
    selected: &'a str,
}

/// The connector a login came through.
fn connector_of(authn: &Authentication) -> &str {
    authn.connector.as_ref().map_or(LOCAL, |c| c.id.as_str())
}

/// The connectors offered on the login page (the local users first), and the user-name
/// prompt: the chosen connector's, or a neutral one when several are offered.
fn connector_choices(
    provider: &Provider,
    fixed: Option<&str>,
    selected: &str,
) -> (
    Vec<pages::ConnectorChoice>,
    Vec<pages::ConnectorChoice>,
    String,
) {
    let connectors = provider.connectors();
    let mut choices = vec![pages::ConnectorChoice {
        id: LOCAL.to_owned(),
        name: "Local account".to_owned(),
        checked: selected == LOCAL,
    }];
    let mut prompt = "Username".to_owned();
    for c in connectors.iter() {
        if c.id() == selected {
            prompt = c.username_prompt().to_owned();
        }
        choices.push(pages::ConnectorChoice {
            id: c.id().to_owned(),
            name: c.display_name().to_owned(),
            checked: c.id() == selected,
        });
    }
    let mut redirects: Vec<pages::ConnectorChoice> = connectors
        .redirects()
        .map(|c| pages::ConnectorChoice {
            id: c.id().to_owned(),
            name: c.display_name().to_owned(),
            checked: c.id() == selected,
        })
        .collect();
    if let Some(fixed) = fixed {
        choices.retain(|c| c.id == fixed);
        redirects.retain(|c| c.id == fixed);
    } else if choices.len() > 1 {
        prompt = "Username".to_owned();
    }
    (choices, redirects, prompt)
}

fn login_page(
    provider: &Provider,
    status: StatusCode,
    form: &LoginForm<'_>,
    error: Option<&str>,
    current_user: Option<&str>,
) -> Response {
    let (connectors, redirects, username_prompt) =
        connector_choices(provider, form.fixed_connector, form.selected);
    pages::render(
        status,
        &pages::Login {
            client: form.client,
            action: &provider.endpoints().url("/auth/login"),
            continue_action: &provider.endpoints().url("/auth/continue"),
            request: form.request,
            csrf: form.csrf,
            login: form.login,
            error,
            current_user,
            connectors,
            redirects,
            username_prompt: &username_prompt,
        },
    )
}

fn show_consent(
    provider: &Provider,
    client: &Client,
    pending: PendingAuthorization,
    user: &str,
) -> Response {
    let now = provider.now();
    let csrf = pending.csrf.clone();
    let scopes = pending.scopes.clone();
    let request = match provider.grants().insert_pending(pending, now) {
        Ok(id) => id,
        Err(e) => return internal(&e),
    };
    consent_page(provider, client, user, scopes, &request, &csrf)
}

fn consent_page(
    provider: &Provider,
    client: &Client,
    user: &str,
    scopes: Vec<String>,
    request: &str,
    csrf: &str,
) -> Response {
    let described = scopes
        .iter()
        .filter_map(|s| describe_scope(s))
        .collect::<Vec<_>>();
    pages::render(
        StatusCode::OK,
        &pages::Consent {
            client: display_name(client),
            user,
            scopes: described,
            action: &provider.endpoints().url("/auth/consent"),
            request,
            csrf,
        },
    )
}

fn describe_scope(scope: &str) -> Option<String> {
    Some(match scope {
        "openid" => "your identity".into(),
        "profile" => "your name and username".into(),
        "email" => "your e-mail address".into(),
        "groups" => "your group memberships".into(),
        "offline_access" => "access while you are not logged in (a refresh token)".into(),
        s => match s.strip_prefix(AUDIENCE_SCOPE_PREFIX) {
            Some(peer) => format!("tokens for {peer}"),
            None => return None,
        },
    })
}

/// Issues a code for a completed authorization and sends it to the client.
async fn issue_code(
    provider: &Provider,
    request: PendingAuthorization,
    authn: &Authentication,
    now: u64,
) -> Response {
    let code = match crate::grants::random_token() {
        Ok(c) => c,
        Err(e) => return internal(&e),
    };
    let redirect_uri = request.redirect_uri.clone();
    let state = request.state.clone();
    let form_post = request.form_post;
    if request
        .hinted_subject
        .as_ref()
        .is_some_and(|h| *h != authn.identity.subject)
    {
        // §3.1.2.1: the End-User who logged in is not the one id_token_hint names.
        return respond_to_client(
            provider,
            &redirect_uri,
            form_post,
            state.as_deref(),
            &[
                ("error", "login_required"),
                (
                    "error_description",
                    "the logged-in user is not the one id_token_hint names",
                ),
            ],
        );
    }
    let record = CodeRecord {
        request,
        authn: authn.clone(),
        expires_at: now + CODE_LIFETIME_SECS,
        redeemed: None,
    };
    let key = format!("{CODES}{}", state::digest_hex(&code));
    if let Err(e) = state::create(provider.store(), &key, &record).await {
        return internal(&e);
    }
    respond_to_client(
        provider,
        &redirect_uri,
        form_post,
        state.as_deref(),
        &[("code", &code)],
    )
}

/// Finishes a pending request once the user is known: shows the consent page when asked
/// for (and always for a device), or completes it.
pub(crate) async fn proceed(
    provider: &Provider,
    request_id: &str,
    pending: PendingAuthorization,
    authn: &Authentication,
    now: u64,
) -> Response {
    let client = match registry::client(provider, &pending.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, "Unknown client."),
        Err(e) => return internal(&e),
    };
    if pending.consent || pending.device.is_some() {
        return consent_page(
            provider,
            &client,
            &authn.identity.username,
            pending.scopes.clone(),
            request_id,
            &pending.csrf,
        );
    }
    // The request is completed once, even if the form is posted twice.
    let Some(pending) = provider.grants().take_pending(request_id, now) else {
        return expired_page();
    };
    issue_code(provider, pending, authn, now).await
}

/// The parameters of a page request, or the error page for repeated or oversized ones.
pub(crate) fn page_params(
    pairs: Vec<(String, String)>,
) -> Result<HashMap<String, String>, Box<Response>> {
    single_params(pairs).map_err(|e| Box::new(error_page(StatusCode::BAD_REQUEST, &e)))
}

/// A form post continuing a pending request: its parameters, the request's handle and the
/// request, checked for the CSRF value.
struct PendingForm {
    params: HashMap<String, String>,
    request_id: String,
    pending: PendingAuthorization,
}

fn pending_form(
    provider: &Provider,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
    now: u64,
) -> Result<PendingForm, Box<Response>> {
    let params = page_params(pairs)?;
    let Some(request_id) = params.get("request").cloned() else {
        return Err(Box::new(expired_page()));
    };
    let Some(pending) = provider.grants().pending(&request_id, now) else {
        return Err(Box::new(expired_page()));
    };
    let field = params.get("csrf").map(String::as_str);
    if !session::csrf_ok(headers, field, Some(&pending.csrf)) {
        return Err(Box::new(csrf_failed()));
    }
    Ok(PendingForm {
        params,
        request_id,
        pending,
    })
}

/// The browser's live session, or the page to show without one.
async fn live_session(
    provider: &Provider,
    headers: &HeaderMap,
    now: u64,
) -> Result<crate::state::BrowserSession, Box<Response>> {
    match session::current(provider, headers, now).await {
        Ok(Some((_, s))) => Ok(s),
        Ok(None) => Err(Box::new(expired_page())),
        Err(e) => Err(Box::new(internal(&e))),
    }
}

/// `POST /auth/login`: checks the password (with backoff after failures), starts the browser
/// session, then continues the request.
pub(crate) async fn login(
    State(provider): State<Provider>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let now = provider.now();
    let PendingForm {
        params,
        request_id,
        pending,
    } = match pending_form(&provider, &headers, pairs, now) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let login = params.get("login").map(String::as_str).unwrap_or_default();
    let password = params
        .get("password")
        .map(String::as_str)
        .unwrap_or_default();
    let client_name = match registry::client(&provider, &pending.client_id).await {
        Ok(Some(c)) => display_name(&c).to_owned(),
        Ok(None) => pending.client_id.clone(),
        Err(e) => return internal(&e),
    };
    // The connector: the request's connector_id, or the one chosen on the form, or local.
    let connector_id = match (&pending.connector_id, params.get("connector")) {
        (Some(fixed), Some(chosen)) if fixed != chosen => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The sign-in method differs from the one the application asked for; go back to the application and start again.",
            );
        }
        (Some(id), _) | (None, Some(id)) => id.clone(),
        (None, None) => LOCAL.to_owned(),
    };
    if let Some(upstream) = provider.connectors().redirect(&connector_id).cloned() {
        return crate::upstream::redirect(&provider, &request_id, &pending.csrf, upstream).await;
    }
    let retry = |status: StatusCode, message: &str| {
        login_page(
            &provider,
            status,
            &LoginForm {
                client: &client_name,
                request: &request_id,
                csrf: &pending.csrf,
                login,
                fixed_connector: pending.connector_id.as_deref(),
                selected: &connector_id,
            },
            Some(message),
            None,
        )
    };
    // Throttled per connector: alice of the directory is not the local alice.
    let throttled = if connector_id == LOCAL {
        login.to_owned()
    } else {
        format!("{connector_id}/{login}")
    };
    let login_key = throttled.as_str();
    if let Some(wait) = provider.throttle().wait(login_key, address, now) {
        let mut response = retry(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed logins; try again in {wait} seconds."),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    if login.is_empty() || login.len() > MAX_LOGIN_LEN || password.len() > MAX_PASSWORD_LEN {
        provider.throttle().failed(login_key, address, now);
        return retry(StatusCode::UNAUTHORIZED, INVALID_LOGIN);
    }
    let sid = match crate::grants::random_token() {
        Ok(sid) => Some(sid),
        Err(e) => return internal(&e),
    };
    let authn = if connector_id == LOCAL {
        let user = match registry::user(&provider, login).await {
            Ok(user) => user,
            Err(e) => return internal(&e),
        };
        let verified = registry::verify_password(user.as_ref(), password.to_owned()).await;
        let Some(user) = user.filter(|_| verified) else {
            provider.throttle().failed(login_key, address, now);
            tracing::info!(client = %pending.client_id, "failed login");
            return retry(StatusCode::UNAUTHORIZED, INVALID_LOGIN);
        };
        let identity =
            match crate::groups::with_portcullis_groups(&provider, registry::identity_of(&user))
                .await
            {
                Ok(identity) => identity,
                Err(e) => return internal(&e),
            };
        Authentication {
            identity,
            credential: registry::credential_of(&user),
            sid,
            auth_time: now,
            amr: vec!["pwd".into()],
            connector: None,
        }
    } else {
        let Some(connector) = provider.connectors().get(&connector_id).cloned() else {
            return retry(
                StatusCode::BAD_REQUEST,
                "This sign-in method is no longer offered; choose another.",
            );
        };
        let password = secrecy::SecretString::from(password.to_owned());
        let mut trace = portcullis_connectors::Trace::default();
        match connector.login(login, &password, &mut trace).await {
            Ok(Some(identity)) => {
                match crate::connect::authentication(&provider, &connector_id, identity, sid, now)
                    .await
                {
                    Ok(authn) => authn,
                    Err(e) => return internal(&e),
                }
            }
            Ok(None) => {
                provider.throttle().failed(login_key, address, now);
                tracing::info!(client = %pending.client_id, connector = %connector_id, "failed login");
                return retry(StatusCode::UNAUTHORIZED, INVALID_LOGIN);
            }
            Err(e) => {
                tracing::warn!(error = %e, "connector login failed");
                return retry(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "{} cannot be reached; try again later or choose another sign-in method.",
                        connector.display_name()
                    ),
                );
            }
        }
    };
    provider.throttle().succeeded(login_key, address);
    // A new login replaces the browser's previous session (prompt=login, another account).
    if let Err(e) = session::end(&provider, &headers).await {
        return internal(&e);
    }
    let cookie = match session::start(&provider, &authn, now).await {
        Ok(c) => c,
        Err(e) => return internal(&e),
    };
    tracing::info!(user = %authn.identity.username, client = %pending.client_id, "login");
    let response = proceed(&provider, &request_id, pending, &authn, now).await;
    with_cookies(response, [cookie])
}

/// `POST /auth/continue`: "continue as" the session's user (`prompt=select_account`).
pub(crate) async fn continue_as(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let now = provider.now();
    let form = match pending_form(&provider, &headers, pairs, now) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    match live_session(&provider, &headers, now).await {
        Ok(s) => proceed(&provider, &form.request_id, form.pending, &s.authn, now).await,
        Err(response) => *response,
    }
}

/// `POST /auth/consent`: the user allows or denies the request (an authorization or a
/// device).
pub(crate) async fn consent(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let now = provider.now();
    let form = match pending_form(&provider, &headers, pairs, now) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let session = match live_session(&provider, &headers, now).await {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let Some(pending) = provider.grants().take_pending(&form.request_id, now) else {
        return expired_page();
    };
    let approved = form.params.get("decision").map(String::as_str) == Some("approve");
    if let Some(device) = &pending.device {
        return crate::device::decide(&provider, device, approved.then_some(&session.authn)).await;
    }
    if !approved {
        return respond_to_client(
            &provider,
            &pending.redirect_uri,
            pending.form_post,
            pending.state.as_deref(),
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied the request"),
            ],
        );
    }
    issue_code(&provider, pending, &session.authn, now).await
}

/// Starts a login (or consent) for a device approval: from the device verification page.
pub(crate) async fn start_device_login(
    provider: &Provider,
    headers: &HeaderMap,
    pending: PendingAuthorization,
    now: u64,
) -> Response {
    let client = match registry::client(provider, &pending.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, "Unknown client."),
        Err(e) => return internal(&e),
    };
    match session::current(provider, headers, now).await {
        Ok(Some((_, s))) => show_consent(provider, &client, pending, &s.authn.identity.username),
        Ok(None) => show_login(provider, &client, pending, "", None),
        Err(e) => internal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_values() {
        assert!(parse_prompt(Some("none")).unwrap().none);
        let p = parse_prompt(Some("login consent")).unwrap();
        assert!(p.login && p.consent && !p.none);
        assert!(parse_prompt(Some("none login")).is_err());
        assert!(parse_prompt(Some("bogus")).is_err());
        assert!(!parse_prompt(None).unwrap().login);
    }
}
