//! The LDAP connector against slapd: logins, groups, refusals, injection attempts, TLS,
//! re-checks at refresh, and a directory that is down.

use std::time::Duration;

use portcullis_connectors::ldap::{LdapConnector, LdapOptions};
use portcullis_connectors::{Error, Identity, Operation, PasswordConnector, Trace};
use portcullis_model::ConnectorSpec;
use portcullis_model::kinds::connector::{GroupMapping, LdapSecurity};
use portcullis_testkit::slapd::{self, Slapd};
use secrecy::SecretString;

/// The fixture's connector spec ([`slapd::connector_spec`]) with an extra user filter and a
/// group mapping.
pub fn spec(host: &str, security: LdapSecurity, ca: &str) -> ConnectorSpec {
    let mut spec = slapd::connector_spec(host, security, ca);
    if let Some(ldap) = spec.ldap.as_mut() {
        ldap.user_search.filter = "(objectClass=inetOrgPerson)".into();
    }
    spec.group_mappings = vec![GroupMapping {
        from: "specials".into(),
        to: "special-people".into(),
    }];
    spec
}

pub fn connector(spec: &ConnectorSpec) -> LdapConnector {
    LdapConnector::new(
        "corp",
        spec,
        Some(SecretString::from(slapd::SERVICE_PASSWORD)),
        LdapOptions {
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            pool_size: 4,
        },
    )
    .unwrap()
}

fn plain(slapd: &Slapd) -> LdapConnector {
    connector(&spec(&slapd.ldap_addr, LdapSecurity::InsecureNone, ""))
}

/// The error of a login that cannot be answered.
async fn login_error(c: &LdapConnector, user: &str, password: &str) -> Error {
    c.login(user, &SecretString::from(password), &mut Trace::default())
        .await
        .unwrap_err()
}

async fn login(c: &LdapConnector, user: &str, password: &str) -> Option<Identity> {
    let mut trace = Trace::default();
    c.login(user, &SecretString::from(password), &mut trace)
        .await
        .unwrap()
}

#[tokio::test]
async fn logins_groups_and_refusals() {
    let slapd = Slapd::start().unwrap();
    let c = plain(&slapd);

    let mut trace = Trace::default();
    let alice = c
        .login("alice", &SecretString::from("alice-pw"), &mut trace)
        .await
        .unwrap()
        .expect("alice logs in");
    assert_eq!(alice.user_id, "alice");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.name, "Alice Liddell");
    assert_eq!(alice.email, "alice@example.org");
    assert!(alice.email_verified);
    // member→DN gives admins, memberUid→uid gives devs; nesting is not followed without AD.
    let mut groups = alice.groups.clone();
    groups.sort();
    assert_eq!(groups, ["admins", "devs"]);
    // The trace shows the service bind, the searches with their counts, and the user bind.
    assert!(
        matches!(&trace.operations[0], Operation::Bind { dn, code: 0 } if dn == slapd::SERVICE_DN)
    );
    assert!(trace.operations.iter().any(|o| matches!(o,
        Operation::Search { filter, entries: 1, .. } if filter == "(&(objectClass=inetOrgPerson)(uid=alice))")));
    assert!(matches!(
        trace.operations.last(),
        Some(Operation::Bind { code: 0, .. })
    ));
    assert!(
        !format!("{:?}", trace).contains("alice-pw"),
        "passwords are never traced"
    );

    let bob = login(&c, "bob", "bob-pw").await.expect("bob logs in");
    assert_eq!(bob.groups, ["ops"]);

    // Wrong password, empty password, unknown user, disabled user: no login, no error.
    assert_eq!(login(&c, "alice", "wrong").await, None);
    let mut trace = Trace::default();
    assert_eq!(
        c.login("alice", &SecretString::from(""), &mut trace)
            .await
            .unwrap(),
        None
    );
    assert!(
        trace.operations.is_empty(),
        "an empty password never reaches the directory"
    );
    assert_eq!(login(&c, "nobody", "x").await, None);
    assert_eq!(
        login(&c, "dave", "dave-pw").await,
        None,
        "disabled by disabledFilter"
    );

    // Injection attempts match nobody, even with a password that would be right for alice.
    for attempt in [
        "*",
        "*)(uid=*",
        ")(uid=*",
        "alice)(|(uid=*",
        "al*",
        "alice\0",
        "\0",
    ] {
        let mut trace = Trace::default();
        let result = c
            .login(attempt, &SecretString::from("alice-pw"), &mut trace)
            .await
            .unwrap();
        assert_eq!(result, None, "{attempt:?}");
        for op in &trace.operations {
            if let Operation::Search {
                filter, entries, ..
            } = op
            {
                assert_eq!(*entries, 0, "{attempt:?} matched: {filter}");
                assert!(!filter.contains("(uid=*"), "{filter}");
            }
        }
    }

    // Names with filter and DN special characters and non-ASCII letters log in as themselves.
    let star = login(&c, "a*()\\b", "star-pw")
        .await
        .expect("a*()\\b logs in");
    assert_eq!(star.user_id, "a*()\\b");
    assert_eq!(
        star.groups,
        ["special-people"],
        "member→DN with an escaped DN; mapped"
    );
    let comma = login(&c, "c,+\"<>;=d", "comma-pw")
        .await
        .expect("DN specials log in");
    assert_eq!(comma.groups, ["special-people"]);
    let jurgen = login(&c, "jürgen", "jürgen-pw")
        .await
        .expect("non-ASCII logs in");
    assert_eq!(jurgen.name, "Jürgen Groß");
    assert_eq!(jurgen.groups, ["intl"]);
    assert_eq!(login(&c, "a*()\\b", "comma-pw").await, None);

    // Refresh re-reads the same user.
    let mut trace = Trace::default();
    let again = c.refresh(&alice, &mut trace).await.unwrap().unwrap();
    assert_eq!(again, alice);

    // The quick check of `apply`: a wrong service password is reported with its LDAP code.
    let mut bad = spec(&slapd.ldap_addr, LdapSecurity::InsecureNone, "");
    bad.ldap.as_mut().unwrap().bind_dn = slapd::SERVICE_DN.into();
    let wrong = LdapConnector::new(
        "corp",
        &bad,
        Some(SecretString::from("not-the-password")),
        LdapOptions::default(),
    )
    .unwrap();
    let e = wrong.check().await.unwrap_err();
    assert!(matches!(e, Error::Ldap { code: 49, .. }), "{e}");
    assert!(e.to_string().contains("invalidCredentials"), "{e}");
    assert!(e.to_string().contains("bindPasswordRef"), "{e}");
    c.check().await.unwrap();

    // A filter the server refuses is an error with its code, not a panic or a silent "no".
    let mut broken = spec(&slapd.ldap_addr, LdapSecurity::InsecureNone, "");
    broken.ldap.as_mut().unwrap().user_search.base_dn = "ou=missing,dc=example,dc=org".into();
    let e = login_error(&connector(&broken), "alice", "alice-pw").await;
    assert!(matches!(e, Error::Ldap { code: 32, .. }), "{e}");
}

