//! The delivery kinds under `portcullis.dev/v1alpha1`, create-only like the fleet reviews:
//!
//! - `ClusterAttachment` (`portcullis cluster attach`): checks that the cluster answers and
//!   that the credentials may manage what portcullis delivers there (a SelfSubjectRulesReview
//!   on the cluster), then seals the credentials and creates the Cluster in the workspace's
//!   namespace. Needs `create` on clusters in that namespace. The credentials are never
//!   answered back.
//! - `ClusterDetachment` (`portcullis cluster detach`): with `cleanup`, first removes every
//!   object portcullis put on the cluster; then deletes the Cluster and its credentials. Needs
//!   `delete` on the Cluster.
//! - `DeliveryStatusReview` (`portcullis status`, `cluster list`): the status board of every
//!   cluster the requester may `get`.

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_authn::UserInfo;
use portcullis_model::{GROUP, VERSION};
use portcullis_rbac::Attributes;
use portcullis_store::Store;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::credentials::{self, Auth, Credentials};
use super::{Delivery, rfc3339};
use crate::api::registry::{Registry, Review};
use crate::api::status::ApiError;
use crate::federation::reviews::{register_kinds, spec};
use crate::rbac::RbacAuthorizer;

const KINDS: [&str; 4] = [
    "ClusterAttachment",
    "ClusterDetachment",
    "DeliveryStatusReview",
    "DesiredSetReview",
];

/// The user name of a pulling cluster's credential.
fn pull_user(cluster: &str) -> String {
    format!("portcullis:cluster:{cluster}")
}

/// The group that binds a pulling cluster's credential to one attach (its nonce).
fn pull_group(nonce: &str) -> String {
    format!("portcullis:cluster-credential:{nonce}")
}

/// Whether `a` is a create of one of these kinds by an authenticated user: allowed to everyone,
/// as each checks the requester's rights on the Cluster itself.
pub(crate) fn is_checked_by_the_kind(a: &Attributes) -> bool {
    a.resource_request
        && a.verb == "create"
        && a.api_group == GROUP
        && a.subresource.is_empty()
        && KINDS
            .iter()
            .any(|k| a.resource == format!("{}s", k.to_ascii_lowercase()))
        && a.groups
            .iter()
            .any(|g| g == portcullis_authn::SYSTEM_AUTHENTICATED)
}

/// What the kinds share.
#[derive(Clone)]
struct Shared {
    delivery: Arc<Delivery>,
    store: Arc<dyn Store>,
    provider: portcullis_oidc::Provider,
    authorizer: Arc<RbacAuthorizer>,
    /// The management plane's CA, which issues pulling clusters' credentials.
    ca: Arc<crate::pki::CertifiedKey>,
}

/// Adds the kinds to the served registry.
pub(crate) fn register(
    registry: &mut Registry,
    delivery: &Arc<Delivery>,
    store: &Arc<dyn Store>,
    provider: &portcullis_oidc::Provider,
    authorizer: &Arc<RbacAuthorizer>,
    ca: &crate::pki::CertifiedKey,
) {
    let shared = Shared {
        delivery: delivery.clone(),
        store: store.clone(),
        provider: provider.clone(),
        authorizer: authorizer.clone(),
        ca: Arc::new(crate::pki::CertifiedKey {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem.clone(),
        }),
    };
    let reviews: [(&str, Arc<dyn Review>); 4] = [
        (KINDS[0], Arc::new(Attach(shared.clone()))),
        (KINDS[1], Arc::new(Detach(shared.clone()))),
        (KINDS[2], Arc::new(StatusReview(shared.clone()))),
        (KINDS[3], Arc::new(DesiredSet(shared))),
    ];
    register_kinds(registry, reviews);
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(http::StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
}

impl Shared {
    /// The Cluster named `name` (cluster names are unique across workspaces) and its namespace.
    async fn find(
        &self,
        name: &str,
    ) -> Result<Option<(String, portcullis_model::Cluster)>, ApiError> {
        super::find_cluster(&*self.store, name)
            .await
            .map_err(|e| ApiError::from_store(e, GROUP, "clusters", name))
    }

    /// Whether `user` may `verb` clusters (named `name`) in `namespace`.
    fn may(&self, user: &UserInfo, verb: &str, namespace: &str, name: &str) -> bool {
        self.authorizer
            .decide(&Attributes {
                user: user.name.clone(),
                groups: user.groups.clone(),
                verb: verb.into(),
                resource_request: true,
                api_group: GROUP.into(),
                resource: "clusters".into(),
                namespace: namespace.into(),
                name: name.into(),
                ..Attributes::default()
            })
            .allowed
    }

    /// Workspace name → its namespace, and back.
    async fn workspaces(&self) -> Result<BTreeMap<String, String>, ApiError> {
        let prefix = portcullis_store::keys::collection(GROUP, "workspaces", "");
        let page = self
            .store
            .list(&prefix, portcullis_store::ListOptions::default())
            .await
            .map_err(|e| ApiError::from_store(e, GROUP, "workspaces", ""))?;
        Ok(page
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice::<portcullis_model::Workspace>(&kv.value).ok())
            .map(|w| (w.metadata.name.clone(), w.namespace_name().to_owned()))
            .collect())
    }
}

