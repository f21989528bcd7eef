//! The default roles: what every workspace and project starts with, and the dashboard route
//! roles. They are ordinary objects: the management plane creates them once, when the
//! workspace or project is created (and the global ones at first start); they can be edited,
//! and a deleted one comes back only by an explicit reset.
//!
//! Rules follow Kubernetes' aggregated `admin`/`edit`/`view`: view reads, edit also changes
//! what is not access control, admin also manages roles and bindings (which escalation
//! prevention still checks). On attached clusters the `ClusterScopeRole` defaults carry the
//! rules of Kubernetes' own `admin`, `edit` and `view` ClusterRoles (v1.28 bootstrap policy).

use std::collections::BTreeMap;

use portcullis_model::{
    ClusterScopeRole, GLOBAL_NAMESPACE, KommanderRole, ObjectMeta, PolicyRule, Project, Resource,
    SYNC_TO_PROJECT_ANNOTATION, Workspace,
};

/// Annotation on every default role, so that a reset knows what it may rewrite.
pub const DEFAULT_ANNOTATION: &str = "portcullis.dev/default";

/// The three levels of the defaults.
const LEVELS: [&str; 3] = ["admin", "edit", "view"];

/// The default mapping of synced workspace roles to project roles.
pub fn project_role_for(workspace_role: &str) -> Option<&'static str> {
    match workspace_role {
        "kommander-workspace-admin" => Some("kommander-project-admin"),
        "kommander-workspace-edit" => Some("kommander-project-edit"),
        "kommander-workspace-view" => Some("kommander-project-view"),
        _ => None,
    }
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        verbs: v(verbs),
        api_groups: v(groups),
        resources: v(resources),
        ..PolicyRule::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const ACCESS_KINDS: &[&str] = &[
    "kommanderroles",
    "kommanderrolebindings",
    "clusterscoperoles",
    "clusterscoperolebindings",
];

/// Management-plane rules of a level for a workspace namespace (`workspace`) or a project
/// namespace.
fn management_rules(level: &str, workspace: bool) -> Vec<PolicyRule> {
    let g = &[portcullis_model::GROUP];
    let objects: &[&str] = if workspace {
        &["projects", "clusters"]
    } else {
        &[]
    };
    let mut readable: Vec<&str> = objects.to_vec();
    readable.extend_from_slice(ACCESS_KINDS);
    let mut rules = vec![rule(READ, g, &readable)];
    if matches!(level, "admin" | "edit") && !objects.is_empty() {
        rules.push(rule(WRITE, g, objects));
    }
    if level == "admin" {
        rules.push(rule(WRITE, g, ACCESS_KINDS));
    }
    rules
}

