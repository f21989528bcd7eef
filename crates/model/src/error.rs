//! The crate's error type.

/// Everything that can go wrong in this crate, apart from validation, which reports a list
/// of field errors instead.
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
}
