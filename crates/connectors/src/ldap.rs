//! The LDAP / Active Directory connector.
//!
//! Login: bind as the service account (or anonymously), search the user by the configured
//! attribute, refuse a disabled account (AD `userAccountControl` ACCOUNTDISABLE, or the
//! configured `disabledFilter`), search their groups, and finally bind as the user's DN with
//! the password given. An empty password never reaches the directory: RFC 4513 §5.1.2 makes a
//! simple bind with a DN and no password an *unauthenticated* bind, which many servers
//! answer with success.
//!
//! Connections (TCP, TLS and the LDAP session) are pooled and reused; a connection last bound
//! as a user is bound as the service account again before its next search.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use portcullis_model::ConnectorSpec;
use portcullis_model::kinds::connector::{LdapConnector as LdapSpec, LdapScope, LdapSecurity};
use secrecy::{ExposeSecret as _, SecretString};

use crate::escape;
use crate::{Error, Identity, MAX_PASSWORD_LEN, MAX_USERNAME_LEN, Operation, Trace};

/// AD `userAccountControl` ACCOUNTDISABLE (MS-ADTS §2.2.16).
const ACCOUNTDISABLE: u32 = 0x2;
/// AD `LDAP_MATCHING_RULE_IN_CHAIN` (MS-ADTS §3.1.1.3.4.4.3).
const MATCHING_RULE_IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// Most groups kept for one user.
const MAX_GROUPS: usize = 1024;
/// LDAP result code invalidCredentials (RFC 4511 §4.1.9).
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code noSuchObject.
const NO_SUCH_OBJECT: u32 = 32;

/// Timeouts and pool size of an LDAP connector.
#[derive(Debug, Clone, Copy)]
pub struct LdapOptions {
    /// Deadline for TCP connect, TLS and StartTLS.
    pub connect_timeout: Duration,
    /// Deadline for each bind and search.
    pub operation_timeout: Duration,
    /// Most idle connections kept.
    pub pool_size: usize,
}

impl Default for LdapOptions {
    /// 5 s to connect, 10 s per operation, 8 idle connections.
    fn default() -> Self {
        LdapOptions {
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            pool_size: 8,
        }
    }
}

/// What to do on a connection.
#[derive(Clone, Copy)]
enum Task<'a> {
    Login(&'a str, &'a SecretString),
    Refresh(&'a Identity),
    /// Only the service bind.
    Check,
}

/// A pooled connection and who it is bound as.
struct Conn {
    ldap: Ldap,
    bound_as_service: bool,
}

/// An LDAP or Active Directory identity source.
pub struct LdapConnector {
    id: String,
    display_name: String,
    spec: LdapSpec,
    groups: crate::GroupRules,
    bind_password: Option<SecretString>,
    tls: Option<Arc<rustls::ClientConfig>>,
    url: String,
    options: LdapOptions,
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for LdapConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConnector")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("bind_dn", &self.spec.bind_dn)
            .finish_non_exhaustive()
    }
}

/// A rustls client configuration (aws-lc-rs) trusting exactly the CAs of a PEM bundle.
fn tls_config(ca_bundle: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
        let cert = cert.map_err(|e| format!("caBundle is not a PEM certificate bundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("caBundle holds a certificate rustls refuses: {e}"))?;
    }
    if roots.is_empty() {
        return Err("caBundle holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn scope_of(scope: LdapScope) -> (Scope, &'static str) {
    match scope {
        LdapScope::Sub => (Scope::Subtree, "sub"),
        LdapScope::One => (Scope::OneLevel, "one"),
    }
}

/// The first value of `attr` in `entry`, attribute names compared case-insensitively
/// (RFC 4512 §2.5: attribute descriptions are case-insensitive).
fn first<'a>(entry: &'a SearchEntry, attr: &str) -> Option<&'a str> {
    values(entry, attr).first().map(String::as_str)
}

fn values<'a>(entry: &'a SearchEntry, attr: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map_or(&[], |(_, v)| v.as_slice())
}

/// Whether an AD `userAccountControl` value has ACCOUNTDISABLE set.
fn ad_account_disabled(uac: Option<&str>) -> bool {
    uac.and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|v| v & ACCOUNTDISABLE != 0)
}

