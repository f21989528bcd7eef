//! `Connector` objects become the issuer's connectors: on every change (and when a bind
//! password or client secret is set) the connectors are rebuilt, LDAP ones with their bind
//! password from the sealed secret their `bindPasswordRef` names and checked with a quick
//! connect-and-bind, upstream OIDC ones with their client secret from the sealed secret their
//! `clientSecretRef` names and checked by fetching the upstream's discovery and keys. The
//! check's outcome is the object's `Ready` condition, kept apart from validation (which
//! `apply` already passed): `Ready=False` with the LDAP result code and text says what to fix.
//! One connector that is down or misconfigured stays offered and does not affect the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use portcullis_connectors::ldap::{LdapConnector, LdapOptions};
use portcullis_connectors::oidc::OidcConnector;
use portcullis_connectors::{Connectors, PasswordConnector, RedirectConnector};
use portcullis_model::{
    Condition, ConditionStatus, Connector, ConnectorType, GROUP, SecretKeySelector,
};
use portcullis_oidc::Provider;
use portcullis_store::{ListOptions, Store, StoreError};
use secrecy::ExposeSecret as _;
use serde_json::Value;

/// Store prefix of Connector objects.
fn prefix() -> String {
    portcullis_store::keys::collection(GROUP, "connectors", "")
}

/// A built connector.
#[derive(Clone)]
enum Live {
    Password(Arc<dyn PasswordConnector>),
    Redirect(Arc<dyn RedirectConnector>),
}

impl Live {
    async fn check(&self) -> Result<(), String> {
        match self {
            Live::Password(c) => c.check().await.map_err(|e| e.to_string()),
            Live::Redirect(c) => c.check().await.map_err(|e| e.to_string()),
        }
    }
}

/// A built connector and what it was built from.
struct Built {
    fingerprint: String,
    connector: Live,
}

/// The connectors built so far, by id: unchanged ones keep their connection pools.
#[derive(Default)]
pub struct Cache {
    built: HashMap<String, Built>,
}

