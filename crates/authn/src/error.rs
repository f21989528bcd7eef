//! The one error type of this crate.

/// Why a credential, a configuration or a request was refused.
///
/// Every failure denies: nothing in this crate falls back to a weaker check. The messages are
/// for logs and operators; a client should only learn that it is unauthorized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client certificate is invalid (chain, expiry, usage or subject).
    #[error("client certificate: {0}")]
    Certificate(String),
    /// The JWT did not verify (signature, issuer, audience, times, algorithm, key).
    #[error("bearer token: {0}")]
    Token(#[from] portcullis_jose::Error),
    /// The token verified but its claims do not make an acceptable identity.
    #[error("bearer token claims: {0}")]
    Claims(String),
    /// The issuer's keys could not be had (discovery or JWKS unreachable or invalid).
    #[error("issuer {issuer}: {reason}")]
    Keys {
        /// The issuer URL.
        issuer: String,
        /// What failed.
        reason: String,
    },
    /// The authentication configuration is invalid; the path names the field.
    #[error("authentication configuration: {}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Config {
        /// Where in the file (`jwt[0].issuer.url`), or the file itself.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The configuration file could not be read.
    #[error("reading {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
}

impl Error {
    pub(crate) fn config(path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}
