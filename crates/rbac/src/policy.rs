//! A policy: every Role, ClusterRole, RoleBinding and ClusterRoleBinding, parsed from
//! Kubernetes YAML or JSON, with ClusterRole aggregation applied.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::Error;
use crate::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};

/// A verb is `*` or lower-case letters: Kubernetes allows custom verbs (`use`, `escalate`),
/// but `Get`, `get ` or `list,watch` are typos that would silently grant nothing.
fn valid_verb(v: &str) -> bool {
    v == "*" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Every RBAC object of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Roles by namespace and name.
    pub roles: BTreeMap<(String, String), Role>,
    /// ClusterRoles by name.
    pub cluster_roles: BTreeMap<String, ClusterRole>,
    /// RoleBindings by namespace and name.
    pub role_bindings: BTreeMap<(String, String), RoleBinding>,
    /// ClusterRoleBindings by name.
    pub cluster_role_bindings: BTreeMap<String, ClusterRoleBinding>,
}

impl Policy {
    /// Parses sources of multi-document YAML or JSON (`List` kinds are expanded) and applies
    /// aggregation.
    pub fn from_documents<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Policy, Error> {
        let mut p = Policy::default();
        for (source, text) in sources {
            p.add_source(source, text)?;
        }
        p.aggregate();
        Ok(p)
    }

    /// Adds the objects of one source (without re-aggregating): a file the user named, read as
    /// [`portcullis_model::decode::local_documents`] reads it (JSON as JSON; YAML with limits
    /// that grow with its size).
    pub fn add_source(&mut self, source: &str, text: &str) -> Result<(), Error> {
        let first = text.bytes().find(|b| !b.is_ascii_whitespace());
        if first == Some(b'{') {
            match self.add_json(source, text) {
                Ok(()) => return Ok(()),
                // Not JSON after all (a YAML flow mapping starts with `{` too): read it as
                // YAML, which names the error if it is neither.
                Err(JsonError::Syntax) => {}
                Err(JsonError::Object(e)) => return Err(e),
            }
        }
        let docs = portcullis_model::decode::local_documents(text)
            .map_err(|message| Error::decode("", message).in_document(source, 1))?;
        self.add_documents(source, docs)
    }

    /// Adds the objects of JSON text (one value or several after one another; `List`s
    /// expanded), each decoded straight from its bytes into its type: a dump of a large cluster
    /// is read without building a JSON value of every object first (several times faster).
    fn add_json(&mut self, source: &str, text: &str) -> Result<(), JsonError> {
        let docs = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
        for (i, doc) in docs.enumerate() {
            let doc = doc.map_err(|_| JsonError::Syntax)?;
            let at = |e: Error| JsonError::Object(e.in_document(source, i + 1));
            let head: Head<'_> = serde_json::from_str(doc.get()).map_err(|_| JsonError::Syntax)?;
            if head.kind.as_deref().is_some_and(|k| k.ends_with("List")) {
                let Some(items) = head.items else {
                    return Err(at(Error::decode("items", "a List needs items")));
                };
                for (j, item) in items.iter().enumerate() {
                    self.add_raw(item.get())
                        .map_err(|e| at(e.under(&format!("items[{j}]"))))?;
                }
            } else {
                self.add_raw(doc.get()).map_err(at)?;
            }
        }
        Ok(())
    }

    /// Adds one object from its JSON text, decoded straight into its type.
    fn add_raw(&mut self, json: &str) -> Result<(), Error> {
        let head: Head<'_> =
            serde_json::from_str(json).map_err(|e| Error::decode("", e.to_string()))?;
        check_api_version(head.api_version.as_deref().unwrap_or_default())?;
        match head.kind.as_deref().unwrap_or_default() {
            "Role" => self.insert_role(decode_str(json)?),
            "ClusterRole" => self.insert_cluster_role(decode_str(json)?),
            "RoleBinding" => self.insert_role_binding(decode_str(json)?),
            "ClusterRoleBinding" => self.insert_cluster_role_binding(decode_str(json)?),
            other => Err(unknown_kind(other)),
        }
    }

