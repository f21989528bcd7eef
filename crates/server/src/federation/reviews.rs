//! The fleet's review kinds under `portcullis.dev/v1alpha1`, create-only like
//! SubjectAccessReview, for the dashboard and the CLI:
//!
//! - `FleetAccessReview`: may this user do this on that cluster, and which source objects grant
//!   it (`portcullis explain`). Anyone may ask about themselves; asking about someone else
//!   needs `create` on `fleetaccessreviews`.
//! - `FleetWhoCanReview`: who can do this, per cluster, through which source
//!   (`portcullis who-can --fleet`).
//! - `PlanReview`: the per-cluster diff that applying these objects would cause, without
//!   applying them (`portcullis plan`).
//! - `DefaultsReset`: recreates or overwrites the default roles of the global scope, a
//!   workspace or a project (`portcullis defaults reset`); needs `escalate` on both role kinds
//!   in the scope's namespace, since the defaults may grant more than the requester holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use portcullis_authn::UserInfo;
use portcullis_federation::{Change, Target};
use portcullis_model::{GLOBAL_NAMESPACE, GROUP, Resource, VERSION};
use portcullis_rbac::Attributes;
use portcullis_rbac::batch::{NonResourceAttributes, ResourceAttributes, SubjectAccessReviewSpec};
use portcullis_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Federation;
use crate::api::registry::{Codec, DecodeFailure, Registry, ResourceType, Review};
use crate::api::status::ApiError;
use crate::rbac::RbacAuthorizer;

const FLEET_ACCESS_REVIEWS: &str = "fleetaccessreviews";

/// Whether `a` is a create of a `FleetAccessReview` by an authenticated user: allowed to
/// everyone, as the review answers about someone else only to those allowed by policy.
pub fn is_self_fleet_review(a: &Attributes) -> bool {
    a.resource_request
        && a.verb == "create"
        && a.api_group == GROUP
        && a.resource == FLEET_ACCESS_REVIEWS
        && a.subresource.is_empty()
        && a.groups
            .iter()
            .any(|g| g == portcullis_authn::SYSTEM_AUTHENTICATED)
}

/// Review kinds are never decoded as stored objects.
struct ReviewCodec;

#[async_trait::async_trait]
impl Codec for ReviewCodec {
    fn decode(&self, _object: &Value) -> Result<Value, DecodeFailure> {
        Err(DecodeFailure::BadRequest(
            "a review is only created, never stored".into(),
            Vec::new(),
        ))
    }
}

/// Adds the review kinds to the served registry.
pub fn register(
    registry: &mut Registry,
    fed: &Arc<Federation>,
    authorizer: &Arc<RbacAuthorizer>,
    store: &Arc<dyn Store>,
) {
    let reviews: [(&str, Arc<dyn Review>); 4] = [
        (
            "FleetAccessReview",
            Arc::new(FleetAccessReview {
                fed: fed.clone(),
                authorizer: authorizer.clone(),
            }),
        ),
        (
            "FleetWhoCanReview",
            Arc::new(FleetWhoCanReview { fed: fed.clone() }),
        ),
        ("PlanReview", Arc::new(PlanReview { fed: fed.clone() })),
        (
            "DefaultsReset",
            Arc::new(DefaultsReset {
                authorizer: authorizer.clone(),
                store: store.clone(),
            }),
        ),
    ];
    register_kinds(registry, reviews);
}

/// Registers create-only, cluster-scoped review kinds of `portcullis.dev/v1alpha1` (plural: the
/// kind in lower case with `s`), each answered by its [`Review`].
pub(crate) fn register_kinds<'a>(
    registry: &mut Registry,
    reviews: impl IntoIterator<Item = (&'a str, Arc<dyn Review>)>,
) {
    for (kind, review) in reviews {
        let singular = kind.to_ascii_lowercase();
        registry.register(ResourceType {
            group: GROUP.into(),
            version: VERSION.into(),
            kind: kind.into(),
            plural: format!("{singular}s"),
            singular,
            namespaced: false,
            short_names: Vec::new(),
            has_status: false,
            codec: Arc::new(ReviewCodec),
            review: Some(review),
        });
    }
}