// === ClusterAttachment ===

/// `ClusterAttachment.spec`: the cluster, its workspace and labels, and what the CLI read
/// from the kubeconfig (the server, its CA and one static credential).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AttachSpec {
    cluster_name: String,
    workspace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    server: String,
    #[serde(default)]
    certificate_authority_data: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
    /// Attach even when the cluster is unreachable or the credentials lack permissions.
    #[serde(default)]
    force: bool,
    /// The cluster pulls its desired set (`portcullis agent` with `pull:`): no credential is
    /// sent or checked; a client certificate for the agent is issued and answered once.
    #[serde(default)]
    pull: bool,
}

struct Attach(Shared);

#[async_trait::async_trait]
impl Review for Attach {
    async fn review(&self, user: &UserInfo, object: Value) -> Result<Value, ApiError> {
        const KIND: &str = "ClusterAttachment";
        let s: AttachSpec = spec(KIND, &object)?;
        let me = &self.0;
        let name = s.cluster_name.clone();
        if name.is_empty() {
            return Err(invalid(format!("{KIND}: spec.clusterName is required")));
        }
        let workspaces = me.workspaces().await?;
        let Some(namespace) = workspaces.get(&s.workspace).cloned() else {
            return Err(invalid(format!(
                "workspace {:?} does not exist: create it first (portcullis get workspaces lists them)",
                s.workspace
            )));
        };
        if !me.may(user, "create", &namespace, "") {
            return Err(ApiError::forbidden(format!(
                "user {:?} cannot attach a cluster to workspace {:?}: that needs create on \
                 clusters.{GROUP} in namespace {namespace:?}",
                user.name, s.workspace
            )));
        }
        if let Some((ns, _)) = me.find(&name).await? {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                "AlreadyExists",
                format!(
                    "cluster {name:?} is already attached (in namespace {ns:?}); detach it first \
                     with portcullis cluster detach {name}"
                ),
            ));
        }
        if s.pull {
            return attach_pull(me, s, namespace).await;
        }
        let auth = match (s.token, s.client_certificate_data, s.client_key_data) {
            (Some(t), None, None) if !t.is_empty() => Auth::Token(SecretString::from(t)),
            (None, Some(cert), Some(key)) => Auth::ClientCertificate {
                cert,
                key: SecretString::from(key),
            },
            _ => {
                return Err(invalid(format!(
                    "{KIND}: send either spec.token or spec.clientCertificateData with \
                     spec.clientKeyData (the kubeconfig's user must hold a static credential)"
                )));
            }
        };
        let creds = Credentials {
            server: s.server.clone(),
            ca_pem: s.certificate_authority_data.clone(),
            auth,
        };
        let secret = credentials::secret_name(&namespace, &name);
        // The Cluster as it will be stored, checked before anything is written.
        let mut cluster = json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "Cluster",
            "metadata": { "name": name, "namespace": namespace, "labels": s.labels },
            "spec": {
                "apiServerURL": s.server,
                "caBundle": s.certificate_authority_data,
                "credentialsRef": { "name": secret },
            },
        });
        portcullis_model::decode_value(cluster.clone())
            .map_err(|e| invalid(format!("the Cluster would be invalid: {e}")))?;
        let check = check(&name, &creds).await;
        let problems = check.problems();
        if !problems.is_empty() && !s.force {
            return Err(invalid(format!(
                "cluster {name:?} was not attached:\n{}\npass --force to attach it anyway",
                problems.join("\n")
            )));
        }
        creds
            .store(&me.provider, &secret)
            .await
            .map_err(|e| ApiError::internal(format!("sealing the credentials: {e}")))?;
        if let Some(meta) = cluster.get_mut("metadata").and_then(Value::as_object_mut) {
            crate::api::objects::stamp_created(meta, true);
        }
        let key = portcullis_store::keys::object(GROUP, "clusters", &namespace, &name);
        let bytes = serde_json::to_vec(&cluster).map_err(ApiError::internal)?;
        if let Err(e) = me.store.create(&key, bytes).await {
            let _ = credentials::delete(&me.provider, &secret).await;
            return Err(ApiError::from_store(e, GROUP, "clusters", &name));
        }
        if let Some(r) = &me.delivery.reconciler {
            r.attach(&name);
        }
        // The answer carries no credential.
        Ok(json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": KIND,
            "metadata": {},
            "spec": { "clusterName": name, "workspace": s.workspace, "force": s.force },
            "status": {
                "attached": true,
                "namespace": namespace,
                "credentialsRef": { "name": secret },
                "reachable": check.unreachable.is_none(),
                "kubernetesVersion": check.version,
                "missing": check.missing,
                "warnings": problems,
            },
        }))
    }
}

