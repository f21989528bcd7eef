//! The portcullis OpenID provider (OpenID Connect Core 1.0, OAuth 2.0 RFC 6749).
//!
//! [`Provider::new`] loads or creates the issuer's signing keys (from `portcullis-jose`) in the
//! store, sealed with AES-256-GCM under the data-encryption key; [`Provider::router`] serves
//! every endpoint relative to the issuer's path; [`Provider::run_key_rotation`] keeps the key
//! schedule and [`Provider::run_maintenance`] removes expired records.
//!
//! - Signing keys: one rotation schedule per published algorithm (ES256 and RS256 by default);
//!   access tokens are signed with the first, each client's ID tokens with its
//!   `idTokenSignedResponseAlg` (RS256 when it registered none).
//! - Authorization (`/auth`, GET or form POST): registered client, exact `redirect_uri`,
//!   `response_type=code`, PKCE S256 (required for public clients, `plain` refused), `prompt`,
//!   `max_age`, `login_hint`, `id_token_hint` (an ID token of this issuer, naming the End-User
//!   the code may be issued for), `response_mode=query|form_post`, unknown scopes ignored; answered from the browser session
//!   (single sign-on) or after the login form (local `User`s, argon2id, CSRF cookie, backoff
//!   per account and address), with a consent page when asked for.
//! - Connectors ([`Provider::set_connectors`], from `portcullis-connectors`): the login form
//!   offers local accounts and every connector (LDAP/AD), or only the one a `connector_id`
//!   parameter names (as Dex). A connector user's `sub` is `connector:base64url(user id)`.
//!   Single sign-on and every refresh grant re-read the user at their source: groups as they
//!   are now; a user removed or disabled there gets `invalid_grant` and loses the token family
//!   and browser session; a source that cannot answer refuses the refresh without revoking.
//!   `Group` objects add their names to the groups of the users they match.
//! - Token (`/token`): authorization code (single use, 60 s, bound to client, redirect URI
//!   and PKCE; a replay revokes what it issued), refresh token (rotated on every use, reuse
//!   revokes the family, a grace window for concurrent refreshes), device code (RFC 8628).
//! - Revocation (RFC 7009; another client's token is refused with `unauthorized_client`),
//!   introspection (RFC 7662), userinfo (bearer token in the header, or in a form POST body),
//!   device verification page, RP-initiated logout.
//!
//! What must outlive a restart or be seen by another replica lives in the store: browser
//! sessions, codes, grants with their refresh token families, device codes (module `state`).
//! Clients and users are read from the keys the management API writes
//! (`/registry/portcullis.dev/{clients,users}/NAME`), plus static clients from the config.
#![deny(missing_docs)]

mod admin;
mod authorize;
mod connect;
mod device;
mod discovery;
mod error;
mod grants;
mod groups;
mod logout;
mod pages;
mod provider;
mod registry;
mod revoke;
mod sealing;
mod secrets;
mod session;
mod state;
mod throttle;
mod token;
mod upstream;
mod userinfo;

pub use admin::{generate_password, hash_password, user_key};
pub use error::Error;
pub use provider::{Clock, KEYS_STORE_KEY, Provider, ProviderConfig};
pub use secrets::MAX_SECRET_LEN;
