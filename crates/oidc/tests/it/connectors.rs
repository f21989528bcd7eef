//! Logins through an LDAP connector (a real slapd): the connector chooser, `connector_id`,
//! subjects per connector, and the re-check at every refresh (group changes reach the next ID
//! token; a deleted user's refresh token family is revoked; a directory that is down refuses
//! refreshes without ending sessions).

use std::sync::Arc;
use std::time::Duration;

use portcullis_connectors::ldap::{LdapConnector, LdapOptions};
use portcullis_connectors::{Connectors, PasswordConnector};
use portcullis_model::kinds::connector::LdapSecurity;
use portcullis_testkit::slapd::{self, Slapd};
use secrecy::SecretString;
use serde_json::json;

use crate::browser::Browser;
use crate::flow::{provider, put};
use crate::sessions::{claims, kubectl, str_of, userinfo_status};
use portcullis_model::{Group, GroupSpec};

const SCOPES: &str = "openid profile email groups offline_access";

fn ldap_connector(slapd: &Slapd) -> Arc<dyn PasswordConnector> {
    let mut spec = slapd::connector_spec(&slapd.ldaps_addr, LdapSecurity::Ldaps, slapd.ca_pem());
    if let Some(ldap) = spec.ldap.as_mut() {
        ldap.username_prompt = "Corp user name".into();
    }
    Arc::new(
        LdapConnector::new(
            "corp",
            &spec,
            Some(SecretString::from(slapd::SERVICE_PASSWORD)),
            LdapOptions {
                connect_timeout: Duration::from_secs(5),
                operation_timeout: Duration::from_secs(5),
                pool_size: 4,
            },
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn ldap_users_log_in_with_the_chooser_and_refresh_rechecks_the_directory() {
    let mut slapd = Slapd::start().unwrap();
    let served = provider().await;
    served
        .provider
        .set_connectors(Connectors::new(vec![ldap_connector(&slapd)]));
    // portcullis Groups: by the directory's group names, and by verified e-mail domain.
    for (name, spec) in [
        (
            "platform",
            GroupSpec {
                groups: vec!["devs".into()],
                ..Default::default()
            },
        ),
        (
            "example-staff",
            GroupSpec {
                email_domains: vec!["example.org".into()],
                ..Default::default()
            },
        ),
    ] {
        let key = portcullis_store::keys::object(portcullis_model::GROUP, "groups", "", name);
        put(&served.store, key, &Group::new(name, spec)).await;
    }
    let rp = kubectl(&served);

    // The chooser lists the local accounts and the directory.
    let browser = Browser::new();
    let auth = rp.authorize(SCOPES, &[]);
    let page = browser.get(&auth.url).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("value=\"corp\""), "{}", page.body);
    assert!(page.body.contains("Example Corp") && page.body.contains("Local account"));
    let form = page.form("/auth/login");
    let wrong = browser
        .submit(
            &form,
            &[
                ("connector", "corp"),
                ("login", "alice"),
                ("password", "nope"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401);
    let page = browser
        .submit(
            &wrong.form("/auth/login"),
            &[
                ("connector", "corp"),
                ("login", "alice"),
                ("password", "alice-pw"),
            ],
        )
        .await;
    let tokens = rp.finish(&auth, &page).await;
    let id = claims(str_of(&tokens, "id_token"));
    assert_eq!(id["sub"], portcullis_connectors::subject("corp", "alice"));
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["name"], "Alice Liddell");
    assert_eq!(id["email"], "alice@example.org");
    let mut groups: Vec<String> = serde_json::from_value(id["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["admins", "devs", "example-staff", "platform"]);

    // The local alice is another user: another subject.
    let local = rp.login(&Browser::new(), SCOPES).await;
    let local_sub = claims(str_of(&local, "id_token"))["sub"].clone();
    assert_ne!(local_sub, id["sub"]);

    // connector_id skips the chooser: only that connector, its prompt, no radio buttons.
    let direct = Browser::new();
    let auth_bob = rp.authorize(SCOPES, &[("connector_id", "corp")]);
    let page = direct.get(&auth_bob.url).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("type=\"radio\""), "{}", page.body);
    assert!(page.body.contains("Corp user name"));
    let form = page.form("/auth/login");
    assert!(
        form.hidden
            .iter()
            .any(|(k, v)| k == "connector" && v == "corp")
    );
    // The form cannot be turned to another connector.
    let switched = direct
        .submit(
            &form,
            &[
                ("connector", "local"),
                ("login", "alice"),
                ("password", "x"),
            ],
        )
        .await;
    assert_eq!(switched.status, 400);
    let page = direct
        .submit(&form, &[("login", "bob"), ("password", "bob-pw")])
        .await;
    let bob_tokens = rp.finish(&auth_bob, &page).await;
    assert_eq!(
        claims(str_of(&bob_tokens, "id_token"))["groups"],
        json!(["ops", "example-staff"])
    );
    // An unknown connector_id is refused to the client.
    let unknown = Browser::new()
        .get(&rp.authorize(SCOPES, &[("connector_id", "nope")]).url)
        .await;
    assert_eq!(unknown.status, 303);
    assert_eq!(unknown.redirect_query()["error"], "invalid_request");

    // Revoking the local alice (a password reset) leaves the directory's alice alone.
    assert!(served.provider.revoke_user("alice").await.unwrap() >= 1);

    // alice leaves devs: the next ID token lacks it, and the Group that follows it.
    slapd
        .modify(&format!(
            "dn: cn=devs,{}\nchangetype: modify\ndelete: memberUid\nmemberUid: alice\n",
            slapd::GROUPS_DN
        ))
        .unwrap();
    let (status, refreshed) = rp.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(
        claims(str_of(&refreshed, "id_token"))["groups"],
        json!(["admins", "example-staff"])
    );
    let access = str_of(&refreshed, "access_token").to_owned();
    assert_eq!(userinfo_status(&served, &access).await, 200);
    // Single sign-on re-reads the directory too: the new code carries the current groups.
    let sso = rp.authorize(SCOPES, &[]);
    let page = browser.get(&sso.url).await;
    let tokens_sso = rp.finish(&sso, &page).await;
    assert_eq!(
        claims(str_of(&tokens_sso, "id_token"))["groups"],
        json!(["admins", "example-staff"])
    );

    // alice is deleted: invalid_grant, and the family is revoked (its access token too).
    slapd
        .modify(&format!(
            "dn: {}\nchangetype: delete\n",
            slapd::user_dn("alice").unwrap()
        ))
        .unwrap();
    let next = str_of(&refreshed, "refresh_token").to_owned();
    let (status, body) = rp.refresh(&next).await;
    assert_eq!(
        (status, str_of(&body, "error")),
        (400, "invalid_grant"),
        "{body}"
    );
    assert_eq!(userinfo_status(&served, &access).await, 401);
    let (status, _) = rp.refresh(&next).await;
    assert_eq!(status, 400, "the family stays revoked");
    // Her browser session ends too: the next authorization shows the login form.
    let page = browser.get(&rp.authorize(SCOPES, &[]).url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("/auth/login"));

    // The directory goes down: no login, a clear page; bob's refresh is refused for now but
    // his grant is not revoked (the directory did not say he is gone).
    slapd.stop();
    let auth = rp.authorize(SCOPES, &[("connector_id", "corp")]);
    let browser = Browser::new();
    let page = browser.get(&auth.url).await;
    let down = browser
        .submit(
            &page.form("/auth/login"),
            &[("login", "bob"), ("password", "bob-pw")],
        )
        .await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(down.body.contains("cannot be reached"), "{}", down.body);
    let (status, body) = rp.refresh(str_of(&bob_tokens, "refresh_token")).await;
    assert_eq!(
        (status, str_of(&body, "error")),
        (503, "temporarily_unavailable")
    );
    let bob_access = str_of(&bob_tokens, "access_token");
    assert_eq!(userinfo_status(&served, bob_access).await, 200);
    // Local users are not affected by a connector that is down.
    rp.login(&Browser::new(), SCOPES).await;
    served.stop().await;
}