/// Attaches a cluster that pulls: the Cluster carries [`super::PULL_ANNOTATION`] with a fresh
/// nonce, and the answer carries a client certificate (user `portcullis:cluster:NAME`, group
/// of that nonce) that may read only this cluster's desired set. A later attach of the same
/// name gets another nonce, so an earlier certificate reads nothing.
async fn attach_pull(me: &Shared, s: AttachSpec, namespace: String) -> Result<Value, ApiError> {
    let name = s.cluster_name;
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut cluster = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Cluster",
        "metadata": {
            "name": name, "namespace": namespace, "labels": s.labels,
            "annotations": { super::PULL_ANNOTATION: nonce },
        },
        "spec": { "apiServerURL": s.server, "caBundle": s.certificate_authority_data },
    });
    portcullis_model::decode_value(cluster.clone())
        .map_err(|e| invalid(format!("the Cluster would be invalid: {e}")))?;
    let user = pull_user(&name);
    let group = pull_group(&nonce);
    let cert = crate::pki::issue_client(&me.ca, &user, &[group.as_str()], 365)
        .map_err(|e| ApiError::internal(format!("issuing the cluster's credential: {e}")))?;
    if let Some(meta) = cluster.get_mut("metadata").and_then(Value::as_object_mut) {
        crate::api::objects::stamp_created(meta, true);
    }
    let key = portcullis_store::keys::object(GROUP, "clusters", &namespace, &name);
    let bytes = serde_json::to_vec(&cluster).map_err(ApiError::internal)?;
    me.store
        .create(&key, bytes)
        .await
        .map_err(|e| ApiError::from_store(e, GROUP, "clusters", &name))?;
    if let Some(r) = &me.delivery.reconciler {
        r.exclude(&name);
    }
    Ok(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "ClusterAttachment",
        "metadata": {},
        "spec": { "clusterName": name, "workspace": s.workspace, "pull": true },
        "status": {
            "attached": true,
            "namespace": namespace,
            "pull": {
                "user": user,
                "certificate": cert.cert_pem,
                "key": cert.key_pem,
                "caCertificate": me.ca.cert_pem,
            },
        },
    }))
}

/// What the cluster said about the credentials.
#[derive(Debug, Default)]
struct Check {
    /// Why `/version` could not be read, if it could not.
    unreachable: Option<String>,
    version: String,
    /// Each missing permission, as `verbs on resource.group`.
    missing: Vec<String>,
    /// Why the rules could not be read, or that the cluster's answer was incomplete.
    rules_error: Option<String>,
}

