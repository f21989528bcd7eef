//! Create, read, update, patch, delete, list and watch of stored objects, with the
//! semantics of kube-apiserver's generic registry.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use portcullis_store::{KeyValue, ListOptions, Revision, StoreError, WatchEvent};
use serde_json::{Map, Value, json};

use super::body::{self, WRITE_TYPES};
use super::registry::{AdmitRequest, DecodeFailure, Operation, ResourceType};
use super::status::{self, ApiError, Cause};
use super::{AppState, Query, selector};
use portcullis_authn::UserInfo;

/// Most attempts of a patch whose read-modify-write raced with another writer.
const PATCH_RETRIES: usize = 5;

/// Which object or collection a request addresses.
pub struct Target<'a> {
    /// The resource type.
    pub rt: &'a ResourceType,
    /// Namespace from the path (empty: cluster-scoped or all namespaces).
    pub namespace: String,
    /// Object name (empty for collections).
    pub name: String,
    /// Subresource (`status`) or empty.
    pub subresource: String,
    /// Who asks (for admission checks such as RBAC escalation prevention).
    pub user: &'a UserInfo,
}

impl Target<'_> {
    fn key(&self) -> String {
        self.rt.key(&self.namespace, &self.name)
    }

    fn store_error(&self, e: StoreError) -> ApiError {
        ApiError::from_store(e, &self.rt.group, &self.rt.plural, &self.name)
    }
}

/// The stored object a request addresses, or 404.
async fn current(app: &AppState, t: &Target<'_>) -> Result<KeyValue, ApiError> {
    app.store
        .get(&t.key())
        .await
        .map_err(|e| t.store_error(e))?
        .ok_or_else(|| t.store_error(StoreError::NotFound(t.key())))
}

// === reads ===

/// GET of one object.
pub async fn get(app: &AppState, t: &Target<'_>) -> Result<Response, ApiError> {
    let kv = current(app, t).await?;
    Ok(json_response(StatusCode::OK, &stored_object(&kv)?))
}

