//! Validation of RBAC objects as kube-apiserver's `pkg/apis/rbac/validation` does it, with its
//! field paths and wording (`roleRef.apiGroup: Unsupported value: "example.com": supported
//! values: "rbac.authorization.k8s.io"`), and the defaults the v1 API applies before it.

use crate::Error;
use crate::escalation::go_quote;
use crate::v1::{AggregationRule, Subject};
use crate::v1::{ClusterRole, ClusterRoleBinding, GROUP, PolicyRule, Role, RoleBinding, RoleRef};
use portcullis_model::ObjectMeta;

/// One field error, as `field.Error`: rendered `{field}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `rules[1].verbs`.
    pub field: String,
    /// `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueInvalid`, `FieldValueForbidden`.
    pub reason: &'static str,
    /// The error body: `Required value: …`, `Unsupported value: …`, `Invalid value: …`.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn required(field: impl Into<String>, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueRequired",
        message: if detail.is_empty() {
            "Required value".into()
        } else {
            format!("Required value: {detail}")
        },
    }
}

fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> FieldError {
    let supported: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
    FieldError {
        field: field.into(),
        reason: "FieldValueNotSupported",
        message: format!(
            "Unsupported value: {}: supported values: {}",
            go_quote(value),
            supported.join(", ")
        ),
    }
}

/// `value` is already rendered as Go renders it (`"x"` for a string, `[]string{"a"}` for a list).
fn invalid(field: impl Into<String>, value: &str, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {value}: {detail}"),
    }
}

fn go_string_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// As `path.IsValidPathSegmentName`: RBAC names are path segments, so `:` and upper case are
/// fine but `/` and `%` are not.
fn path_segment_errors(name: &str) -> Vec<&'static str> {
    match name {
        "." => return vec!["may not be '.'"],
        ".." => return vec!["may not be '..'"],
        _ => {}
    }
    let mut out = Vec::new();
    if name.contains('/') {
        out.push("may not contain '/'");
    }
    if name.contains('%') {
        out.push("may not contain '%'");
    }
    out
}

fn meta_errors(meta: &ObjectMeta, out: &mut Vec<FieldError>) {
    if meta.name.is_empty() {
        out.push(required(
            "metadata.name",
            "name or generateName is required",
        ));
    }
    for msg in path_segment_errors(&meta.name) {
        out.push(invalid("metadata.name", &go_quote(&meta.name), msg));
    }
}