impl Check {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.unreachable {
            out.push(format!(
                "- it is not reachable: {e} (check the kubeconfig's server and CA, and that this \
                 management plane can reach it)"
            ));
            return out;
        }
        if let Some(e) = &self.rules_error {
            out.push(format!("- its rules could not be checked: {e}"));
        }
        if !self.missing.is_empty() {
            out.push(
                "- the credentials cannot manage what portcullis delivers; missing on the cluster:"
                    .into(),
            );
            for m in &self.missing {
                out.push(format!("    {m}"));
            }
            out.push(
                "  grant them, e.g. bind the credentials' user to a ClusterRole with these rules \
                 (or to cluster-admin)"
                    .into(),
            );
        }
        out
    }
}

/// A namespace that holds no RoleBindings, so the rules review lists the cluster-wide rules
/// only (those of ClusterRoleBindings), which are what delivery needs.
const PROBE_NAMESPACE: &str = "portcullis-attach-probe";

/// What delivery does on a cluster: (API group, resource, verbs).
const NEEDED: &[(&str, &str, &[&str])] = &[
    ("rbac.authorization.k8s.io", "clusterroles", MANAGE),
    ("rbac.authorization.k8s.io", "clusterrolebindings", MANAGE),
    ("rbac.authorization.k8s.io", "roles", MANAGE),
    ("rbac.authorization.k8s.io", "rolebindings", MANAGE),
    ("", "namespaces", MANAGE),
];
const MANAGE: &[&str] = &["create", "get", "list", "watch", "patch", "delete"];

/// Creating roles that grant what the writer does not hold needs `escalate`, and binding
/// them `bind` (Kubernetes RBAC escalation prevention), unless the writer holds everything.
const ESCALATION: &[(&str, &str, &[&str])] = &[
    (
        "rbac.authorization.k8s.io",
        "clusterroles",
        &["escalate", "bind"],
    ),
    ("rbac.authorization.k8s.io", "roles", &["escalate", "bind"]),
];

/// Connects with `creds`, reads `/version`, and asks a SelfSubjectRulesReview.
async fn check(name: &str, creds: &Credentials) -> Check {
    let mut out = Check::default();
    let client = match creds.kube_config().await.and_then(|c| {
        portcullis_federation::delivery::KubeCluster::new(name, c).map(|k| k.client().clone())
    }) {
        Ok(c) => c,
        Err(e) => {
            out.unreachable = Some(e.to_string());
            return out;
        }
    };
    let timeout = std::time::Duration::from_secs(15);
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(info)) => out.version = info.git_version,
        Ok(Err(e)) => {
            out.unreachable = Some(e.to_string());
            return out;
        }
        Err(_) => {
            out.unreachable = Some(format!("no answer within {}s", timeout.as_secs()));
            return out;
        }
    }
    let body = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": { "namespace": PROBE_NAMESPACE },
    });
    let request = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string().into_bytes());
    let answer: Result<Value, String> = match request {
        Ok(r) => match tokio::time::timeout(timeout, client.request::<Value>(r)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
        },
        Err(e) => Err(e.to_string()),
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            out.rules_error = Some(format!("SelfSubjectRulesReview: {e}"));
            return out;
        }
    };
    let rules: Vec<Value> = answer
        .pointer("/status/resourceRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if answer
        .pointer("/status/incomplete")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.rules_error = Some(format!(
            "the cluster's answer is incomplete ({}); the permissions listed as missing may \
             be granted by another authorizer",
            answer
                .pointer("/status/evaluationError")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        ));
    }
    out.missing = missing(&rules, NEEDED);
    if !allows(&rules, "*", "*", "*") {
        out.missing.extend(missing(&rules, ESCALATION));
    }
    out
}

/// Whether a rule without resourceNames allows `verb` on `resource` in `group`.
fn allows(rules: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    let has = |rule: &Value, field: &str, wanted: &str| {
        rule.get(field)
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "*" || v == wanted))
    };
    rules.iter().any(|r| {
        r.get("resourceNames")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
            && has(r, "apiGroups", group)
            && has(r, "resources", resource)
            && has(r, "verbs", verb)
    })
}

/// The needs `rules` do not meet, one line per resource: `verbs on resource.group`.
fn missing(rules: &[Value], needed: &[(&str, &str, &[&str])]) -> Vec<String> {
    needed
        .iter()
        .filter_map(|(group, resource, verbs)| {
            let lacking: Vec<&str> = verbs
                .iter()
                .copied()
                .filter(|v| !allows(rules, group, resource, v))
                .collect();
            (!lacking.is_empty()).then(|| {
                let qualified = if group.is_empty() {
                    (*resource).to_owned()
                } else {
                    format!("{resource}.{group}")
                };
                format!("{} on {qualified}", lacking.join(", "))
            })
        })
        .collect()
}