/// GET of a collection: a `...List`, or a `Table` when the client asks for one (kubectl get).
pub async fn list(
    app: &AppState,
    t: &Target<'_>,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let filter = selector::Filter::from_query(q)?;
    let predicate = |kv: &KeyValue| filter.matches_kv(kv);
    let limit = match q.get("limit") {
        Some(l) => Some(l.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("limit: {l:?} is not a non-negative integer"))
        })?),
        None => None,
    };
    let page = app
        .store
        .list(
            &t.rt.prefix(&t.namespace),
            ListOptions {
                limit,
                continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
                filter: Some(&predicate),
            },
        )
        .await
        .map_err(|e| t.store_error(e))?;
    let items = page
        .items
        .iter()
        .map(stored_object)
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata = json!({ "resourceVersion": page.revision.to_string() });
    if let (Some(c), Some(m)) = (&page.continue_token, metadata.as_object_mut()) {
        m.insert("continue".into(), json!(c));
    }
    if wants_table(headers) {
        return Ok(json_response(
            StatusCode::OK,
            &super::table::table(&items, metadata),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": t.rt.api_version(),
            "kind": format!("{}List", t.rt.kind),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

/// `?watch=true`: newline-delimited JSON watch events (`{"type","object"}`), as kube-apiserver
/// streams them. Without `resourceVersion` (or with "0") the current objects come first as
/// `ADDED`, then the changes after them.
pub async fn watch(app: &AppState, t: &Target<'_>, q: &Query) -> Result<Response, ApiError> {
    let filter = selector::Filter::from_query(q)?;
    let prefix = t.rt.prefix(&t.namespace);
    let mut initial = Vec::new();
    let from: Revision = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => {
            let page = app
                .store
                .list(&prefix, ListOptions::default())
                .await
                .map_err(|e| t.store_error(e))?;
            for kv in page.items.iter().filter(|kv| filter.matches_kv(kv)) {
                initial.push(event_line("ADDED", &stored_object(kv)?));
            }
            page.revision
        }
        Some(rv) => rv.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: {rv:?} is not a valid resource version"
            ))
        })?,
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    let events: futures::stream::BoxStream<'static, bytes::Bytes> =
        match app.store.watch(&prefix, from).await {
            Ok(stream) => stream
                .filter_map(move |ev| {
                    let line = match ev {
                        Ok(ev) => watch_event_line(&ev, &filter),
                        Err(e) => Some(error_line(&ApiError::from_store(e, "", "", ""))),
                    };
                    futures::future::ready(line)
                })
                .boxed(),
            // A too-old resourceVersion is reported inside the stream, as the apiserver does.
            Err(e @ StoreError::Compacted { .. }) => {
                futures::stream::iter([error_line(&t.store_error(e))]).boxed()
            }
            Err(e) => return Err(t.store_error(e)),
        };
    // `timeoutSeconds` bounds the whole watch, as the apiserver's; shutdown ends it too.
    let deadline = match timeout {
        Some(d) => futures::FutureExt::boxed(tokio::time::sleep(d)),
        None => futures::FutureExt::boxed(futures::future::pending::<()>()),
    };
    let mut stopping = app.stopping.clone();
    let stop = async move {
        tokio::select! {
            _ = deadline => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
    };
    let stream = futures::stream::iter(initial)
        .chain(events)
        .take_until(stop);
    let body = Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>));
    Ok((
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

fn watch_event_line(ev: &WatchEvent, filter: &selector::Filter) -> Option<bytes::Bytes> {
    let (kind, kv) = match ev {
        WatchEvent::Added(kv) => ("ADDED", kv),
        WatchEvent::Modified(kv) => ("MODIFIED", kv),
        WatchEvent::Deleted(kv) => ("DELETED", kv),
    };
    if !filter.matches_kv(kv) {
        return None;
    }
    match stored_object(kv) {
        Ok(obj) => Some(event_line(kind, &obj)),
        Err(e) => Some(error_line(&e)),
    }
}

fn event_line(kind: &str, object: &Value) -> bytes::Bytes {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    line.into()
}

fn error_line(e: &ApiError) -> bytes::Bytes {
    event_line("ERROR", &e.to_status())
}

// === writes ===

/// POST to a collection.
pub async fn create(
    app: &AppState,
    t: &Target<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut value = read_object(app, headers, body).await?;
    {
        // Namespace from the URL and a generated name are filled in before validation sees them.
        let meta = metadata_mut(&mut value)?;
        check_namespace(t, meta)?;
        fill_generated_name(t, meta)?;
    }
    // Errors name the object of the body, as the apiserver's do.
    let named = Target {
        rt: t.rt,
        name: value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        namespace: t.namespace.clone(),
        subresource: String::new(),
        user: t.user,
    };
    let t = &named;
    let mut obj = decode(t, &value)?;
    let meta = metadata_mut(&mut obj)?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    stamp_created(meta, t.rt.group == portcullis_model::GROUP);
    // Status is written through the status subresource only.
    if t.rt.has_status
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    // As the RBAC registry: escalation checks before validation. The request names nothing.
    settle(t).await?;
    admit(app, t, Operation::Create, "", None, &obj).await?;
    t.rt.codec.validate(&obj).map_err(|f| failure(t, f))?;
    let target = Target {
        rt: t.rt,
        name: name.clone(),
        namespace: t.namespace.clone(),
        subresource: String::new(),
        user: t.user,
    };
    let kv = app
        .store
        .create(&target.key(), to_bytes(&obj)?)
        .await
        .map_err(|e| target.store_error(e))?;
    target.rt.codec.written(kv.mod_revision);
    Ok(json_response(StatusCode::CREATED, &stored_object(&kv)?))
}

/// PUT of an object (or of its `status`).
pub async fn update(
    app: &AppState,
    t: &Target<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value = read_object(app, headers, body).await?;
    let stored = app
        .store
        .get(&t.key())
        .await
        .map_err(|e| t.store_error(e))?;
    let current = match stored {
        Some(kv) => kv,
        None if t.subresource.is_empty() && t.rt.codec.allow_create_on_update() => {
            return create_on_update(app, t, value).await;
        }
        None => return Err(t.store_error(StoreError::NotFound(t.key()))),
    };
    let expected = match value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
        _ => None,
    };
    write_update(app, t, &current, value, expected).await
}

/// PATCH: JSON merge patch (RFC 7386) or JSON patch (RFC 6902), applied to the stored object
/// and retried on a concurrent write unless the patch pins `metadata.resourceVersion`.
pub async fn patch(
    app: &AppState,
    t: &Target<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    const PATCH_TYPES: &[&str] = &[
        "application/merge-patch+json",
        "application/json-patch+json",
    ];
    let media = body::media_type(headers);
    if !PATCH_TYPES.contains(&media.as_str()) {
        return Err(ApiError::unsupported_media(&media, PATCH_TYPES));
    }
    let bytes = body::read_bounded(headers, body, app.limits.max_body_bytes).await?;
    let patch_doc = body::parse_object(&bytes, "application/json", app.limits.max_json_depth)?;
    for _ in 0..PATCH_RETRIES {
        let current = current(app, t).await?;
        let mut doc = stored_object(&current)?;
        if media == "application/merge-patch+json" {
            json_patch::merge(&mut doc, &patch_doc);
        } else {
            let ops: json_patch::Patch = serde_json::from_value(patch_doc.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("the JSON patch could not be applied: {e}"),
                )
            })?;
        }
        let pinned = doc
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(parse_rv)
            .transpose()?;
        let expected = pinned.unwrap_or(current.mod_revision);
        match write_update(app, t, &current, doc, Some(expected)).await {
            Err(e) if e.reason == "Conflict" && pinned.is_none() => continue,
            other => return other,
        }
    }
    Err(t.store_error(StoreError::Conflict {
        key: t.key(),
        expected: 0,
        actual: 0,
    }))
}

