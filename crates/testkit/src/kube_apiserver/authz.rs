//! Authorization: RBAC over the stored objects, decided as kube-apiserver's RBAC authorizer
//! does, after an optional custom authorizer.

use serde_json::Value;

use super::UserInfo;
use super::objects::{KINDS, Store, meta_str};

/// What a request asks to do, as kube-apiserver's `authorizer.Attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The requesting (or impersonated, or reviewed) user.
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `impersonate`, ...
    pub verb: String,
    /// True for API resources, false for non-resource URLs such as `/version`.
    pub resource_request: bool,
    /// API group (`""` for core).
    pub api_group: String,
    /// Resource, e.g. `roles`.
    pub resource: String,
    /// Subresource, e.g. `exec`.
    pub subresource: String,
    /// Namespace, empty at the cluster scope.
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
    /// The URL path (non-resource requests).
    pub path: String,
}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Allowed or not (not allowed means denied: the double has no further authorizer).
    pub allowed: bool,
    /// Why, as `SubjectAccessReview.status.reason` shows it; empty when denied.
    pub reason: String,
}

impl Decision {
    /// Allowed with a reason.
    pub fn allow(reason: &str) -> Decision {
        Decision {
            allowed: true,
            reason: reason.to_owned(),
        }
    }

    /// Denied.
    pub fn deny() -> Decision {
        Decision::default()
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(rule.get("verbs"));
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return strings(rule.get("nonResourceURLs")).iter().any(|u| {
            *u == "*"
                || *u == a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    let groups = strings(rule.get("apiGroups"));
    if !groups.iter().any(|g| *g == "*" || *g == a.api_group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resources = strings(rule.get("resources"));
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (a.subresource.is_empty() && *r == a.resource)
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
            || (a.subresource.is_empty() && r.strip_suffix("/*") == Some(a.resource.as_str()))
            || (!a.subresource.is_empty() && r.strip_suffix("/*") == Some(a.resource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = strings(rule.get("resourceNames"));
    // As kube-apiserver's RBAC authorizer: resourceNames never match a request without a name.
    names.is_empty() || (!a.name.is_empty() && names.contains(&a.name.as_str()))
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_namespace: &str) -> Option<String> {
    let f = |n: &str| subject.get(n).and_then(Value::as_str).unwrap_or("");
    match f("kind") {
        "User" if f("name") == user.username => Some(format!("User {:?}", f("name"))),
        "Group" if user.groups.iter().any(|g| g == f("name")) => {
            Some(format!("Group {:?}", f("name")))
        }
        "ServiceAccount" => {
            let ns = if f("namespace").is_empty() {
                binding_namespace
            } else {
                f("namespace")
            };
            (user.username == format!("system:serviceaccount:{ns}:{}", f("name")))
                .then(|| format!("ServiceAccount {:?}", format!("{}/{}", ns, f("name"))))
        }
        _ => None,
    }
}

/// RBAC over the objects in `store`: cluster role bindings, then role bindings of the request's
/// namespace; the reason names the first binding that allows.
pub(crate) fn rbac(store: &Store, a: &Attributes) -> Decision {
    let Some(crb) = KINDS.iter().find(|k| k.resource == "clusterrolebindings") else {
        return Decision::deny();
    };
    let Some(rb) = KINDS.iter().find(|k| k.resource == "rolebindings") else {
        return Decision::deny();
    };
    let Some(cr) = KINDS.iter().find(|k| k.resource == "clusterroles") else {
        return Decision::deny();
    };
    let Some(role) = KINDS.iter().find(|k| k.resource == "roles") else {
        return Decision::deny();
    };
    let rules_of = |kind: &str, name: &str, ns: &str| -> Vec<Value> {
        let object = if kind == "ClusterRole" {
            store.get(cr, "", name)
        } else {
            store.get(role, ns, name)
        };
        object
            .and_then(|o| o.get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    };
    for binding in store.list(crb, "") {
        let ref_name = binding
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        for s in binding
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(who) = subject_matches(s, &a.user, "")
                && rules_of("ClusterRole", ref_name, "")
                    .iter()
                    .any(|r| rule_allows(r, a))
            {
                return Decision::allow(&format!(
                    "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {:?} to {who}",
                    meta_str(&binding, "name"),
                    ref_name
                ));
            }
        }
    }
    if a.namespace.is_empty() {
        return Decision::deny();
    }
    for binding in store.list(rb, &a.namespace) {
        let ref_kind = binding
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let ref_name = binding
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        for s in binding
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(who) = subject_matches(s, &a.user, &a.namespace)
                && rules_of(ref_kind, ref_name, &a.namespace)
                    .iter()
                    .any(|r| rule_allows(r, a))
            {
                return Decision::allow(&format!(
                    "RBAC: allowed by RoleBinding {:?} of {ref_kind} {:?} to {who}",
                    format!("{}/{}", meta_str(&binding, "name"), a.namespace),
                    ref_name
                ));
            }
        }
    }
    Decision::deny()
}

/// The rules that apply to `user` in `namespace` (cluster role bindings, then the namespace's role
/// bindings), split into resource and non-resource rules, as `SelfSubjectRulesReview` lists
/// them (A159).
pub(crate) fn rules_for(
    store: &Store,
    user: &UserInfo,
    namespace: &str,
) -> (Vec<Value>, Vec<Value>) {
    let find = |r: &str| KINDS.iter().find(|k| k.resource == r);
    let (Some(crb), Some(rb), Some(cr), Some(role)) = (
        find("clusterrolebindings"),
        find("rolebindings"),
        find("clusterroles"),
        find("roles"),
    ) else {
        return (Vec::new(), Vec::new());
    };
    let mut bindings: Vec<(Value, String)> = store
        .list(crb, "")
        .into_iter()
        .map(|b| (b, String::new()))
        .collect();
    if !namespace.is_empty() {
        bindings.extend(
            store
                .list(rb, namespace)
                .into_iter()
                .map(|b| (b, namespace.to_owned())),
        );
    }
    let (mut resource, mut non_resource) = (Vec::new(), Vec::new());
    for (binding, ns) in bindings {
        let subjects = binding
            .get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !subjects
            .iter()
            .any(|s| subject_matches(s, user, &ns).is_some())
        {
            continue;
        }
        let ref_kind = binding
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let ref_name = binding
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let object = if ref_kind == "ClusterRole" {
            store.get(cr, "", ref_name)
        } else {
            store.get(role, &ns, ref_name)
        };
        let rules = object
            .and_then(|o| o.get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        for rule in rules {
            let mut r = serde_json::Map::new();
            let has = |f: &str| {
                rule.get(f)
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            };
            let fields: &[&str] = if has("nonResourceURLs") {
                &["verbs", "nonResourceURLs"]
            } else {
                &["verbs", "apiGroups", "resources", "resourceNames"]
            };
            for f in fields {
                if has(f) {
                    r.insert(
                        (*f).to_owned(),
                        rule.get(*f).cloned().unwrap_or(Value::Null),
                    );
                }
            }
            if has("nonResourceURLs") {
                non_resource.push(Value::Object(r));
            } else {
                resource.push(Value::Object(r));
            }
        }
    }
    (resource, non_resource)
}

/// The 403 message of kube-apiserver for denied attributes (A143-A168).
pub(crate) fn forbidden_message(a: &Attributes) -> String {
    if !a.resource_request {
        return format!(
            "forbidden: User {:?} cannot {} path {:?}",
            a.user.username, a.verb, a.path
        );
    }
    let mut what = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    if !a.name.is_empty() {
        what = format!("{what} {:?}", a.name);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace {:?}", a.namespace)
    };
    format!(
        "{what} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        a.user.username, a.verb, a.api_group
    )
}