// === ClusterDetachment ===

/// `ClusterDetachment.spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DetachSpec {
    cluster_name: String,
    /// Remove every object portcullis put on the cluster first.
    #[serde(default)]
    cleanup: bool,
}

struct Detach(Shared);

#[async_trait::async_trait]
impl Review for Detach {
    async fn review(&self, user: &UserInfo, object: Value) -> Result<Value, ApiError> {
        const KIND: &str = "ClusterDetachment";
        let s: DetachSpec = spec(KIND, &object)?;
        let me = &self.0;
        let name = s.cluster_name;
        let found = me.find(&name).await?;
        let Some((namespace, cluster)) = found.filter(|(ns, _)| me.may(user, "get", ns, &name))
        else {
            return Err(ApiError::from_store(
                portcullis_store::StoreError::NotFound(name.clone()),
                GROUP,
                "clusters",
                &name,
            ));
        };
        if !me.may(user, "delete", &namespace, &name) {
            return Err(ApiError::forbidden(format!(
                "user {:?} cannot detach cluster {name:?}: that needs delete on clusters.{GROUP} \
                 in namespace {namespace:?}",
                user.name
            )));
        }
        let mut deleted = Vec::new();
        if s.cleanup
            && cluster
                .metadata
                .annotations
                .contains_key(super::PULL_ANNOTATION)
        {
            return Err(invalid(format!(
                "cluster {name:?} pulls its desired set: the management plane cannot reach it to \
                 clean up. On the cluster, stop its agent's pull and run kubectl delete \
                 clusterroles,clusterrolebindings,roles,rolebindings -A -l \
                 app.kubernetes.io/managed-by=portcullis (and namespaces with that label), then \
                 detach without --cleanup"
            )));
        }
        if s.cleanup {
            let Some(reconciler) = &me.delivery.reconciler else {
                return Err(invalid(
                    "this management plane delivers through GitOps files: remove the cluster's \
                     directory from the repository to clean it up, and detach without --cleanup",
                ));
            };
            let report = reconciler.cleanup(&name).await.map_err(|e| {
                ApiError::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    format!(
                        "cleaning up cluster {name:?} failed: {e}; the Cluster and its \
                         credentials are kept: retry when it is reachable, or detach without \
                         --cleanup to leave portcullis's objects there"
                    ),
                )
            })?;
            deleted = report.deleted.iter().map(ToString::to_string).collect();
        }
        let key = portcullis_store::keys::object(GROUP, "clusters", &namespace, &name);
        match me.store.delete(&key, None).await {
            Ok(_) | Err(portcullis_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(ApiError::from_store(e, GROUP, "clusters", &name)),
        }
        credentials::delete(&me.provider, &credentials::secret_name(&namespace, &name))
            .await
            .map_err(ApiError::internal)?;
        me.delivery.board.remove(&name);
        Ok(json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": KIND,
            "metadata": {},
            "spec": { "clusterName": name, "cleanup": s.cleanup },
            "status": {
                "detached": true,
                "cleanedUp": s.cleanup,
                "deleted": deleted,
            },
        }))
    }
}

// === DeliveryStatusReview ===

/// `DeliveryStatusReview.spec`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatusSpec {
    /// Only this cluster.
    #[serde(default)]
    cluster_name: String,
    /// A source object, `Kind/namespace/name` (e.g.
    /// `ClusterScopeRoleBinding/portcullis-global/readers`): then `status.source` lists what
    /// it produced on each cluster and how that stands.
    #[serde(default)]
    source: String,
}

struct StatusReview(Shared);

fn time(t: Option<std::time::SystemTime>) -> Value {
    t.map_or(Value::Null, |t| json!(rfc3339(t)))
}

