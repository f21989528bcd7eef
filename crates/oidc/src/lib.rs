//! The portcullis OpenID provider (OpenID Connect Core 1.0, OAuth 2.0 RFC 6749).
//!
//! [`Provider::new`] loads or creates the issuer's signing keys (from `portcullis-jose`) in the
//! store, sealed with AES-256-GCM under the data-encryption key; [`Provider::router`] serves
//! discovery (`/.well-known/openid-configuration`) and the JWKS (`/keys`) relative to the
//! issuer's path; [`Provider::run_key_rotation`] keeps the key schedule.
//!
//! The authorization code flow: `/auth` checks the request (registered client, exact
//! `redirect_uri`, `response_type=code`, the `openid` scope, PKCE S256 — required for public
//! clients, `plain` refused) and shows a login form for local `User`s (argon2id); a login
//! redirects with a single-use code valid 60 s, bound to client, redirect URI and PKCE
//! challenge; `/token` redeems it (client authentication `client_secret_basic`,
//! `client_secret_post`, or none for public clients) for an ID token and an RFC 9068 JWT
//! access token; `/userinfo` answers for that access token. Clients and users are read from
//! the store keys the management API writes (`/registry/portcullis.dev/{clients,users}/NAME`).
#![deny(missing_docs)]

mod admin;
mod authorize;
mod device;
mod discovery;
mod error;
mod grants;
mod logout;
mod pages;
mod provider;
mod registry;
mod revoke;
mod sealing;
mod session;
mod state;
mod throttle;
mod token;
mod userinfo;

pub use admin::{generate_password, hash_password, user_key};
pub use error::Error;
pub use provider::{Clock, KEYS_STORE_KEY, Provider, ProviderConfig};
