//! The default route roles of a protected service, as data: `view`, `edit` and `admin`
//! ClusterRoles over its path prefix (DKP's `dkp-view`, `dkp-edit`, `dkp-admin` pattern),
//! for binding to groups with ClusterRoleBindings.

use serde_json::{Value, json};

/// The level a route role grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `get` (GET and HEAD).
    View,
    /// `get`, `post`, `put`, `patch`, `delete`.
    Edit,
    /// Every verb.
    Admin,
}

impl Level {
    /// `view`, `edit`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::View => "view",
            Level::Edit => "edit",
            Level::Admin => "admin",
        }
    }

    /// The verbs granted.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Level::View => &["get"],
            Level::Edit => &["get", "post", "put", "patch", "delete"],
            Level::Admin => &["*"],
        }
    }
}

/// The name of `service`'s role at `level`: `portcullis-forward-auth:<service>-<level>`.
pub fn role_name(service: &str, level: Level) -> String {
    format!("portcullis-forward-auth:{service}-{}", level.as_str())
}

/// The three ClusterRoles of `service`, whose paths are under `prefix` (`/grafana`): the
/// prefix itself and everything below it.
pub fn route_roles(service: &str, prefix: &str) -> Vec<Value> {
    let prefix = prefix.trim_end_matches('/');
    let urls = if prefix.is_empty() {
        vec!["/*".to_owned()]
    } else {
        vec![prefix.to_owned(), format!("{prefix}/*")]
    };
    [Level::View, Level::Edit, Level::Admin]
        .into_iter()
        .map(|level| {
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {
                    "name": role_name(service, level),
                    "labels": { "portcullis.dev/route-role": level.as_str() },
                },
                "rules": [{ "nonResourceURLs": urls, "verbs": level.verbs() }],
            })
        })
        .collect()
}

/// A ClusterRoleBinding of `service`'s `level` role to `group` (as RBAC sees it: prefixed).
pub fn bind_group(service: &str, level: Level, group: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": format!("{}:{group}", role_name(service, level)) },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role_name(service, level),
        },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_rbac::{Attributes, CompiledPolicy, Policy};

    #[test]
    fn view_reads_edit_writes_admin_does_all() {
        let mut docs = route_roles("grafana", "/grafana");
        docs.push(bind_group("grafana", Level::View, "oidc:viewers"));
        docs.push(bind_group("grafana", Level::Edit, "oidc:editors"));
        let mut policy = Policy::default();
        policy.add_documents("roles", docs).unwrap();
        policy.aggregate();
        let compiled = CompiledPolicy::new(&policy);
        let ask = |group: &str, verb: &str, path: &str| {
            compiled
                .authorize(&Attributes {
                    user: "u".into(),
                    groups: vec![group.into()],
                    verb: verb.into(),
                    path: path.into(),
                    ..Attributes::default()
                })
                .allowed
        };
        assert!(ask("oidc:viewers", "get", "/grafana/d/x"));
        assert!(ask("oidc:viewers", "get", "/grafana"));
        assert!(!ask("oidc:viewers", "post", "/grafana/d/x"));
        assert!(!ask("oidc:viewers", "get", "/grafanax"));
        assert!(ask("oidc:editors", "post", "/grafana/api"));
        assert!(!ask("oidc:editors", "get", "/other"));
    }
}