/// `spec` of the posted review, decoded strictly.
pub(crate) fn spec<T: for<'de> Deserialize<'de>>(
    kind: &str,
    object: &Value,
) -> Result<T, ApiError> {
    if object.get("kind").and_then(Value::as_str) != Some(kind) {
        return Err(ApiError::bad_request(format!("the body must be a {kind}")));
    }
    let spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
    serde_json::from_value(spec).map_err(|e| ApiError::bad_request(format!("{kind}: spec: {e}")))
}

fn invalid(kind: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        http::StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{kind}.{GROUP} is invalid: {message}"),
    )
}

/// The review with `status` set (and empty metadata when it had none).
fn answered(object: Value, status: Value) -> Value {
    let mut out = object;
    if let Some(m) = out.as_object_mut() {
        m.insert("status".into(), status);
        m.entry("metadata").or_insert_with(|| json!({}));
    }
    out
}

// === FleetAccessReview ===

/// `FleetAccessReview.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FleetAccessReviewSpec {
    /// Who; empty with no groups: the requester.
    #[serde(default)]
    user: String,
    #[serde(default)]
    groups: Vec<String>,
    /// The cluster; empty: the management plane.
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    resource_attributes: Option<ResourceAttributes>,
    #[serde(default)]
    non_resource_attributes: Option<NonResourceAttributes>,
}

struct FleetAccessReview {
    fed: Arc<Federation>,
    authorizer: Arc<RbacAuthorizer>,
}

#[async_trait::async_trait]
impl Review for FleetAccessReview {
    async fn review(&self, user: &UserInfo, object: Value) -> Result<Value, ApiError> {
        const KIND: &str = "FleetAccessReview";
        let mut s: FleetAccessReviewSpec = spec(KIND, &object)?;
        if s.user.is_empty() && s.groups.is_empty() {
            s.user = user.name.clone();
            s.groups = user.groups.clone();
        }
        let about_self = s.user == user.name && s.groups.iter().all(|g| user.groups.contains(g));
        if !about_self {
            let may = self.authorizer.decide(&Attributes {
                user: user.name.clone(),
                groups: user.groups.clone(),
                verb: "create".into(),
                resource_request: true,
                api_group: GROUP.into(),
                resource: FLEET_ACCESS_REVIEWS.into(),
                ..Attributes::default()
            });
            if !may.allowed {
                return Err(ApiError::forbidden(format!(
                    "{KIND}: user {:?} may ask only about themselves (leave spec.user and \
                     spec.groups empty); asking about {:?} needs create on \
                     {FLEET_ACCESS_REVIEWS}.{GROUP}",
                    user.name, s.user
                )));
            }
        }
        let attrs = SubjectAccessReviewSpec {
            user: s.user.clone(),
            groups: s.groups.clone(),
            resource_attributes: s.resource_attributes.clone(),
            non_resource_attributes: s.non_resource_attributes.clone(),
            ..SubjectAccessReviewSpec::default()
        }
        .attributes()
        .map_err(|e| invalid(KIND, format!("spec: {e}")))?;
        let fleet = self.fed.fleet().load();
        let target = super::target(&fleet, &s.cluster)?;
        let explanation = fleet.explain(&target, &attrs);
        // The management plane's own RBAC objects count there too (they are not planned).
        let own = target == Target::Management
            && self
                .authorizer
                .snapshot()
                .compiled
                .authorize(&attrs)
                .allowed;
        let mut status = json!({
            "allowed": explanation.allowed || own,
            "cluster": target.name(),
            "grants": explanation.grants,
        });
        if own && let Some(m) = status.as_object_mut() {
            m.insert(
                "reason".into(),
                json!(
                    "allowed by the management plane's own RBAC objects (see portcullis who-can)"
                ),
            );
        }
        Ok(answered(object, status))
    }
}

// === FleetWhoCanReview ===

/// `FleetWhoCanReview.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FleetWhoCanReviewSpec {
    #[serde(default)]
    resource_attributes: Option<ResourceAttributes>,
    #[serde(default)]
    non_resource_attributes: Option<NonResourceAttributes>,
}

struct FleetWhoCanReview {
    fed: Arc<Federation>,
}