#[async_trait::async_trait]
impl Review for StatusReview {
    async fn review(&self, user: &UserInfo, object: Value) -> Result<Value, ApiError> {
        const KIND: &str = "DeliveryStatusReview";
        let s: StatusSpec = spec(KIND, &object)?;
        let me = &self.0;
        let workspaces: BTreeMap<String, String> = me
            .workspaces()
            .await?
            .into_iter()
            .map(|(w, ns)| (ns, w))
            .collect();
        let stored = super::clusters(&*me.store)
            .await
            .map_err(|e| ApiError::from_store(e, GROUP, "clusters", ""))?;
        let board = me.delivery.board.clusters();
        let sink = if me.delivery.reconciler.is_some() {
            "kubernetes"
        } else {
            "gitops"
        };
        let mut clusters = Vec::new();
        let mut clusters_seen = Vec::new();
        for (_, c) in stored {
            let name = c.metadata.name.clone();
            let namespace = c.metadata.namespace.clone().unwrap_or_default();
            if !s.cluster_name.is_empty() && s.cluster_name != name {
                continue;
            }
            if !me.may(user, "get", &namespace, &name) {
                continue;
            }
            clusters_seen.push(name.clone());
            let pulling = c.metadata.annotations.contains_key(super::PULL_ANNOTATION);
            let mut entry = json!({
                "name": name,
                "namespace": namespace,
                "workspace": workspaces.get(&namespace).cloned().unwrap_or_default(),
                "sink": if pulling { "pull" } else { sink },
            });
            if pulling {
                let pulled = me
                    .delivery
                    .pulls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&name)
                    .cloned();
                if let (Some(p), Some(e)) = (pulled, entry.as_object_mut()) {
                    e.insert("lastSync".into(), json!(rfc3339(p.at)));
                    e.insert("pulledHash".into(), json!(p.hash));
                    e.insert("desired".into(), json!(p.objects));
                }
                clusters.push(entry);
                continue;
            }
            if let Some(st) = board.get(&name) {
                let conditions: Vec<Value> = st
                    .conditions()
                    .into_iter()
                    .map(|c| {
                        json!({
                            "type": c.type_, "status": c.status, "reason": c.reason,
                            "message": c.message, "lastTransitionTime": time(c.last_transition_time),
                        })
                    })
                    .collect();
                let objects: Vec<Value> = st
                    .objects
                    .iter()
                    .map(|(k, o)| {
                        json!({
                            "object": k.to_string(),
                            "source": o.source.as_ref().map(ToString::to_string),
                            "appliedHash": o.applied_hash,
                            "lastApplied": time(o.last_applied),
                            "lastError": o.last_error,
                            "conflict": o.conflict,
                            "paused": o.paused,
                            "driftRepairs": o.drift_repairs,
                        })
                    })
                    .collect();
                let conflicts: Vec<Value> = st
                    .conflicts()
                    .into_iter()
                    .map(|(k, m)| json!({ "object": k.to_string(), "message": m }))
                    .collect();
                if let Some(e) = entry.as_object_mut() {
                    e.insert("reachable".into(), json!(st.last_error.is_none()));
                    e.insert("synced".into(), json!(st.in_sync()));
                    e.insert("conditions".into(), json!(conditions));
                    e.insert("lastSync".into(), time(st.last_sync));
                    e.insert("lastAttempt".into(), time(st.last_attempt));
                    e.insert("lastError".into(), json!(st.last_error));
                    e.insert("consecutiveFailures".into(), json!(st.consecutive_failures));
                    e.insert("driftRepairs".into(), json!(st.drift_repairs));
                    e.insert("desired".into(), json!(st.desired));
                    e.insert("inSyncObjects".into(), json!(st.in_sync_objects()));
                    e.insert("conflicts".into(), json!(conflicts));
                    e.insert("objects".into(), json!(objects));
                }
            }
            clusters.push(entry);
        }
        let mut status = json!({ "clusters": clusters });
        if !s.source.is_empty() {
            let source = parse_source(&s.source).ok_or_else(|| {
                invalid(format!(
                    "spec.source {:?} is not Kind/namespace/name of a role or binding kind",
                    s.source
                ))
            })?;
            let visible: std::collections::BTreeSet<String> = clusters_seen.into_iter().collect();
            let entries: Vec<Value> = me
                .delivery
                .board
                .by_source(&source)
                .into_iter()
                .filter(|(c, _, _)| visible.contains(c))
                .map(|(c, k, o)| {
                    json!({
                        "cluster": c,
                        "object": k.to_string(),
                        "appliedHash": o.applied_hash,
                        "lastApplied": time(o.last_applied),
                        "lastError": o.last_error,
                        "conflict": o.conflict,
                        "paused": o.paused,
                        "driftRepairs": o.drift_repairs,
                    })
                })
                .collect();
            if let Some(m) = status.as_object_mut() {
                m.insert("source".into(), json!(entries));
            }
        }
        Ok(json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": KIND,
            "metadata": {},
            "spec": { "clusterName": s.cluster_name, "source": s.source },
            "status": status,
        }))
    }
}