/// Rules of Kubernetes' aggregated ClusterRole `name` (`admin`, `edit`, `view`).
fn kubernetes_rules(name: &str) -> Vec<PolicyRule> {
    // The bootstrap policy is parsed from YAML: once.
    static POLICY: std::sync::OnceLock<portcullis_rbac::Policy> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(portcullis_rbac::bootstrap::policy)
        .cluster_roles
        .get(name)
        .map(|r| {
            r.rules
                .iter()
                .map(|r| PolicyRule {
                    verbs: r.verbs.clone(),
                    api_groups: r.api_groups.clone(),
                    resources: r.resources.clone(),
                    resource_names: r.resource_names.clone(),
                    non_resource_urls: r.non_resource_urls.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn meta(namespace: &str, name: &str, sync: bool) -> ObjectMeta {
    let mut annotations = BTreeMap::new();
    annotations.insert(DEFAULT_ANNOTATION.to_owned(), "true".to_owned());
    if sync {
        annotations.insert(SYNC_TO_PROJECT_ANNOTATION.to_owned(), "true".to_owned());
    }
    ObjectMeta {
        name: name.to_owned(),
        namespace: Some(namespace.to_owned()),
        annotations,
        ..ObjectMeta::default()
    }
}

fn kommander_role(namespace: &str, name: &str, sync: bool, rules: Vec<PolicyRule>) -> Resource {
    let mut r = KommanderRole::new(namespace, name, rules);
    r.metadata = meta(namespace, name, sync);
    Resource::KommanderRole(r)
}

fn cluster_scope_role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Resource {
    let mut r = ClusterScopeRole::new(namespace, name, rules);
    r.metadata = meta(namespace, name, false);
    Resource::ClusterScopeRole(r)
}

/// The defaults of a workspace: `kommander-workspace-{admin,edit,view}` as `KommanderRole`s
/// (synced to projects) and as `ClusterScopeRole`s.
pub fn workspace(ws: &Workspace) -> Vec<Resource> {
    let ns = ws.namespace_name();
    let mut out = Vec::new();
    for level in LEVELS {
        let name = format!("kommander-workspace-{level}");
        out.push(kommander_role(
            ns,
            &name,
            true,
            management_rules(level, true),
        ));
        out.push(cluster_scope_role(ns, &name, kubernetes_rules(level)));
    }
    out
}

/// The defaults of a project: `kommander-project-{admin,edit,view}` as `KommanderRole`s and
/// as `ClusterScopeRole`s (Roles in the project namespace on its clusters).
pub fn project(p: &Project) -> Vec<Resource> {
    let ns = &p.spec.namespace_name;
    let mut out = Vec::new();
    for level in LEVELS {
        let name = format!("kommander-project-{level}");
        out.push(kommander_role(
            ns,
            &name,
            false,
            management_rules(level, false),
        ));
        out.push(cluster_scope_role(ns, &name, kubernetes_rules(level)));
    }
    out
}

/// Path prefix of the web UIs behind forward auth that the dashboard roles cover.
pub const DASHBOARD_PATH: &str = "/dashboard";

/// The global defaults: the dashboard route roles `kommander-dashboard-{view,edit,admin}`
/// (non-resource URLs under [`DASHBOARD_PATH`], for forward auth), on the management plane and
/// on every attached cluster.
pub fn global() -> Vec<Resource> {
    let urls = vec![DASHBOARD_PATH.to_owned(), format!("{DASHBOARD_PATH}/*")];
    let mut out = Vec::new();
    for (level, verbs) in [
        ("view", &["get", "head"][..]),
        (
            "edit",
            &["get", "head", "post", "put", "patch", "delete"][..],
        ),
        ("admin", &["*"][..]),
    ] {
        let name = format!("kommander-dashboard-{level}");
        let rules = vec![PolicyRule {
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            non_resource_urls: urls.clone(),
            ..PolicyRule::default()
        }];
        out.push(kommander_role(
            GLOBAL_NAMESPACE,
            &name,
            false,
            rules.clone(),
        ));
        out.push(cluster_scope_role(GLOBAL_NAMESPACE, &name, rules));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_model::{ProjectSpec, WorkspaceSpec};

    #[test]
    fn defaults_validate() {
        let ws = Workspace::new("payments", WorkspaceSpec::default());
        let mut p = Project::new(
            "checkout",
            ProjectSpec {
                namespace_name: "checkout".into(),
                ..ProjectSpec::default()
            },
        );
        p.metadata.namespace = Some("payments".into());
        let all: Vec<Resource> = workspace(&ws)
            .into_iter()
            .chain(project(&p))
            .chain(global())
            .collect();
        assert_eq!(all.len(), 18);
        for r in &all {
            portcullis_model::validate(r).unwrap_or_else(|e| panic!("{r:?}: {e:?}"));
        }
        // Kubernetes' view rules made it in.
        let Resource::ClusterScopeRole(view) = &workspace(&ws)[5] else {
            panic!("order changed")
        };
        assert!(
            view.rules
                .iter()
                .any(|r| r.resources.contains(&"pods".into()))
        );
    }
}
