//! The provider's side of the connector boundary: the identity a connector's user gets, and
//! the re-check of a user at every refresh grant, whatever source they came from.

use portcullis_connectors::Trace;

use crate::Error;
use crate::grants::Identity;
use crate::groups::with_portcullis_groups;
use crate::provider::Provider;
use crate::state::{Authentication, ConnectorLogin};

/// How a connector's user is described in tokens: `sub` from (connector, user id), the rest
/// as the connector reported it.
pub(crate) fn identity_of(connector: &str, user: &portcullis_connectors::Identity) -> Identity {
    Identity {
        subject: portcullis_connectors::subject(connector, &user.user_id),
        username: user.username.clone(),
        name: user.name.clone(),
        email: user.email.clone(),
        email_verified: user.email_verified,
        groups: user.groups.clone(),
    }
}

/// The authentication of a password login through `connector`.
pub(crate) async fn authentication(
    provider: &Provider,
    connector: &str,
    user: portcullis_connectors::Identity,
    sid: Option<String>,
    now: u64,
) -> Result<Authentication, Error> {
    Ok(Authentication {
        identity: with_portcullis_groups(provider, identity_of(connector, &user)).await?,
        credential: format!("connector:{connector}"),
        sid,
        auth_time: now,
        amr: vec!["pwd".into()],
        connector: Some(Box::new(ConnectorLogin {
            id: connector.to_owned(),
            identity: user,
            upstream: None,
        })),
    })
}

/// What a re-check at refresh found.
pub(crate) enum Recheck {
    /// The user may go on, described as now.
    Current(Authentication),
    /// The user is gone, disabled, another account, or their connector was removed: their
    /// grants end.
    Gone,
    /// The source did not answer: refuse this refresh, keep the grant.
    Unavailable(String),
}

/// Re-reads the user of `authn` at their source: local users from the store, connector users
/// from their connector. `refresh` is the digest of the downstream refresh token presented,
/// at a refresh grant (an upstream OpenID provider's refresh token is redeemed then, once).
pub(crate) async fn recheck(
    provider: &Provider,
    authn: &Authentication,
    refresh: Option<&str>,
) -> Result<Recheck, Error> {
    let Some(login) = &authn.connector else {
        return Ok(
            match crate::registry::current_identity(provider, authn).await? {
                // Already with its portcullis groups.
                Some(identity) => Recheck::Current(Authentication {
                    identity,
                    ..authn.clone()
                }),
                None => Recheck::Gone,
            },
        );
    };
    let connectors = provider.connectors();
    if let Some(upstream) = connectors.redirect(&login.id) {
        return crate::upstream::recheck(provider, authn, login, upstream, refresh).await;
    }
    let Some(connector) = connectors.get(&login.id) else {
        return Ok(Recheck::Gone);
    };
    let mut trace = Trace::default();
    Ok(match connector.refresh(&login.identity, &mut trace).await {
        Ok(Some(user)) => Recheck::Current(Authentication {
            identity: with_portcullis_groups(provider, identity_of(&login.id, &user)).await?,
            connector: Some(Box::new(ConnectorLogin {
                id: login.id.clone(),
                identity: user,
                upstream: None,
            })),
            ..authn.clone()
        }),
        Ok(None) => Recheck::Gone,
        Err(e) => Recheck::Unavailable(e.to_string()),
    })
}
