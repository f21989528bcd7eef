//! The resource types the management API serves, and how each is decoded and validated.

use std::sync::Arc;

use serde_json::Value;

use super::status::Cause;
use portcullis_authn::UserInfo;

/// Why an object was refused by its codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeFailure {
    /// Not decodable: wrong shape or an unknown field (400 BadRequest).
    BadRequest(String, Vec<Cause>),
    /// Decodable but invalid (422 Invalid, with field causes).
    Invalid(Vec<Cause>),
    /// Refused by an admission rule, e.g. RBAC escalation prevention (403 Forbidden).
    Forbidden(String),
    /// Refused with a complete error of its own (e.g. 404 for a role a binding references that
    /// does not exist, as kube-apiserver's rule resolver answers).
    Status(super::status::ApiError),
}

/// The kind of write admission is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A create (POST, or a PUT that creates).
    Create,
    /// An update (PUT or PATCH of a stored object).
    Update,
    /// A delete.
    Delete,
}

/// What admission is told about a write besides the object, and what it may read.
#[derive(Clone, Copy)]
pub struct AdmitRequest<'a> {
    /// What the write does.
    pub operation: Operation,
    /// Who writes (after impersonation).
    pub user: &'a UserInfo,
    /// The store, for admission rules that depend on other objects.
    pub store: &'a dyn portcullis_store::Store,
    /// Namespace from the request URL (empty: cluster scope).
    pub namespace: &'a str,
    /// Object name from the request URL: empty for a create (POST to the collection), as
    /// kube-apiserver's request attributes have it.
    pub request_name: &'a str,
    /// The stored object an update replaces or a delete removes (`None` for a create, also a
    /// create by PUT).
    pub old: Option<&'a Value>,
}

impl std::fmt::Debug for AdmitRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmitRequest")
            .field("operation", &self.operation)
            .field("user", &self.user.name)
            .field("namespace", &self.namespace)
            .field("request_name", &self.request_name)
            .finish_non_exhaustive()
    }
}

/// Strict decoding, admission and validation of one kind.
#[async_trait::async_trait]
pub trait Codec: Send + Sync {
    /// Decodes and validates `object` (apiVersion, kind, metadata, spec, status); returns it in
    /// canonical JSON form.
    fn decode(&self, object: &Value) -> Result<Value, DecodeFailure>;

    /// Checks an update against the stored object (immutable fields).
    fn validate_update(&self, _old: &Value, _new: &Value) -> Result<(), DecodeFailure> {
        Ok(())
    }

    /// Validation that runs after admission (kinds whose `decode` only decodes, as RBAC's: the
    /// registry checks escalation before it validates).
    fn validate(&self, _object: &Value) -> Result<(), DecodeFailure> {
        Ok(())
    }

    /// Whether a PUT to a missing object creates it (as kube-apiserver's RBAC storage allows);
    /// such a create needs the `create` verb too.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// A wait before admission, for kinds whose admission reads state that follows the store
    /// asynchronously (RBAC: the policy must include this server's earlier RBAC writes).
    fn settle(
        &self,
    ) -> Option<futures::future::BoxFuture<'static, Result<(), super::status::ApiError>>> {
        None
    }

    /// Told the store revision of every write of this kind made through the API.
    fn written(&self, _revision: u64) {}

    /// Admission: may `request.user` write `new` as `request` says? Runs after authorization
    /// of the verb, on the decoded object; for an update, `new` is the object as the request
    /// sent it (before server-owned metadata is carried over from `request.old`); for a
    /// delete, the stored object. It may read the store.
    async fn admit(&self, _request: &AdmitRequest<'_>, _new: &Value) -> Result<(), DecodeFailure> {
        Ok(())
    }
}

/// One served resource type.
#[derive(Clone)]
pub struct ResourceType {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind, e.g. `Workspace`.
    pub kind: String,
    /// Plural resource name, e.g. `workspaces`.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Whether the `status` subresource is served.
    pub has_status: bool,
    /// Decoder and validator.
    pub codec: Arc<dyn Codec>,
    /// For create-only review kinds (SubjectAccessReview, …): the handler. Such kinds are
    /// never stored.
    pub review: Option<Arc<dyn Review>>,
}

/// A create-only kind answered from the request itself, as the `authorization.k8s.io` reviews.
#[async_trait::async_trait]
pub trait Review: Send + Sync {
    /// Answers `object` (the posted review) for `user`; returns the review with its `status`.
    async fn review(
        &self,
        user: &UserInfo,
        object: Value,
    ) -> Result<Value, super::status::ApiError>;
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceType")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("plural", &self.plural)
            .finish_non_exhaustive()
    }
}

impl ResourceType {
    /// `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Store key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        let namespace = if self.namespaced { namespace } else { "" };
        portcullis_store::keys::object(&self.group, &self.plural, namespace, name)
    }

    /// Store prefix of a collection (one namespace, or all when `namespace` is empty).
    pub fn prefix(&self, namespace: &str) -> String {
        let namespace = if self.namespaced { namespace } else { "" };
        portcullis_store::keys::collection(&self.group, &self.plural, namespace)
    }
}

/// All served resource types, grouped by API group and version.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Registry {
    /// Adds a type.
    pub fn register(&mut self, t: ResourceType) {
        self.types.push(t);
    }

    /// Looks a type up by group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Replaces the codec of the type of `group` and `plural`; false when there is none.
    pub fn set_codec(&mut self, group: &str, plural: &str, codec: Arc<dyn Codec>) -> bool {
        match self
            .types
            .iter_mut()
            .find(|t| t.group == group && t.plural == plural)
        {
            Some(t) => {
                t.codec = codec;
                true
            }
            None => false,
        }
    }

    /// Every type.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The API groups, each with its versions, in registration order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        out
    }
}
