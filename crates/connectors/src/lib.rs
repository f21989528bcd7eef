//! Where portcullis users come from: identity connectors behind one boundary.
//!
//! A [`PasswordConnector`] checks a user name and password against an identity source and
//! re-reads the user at every refresh-token grant, so that a user removed or disabled at the
//! source loses access at their next refresh, and group changes reach the next ID token.
//!
//! - [`ldap::LdapConnector`]: LDAP or Active Directory. Login searches the user with the
//!   service account, then binds as the user with the password given; groups come from a
//!   group search. Every value put into a filter is escaped ([`escape`]). Connections are
//!   pooled and every operation has a deadline.
//! - [`oidc::OidcConnector`]: an upstream OpenID provider, a [`RedirectConnector`]: the
//!   browser is sent upstream (authorization code flow with PKCE, `state`, `nonce`), the
//!   upstream ID token is verified against the upstream's keys, and its claims are mapped
//!   (user id, user name, e-mail, groups; `email_verified`, allowed e-mail domains and
//!   groups). Refresh redeems the upstream refresh token, which the provider keeps sealed and
//!   redeems once per downstream refresh.
//!
//! The local users of the provider (argon2id `User` objects, the static admin) form the
//! connector with id [`LOCAL`], served by the provider itself.
//!
//! The ID token subject of a connector's user is [`subject`]`(connector, user id)`: stable for
//! the pair, and never equal to another connector's or to a local user's.
#![deny(missing_docs)]

use std::sync::Arc;

use secrecy::SecretString;

pub mod escape;
pub mod ldap;
pub mod oidc;

pub use oidc::RedirectConnector;

/// What becomes of a source's groups: the connector's `groupFilter` keeps some out, then its
/// `groupMappings` rename them.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupRules {
    mappings: Vec<portcullis_model::kinds::connector::GroupMapping>,
    filter: Option<regex::Regex>,
}

impl GroupRules {
    /// The rules of `spec`.
    pub(crate) fn of(
        id: &str,
        spec: &portcullis_model::ConnectorSpec,
    ) -> Result<GroupRules, Error> {
        let filter = spec
            .compiled_group_filter()
            .map_err(|message| Error::Config {
                connector: id.to_owned(),
                message: format!("groupFilter: {message}"),
            })?;
        Ok(GroupRules {
            mappings: spec.group_mappings.clone(),
            filter,
        })
    }

    /// The name an upstream group has here, or `None` when the filter keeps it out.
    pub(crate) fn pass<'a>(&'a self, upstream: &'a str) -> Option<&'a str> {
        if self.filter.as_ref().is_some_and(|f| !f.is_match(upstream)) {
            return None;
        }
        Some(
            self.mappings
                .iter()
                .find(|m| m.from == upstream)
                .map_or(upstream, |m| m.to.as_str()),
        )
    }
}

/// Id of the built-in connector of local users.
pub const LOCAL: &str = "local";

/// Longest user name accepted at login (bytes).
pub const MAX_USERNAME_LEN: usize = 256;
/// Longest password accepted at login (bytes).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A user as an identity source describes them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// Stable id of the user within the connector (an LDAP attribute such as `uid`,
    /// `objectGUID` or the entry's DN).
    pub user_id: String,
    /// The user name (what the user typed, as the directory spells it).
    pub username: String,
    /// Display name (`name` claim); may be empty.
    pub name: String,
    /// E-mail address; may be empty.
    pub email: String,
    /// Whether the source vouches for the e-mail address.
    pub email_verified: bool,
    /// Group names, after the connector's group mappings.
    pub groups: Vec<String>,
}

