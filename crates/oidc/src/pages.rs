//! The provider's pages (server-rendered with askama, escaped by the template engine; no
//! scripts except the form-post auto-submit, which runs under a per-response CSP nonce).

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The login form.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct Login<'a> {
    pub(crate) client: &'a str,
    pub(crate) action: &'a str,
    pub(crate) continue_action: &'a str,
    pub(crate) request: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) login: &'a str,
    pub(crate) error: Option<&'a str>,
    /// With a session and `prompt=select_account`: offer to continue as this user.
    pub(crate) current_user: Option<&'a str>,
    /// The sign-in methods offered (a chooser when there are several).
    pub(crate) connectors: Vec<ConnectorChoice>,
    /// The upstream providers offered (one button each).
    pub(crate) redirects: Vec<ConnectorChoice>,
    /// Label of the user-name field.
    pub(crate) username_prompt: &'a str,
}

/// One sign-in method of the login page.
pub(crate) struct ConnectorChoice {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) checked: bool,
}

/// The consent page (`prompt=consent`).
#[derive(Template)]
#[template(path = "consent.html")]
pub(crate) struct Consent<'a> {
    pub(crate) client: &'a str,
    pub(crate) user: &'a str,
    pub(crate) scopes: Vec<String>,
    pub(crate) action: &'a str,
    pub(crate) request: &'a str,
    pub(crate) csrf: &'a str,
}

/// The device verification page: enter the user code.
#[derive(Template)]
#[template(path = "device.html")]
pub(crate) struct Device<'a> {
    pub(crate) action: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) user_code: &'a str,
    pub(crate) error: Option<&'a str>,
}

/// A message (errors, done pages).
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct Message<'a> {
    pub(crate) title: &'a str,
    pub(crate) message: &'a str,
}

/// The logout confirmation.
#[derive(Template)]
#[template(path = "logout.html")]
pub(crate) struct Logout<'a> {
    pub(crate) client: Option<&'a str>,
    pub(crate) action: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) fields: Vec<(&'a str, String)>,
}

/// The form-post response mode: posts the authorization response to the client.
#[derive(Template)]
#[template(path = "form_post.html")]
pub(crate) struct FormPost<'a> {
    pub(crate) action: &'a str,
    pub(crate) fields: Vec<(&'a str, String)>,
    pub(crate) nonce: &'a str,
}

/// `form-action` also governs the redirect that answers a form (CSP Level 3 §6.4.1; Chromium
/// enforces it): after the login form, the browser is sent to the client's registered
/// `redirect_uri`, which is https or, for public clients, loopback http (RFC 8252 §7.3).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http://127.0.0.1:* http://[::1]:* http://localhost:*; frame-ancestors 'none'; base-uri 'none'";

/// Headers every page carries: no caching, no framing (clickjacking), no foreign resources,
/// forms post only to this origin.
fn security_headers(csp: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(csp) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers
}

/// Renders `page` with status `status`.
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (status, security_headers(CSP), body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Renders the form-post page: its script runs under `nonce`, and its form may post to the
/// client's redirect URI.
pub(crate) fn render_form_post(page: &FormPost<'_>) -> Response {
    let origin = url::Url::parse(page.action)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{}'; form-action {origin}; frame-ancestors 'none'; base-uri 'none'",
        page.nonce
    );
    match page.render() {
        Ok(body) => (StatusCode::OK, security_headers(&csp), body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An error shown to the user instead of redirecting (RFC 6749 §4.1.2.1: never redirect to
/// an unverified `redirect_uri`).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    render(
        status,
        &Message {
            title: "Cannot log in",
            message,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let html = Login {
            client: "<script>",
            action: "/auth/login",
            continue_action: "/auth/continue",
            request: "r\"",
            csrf: "c",
            login: "\"><img>",
            error: Some("<b>"),
            current_user: None,
            connectors: vec![
                ConnectorChoice {
                    id: "local".into(),
                    name: "Local account".into(),
                    checked: true,
                },
                ConnectorChoice {
                    id: "corp".into(),
                    name: "<i>Corp</i>".into(),
                    checked: false,
                },
            ],
            redirects: vec![ConnectorChoice {
                id: "up".into(),
                name: "<s>Up</s>".into(),
                checked: false,
            }],
            username_prompt: "<u>",
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<img>"));
        assert!(!html.contains("<i>") && !html.contains("<u>") && !html.contains("<s>"));
        assert!(html.contains("name=\"connector\" value=\"up\""), "{html}");
        assert!(html.contains("name=\"connector\" value=\"corp\""), "{html}");
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"));
    }
}
