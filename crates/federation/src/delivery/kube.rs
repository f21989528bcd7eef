//! The Kubernetes sink: one cluster's API, as portcullis uses it.
//!
//! Rules, each for a failure KubeFed's users reported (`USER-ASKS.md` 20):
//!
//! - Writes are server-side apply (`PATCH`, `application/apply-patch+yaml`,
//!   `fieldManager=portcullis`) of the planned object only — the fields portcullis owns — and
//!   are **never forced**: a field that another *applier* owns is a conflict, reported.
//! - Before creating, a GET: an object that exists without
//!   [`MANAGED_BY_LABEL`] is not portcullis's, whatever its
//!   name; it is reported ("pre-existing object") and never changed or deleted. A project
//!   namespace that exists without the label is used as it is and never deleted.
//! - A manual edit of an object that carries the label (`kubectl edit`, `patch`, `replace`: the
//!   API server records them as `Update` operations, which take the edited fields from the
//!   applier) makes the next apply conflict; that is drift, not a dispute between appliers: the
//!   owned fields are restored with an ordinary merge patch (with a resourceVersion
//!   precondition), then applied again.
//! - Deletion is for objects that carry the label, with a resourceVersion precondition, so that
//!   an object changed since it was observed (say, its label removed) is not deleted blindly.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube_client::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions, WatchEvent,
    WatchParams,
};
use kube_client::core::ApiResource;
use kube_client::{Client, Config};
use serde_json::{Map, Value, json};

use crate::objects::{MANAGED_BY, MANAGED_BY_LABEL, ObjectKey, ObjectKind, Planned};

use super::compare::Observed;
use super::{DeliveryError, FIELD_MANAGER, install_crypto_provider};

/// The kinds portcullis delivers, in apply order (namespaces first; roles before bindings).
pub const KINDS: [ObjectKind; 5] = [
    ObjectKind::Namespace,
    ObjectKind::ClusterRole,
    ObjectKind::ClusterRoleBinding,
    ObjectKind::Role,
    ObjectKind::RoleBinding,
];

/// The label selector of every object portcullis manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

fn api_resource(kind: ObjectKind) -> ApiResource {
    let (group, version) = match kind {
        ObjectKind::Namespace => ("", "v1"),
        _ => ("rbac.authorization.k8s.io", "v1"),
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: kind.api_version().into(),
        kind: kind.as_str().into(),
        plural: kind.plural().into(),
    }
}

/// A kube client configuration from a kubeconfig (YAML), using `context` or the current one.
pub async fn config_from_kubeconfig(
    yaml: &str,
    context: Option<&str>,
) -> Result<Config, DeliveryError> {
    let kubeconfig = kube_client::config::Kubeconfig::from_yaml(yaml)
        .map_err(|e| DeliveryError::Kubeconfig(e.to_string()))?;
    let options = kube_client::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| DeliveryError::Kubeconfig(e.to_string()))
}

/// What applying one planned object did.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyOutcome {
    /// The object now holds the planned fields.
    Applied {
        /// Its resourceVersion after the write.
        resource_version: String,
        /// Whether a manual edit had to be reverted first (see the module docs).
        reverted_edit: bool,
    },
    /// Left alone, with why: a pre-existing object without the managed-by label, or an apply
    /// conflict with another field manager.
    Conflict(String),
}

/// What [`KubeCluster::cleanup`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Objects deleted.
    pub deleted: Vec<ObjectKey>,
}

/// One cluster's API.
#[derive(Clone)]
pub struct KubeCluster {
    name: String,
    client: Client,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("name", &self.name)
            .finish()
    }
}

/// One event of a watch, as the reconciler's cache takes it.
#[derive(Debug)]
pub(crate) enum Seen {
    /// Added or modified.
    Upsert(Observed),
    /// Deleted.
    Deleted(Observed),
    /// A bookmark or anything else that only moves the resourceVersion.
    Progress(String),
    /// The resourceVersion is too old (410): list again.
    Expired,
}