/// The filter term tying a group to a user's `value` of `group_attr`; `in_chain` asks AD for
/// nested membership (the group has the user through any chain of groups).
fn group_term(group_attr: &str, value: &str, in_chain: bool) -> String {
    if in_chain {
        format!(
            "({group_attr}:{MATCHING_RULE_IN_CHAIN}:={})",
            escape::filter_value(value)
        )
    } else {
        escape::equality(group_attr, value)
    }
}

fn is_dn(attr: &str) -> bool {
    attr.eq_ignore_ascii_case("DN")
}

/// Hint for an LDAP result code, said after the code.
fn hint(code: u32) -> &'static str {
    match code {
        INVALID_CREDENTIALS => {
            "; check bindDN and the password in the secret bindPasswordRef names"
        }
        NO_SUCH_OBJECT => "; check that the base DN exists",
        87 => "; check the filter's syntax (RFC 4515)",
        50 => "; the service account may not read these entries: grant it read access",
        _ => "",
    }
}

/// Whether `e` is, or wraps, a TLS error.
fn tls_reason(e: &LdapError) -> Option<String> {
    match e {
        LdapError::Rustls { source } => Some(source.to_string()),
        LdapError::DNSName { source } => Some(source.to_string()),
        LdapError::Io { source } => source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
        _ => None,
    }
}

// === impl LdapConnector ===

