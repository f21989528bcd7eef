//! The GitOps sink: deterministic, minimal rewrites, every file Kubernetes RBAC.

use std::collections::BTreeMap;
use std::path::Path;

use portcullis_federation::delivery::GitOpsSink;
use portcullis_federation::delivery::gitops::KUSTOMIZATION;

use crate::fixtures::{
    GLOBAL, cluster_scope_binding, cluster_scope_role, delete, fleet, group, planner, read_pods,
    rule, upsert, user,
};

fn model() -> Vec<portcullis_model::Resource> {
    let mut objects = fleet();
    objects.push(cluster_scope_role(GLOBAL, "reader", read_pods()));
    objects.push(cluster_scope_binding(
        GLOBAL,
        "readers",
        "reader",
        vec![group("devs"), user("alice@example.com")],
    ));
    objects.push(cluster_scope_role("ws-a", "ops", read_pods()));
    objects.push(cluster_scope_binding(
        "ws-a",
        "ops",
        "ops",
        vec![group("ops")],
    ));
    objects.push(cluster_scope_role("web", "dev", read_pods()));
    objects.push(cluster_scope_binding(
        "web",
        "devs",
        "dev",
        vec![user("bob")],
    ));
    objects
}

/// Every file under `dir`, relative path → bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for cluster in std::fs::read_dir(dir).unwrap() {
        let cluster = cluster.unwrap();
        for f in std::fs::read_dir(cluster.path()).unwrap() {
            let f = f.unwrap();
            out.insert(
                format!(
                    "{}/{}",
                    cluster.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ),
                std::fs::read(f.path()).unwrap(),
            );
        }
    }
    out
}

#[test]
fn the_same_model_gives_byte_identical_output() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plan = planner(model()).plan().clone();
    GitOpsSink::new(one.path()).write_plan(&plan).unwrap();
    // The same model, built in another order.
    let mut reversed = model();
    reversed.reverse();
    let plan2 = planner(reversed).plan().clone();
    GitOpsSink::new(two.path()).write_plan(&plan2).unwrap();
    let (a, b) = (tree(one.path()), tree(two.path()));
    assert!(a.len() > 10, "{:?}", a.keys());
    assert_eq!(a, b);
    assert!(a.contains_key("a1/kustomization.yaml"));
    assert!(a.contains_key("b1/kustomization.yaml"));
}

#[test]
fn only_changed_files_are_rewritten_and_removed_objects_files_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let sink = GitOpsSink::new(dir.path());
    let mut p = planner(model());
    let first = sink.write_plan(p.plan()).unwrap();
    assert_eq!(first.unchanged, 0);
    let again = sink.write_plan(p.plan()).unwrap();
    assert!(
        again.written.is_empty() && again.removed.is_empty(),
        "{again:?}"
    );

    // One Global role changed: its file on each of the three clusters, nothing else.
    p.apply(upsert(cluster_scope_role(
        GLOBAL,
        "reader",
        vec![rule(&["get"], &[""], &["services"])],
    )));
    let changed = sink.write_plan(p.plan()).unwrap();
    assert_eq!(changed.written.len(), 3, "{changed:?}");
    assert!(
        changed
            .written
            .iter()
            .all(|f| f.starts_with("clusterrole-portcullis_global_reader"))
    );
    assert!(changed.removed.is_empty());

    // A project binding deleted: its file goes, and the kustomization of that cluster changes.
    p.apply(delete("ClusterScopeRoleBinding", "web", "devs"));
    let removed = sink.write_plan(p.plan()).unwrap();
    assert_eq!(removed.removed.len(), 1, "{removed:?}");
    assert_eq!(removed.written, [KUSTOMIZATION]);
    let kustomization = std::fs::read_to_string(dir.path().join("a1").join(KUSTOMIZATION)).unwrap();
    assert!(!kustomization.contains(&removed.removed[0]));
}

#[test]
fn every_file_parses_as_kubernetes_rbac_and_the_kustomization_lists_them_all() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

    let dir = tempfile::tempdir().unwrap();
    let plan = planner(model()).plan().clone();
    GitOpsSink::new(dir.path()).write_plan(&plan).unwrap();
    for cluster in ["a1", "a2", "b1"] {
        let cdir = dir.path().join(cluster);
        let k: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(cdir.join(KUSTOMIZATION)).unwrap())
                .unwrap();
        assert_eq!(k["kind"], "Kustomization");
        let listed: Vec<String> = k["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let mut on_disk: Vec<String> = std::fs::read_dir(&cdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != KUSTOMIZATION)
            .collect();
        on_disk.sort();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(sorted, on_disk);
        assert_eq!(
            listed.len(),
            plan.desired(&portcullis_federation::Target::Cluster(cluster.into()))
                .len()
        );
        for f in listed {
            let text = std::fs::read_to_string(cdir.join(&f)).unwrap();
            let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            let kind = v["kind"].as_str().unwrap().to_owned();
            let parsed = match kind.as_str() {
                "Namespace" => serde_saphyr::from_str::<Namespace>(&text).map(|_| ()),
                "ClusterRole" => serde_saphyr::from_str::<ClusterRole>(&text).map(|_| ()),
                "ClusterRoleBinding" => {
                    serde_saphyr::from_str::<ClusterRoleBinding>(&text).map(|_| ())
                }
                "Role" => serde_saphyr::from_str::<Role>(&text).map(|_| ()),
                "RoleBinding" => serde_saphyr::from_str::<RoleBinding>(&text).map(|_| ()),
                other => panic!("{f}: unexpected kind {other}"),
            };
            parsed.unwrap_or_else(|e| panic!("{cluster}/{f} is not a {kind}: {e}\n{text}"));
            // The YAML holds exactly the planned object.
            let planned = plan
                .desired(&portcullis_federation::Target::Cluster(cluster.into()))
                .values()
                .find(|o| portcullis_federation::delivery::gitops::file_name(&o.key) == f)
                .unwrap()
                .object
                .to_json();
            assert_eq!(v, planned, "{cluster}/{f}");
        }
    }
}
