//! What the planner produces: Kubernetes RBAC objects (and project namespaces), each named so
//! that it cannot clash with anything portcullis did not create, labelled with who made it and
//! from which source, and annotated with a hash of its content.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use portcullis_model::ObjectMeta;
use portcullis_rbac::v1::{
    self, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Label every produced object carries, with value [`MANAGED_BY`]: garbage collection lists by
/// it, and an object without it is never changed or deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "portcullis";
/// Label naming the source object, `<kind>.<namespace>.<name>` (shortened with a hash when that
/// is not a valid label value; [`SOURCE_ANNOTATION`] always has it whole).
pub const SOURCE_LABEL: &str = "portcullis.dev/source";
/// Annotation naming the source object whole, `<kind>/<namespace>/<name>`.
pub const SOURCE_ANNOTATION: &str = "portcullis.dev/source";
/// Annotation with the hash of the object's content (everything but this annotation).
pub const CONTENT_HASH_ANNOTATION: &str = "portcullis.dev/content-hash";
/// Prefix of every produced object's name.
pub const NAME_PREFIX: &str = "portcullis:";
/// Longest produced name (Kubernetes object names: a DNS subdomain's 253 characters, which RBAC
/// names, validated as path segments, also fit).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label value (Kubernetes: 63 characters).
const MAX_LABEL_VALUE_LEN: usize = 63;

/// The four source kinds, as `portcullis.dev/v1alpha1` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SourceKind {
    /// A management-plane role.
    KommanderRole,
    /// A management-plane binding.
    KommanderRoleBinding,
    /// A target-cluster role.
    ClusterScopeRole,
    /// A target-cluster binding.
    ClusterScopeRoleBinding,
    /// A project: the source of its namespace on the clusters it is placed on.
    Project,
}

impl SourceKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::KommanderRole => "KommanderRole",
            SourceKind::KommanderRoleBinding => "KommanderRoleBinding",
            SourceKind::ClusterScopeRole => "ClusterScopeRole",
            SourceKind::ClusterScopeRoleBinding => "ClusterScopeRoleBinding",
            SourceKind::Project => "Project",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<SourceKind> {
        [
            SourceKind::KommanderRole,
            SourceKind::KommanderRoleBinding,
            SourceKind::ClusterScopeRole,
            SourceKind::ClusterScopeRoleBinding,
            SourceKind::Project,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether this is a binding kind.
    pub fn is_binding(self) -> bool {
        matches!(
            self,
            SourceKind::KommanderRoleBinding | SourceKind::ClusterScopeRoleBinding
        )
    }

    /// The plane the kind's objects go to.
    pub fn plane(self) -> Plane {
        match self {
            SourceKind::KommanderRole | SourceKind::KommanderRoleBinding => Plane::Management,
            SourceKind::ClusterScopeRole
            | SourceKind::ClusterScopeRoleBinding
            | SourceKind::Project => Plane::Fleet,
        }
    }
}

/// Where a kind's objects go: the management plane (`Kommander…` kinds) or the attached
/// clusters (`ClusterScope…` kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Plane {
    /// The management plane.
    Management,
    /// The attached clusters.
    Fleet,
}

/// A source object: kind, namespace (its scope) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SourceRef {
    /// Kind.
    pub kind: SourceKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Kind of a produced object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ObjectKind {
    /// A project namespace on an attached cluster (created where missing).
    Namespace,
    /// `rbac.authorization.k8s.io/v1` ClusterRole.
    ClusterRole,
    /// `rbac.authorization.k8s.io/v1` ClusterRoleBinding.
    ClusterRoleBinding,
    /// `rbac.authorization.k8s.io/v1` Role.
    Role,
    /// `rbac.authorization.k8s.io/v1` RoleBinding.
    RoleBinding,
}

impl ObjectKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Namespace => "Namespace",
            ObjectKind::ClusterRole => "ClusterRole",
            ObjectKind::ClusterRoleBinding => "ClusterRoleBinding",
            ObjectKind::Role => "Role",
            ObjectKind::RoleBinding => "RoleBinding",
        }
    }

    /// The kind's plural resource name.
    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::Namespace => "namespaces",
            ObjectKind::ClusterRole => "clusterroles",
            ObjectKind::ClusterRoleBinding => "clusterrolebindings",
            ObjectKind::Role => "roles",
            ObjectKind::RoleBinding => "rolebindings",
        }
    }

    /// `apiVersion` of the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            ObjectKind::Namespace => "v1",
            _ => v1::API_VERSION,
        }
    }
}

/// Identity of a produced object on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    /// Kind.
    pub kind: ObjectKind,
    /// Namespace; empty for cluster-scoped kinds.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind.as_str(), self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
        }
    }
}

