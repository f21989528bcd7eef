//! `can-i --batch`: one SubjectAccessReview `spec` (JSON, as the Kubernetes API writes it) per
//! input line, one `{"allowed":…,"reason":"…"}` per output line, in order.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::{Attributes, Decision, Policy};

/// The group whose members kube-apiserver allows before any authorizer is asked.
pub const SYSTEM_MASTERS: &str = "system:masters";

/// Longest accepted input line, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// `SubjectAccessReviewSpec` (`authorization.k8s.io/v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectAccessReviewSpec {
    /// User name.
    #[serde(default)]
    pub user: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Extra.
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
    /// UID of the user.
    #[serde(default)]
    pub uid: String,
    /// A resource request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<ResourceAttributes>,
    /// A non-resource request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_resource_attributes: Option<NonResourceAttributes>,
}

/// `ResourceAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAttributes {
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Verb.
    #[serde(default)]
    pub verb: String,
    /// API group.
    #[serde(default)]
    pub group: String,
    /// API version (not used by RBAC).
    #[serde(default)]
    pub version: String,
    /// Resource.
    #[serde(default)]
    pub resource: String,
    /// Subresource.
    #[serde(default)]
    pub subresource: String,
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// `NonResourceAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NonResourceAttributes {
    /// Path.
    #[serde(default)]
    pub path: String,
    /// Verb.
    #[serde(default)]
    pub verb: String,
}

impl SubjectAccessReviewSpec {
    /// The attributes the spec describes; exactly one of resource or non-resource attributes.
    pub fn attributes(&self) -> Result<Attributes, String> {
        let mut a = Attributes {
            user: self.user.clone(),
            groups: self.groups.clone(),
            extra: self.extra.clone(),
            ..Attributes::default()
        };
        match (&self.resource_attributes, &self.non_resource_attributes) {
            (Some(r), None) => {
                a.resource_request = true;
                a.verb = r.verb.clone();
                a.api_group = r.group.clone();
                a.resource = r.resource.clone();
                a.subresource = r.subresource.clone();
                a.namespace = r.namespace.clone();
                a.name = r.name.clone();
            }
            (None, Some(n)) => {
                a.verb = n.verb.clone();
                a.path = n.path.clone();
            }
            _ => {
                return Err(
                    "exactly one of resourceAttributes and nonResourceAttributes must be set"
                        .into(),
                );
            }
        }
        if a.user.is_empty() && a.groups.is_empty() {
            return Err("at least one of user or groups must be set".into());
        }
        Ok(a)
    }
}

/// One output line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Allowed?
    pub allowed: bool,
    /// Why (empty when denied, or the input error).
    pub reason: String,
}

/// Decides as kube-apiserver's authorizer chain does: `system:masters` first, then RBAC.
pub fn decide(policy: &Policy, a: &Attributes) -> Decision {
    if a.groups.iter().any(|g| g == SYSTEM_MASTERS) {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    crate::authorize(policy, a)
}

/// Reads specs from `input`, writes answers to `output`. A line that is not a valid spec is
/// answered `allowed: false` with the error as reason (so lines stay aligned); the count of such
/// lines is returned.
pub fn run(policy: &Policy, input: impl BufRead, mut output: impl Write) -> std::io::Result<usize> {
    let mut errors = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match parse_line(&line) {
            Ok(a) => {
                let d = decide(policy, &a);
                Answer {
                    allowed: d.allowed,
                    reason: d.reason,
                }
            }
            Err(e) => {
                errors += 1;
                Answer {
                    allowed: false,
                    reason: format!("error: line {}: {e}", i + 1),
                }
            }
        };
        let text = serde_json::to_string(&answer).map_err(std::io::Error::other)?;
        writeln!(output, "{text}")?;
    }
    Ok(errors)
}

fn parse_line(line: &str) -> Result<Attributes, String> {
    if line.len() > MAX_LINE {
        return Err(format!("longer than {MAX_LINE} bytes"));
    }
    let spec: SubjectAccessReviewSpec =
        serde_json::from_str(line).map_err(|e| format!("not a SubjectAccessReview spec: {e}"))?;
    spec.attributes()
}
