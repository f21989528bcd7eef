//! Role and binding kinds: `KommanderRole`, `ClusterScopeRole`, `KommanderRoleBinding`,
//! `ClusterScopeRoleBinding`.
//!
//! # Scope
//!
//! All four kinds are namespaced, and the namespace an object lives in is its scope:
//!
//! | namespace | scope |
//! |---|---|
//! | [`GLOBAL_NAMESPACE`] | Global |
//! | a workspace's namespace ([`Workspace::namespace_name`]) | Workspace |
//! | a project's namespace (`Project.spec.namespaceName`) | Project |
//!
//! Anything else is no scope, and the object has no effect ([`resolve_scope`] returns
//! `None`). What each scope becomes, per the access-control contract:
//!
//! | scope | `KommanderRole` (management plane) | `ClusterScopeRole` (attached clusters) |
//! |---|---|---|
//! | Global | ClusterRole | ClusterRole on every cluster of every workspace |
//! | Workspace | Role in the workspace namespace | ClusterRole on every cluster of the workspace |
//! | Project | Role in the project namespace | Role in the project namespace on the project's clusters |
//!
//! A binding grants the role named by `roleRef` in the binding's own namespace, so it has
//! the same scope as that role, and becomes a RoleBinding or ClusterRoleBinding on the same
//! clusters. Because a Role cannot hold non-resource URLs, rules with `nonResourceURLs` are
//! only allowed where the scope yields a ClusterRole: a `KommanderRole` in
//! [`GLOBAL_NAMESPACE`] (validation refuses them elsewhere), and a `ClusterScopeRole`
//! outside project namespaces (validation of one object cannot tell a project namespace
//! from a workspace one, so whoever resolves the scope with [`resolve_scope`] must refuse
//! such rules at Project scope).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ObjectMeta;
use crate::kinds::GROUP;
use crate::kinds::project::Project;
use crate::kinds::workspace::Workspace;
use crate::validation::{Errors, path_segment_name};

/// The management-plane namespace whose roles and bindings have Global scope.
pub const GLOBAL_NAMESPACE: &str = "portcullis-global";

/// API group of Kubernetes RBAC, the default `apiGroup` of a [`Subject`].
pub const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";

/// Annotation on a workspace-scoped role: when `"true"`, the role is also granted as the
/// equivalent project role in every project of the workspace (Kommander's behaviour).
pub const SYNC_TO_PROJECT_ANNOTATION: &str = "workspace.kommander.mesosphere.io/sync-to-project";

/// One rule of a role, spelled as `rbac.authorization.k8s.io/v1` `PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// Verbs allowed (`get`, `list`, …, or `*`). Required.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups of the resources (`""` is the core group, `*` all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `pods/log`, `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Names of the objects the rule is restricted to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource paths (`/healthz`, `/metrics/*`); exclusive with resources.
    #[serde(
        rename = "nonResourceURLs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// Kind of a [`Subject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SubjectKind {
    /// A user, by the name the issuer puts in tokens.
    User,
    /// A group: an identity-provider group, or a portcullis [`Group`](crate::Group) when
    /// `apiGroup` is `portcullis.dev`.
    Group,
}

/// Who a binding grants the role to, shaped as `rbac.authorization.k8s.io/v1` `Subject`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// `User` or `Group`.
    pub kind: SubjectKind,
    /// User or group name.
    pub name: String,
    /// `rbac.authorization.k8s.io` (the default) for users and identity-provider groups;
    /// `portcullis.dev` for a `Group` subject that names a portcullis `Group` object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
}

/// The role a binding grants, as `rbac.authorization.k8s.io/v1` `RoleRef`. Immutable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRef {
    /// Always `portcullis.dev`.
    #[serde(default)]
    pub api_group: String,
    /// `KommanderRole` in a `KommanderRoleBinding`, `ClusterScopeRole` in a
    /// `ClusterScopeRoleBinding`.
    #[serde(default)]
    pub kind: String,
    /// Name of the role, in the binding's namespace.
    #[serde(default)]
    pub name: String,
}