impl LdapConnector {
    /// The connector of `spec` (type `ldap`, already validated by the model) with id `id`.
    /// `bind_password` is the service account's password (read from the secret that
    /// `bindPasswordRef` names). Nothing is contacted here; see
    /// [`crate::PasswordConnector::check`].
    pub fn new(
        id: &str,
        spec: &ConnectorSpec,
        bind_password: Option<SecretString>,
        options: LdapOptions,
    ) -> Result<Self, Error> {
        let config = |message: String| Error::Config {
            connector: id.to_owned(),
            message,
        };
        let Some(ldap) = spec.ldap.clone() else {
            return Err(config("type ldap needs the ldap section".into()));
        };
        if !ldap.bind_dn.is_empty() && bind_password.is_none() {
            return Err(config(
                "bindDN is set but no bind password was given: create the secret that bindPasswordRef names".into(),
            ));
        }
        let (scheme, tls) = match ldap.security {
            LdapSecurity::Ldaps => ("ldaps", true),
            LdapSecurity::StartTLS => ("ldap", true),
            LdapSecurity::InsecureNone => ("ldap", false),
        };
        let tls = if tls && !ldap.ca_bundle.is_empty() {
            Some(tls_config(&ldap.ca_bundle).map_err(config)?)
        } else {
            None
        };
        Ok(LdapConnector {
            id: id.to_owned(),
            display_name: if spec.display_name.is_empty() {
                id.to_owned()
            } else {
                spec.display_name.clone()
            },
            url: format!("{scheme}://{}", ldap.host),
            spec: ldap,
            groups: crate::GroupRules::of(id, spec)?,
            bind_password,
            tls,
            options,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn unreachable(&self, reason: String) -> Error {
        Error::Unreachable {
            connector: self.id.clone(),
            address: self.spec.host.clone(),
            reason,
        }
    }

    /// Maps an ldap3 error of `operation` to ours.
    fn error(&self, operation: &str, e: LdapError) -> Error {
        if let Some(reason) = tls_reason(&e) {
            return Error::Tls {
                connector: self.id.clone(),
                address: self.spec.host.clone(),
                reason,
            };
        }
        match e {
            LdapError::LdapResult { result } => {
                self.result_error(operation, result.rc, &result.text)
            }
            LdapError::Timeout { .. } => self.unreachable(format!(
                "no answer to {operation} within {} s",
                self.options.operation_timeout.as_secs()
            )),
            LdapError::FilterParsing => Error::Config {
                connector: self.id.clone(),
                message: format!("{operation}: the filter is not a valid RFC 4515 filter"),
            },
            other => self.unreachable(other.to_string()),
        }
    }

    fn result_error(&self, operation: &str, code: u32, text: &str) -> Error {
        Error::Ldap {
            connector: self.id.clone(),
            operation: operation.to_owned(),
            code,
            text: if text.is_empty() {
                result_name(code).to_owned()
            } else {
                format!("{}: {text}", result_name(code))
            },
            hint: hint(code),
        }
    }

    async fn connect(&self) -> Result<Ldap, Error> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.options.connect_timeout)
            .set_starttls(self.spec.security == LdapSecurity::StartTLS);
        if let Some(config) = &self.tls {
            settings = settings.set_config(Arc::clone(config));
        }
        let connecting = LdapConnAsync::with_settings(settings, &self.url);
        let (conn, ldap) =
            match tokio::time::timeout(self.options.connect_timeout, connecting).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Err(self.error("connect", e)),
                Err(_) => {
                    return Err(self.unreachable(format!(
                        "no connection within {} s",
                        self.options.connect_timeout.as_secs()
                    )));
                }
            };
        let id = self.id.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(connector = %id, error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// A connection bound as the service account: an idle one, or a new one. Also says
    /// whether it was reused (a pooled connection the server may have closed meanwhile).
    async fn checkout(&self, trace: &mut Trace) -> Result<(Conn, bool), Error> {
        let reused = loop {
            let popped = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match popped {
                Some(mut c) => {
                    if !c.ldap.is_closed() {
                        break Some(c);
                    }
                }
                None => break None,
            }
        };
        if let Some(mut conn) = reused {
            if conn.bound_as_service {
                return Ok((conn, true));
            }
            match self.service_bind(&mut conn, trace).await {
                Ok(()) => return Ok((conn, true)),
                // Closed by the server while idle: a new connection below.
                Err(Error::Unreachable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut conn = Conn {
            ldap: self.connect().await?,
            bound_as_service: false,
        };
        self.service_bind(&mut conn, trace).await?;
        Ok((conn, false))
    }

    /// Runs `op` on a service-bound connection, then pools it. A pooled connection that
    /// turns out dead (an idle timeout of the server, a restart) is dropped and `op` runs once
    /// more on a new connection, so that a directory restart costs no user a failed login.
    async fn with_connection(
        &self,
        trace: &mut Trace,
        task: Task<'_>,
    ) -> Result<Option<Identity>, Error> {
        let mut retried = false;
        loop {
            let (mut conn, reused) = self.checkout(trace).await?;
            let result = match task {
                Task::Login(username, password) => {
                    self.login_on(&mut conn, username, password, trace).await
                }
                Task::Refresh(identity) => self.refresh_on(&mut conn, identity, trace).await,
                Task::Check => Ok(None),
            };
            match result {
                Ok(value) => {
                    self.checkin(conn);
                    return Ok(value);
                }
                Err(Error::Unreachable { .. }) if reused && !retried => retried = true,
                Err(e) => return Err(e),
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.options.pool_size
        {
            idle.push(conn);
        }
    }

    async fn service_bind(&self, conn: &mut Conn, trace: &mut Trace) -> Result<(), Error> {
        let password = self
            .bind_password
            .as_ref()
            .map_or("", |p| p.expose_secret());
        let operation = "bind as the service account";
        let result = conn
            .ldap
            .with_timeout(self.options.operation_timeout)
            .simple_bind(&self.spec.bind_dn, password)
            .await
            .map_err(|e| self.error(operation, e))?;
        trace.operations.push(Operation::Bind {
            dn: self.spec.bind_dn.clone(),
            code: result.rc,
        });
        if result.rc != 0 {
            return Err(self.result_error(operation, result.rc, &result.text));
        }
        conn.bound_as_service = true;
        Ok(())
    }

    async fn search(
        &self,
        conn: &mut Conn,
        operation: &str,
        (base, scope, scope_name): (&str, Scope, &'static str),
        filter: &str,
        attrs: &[&str],
        trace: &mut Trace,
    ) -> Result<Vec<SearchEntry>, Error> {
        let result = conn
            .ldap
            .with_timeout(self.options.operation_timeout)
            .search(base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| self.error(operation, e))?;
        let (entries, res) = (result.0, result.1);
        trace.operations.push(Operation::Search {
            base: base.to_owned(),
            scope: scope_name,
            filter: filter.to_owned(),
            entries: entries.len(),
        });
        // A base object that does not exist (the user deleted between two searches) has no
        // entries; any other error result is an error.
        if res.rc != 0 && !(res.rc == NO_SUCH_OBJECT && scope == Scope::Base) {
            return Err(self.result_error(operation, res.rc, &res.text));
        }
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    fn user_attrs(&self) -> Vec<&str> {
        let us = &self.spec.user_search;
        let mut attrs = vec![us.username_attr.as_str(), "userAccountControl"];
        for a in [
            &us.id_attr,
            &us.email_attr,
            &us.name_attr,
            &us.preferred_username_attr,
        ] {
            if !a.is_empty() && !is_dn(a) {
                attrs.push(a);
            }
        }
        if let Some(gs) = &self.spec.group_search {
            for m in &gs.user_matchers {
                if !is_dn(&m.user_attr) {
                    attrs.push(&m.user_attr);
                }
            }
        }
        attrs
    }

    /// The one entry whose username attribute equals `username`, if exactly one does.
    async fn find_user(
        &self,
        conn: &mut Conn,
        username: &str,
        trace: &mut Trace,
    ) -> Result<Option<SearchEntry>, Error> {
        let us = &self.spec.user_search;
        let (scope, scope_name) = scope_of(us.scope);
        let filter = escape::and(&us.filter, &escape::equality(&us.username_attr, username));
        let attrs = self.user_attrs();
        let mut entries = self
            .search(
                conn,
                "user search",
                (&us.base_dn, scope, scope_name),
                &filter,
                &attrs,
                trace,
            )
            .await?;
        if entries.len() > 1 {
            tracing::warn!(
                connector = %self.id,
                matches = entries.len(),
                "user search matched several entries; refusing the login (make usernameAttr unique or narrow the filter)"
            );
            return Ok(None);
        }
        Ok(entries.pop().filter(|e| !e.dn.is_empty()))
    }

    async fn disabled(
        &self,
        conn: &mut Conn,
        entry: &SearchEntry,
        trace: &mut Trace,
    ) -> Result<bool, Error> {
        if ad_account_disabled(first(entry, "userAccountControl")) {
            return Ok(true);
        }
        let filter = &self.spec.user_search.disabled_filter;
        if filter.is_empty() {
            return Ok(false);
        }
        let hits = self
            .search(
                conn,
                "disabled-account check",
                (&entry.dn, Scope::Base, "base"),
                filter,
                &["1.1"],
                trace,
            )
            .await?;
        Ok(!hits.is_empty())
    }

    async fn groups(
        &self,
        conn: &mut Conn,
        entry: &SearchEntry,
        trace: &mut Trace,
    ) -> Result<Vec<String>, Error> {
        let Some(gs) = &self.spec.group_search else {
            return Ok(Vec::new());
        };
        let (scope, scope_name) = scope_of(gs.scope);
        let mut groups: Vec<String> = Vec::new();
        for m in &gs.user_matchers {
            let dn_matcher = is_dn(&m.user_attr);
            let user_values: Vec<&str> = if dn_matcher {
                vec![entry.dn.as_str()]
            } else {
                values(entry, &m.user_attr)
                    .iter()
                    .map(String::as_str)
                    .collect()
            };
            for value in user_values {
                let term = group_term(&m.group_attr, value, dn_matcher && gs.nested_groups);
                let filter = escape::and(&gs.filter, &term);
                let found = self
                    .search(
                        conn,
                        "group search",
                        (&gs.base_dn, scope, scope_name),
                        &filter,
                        &[gs.name_attr.as_str()],
                        trace,
                    )
                    .await?;
                for group in &found {
                    for name in values(group, &gs.name_attr) {
                        let Some(name) = self.groups.pass(name) else {
                            continue;
                        };
                        if groups.len() < MAX_GROUPS && !groups.iter().any(|g| g == name) {
                            groups.push(name.to_owned());
                        }
                    }
                }
            }
        }
        Ok(groups)
    }

    fn identity(&self, entry: &SearchEntry, typed: &str, groups: Vec<String>) -> Identity {
        let us = &self.spec.user_search;
        let user_id = if us.id_attr.is_empty() || is_dn(&us.id_attr) {
            entry.dn.clone()
        } else {
            first(entry, &us.id_attr).unwrap_or(&entry.dn).to_owned()
        };
        let username = first(entry, &us.preferred_username_attr)
            .filter(|_| !us.preferred_username_attr.is_empty())
            .or_else(|| first(entry, &us.username_attr))
            .unwrap_or(typed)
            .to_owned();
        let email = if us.email_attr.is_empty() {
            String::new()
        } else {
            first(entry, &us.email_attr).unwrap_or_default().to_owned()
        };
        let name = if us.name_attr.is_empty() {
            String::new()
        } else {
            first(entry, &us.name_attr).unwrap_or_default().to_owned()
        };
        Identity {
            user_id,
            username,
            name,
            // The directory is the organisation's record of its users' addresses.
            email_verified: !email.is_empty(),
            email,
            groups,
        }
    }

    async fn login_on(
        &self,
        conn: &mut Conn,
        username: &str,
        password: &SecretString,
        trace: &mut Trace,
    ) -> Result<Option<Identity>, Error> {
        let Some(entry) = self.find_user(conn, username, trace).await? else {
            return Ok(None);
        };
        if self.disabled(conn, &entry, trace).await? {
            return Ok(None);
        }
        // Groups are read with the service account, before the connection is bound as the
        // user (who may not be allowed to read groups).
        let groups = self.groups(conn, &entry, trace).await?;
        conn.bound_as_service = false;
        let result = conn
            .ldap
            .with_timeout(self.options.operation_timeout)
            .simple_bind(&entry.dn, password.expose_secret())
            .await
            .map_err(|e| self.error("bind as the user", e))?;
        trace.operations.push(Operation::Bind {
            dn: entry.dn.clone(),
            code: result.rc,
        });
        match result.rc {
            0 => Ok(Some(self.identity(&entry, username, groups))),
            INVALID_CREDENTIALS => Ok(None),
            // The directory refuses this account (locked, password expired, policy): no
            // login, like a wrong password, not "the directory cannot be reached".
            19 | 48 | 50 | 53 => {
                tracing::info!(
                    connector = %self.id,
                    code = result.rc,
                    "the directory refused the user's bind"
                );
                Ok(None)
            }
            code => Err(self.result_error("bind as the user", code, &result.text)),
        }
    }

    async fn refresh_on(
        &self,
        conn: &mut Conn,
        identity: &Identity,
        trace: &mut Trace,
    ) -> Result<Option<Identity>, Error> {
        let Some(entry) = self.find_user(conn, &identity.username, trace).await? else {
            return Ok(None);
        };
        let groups = self.groups(conn, &entry, trace).await?;
        let current = self.identity(&entry, &identity.username, groups);
        if current.user_id != identity.user_id || self.disabled(conn, &entry, trace).await? {
            return Ok(None);
        }
        Ok(Some(current))
    }
}

#[async_trait::async_trait]
impl crate::PasswordConnector for LdapConnector {
    fn id(&self) -> &str {
        &self.id
    }

    fn display_name(&self) -> &str {
        &self.display_name
    }

    fn username_prompt(&self) -> &str {
        if self.spec.username_prompt.is_empty() {
            "Username"
        } else {
            &self.spec.username_prompt
        }
    }

    async fn login(
        &self,
        username: &str,
        password: &SecretString,
        trace: &mut Trace,
    ) -> Result<Option<Identity>, Error> {
        let secret = password.expose_secret();
        if secret.is_empty()
            || secret.len() > MAX_PASSWORD_LEN
            || username.is_empty()
            || username.len() > MAX_USERNAME_LEN
        {
            return Ok(None);
        }
        self.with_connection(trace, Task::Login(username, password))
            .await
    }

    async fn refresh(
        &self,
        identity: &Identity,
        trace: &mut Trace,
    ) -> Result<Option<Identity>, Error> {
        self.with_connection(trace, Task::Refresh(identity)).await
    }

    async fn check(&self) -> Result<(), Error> {
        let mut trace = Trace::default();
        self.with_connection(&mut trace, Task::Check).await?;
        Ok(())
    }
}

/// The name of an LDAP result code (RFC 4511 Appendix A).
fn result_name(code: u32) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        87 => "filterError",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_dn_without_a_password_is_a_configuration_error() {
        let spec = ConnectorSpec {
            ldap: Some(LdapSpec {
                host: "ldap.example.com:636".into(),
                bind_dn: "cn=svc,dc=example,dc=com".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = LdapConnector::new("corp", &spec, None, LdapOptions::default()).unwrap_err();
        assert!(e.to_string().contains("bindPasswordRef"), "{e}");
    }

    #[test]
    fn active_directory_disabled_accounts_and_nested_groups() {
        assert!(
            ad_account_disabled(Some("514")),
            "NORMAL_ACCOUNT | ACCOUNTDISABLE"
        );
        assert!(!ad_account_disabled(Some("512")));
        assert!(!ad_account_disabled(Some("not a number")));
        assert!(!ad_account_disabled(None));
        assert_eq!(
            group_term("member", "CN=Doe\\, John*,DC=corp", true),
            "(member:1.2.840.113556.1.4.1941:=CN=Doe\\5c, John\\2a,DC=corp)"
        );
        assert_eq!(
            group_term("memberUid", "a)(b", false),
            "(memberUid=a\\29\\28b)"
        );
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_refused() {
        assert!(tls_config("").is_err());
        assert!(tls_config("not pem").is_err());
    }
}