/// As `ValidatePolicyRule`.
fn rule_errors(rule: &PolicyRule, namespaced: bool, at: &str, out: &mut Vec<FieldError>) {
    if rule.verbs.is_empty() {
        out.push(required(
            format!("{at}.verbs"),
            "verbs must contain at least one value",
        ));
    }
    if !rule.non_resource_urls.is_empty() {
        let urls = go_string_slice(&rule.non_resource_urls);
        if namespaced {
            out.push(invalid(
                format!("{at}.nonResourceURLs"),
                &urls,
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !rule.api_groups.is_empty()
            || !rule.resources.is_empty()
            || !rule.resource_names.is_empty()
        {
            out.push(invalid(
                format!("{at}.nonResourceURLs"),
                &urls,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if rule.api_groups.is_empty() {
        out.push(required(
            format!("{at}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if rule.resources.is_empty() {
        out.push(required(
            format!("{at}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn rules_errors(rules: &[PolicyRule], namespaced: bool, out: &mut Vec<FieldError>) {
    for (i, rule) in rules.iter().enumerate() {
        rule_errors(rule, namespaced, &format!("rules[{i}]"), out);
    }
}

/// As `ValidateRole`.
pub fn validate_role(role: &Role) -> Vec<FieldError> {
    let mut out = Vec::new();
    meta_errors(&role.metadata, &mut out);
    rules_errors(&role.rules, true, &mut out);
    out
}

/// As `ValidateClusterRole`.
pub fn validate_cluster_role(role: &ClusterRole) -> Vec<FieldError> {
    let mut out = Vec::new();
    meta_errors(&role.metadata, &mut out);
    rules_errors(&role.rules, false, &mut out);
    if let Some(AggregationRule {
        cluster_role_selectors,
    }) = &role.aggregation_rule
        && cluster_role_selectors.is_empty()
    {
        out.push(required(
            "aggregationRule.clusterRoleSelectors",
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        ));
    }
    out
}

fn role_ref_errors(role_ref: &RoleRef, kinds: &[&str], out: &mut Vec<FieldError>) {
    if role_ref.api_group != GROUP {
        out.push(not_supported(
            "roleRef.apiGroup",
            &role_ref.api_group,
            &[GROUP],
        ));
    }
    if !kinds.contains(&role_ref.kind.as_str()) {
        out.push(not_supported("roleRef.kind", &role_ref.kind, kinds));
    }
    if role_ref.name.is_empty() {
        out.push(required("roleRef.name", ""));
    } else {
        for msg in path_segment_errors(&role_ref.name) {
            out.push(invalid("roleRef.name", &go_quote(&role_ref.name), msg));
        }
    }
}

/// As `ValidateRoleBindingSubject`.
fn subject_errors(subject: &Subject, namespaced: bool, at: &str, out: &mut Vec<FieldError>) {
    if subject.name.is_empty() {
        out.push(required(format!("{at}.name"), ""));
    }
    match subject.kind.as_str() {
        "ServiceAccount" => {
            if !subject.api_group.is_empty() {
                out.push(not_supported(
                    format!("{at}.apiGroup"),
                    &subject.api_group,
                    &[""],
                ));
            }
            if !namespaced && subject.namespace.is_empty() {
                out.push(required(format!("{at}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if subject.api_group != GROUP {
                out.push(not_supported(
                    format!("{at}.apiGroup"),
                    &subject.api_group,
                    &[GROUP],
                ));
            }
        }
        other => out.push(not_supported(
            format!("{at}.kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// As `ValidateRoleBinding`.
pub fn validate_role_binding(binding: &RoleBinding) -> Vec<FieldError> {
    let mut out = Vec::new();
    meta_errors(&binding.metadata, &mut out);
    role_ref_errors(&binding.role_ref, &["Role", "ClusterRole"], &mut out);
    for (i, s) in binding.subjects.iter().enumerate() {
        subject_errors(s, true, &format!("subjects[{i}]"), &mut out);
    }
    out
}

/// As `ValidateClusterRoleBinding`.
pub fn validate_cluster_role_binding(binding: &ClusterRoleBinding) -> Vec<FieldError> {
    let mut out = Vec::new();
    meta_errors(&binding.metadata, &mut out);
    role_ref_errors(&binding.role_ref, &["ClusterRole"], &mut out);
    for (i, s) in binding.subjects.iter().enumerate() {
        subject_errors(s, false, &format!("subjects[{i}]"), &mut out);
    }
    out
}

/// As the binding update validations: `roleRef` cannot change (delete and recreate instead).
pub fn validate_role_ref_update(old: &RoleRef, new: &RoleRef) -> Vec<FieldError> {
    if old == new {
        return Vec::new();
    }
    vec![invalid(
        "roleRef",
        &format!(
            "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
            go_quote(&new.api_group),
            go_quote(&new.kind),
            go_quote(&new.name)
        ),
        "cannot change roleRef",
    )]
}

/// The v1 API's defaults (`SetDefaults_*`): an empty `roleRef.apiGroup` is the RBAC group, as
/// is an empty `apiGroup` of a `User` or `Group` subject.
pub fn default_role_ref(role_ref: &mut RoleRef) {
    if role_ref.api_group.is_empty() {
        role_ref.api_group = GROUP.into();
    }
}

/// See [`default_role_ref`].
pub fn default_subjects(subjects: &mut [Subject]) {
    for s in subjects {
        if s.api_group.is_empty() && (s.kind == "User" || s.kind == "Group") {
            s.api_group = GROUP.into();
        }
    }
}

/// One RBAC object, decoded strictly (unknown fields refused) and defaulted, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A Role.
    Role(Role),
    /// A ClusterRole.
    ClusterRole(ClusterRole),
    /// A RoleBinding.
    RoleBinding(RoleBinding),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
}

fn typed<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value.clone()).map_err(Error::from_serde)
}

impl Object {
    /// Decodes `value` by its `kind` (strictly: unknown fields are errors) and applies the v1
    /// defaults.
    pub fn decode(value: &serde_json::Value) -> Result<Object, Error> {
        let kind = value
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        Ok(match kind {
            "Role" => Object::Role(typed(value)?),
            "ClusterRole" => Object::ClusterRole(typed(value)?),
            "RoleBinding" => {
                let mut b: RoleBinding = typed(value)?;
                default_role_ref(&mut b.role_ref);
                default_subjects(&mut b.subjects);
                Object::RoleBinding(b)
            }
            "ClusterRoleBinding" => {
                let mut b: ClusterRoleBinding = typed(value)?;
                default_role_ref(&mut b.role_ref);
                default_subjects(&mut b.subjects);
                Object::ClusterRoleBinding(b)
            }
            other => {
                return Err(Error::decode(
                    "kind",
                    format!(
                        "unknown kind {other:?}: expected Role, ClusterRole, RoleBinding or ClusterRoleBinding"
                    ),
                ));
            }
        })
    }

    /// The kube-apiserver validation of this kind.
    pub fn validate(&self) -> Vec<FieldError> {
        match self {
            Object::Role(r) => validate_role(r),
            Object::ClusterRole(r) => validate_cluster_role(r),
            Object::RoleBinding(b) => validate_role_binding(b),
            Object::ClusterRoleBinding(b) => validate_cluster_role_binding(b),
        }
    }

    /// The rules of a role (none for a binding).
    pub fn rules(&self) -> &[PolicyRule] {
        match self {
            Object::Role(r) => &r.rules,
            Object::ClusterRole(r) => &r.rules,
            _ => &[],
        }
    }

    /// The roleRef of a binding.
    pub fn role_ref(&self) -> Option<&RoleRef> {
        match self {
            Object::RoleBinding(b) => Some(&b.role_ref),
            Object::ClusterRoleBinding(b) => Some(&b.role_ref),
            _ => None,
        }
    }

    /// The object as JSON (canonical: re-serialised from the typed form).
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Object::Role(r) => serde_json::to_value(r),
            Object::ClusterRole(r) => serde_json::to_value(r),
            Object::RoleBinding(b) => serde_json::to_value(b),
            Object::ClusterRoleBinding(b) => serde_json::to_value(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_kube_apiservers() {
        let b = RoleBinding {
            metadata: ObjectMeta {
                name: "att-029".into(),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: "example.com".into(),
                kind: "ClusterRole".into(),
                name: "view".into(),
            },
            ..RoleBinding::default()
        };
        let errors = validate_role_binding(&b);
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "roleRef.apiGroup: Unsupported value: \"example.com\": supported values: \"rbac.authorization.k8s.io\""
            ]
        );
        let r = ClusterRole {
            metadata: ObjectMeta {
                name: "a/b".into(),
                ..ObjectMeta::default()
            },
            rules: vec![PolicyRule::default()],
            ..ClusterRole::default()
        };
        let errors: Vec<String> = validate_cluster_role(&r)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "metadata.name: Invalid value: \"a/b\": may not contain '/'",
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[0].resources: Required value: resource rules must supply at least one resource",
            ]
        );
    }
}
