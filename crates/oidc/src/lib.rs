//! The portcullis OpenID provider (OpenID Connect Core 1.0, OAuth 2.0 RFC 6749).
//!
//! [`Provider::new`] loads or creates the issuer's signing keys (from `portcullis-jose`) in the
//! store, sealed with AES-256-GCM under the data-encryption key; [`Provider::router`] serves
//! discovery (`/.well-known/openid-configuration`) and the JWKS (`/keys`) relative to the
//! issuer's path; [`Provider::run_key_rotation`] keeps the key schedule.
#![deny(missing_docs)]

mod discovery;
mod error;
mod provider;
mod sealing;

pub use error::Error;
pub use provider::{KEYS_STORE_KEY, Provider, ProviderConfig};