/// Observed state of a role or binding, written by the management plane: how the objects it
/// produces stand on the attached clusters they are planned for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceStatus {
    /// Attached clusters that are to hold its objects.
    #[serde(default)]
    pub clusters: u32,
    /// Of those, the clusters that hold every one of its objects as planned.
    #[serde(default)]
    pub synced_clusters: u32,
    /// Clusters where one of its objects failed or conflicts, by name (at most
    /// [`MAX_STATUS_FAILURES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<ClusterFailure>,
    /// Manual edits and deletions of its objects reverted, over all clusters.
    #[serde(default)]
    pub drift_repairs: u64,
    /// `Synced`: whether every cluster holds its objects as planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<crate::common::Condition>,
}

/// Most failures a [`SourceStatus`] lists (`portcullis status --source` shows all).
pub const MAX_STATUS_FAILURES: usize = 20;

/// Why one of a source's objects is not as planned on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterFailure {
    /// The cluster.
    pub cluster: String,
    /// The object there, `Kind/[namespace/]name`.
    pub object: String,
    /// The error, or the conflict (a pre-existing object, another field manager).
    pub message: String,
    /// A conflict, left alone until resolved by hand, rather than a failure that is retried.
    #[serde(default)]
    pub conflict: bool,
}

macro_rules! role_kind {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// Always `portcullis.dev/v1alpha1`.
            pub api_version: String,
            /// Always the kind's name.
            pub kind: String,
            /// Standard object metadata; the namespace is the scope (see the module docs).
            #[serde(default)]
            pub metadata: ObjectMeta,
            /// What the role allows.
            #[serde(default)]
            pub rules: Vec<PolicyRule>,
            /// How the objects it produces stand on the clusters they are planned for.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<SourceStatus>,
        }

        impl $name {
            /// A new role with this namespace (scope), name and rules.
            pub fn new(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Self {
                Self {
                    api_version: $crate::kinds::API_VERSION.to_owned(),
                    kind: stringify!($name).to_owned(),
                    metadata: ObjectMeta {
                        name: name.to_owned(),
                        namespace: Some(namespace.to_owned()),
                        ..Default::default()
                    },
                    rules,
                    status: None,
                }
            }
        }
    };
}

macro_rules! binding_kind {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// Always `portcullis.dev/v1alpha1`.
            pub api_version: String,
            /// Always the kind's name.
            pub kind: String,
            /// Standard object metadata; the namespace is the scope (see the module docs).
            #[serde(default)]
            pub metadata: ObjectMeta,
            /// Who is granted the role.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub subjects: Vec<Subject>,
            /// The role granted, in the same namespace. Immutable.
            #[serde(default)]
            pub role_ref: RoleRef,
            /// How the objects it produces stand on the clusters they are planned for.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<SourceStatus>,
        }

        impl $name {
            /// A new binding with this namespace (scope), name, role name and subjects.
            pub fn new(namespace: &str, name: &str, role: &str, subjects: Vec<Subject>) -> Self {
                Self {
                    api_version: $crate::kinds::API_VERSION.to_owned(),
                    kind: stringify!($name).to_owned(),
                    metadata: ObjectMeta {
                        name: name.to_owned(),
                        namespace: Some(namespace.to_owned()),
                        ..Default::default()
                    },
                    subjects,
                    role_ref: RoleRef {
                        api_group: $crate::kinds::GROUP.to_owned(),
                        kind: stringify!($name).trim_end_matches("Binding").to_owned(),
                        name: role.to_owned(),
                    },
                    status: None,
                }
            }
        }
    };
}

role_kind!(
    /// A management-plane role ("Kommander Role"): rules that authorize the portcullis
    /// management API and dashboard at the scope of its namespace (see the module docs).
    KommanderRole
);
role_kind!(
    /// A target-cluster role ("Cluster Role"): rules federated to attached clusters at the
    /// scope of its namespace (see the module docs).
    ClusterScopeRole
);
binding_kind!(
    /// Grants a [`KommanderRole`] of the same namespace to users and groups.
    KommanderRoleBinding
);
binding_kind!(
    /// Grants a [`ClusterScopeRole`] of the same namespace to users and groups.
    ClusterScopeRoleBinding
);

/// The scope of a role or binding, from the namespace it lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// In [`GLOBAL_NAMESPACE`].
    Global,
    /// In the namespace of this workspace.
    Workspace {
        /// Workspace name.
        workspace: String,
    },
    /// In the namespace of this project.
    Project {
        /// Name of the project's workspace.
        workspace: String,
        /// Project name.
        project: String,
    },
}