#[async_trait::async_trait]
impl Review for FleetWhoCanReview {
    async fn review(&self, _user: &UserInfo, object: Value) -> Result<Value, ApiError> {
        const KIND: &str = "FleetWhoCanReview";
        let s: FleetWhoCanReviewSpec = spec(KIND, &object)?;
        let attrs = SubjectAccessReviewSpec {
            // Who-can ignores the subject; the parser wants one.
            user: "-".into(),
            resource_attributes: s.resource_attributes,
            non_resource_attributes: s.non_resource_attributes,
            ..SubjectAccessReviewSpec::default()
        }
        .attributes()
        .map_err(|e| invalid(KIND, format!("spec: {e}")))?;
        let answer = self.fed.fleet().load().who_can(&attrs);
        // Each scope's subjects once, and per cluster the scopes it holds: a Global grant is
        // one entry, not one per cluster (a fleet of 1,000 clusters would repeat it 1,000
        // times).
        let scope_key = |id: &portcullis_federation::LayerId| match id.plane() {
            portcullis_federation::Plane::Management => format!("management/{id}"),
            portcullis_federation::Plane::Fleet => format!("fleet/{id}"),
        };
        let mut scopes = serde_json::Map::new();
        for (id, subjects) in &answer.layers {
            scopes.insert(scope_key(id), json!(**subjects));
        }
        let mut clusters = serde_json::Map::new();
        for (target, ids) in &answer.targets {
            let ids: Vec<String> = ids.iter().map(scope_key).collect();
            clusters.insert(target.name().to_owned(), json!(ids));
        }
        Ok(answered(
            object,
            json!({ "scopes": scopes, "clusters": clusters }),
        ))
    }
}

// === PlanReview ===

/// `PlanReview.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlanReviewSpec {
    #[serde(default)]
    objects: Vec<Value>,
}

/// One object a cluster would get or change.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Apply {
    /// `Kind/[namespace/]name`.
    object: String,
    content_hash: String,
    /// The source object, `Kind/namespace/name`.
    source: String,
}

/// What one cluster would do.
#[derive(Debug, Default, Serialize)]
struct ClusterDiff {
    apply: Vec<Apply>,
    delete: Vec<String>,
}

struct PlanReview {
    fed: Arc<Federation>,
}

#[async_trait::async_trait]
impl Review for PlanReview {
    async fn review(&self, _user: &UserInfo, object: Value) -> Result<Value, ApiError> {
        const KIND: &str = "PlanReview";
        let s: PlanReviewSpec = spec(KIND, &object)?;
        let mut changes = Vec::new();
        for (i, o) in s.objects.into_iter().enumerate() {
            let r = portcullis_model::decode_value(o)
                .map_err(|e| invalid(KIND, format!("spec.objects[{i}]: {e}")))?;
            portcullis_model::validate(&r).map_err(|errors| {
                let messages: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                invalid(KIND, format!("spec.objects[{i}]: {}", messages.join("; ")))
            })?;
            if r.kind_info().namespaced && r.namespace().is_empty() {
                return Err(invalid(
                    KIND,
                    format!(
                        "spec.objects[{i}]: {} {:?} needs metadata.namespace",
                        r.kind_info().kind,
                        r.name()
                    ),
                ));
            }
            changes.push(Change::Upsert(Box::new(r)));
        }
        let (clusters, conflicts) = self.fed.with_planner(|planner, _| {
            let mut after = planner.clone();
            let mut touched: BTreeSet<Target> = BTreeSet::new();
            for c in changes {
                let delta = after.apply(c);
                touched.extend(delta.clusters.into_keys());
                touched.extend(delta.targets.into_keys());
            }
            let mut clusters: BTreeMap<String, ClusterDiff> = BTreeMap::new();
            for t in &touched {
                let (old, new) = (planner.plan().desired(t), after.plan().desired(t));
                let mut diff = ClusterDiff::default();
                for (k, o) in &new {
                    if old.get(k).map(|p| p.content_hash()) != Some(o.content_hash()) {
                        diff.apply.push(Apply {
                            object: k.to_string(),
                            content_hash: o.content_hash().to_owned(),
                            source: o.source.to_string(),
                        });
                    }
                }
                diff.delete = old
                    .keys()
                    .filter(|k| !new.contains_key(*k))
                    .map(ToString::to_string)
                    .collect();
                if !(diff.apply.is_empty() && diff.delete.is_empty()) {
                    clusters.insert(t.name().to_owned(), diff);
                }
            }
            let before = planner.plan().conflicts();
            let conflicts: Vec<_> = after
                .plan()
                .conflicts()
                .into_iter()
                .filter(|c| !before.contains(c))
                .collect();
            (clusters, conflicts)
        });
        Ok(answered(
            object,
            json!({ "clusters": clusters, "conflicts": conflicts }),
        ))
    }
}

