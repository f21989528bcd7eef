//! Errors of the management API as Kubernetes `Status` objects (`meta/v1`), with the codes and
//! reasons kube-apiserver uses, so that kubectl and client libraries understand them.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_store::StoreError;
use serde::Serialize;
use serde_json::json;

/// One field-level cause (`details.causes[]`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Path of the field, e.g. `spec.redirectURIs[2]`.
    pub field: String,
}

/// An API error, rendered as a `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub code: StatusCode,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, boxed: errors travel through every `Result` of a request.
    pub details: Box<Details>,
}

/// `Status.details`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the plural resource name, as the apiserver puts it).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
}

impl ApiError {
    /// A plain error with code, reason and message.
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    /// Adds `details` naming the object.
    pub fn with_details(mut self, group: &str, plural: &str, name: &str) -> ApiError {
        self.details.group = Some(group.to_owned());
        self.details.kind = Some(plural.to_owned());
        if !name.is_empty() {
            self.details.name = Some(name.to_owned());
        }
        self
    }

    /// Adds causes.
    pub fn with_causes(mut self, causes: Vec<Cause>) -> ApiError {
        self.details.causes = causes;
        self
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 Unauthorized. The message never says why: that is for the server log.
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 404 NotFound for a path that serves nothing.
    pub fn path_not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(method: &http::Method) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
        )
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit} bytes"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media(got: &str, supported: &[&str]) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({got:?}) - accepted media types include: {}",
                supported.join(", ")
            ),
        )
    }

    /// 500 InternalError; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred; see the server log",
        )
    }

    /// Maps a store error for the object `group`/`plural`/`name`.
    pub fn from_store(e: StoreError, group: &str, plural: &str, name: &str) -> ApiError {
        let qualified = qualified(plural, group);
        match e {
            StoreError::NotFound(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{qualified} {name:?} not found"),
            )
            .with_details(group, plural, name),
            StoreError::AlreadyExists(_) => ApiError::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{qualified} {name:?} already exists"),
            )
            .with_details(group, plural, name),
            StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {qualified} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
                ),
            )
            .with_details(group, plural, name),
            StoreError::Compacted { requested, oldest } => ApiError::new(
                StatusCode::GONE,
                "Expired",
                format!("too old resource version: {requested} ({oldest})"),
            ),
            StoreError::InvalidContinue(m) => {
                ApiError::bad_request(format!("invalid continue token: {m}"))
            }
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "store backend error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "the store is unavailable; retry later",
                )
            }
        }
    }

    /// The `Status` object as JSON.
    pub fn to_status(&self) -> serde_json::Value {
        let mut details = serde_json::Map::new();
        let d = &self.details;
        if let Some(n) = &d.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &d.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &d.kind {
            details.insert("kind".into(), json!(k));
        }
        if !d.causes.is_empty() {
            details.insert("causes".into(), json!(d.causes));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if !details.is_empty()
            && let Some(obj) = status.as_object_mut()
        {
            obj.insert("details".into(), serde_json::Value::Object(details));
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.as_u16(),
            self.reason,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(self.to_status())).into_response()
    }
}

/// `plural.group`, or `plural` for the core group, as Kubernetes qualifies resources in messages.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    }
}
