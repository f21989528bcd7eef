//! Builders for the model's objects, and small helpers over a plan.

use std::collections::BTreeMap;

use portcullis_federation::{
    Change, Model, ObjectKey, ObjectKind, Plan, Planner, PlannerConfig, Target,
};
use portcullis_model::{
    Cluster, ClusterScopeRole, ClusterScopeRoleBinding, ClusterSpec, KommanderRole,
    KommanderRoleBinding, LabelSelector, LocalObjectReference, PolicyRule, Project,
    ProjectPlacement, ProjectSpec, Resource, Subject, SubjectKind, Workspace, WorkspaceSpec,
};

pub const GLOBAL: &str = portcullis_model::GLOBAL_NAMESPACE;

pub fn workspace(name: &str, ns: &str) -> Resource {
    Resource::Workspace(Workspace::new(
        name,
        WorkspaceSpec {
            namespace_name: ns.into(),
            ..WorkspaceSpec::default()
        },
    ))
}

/// A project in workspace namespace `ws_ns`, placed on `clusters` by name and on clusters
/// matching `selector` (a label selector string) when given.
pub fn project(
    ws_ns: &str,
    name: &str,
    ns: &str,
    clusters: &[&str],
    selector: Option<&str>,
) -> Resource {
    let mut p = Project::new(
        name,
        ProjectSpec {
            namespace_name: ns.into(),
            placement: ProjectPlacement {
                clusters: clusters
                    .iter()
                    .map(|c| LocalObjectReference { name: (*c).into() })
                    .collect(),
                cluster_selector: selector.map(|s| LabelSelector::parse(s).unwrap()),
            },
            ..ProjectSpec::default()
        },
    );
    p.metadata.namespace = Some(ws_ns.into());
    Resource::Project(p)
}

pub fn cluster(ws_ns: &str, name: &str, labels: &[(&str, &str)]) -> Resource {
    let mut c = Cluster::new(
        name,
        ClusterSpec {
            api_server_url: format!("https://{name}.example.com:6443"),
            ..ClusterSpec::default()
        },
    );
    c.metadata.namespace = Some(ws_ns.into());
    c.metadata.labels = labels
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    Resource::Cluster(c)
}

pub fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        verbs: v(verbs),
        api_groups: v(groups),
        resources: v(resources),
        ..PolicyRule::default()
    }
}

pub fn read_pods() -> Vec<PolicyRule> {
    vec![rule(&["get", "list"], &[""], &["pods"])]
}

pub fn kommander_role(ns: &str, name: &str, rules: Vec<PolicyRule>, sync: bool) -> Resource {
    let mut r = KommanderRole::new(ns, name, rules);
    if sync {
        r.metadata.annotations.insert(
            portcullis_model::SYNC_TO_PROJECT_ANNOTATION.into(),
            "true".into(),
        );
    }
    Resource::KommanderRole(r)
}

pub fn cluster_scope_role(ns: &str, name: &str, rules: Vec<PolicyRule>) -> Resource {
    Resource::ClusterScopeRole(ClusterScopeRole::new(ns, name, rules))
}

pub fn user(name: &str) -> Subject {
    Subject {
        kind: SubjectKind::User,
        name: name.into(),
        api_group: String::new(),
    }
}

pub fn group(name: &str) -> Subject {
    Subject {
        kind: SubjectKind::Group,
        name: name.into(),
        api_group: String::new(),
    }
}

pub fn portcullis_group(name: &str) -> Subject {
    Subject {
        kind: SubjectKind::Group,
        name: name.into(),
        api_group: portcullis_model::GROUP.into(),
    }
}

pub fn kommander_binding(ns: &str, name: &str, role: &str, subjects: Vec<Subject>) -> Resource {
    Resource::KommanderRoleBinding(KommanderRoleBinding::new(ns, name, role, subjects))
}

pub fn cluster_scope_binding(ns: &str, name: &str, role: &str, subjects: Vec<Subject>) -> Resource {
    Resource::ClusterScopeRoleBinding(ClusterScopeRoleBinding::new(ns, name, role, subjects))
}

pub fn upsert(r: Resource) -> Change {
    Change::Upsert(Box::new(r))
}

pub fn delete(kind: &str, ns: &str, name: &str) -> Change {
    Change::Delete {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

pub fn planner(objects: Vec<Resource>) -> Planner {
    Planner::new(PlannerConfig::default(), Model::from_resources(objects))
}

pub fn cluster_target(name: &str) -> Target {
    Target::Cluster(name.into())
}

/// `target`'s desired objects as `Kind/ns/name` strings.
pub fn keys(plan: &Plan, target: &Target) -> Vec<String> {
    plan.desired(target)
        .keys()
        .map(ToString::to_string)
        .collect()
}

pub fn key(kind: ObjectKind, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

/// A small fleet: workspaces `a` (namespace `ws-a`, clusters a1 (env=prod), a2 (env=dev)) and
/// `b` (`ws-b`, cluster b1), project `web` in `a` (namespace `web`, placed on env=prod) and
/// `api` in `a` (namespace `api`, placed on a2 by name).
pub fn fleet() -> Vec<Resource> {
    vec![
        workspace("a", "ws-a"),
        workspace("b", "ws-b"),
        cluster("ws-a", "a1", &[("env", "prod")]),
        cluster("ws-a", "a2", &[("env", "dev")]),
        cluster("ws-b", "b1", &[("env", "prod")]),
        project("ws-a", "web", "web", &[], Some("env=prod")),
        project("ws-a", "api", "api", &["a2"], None),
    ]
}

pub fn labels_of(plan: &Plan, target: &Target, k: &ObjectKey) -> BTreeMap<String, String> {
    plan.desired(target)
        .get(k)
        .map(|o| o.object.meta().labels.clone())
        .unwrap_or_default()
}
