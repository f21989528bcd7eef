//! The login (authorization code with PKCE), the callback, silent renewal and logout.

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use subtle::ConstantTimeEq;

use crate::check::{self, Identity, Seen, session_cookie, verify_id_token};
use crate::path::query_of;
use crate::redirect::{self, Origin, host_of};
use crate::seal::{MAX_SEALED_LEN, random_token};
use crate::session::{LOGIN, LoginCookie, SESSION, SessionCookie, SessionRecord};
use crate::{CALLBACK_PATH, ForwardAuth, pages};

// === handlers for requests routed here directly (nginx `location`) ===

pub(crate) async fn start_direct(State(fa): State<ForwardAuth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    match check::judge(&fa, &parts, None) {
        Ok(seen) => start(&fa, &seen, &parts.headers).await,
        Err(r) => *r,
    }
}

pub(crate) async fn callback_direct(State(fa): State<ForwardAuth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    match check::judge(&fa, &parts, None) {
        Ok(seen) => callback(&fa, &seen, &parts.headers).await,
        Err(r) => *r,
    }
}

pub(crate) async fn logout_direct(State(fa): State<ForwardAuth>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    match check::judge(&fa, &parts, None) {
        Ok(seen) => logout(&fa, &seen, &parts.headers).await,
        Err(r) => *r,
    }
}

