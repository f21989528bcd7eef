//! What a request asks, and the answer.

use std::collections::BTreeMap;

/// Request attributes, as kube-apiserver's `authorizer.Attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// User name (`system:serviceaccount:NS:NAME` for service accounts).
    pub user: String,
    /// Groups, used verbatim.
    pub groups: Vec<String>,
    /// Extra attributes (not used by RBAC, carried for reviews).
    pub extra: BTreeMap<String, Vec<String>>,
    /// The verb.
    pub verb: String,
    /// True for resource requests, false for non-resource paths.
    pub resource_request: bool,
    /// API group (`""` for core).
    pub api_group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace (`""`: cluster scope).
    pub namespace: String,
    /// Object name (`""`: a collection).
    pub name: String,
    /// Non-resource path.
    pub path: String,
}

/// [`Attributes`] borrowed from wherever the request's facts already are (a parsed request
/// and its identity): what a decision reads, with nothing copied.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttributesRef<'a> {
    /// User name.
    pub user: &'a str,
    /// Groups, used verbatim.
    pub groups: &'a [String],
    /// The verb.
    pub verb: &'a str,
    /// True for resource requests, false for non-resource paths.
    pub resource_request: bool,
    /// API group (`""` for core).
    pub api_group: &'a str,
    /// Resource (plural).
    pub resource: &'a str,
    /// Subresource.
    pub subresource: &'a str,
    /// Namespace (`""`: cluster scope).
    pub namespace: &'a str,
    /// Object name (`""`: a collection).
    pub name: &'a str,
    /// Non-resource path.
    pub path: &'a str,
}

impl Attributes {
    /// The same attributes, borrowed.
    pub fn borrowed(&self) -> AttributesRef<'_> {
        AttributesRef {
            user: &self.user,
            groups: &self.groups,
            verb: &self.verb,
            resource_request: self.resource_request,
            api_group: &self.api_group,
            resource: &self.resource,
            subresource: &self.subresource,
            namespace: &self.namespace,
            name: &self.name,
            path: &self.path,
        }
    }
}

impl AttributesRef<'_> {
    /// The same attributes, owned (with no `extra`: it is not borrowed here).
    pub fn to_attributes(&self) -> Attributes {
        Attributes {
            user: self.user.to_owned(),
            groups: self.groups.to_vec(),
            extra: BTreeMap::new(),
            verb: self.verb.to_owned(),
            resource_request: self.resource_request,
            api_group: self.api_group.to_owned(),
            resource: self.resource.to_owned(),
            subresource: self.subresource.to_owned(),
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            path: self.path.to_owned(),
        }
    }
}

/// The answer, with kube-apiserver's reason string when allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Allowed?
    pub allowed: bool,
    /// `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "z"`, or empty.
    pub reason: String,
}