async fn write_update(
    app: &AppState,
    t: &Target<'_>,
    current: &KeyValue,
    value: Value,
    expected: Option<Revision>,
) -> Result<Response, ApiError> {
    let old = stored_object(current)?;
    let mut value = value;
    check_namespace(t, metadata_mut(&mut value)?)?;
    let mut new = decode(t, &value)?;
    // Admission sees the object as sent (GC-only changes are judged against it).
    let sent = new.clone();
    let meta = metadata_mut(&mut new)?;
    let body_name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if body_name != t.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    // Server-owned metadata is carried over from the stored object.
    for owned in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
    ] {
        match old.pointer(&format!("/metadata/{owned}")) {
            Some(v) => {
                meta.insert(owned.into(), v.clone());
            }
            None => {
                meta.remove(owned);
            }
        }
    }
    meta.remove("resourceVersion");
    let status_only = t.subresource == "status";
    if let (Some(n), Some(o)) = (new.as_object_mut(), old.as_object()) {
        if status_only {
            // PUT /status changes status only: everything else stays as stored.
            let status = n.remove("status");
            let mut merged = o.clone();
            merged.remove("status");
            if let Some(s) = status {
                merged.insert("status".into(), s);
            }
            if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            *n = merged;
        } else if t.rt.has_status {
            n.remove("status");
            if let Some(s) = o.get("status") {
                n.insert("status".into(), s.clone());
            }
        }
        // generation counts changes of everything but metadata and status, in the kinds that
        // count them (see [`stamp_created`]).
        let counted = t.rt.group == portcullis_model::GROUP;
        let changed =
            ["metadata", "status"]
                .iter()
                .fold((n.clone(), o.clone()), |(mut a, mut b), k| {
                    a.remove(*k);
                    b.remove(*k);
                    (a, b)
                });
        if counted && changed.0 != changed.1 {
            let g = o
                .get("metadata")
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if let Some(m) = n.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("generation".into(), json!(g + 1));
            }
        }
    }
    // As the RBAC registry: escalation checks come before validation.
    settle(t).await?;
    admit(app, t, Operation::Update, &t.name, Some(&old), &sent).await?;
    t.rt.codec.validate(&new).map_err(|f| failure(t, f))?;
    // Immutable fields are checked once server-owned metadata is carried over.
    t.rt.codec
        .validate_update(&old, &new)
        .map_err(|f| failure(t, f))?;
    // An object being deleted goes once its last finalizer is removed.
    let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
    let finalizers_left = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if deleting && !finalizers_left {
        let expected = expected.unwrap_or(current.mod_revision);
        let kv = app
            .store
            .delete(&t.key(), Some(expected))
            .await
            .map_err(|e| t.store_error(e))?;
        t.rt.codec.written(kv.mod_revision);
        return Ok(json_response(StatusCode::OK, &stored_object(&kv)?));
    }
    let kv = app
        .store
        .update(&t.key(), to_bytes(&new)?, expected)
        .await
        .map_err(|e| t.store_error(e))?;
    t.rt.codec.written(kv.mod_revision);
    Ok(json_response(StatusCode::OK, &stored_object(&kv)?))
}

