//! The management plane authorizes with the RBAC engine over its own RBAC objects
//! (`rbac.authorization.k8s.io/v1` ClusterRoles, ClusterRoleBindings, Roles, RoleBindings,
//! served by the management API like any other kind). A background task keeps an immutable
//! policy snapshot in step with the store; readers swap in the newest without locks.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use portcullis_rbac::escalation;
use portcullis_rbac::v1::{ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use portcullis_rbac::{Attributes, CompiledPolicy, Policy};
use portcullis_store::{ListOptions, Store, StoreError};
use serde_json::Value;

use crate::api::registry::{Codec, DecodeFailure, Registry, ResourceType};
use crate::api::status::Cause;
use crate::authz::{Authorizer, Decision, RequestAttributes};

/// Store prefix of every RBAC object.
pub const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// Name of the bootstrap binding of `portcullis:admins` to `cluster-admin`.
pub const ADMINS_BINDING: &str = "portcullis:admins";

/// The four RBAC kinds: (kind, plural, singular, namespaced).
const KINDS: &[(&str, &str, &str, bool)] = &[
    ("ClusterRole", "clusterroles", "clusterrole", false),
    (
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
    ),
    ("Role", "roles", "role", true),
    ("RoleBinding", "rolebindings", "rolebinding", true),
];

/// Adds the RBAC kinds to the served registry; writes are admitted by escalation prevention
/// against `authorizer`'s policy.
pub fn register(registry: &mut Registry, authorizer: &Arc<RbacAuthorizer>) {
    for (kind, plural, singular, namespaced) in KINDS {
        registry.register(ResourceType {
            group: portcullis_rbac::v1::GROUP.into(),
            version: "v1".into(),
            kind: (*kind).into(),
            plural: (*plural).into(),
            singular: (*singular).into(),
            namespaced: *namespaced,
            short_names: Vec::new(),
            has_status: false,
            codec: Arc::new(RbacCodec {
                authorizer: Some(authorizer.clone()),
            }),
            review: None,
        });
    }
}

/// Strict decoding and validation by the RBAC engine's own parser, and escalation prevention.
struct RbacCodec {
    authorizer: Option<Arc<RbacAuthorizer>>,
}

impl Codec for RbacCodec {
    fn decode(&self, object: &Value) -> Result<Value, DecodeFailure> {
        let mut scratch = Policy::default();
        scratch
            .add_object(object.clone())
            .map_err(|(field, message)| {
                let field = field.trim_end_matches(": ").to_owned();
                let cause = Cause {
                    reason: "FieldValueInvalid".into(),
                    message: message.clone(),
                    field: field.clone(),
                };
                if message.contains("unknown field") {
                    DecodeFailure::BadRequest(
                        format!("strict decoding error: {field}: {message}"),
                        vec![cause],
                    )
                } else {
                    DecodeFailure::Invalid(vec![cause])
                }
            })?;
        // Re-serialise from the typed object: canonical form, unknown fields impossible.
        let canonical = if let Some(r) = scratch.cluster_roles.values().next() {
            serde_json::to_value(r)
        } else if let Some(r) = scratch.roles.values().next() {
            serde_json::to_value(r)
        } else if let Some(b) = scratch.role_bindings.values().next() {
            serde_json::to_value(b)
        } else if let Some(b) = scratch.cluster_role_bindings.values().next() {
            serde_json::to_value(b)
        } else {
            return Err(DecodeFailure::BadRequest(
                "not an RBAC object".into(),
                Vec::new(),
            ));
        };
        canonical.map_err(|e| DecodeFailure::BadRequest(e.to_string(), Vec::new()))
    }

    /// As the RBAC registry: roles only with rules the writer holds (or `escalate`), bindings
    /// only to roles whose rules the writer holds (or `bind`); an aggregationRule needs full
    /// authority, since it can gather anything.
    fn admit(
        &self,
        user: &crate::authn::UserInfo,
        namespace: &str,
        _old: Option<&Value>,
        new: &Value,
    ) -> Result<(), DecodeFailure> {
        let Some(authorizer) = &self.authorizer else {
            return Ok(());
        };
        let snapshot = authorizer.snapshot();
        let writer = escalation::Writer {
            user: &user.name,
            groups: &user.groups,
        };
        let name = new
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = new.get("kind").and_then(Value::as_str).unwrap_or_default();
        let result = match kind {
            "ClusterRole" | "Role" => {
                let rules: Vec<PolicyRule> = new
                    .get("rules")
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| DecodeFailure::BadRequest(e.to_string(), Vec::new()))?
                    .unwrap_or_default();
                let ns = if kind == "Role" { namespace } else { "" };
                escalation::check_role_write(
                    &snapshot.policy,
                    &snapshot.compiled,
                    &writer,
                    ns,
                    name,
                    &rules,
                )
                .and_then(|()| {
                    if new.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                        let full = [
                            PolicyRule {
                                verbs: vec!["*".into()],
                                api_groups: vec!["*".into()],
                                resources: vec!["*".into()],
                                ..PolicyRule::default()
                            },
                            PolicyRule {
                                verbs: vec!["*".into()],
                                non_resource_urls: vec!["*".into()],
                                ..PolicyRule::default()
                            },
                        ];
                        let held =
                            escalation::rules_for(&snapshot.policy, &user.name, &user.groups, "");
                        if !escalation::covers(&held, &full).0 {
                            return Err(
                                "must have cluster-admin privileges to use the aggregationRule"
                                    .into(),
                            );
                        }
                    }
                    Ok(())
                })
            }
            "ClusterRoleBinding" | "RoleBinding" => {
                let role_ref: RoleRef = new
                    .get("roleRef")
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| DecodeFailure::BadRequest(e.to_string(), Vec::new()))?
                    .unwrap_or_default();
                let ns = if kind == "RoleBinding" { namespace } else { "" };
                escalation::check_binding_write(
                    &snapshot.policy,
                    &snapshot.compiled,
                    &writer,
                    ns,
                    &role_ref,
                )
            }
            _ => Ok(()),
        };
        result.map_err(DecodeFailure::Forbidden)
    }
}