/// What went wrong talking to an identity source. A wrong password or unknown user is not
/// an error (see [`PasswordConnector::login`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source could not be reached or did not answer in time.
    #[error(
        "connector {connector:?}: the directory at {address} is unreachable ({reason}); check that it is running and that the address is right"
    )]
    Unreachable {
        /// Connector id.
        connector: String,
        /// `host:port`.
        address: String,
        /// What failed (connection refused, timeout, TLS).
        reason: String,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name).
    #[error(
        "connector {connector:?}: TLS with {address} failed ({reason}); check caBundle holds the CA that issued the server's certificate"
    )]
    Tls {
        /// Connector id.
        connector: String,
        /// `host:port`.
        address: String,
        /// The handshake error.
        reason: String,
    },
    /// The directory answered an operation with an error result.
    #[error("connector {connector:?}: {operation} failed: LDAP result {code} ({text}){hint}")]
    Ldap {
        /// Connector id.
        connector: String,
        /// The operation (`bind as the service account`, `user search`).
        operation: String,
        /// LDAP result code (RFC 4511 §4.1.9).
        code: u32,
        /// Result name and diagnostic message.
        text: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The upstream OpenID provider answered something unusable.
    #[error("connector {connector:?}: the upstream OpenID provider failed: {message}")]
    Upstream {
        /// Connector id.
        connector: String,
        /// What it answered.
        message: String,
    },
    /// The connector's configuration cannot work.
    #[error("connector {connector:?}: {message}")]
    Config {
        /// Connector id.
        connector: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// One operation a connector made, for `portcullis connector test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// A bind (the password is never recorded).
    Bind {
        /// DN bound as; empty for anonymous.
        dn: String,
        /// LDAP result code.
        code: u32,
    },
    /// A search.
    Search {
        /// Base DN.
        base: String,
        /// Scope (`base`, `one`, `sub`).
        scope: &'static str,
        /// Filter as sent.
        filter: String,
        /// Entries returned.
        entries: usize,
    },
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operation::Bind { dn, code } if dn.is_empty() => {
                write!(f, "bind anonymously: result {code}")
            }
            Operation::Bind { dn, code } => write!(f, "bind as {dn:?}: result {code}"),
            Operation::Search {
                base,
                scope,
                filter,
                entries,
            } => write!(
                f,
                "search base {base:?} scope {scope} filter {filter}: {entries} entries"
            ),
        }
    }
}

/// The operations of one login or refresh, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// Operations made.
    pub operations: Vec<Operation>,
}

/// An identity source that checks passwords (LDAP/AD).
#[async_trait::async_trait]
pub trait PasswordConnector: Send + Sync + std::fmt::Debug {
    /// The connector id (`metadata.name` of its `Connector`).
    fn id(&self) -> &str;

    /// Name shown on the login page.
    fn display_name(&self) -> &str;

    /// Prompt for the user name on the login page (e.g. `Email`).
    fn username_prompt(&self) -> &str;

    /// Checks `username` and `password`. `Ok(None)` means no login: unknown user, wrong or
    /// empty password, disabled account (the caller shows one message for all of them).
    /// `Err` means the source could not answer; the user is not logged in either.
    async fn login(
        &self,
        username: &str,
        password: &SecretString,
        trace: &mut Trace,
    ) -> Result<Option<Identity>, Error>;

    /// Re-reads a user who logged in before: `Ok(Some)` with their current groups and
    /// profile, `Ok(None)` if the user no longer exists, is disabled or is another account
    /// now (their sessions must end), `Err` if the source could not answer.
    async fn refresh(
        &self,
        identity: &Identity,
        trace: &mut Trace,
    ) -> Result<Option<Identity>, Error>;

    /// A quick connect-and-bind with the service account: reports what a login would run
    /// into (unreachable server, untrusted certificate, wrong bind password).
    async fn check(&self) -> Result<(), Error>;
}

/// The ID token `sub` of `user_id` at connector `connector`: `connector` and the user id in
/// base64url, joined by `:`. Connector ids are DNS labels (no `:`), and local users' subjects
/// (their object uid) have no `:`, so subjects of different connectors never collide.
pub fn subject(connector: &str, user_id: &str) -> String {
    format!("{connector}:{}", base64url(user_id.as_bytes()))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for s in sextets.iter().take(chunk.len() + 1) {
            out.push(char::from(
                ALPHABET.get(*s as usize).copied().unwrap_or(b'A'),
            ));
        }
    }
    out
}