/// The scope that objects in `namespace` have, given the workspaces and projects that exist.
///
/// A project belongs to the workspace whose namespace it lives in. Returns `None` for a
/// namespace that is neither global nor owned by a workspace or project: such roles and
/// bindings take no effect (deny by default).
pub fn resolve_scope(
    namespace: &str,
    workspaces: &[Workspace],
    projects: &[Project],
) -> Option<Scope> {
    if namespace == GLOBAL_NAMESPACE {
        return Some(Scope::Global);
    }
    if let Some(ws) = workspaces.iter().find(|w| w.namespace_name() == namespace) {
        return Some(Scope::Workspace {
            workspace: ws.metadata.name.clone(),
        });
    }
    let project = projects
        .iter()
        .find(|p| p.spec.namespace_name == namespace)?;
    let ws = workspaces
        .iter()
        .find(|w| Some(w.namespace_name()) == project.metadata.namespace.as_deref())?;
    Some(Scope::Project {
        workspace: ws.metadata.name.clone(),
        project: project.metadata.name.clone(),
    })
}

// === validation ===

/// The rules of a role, as Kubernetes' `ValidatePolicyRule`: verbs required; either
/// resource rules (apiGroups and resources required) or non-resource URLs, not both;
/// non-resource URLs only where the role becomes a ClusterRole (`cluster_wide`).
pub(crate) fn validate_rules(
    errs: &mut Errors,
    rules: &[PolicyRule],
    cluster_wide: bool,
    kind: &str,
) {
    for (i, r) in rules.iter().enumerate() {
        let f = format!("rules[{i}]");
        if r.verbs.is_empty() {
            errs.required(
                format!("{f}.verbs"),
                "verbs must contain at least one value",
            );
        }
        errs.non_empty_unique(&format!("{f}.verbs"), &r.verbs);
        errs.non_empty_unique(&format!("{f}.resources"), &r.resources);
        errs.non_empty_unique(&format!("{f}.resourceNames"), &r.resource_names);
        errs.unique(&format!("{f}.apiGroups"), &r.api_groups);
        if r.non_resource_urls.is_empty() {
            if r.api_groups.is_empty() {
                errs.required(
                    format!("{f}.apiGroups"),
                    "resource rules must supply at least one api group (\"\" is the core group)",
                );
            }
            if r.resources.is_empty() {
                errs.required(
                    format!("{f}.resources"),
                    "resource rules must supply at least one resource",
                );
            }
            continue;
        }
        if !cluster_wide {
            errs.forbidden(
                format!("{f}.nonResourceURLs"),
                format!(
                    "a {kind} outside {GLOBAL_NAMESPACE} becomes a namespaced Role, which \
                     cannot hold non-resource URLs"
                ),
            );
        }
        if !r.api_groups.is_empty() || !r.resources.is_empty() || !r.resource_names.is_empty() {
            errs.forbidden(
                format!("{f}.nonResourceURLs"),
                "rules cannot apply to both regular resources and non-resource URLs",
            );
        }
        for (j, u) in r.non_resource_urls.iter().enumerate() {
            // As Kubernetes RBAC: an exact path, or a prefix ending in `*`.
            let star = u.find('*');
            let ok = u == "*" || (u.starts_with('/') && star.is_none_or(|p| p + 1 == u.len()));
            if !ok {
                errs.invalid(
                    format!("{f}.nonResourceURLs[{j}]"),
                    "must be '*' or a path starting with '/', with '*' only at the end",
                );
            }
        }
        errs.unique(&format!("{f}.nonResourceURLs"), &r.non_resource_urls);
    }
}

/// The status a role or binding may carry.
pub(crate) fn validate_status(errs: &mut Errors, status: Option<&SourceStatus>) {
    if let Some(s) = status {
        crate::validation::conditions(errs, "status.conditions", &s.conditions);
        if s.failures.len() > MAX_STATUS_FAILURES {
            errs.invalid(
                "status.failures",
                format!("must have at most {MAX_STATUS_FAILURES} items"),
            );
        }
    }
}

