//! Kubernetes' default (bootstrap) roles and bindings, as data: cluster-admin, admin, edit and
//! view (aggregated through the `rbac.authorization.k8s.io/aggregate-to-*` labels, as upstream),
//! system:discovery, system:basic-user and system:public-info-viewer.

use crate::Policy;
use crate::v1::{ClusterRole, ClusterRoleBinding};

/// The bootstrap policy as multi-document YAML.
pub const BOOTSTRAP_YAML: &str = include_str!("bootstrap.yaml");

/// The bootstrap policy, aggregated.
pub fn policy() -> Policy {
    // The embedded data is tested to parse; an empty policy (deny everything) is the safe
    // fallback should it ever not.
    Policy::from_documents([("bootstrap.yaml", BOOTSTRAP_YAML)]).unwrap_or_default()
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
        let p = Policy::from_documents([("bootstrap.yaml", BOOTSTRAP_YAML)]).unwrap();
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
