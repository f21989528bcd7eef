//! The management plane authorizes with the RBAC engine over its own RBAC objects
//! (`rbac.authorization.k8s.io/v1` ClusterRoles, ClusterRoleBindings, Roles, RoleBindings,
//! served by the management API like any other kind). A background task keeps an immutable
//! policy snapshot in step with the store; readers swap in the newest without locks.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use futures::future::BoxFuture;
use portcullis_rbac::escalation;
use portcullis_rbac::v1::{ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use portcullis_rbac::validation::{FieldError, Object};
use portcullis_rbac::{Attributes, CompiledPolicy, Policy};
use portcullis_store::{ListOptions, Store, StoreError};
use serde_json::Value;

use crate::api::registry::{AdmitRequest, Codec, DecodeFailure, Operation, Registry, ResourceType};
use crate::api::status::{ApiError, Cause};
use portcullis_rbac::Decision;

/// Store prefix of every RBAC object.
fn prefix() -> String {
    portcullis_store::keys::group(portcullis_rbac::v1::GROUP)
}

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

/// Strict decoding, escalation prevention and validation, in kube-apiserver's order: the RBAC
/// registry checks escalation before the object is validated.
struct RbacCodec {
    authorizer: Option<Arc<RbacAuthorizer>>,
}

fn invalid_causes(errors: &[FieldError]) -> DecodeFailure {
    DecodeFailure::Invalid(
        errors
            .iter()
            .map(|e| Cause {
                reason: e.reason.into(),
                message: e.message.clone(),
                field: e.field.clone(),
            })
            .collect(),
    )
}

/// A decoding error as the cause of a Status.
fn cause(e: &portcullis_rbac::Error) -> Cause {
    let (field, message) = match e {
        portcullis_rbac::Error::Decode { field, message, .. } => (field.clone(), message.clone()),
        other => (String::new(), other.to_string()),
    };
    Cause {
        reason: "FieldValueInvalid".into(),
        message,
        field,
    }
}

fn typed(object: &Value) -> Result<Object, DecodeFailure> {
    Object::decode(object).map_err(|e| {
        let cause = cause(&e);
        if e.is_unknown_field() {
            DecodeFailure::BadRequest(
                format!("strict decoding error: {}: {}", cause.field, cause.message),
                vec![cause],
            )
        } else {
            DecodeFailure::Invalid(vec![cause])
        }
    })
}

/// The rules an aggregationRule needs its writer to hold: everything (it can gather anything).
fn full_authority() -> [PolicyRule; 2] {
    [
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
    ]
}

/// As the ClusterRole registry's `hasAggregationRule`: present only with a selector that sets
/// `matchLabels` or `matchExpressions` (an empty rule, or only empty selectors, counts as absent).
fn has_aggregation_rule(object: &Value) -> bool {
    object
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
        .is_some_and(|selectors| {
            selectors.iter().any(|s| {
                ["matchLabels", "matchExpressions"]
                    .iter()
                    .any(|k| s.get(*k).is_some_and(|v| !v.is_null()))
            })
        })
}

/// As `rbacregistry.IsOnlyMutatingGCFields`: `new` differs from `old` only in the metadata the
/// garbage collector owns (finalizers, ownerReferences; selfLink and the deletion fields). The
/// objects are compared whole, so a body without the stored uid and resourceVersion is a change.
/// `generation` and `managedFields` are the server's (kube-apiserver never sets a generation on
/// RBAC objects and fills managedFields itself before this check), so they do not count.
fn is_only_mutating_gc_fields(new: &Value, old: &Value) -> bool {
    const CARRIED: &[&str] = &[
        "ownerReferences",
        "finalizers",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
    ];
    let mut copied = new.clone();
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let Some(meta) = copied.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    for field in CARRIED {
        match old_meta.and_then(|m| m.get(*field)) {
            Some(v) => {
                meta.insert((*field).into(), v.clone());
            }
            None => {
                meta.remove(*field);
            }
        }
    }
    copied == *old
}

/// A refused write as the API answers it: 403 with the registry's message; a referenced role
/// that does not exist is the rule resolver's 404; an unreadable roleRef kind cannot reach here
/// (validation answers it first) and would be a 500, never an allow.
fn refused(r: portcullis_rbac::Error) -> DecodeFailure {
    match r {
        portcullis_rbac::Error::Forbidden(message) => DecodeFailure::Forbidden(message),
        portcullis_rbac::Error::RoleNotFound { resource, name } => {
            DecodeFailure::Status(ApiError::from_store(
                StoreError::NotFound(name.clone()),
                portcullis_rbac::v1::GROUP,
                resource,
                &name,
            ))
        }
        e => DecodeFailure::Status(ApiError::internal(format!("RBAC escalation check: {e}"))),
    }
}

#[async_trait::async_trait]
impl Codec for RbacCodec {
    /// Decodes strictly (unknown fields are a 400) and applies the v1 defaults; validation
    /// comes after admission, in [`Codec::validate`].
    fn decode(&self, object: &Value) -> Result<Value, DecodeFailure> {
        if object.get("apiVersion").and_then(Value::as_str)
            != Some(portcullis_rbac::v1::API_VERSION)
        {
            return Err(DecodeFailure::BadRequest(
                "not an RBAC object".into(),
                Vec::new(),
            ));
        }
        typed(object)?
            .to_json()
            .map_err(|e| DecodeFailure::BadRequest(e.to_string(), Vec::new()))
    }

    /// kube-apiserver's validation, then the engine's own parser (which also refuses verbs
    /// that can never match, such as `Get`).
    fn validate(&self, object: &Value) -> Result<(), DecodeFailure> {
        let errors = typed(object)?.validate();
        if !errors.is_empty() {
            return Err(invalid_causes(&errors));
        }
        let mut scratch = Policy::default();
        scratch
            .add_object(object.clone())
            .map_err(|e| DecodeFailure::Invalid(vec![cause(&e)]))
    }

    /// `roleRef` cannot change: a binding is deleted and recreated instead.
    fn validate_update(&self, old: &Value, new: &Value) -> Result<(), DecodeFailure> {
        let (Ok(old), Ok(new)) = (Object::decode(old), Object::decode(new)) else {
            return Ok(());
        };
        if let (Some(o), Some(n)) = (old.role_ref(), new.role_ref()) {
            let errors = portcullis_rbac::validation::validate_role_ref_update(o, n);
            if !errors.is_empty() {
                return Err(invalid_causes(&errors));
            }
        }
        Ok(())
    }

    fn allow_create_on_update(&self) -> bool {
        // Only the four stored RBAC kinds (the reviews share this codec but are never stored).
        self.authorizer.is_some()
    }

    fn settle(&self) -> Option<BoxFuture<'static, Result<(), ApiError>>> {
        let authorizer = self.authorizer.clone()?;
        Some(Box::pin(async move { authorizer.settled().await }))
    }

    fn written(&self, revision: u64) {
        if let Some(a) = &self.authorizer {
            a.note_write(revision);
        }
    }

    /// As the RBAC registry (`pkg/registry/rbac/*/policybased`): `system:masters` may write
    /// anything. Roles: `escalate` on the role (named by the URL: never on a create), or
    /// holding every rule; an update that changes only what the garbage collector owns is not
    /// checked; a ClusterRole with an aggregationRule (now or before) needs full authority from
    /// writers without `escalate`. Bindings: `bind` on the role, or holding its rules; a role
    /// that does not exist is a 404, as the rule resolver's lookup.
    async fn admit(&self, request: &AdmitRequest<'_>, new: &Value) -> Result<(), DecodeFailure> {
        if request.operation == Operation::Delete {
            return Ok(()); // deletes are authorized by their verb alone
        }
        let user = request.user;
        let Some(authorizer) = &self.authorizer else {
            return Ok(());
        };
        let snapshot = authorizer.snapshot();
        let (policy, compiled) = (&snapshot.policy, &snapshot.compiled);
        let writer = escalation::Writer {
            user: &user.name,
            groups: &user.groups,
        };
        if escalation::escalation_allowed(&writer) {
            return Ok(());
        }
        let object = typed(new)?;
        let gc_only = request
            .old
            .is_some_and(|old| is_only_mutating_gc_fields(new, old));
        match &object {
            Object::Role(_) | Object::ClusterRole(_) => {
                let (resource, namespace) = match object {
                    Object::Role(_) => ("roles", request.namespace),
                    _ => ("clusterroles", ""),
                };
                if escalation::role_escalation_authorized(
                    compiled,
                    &writer,
                    resource,
                    namespace,
                    request.request_name,
                ) || gc_only
                {
                    return Ok(());
                }
                escalation::confirm_no_escalation(policy, &writer, namespace, object.rules())
                    .map_err(refused)?;
                let aggregating = matches!(object, Object::ClusterRole(_))
                    && (has_aggregation_rule(new) || request.old.is_some_and(has_aggregation_rule));
                if aggregating
                    && escalation::confirm_no_escalation(policy, &writer, "", &full_authority())
                        .is_err()
                {
                    return Err(DecodeFailure::Forbidden(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    ));
                }
                Ok(())
            }
            Object::RoleBinding(_) | Object::ClusterRoleBinding(_) => {
                if gc_only {
                    return Ok(());
                }
                let namespace = match object {
                    Object::RoleBinding(_) => request.namespace,
                    _ => "",
                };
                let Some(role_ref) = object.role_ref() else {
                    // Bindings always decode with a roleRef; should one not, refuse.
                    return Err(DecodeFailure::Status(ApiError::internal(
                        "RBAC escalation check: a binding without roleRef",
                    )));
                };
                if !matches!(role_ref.kind.as_str(), "Role" | "ClusterRole") {
                    // kube-apiserver answers an unknown roleRef.kind with a 500 (its rule
                    // resolver's error); validation's 422 names the field and is better, and
                    // refuses all the same.
                    return Err(invalid_causes(&object.validate()));
                }
                escalation::check_binding_write(policy, compiled, &writer, namespace, role_ref)
                    .map_err(refused)
            }
        }
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

/// How long an RBAC write waits for the policy to include this server's earlier RBAC writes
/// before it is refused (503) rather than checked against an older policy.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The authorizer: the RBAC engine's compiled index over the newest policy snapshot of the
/// management plane's own RBAC objects, together with what federation plans for the
/// management plane (the fleet index's `management` target). A request is allowed when either
/// allows it; both are swapped atomically and read without locks.
pub struct RbacAuthorizer {
    snapshot: ArcSwap<Snapshot>,
    /// The federation's fleet index, when federation runs.
    fleet: Option<Arc<portcullis_federation::FleetIndex>>,
    /// The store revision the installed snapshot was loaded at.
    installed: tokio::sync::watch::Sender<u64>,
    /// The revision of the newest RBAC write made through this server's API.
    written: std::sync::atomic::AtomicU64,
}

impl Default for RbacAuthorizer {
    fn default() -> Self {
        RbacAuthorizer {
            snapshot: ArcSwap::default(),
            fleet: None,
            installed: tokio::sync::watch::Sender::new(0),
            written: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl RbacAuthorizer {
    /// An authorizer that also allows what `fleet` plans for the management plane.
    pub fn with_fleet(fleet: Arc<portcullis_federation::FleetIndex>) -> RbacAuthorizer {
        RbacAuthorizer {
            fleet: Some(fleet),
            ..RbacAuthorizer::default()
        }
    }

    /// Decides `a`: allowed by the own policy, or else by the plan's objects for the
    /// management plane; a denial carries the own policy's reason (kube-apiserver's RBAC
    /// authorizer's wording, which knows nothing of the plan).
    pub fn decide(&self, a: &Attributes) -> Decision {
        let snapshot = self.snapshot.load();
        let d = snapshot.compiled.authorize(a);
        if d.allowed {
            return d;
        }
        if let Some(fleet) = &self.fleet {
            let d = fleet
                .load()
                .authorize(&portcullis_federation::Target::Management, a);
            if d.allowed {
                return d;
            }
        }
        Decision {
            allowed: false,
            reason: denial_reason(&snapshot.policy, a),
        }
    }

    /// Compiles and installs a new snapshot of the store at `revision`; readers switch to it at
    /// their next request.
    pub fn install(&self, policy: Policy, revision: u64) {
        let compiled = CompiledPolicy::new(&policy);
        self.snapshot.store(Arc::new(Snapshot { policy, compiled }));
        self.installed.send_modify(|r| *r = (*r).max(revision));
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Records an RBAC write at `revision`, which later escalation checks must see.
    pub fn note_write(&self, revision: u64) {
        self.written
            .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
    }

    /// Waits until the snapshot includes every RBAC write noted so far. kube-apiserver's rule
    /// resolver reads its storage directly, so a role written a moment ago is seen by the next
    /// write's escalation check; here the policy is reloaded in the background, and a write
    /// waits for it (at most [`SETTLE_TIMEOUT`], then refuses: never checked against a policy
    /// that is known to be stale).
    pub async fn settled(&self) -> Result<(), ApiError> {
        let wanted = self.written.load(std::sync::atomic::Ordering::Acquire);
        let mut installed = self.installed.subscribe();
        match tokio::time::timeout(SETTLE_TIMEOUT, installed.wait_for(|r| *r >= wanted)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the RBAC policy is still being reloaded after a recent change; retry",
            )),
        }
    }
}

/// The reason of a denial, as kube-apiserver's RBAC authorizer gives it: empty, unless some
/// binding that applies to the requester names a role that does not exist, then `RBAC: ` and
/// the informer listers' not-found errors (`role.rbac.authorization.k8s.io "x" not found`).
fn denial_reason(policy: &Policy, a: &Attributes) -> String {
    let (_, errors) = escalation::resolve_rules(policy, &a.user, &a.groups, &a.namespace);
    let mut messages: Vec<String> = Vec::new();
    for e in errors {
        let m = match e {
            portcullis_rbac::Error::RoleNotFound { resource, name } => format!(
                "{}.{} {} not found",
                resource.trim_end_matches('s'),
                portcullis_rbac::v1::GROUP,
                escalation::go_quote(&name)
            ),
            other => other.to_string(),
        };
        // An aggregate error prints each distinct message once.
        if !messages.contains(&m) {
            messages.push(m);
        }
    }
    match messages.as_slice() {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

impl portcullis_authn::Authorize for RbacAuthorizer {
    /// The own policy's allow, decided from the borrowed attributes (the rest of
    /// [`RbacAuthorizer::decide`] only grants what the own policy does not).
    fn allow_now(&self, a: &portcullis_rbac::AttributesRef<'_>) -> Option<Decision> {
        let d = self.snapshot.load().compiled.authorize_ref(a);
        d.allowed.then_some(d)
    }

    fn allows_now(&self, a: &portcullis_rbac::AttributesRef<'_>) -> bool {
        self.snapshot.load().compiled.allows_ref(a)
    }

    /// [`RbacAuthorizer::decide`], and one built-in rule: every authenticated user may create
    /// a `FleetAccessReview` (asking about oneself is always allowed, as a
    /// SelfSubjectAccessReview is; the review itself checks [`RbacAuthorizer::decide`] before
    /// it answers about anyone else).
    fn authorize(&self, a: &Attributes) -> Decision {
        let d = self.decide(a);
        if !d.allowed && crate::federation::reviews::is_self_fleet_review(a) {
            return Decision {
                allowed: true,
                reason: "a FleetAccessReview about oneself".into(),
            };
        }
        if !d.allowed && crate::delivery::attach::is_checked_by_the_kind(a) {
            return Decision {
                allowed: true,
                reason: "a delivery kind, which checks the requester's rights on the Cluster"
                    .into(),
            };
        }
        d
    }
}

/// Creates the bootstrap roles and bindings (those of the Kubernetes version
/// `portcullis_rbac::bootstrap::KUBERNETES_VERSION` names) that are missing (existing ones are
/// left as the operator changed them), and binds `portcullis:admins` to `cluster-admin`.
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
                name: crate::kinds::STATIC_ADMIN_EMAIL.into(),
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
    // The namespaced part of the policy (kube-system's and kube-public's controller roles).
    for ((ns, name), r) in &base.roles {
        objects.push((key("roles", ns, name), object(r, "Role")));
    }
    for ((ns, name), b) in &base.role_bindings {
        objects.push((key("rolebindings", ns, name), object(b, "RoleBinding")));
    }
    for (k, mut v) in objects {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            crate::api::objects::stamp_created(m, false);
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
    portcullis_store::keys::object(portcullis_rbac::v1::GROUP, plural, namespace, name)
}

/// Reads every RBAC object into a policy (aggregated). Objects that fail to parse are skipped
/// with a log line: they grant nothing, which is the safe direction.
pub async fn load(store: &dyn Store) -> Result<(Policy, u64), StoreError> {
    let page = store.list(&prefix(), ListOptions::default()).await?;
    let mut policy = Policy::default();
    for kv in &page.items {
        let parsed = serde_json::from_slice::<Value>(&kv.value)
            .map_err(|e| portcullis_rbac::Error::decode("", e.to_string()))
            .and_then(|v| policy.add_object(v));
        if let Err(e) = parsed {
            tracing::warn!(key = %kv.key, error = %e, "RBAC object ignored");
        }
    }
    policy.aggregate();
    Ok((policy, page.revision))
}

/// Keeps `authorizer` in step with the store for ever: on every change under [`prefix`] the
/// policy is reloaded (changes that arrive together are handled by one reload).
pub async fn sync(store: Arc<dyn Store>, authorizer: Arc<RbacAuthorizer>, mut revision: u64) {
    loop {
        match store.watch(&prefix(), revision).await {
            Ok(mut events) => {
                while let Some(first) = events.next().await {
                    if first.is_err() {
                        break;
                    }
                    // Take whatever else is already waiting, then reload once.
                    while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
                    match load(&*store).await {
                        Ok((policy, rev)) => {
                            authorizer.install(policy, rev);
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
            authorizer.install(policy, rev);
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

#[async_trait::async_trait]
impl crate::api::registry::Review for AccessReview {
    async fn review(
        &self,
        user: &portcullis_authn::UserInfo,
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
        let d = self.authorizer.decide(&attrs);
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

#[async_trait::async_trait]
impl crate::api::registry::Review for RulesReview {
    async fn review(
        &self,
        user: &portcullis_authn::UserInfo,
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
        let mut status = portcullis_rbac::review::rules_review(
            &self.authorizer.snapshot().policy,
            &user.name,
            &user.groups,
            namespace,
        );
        // What the federation plan grants on the management plane counts too.
        if let Some(fleet) = &self.authorizer.fleet {
            for r in fleet.load().rules_for(
                &portcullis_federation::Target::Management,
                &user.name,
                &user.groups,
                namespace,
            ) {
                if r.non_resource_urls.is_empty() {
                    status
                        .resource_rules
                        .push(portcullis_rbac::review::ResourceRule {
                            verbs: r.verbs,
                            api_groups: r.api_groups,
                            resources: r.resources,
                            resource_names: r.resource_names,
                        });
                } else {
                    status
                        .non_resource_rules
                        .push(portcullis_rbac::review::NonResourceRule {
                            verbs: r.verbs,
                            non_resource_urls: r.non_resource_urls,
                        });
                }
            }
        }
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

/// `authentication.k8s.io/v1` SelfSubjectReview (`kubectl auth whoami`): the requester's
/// identity as the server sees it, after impersonation. `system:basic-user` grants `create` on
/// it to every authenticated user.
pub struct SelfReview;

#[async_trait::async_trait]
impl crate::api::registry::Review for SelfReview {
    async fn review(
        &self,
        user: &portcullis_authn::UserInfo,
        object: Value,
    ) -> Result<Value, crate::api::status::ApiError> {
        if object.get("kind").and_then(Value::as_str) != Some("SelfSubjectReview") {
            return Err(crate::api::status::ApiError::bad_request(
                "the body must be a SelfSubjectReview",
            ));
        }
        // As kube-apiserver: an empty uid and no extra are left out.
        let mut info = serde_json::Map::new();
        info.insert("username".into(), Value::String(user.name.clone()));
        if !user.uid.is_empty() {
            info.insert("uid".into(), Value::String(user.uid.clone()));
        }
        info.insert("groups".into(), serde_json::json!(user.groups));
        if !user.extra.is_empty() {
            info.insert("extra".into(), serde_json::json!(user.extra));
        }
        Ok(serde_json::json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "creationTimestamp": crate::api::objects::now_rfc3339() },
            "status": { "userInfo": info },
        }))
    }
}

/// Adds the access and rules reviews, and the SelfSubjectReview, to the served registry.
pub fn register_reviews(registry: &mut Registry, authorizer: &Arc<RbacAuthorizer>) {
    registry.register(ResourceType {
        group: "authentication.k8s.io".into(),
        version: "v1".into(),
        kind: "SelfSubjectReview".into(),
        plural: "selfsubjectreviews".into(),
        singular: "selfsubjectreview".into(),
        namespaced: false,
        short_names: Vec::new(),
        has_status: false,
        codec: Arc::new(RbacCodec { authorizer: None }),
        review: Some(Arc::new(SelfReview)),
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn a_write_waits_for_the_policy_to_include_earlier_rbac_writes() {
        let a = RbacAuthorizer::default();
        a.install(Policy::default(), 5);
        assert!(
            a.settled().now_or_never().unwrap().is_ok(),
            "nothing written yet"
        );
        a.note_write(7);
        let mut waiting = Box::pin(a.settled());
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "the snapshot is older"
        );
        a.install(Policy::default(), 6);
        assert!((&mut waiting).now_or_never().is_none(), "still older");
        a.install(Policy::default(), 9);
        assert!(waiting.await.is_ok());
    }

    #[test]
    fn only_gc_owned_metadata_changes_are_gc_only() {
        let old = serde_json::json!({
            "kind": "Role", "metadata": { "name": "r", "uid": "u", "resourceVersion": "3", "generation": 1 },
            "rules": [],
        });
        let mut new = old.clone();
        new["metadata"]["finalizers"] = serde_json::json!(["x"]);
        new["metadata"]["ownerReferences"] = serde_json::json!([{ "name": "o" }]);
        new["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("generation");
        assert!(is_only_mutating_gc_fields(&new, &old));
        new["metadata"]["labels"] = serde_json::json!({ "a": "b" });
        assert!(!is_only_mutating_gc_fields(&new, &old));
        let mut rules = old.clone();
        rules["rules"] = serde_json::json!([{ "verbs": ["*"] }]);
        assert!(!is_only_mutating_gc_fields(&rules, &old));
        let mut no_uid = old.clone();
        no_uid["metadata"].as_object_mut().unwrap().remove("uid");
        assert!(!is_only_mutating_gc_fields(&no_uid, &old));
    }
}
