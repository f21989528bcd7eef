//! The one error type of this crate.

/// What went wrong in the provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work (bad issuer URL, zero lifetimes, …).
    #[error("invalid OpenID provider configuration: {0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] portcullis_store::StoreError),
    /// A key could not be made, read or used.
    #[error(transparent)]
    Jose(#[from] portcullis_jose::Error),
    /// A sealed value could not be opened: wrong encryption key, or the data was altered.
    #[error(
        "cannot decrypt {0}: the data-encryption key differs from the one that sealed it, or the stored value was altered; restore the original key (PORTCULLIS_ENCRYPTION_KEY or encryption.key)"
    )]
    Unseal(String),
    /// There is no local user of that name.
    #[error("there is no local user {0:?}")]
    UnknownUser(String),
    /// Contended or full; try again shortly.
    #[error("the login service is busy; try again shortly")]
    Busy,
    /// Encryption or randomness failed.
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
}