/// One policy snapshot with its compiled index.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The RBAC objects, aggregated.
    pub policy: Policy,
    /// The index decisions are made with.
    pub compiled: CompiledPolicy,
}

/// The authorizer: the RBAC engine's compiled index over the newest policy snapshot.
#[derive(Default)]
pub struct RbacAuthorizer {
    snapshot: ArcSwap<Snapshot>,
}

impl RbacAuthorizer {
    /// Compiles and installs a new snapshot; readers switch to it at their next request.
    pub fn install(&self, policy: Policy) {
        let compiled = CompiledPolicy::new(&policy);
        self.snapshot.store(Arc::new(Snapshot { policy, compiled }));
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}

/// Converts the server's request attributes to the engine's.
pub fn attributes(a: &RequestAttributes) -> Attributes {
    Attributes {
        user: a.user.name.clone(),
        groups: a.user.groups.clone(),
        extra: a.user.extra.clone(),
        verb: a.verb.clone(),
        resource_request: a.resource_request,
        api_group: a.api_group.clone(),
        resource: a.resource.clone(),
        subresource: a.subresource.clone(),
        namespace: a.namespace.clone(),
        name: a.name.clone(),
        path: a.path.clone(),
    }
}

impl Authorizer for RbacAuthorizer {
    fn authorize(&self, a: &RequestAttributes) -> Decision {
        let d = self.snapshot.load().compiled.authorize(&attributes(a));
        Decision {
            allowed: d.allowed,
            reason: d.reason,
        }
    }
}

/// Creates the bootstrap roles and bindings that are missing (existing ones are left as the
/// operator changed them), and binds `portcullis:admins` to `cluster-admin`.
pub async fn bootstrap(store: &dyn Store) -> Result<(), StoreError> {
    let base = portcullis_rbac::bootstrap::policy();
    let mut objects: Vec<(String, Value)> = Vec::new();
    for r in base.cluster_roles.values() {
        let mut r = r.clone();
        // Aggregated roles are stored with their selectors; aggregation fills the rules.
        if r.aggregation_rule.is_some() {
            r.rules.clear();
        }
        objects.push((
            key("clusterroles", "", &r.metadata.name),
            object(&r, "ClusterRole"),
        ));
    }
    let mut bindings: Vec<ClusterRoleBinding> =
        base.cluster_role_bindings.values().cloned().collect();
    bindings.push(ClusterRoleBinding {
        metadata: portcullis_model::ObjectMeta {
            name: ADMINS_BINDING.into(),
            ..Default::default()
        },
        subjects: vec![
            Subject {
                kind: "Group".into(),
                api_group: portcullis_rbac::v1::GROUP.into(),
                name: crate::pki::ADMINS_GROUP.into(),
                namespace: String::new(),
            },
            // The static admin, as its ID tokens name it.
            Subject {
                kind: "User".into(),
                api_group: portcullis_rbac::v1::GROUP.into(),
                name: crate::serve::STATIC_ADMIN_EMAIL.into(),
                namespace: String::new(),
            },
        ],
        role_ref: RoleRef {
            api_group: portcullis_rbac::v1::GROUP.into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        ..Default::default()
    });
    for b in &bindings {
        objects.push((
            key("clusterrolebindings", "", &b.metadata.name),
            object(b, "ClusterRoleBinding"),
        ));
    }
    for (k, mut v) in objects {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert(
                "uid".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
            m.insert(
                "creationTimestamp".into(),
                Value::String(crate::api::objects::now_rfc3339()),
            );
        }
        let bytes = serde_json::to_vec(&v).map_err(|e| StoreError::Backend(e.to_string()))?;
        match store.create(&k, bytes).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn object<T: serde::Serialize>(o: &T, kind: &str) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            Value::String(portcullis_rbac::v1::API_VERSION.into()),
        );
        m.insert("kind".into(), Value::String(kind.into()));
    }
    v
}

fn key(plural: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{PREFIX}{plural}/{name}")
    } else {
        format!("{PREFIX}{plural}/{namespace}/{name}")
    }
}