    /// Adds parsed documents of one source (without re-aggregating); `List` kinds are expanded.
    pub fn add_documents(&mut self, source: &str, docs: Vec<Value>) -> Result<(), Error> {
        for (i, doc) in docs.into_iter().enumerate() {
            let at = |e: Error| e.in_document(source, i + 1);
            if doc.is_null() {
                continue;
            }
            let is_list = doc
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|kind| kind.ends_with("List"));
            if is_list {
                let items = match doc {
                    Value::Object(mut map) => map.remove("items"),
                    _ => None,
                };
                let Some(Value::Array(items)) = items else {
                    return Err(at(Error::decode("items", "a List needs items")));
                };
                for (j, item) in items.into_iter().enumerate() {
                    self.add_object(item)
                        .map_err(|e| at(e.under(&format!("items[{j}]"))))?;
                }
            } else {
                self.add_object(doc).map_err(at)?;
            }
        }
        Ok(())
    }

    /// Adds one object given as JSON.
    pub fn add_object(&mut self, object: Value) -> Result<(), Error> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        check_api_version(api_version)?;
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "Role" => self.insert_role(decode(object)?),
            "ClusterRole" => self.insert_cluster_role(decode(object)?),
            "RoleBinding" => self.insert_role_binding(decode(object)?),
            "ClusterRoleBinding" => self.insert_cluster_role_binding(decode(object)?),
            other => Err(unknown_kind(other)),
        }
    }

    fn insert_role(&mut self, r: Role) -> Result<(), Error> {
        let ns = namespace_of(&r.metadata)?;
        check_rules(&r.rules, true)?;
        self.roles.insert((ns, r.metadata.name.clone()), r);
        Ok(())
    }

    fn insert_cluster_role(&mut self, r: ClusterRole) -> Result<(), Error> {
        name_of(&r.metadata)?;
        check_rules(&r.rules, false)?;
        self.cluster_roles.insert(r.metadata.name.clone(), r);
        Ok(())
    }

    fn insert_role_binding(&mut self, b: RoleBinding) -> Result<(), Error> {
        let ns = namespace_of(&b.metadata)?;
        check_role_ref(&b.role_ref.kind, &["Role", "ClusterRole"], &b.role_ref.name)?;
        self.role_bindings.insert((ns, b.metadata.name.clone()), b);
        Ok(())
    }

    fn insert_cluster_role_binding(&mut self, b: ClusterRoleBinding) -> Result<(), Error> {
        name_of(&b.metadata)?;
        check_role_ref(&b.role_ref.kind, &["ClusterRole"], &b.role_ref.name)?;
        self.cluster_role_bindings
            .insert(b.metadata.name.clone(), b);
        Ok(())
    }

    /// Fills in the rules of aggregated ClusterRoles: the union of the rules of every other
    /// ClusterRole whose labels match one of its selectors, as the aggregation controller keeps
    /// them (repeated until nothing changes, so aggregated roles can feed each other).
    pub fn aggregate(&mut self) {
        for _ in 0..8 {
            let mut changed = false;
            let names: Vec<String> = self
                .cluster_roles
                .iter()
                .filter(|(_, r)| r.aggregation_rule.is_some())
                .map(|(n, _)| n.clone())
                .collect();
            for name in names {
                let Some(rule) = self
                    .cluster_roles
                    .get(&name)
                    .and_then(|r| r.aggregation_rule.clone())
                else {
                    continue;
                };
                let mut rules: Vec<PolicyRule> = Vec::new();
                for (other_name, other) in &self.cluster_roles {
                    if *other_name == name {
                        continue;
                    }
                    let matches = rule
                        .cluster_role_selectors
                        .iter()
                        .any(|s| s.matches(&other.metadata.labels));
                    if matches {
                        for r in &other.rules {
                            if !rules.contains(r) {
                                rules.push(r.clone());
                            }
                        }
                    }
                }
                if let Some(role) = self.cluster_roles.get_mut(&name)
                    && role.rules != rules
                {
                    role.rules = rules;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The rules of the role a binding references, or `None` when it does not exist (a binding to
    /// a missing role grants nothing).
    pub fn role_rules(&self, namespace: &str, kind: &str, name: &str) -> Option<&[PolicyRule]> {
        match kind {
            "ClusterRole" => self.cluster_roles.get(name).map(|r| r.rules.as_slice()),
            "Role" => self
                .roles
                .get(&(namespace.to_owned(), name.to_owned()))
                .map(|r| r.rules.as_slice()),
            _ => None,
        }
    }

    /// Number of bindings (for sizing and logs).
    pub fn binding_count(&self) -> usize {
        self.role_bindings.len() + self.cluster_role_bindings.len()
    }

    /// Namespaces that have RoleBindings.
    pub fn namespaces(&self) -> HashMap<&str, usize> {
        let mut out = HashMap::new();
        for (ns, _) in self.role_bindings.keys() {
            *out.entry(ns.as_str()).or_insert(0) += 1;
        }
        out
    }
}

/// Why JSON text could not be added: it is not JSON (read it as YAML), or an object in it is
/// wrong (a final error).
enum JsonError {
    Syntax,
    Object(Error),
}

/// What is read of a document before its type is known: its kind, and a List's items as text.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    items: Option<Vec<&'a RawValue>>,
}

fn check_api_version(api_version: &str) -> Result<(), Error> {
    if api_version != crate::v1::API_VERSION {
        return Err(Error::decode(
            "apiVersion",
            format!("{api_version:?} is not {:?}", crate::v1::API_VERSION),
        ));
    }
    Ok(())
}

fn unknown_kind(kind: &str) -> Error {
    Error::decode(
        "kind",
        format!(
            "unknown kind {kind:?}: expected Role, ClusterRole, RoleBinding, ClusterRoleBinding or a List of them"
        ),
    )
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(v).map_err(path_error)
}

fn decode_str<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(path_error)
}

fn path_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> Error {
    Error::from_serde(e)
}

fn name_of(meta: &portcullis_model::ObjectMeta) -> Result<(), Error> {
    if meta.name.is_empty() {
        return Err(Error::decode("metadata.name", "is required"));
    }
    Ok(())
}

fn namespace_of(meta: &portcullis_model::ObjectMeta) -> Result<String, Error> {
    name_of(meta)?;
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => Ok(ns.to_owned()),
        _ => Err(Error::decode(
            "metadata.namespace",
            "is required for namespaced kinds",
        )),
    }
}

fn check_role_ref(kind: &str, allowed: &[&str], name: &str) -> Result<(), Error> {
    if !allowed.contains(&kind) {
        return Err(Error::decode(
            "roleRef.kind",
            format!("{kind:?} is not one of {allowed:?}"),
        ));
    }
    if name.is_empty() {
        return Err(Error::decode("roleRef.name", "is required"));
    }
    Ok(())
}

fn check_rules(rules: &[PolicyRule], namespaced: bool) -> Result<(), Error> {
    for (i, r) in rules.iter().enumerate() {
        if r.verbs.is_empty() {
            return Err(Error::decode(
                format!("rules[{i}].verbs"),
                "at least one verb is required",
            ));
        }
        if let Some(v) = r.verbs.iter().find(|v| !valid_verb(v)) {
            return Err(Error::decode(
                format!("rules[{i}].verbs"),
                format!(
                    "invalid verb {v:?}: verbs are `*` or lower-case words such as get, list, watch"
                ),
            ));
        }
        if !r.non_resource_urls.is_empty() {
            if namespaced {
                return Err(Error::decode(
                    format!("rules[{i}].nonResourceURLs"),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !r.resources.is_empty() || !r.api_groups.is_empty() || !r.resource_names.is_empty() {
                return Err(Error::decode(
                    format!("rules[{i}]"),
                    "a rule is either for resources or for nonResourceURLs, not both",
                ));
            }
        } else if r.api_groups.is_empty() {
            // As kube-apiserver's ValidatePolicyRule.
            return Err(Error::decode(
                format!("rules[{i}].apiGroups"),
                "resource rules must supply at least one api group (\"\" is the core group)",
            ));
        } else if r.resources.is_empty() {
            return Err(Error::decode(
                format!("rules[{i}].resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    Ok(())
}
