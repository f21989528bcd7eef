//! The login page (server-rendered HTML, no scripts).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Headers every page of the provider carries: no caching, no framing (clickjacking), no
/// scripts or foreign resources.
fn page(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
                ),
            ),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        body,
    )
        .into_response()
}

/// The login form for a pending request. `request` is the pending request's random handle:
/// a login is accepted only with it, so it also serves as the form's anti-CSRF token.
pub(crate) fn login_form(
    status: StatusCode,
    action: &str,
    request: &str,
    client_name: &str,
    login: &str,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    page(
        status,
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main>
<h1>Log in to {client}</h1>
{error}
<form method="post" action="{action}">
<input type="hidden" name="request" value="{request}">
<label for="login">Username</label>
<input id="login" name="login" autocomplete="username" required value="{login}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
</main></body></html>
"#,
            client = escape(client_name),
            action = escape(action),
            request = escape(request),
            login = escape(login),
        ),
    )
}

/// An error shown to the user instead of redirecting (RFC 6749 §4.1.2.1: never redirect to
/// an unverified `redirect_uri`).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error</title></head>\n<body><main><h1>Cannot log in</h1><p>{}</p></main></body></html>\n",
            escape(message)
        ),
    )
}