/// Reads every RBAC object into a policy (aggregated). Objects that fail to parse are skipped
/// with a log line: they grant nothing, which is the safe direction.
pub async fn load(store: &dyn Store) -> Result<(Policy, u64), StoreError> {
    let page = store.list(PREFIX, ListOptions::default()).await?;
    let mut policy = Policy::default();
    for kv in &page.items {
        let parsed = serde_json::from_slice::<Value>(&kv.value)
            .map_err(|e| (String::new(), e.to_string()))
            .and_then(|v| policy.add_object(v));
        if let Err((field, message)) = parsed {
            tracing::warn!(key = %kv.key, %field, %message, "RBAC object ignored");
        }
    }
    policy.aggregate();
    Ok((policy, page.revision))
}

/// Keeps `authorizer` in step with the store for ever: on every change under [`PREFIX`] the
/// policy is reloaded (changes that arrive together are handled by one reload).
pub async fn sync(store: Arc<dyn Store>, authorizer: Arc<RbacAuthorizer>, mut revision: u64) {
    loop {
        match store.watch(PREFIX, revision).await {
            Ok(mut events) => {
                while let Some(first) = events.next().await {
                    if first.is_err() {
                        break;
                    }
                    // Take whatever else is already waiting, then reload once.
                    while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
                    match load(&*store).await {
                        Ok((policy, rev)) => {
                            authorizer.install(policy);
                            revision = rev;
                        }
                        Err(e) => tracing::warn!(error = %e, "reloading RBAC policy failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching RBAC objects failed"),
        }
        // The watch ended or failed: reload from scratch and watch again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok((policy, rev)) = load(&*store).await {
            authorizer.install(policy);
            revision = rev;
        }
    }
}

// === reviews ===

/// `authorization.k8s.io/v1` SubjectAccessReview (about anyone; needs `create` on
/// `subjectaccessreviews`) and SelfSubjectAccessReview (about the requester; `system:basic-user`
/// grants it to every authenticated user), answered by the same index as every request.
pub struct AccessReview {
    authorizer: Arc<RbacAuthorizer>,
    about_self: bool,
}

impl crate::api::registry::Review for AccessReview {
    fn review(
        &self,
        user: &crate::authn::UserInfo,
        object: Value,
    ) -> Result<Value, crate::api::status::ApiError> {
        use crate::api::status::ApiError;
        let kind = if self.about_self {
            "SelfSubjectAccessReview"
        } else {
            "SubjectAccessReview"
        };
        if object.get("kind").and_then(Value::as_str) != Some(kind) {
            return Err(ApiError::bad_request(format!("the body must be a {kind}")));
        }
        let mut spec_value = object.get("spec").cloned().unwrap_or(Value::Null);
        if self.about_self {
            // The subject is the requester; whatever the body says about users is ignored.
            if let Some(m) = spec_value.as_object_mut() {
                m.insert("user".into(), Value::String(user.name.clone()));
                m.insert("groups".into(), serde_json::json!(user.groups));
                m.insert("extra".into(), serde_json::json!(user.extra));
                m.insert("uid".into(), Value::String(user.uid.clone()));
            }
        }
        let spec: portcullis_rbac::batch::SubjectAccessReviewSpec =
            serde_json::from_value(spec_value)
                .map_err(|e| ApiError::bad_request(format!("spec: {e}")))?;
        let attrs = spec.attributes().map_err(|e| {
            ApiError::new(
                http::StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{kind}.authorization.k8s.io is invalid: spec: {e}"),
            )
        })?;
        let d = self.authorizer.snapshot.load().compiled.authorize(&attrs);
        let mut out = object;
        if let Some(m) = out.as_object_mut() {
            m.insert(
                "status".into(),
                serde_json::json!({ "allowed": d.allowed, "reason": d.reason }),
            );
            m.entry("metadata").or_insert_with(|| serde_json::json!({}));
        }
        Ok(out)
    }
}

/// `authorization.k8s.io/v1` SelfSubjectRulesReview: the rules the requester holds in
/// `spec.namespace`.
pub struct RulesReview {
    authorizer: Arc<RbacAuthorizer>,
}

impl crate::api::registry::Review for RulesReview {
    fn review(
        &self,
        user: &crate::authn::UserInfo,
        object: Value,
    ) -> Result<Value, crate::api::status::ApiError> {
        if object.get("kind").and_then(Value::as_str) != Some("SelfSubjectRulesReview") {
            return Err(crate::api::status::ApiError::bad_request(
                "the body must be a SelfSubjectRulesReview",
            ));
        }
        let namespace = object
            .pointer("/spec/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let status = portcullis_rbac::review::rules_review(
            &self.authorizer.snapshot().policy,
            &user.name,
            &user.groups,
            namespace,
        );
        let mut out = object;
        if let Some(m) = out.as_object_mut() {
            m.insert(
                "status".into(),
                serde_json::to_value(status).unwrap_or(Value::Null),
            );
            m.entry("metadata").or_insert_with(|| serde_json::json!({}));
        }
        Ok(out)
    }
}

/// Adds the access and rules reviews to the served registry.
pub fn register_reviews(registry: &mut Registry, authorizer: &Arc<RbacAuthorizer>) {
    for (kind, plural, about_self) in [
        ("SubjectAccessReview", "subjectaccessreviews", false),
        ("SelfSubjectAccessReview", "selfsubjectaccessreviews", true),
    ] {
        registry.register(ResourceType {
            group: "authorization.k8s.io".into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            namespaced: false,
            short_names: Vec::new(),
            has_status: false,
            codec: Arc::new(RbacCodec { authorizer: None }),
            review: Some(Arc::new(AccessReview {
                authorizer: authorizer.clone(),
                about_self,
            })),
        });
    }
    registry.register(ResourceType {
        group: "authorization.k8s.io".into(),
        version: "v1".into(),
        kind: "SelfSubjectRulesReview".into(),
        plural: "selfsubjectrulesreviews".into(),
        singular: "selfsubjectrulesreview".into(),
        namespaced: false,
        short_names: Vec::new(),
        has_status: false,
        codec: Arc::new(RbacCodec { authorizer: None }),
        review: Some(Arc::new(RulesReview {
            authorizer: authorizer.clone(),
        })),
    });
}