impl KubeCluster {
    /// A client for cluster `name` with `config` (rustls with aws-lc-rs).
    pub fn new(name: &str, config: Config) -> Result<KubeCluster, DeliveryError> {
        install_crypto_provider();
        let client = Client::try_from(config).map_err(|e| DeliveryError::Cluster {
            cluster: name.to_owned(),
            message: format!("building a client: {e}"),
        })?;
        Ok(KubeCluster {
            name: name.to_owned(),
            client,
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kube client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> DeliveryError {
        DeliveryError::Cluster {
            cluster: self.name.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// A kube error: a 4xx answer about one object (other than 408 and 429) is
    /// [`DeliveryError::Rejected`]; anything else says the cluster cannot be worked with now.
    fn kube_err(&self, what: &str, e: kube_client::Error) -> DeliveryError {
        match &e {
            kube_client::Error::Api(s)
                if (400..500).contains(&s.code) && s.code != 408 && s.code != 429 =>
            {
                DeliveryError::Rejected {
                    cluster: self.name.clone(),
                    message: format!("{what}: {} ({})", s.message, s.code),
                }
            }
            _ => self.err(what, e),
        }
    }

    fn api(&self, kind: ObjectKind, namespace: &str) -> Api<DynamicObject> {
        let ar = api_resource(kind);
        if namespace.is_empty() {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        }
    }

    /// Every object of `kind` that carries the managed-by label, and the list's
    /// resourceVersion (to watch from).
    pub(crate) async fn list_managed(
        &self,
        kind: ObjectKind,
    ) -> Result<(Vec<Observed>, String), DeliveryError> {
        let api = self.api(kind, "");
        let mut out = Vec::new();
        let mut lp = ListParams::default().labels(&managed_selector()).limit(500);
        loop {
            let list = api
                .list(&lp)
                .await
                .map_err(|e| self.err(&format!("listing {}", kind.plural()), e))?;
            let rv = list.metadata.resource_version.clone().unwrap_or_default();
            for item in &list.items {
                let v = serde_json::to_value(item).unwrap_or(Value::Null);
                if let Some(o) = Observed::from_json(kind, &v)
                    && o.is_managed()
                {
                    out.push(o);
                }
            }
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp.continue_token = Some(c),
                None => return Ok((out, rv)),
            }
        }
    }

    /// The object with `key`, if any (raw JSON).
    async fn get_raw(&self, key: &ObjectKey) -> Result<Option<Value>, DeliveryError> {
        let got = self
            .api(key.kind, &key.namespace)
            .get_opt(&key.name)
            .await
            .map_err(|e| self.err(&format!("reading {key}"), e))?;
        Ok(got.map(|o| serde_json::to_value(&o).unwrap_or(Value::Null)))
    }

    /// The object with `key`, if any.
    pub(crate) async fn get(&self, key: &ObjectKey) -> Result<Option<Observed>, DeliveryError> {
        Ok(self
            .get_raw(key)
            .await?
            .and_then(|v| Observed::from_json(key.kind, &v)))
    }

    /// Applies `planned` (server-side apply, not forced) to an object known to be absent or
    /// portcullis's own. A conflict with a manual edit (an `Update` field manager, or
    /// portcullis's own earlier repair) is repaired; one with another applier is reported.
    pub async fn apply(&self, planned: &Planned) -> Result<ApplyOutcome, DeliveryError> {
        Ok(self.apply_observed(planned).await?.0)
    }

    /// [`KubeCluster::apply`], and the object as it is after the write.
    pub(crate) async fn apply_observed(
        &self,
        planned: &Planned,
    ) -> Result<(ApplyOutcome, Option<Observed>), DeliveryError> {
        let key = &planned.key;
        let observed = |o: &DynamicObject| {
            Observed::from_json(key.kind, &serde_json::to_value(o).unwrap_or(Value::Null))
        };
        let body = planned.object.to_json();
        let api = self.api(key.kind, &key.namespace);
        let params = PatchParams::apply(FIELD_MANAGER);
        match api.patch(&key.name, &params, &Patch::Apply(&body)).await {
            Ok(o) => Ok((
                ApplyOutcome::Applied {
                    resource_version: o.metadata.resource_version.clone().unwrap_or_default(),
                    reverted_edit: false,
                },
                observed(&o),
            )),
            Err(kube_client::Error::Api(status)) if status.code == 409 => {
                let managers = conflicting_managers(&status);
                let Some(live) = self.get_raw(key).await? else {
                    // Deleted in between: the next pass creates it.
                    return Err(self.err(&format!("applying {key}"), "deleted while applying"));
                };
                let live_obs = Observed::from_json(key.kind, &live);
                if !live_obs.as_ref().is_some_and(Observed::is_managed) {
                    return Ok((
                        ApplyOutcome::Conflict(format!(
                            "pre-existing object without the label {MANAGED_BY_LABEL}={MANAGED_BY}: left alone"
                        )),
                        None,
                    ));
                }
                if managers.is_empty() || !managers.iter().all(|m| manual_edit(&live, m)) {
                    return Ok((
                        ApplyOutcome::Conflict(format!(
                            "server-side apply conflict (not forced): {}",
                            status.message
                        )),
                        live_obs,
                    ));
                }
                // A manual edit: restore the owned fields, then apply again.
                let rv = live_obs.map(|o| o.resource_version).unwrap_or_default();
                let patch = restore_patch(&body, &rv);
                let pp = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                };
                api.patch(&key.name, &pp, &Patch::Merge(&patch))
                    .await
                    .map_err(|e| self.kube_err(&format!("reverting a manual edit of {key}"), e))?;
                match api.patch(&key.name, &params, &Patch::Apply(&body)).await {
                    Ok(o) => Ok((
                        ApplyOutcome::Applied {
                            resource_version: o
                                .metadata
                                .resource_version
                                .clone()
                                .unwrap_or_default(),
                            reverted_edit: true,
                        },
                        observed(&o),
                    )),
                    Err(kube_client::Error::Api(status)) if status.code == 409 => Ok((
                        ApplyOutcome::Conflict(format!(
                            "server-side apply conflict (not forced): {}",
                            status.message
                        )),
                        None,
                    )),
                    Err(e) => Err(self.kube_err(&format!("applying {key}"), e)),
                }
            }
            Err(e) => Err(self.kube_err(&format!("applying {key}"), e)),
        }
    }

    /// Deletes the object `key` if its resourceVersion is still `resource_version` (an object
    /// changed since it was observed is looked at again first). Gone already is success.
    pub(crate) async fn delete(
        &self,
        key: &ObjectKey,
        resource_version: &str,
    ) -> Result<(), DeliveryError> {
        let dp = DeleteParams {
            preconditions: (!resource_version.is_empty()).then(|| Preconditions {
                resource_version: Some(resource_version.to_owned()),
                uid: None,
            }),
            ..DeleteParams::background()
        };
        match self
            .api(key.kind, &key.namespace)
            .delete(&key.name, &dp)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube_client::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.kube_err(&format!("deleting {key}"), e)),
        }
    }

    /// A watch of `kind`'s managed objects from `resource_version`, for at most `timeout`.
    pub(crate) async fn watch(
        &self,
        kind: ObjectKind,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<impl Stream<Item = Result<Seen, DeliveryError>> + use<>, DeliveryError> {
        let secs = u32::try_from(timeout.as_secs()).unwrap_or(290).max(1);
        let wp = WatchParams::default()
            .labels(&managed_selector())
            .timeout(secs);
        let name = self.name.clone();
        let stream = self
            .api(kind, "")
            .watch(&wp, resource_version)
            .await
            .map_err(|e| self.err(&format!("watching {}", kind.plural()), e))?;
        Ok(stream.map(move |ev| {
            let ev = ev.map_err(|e| DeliveryError::Cluster {
                cluster: name.clone(),
                message: format!("watching {}: {e}", kind.plural()),
            })?;
            let observed = |o: &DynamicObject| {
                Observed::from_json(kind, &serde_json::to_value(o).unwrap_or(Value::Null))
            };
            Ok(match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => match observed(&o) {
                    Some(obs) if obs.is_managed() => Seen::Upsert(obs),
                    Some(obs) => Seen::Deleted(obs),
                    None => Seen::Progress(String::new()),
                },
                WatchEvent::Deleted(o) => match observed(&o) {
                    Some(obs) => Seen::Deleted(obs),
                    None => Seen::Progress(String::new()),
                },
                WatchEvent::Bookmark(b) => Seen::Progress(b.metadata.resource_version),
                WatchEvent::Error(s) if s.code == 410 => Seen::Expired,
                WatchEvent::Error(s) => {
                    return Err(DeliveryError::Cluster {
                        cluster: name.clone(),
                        message: format!("watching {}: {}", kind.plural(), s.message),
                    });
                }
            })
        }))
    }

    /// Deletes every object that carries the managed-by label (paused ones too: cleanup is
    /// asked for explicitly), RBAC objects first, namespaces (only those portcullis created)
    /// last. Objects without the label are not touched.
    pub async fn cleanup(&self) -> Result<CleanupReport, DeliveryError> {
        let mut report = CleanupReport::default();
        for kind in KINDS.iter().rev() {
            let (objects, _) = self.list_managed(*kind).await?;
            for o in objects {
                if o.deleting {
                    continue;
                }
                self.delete(&o.key, &o.resource_version).await?;
                report.deleted.push(o.key);
            }
        }
        Ok(report)
    }
}

/// The field managers named in an apply conflict's causes (`conflict with "kubectl-edit" using
/// rbac.authorization.k8s.io/v1`), each once.
fn conflicting_managers(status: &kube_client::core::Status) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut take = |text: &str| {
        for part in text.split("conflict with \"").skip(1) {
            if let Some(end) = part.find('"')
                && let Some(m) = part.get(..end)
                && !out.iter().any(|o| o == m)
            {
                out.push(m.to_owned());
            }
        }
    };
    if let Some(details) = &status.details {
        for cause in &details.causes {
            take(&cause.message);
        }
    }
    take(&status.message);
    out
}