/// Subjects and roleRef of a binding whose role must be of kind `role_kind`.
pub(crate) fn validate_binding(
    errs: &mut Errors,
    subjects: &[Subject],
    role_ref: &RoleRef,
    role_kind: &str,
) {
    for (i, s) in subjects.iter().enumerate() {
        let f = format!("subjects[{i}]");
        if s.name.is_empty() {
            errs.required(format!("{f}.name"), "must not be empty");
        }
        match (s.kind, s.api_group.as_str()) {
            (_, "" | RBAC_API_GROUP) => {}
            (SubjectKind::Group, GROUP) => {
                if !s.name.is_empty() {
                    errs.check(
                        format!("{f}.name"),
                        crate::syntax::dns1123_subdomain(&s.name),
                    );
                }
            }
            (SubjectKind::User, _) => errs.not_supported(
                format!("{f}.apiGroup"),
                format!("supported values: \"\", \"{RBAC_API_GROUP}\""),
            ),
            (SubjectKind::Group, _) => errs.not_supported(
                format!("{f}.apiGroup"),
                format!("supported values: \"\", \"{RBAC_API_GROUP}\", \"{GROUP}\""),
            ),
        }
    }
    errs.unique("subjects", subjects);
    match role_ref.api_group.as_str() {
        "" => errs.required("roleRef.apiGroup", format!("must be {GROUP:?}")),
        GROUP => {}
        _ => errs.not_supported("roleRef.apiGroup", format!("supported values: {GROUP:?}")),
    }
    if role_ref.kind.is_empty() {
        errs.required("roleRef.kind", format!("must be {role_kind:?}"));
    } else if role_ref.kind != role_kind {
        errs.not_supported("roleRef.kind", format!("supported values: {role_kind:?}"));
    }
    errs.required_with("roleRef.name", &role_ref.name, path_segment_name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::project::ProjectSpec;
    use crate::kinds::workspace::WorkspaceSpec;

    #[test]
    fn scope_follows_the_namespace() {
        let ws = Workspace::new(
            "payments",
            WorkspaceSpec {
                namespace_name: "ws-payments".to_owned(),
                ..Default::default()
            },
        );
        let plain = Workspace::new("ops", WorkspaceSpec::default());
        let mut project = Project::new(
            "checkout",
            ProjectSpec {
                namespace_name: "checkout".to_owned(),
                ..Default::default()
            },
        );
        project.metadata.namespace = Some("ws-payments".to_owned());
        let mut orphan = Project::new(
            "lost",
            ProjectSpec {
                namespace_name: "lost".to_owned(),
                ..Default::default()
            },
        );
        orphan.metadata.namespace = Some("nowhere".to_owned());
        let (wss, ps) = (vec![ws, plain], vec![project, orphan]);
        assert_eq!(
            resolve_scope(GLOBAL_NAMESPACE, &wss, &ps),
            Some(Scope::Global)
        );
        assert_eq!(
            resolve_scope("ws-payments", &wss, &ps),
            Some(Scope::Workspace {
                workspace: "payments".to_owned()
            })
        );
        assert_eq!(
            resolve_scope("ops", &wss, &ps),
            Some(Scope::Workspace {
                workspace: "ops".to_owned()
            })
        );
        assert_eq!(
            resolve_scope("checkout", &wss, &ps),
            Some(Scope::Project {
                workspace: "payments".to_owned(),
                project: "checkout".to_owned()
            })
        );
        // Deny by default: unknown namespaces and projects outside any workspace.
        assert_eq!(resolve_scope("default", &wss, &ps), None);
        assert_eq!(resolve_scope("lost", &wss, &ps), None);
    }

    #[test]
    fn constructors_fill_the_envelope() {
        let b = KommanderRoleBinding::new("ns", "b", "r", Vec::new());
        assert_eq!(b.role_ref.kind, "KommanderRole");
        assert_eq!(b.role_ref.api_group, "portcullis.dev");
        let b = ClusterScopeRoleBinding::new("ns", "b", "r", Vec::new());
        assert_eq!(b.role_ref.kind, "ClusterScopeRole");
        assert_eq!(b.kind, "ClusterScopeRoleBinding");
        assert_eq!(
            ClusterScopeRole::new("ns", "r", Vec::new()).api_version,
            "portcullis.dev/v1alpha1"
        );
    }
}