/// The body of a produced object, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacObject {
    /// A namespace (metadata only).
    Namespace(ObjectMeta),
    /// A ClusterRole.
    ClusterRole(ClusterRole),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
    /// A Role.
    Role(Role),
    /// A RoleBinding.
    RoleBinding(RoleBinding),
}

impl RbacObject {
    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            RbacObject::Namespace(m) => m,
            RbacObject::ClusterRole(o) => &o.metadata,
            RbacObject::ClusterRoleBinding(o) => &o.metadata,
            RbacObject::Role(o) => &o.metadata,
            RbacObject::RoleBinding(o) => &o.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            RbacObject::Namespace(m) => m,
            RbacObject::ClusterRole(o) => &mut o.metadata,
            RbacObject::ClusterRoleBinding(o) => &mut o.metadata,
            RbacObject::Role(o) => &mut o.metadata,
            RbacObject::RoleBinding(o) => &mut o.metadata,
        }
    }

    /// The object as Kubernetes JSON (`apiVersion`, `kind`, `metadata`, and its fields).
    pub fn to_json(&self) -> Value {
        let v = match self {
            RbacObject::Namespace(m) => Ok(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": m,
            })),
            RbacObject::ClusterRole(o) => serde_json::to_value(o),
            RbacObject::ClusterRoleBinding(o) => serde_json::to_value(o),
            RbacObject::Role(o) => serde_json::to_value(o),
            RbacObject::RoleBinding(o) => serde_json::to_value(o),
        };
        // Serialising these types cannot fail: every map has string keys.
        v.unwrap_or(Value::Null)
    }
}

/// One produced object: where it goes, what made it, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Kind, namespace and name on the cluster.
    pub key: ObjectKey,
    /// The source object that produced it.
    pub source: SourceRef,
    /// The object, with its labels and annotations (the content hash included).
    pub object: RbacObject,
}

impl Planned {
    /// A produced object read back from its Kubernetes JSON ([`RbacObject::to_json`]), as a
    /// pulling agent receives it: kind and key from the object, the source from
    /// [`SOURCE_ANNOTATION`]. Strict: unknown fields and a missing source are refused.
    pub fn from_json(v: &Value) -> Result<Planned, String> {
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
        let object = match kind {
            "Namespace" => {
                let meta = v.get("metadata").cloned().unwrap_or(Value::Null);
                RbacObject::Namespace(serde_json::from_value(meta).map_err(|e| e.to_string())?)
            }
            "ClusterRole" => RbacObject::ClusterRole(de(v)?),
            "ClusterRoleBinding" => RbacObject::ClusterRoleBinding(de(v)?),
            "Role" => RbacObject::Role(de(v)?),
            "RoleBinding" => RbacObject::RoleBinding(de(v)?),
            other => return Err(format!("kind {other:?} is not one portcullis delivers")),
        };
        let kind = match &object {
            RbacObject::Namespace(_) => ObjectKind::Namespace,
            RbacObject::ClusterRole(_) => ObjectKind::ClusterRole,
            RbacObject::ClusterRoleBinding(_) => ObjectKind::ClusterRoleBinding,
            RbacObject::Role(_) => ObjectKind::Role,
            RbacObject::RoleBinding(_) => ObjectKind::RoleBinding,
        };
        let meta = object.meta();
        let source = meta
            .annotations
            .get(SOURCE_ANNOTATION)
            .and_then(|s| {
                let mut parts = s.splitn(3, '/');
                let kind = SourceKind::parse(parts.next()?)?;
                Some(SourceRef {
                    kind,
                    namespace: parts.next()?.to_owned(),
                    name: parts.next()?.to_owned(),
                })
            })
            .ok_or_else(|| format!("{} has no {SOURCE_ANNOTATION} annotation", meta.name))?;
        Ok(Planned {
            key: ObjectKey {
                kind,
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone(),
            },
            source,
            object,
        })
    }

    /// The content hash ([`CONTENT_HASH_ANNOTATION`]).
    pub fn content_hash(&self) -> &str {
        self.object
            .meta()
            .annotations
            .get(CONTENT_HASH_ANNOTATION)
            .map_or("", String::as_str)
    }
}

fn de<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| e.to_string())
}

/// Finishes a produced object: name and namespace, the managed-by and source labels, the
/// source annotation, then the hash of all of that and the content.
pub(crate) fn finish(source: &SourceRef, key: ObjectKey, mut object: RbacObject) -> Arc<Planned> {
    let meta = object.meta_mut();
    meta.name = key.name.clone();
    meta.namespace = (!key.namespace.is_empty()).then(|| key.namespace.clone());
    meta.labels
        .insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    meta.labels.insert(
        SOURCE_LABEL.into(),
        label_value(&format!(
            "{}.{}.{}",
            source.kind.as_str(),
            source.namespace,
            source.name
        )),
    );
    meta.annotations
        .insert(SOURCE_ANNOTATION.into(), source.to_string());
    let hash = content_hash(&object.to_json());
    object
        .meta_mut()
        .annotations
        .insert(CONTENT_HASH_ANNOTATION.into(), hash);
    Arc::new(Planned {
        key,
        source: source.clone(),
        object,
    })
}