/// PUT to a missing object of a kind that allows it (RBAC): a create, in kube-apiserver's
/// order: the escalation checks (the request names the object), validation, then the `create`
/// verb, whose denial carries the authorizer's (empty) reason.
async fn create_on_update(
    app: &AppState,
    t: &Target<'_>,
    value: Value,
) -> Result<Response, ApiError> {
    let mut value = value;
    check_namespace(t, metadata_mut(&mut value)?)?;
    let mut obj = decode(t, &value)?;
    let meta = metadata_mut(&mut obj)?;
    let body_name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if body_name != t.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    stamp_created(meta, t.rt.group == portcullis_model::GROUP);
    settle(t).await?;
    admit(app, t, Operation::Create, &t.name, None, &obj).await?;
    t.rt.codec.validate(&obj).map_err(|f| failure(t, f))?;
    let create = portcullis_rbac::Attributes {
        user: t.user.name.clone(),
        groups: t.user.groups.clone(),
        extra: t.user.extra.clone(),
        verb: "create".into(),
        resource_request: true,
        api_group: t.rt.group.clone(),
        resource: t.rt.plural.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        ..portcullis_rbac::Attributes::default()
    };
    let decision = portcullis_authn::Authorize::authorize(&*app.authz, &create);
    if !decision.allowed {
        return Err(ApiError::forbidden(format!(
            "{} {} is forbidden: {}",
            status::qualified(&t.rt.plural, &t.rt.group),
            portcullis_rbac::escalation::go_quote(&t.name),
            decision.reason
        ))
        .with_details(&t.rt.group, &t.rt.plural, &t.name));
    }
    let kv = app
        .store
        .create(&t.key(), to_bytes(&obj)?)
        .await
        .map_err(|e| t.store_error(e))?;
    t.rt.codec.written(kv.mod_revision);
    Ok(json_response(StatusCode::CREATED, &stored_object(&kv)?))
}

/// Asks the kind's admission about a write of `new` (for a delete, the stored object) to `t`:
/// `request_name` is the name in the URL (empty for a POST), `old` the stored object.
async fn admit(
    app: &AppState,
    t: &Target<'_>,
    operation: Operation,
    request_name: &str,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let request = AdmitRequest {
        operation,
        user: t.user,
        store: &*app.store,
        namespace: &t.namespace,
        request_name,
        old,
    };
    t.rt.codec
        .admit(&request, new)
        .await
        .map_err(|f| failure(t, f))
}

/// Stamps the metadata of an object about to be created, as the registry does: a new uid, the
/// creation time, `generation` 1 for kinds that count their changes (portcullis' own kinds;
/// kube-apiserver's RBAC objects have none); what only the server sets is dropped. Every
/// object the management plane creates, through the API or at bootstrap, is stamped here.
pub fn stamp_created(meta: &mut serde_json::Map<String, Value>, generation: bool) {
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    for server_owned in ["resourceVersion", "deletionTimestamp", "selfLink"] {
        meta.remove(server_owned);
    }
}

/// Waits, if the kind's admission needs it, until what admission reads includes earlier writes.
async fn settle(t: &Target<'_>) -> Result<(), ApiError> {
    match t.rt.codec.settle() {
        Some(wait) => wait.await,
        None => Ok(()),
    }
}

/// DELETE of one object, honouring `DeleteOptions.preconditions` and finalizers.
pub async fn delete(
    app: &AppState,
    t: &Target<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read_bounded(headers, body, app.limits.max_body_bytes).await?;
    let options = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        body::parse_object(&bytes, "application/json", app.limits.max_json_depth)?
    };
    let current = current(app, t).await?;
    let obj = stored_object(&current)?;
    admit(app, t, Operation::Delete, &t.name, Some(&obj), &obj).await?;
    let mut expected = current.mod_revision;
    if let Some(rv) = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
    {
        let rv = parse_rv(rv)?;
        if rv != current.mod_revision {
            return Err(t.store_error(StoreError::Conflict {
                key: t.key(),
                expected: rv,
                actual: current.mod_revision,
            }));
        }
        expected = rv;
    }
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        && obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                obj.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
        ));
    }
    let has_finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        // Graceful deletion: mark it; whoever owns the finalizers removes them.
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(json_response(StatusCode::ACCEPTED, &obj));
        }
        let mut marked = obj.clone();
        if let Some(m) = marked.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            m.remove("resourceVersion");
        }
        let kv = app
            .store
            .update(&t.key(), to_bytes(&marked)?, Some(expected))
            .await
            .map_err(|e| t.store_error(e))?;
        t.rt.codec.written(kv.mod_revision);
        return Ok(json_response(StatusCode::ACCEPTED, &stored_object(&kv)?));
    }
    let gone = app
        .store
        .delete(&t.key(), Some(expected))
        .await
        .map_err(|e| t.store_error(e))?;
    t.rt.codec.written(gone.mod_revision);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": t.name,
                "group": t.rt.group,
                "kind": t.rt.plural,
                "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            },
        }),
    ))
}

// === helpers ===

