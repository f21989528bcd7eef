//! The key layout of stored objects, in one place for every crate that reads or writes them:
//! `/registry/GROUP/PLURAL/NAME` for cluster-scoped objects and
//! `/registry/GROUP/PLURAL/NAMESPACE/NAME` for namespaced ones, as kube-apiserver lays out etcd.

/// Where every object lives.
const ROOT: &str = "/registry/";

/// The key of one object; `namespace` is empty for cluster-scoped kinds.
pub fn object(group: &str, plural: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{ROOT}{group}/{plural}/{name}")
    } else {
        format!("{ROOT}{group}/{plural}/{namespace}/{name}")
    }
}

/// The prefix of a collection: one namespace's objects, or every object of the kind when
/// `namespace` is empty. Ends with `/`, so `roles/a/` never takes in `roles/ab/`.
pub fn collection(group: &str, plural: &str, namespace: &str) -> String {
    if namespace.is_empty() {
        format!("{ROOT}{group}/{plural}/")
    } else {
        format!("{ROOT}{group}/{plural}/{namespace}/")
    }
}

/// The prefix of every object of an API group.
pub fn group(group: &str) -> String {
    format!("{ROOT}{group}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_their_collections_and_groups() {
        let key = object("rbac.authorization.k8s.io", "roles", "ns-a", "r");
        assert_eq!(key, "/registry/rbac.authorization.k8s.io/roles/ns-a/r");
        assert!(key.starts_with(&collection("rbac.authorization.k8s.io", "roles", "ns-a")));
        assert!(key.starts_with(&collection("rbac.authorization.k8s.io", "roles", "")));
        assert!(key.starts_with(&group("rbac.authorization.k8s.io")));
        assert!(!key.starts_with(&collection("rbac.authorization.k8s.io", "roles", "ns")));
        assert_eq!(
            object("portcullis.dev", "workspaces", "", "w"),
            "/registry/portcullis.dev/workspaces/w"
        );
    }
}