/// SHA-256 of the object's JSON (keys in the order the types serialise them, so stable),
/// first 16 bytes in hex.
fn content_hash(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex(digest.get(..16).unwrap_or_default())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn short_hash(s: &str, bytes: usize) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex(digest.get(..bytes).unwrap_or_default())
}

/// A produced object's name: [`NAME_PREFIX`], then `parts` joined by `:`. Longer than
/// [`MAX_NAME_LEN`]: cut, and ended with `-` and a hash of the whole name, so distinct long
/// names stay distinct.
pub fn object_name(parts: &[&str]) -> String {
    let mut name = String::from(NAME_PREFIX);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            name.push(':');
        }
        name.push_str(p);
    }
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let hash = short_hash(&name, 8);
    let mut cut = MAX_NAME_LEN - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", name.get(..cut).unwrap_or_default())
}

/// `s` as a label value: itself when valid (at most 63 of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric); else its valid characters cut to fit, then `-` and a hash of `s`.
pub fn label_value(s: &str) -> String {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let valid = s.len() <= MAX_LABEL_VALUE_LEN
        && s.chars().all(ok_char)
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
    if valid {
        return s.to_owned();
    }
    let hash = short_hash(s, 6);
    let mut kept: String = s
        .chars()
        .map(|c| if ok_char(c) { c } else { '-' })
        .take(MAX_LABEL_VALUE_LEN - hash.len() - 1)
        .collect();
    while kept.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        kept.pop();
    }
    let kept = kept.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    if kept.is_empty() {
        hash
    } else {
        format!("{kept}-{hash}")
    }
}

/// A ClusterRole with these rules.
pub(crate) fn cluster_role(rules: Vec<PolicyRule>) -> RbacObject {
    RbacObject::ClusterRole(ClusterRole {
        api_version: v1::API_VERSION.into(),
        kind: "ClusterRole".into(),
        metadata: ObjectMeta::default(),
        rules,
        aggregation_rule: None,
    })
}

/// A Role with these rules.
pub(crate) fn role(rules: Vec<PolicyRule>) -> RbacObject {
    RbacObject::Role(Role {
        api_version: v1::API_VERSION.into(),
        kind: "Role".into(),
        metadata: ObjectMeta::default(),
        rules,
    })
}

/// A ClusterRoleBinding of the ClusterRole `role`.
pub(crate) fn cluster_role_binding(subjects: Vec<Subject>, role: String) -> RbacObject {
    RbacObject::ClusterRoleBinding(ClusterRoleBinding {
        api_version: v1::API_VERSION.into(),
        kind: "ClusterRoleBinding".into(),
        metadata: ObjectMeta::default(),
        subjects,
        role_ref: RoleRef {
            api_group: v1::GROUP.into(),
            kind: "ClusterRole".into(),
            name: role,
        },
    })
}

/// A RoleBinding of the Role `role` (of its own namespace).
pub(crate) fn role_binding(subjects: Vec<Subject>, role: String) -> RbacObject {
    RbacObject::RoleBinding(RoleBinding {
        api_version: v1::API_VERSION.into(),
        kind: "RoleBinding".into(),
        metadata: ObjectMeta::default(),
        subjects,
        role_ref: RoleRef {
            api_group: v1::GROUP.into(),
            kind: "Role".into(),
            name: role,
        },
    })
}

/// A namespace object.
pub(crate) fn namespace() -> RbacObject {
    RbacObject::Namespace(ObjectMeta {
        labels: BTreeMap::new(),
        ..ObjectMeta::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_distinct() {
        let a = "a".repeat(300);
        let b = format!("{}b", "a".repeat(299));
        let (na, nb) = (object_name(&["global", &a]), object_name(&["global", &b]));
        assert_eq!(na.len(), MAX_NAME_LEN);
        assert_eq!(nb.len(), MAX_NAME_LEN);
        assert_ne!(na, nb);
        assert_eq!(object_name(&["ws", "w", "r"]), "portcullis:ws:w:r");
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(
            label_value("KommanderRole.ws.view"),
            "KommanderRole.ws.view"
        );
        for s in [
            "KommanderRole.ws.a:b",
            &format!("ClusterScopeRoleBinding.{}.x", "n".repeat(63)),
            ":::",
            "-a-",
        ] {
            let v = label_value(s);
            assert!(v.len() <= 63, "{v}");
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
            );
            assert!(v.starts_with(|c: char| c.is_ascii_alphanumeric()), "{v}");
            assert!(v.ends_with(|c: char| c.is_ascii_alphanumeric()), "{v}");
        }
        assert_ne!(label_value("a:b"), label_value("a;b"));
    }
}
