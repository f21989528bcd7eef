//! Escalation prevention across scopes: a write grants only what its writer holds on every
//! cluster it reaches.

use portcullis_federation::escalation::{Writer, check_write};
use portcullis_federation::{FleetSnapshot, Planner};

use crate::fixtures::*;

/// ann holds `get`/`list` on pods cluster-wide on workspace a's clusters, and may manage
/// roles and bindings in a's namespace on the management plane.
fn setup() -> Planner {
    let mut objects = fleet();
    objects.push(cluster_scope_role("ws-a", "ops", read_pods()));
    objects.push(cluster_scope_binding(
        "ws-a",
        "ann-ops",
        "ops",
        vec![user("ann")],
    ));
    objects.push(cluster_scope_role(
        "ws-a",
        "everything",
        vec![rule(&["*"], &["*"], &["*"])],
    ));
    objects.push(kommander_role(
        "ws-a",
        "access",
        vec![rule(
            &["*"],
            &["portcullis.dev"],
            &[
                "clusterscoperoles",
                "clusterscoperolebindings",
                "kommanderroles",
                "kommanderrolebindings",
            ],
        )],
        false,
    ));
    objects.push(kommander_binding(
        "ws-a",
        "ann-access",
        "access",
        vec![user("ann")],
    ));
    planner(objects)
}

fn check(p: &Planner, change: portcullis_federation::Change) -> Result<(), String> {
    let snap = FleetSnapshot::new(p.plan());
    check_write(
        p,
        &snap,
        None,
        Writer {
            user: "ann",
            groups: &[],
        },
        change,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn a_grant_within_ones_holdings_is_allowed_at_each_scope() {
    let p = setup();
    check(
        &p,
        upsert(cluster_scope_role("ws-a", "readers", read_pods())),
    )
    .unwrap();
    check(
        &p,
        upsert(cluster_scope_role("web", "readers", read_pods())),
    )
    .unwrap();
    check(
        &p,
        upsert(cluster_scope_binding(
            "ws-a",
            "bob-ops",
            "ops",
            vec![user("bob")],
        )),
    )
    .unwrap();
    // Management plane: a Role in her workspace namespace with rules she holds there.
    check(
        &p,
        upsert(kommander_role(
            "ws-a",
            "roles",
            vec![rule(&["get"], &["portcullis.dev"], &["kommanderroles"])],
            false,
        )),
    )
    .unwrap();
    // A binding to a role that does not exist is the registry's 404.
    let e = check(
        &p,
        upsert(cluster_scope_binding(
            "ws-a",
            "later",
            "not-yet",
            vec![user("bob")],
        )),
    )
    .unwrap_err();
    assert_eq!(e, "clusterscoperoles.portcullis.dev \"not-yet\" not found");
    // Deleting grants nothing.
    check(&p, delete("ClusterScopeRoleBinding", "ws-a", "ann-ops")).unwrap();
}

#[test]
fn a_grant_beyond_ones_holdings_is_refused_naming_the_cluster_and_rule() {
    let p = setup();
    // Workspace scope, a rule she does not hold.
    let e = check(
        &p,
        upsert(cluster_scope_role(
            "ws-a",
            "secrets",
            vec![rule(&["delete"], &[""], &["secrets"])],
        )),
    )
    .unwrap_err();
    assert!(e.contains("on cluster \"a1\""), "{e}");
    assert!(
        e.contains("Resources:[\"secrets\"]") && e.contains("Verbs:[\"delete\"]"),
        "{e}"
    );
    // Global scope: even rules she holds in her workspace reach b1, where she holds nothing.
    let e = check(
        &p,
        upsert(cluster_scope_role(GLOBAL, "readers", read_pods())),
    )
    .unwrap_err();
    assert!(e.contains("on cluster \"b1\""), "{e}");
    // Project scope, beyond her holdings.
    let e = check(
        &p,
        upsert(cluster_scope_role(
            "web",
            "all",
            vec![rule(&["*"], &["*"], &["*"])],
        )),
    )
    .unwrap_err();
    assert!(e.contains("on cluster \"a1\""), "{e}");
    // Binding a role she does not hold (cluster-admin-like) in her own workspace.
    let e = check(
        &p,
        upsert(cluster_scope_binding(
            "ws-a",
            "me-all",
            "everything",
            vec![user("ann")],
        )),
    )
    .unwrap_err();
    assert!(
        e.contains("on cluster \"a1\"") && e.contains("APIGroups:[\"*\"]"),
        "{e}"
    );
    // Management plane: a Global KommanderRole is a ClusterRole she does not hold.
    let e = check(
        &p,
        upsert(kommander_role(
            GLOBAL,
            "mine",
            vec![rule(&["get"], &["portcullis.dev"], &["kommanderroles"])],
            false,
        )),
    )
    .unwrap_err();
    assert!(e.contains("on cluster \"management\""), "{e}");
    // Changing a binding's subjects to herself on a role she lacks is refused too.
    let e = check(
        &p,
        upsert(cluster_scope_binding(
            "ws-a",
            "ann-ops",
            "everything",
            vec![user("ann")],
        )),
    )
    .unwrap_err();
    assert!(e.contains("permissions not held"), "{e}");
}

#[test]
fn the_management_planes_own_rbac_counts_as_held() {
    let p = setup();
    let snap = FleetSnapshot::new(p.plan());
    let mut own = portcullis_rbac::Policy::default();
    own.add_object(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "all"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
    })).unwrap();
    own.add_object(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "ann-all"}, "subjects": [{"kind": "User", "name": "ann", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "ClusterRole", "name": "all", "apiGroup": "rbac.authorization.k8s.io"}
    })).unwrap();
    let change = upsert(kommander_role(
        GLOBAL,
        "mine",
        vec![rule(&["get"], &["portcullis.dev"], &["kommanderroles"])],
        false,
    ));
    check_write(
        &p,
        &snap,
        Some(&own),
        Writer {
            user: "ann",
            groups: &[],
        },
        change,
    )
    .unwrap();
}