/// What the object's spec and secret were, as a digest (the secret never leaves this
/// function in clear).
fn fingerprint(c: &Connector, password: Option<&secrecy::SecretString>) -> String {
    let spec = serde_json::to_vec(&c.spec).unwrap_or_default();
    let mut input = spec;
    input.push(0);
    if let Some(p) = password {
        input.extend_from_slice(p.expose_secret().as_bytes());
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

async fn bind_password(
    provider: &Provider,
    r: Option<&SecretKeySelector>,
    what: &str,
) -> Result<Option<secrecy::SecretString>, String> {
    let Some(r) = r else {
        return Ok(None);
    };
    match provider.secret(&r.name, &r.key).await {
        Ok(Some(p)) => Ok(Some(p)),
        Ok(None) => Err(format!(
            "the {what} (secret {:?} key {:?}) is not set; run `portcullis connector set-bind-password`",
            r.name, r.key
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads every Connector, rebuilds those that changed, installs the set in the issuer, and
/// checks the new ones (writing their `Ready` condition). Returns the store revision read.
pub async fn reload(
    store: &Arc<dyn Store>,
    provider: &Provider,
    cache: &mut Cache,
) -> Result<u64, StoreError> {
    let page = store.list(&prefix(), ListOptions::default()).await?;
    let mut next: HashMap<String, Built> = HashMap::new();
    let mut to_check = Vec::new();
    let mut list: Vec<Arc<dyn PasswordConnector>> = Vec::new();
    let mut redirects: Vec<Arc<dyn RedirectConnector>> = Vec::new();
    for kv in &page.items {
        let Ok(object) = serde_json::from_slice::<Connector>(&kv.value) else {
            tracing::warn!(key = %kv.key, "stored Connector is not valid; ignored");
            continue;
        };
        let id = object.metadata.name.clone();
        let (reference, what) = match object.spec.type_ {
            ConnectorType::Ldap => (
                object
                    .spec
                    .ldap
                    .as_ref()
                    .and_then(|l| l.bind_password_ref.as_ref()),
                "bind password",
            ),
            ConnectorType::Oidc => (
                object
                    .spec
                    .oidc
                    .as_ref()
                    .and_then(|o| o.client_secret_ref.as_ref()),
                "client secret",
            ),
        };
        let secret = match bind_password(provider, reference, what).await {
            Ok(p) => p,
            Err(message) => {
                to_check.push((object, Err(message)));
                continue;
            }
        };
        let fp = fingerprint(&object, secret.as_ref());
        let connector = match cache.built.remove(&id) {
            Some(b) if b.fingerprint == fp => b.connector,
            _ => {
                let built = match object.spec.type_ {
                    ConnectorType::Ldap => {
                        LdapConnector::new(&id, &object.spec, secret, LdapOptions::default())
                            .map(|c| Live::Password(Arc::new(c)))
                    }
                    ConnectorType::Oidc => OidcConnector::new(&id, &object.spec, secret)
                        .map(|c| Live::Redirect(Arc::new(c))),
                };
                match built {
                    Ok(c) => {
                        to_check.push((object, Ok(c.clone())));
                        c
                    }
                    Err(e) => {
                        to_check.push((object, Err(e.to_string())));
                        continue;
                    }
                }
            }
        };
        match &connector {
            Live::Password(c) => list.push(Arc::clone(c)),
            Live::Redirect(c) => redirects.push(Arc::clone(c)),
        }
        next.insert(
            id,
            Built {
                fingerprint: fp,
                connector,
            },
        );
    }
    cache.built = next;
    provider.set_connectors(Connectors::new(list).with_redirect(redirects));
    // The checks run in the background, side by side, each with its own deadline: a
    // directory that is down delays only its own condition, and neither start-up nor logins.
    let store = Arc::clone(store);
    tokio::spawn(async move {
        let checks = to_check.into_iter().map(|(object, built)| {
            let store = Arc::clone(&store);
            async move {
                let name = object.metadata.name;
                let key = portcullis_store::keys::object(GROUP, "connectors", "", &name);
                let outcome = match built {
                    Ok(c) => c.check().await,
                    Err(message) => Err(message),
                };
                if let Err(e) = write_ready(&*store, &key, outcome).await {
                    tracing::warn!(connector = %name, error = %e, "writing the Ready condition failed");
                }
            }
        });
        futures::future::join_all(checks).await;
    });
    Ok(page.revision)
}

/// Sets the `Ready` condition of the Connector at `key`, unless it already says the same.
async fn write_ready(
    store: &dyn Store,
    key: &str,
    outcome: Result<(), String>,
) -> Result<(), StoreError> {
    let (status, reason, message) = match outcome {
        Ok(()) => (
            ConditionStatus::True,
            "Connected",
            "the service account binds, or the upstream provider's discovery and keys answer"
                .to_owned(),
        ),
        Err(message) => (ConditionStatus::False, "CheckFailed", message),
    };
    for _ in 0..4 {
        let Some(kv) = store.get(key).await? else {
            return Ok(());
        };
        let Ok(mut object) = serde_json::from_slice::<Value>(&kv.value) else {
            return Ok(());
        };
        let generation = object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64);
        let current: Vec<Condition> = object
            .pointer("/status/conditions")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let same = current.iter().any(|c| {
            c.type_ == "Ready"
                && c.status == status
                && c.message == message
                && c.observed_generation == generation
        });
        if same {
            return Ok(());
        }
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .ok();
        let condition = Condition {
            type_: "Ready".into(),
            status,
            observed_generation: generation,
            last_transition_time: now,
            reason: reason.into(),
            message: message.clone(),
        };
        let Some(map) = object.as_object_mut() else {
            return Ok(());
        };
        map.insert(
            "status".into(),
            serde_json::json!({ "conditions": [condition] }),
        );
        let Ok(bytes) = serde_json::to_vec(&object) else {
            return Ok(());
        };
        match store.update(key, bytes, Some(kv.mod_revision)).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Keeps the issuer's connectors in step with the Connector objects and their secrets, for
/// ever. Spawn it next to the server.
pub async fn sync(store: Arc<dyn Store>, provider: Provider, mut revision: u64, mut cache: Cache) {
    loop {
        match store.watch(&prefix(), revision).await {
            Ok(mut events) => loop {
                tokio::select! {
                    event = events.next() => {
                        match event {
                            Some(Ok(_)) => {
                                while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
                            }
                            _ => break,
                        }
                    }
                    () = provider.secrets_changed() => {}
                }
                match reload(&store, &provider, &mut cache).await {
                    Ok(rev) => revision = revision.max(rev),
                    Err(e) => tracing::warn!(error = %e, "reloading connectors failed"),
                }
            },
            Err(e) => tracing::warn!(error = %e, "watching Connector objects failed"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(rev) = reload(&store, &provider, &mut cache).await {
            revision = rev;
        }
    }
}