/// Whether `manager`'s entries in the live object's managedFields are all `Update` operations
/// (a manual edit), or are portcullis's own (its earlier repairs).
fn manual_edit(live: &Value, manager: &str) -> bool {
    if manager == FIELD_MANAGER {
        return true;
    }
    let entries: Vec<&Value> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|e| e.get("manager").and_then(Value::as_str) == Some(manager))
                .collect()
        })
        .unwrap_or_default();
    !entries.is_empty()
        && entries
            .iter()
            .all(|e| e.get("operation").and_then(Value::as_str) == Some("Update"))
}

/// A JSON merge patch that sets the planned object's labels, annotations and top-level fields,
/// on the condition that the object is still at `resource_version`.
fn restore_patch(desired: &Value, resource_version: &str) -> Value {
    let mut patch = Map::new();
    let meta = desired.get("metadata");
    patch.insert(
        "metadata".into(),
        json!({
            "resourceVersion": resource_version,
            "labels": meta.and_then(|m| m.get("labels")).cloned().unwrap_or(json!({})),
            "annotations": meta.and_then(|m| m.get("annotations")).cloned().unwrap_or(json!({})),
        }),
    );
    if let Some(d) = desired.as_object() {
        for (k, v) in d {
            if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                patch.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_managers_are_read_from_causes_and_message() {
        let status: kube_client::core::Status = serde_json::from_value(json!({
            "code": 409, "reason": "Conflict",
            "message": "Apply failed with 2 conflicts: conflict with \"kubectl-edit\" using rbac.authorization.k8s.io/v1: .rules\nconflict with \"argo\": .subjects",
            "details": {"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-edit\" using rbac.authorization.k8s.io/v1", "field": ".rules"}]}
        }))
        .unwrap();
        assert_eq!(conflicting_managers(&status), vec!["kubectl-edit", "argo"]);
        let live = json!({"metadata": {"managedFields": [
            {"manager": "kubectl-edit", "operation": "Update"},
            {"manager": "argo", "operation": "Apply"}]}});
        assert!(manual_edit(&live, "kubectl-edit"));
        assert!(!manual_edit(&live, "argo"));
        assert!(!manual_edit(&live, "nobody"));
    }
}
