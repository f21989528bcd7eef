//! The crate's error type.

use std::fmt;

/// Everything that can go wrong in this crate, apart from validation, which reports a list
/// of [`FieldError`](crate::FieldError)s instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `?labelSelector=` string could not be parsed.
    #[error("invalid label selector at offset {offset}: {message}")]
    LabelSelector {
        /// Byte offset in the selector string where the problem starts.
        offset: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// An object could not be decoded: bad YAML or JSON, wrong shape, unknown field,
    /// unknown kind, or input over a size or nesting bound.
    #[error("{}", DecodeDisplay(self))]
    Decode {
        /// Where the input came from (a file name, `-` for stdin); empty when unknown.
        source_name: String,
        /// 1-based number of the YAML document (empty documents not counted); `None` for
        /// JSON input.
        document: Option<usize>,
        /// Path of the offending field (`spec.redirectURIs[2]`, `items[0].metadata.lables`);
        /// empty when the problem is not in one field.
        field: String,
        /// What was wrong.
        message: String,
        /// The field is one the kind does not have (Kubernetes' strict decoding answers
        /// this 400 `BadRequest`, other decode errors 422 `Invalid`).
        unknown_field: bool,
    },
}

/// Whether a serde error is about a field the type does not have. serde says so only in its
/// message (`unknown field `x`, expected …`, the wording of `de::Error::unknown_field`); this
/// is the one place that reads it, so that callers match on a flag, not on text.
pub fn is_unknown_field(serde_message: &str) -> bool {
    serde_message.starts_with("unknown field `")
}

struct DecodeDisplay<'a>(&'a Error);

impl fmt::Display for DecodeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Error::Decode {
            source_name,
            document,
            field,
            message,
            ..
        } = self.0
        else {
            return Ok(());
        };
        if !source_name.is_empty() {
            write!(f, "{source_name}: ")?;
        }
        if let Some(n) = document {
            write!(f, "document {n}: ")?;
        }
        if !field.is_empty() {
            write!(f, "{field}: ")?;
        }
        f.write_str(message)
    }
}
