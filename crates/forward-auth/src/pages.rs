//! The pages people see: access denied and messages (askama, escaped by the engine).

use askama::Template;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use crate::check::Identity;

#[derive(Template)]
#[template(path = "forbidden.html")]
struct Forbidden<'a> {
    user: &'a str,
    groups: String,
    verb: &'a str,
    host: &'a str,
    path: &'a str,
    reason: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    title: &'a str,
    message: &'a str,
}

/// Marks an answer as never cached (it depends on the cookie).
pub(crate) fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, page: Result<String, askama::Error>) -> Response {
    let body = page.unwrap_or_else(|_| "error".to_owned());
    no_store(
        (
            status,
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
    )
}

/// A message page.
pub(crate) fn message(status: StatusCode, title: &str, message: &str) -> Response {
    html(status, Message { title, message }.render())
}

/// 401 with a bearer challenge (RFC 6750 §3).
pub(crate) fn unauthorized(message: &str) -> Response {
    no_store(
        (
            StatusCode::UNAUTHORIZED,
            [
                (WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
            ],
            format!("{message}\n"),
        )
            .into_response(),
    )
}

/// 403 naming who asked and what was refused: a page for browsers, a line for API clients.
pub(crate) fn forbidden(
    identity: &Identity,
    verb: &str,
    host: &str,
    path: &str,
    reason: &str,
    browser: bool,
) -> Response {
    if !browser {
        return no_store(
            (
                StatusCode::FORBIDDEN,
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                format!(
                    "forbidden: User {:?} cannot {verb} path {path:?} on {host:?}: {reason}\n",
                    identity.user
                ),
            )
                .into_response(),
        );
    }
    html(
        StatusCode::FORBIDDEN,
        Forbidden {
            user: &identity.user,
            groups: identity.groups.join(", "),
            verb,
            host,
            path,
            reason,
        }
        .render(),
    )
}