// === DefaultsReset ===

/// `DefaultsReset.spec`: exactly one of `global`, `workspace`, or `project` with `namespace`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DefaultsResetSpec {
    #[serde(default)]
    global: bool,
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    namespace: String,
}

struct DefaultsReset {
    authorizer: Arc<RbacAuthorizer>,
    store: Arc<dyn Store>,
}

impl DefaultsReset {
    async fn read(&self, plural: &str, namespace: &str, name: &str) -> Result<Resource, ApiError> {
        let key = portcullis_store::keys::object(GROUP, plural, namespace, name);
        let kv = self
            .store
            .get(&key)
            .await
            .map_err(|e| ApiError::from_store(e, GROUP, plural, name))?
            .ok_or_else(|| {
                ApiError::from_store(
                    portcullis_store::StoreError::NotFound(key.clone()),
                    GROUP,
                    plural,
                    name,
                )
            })?;
        super::decode(&kv)
            .ok_or_else(|| ApiError::internal(format!("the stored object {key} does not decode")))
    }
}

#[async_trait::async_trait]
impl Review for DefaultsReset {
    async fn review(&self, user: &UserInfo, object: Value) -> Result<Value, ApiError> {
        const KIND: &str = "DefaultsReset";
        let s: DefaultsResetSpec = spec(KIND, &object)?;
        let chosen = [s.global, !s.workspace.is_empty(), !s.project.is_empty()]
            .iter()
            .filter(|b| **b)
            .count();
        if chosen != 1 {
            return Err(invalid(
                KIND,
                "spec: set exactly one of global, workspace, or project (with namespace)",
            ));
        }
        let (defaults, namespace) = if s.global {
            (
                portcullis_federation::defaults::global(),
                GLOBAL_NAMESPACE.to_owned(),
            )
        } else if !s.workspace.is_empty() {
            let ws = self.read("workspaces", "", &s.workspace).await?;
            let ns = match &ws {
                Resource::Workspace(w) => w.namespace_name().to_owned(),
                _ => String::new(),
            };
            (super::defaults::of(&ws), ns)
        } else {
            if s.namespace.is_empty() {
                return Err(invalid(
                    KIND,
                    "spec.namespace: the project's namespace (its workspace's) is required",
                ));
            }
            let p = self.read("projects", &s.namespace, &s.project).await?;
            let ns = match &p {
                Resource::Project(p) => p.spec.namespace_name.clone(),
                _ => String::new(),
            };
            (super::defaults::of(&p), ns)
        };
        let masters =
            portcullis_rbac::escalation::escalation_allowed(&portcullis_rbac::escalation::Writer {
                user: &user.name,
                groups: &user.groups,
            });
        for plural in ["kommanderroles", "clusterscoperoles"] {
            let d = self.authorizer.decide(&Attributes {
                user: user.name.clone(),
                groups: user.groups.clone(),
                verb: "escalate".into(),
                resource_request: true,
                api_group: GROUP.into(),
                resource: plural.into(),
                namespace: namespace.clone(),
                ..Attributes::default()
            });
            if !(masters || d.allowed) {
                return Err(ApiError::forbidden(format!(
                    "{KIND}: user {:?} cannot escalate {plural}.{GROUP} in namespace \
                     {namespace:?}; resetting the defaults writes roles that may grant more \
                     than the requester holds",
                    user.name
                )));
            }
        }
        let changed = super::defaults::write_all(&*self.store, &defaults, true)
            .await
            .map_err(|e| ApiError::internal(format!("writing the default roles: {e}")))?;
        let objects: Vec<String> = defaults
            .iter()
            .map(|r| format!("{}/{}/{}", r.kind_info().kind, r.namespace(), r.name()))
            .collect();
        Ok(answered(
            object,
            json!({ "namespace": namespace, "objects": objects, "changed": changed }),
        ))
    }
}
