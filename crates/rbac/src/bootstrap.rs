//! Kubernetes' default (bootstrap) roles and bindings of one Kubernetes version, as data: the
//! objects kube-apiserver of [`KUBERNETES_VERSION`] creates (labelled
//! `kubernetes.io/bootstrapping=rbac-defaults`): cluster-admin, admin, edit and view (aggregated
//! through the `rbac.authorization.k8s.io/aggregate-to-*` labels), system:discovery,
//! system:basic-user, system:public-info-viewer, the controllers' roles and their bindings.
//!
//! Moving to another Kubernetes version is a data change: record that version's policy as
//! `bootstrap/kubernetes-vX.Y.yaml` and change the version in `bootstrap_version!` below.

use crate::Policy;
use crate::v1::{ClusterRole, ClusterRoleBinding};

/// The one place the version is named (a macro, so that `include_str!` can use it).
macro_rules! bootstrap_version {
    () => {
        "v1.28"
    };
}

/// The Kubernetes version whose bootstrap policy this is.
pub const KUBERNETES_VERSION: &str = bootstrap_version!();

/// The bootstrap policy as recorded from kube-apiserver (a YAML `List`).
pub const BOOTSTRAP_YAML: &str = include_str!(concat!(
    "bootstrap/kubernetes-",
    bootstrap_version!(),
    ".yaml"
));

fn source_name() -> String {
    format!("bootstrap policy of Kubernetes {KUBERNETES_VERSION}")
}

/// The bootstrap policy, aggregated.
pub fn policy() -> Policy {
    // The embedded data is tested to parse; an empty policy (deny everything) is the safe
    // fallback should it ever not.
    Policy::from_documents([(source_name().as_str(), BOOTSTRAP_YAML)]).unwrap_or_default()
}

/// The bootstrap ClusterRoles (aggregated roles with their rules filled in).
pub fn cluster_roles() -> Vec<ClusterRole> {
    policy().cluster_roles.into_values().collect()
}

/// The bootstrap ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    policy().cluster_role_bindings.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attributes, authorize};

    #[test]
    fn the_embedded_bootstrap_policy_parses_and_aggregates() {
        let p = Policy::from_documents([(source_name().as_str(), BOOTSTRAP_YAML)]).unwrap();
        for name in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:discovery",
            "system:basic-user",
            "system:public-info-viewer",
        ] {
            assert!(p.cluster_roles.contains_key(name), "{name}");
        }
        // view aggregates system:aggregate-to-view; edit aggregates view's rules too.
        assert!(!p.cluster_roles["view"].rules.is_empty());
        assert!(p.cluster_roles["edit"].rules.len() > p.cluster_roles["view"].rules.len());
        assert!(p.cluster_roles["admin"].rules.len() > p.cluster_roles["edit"].rules.len());
    }

    #[test]
    fn aggregation_gives_the_rules_kube_apiserver_recorded() {
        // The recording holds the aggregated roles as the controller filled them in; aggregating
        // them again here (from the labels) must give the same rules in the same order.
        let recorded: serde_json::Value = serde_saphyr::from_str(BOOTSTRAP_YAML).unwrap();
        let p = policy();
        for item in recorded["items"].as_array().unwrap() {
            if item["kind"] != "ClusterRole" || item.get("aggregationRule").is_none() {
                continue;
            }
            let name = item["metadata"]["name"].as_str().unwrap();
            let rules: Vec<crate::v1::PolicyRule> =
                serde_json::from_value(item["rules"].clone()).unwrap();
            assert_eq!(p.cluster_roles[name].rules, rules, "{name}");
        }
    }

    fn allowed(p: &Policy, verb: &str, group: &str, resource: &str) -> bool {
        let a = Attributes {
            user: "u".into(),
            groups: vec!["system:authenticated".into()],
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            namespace: "ns".into(),
            ..Attributes::default()
        };
        authorize(p, &a).allowed
    }

    #[test]
    fn v1_28_basic_user_may_review_itself_and_edit_no_longer_writes_endpoints() {
        assert_eq!(KUBERNETES_VERSION, "v1.28");
        let p = policy();
        assert!(allowed(
            &p,
            "create",
            "authentication.k8s.io",
            "selfsubjectreviews"
        ));
        assert!(allowed(
            &p,
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews"
        ));
        let mut edit = p.clone();
        edit.role_bindings.insert(
            ("ns".into(), "e".into()),
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "e", "namespace": "ns" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit" },
                "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "u" }],
            }))
            .unwrap(),
        );
        assert!(allowed(&edit, "update", "", "configmaps"));
        assert!(allowed(&edit, "get", "", "endpoints"));
        assert!(!allowed(&edit, "update", "", "endpoints"));
    }

    #[test]
    fn anyone_authenticated_may_read_discovery_and_health() {
        let p = policy();
        let a = Attributes {
            user: "someone".into(),
            groups: vec!["system:authenticated".into()],
            verb: "get".into(),
            path: "/apis".into(),
            ..Attributes::default()
        };
        assert!(authorize(&p, &a).allowed);
        let health = Attributes {
            path: "/healthz".into(),
            groups: vec!["system:unauthenticated".into()],
            ..a
        };
        assert!(authorize(&p, &health).allowed);
    }
}