/// `Kind/namespace/name` of a source object.
fn parse_source(s: &str) -> Option<portcullis_federation::SourceRef> {
    let mut parts = s.splitn(3, '/');
    Some(portcullis_federation::SourceRef {
        kind: portcullis_federation::SourceKind::parse(parts.next()?)?,
        namespace: parts.next()?.to_owned(),
        name: parts.next().filter(|n| !n.is_empty())?.to_owned(),
    })
}

// === DesiredSetReview ===

/// `DesiredSetReview.spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DesiredSpec {
    cluster_name: String,
    /// The hash of the set the agent holds: when it is still current, no objects are sent.
    #[serde(default)]
    if_none_match: String,
}

struct DesiredSet(Shared);

#[async_trait::async_trait]
impl Review for DesiredSet {
    /// The cluster's desired set, for the cluster's own pull credential (bound to the current
    /// attach by its nonce group) or whoever may `get` the Cluster. Polled: `status.hash`
    /// changes exactly when the set does.
    async fn review(&self, user: &UserInfo, object: Value) -> Result<Value, ApiError> {
        const KIND: &str = "DesiredSetReview";
        let s: DesiredSpec = spec(KIND, &object)?;
        let me = &self.0;
        let name = s.cluster_name;
        let found = me.find(&name).await?;
        let allowed = found.as_ref().is_some_and(|(ns, c)| {
            let own = user.name == pull_user(&name)
                && c.metadata
                    .annotations
                    .get(super::PULL_ANNOTATION)
                    .is_some_and(|nonce| user.groups.contains(&pull_group(nonce)));
            own || me.may(user, "get", ns, &name)
        });
        if !allowed {
            return Err(ApiError::forbidden(format!(
                "user {:?} may not read the desired set of cluster {name:?}: only its own pull \
                 credential (issued by cluster attach --pull) or those who may get the Cluster",
                user.name
            )));
        }
        let plan = me.delivery.plan();
        let desired = plan.desired(&portcullis_federation::Target::named(&name));
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for (k, p) in &desired {
            digest.update(k.to_string().as_bytes());
            digest.update(b"\n");
            digest.update(p.content_hash().as_bytes());
            digest.update(b"\n");
        }
        let hash: String = digest
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if user.name == pull_user(&name) {
            me.delivery
                .pulls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    name.clone(),
                    super::Pulled {
                        at: std::time::SystemTime::now(),
                        hash: hash.clone(),
                        objects: desired.len(),
                    },
                );
        }
        let unchanged = !s.if_none_match.is_empty() && s.if_none_match == hash;
        let objects: Vec<Value> = if unchanged {
            Vec::new()
        } else {
            desired.values().map(|p| p.object.to_json()).collect()
        };
        Ok(json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": KIND,
            "metadata": {},
            "spec": { "clusterName": name },
            "status": { "hash": hash, "unchanged": unchanged, "objects": objects },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_permissions_are_listed_per_resource() {
        let rules = vec![
            json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["*"]}),
            json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}),
            json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["*"], "resourceNames": ["x"]}),
        ];
        let m = missing(&rules, NEEDED);
        assert_eq!(
            m,
            vec![
                "create, get, list, watch, patch, delete on clusterroles.rbac.authorization.k8s.io",
                "create, get, list, watch, patch, delete on clusterrolebindings.rbac.authorization.k8s.io",
                "create, watch, patch, delete on namespaces",
            ]
        );
        let admin = vec![json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})];
        assert!(missing(&admin, NEEDED).is_empty());
        assert!(allows(&admin, "*", "*", "*"));
        assert!(!allows(&rules, "*", "*", "*"));
    }
}