// === cookies ===

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Set-Cookie` for `name`: `HttpOnly`, `SameSite=Lax`, `Path=/`, the cookie domain when
/// configured, and `Secure` unless the site is plain http on a loopback host (development,
/// where browsers would drop a `Secure` cookie set over http).
fn set_cookie(
    fa: &ForwardAuth,
    origin: &Origin,
    name: &str,
    value: &str,
    max_age: u64,
) -> Option<HeaderValue> {
    let mut c = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax");
    if let Some(domain) = &fa.inner.config.cookie_domain {
        c.push_str("; Domain=");
        c.push_str(domain);
    }
    if origin.scheme == "https" || !is_loopback(host_of(&origin.authority)) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).ok()
}

fn redirect_to(location: &str, cookies: Vec<Option<HeaderValue>>) -> Response {
    let Ok(location) = HeaderValue::from_str(location) else {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Bad redirect",
            "The redirect target cannot be sent.",
        );
    };
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(LOCATION, location);
    for c in cookies.into_iter().flatten() {
        headers.append(SET_COOKIE, c);
    }
    pages::no_store(response)
}

/// Hosts `rd` may name: the configured ones, the protected hosts and the cookie domain.
fn allowed_domains(fa: &ForwardAuth) -> Vec<String> {
    let c = &fa.inner.config;
    let mut d = c.allowed_redirect_domains.clone();
    d.extend(c.hosts.iter().map(|h| h.host.to_ascii_lowercase()));
    if let Some(domain) = &c.cookie_domain {
        let domain = domain.trim_start_matches('.');
        d.push(domain.to_owned());
        d.push(format!(".{domain}"));
    }
    if let Some(auth) = &c.auth_host {
        d.push(auth.to_ascii_lowercase());
    }
    d
}

fn query_param(target: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query_of(target)?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A session cookie for `identity`, or `None` when it would not fit in 4 KB.
fn session_set_cookie(
    fa: &ForwardAuth,
    origin: &Origin,
    sid: &str,
    identity: &Identity,
    exp: u64,
) -> Result<Option<HeaderValue>, Box<Response>> {
    let c = &fa.inner.config;
    let cookie = SessionCookie {
        sid: sid.to_owned(),
        u: identity.user.clone(),
        g: identity.groups.clone(),
        e: identity.email.clone(),
        p: identity.preferred_username.clone(),
        exp,
        t: if c.pass_id_token {
            identity.id_token.clone()
        } else {
            None
        },
    };
    let too_big = || {
        Box::new(pages::message(
            StatusCode::FORBIDDEN,
            "Session too large",
            "Your identity (user name, e-mail and groups) does not fit in one 4 KB cookie. Ask an administrator to trim your groups or turn off passIDToken.",
        ))
    };
    let json = serde_json::to_vec(&cookie).map_err(|_| too_big())?;
    let sealed = fa.inner.ring.load().seal(SESSION, &json).map_err(|_| {
        Box::new(pages::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "Sealing the session failed.",
        ))
    })?;
    // The browser limit is on name, `=` and value together (RFC 6265 §6.1).
    if sealed.len() + c.cookie_name.len() + 1 > MAX_SEALED_LEN {
        return Err(too_big());
    }
    Ok(set_cookie(
        fa,
        origin,
        &c.cookie_name,
        &sealed,
        c.renew_seconds,
    ))
}

fn clear_cookie(fa: &ForwardAuth, origin: &Origin, name: &str) -> Option<HeaderValue> {
    set_cookie(fa, origin, name, "", 0)
}

// === login ===

/// `/_oauth/start?rd=…` (or `/oauth2/start`).
pub(crate) async fn start(fa: &ForwardAuth, seen: &Seen, headers: &HeaderMap) -> Response {
    let rd = query_param(&seen.target, "rd").unwrap_or_default();
    begin(fa, &seen.origin, &rd, headers).await
}

/// Starts a login that ends at `rd`: renews the session silently when it can, else sends the
/// browser to the issuer with a fresh state, nonce and PKCE verifier in a sealed cookie.
pub(crate) async fn begin(
    fa: &ForwardAuth,
    origin: &Origin,
    rd: &str,
    headers: &HeaderMap,
) -> Response {
    let rd = match redirect::check(rd, origin, &allowed_domains(fa)) {
        Ok(rd) => rd,
        Err(refused) => {
            return pages::message(
                StatusCode::BAD_REQUEST,
                "Redirect refused",
                &format!("{}. Open the application's own address instead.", refused.0),
            );
        }
    };
    if let Some(renewed) = renew(fa, origin, headers, &rd).await {
        return renewed;
    }
    let c = &fa.inner.config;
    let (Ok(state), Ok(verifier), Ok(nonce)) = (
        random_token::<32>(),
        random_token::<32>(),
        random_token::<16>(),
    ) else {
        return pages::message(StatusCode::INTERNAL_SERVER_ERROR, "Error", "No randomness.");
    };
    let callback_origin = match &c.auth_host {
        Some(host) => Origin {
            scheme: origin.scheme.clone(),
            authority: host.to_ascii_lowercase(),
        },
        None => origin.clone(),
    };
    let redirect_uri = format!("{}{CALLBACK_PATH}", callback_origin.url());
    let endpoints = match fa.inner.issuer.endpoints().await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "forward auth: the issuer's discovery failed");
            return pages::message(
                StatusCode::BAD_GATEWAY,
                "Login unavailable",
                "The identity provider cannot be reached right now; try again in a minute.",
            );
        }
    };
    let challenge = URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let login = LoginCookie {
        state: state.clone(),
        verifier,
        nonce: nonce.clone(),
        rd,
        redirect_uri: redirect_uri.clone(),
        exp: fa.now().saturating_add(c.login_seconds),
    };
    let Ok(sealed) = serde_json::to_vec(&login)
        .map_err(|_| ())
        .and_then(|j| fa.inner.ring.load().seal(LOGIN, &j).map_err(|_| ()))
    else {
        return pages::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "Sealing the login state failed.",
        );
    };
    let mut location = match url::Url::parse(&endpoints.authorization_endpoint) {
        Ok(u) => u,
        Err(_) => {
            return pages::message(
                StatusCode::BAD_GATEWAY,
                "Login unavailable",
                "The issuer's authorization endpoint is not a URL.",
            );
        }
    };
    location
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", fa.inner.issuer.client_id())
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", &fa.inner.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let cookie = set_cookie(fa, origin, &fa.inner.login_cookie, &sealed, c.login_seconds);
    redirect_to(location.as_str(), vec![cookie])
}

/// A valid session goes straight to `rd`; an expired one with a live store record is renewed
/// with its refresh token. `None`: a full login is needed.
async fn renew(
    fa: &ForwardAuth,
    origin: &Origin,
    headers: &HeaderMap,
    rd: &str,
) -> Option<Response> {
    let cookie = session_cookie(fa, headers)?;
    let now = fa.now();
    if cookie.exp > now {
        return fa
            .inner
            .sessions
            .is_live(&cookie.sid, now)
            .await
            .then(|| redirect_to(rd, vec![]));
    }
    if cookie.exp.saturating_add(fa.inner.config.renew_seconds) < now {
        return None;
    }
    let record = fa.inner.sessions.load(&cookie.sid).await.ok()??;
    let tokens = match fa
        .inner
        .issuer
        .refresh(record.refresh_token.as_deref()?)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "forward auth: silent renewal refused; logging in again");
            let _ = fa.inner.sessions.delete(&cookie.sid).await;
            return None;
        }
    };
    let id_token = tokens.id_token?;
    let (mut identity, exp, _) = verify_id_token(fa, &id_token).await.ok()?;
    identity.id_token = Some(id_token.clone());
    let record = SessionRecord {
        refresh_token: tokens.refresh_token.or(record.refresh_token),
        id_token,
        expires_at: now.saturating_add(fa.inner.config.renew_seconds),
    };
    fa.inner.sessions.save(&cookie.sid, &record).await.ok()?;
    match session_set_cookie(fa, origin, &cookie.sid, &identity, exp) {
        Ok(set) => Some(redirect_to(rd, vec![set])),
        Err(response) => Some(*response),
    }
}

/// `/_oauth?code=…&state=…`: checks the state against the browser's login cookie, redeems the
/// code with the PKCE verifier, verifies the ID token and its nonce, starts the session.
pub(crate) async fn callback(fa: &ForwardAuth, seen: &Seen, headers: &HeaderMap) -> Response {
    let c = &fa.inner.config;
    let ring = fa.inner.ring.load();
    let login = check::cookies(headers)
        .filter(|(n, _)| *n == fa.inner.login_cookie)
        .find_map(|(_, v)| serde_json::from_slice::<LoginCookie>(&ring.open(LOGIN, v)?).ok());
    let now = fa.now();
    let Some(login) = login.filter(|l| l.exp > now) else {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Login expired",
            "No login was started in this browser, or it took too long. Go back to the application and open it again.",
        );
    };
    let state = query_param(&seen.target, "state").unwrap_or_default();
    if !bool::from(state.as_bytes().ct_eq(login.state.as_bytes())) {
        return pages::message(
            StatusCode::FORBIDDEN,
            "Login refused",
            "The login answer does not belong to the login this browser started (state mismatch; RFC 6749 §10.12). Go back to the application and open it again.",
        );
    }
    if let Some(error) = query_param(&seen.target, "error") {
        return pages::message(
            StatusCode::FORBIDDEN,
            "Login refused",
            &format!("The identity provider answered: {error}."),
        );
    }
    let Some(code) = query_param(&seen.target, "code") else {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "The identity provider sent no authorization code.",
        );
    };
    let tokens = match fa
        .inner
        .issuer
        .exchange_code(&code, &login.redirect_uri, &login.verifier)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "forward auth: redeeming the authorization code failed");
            return pages::message(
                StatusCode::BAD_GATEWAY,
                "Login failed",
                "The identity provider did not accept the login; open the application again.",
            );
        }
    };
    let Some(id_token) = tokens.id_token else {
        return pages::message(
            StatusCode::BAD_GATEWAY,
            "Login failed",
            "The identity provider sent no ID token.",
        );
    };
    let (mut identity, exp, claims) = match verify_id_token(fa, &id_token).await {
        Ok(v) => v,
        Err(why) => {
            tracing::warn!(reason = %why, "forward auth: ID token refused");
            return pages::message(
                StatusCode::FORBIDDEN,
                "Login refused",
                "The identity provider's ID token was refused.",
            );
        }
    };
    let nonce = claims
        .get("nonce")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    if !bool::from(nonce.as_bytes().ct_eq(login.nonce.as_bytes())) {
        return pages::message(
            StatusCode::FORBIDDEN,
            "Login refused",
            "The ID token's nonce does not match this login.",
        );
    }
    identity.id_token = Some(id_token.clone());
    let Ok(sid) = random_token::<18>() else {
        return pages::message(StatusCode::INTERNAL_SERVER_ERROR, "Error", "No randomness.");
    };
    let set = match session_set_cookie(fa, &seen.origin, &sid, &identity, exp) {
        Ok(set) => set,
        Err(response) => return *response,
    };
    let record = SessionRecord {
        refresh_token: tokens.refresh_token,
        id_token,
        expires_at: now.saturating_add(c.renew_seconds),
    };
    if let Err(e) = fa.inner.sessions.save(&sid, &record).await {
        tracing::warn!(error = %e, "forward auth: saving the session failed");
        return pages::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Login failed",
            "The session could not be saved; try again.",
        );
    }
    tracing::info!(user = %identity.user, "forward auth: logged in");
    let clear = clear_cookie(fa, &seen.origin, &fa.inner.login_cookie);
    redirect_to(&login.rd, vec![set, clear])
}

/// `/_oauth/logout`: ends the session here (store record, refresh token revoked at the
/// issuer), clears the cookie and sends the browser to the issuer's end-session endpoint.
pub(crate) async fn logout(fa: &ForwardAuth, seen: &Seen, headers: &HeaderMap) -> Response {
    let c = &fa.inner.config;
    let mut hint = None;
    if let Some(cookie) = session_cookie(fa, headers) {
        if let Ok(Some(record)) = fa.inner.sessions.load(&cookie.sid).await {
            if let Some(rt) = &record.refresh_token
                && let Err(e) = fa.inner.issuer.revoke(rt).await
            {
                tracing::debug!(error = %e, "forward auth: revoking the refresh token failed");
            }
            hint = Some(record.id_token);
        }
        if let Err(e) = fa.inner.sessions.delete(&cookie.sid).await {
            tracing::warn!(error = %e, "forward auth: deleting the session failed");
            return pages::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Logout failed",
                "The session could not be ended; try again.",
            );
        }
    }
    let clear = vec![
        clear_cookie(fa, &seen.origin, &c.cookie_name),
        clear_cookie(fa, &seen.origin, &fa.inner.login_cookie),
    ];
    let end_session = match fa.inner.issuer.endpoints().await {
        Ok(e) => e.end_session_endpoint.clone(),
        Err(_) => None,
    };
    let Some(end_session) = end_session.and_then(|e| url::Url::parse(&e).ok()) else {
        let mut r = pages::message(
            StatusCode::OK,
            "Logged out",
            "You are logged out of this application.",
        );
        for v in clear.into_iter().flatten() {
            r.headers_mut().append(SET_COOKIE, v);
        }
        return r;
    };
    let mut location = end_session;
    {
        let mut q = location.query_pairs_mut();
        q.append_pair("client_id", fa.inner.issuer.client_id());
        if let Some(hint) = &hint {
            q.append_pair("id_token_hint", hint);
        }
        if let Some(after) = &c.post_logout_redirect_uri {
            q.append_pair("post_logout_redirect_uri", after);
        }
    }
    redirect_to(location.as_str(), clear)
}