async fn read_object(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let media = body::media_type(headers);
    if !media.is_empty() && !WRITE_TYPES.contains(&media.as_str()) {
        return Err(ApiError::unsupported_media(&media, WRITE_TYPES));
    }
    let bytes = body::read_bounded(headers, body, app.limits.max_body_bytes).await?;
    body::parse_object(&bytes, &media, app.limits.max_json_depth)
}

fn decode(t: &Target<'_>, value: &Value) -> Result<Value, ApiError> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version != t.rt.api_version() || kind != t.rt.kind {
        return Err(ApiError::bad_request(format!(
            "the body is {kind:?} of {api_version:?}, but the URL is for {} of {:?}",
            t.rt.kind,
            t.rt.api_version()
        )));
    }
    t.rt.codec.decode(value).map_err(|f| failure(t, f))
}

fn failure(t: &Target<'_>, f: DecodeFailure) -> ApiError {
    match f {
        DecodeFailure::BadRequest(message, causes) => ApiError::bad_request(message)
            .with_details(&t.rt.group, &t.rt.plural, &t.name)
            .with_causes(causes),
        DecodeFailure::Invalid(causes) => invalid(t, &t.name, causes),
        DecodeFailure::Forbidden(message) => ApiError::forbidden(format!(
            "{} {} is forbidden: {message}",
            status::qualified(&t.rt.plural, &t.rt.group),
            portcullis_rbac::escalation::go_quote(&t.name)
        ))
        .with_details(&t.rt.group, &t.rt.plural, &t.name),
        DecodeFailure::Status(e) => e,
    }
}

fn invalid(t: &Target<'_>, name: &str, causes: Vec<Cause>) -> ApiError {
    let list = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect::<Vec<_>>();
    let joined = match list.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{}.{} {name:?} is invalid: {joined}", t.rt.kind, t.rt.group),
    )
    .with_details(&t.rt.group, &t.rt.kind, name)
    .with_causes(causes)
}

/// `metadata.generateName`: the name is the prefix and a random suffix, as the apiserver
/// makes it.
fn fill_generated_name(t: &Target<'_>, meta: &mut Map<String, Value>) -> Result<(), ApiError> {
    if meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Ok(());
    }
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if generate.is_empty() {
        return Err(invalid(
            t,
            "",
            vec![required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    let name = format!("{generate}{}", random_suffix());
    meta.insert("name".into(), json!(name));
    Ok(())
}

fn required(field: &str, message: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        message: format!("Required value: {message}"),
        field: field.into(),
    }
}

fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let o = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    o.entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

fn check_namespace(t: &Target<'_>, meta: &mut Map<String, Value>) -> Result<(), ApiError> {
    let body_ns = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !t.rt.namespaced {
        if !body_ns.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{} is cluster-scoped: metadata.namespace must be empty, got {body_ns:?}",
                t.rt.kind
            )));
        }
        return Ok(());
    }
    if t.namespace.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} is namespaced: write it under /apis/{}/namespaces/NAMESPACE/{}",
            t.rt.kind,
            t.rt.api_version(),
            t.rt.plural
        )));
    }
    if body_ns.is_empty() {
        meta.insert("namespace".into(), json!(t.namespace));
    } else if body_ns != t.namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// The object as served: the stored JSON with `metadata.resourceVersion` = its revision.
pub fn stored_object(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} does not parse: {e}", kv.key)))?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    Ok(v)
}

/// Labels of a stored object, for selectors.
pub fn labels_of(kv: &KeyValue) -> BTreeMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default)]
        name: String,
        #[serde(default)]
        namespace: String,
    }
    #[derive(serde::Deserialize)]
    struct Obj {
        metadata: Meta,
    }
    serde_json::from_slice::<Obj>(&kv.value)
        .map(|o| {
            let mut l = o.metadata.labels;
            // Field selectors read these through the same map, under reserved keys.
            l.insert(selector::NAME_FIELD.into(), o.metadata.name);
            l.insert(selector::NAMESPACE_FIELD.into(), o.metadata.namespace);
            l
        })
        .unwrap_or_default()
}

fn to_bytes(v: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v).map_err(ApiError::internal)
}

fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "metadata.resourceVersion: {rv:?} is not a valid resource version"
        ))
    })
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, axum::Json(v)).into_response()
}

/// RFC 3339 UTC time with second precision, as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn random_suffix() -> String {
    // As generateName: five characters from an alphabet without vowels or look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let id = uuid::Uuid::new_v4();
    id.as_bytes()
        .iter()
        .take(5)
        .map(|b| {
            ALPHABET
                .get(usize::from(*b) % ALPHABET.len())
                .copied()
                .unwrap_or(b'x') as char
        })
        .collect()
}
