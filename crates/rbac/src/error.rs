//! The crate's one error type.

use crate::escalation::go_quote;

/// What goes wrong in this crate: input that does not decode or is not acceptable RBAC (from a
/// request body or a policy file alike), and role and binding writes refused as kube-apiserver's
/// RBAC registry refuses them. Each variant says which answer it is: 400 or 422 for
/// [`Error::Decode`], 404, 500 and 403 for the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An object that does not decode, or is not acceptable RBAC input.
    #[error(
        "{}{}{message}",
        document.as_ref().map_or_else(String::new, |(source, n)| format!("{source}: document {n}: ")),
        if field.is_empty() { String::new() } else { format!("{field}: ") }
    )]
    Decode {
        /// Path of the field, e.g. `rules[0].verbs`, or empty (the whole object).
        field: String,
        /// What is wrong, e.g. ``unknown field `verb` ``.
        message: String,
        /// The field is one the kind does not have (strict decoding's 400, not a 422).
        unknown_field: bool,
        /// The source (a file name) and the 1-based document the object is in, when it came
        /// from a policy file.
        document: Option<(String, usize)>,
    },
    /// A binding's `roleRef` names a role that does not exist (404 NotFound).
    #[error("{resource}.{} {} not found", crate::v1::GROUP, go_quote(name))]
    RoleNotFound {
        /// `roles` or `clusterroles`.
        resource: &'static str,
        /// The role's name.
        name: String,
    },
    /// `roleRef.kind` is neither `Role` nor `ClusterRole` (500, as the registry answers).
    #[error("unsupported role reference kind: {}", go_quote(.0))]
    UnsupportedRoleRefKind(String),
    /// A write that would grant what the writer does not hold (403 Forbidden): the message
    /// that follows `... is forbidden: `.
    #[error("{0}")]
    Forbidden(String),
}

impl Error {
    /// A problem with `field` (empty: the whole object).
    pub fn decode(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Decode {
            field: field.into(),
            message: message.into(),
            unknown_field: false,
            document: None,
        }
    }

    /// From a path-tracked serde error.
    pub fn from_serde<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> Error {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        Error::Decode {
            field: if path == "." { String::new() } else { path },
            unknown_field: portcullis_model::error::is_unknown_field(&message),
            message,
            document: None,
        }
    }

    /// The same error, its field under `prefix` (`items[3]`).
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Error {
        if let Error::Decode { field, .. } = &mut self {
            *field = if field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{field}")
            };
        }
        self
    }

    /// The same error, in document `document` (1-based) of `source`.
    #[must_use]
    pub fn in_document(mut self, source: &str, document: usize) -> Error {
        if let Error::Decode { document: at, .. } = &mut self {
            *at = Some((source.to_owned(), document));
        }
        self
    }

    /// Whether this is a field the kind does not have (strict decoding's 400, not a 422).
    pub fn is_unknown_field(&self) -> bool {
        matches!(
            self,
            Error::Decode {
                unknown_field: true,
                ..
            }
        )
    }
}
