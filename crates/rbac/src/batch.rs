//! `can-i --batch`: one SubjectAccessReview `spec` (JSON, as the Kubernetes API writes it) per
//! input line, one `{"allowed":…,"reason":"…"}` per output line, in order.

use std::io::{BufRead, BufWriter, Read, Write};

use serde::{Deserialize, Serialize};

use crate::{Attributes, CompiledPolicy, Decision};

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

/// Decides as kube-apiserver's authorizer chain does: `system:masters` first, then RBAC, with
/// the compiled index (the reference evaluator is the model it is tested against, not a path
/// that answers users).
pub fn decide(policy: &CompiledPolicy, a: &Attributes) -> Decision {
    if a.groups.iter().any(|g| g == SYSTEM_MASTERS) {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    policy.authorize(a)
}

/// Reads specs from `input`, writes answers to `output` (through a buffer, flushed at the end).
/// A line that is not a valid spec is answered `allowed: false` with the error as reason, in
/// its place (so lines stay aligned); the count of such lines is returned.
pub fn run(
    policy: &CompiledPolicy,
    mut input: impl BufRead,
    output: impl Write,
) -> std::io::Result<usize> {
    let mut output = BufWriter::with_capacity(64 * 1024, output);
    let mut errors = 0;
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        // At most a line's limit (and its newline) is held; the rest of a longer line is read
        // past, and the line answered as too long.
        let limit = MAX_LINE as u64 + 1;
        if Read::take(&mut input, limit).read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        let too_long = line.len() > MAX_LINE && line.last() != Some(&b'\n');
        if too_long {
            let mut rest = Vec::new();
            while !rest.ends_with(b"\n") {
                rest.clear();
                if Read::take(&mut input, limit).read_until(b'\n', &mut rest)? == 0 {
                    break;
                }
            }
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let parsed = if too_long {
            Err(format!("longer than {MAX_LINE} bytes"))
        } else {
            parse_line(&line)
        };
        let answer = match parsed {
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
                    reason: format!("error: line {number}: {e}"),
                }
            }
        };
        serde_json::to_writer(&mut output, &answer).map_err(std::io::Error::other)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(errors)
}

fn parse_line(line: &[u8]) -> Result<Attributes, String> {
    let spec: SubjectAccessReviewSpec = serde_json::from_slice(line.trim_ascii())
        .map_err(|e| format!("not a SubjectAccessReview spec: {e}"))?;
    spec.attributes()
}
