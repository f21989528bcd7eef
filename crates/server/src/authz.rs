//! Authorization of management-API requests. The attributes are those of kube-apiserver's
//! `authorizer.Attributes`, derived from the request the same way (verb from method and
//! path, `watch=true` → `watch`, collection GET → `list`).

use crate::authn::UserInfo;

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes {
    /// Who asks.
    pub user: UserInfo,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection; for
    /// non-resource requests the lower-cased HTTP method.
    pub verb: String,
    /// True for `/apis/...` object paths, false for paths such as `/metrics`.
    pub resource_request: bool,
    /// API group (empty = core).
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: String,
    /// Namespace, empty for cluster-scoped requests.
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
    /// Request path.
    pub path: String,
}

/// A decision with its reason (for audit and the `Status` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not. Errors deny.
    pub allowed: bool,
    /// Why.
    pub reason: String,
}

/// Decides requests.
pub trait Authorizer: Send + Sync {
    /// Allowed or denied; an error inside must deny.
    fn authorize(&self, attributes: &RequestAttributes) -> Decision;
}

/// The Kubernetes-style forbidden message.
pub fn forbidden_message(a: &RequestAttributes) -> String {
    let user = &a.user.name;
    if !a.resource_request {
        return format!(
            "forbidden: User {user:?} cannot {} path {:?}",
            a.verb, a.path
        );
    }
    let qualified = crate::api::status::qualified(&a.resource, &a.api_group);
    let res = if a.subresource.is_empty() {
        format!("resource {:?}", a.resource)
    } else {
        format!("resource \"{}/{}\"", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace {:?}", a.namespace)
    };
    let target = if a.name.is_empty() {
        qualified
    } else {
        format!("{qualified} {:?}", a.name)
    };
    format!(
        "{target} is forbidden: User {user:?} cannot {} {res} in API group {:?} {scope}",
        a.verb, a.api_group
    )
}
