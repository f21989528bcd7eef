//! Browser sessions (single sign-on) and the anti-CSRF cookie.
//!
//! Both cookies use the `__Host-` prefix (RFC 6265bis §4.1.3.2: Secure, `Path=/`, no
//! `Domain`, so no other host or path can set or read them), are HttpOnly and SameSite=Lax:
//! they come along on the top-level redirect from a client (the session must; the CSRF value
//! must too, or a second login tab would replace it under the first tab's form), and never on
//! a cross-site POST, which is what the CSRF check needs.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

use crate::Error;
use crate::connect::Recheck;
use crate::grants::random_token;
use crate::provider::Provider;
use crate::state::{self, Authentication, BrowserSession, SESSIONS};

/// The single sign-on session cookie.
pub(crate) const SESSION_COOKIE: &str = "__Host-portcullis-session";
/// The double-submit anti-CSRF cookie.
pub(crate) const CSRF_COOKIE: &str = "__Host-portcullis-csrf";

/// Longest cookie value read (ours are 43 characters).
const MAX_COOKIE_VALUE: usize = 128;

/// The value of cookie `name` in the request, if present once and well-formed.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                if found.is_some() || v.len() > MAX_COOKIE_VALUE {
                    // Two cookies of one name: someone is playing tricks; use neither.
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found.filter(|v| !v.is_empty())
}

/// A `Set-Cookie` header value.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: u64, same_site: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A `Set-Cookie` header value that deletes cookie `name`.
pub(crate) fn clear_cookie(name: &str) -> HeaderValue {
    set_cookie(name, "", 0, "Lax")
}

/// The browser's CSRF value, and the `Set-Cookie` to send if it had none.
pub(crate) fn csrf(headers: &HeaderMap) -> Result<(String, Option<HeaderValue>), Error> {
    if let Some(value) = cookie(headers, CSRF_COOKIE) {
        return Ok((value.to_owned(), None));
    }
    let value = random_token()?;
    // A day: longer than any form stays open; renewed whenever missing.
    let header = set_cookie(CSRF_COOKIE, &value, 24 * 3600, "Lax");
    Ok((value, Some(header)))
}

/// Whether a form post carries the browser's CSRF value (cookie and field equal, and equal to
/// what the form was rendered with when `expected` is given).
pub(crate) fn csrf_ok(headers: &HeaderMap, field: Option<&str>, expected: Option<&str>) -> bool {
    let (Some(cookie), Some(field)) = (cookie(headers, CSRF_COOKIE), field) else {
        return false;
    };
    state::same(cookie, field) && expected.is_none_or(|e| state::same(e, field))
}

/// The browser's live session: present, not expired, and its user still able to log in with
/// the same credential. Returns the session's store key too.
pub(crate) async fn current(
    provider: &Provider,
    headers: &HeaderMap,
    now: u64,
) -> Result<Option<(String, BrowserSession)>, Error> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let key = format!("{SESSIONS}{}", state::digest_hex(token));
    let Some((mut session, _)) = state::get::<BrowserSession>(provider.store(), &key).await? else {
        return Ok(None);
    };
    if session.expires_at <= now {
        return Ok(None);
    }
    // A session answers an authorization only for a user who can still log in, with their
    // groups as they are now: a connector's user is re-read from the directory here too.
    match crate::connect::recheck(provider, &session.authn, None).await? {
        Recheck::Current(authn) => {
            session.authn = authn;
            Ok(Some((key, session)))
        }
        Recheck::Gone => {
            state::remove(provider.store(), &key).await?;
            Ok(None)
        }
        // The directory cannot answer now: the session does not answer either (the login
        // form says why), and it is kept for when the directory is back.
        Recheck::Unavailable(why) => {
            tracing::warn!(error = %why, "re-checking a session's user failed");
            Ok(None)
        }
    }
}

/// Deletes the browser's session record, if it sent a session cookie.
pub(crate) async fn end(provider: &Provider, headers: &HeaderMap) -> Result<(), Error> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => {
            let key = format!("{SESSIONS}{}", state::digest_hex(token));
            state::remove(provider.store(), &key).await
        }
        None => Ok(()),
    }
}

/// Starts a browser session for `authn`; returns the `Set-Cookie` header.
pub(crate) async fn start(
    provider: &Provider,
    authn: &Authentication,
    now: u64,
) -> Result<HeaderValue, Error> {
    let token = random_token()?;
    let lifetime = provider.config().session_lifetime.as_secs();
    let session = BrowserSession {
        authn: authn.clone(),
        expires_at: now + lifetime,
    };
    let key = format!("{SESSIONS}{}", state::digest_hex(&token));
    state::create(provider.store(), &key, &session).await?;
    Ok(set_cookie(SESSION_COOKIE, &token, lifetime, "Lax"))
}

/// The client's address, as the server's accept loop recorded it (never from headers).
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_read_exactly_and_duplicates_refused() {
        let h = headers(&["a=1; __Host-portcullis-csrf=xyz", "b=2"]);
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "c"), None);
        let h = headers(&["__Host-portcullis-csrf=x", "__Host-portcullis-csrf=y"]);
        assert_eq!(cookie(&h, CSRF_COOKIE), None);
    }

    #[test]
    fn csrf_needs_cookie_and_field_equal() {
        let h = headers(&["__Host-portcullis-csrf=abc"]);
        assert!(csrf_ok(&h, Some("abc"), None));
        assert!(csrf_ok(&h, Some("abc"), Some("abc")));
        assert!(!csrf_ok(&h, Some("abc"), Some("other")));
        assert!(!csrf_ok(&h, Some("abd"), None));
        assert!(!csrf_ok(&h, None, None));
        assert!(!csrf_ok(&headers(&[]), Some("abc"), None));
    }

    #[test]
    fn cookies_carry_the_host_prefix_attributes() {
        let v = set_cookie(SESSION_COOKIE, "v", 60, "Lax");
        let v = v.to_str().unwrap();
        assert!(v.starts_with("__Host-portcullis-session=v;"));
        for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=60"] {
            assert!(v.contains(attr), "{v}");
        }
        assert!(!v.contains("Domain"));
    }
}
