//! Creating the default roles ([`portcullis_federation::defaults`]): once for each workspace
//! and project (recorded on it by [`DEFAULTS_CREATED_ANNOTATION`]), once for the global ones
//! (recorded by [`GLOBAL_MARKER`]), and again only by an explicit reset, which overwrites.

use portcullis_federation::defaults as planned;
use portcullis_model::{GROUP, Resource};
use portcullis_store::{Store, StoreError};
use serde_json::{Value, json};

/// Annotation on a Workspace or Project once its default roles were created.
pub const DEFAULTS_CREATED_ANNOTATION: &str = "portcullis.dev/defaults-created";

/// Store key recording that the global defaults were created (outside the served objects:
/// nothing in the API shows or changes it).
const GLOBAL_MARKER: &str = "/federation/global-defaults-created";

/// Attempts of a read-modify-write that races with other writers.
const RETRIES: usize = 5;

/// Whether `r` is a workspace or project whose defaults were never created.
pub fn wanted(r: &Resource) -> bool {
    let meta = match r {
        Resource::Workspace(w) => &w.metadata,
        Resource::Project(p) => &p.metadata,
        _ => return false,
    };
    !meta.annotations.contains_key(DEFAULTS_CREATED_ANNOTATION)
}

/// The defaults of a workspace or project.
pub fn of(r: &Resource) -> Vec<Resource> {
    match r {
        Resource::Workspace(w) => planned::workspace(w),
        Resource::Project(p) => planned::project(p),
        _ => Vec::new(),
    }
}

fn key_of(r: &Resource) -> String {
    let info = r.kind_info();
    portcullis_store::keys::object(GROUP, info.plural, r.namespace(), r.name())
}

/// Creates the defaults of the workspace or project `r` that are missing, then records it on
/// `r`. Failures are logged; the next start (or change of `r`) tries again.
pub async fn ensure(store: &dyn Store, r: &Resource) {
    if let Err(e) = write_all(store, &of(r), false).await {
        tracing::warn!(object = %key_of(r), error = %e, "creating default roles failed");
        return;
    }
    if let Err(e) = annotate(store, &key_of(r)).await {
        tracing::warn!(object = %key_of(r), error = %e, "recording the default roles failed");
    }
}

/// Creates the global defaults at first start (an edited or deleted one is left so).
pub async fn bootstrap(store: &dyn Store) -> Result<(), StoreError> {
    if store.get(GLOBAL_MARKER).await?.is_some() {
        return Ok(());
    }
    write_all(store, &planned::global(), false).await?;
    match store.create(GLOBAL_MARKER, b"true".to_vec()).await {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `objects`: creates the missing ones; with `overwrite`, also replaces the rules and
/// default annotations of existing ones (keeping their identity, labels and other
/// annotations). Returns how many were created or changed.
pub async fn write_all(
    store: &dyn Store,
    objects: &[Resource],
    overwrite: bool,
) -> Result<usize, StoreError> {
    let mut changed = 0;
    for r in objects {
        let key = key_of(r);
        let mut value = r.to_json_value();
        for _ in 0..RETRIES {
            let existing = store.get(&key).await?;
            let Some(existing) = existing else {
                if let Some(m) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                    crate::api::objects::stamp_created(m, true);
                }
                match store.create(&key, to_bytes(&value)?).await {
                    Ok(_) => changed += 1,
                    // Created meanwhile (another replica): it exists, as wanted.
                    Err(StoreError::AlreadyExists(_)) if !overwrite => {}
                    Err(StoreError::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e),
                }
                break;
            };
            if !overwrite {
                break;
            }
            let old: Value = serde_json::from_slice(&existing.value)
                .map_err(|e| StoreError::Backend(format!("{key}: {e}")))?;
            let next = overwritten(&old, &value);
            if next == old {
                break;
            }
            match store
                .update(&key, to_bytes(&next)?, Some(existing.mod_revision))
                .await
            {
                Ok(_) => {
                    changed += 1;
                    break;
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(changed)
}

/// `old` with the content of the default `new`: its rules, and its annotations added; the
/// identity, labels and other annotations of `old` kept; the generation counted up.
fn overwritten(old: &Value, new: &Value) -> Value {
    let mut out = new.clone();
    let (Some(old_meta), Some(meta)) = (
        old.get("metadata").and_then(Value::as_object),
        out.get_mut("metadata").and_then(Value::as_object_mut),
    ) else {
        return old.clone();
    };
    let mut merged = old_meta.clone();
    let mut annotations = old_meta
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(a) = meta.get("annotations").and_then(Value::as_object) {
        annotations.extend(a.clone());
    }
    merged.insert("annotations".into(), Value::Object(annotations));
    let rules_changed = old.get("rules") != new.get("rules")
        || old_meta.get("annotations") != merged.get("annotations");
    if rules_changed {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        merged.insert("generation".into(), json!(generation + 1));
    }
    *meta = merged;
    out
}

/// Sets [`DEFAULTS_CREATED_ANNOTATION`] on the object at `key` (a compare-and-swap, retried).
async fn annotate(store: &dyn Store, key: &str) -> Result<(), StoreError> {
    for _ in 0..RETRIES {
        let Some(kv) = store.get(key).await? else {
            return Ok(()); // deleted meanwhile
        };
        let mut v: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| StoreError::Backend(format!("{key}: {e}")))?;
        let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        let Some(annotations) = annotations else {
            return Ok(());
        };
        if annotations.contains_key(DEFAULTS_CREATED_ANNOTATION) {
            return Ok(());
        }
        annotations.insert(DEFAULTS_CREATED_ANNOTATION.into(), json!("true"));
        match store
            .update(key, to_bytes(&v)?, Some(kv.mod_revision))
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Backend(format!(
        "{key} kept changing while its defaults were recorded"
    )))
}

fn to_bytes(v: &Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(e.to_string()))
}