/// The configured connectors (password and redirect), by id, in the order shown on the
/// login page.
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    list: Vec<Arc<dyn PasswordConnector>>,
    redirect: Vec<Arc<dyn RedirectConnector>>,
}

impl Connectors {
    /// The set of `connectors` (later ones with an id already seen are left out).
    pub fn new(connectors: Vec<Arc<dyn PasswordConnector>>) -> Self {
        let mut list: Vec<Arc<dyn PasswordConnector>> = Vec::with_capacity(connectors.len());
        for c in connectors {
            if c.id() == LOCAL || list.iter().any(|x| x.id() == c.id()) {
                tracing::warn!(connector = %c.id(), "connector id used twice; the later one is ignored");
                continue;
            }
            list.push(c);
        }
        Connectors {
            list,
            redirect: Vec::new(),
        }
    }

    /// Adds redirect connectors (upstream OpenID providers); one with an id already used is
    /// left out.
    pub fn with_redirect(mut self, connectors: Vec<Arc<dyn RedirectConnector>>) -> Self {
        for c in connectors {
            if c.id() == LOCAL
                || self.get(c.id()).is_some()
                || self.redirect.iter().any(|x| x.id() == c.id())
            {
                tracing::warn!(connector = %c.id(), "connector id used twice; the later one is ignored");
                continue;
            }
            self.redirect.push(c);
        }
        self
    }

    /// The redirect connector with this id.
    pub fn redirect(&self, id: &str) -> Option<&Arc<dyn RedirectConnector>> {
        self.redirect.iter().find(|c| c.id() == id)
    }

    /// Every redirect connector.
    pub fn redirects(&self) -> impl Iterator<Item = &Arc<dyn RedirectConnector>> {
        self.redirect.iter()
    }

    /// The connector with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn PasswordConnector>> {
        self.list.iter().find(|c| c.id() == id)
    }

    /// Every connector.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn PasswordConnector>> {
        self.list.iter()
    }

    /// Whether there is none (only local users can log in).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.redirect.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_are_filtered_then_renamed() {
        let spec: portcullis_model::ConnectorSpec = serde_json::from_value(serde_json::json!({
            "type": "ldap",
            "groupFilter": "team-.*|ops",
            "groupMappings": [{"from": "ops", "to": "operations"}],
        }))
        .expect("spec");
        let rules = super::GroupRules::of("c", &spec).expect("rules");
        assert_eq!(rules.pass("team-a"), Some("team-a"));
        assert_eq!(rules.pass("ops"), Some("operations"));
        assert_eq!(rules.pass("xteam-a"), None, "the whole name must match");
        assert_eq!(rules.pass("team-a-admins\nops"), None);
        assert_eq!(rules.pass("everyone"), None);
        let open = super::GroupRules::default();
        assert_eq!(open.pass("anything"), Some("anything"));
        let bad: portcullis_model::ConnectorSpec = serde_json::from_value(serde_json::json!({
            "type": "ldap", "groupFilter": "(",
        }))
        .expect("spec");
        assert!(super::GroupRules::of("c", &bad).is_err());
    }

    use super::*;

    #[test]
    fn subjects_are_stable_and_do_not_collide() {
        assert_eq!(subject("corp", "alice"), subject("corp", "alice"));
        assert_ne!(subject("corp", "alice"), subject("lab", "alice"));
        // The id is encoded, so a user id holding ':' cannot imitate another connector.
        assert_ne!(subject("a", "b:c"), subject("a:b", "c"));
        assert_eq!(base64url(b"alice"), "YWxpY2U");
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"\xff\xfe"), "__4");
        assert!(!subject("corp", "uid=a,dc=x").contains(['=', ',', '+', '/']));
    }
}
