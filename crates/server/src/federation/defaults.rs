//! Creating the default roles ([`portcullis_federation::defaults`]): once for each workspace
//! and project, once for the global ones, and again only by an explicit reset, which
//! overwrites. That they were created is recorded in the store beside the served objects (by
//! the object's uid, under [`MARKERS`]; the global ones under [`GLOBAL_MARKER`]), so the user's
//! object is not rewritten (its resourceVersion stays what its create answered) and a
//! workspace deleted and made again gets fresh defaults. A workspace or project annotated
//! [`DEFAULTS_CREATED_ANNOTATION`] by its author gets none.

use std::collections::HashSet;

use portcullis_federation::defaults as planned;
use portcullis_model::{GROUP, Resource};
use portcullis_store::{ListOptions, Store, StoreError};
use serde_json::{Value, json};

/// Annotation by which a Workspace or Project opts out of default roles (any value).
pub const DEFAULTS_CREATED_ANNOTATION: &str = "portcullis.dev/defaults-created";

/// Store prefix of the records of created defaults, one key per workspace or project uid
/// (outside the served objects: nothing in the API shows or changes them).
const MARKERS: &str = "/federation/defaults-created/";

/// Store key recording that the global defaults were created.
const GLOBAL_MARKER: &str = "/federation/global-defaults-created";

/// Attempts of a read-modify-write that races with other writers.
const RETRIES: usize = 5;

/// The record key of a workspace or project: by uid (by kind, namespace and name for an
/// object without one).
fn marker(r: &Resource) -> Option<String> {
    let meta = match r {
        Resource::Workspace(w) => &w.metadata,
        Resource::Project(p) => &p.metadata,
        _ => return None,
    };
    let id = match &meta.uid {
        Some(uid) if !uid.is_empty() => uid.clone(),
        _ => format!("{}.{}.{}", r.kind_info().kind, r.namespace(), r.name()),
    };
    Some(format!("{MARKERS}{id}"))
}

/// Whether `r` is a workspace or project that may want defaults (not opted out).
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

/// What the controller knows was done, so that an update of a workspace does not read the
/// store again.
#[derive(Default)]
pub struct Done {
    markers: HashSet<String>,
}

/// Creates the defaults of the workspace or project `r` unless they were created before, then
/// records it. Failures are logged; the next change of `r` (or start) tries again.
pub async fn ensure(store: &dyn Store, done: &mut Done, r: &Resource) {
    if !wanted(r) {
        return;
    }
    let Some(key) = marker(r) else { return };
    if done.markers.contains(&key) {
        return;
    }
    let result = async {
        if store.get(&key).await?.is_none() {
            write_all(store, &of(r), false).await?;
            match store.create(&key, b"true".to_vec()).await {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            done.markers.insert(key);
        }
        Err(e) => tracing::warn!(record = %key, error = %e, "creating default roles failed"),
    }
}

/// Forgets the record of a deleted workspace or project (its defaults are ordinary objects
/// and stay).
pub async fn forget(store: &dyn Store, done: &mut Done, r: &Resource) {
    let Some(key) = marker(r) else { return };
    done.markers.remove(&key);
    match store.delete(&key, None).await {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => tracing::warn!(record = %key, error = %e, "forgetting default roles failed"),
    }
}

/// Drops the records of workspaces and projects no longer in `live` (deleted while no
/// controller watched).
pub async fn collect_garbage(store: &dyn Store, done: &mut Done, live: &[Resource]) {
    let keep: HashSet<String> = live.iter().filter_map(marker).collect();
    done.markers.retain(|k| keep.contains(k));
    let page = match store.list(MARKERS, ListOptions::default()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "listing the records of default roles failed");
            return;
        }
    };
    for kv in page.items {
        if !keep.contains(&kv.key) {
            let _ = store.delete(&kv.key, Some(kv.mod_revision)).await;
        }
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

fn to_bytes(v: &Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(e.to_string()))
}
