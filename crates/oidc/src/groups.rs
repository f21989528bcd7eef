//! `Group` objects: portcullis groups that users join by rule (their user name, one of their
//! identity provider's groups, or the domain of their verified e-mail address). Their names
//! are added to the `groups` claim beside the source's groups, at login, at single sign-on and
//! at every refresh, so membership changes reach the next ID token like upstream ones.

use portcullis_model::Group;
use portcullis_store::ListOptions;

use crate::Error;
use crate::grants::Identity;
use crate::provider::Provider;

/// Most Group objects read (far beyond any installation; a bound on the work of a login).
const MAX_GROUPS: usize = 10_000;

/// `identity` with the names of the Group objects it is a member of added to its groups
/// (once each, after the source's own).
pub(crate) async fn with_portcullis_groups(
    provider: &Provider,
    mut identity: Identity,
) -> Result<Identity, Error> {
    let prefix = portcullis_store::keys::collection(portcullis_model::GROUP, "groups", "");
    let page = provider
        .store()
        .list(
            &prefix,
            ListOptions {
                limit: Some(MAX_GROUPS),
                ..ListOptions::default()
            },
        )
        .await?;
    let source_groups = identity.groups.clone();
    let email = Some(identity.email.as_str()).filter(|e| !e.is_empty());
    for kv in &page.items {
        let Ok(group) = serde_json::from_slice::<Group>(&kv.value) else {
            tracing::warn!(key = %kv.key, "stored Group is not valid; ignored");
            continue;
        };
        let name = &group.metadata.name;
        if group.spec.includes(
            &identity.username,
            &source_groups,
            email,
            identity.email_verified,
        ) && !identity.groups.contains(name)
        {
            identity.groups.push(name.clone());
        }
    }
    Ok(identity)
}