#[tokio::test]
async fn ldaps_and_starttls_with_the_test_ca_and_a_wrong_ca_refused() {
    let slapd = Slapd::start().unwrap();
    let ldaps = connector(&spec(
        &slapd.ldaps_addr,
        LdapSecurity::Ldaps,
        slapd.ca_pem(),
    ));
    assert!(login(&ldaps, "alice", "alice-pw").await.is_some());
    let starttls = connector(&spec(
        &slapd.ldap_addr,
        LdapSecurity::StartTLS,
        slapd.ca_pem(),
    ));
    assert!(login(&starttls, "bob", "bob-pw").await.is_some());

    // Another CA: the handshake fails, the error says TLS, and nobody logs in.
    let other = Slapd::start().unwrap();
    for c in [
        connector(&spec(
            &slapd.ldaps_addr,
            LdapSecurity::Ldaps,
            other.ca_pem(),
        )),
        connector(&spec(
            &slapd.ldap_addr,
            LdapSecurity::StartTLS,
            other.ca_pem(),
        )),
    ] {
        let e = login_error(&c, "alice", "alice-pw").await;
        assert!(matches!(e, Error::Tls { .. }), "{e}");
        assert!(e.to_string().contains("caBundle"), "{e}");
        assert!(matches!(c.check().await, Err(Error::Tls { .. })));
    }
}

#[tokio::test]
async fn refresh_sees_removed_users_disabled_users_and_group_changes() {
    let slapd = Slapd::start().unwrap();
    let c = plain(&slapd);
    let alice = login(&c, "alice", "alice-pw").await.unwrap();
    let bob = login(&c, "bob", "bob-pw").await.unwrap();
    let jurgen = login(&c, "jürgen", "jürgen-pw").await.unwrap();

    // alice leaves devs (memberUid) and admins (member).
    slapd
        .modify(&format!(
            "dn: cn=devs,{g}\nchangetype: modify\ndelete: memberUid\nmemberUid: alice\n\n\
             dn: cn=admins,{g}\nchangetype: modify\ndelete: member\nmember: {dn}\n",
            g = slapd::GROUPS_DN,
            dn = slapd::user_dn("alice").unwrap()
        ))
        .unwrap();
    let now = c
        .refresh(&alice, &mut Trace::default())
        .await
        .unwrap()
        .unwrap();
    assert!(now.groups.is_empty(), "{:?}", now.groups);

    // bob is deleted.
    slapd
        .modify(&format!(
            "dn: {}\nchangetype: delete\n",
            slapd::user_dn("bob").unwrap()
        ))
        .unwrap();
    assert_eq!(c.refresh(&bob, &mut Trace::default()).await.unwrap(), None);
    assert_eq!(login(&c, "bob", "bob-pw").await, None);

    // jürgen is disabled.
    slapd
        .modify(&format!(
            "dn: {}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n",
            slapd::user_dn("jürgen").unwrap()
        ))
        .unwrap();
    assert_eq!(
        c.refresh(&jurgen, &mut Trace::default()).await.unwrap(),
        None
    );

    // A new account that took a departed user's name is another account: its id differs.
    slapd.add_user("bob", "new-bob").unwrap();
    let mut impostor = bob.clone();
    impostor.user_id = "someone-else".into();
    assert_eq!(
        c.refresh(&impostor, &mut Trace::default()).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_directory_that_is_down_is_a_clear_error_and_no_login() {
    let mut slapd = Slapd::start().unwrap();
    let c = plain(&slapd);
    let alice = login(&c, "alice", "alice-pw").await.unwrap();
    // A restart cuts the pooled connections: the next logins still succeed.
    slapd.restart().unwrap();
    for _ in 0..3 {
        assert!(login(&c, "alice", "alice-pw").await.is_some());
    }
    c.check().await.unwrap();
    slapd.stop();
    // Pooled connections are dead now; new ones are refused.
    let e = login_error(&c, "alice", "alice-pw").await;
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&slapd.ldap_addr), "{e}");
    assert!(e.to_string().contains("unreachable"), "{e}");
    // Refresh does not say "gone" (which would end sessions) when the directory is down.
    assert!(c.refresh(&alice, &mut Trace::default()).await.is_err());
    assert!(c.check().await.is_err());
}
