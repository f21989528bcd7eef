//! The Kubernetes protobuf encoding, for the access reviews only: kubectl sends
//! `SelfSubjectAccessReview` and friends as `application/vnd.kubernetes.protobuf` (while
//! accepting JSON back), so `kubectl auth can-i` needs the request decoded.
//!
//! The wire format: the magic `k8s\0`, then a `runtime.Unknown` message whose `raw` field is
//! the object's own message (field numbers from `k8s.io/api/authorization/v1/generated.proto`
//! and `k8s.io/apimachinery/pkg/runtime/generated.proto`). Decoded objects are turned into the
//! JSON form the API reads, so everything after this module is shared with JSON requests.

use prost::Message;
use serde_json::{Map, Value, json};

use super::status::ApiError;

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
    #[prost(string, tag = "3")]
    content_encoding: String,
    #[prost(string, tag = "4")]
    content_type: String,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

/// `metadata` is read for its name only.
#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceAttributes {
    #[prost(string, tag = "1")]
    namespace: String,
    #[prost(string, tag = "2")]
    verb: String,
    #[prost(string, tag = "3")]
    group: String,
    #[prost(string, tag = "4")]
    version: String,
    #[prost(string, tag = "5")]
    resource: String,
    #[prost(string, tag = "6")]
    subresource: String,
    #[prost(string, tag = "7")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct NonResourceAttributes {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(string, tag = "2")]
    verb: String,
}

#[derive(Clone, PartialEq, Message)]
struct ExtraValue {
    #[prost(string, repeated, tag = "1")]
    items: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct SubjectAccessReviewSpec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
    #[prost(string, tag = "3")]
    user: String,
    #[prost(string, repeated, tag = "4")]
    groups: Vec<String>,
    #[prost(map = "string, message", tag = "5")]
    extra: std::collections::HashMap<String, ExtraValue>,
    #[prost(string, tag = "6")]
    uid: String,
}

/// `SubjectAccessReview`, `SelfSubjectAccessReview` (whose spec has fields 1 and 2 of the
/// above only) and `SelfSubjectRulesReview` (whose spec is `RulesSpec`) share this shape.
#[derive(Clone, PartialEq, Message)]
struct Review {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(bytes = "vec", tag = "2")]
    spec: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct RulesSpec {
    #[prost(string, tag = "1")]
    namespace: String,
}

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf request body is not valid: {why}"))
}

fn resource_json(r: &ResourceAttributes) -> Value {
    json!({
        "namespace": r.namespace, "verb": r.verb, "group": r.group, "version": r.version,
        "resource": r.resource, "subresource": r.subresource, "name": r.name,
    })
}

fn non_resource_json(n: &NonResourceAttributes) -> Value {
    json!({ "path": n.path, "verb": n.verb })
}

/// Decodes a protobuf request body of review kind `kind` (as the URL names it) into its JSON
/// form.
pub fn review_to_json(kind: &str, body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the Kubernetes protobuf magic"))?;
    let unknown = Unknown::decode(envelope).map_err(bad)?;
    if !unknown.content_encoding.is_empty() {
        return Err(bad(format!(
            "content encoding {:?} is not supported",
            unknown.content_encoding
        )));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    // SelfSubjectReview (`kubectl auth whoami`) has no spec: who asks is the whole question.
    let api_version = if kind == "SelfSubjectReview" {
        "authentication.k8s.io/v1"
    } else {
        "authorization.k8s.io/v1"
    };
    if type_meta.kind != kind || type_meta.api_version != api_version {
        return Err(bad(format!(
            "it holds {:?} of {:?}, but the URL is for {kind} of {api_version:?}",
            type_meta.kind, type_meta.api_version
        )));
    }
    if kind == "SelfSubjectReview" {
        return Ok(json!({ "apiVersion": api_version, "kind": kind, "metadata": {} }));
    }
    let review = Review::decode(unknown.raw.as_slice()).map_err(bad)?;
    let spec = match kind {
        "SelfSubjectRulesReview" => {
            let s = RulesSpec::decode(review.spec.as_slice()).map_err(bad)?;
            json!({ "namespace": s.namespace })
        }
        "SubjectAccessReview" | "SelfSubjectAccessReview" => {
            let s = SubjectAccessReviewSpec::decode(review.spec.as_slice()).map_err(bad)?;
            let mut spec = Map::new();
            if let Some(r) = &s.resource_attributes {
                spec.insert("resourceAttributes".into(), resource_json(r));
            }
            if let Some(n) = &s.non_resource_attributes {
                spec.insert("nonResourceAttributes".into(), non_resource_json(n));
            }
            if kind == "SubjectAccessReview" {
                spec.insert("user".into(), json!(s.user));
                spec.insert("groups".into(), json!(s.groups));
                spec.insert("uid".into(), json!(s.uid));
                let extra: Map<String, Value> = s
                    .extra
                    .into_iter()
                    .map(|(k, v)| (k, json!(v.items)))
                    .collect();
                spec.insert("extra".into(), Value::Object(extra));
            }
            Value::Object(spec)
        }
        other => return Err(bad(format!("{other} is not a review kind"))),
    };
    let mut object = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": kind,
        "spec": spec,
    });
    if let (Some(meta), Some(o)) = (review.metadata, object.as_object_mut())
        && !meta.name.is_empty()
    {
        o.insert("metadata".into(), json!({ "name": meta.name }));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubectl 1.37 sent for `kubectl auth can-i create workspaces.portcullis.dev`.
    fn kubectl_body() -> Vec<u8> {
        let spec = SubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: "default".into(),
                verb: "create".into(),
                group: "portcullis.dev".into(),
                resource: "workspaces".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let review = Review {
            metadata: Some(ObjectMeta::default()),
            spec: spec.encode_to_vec(),
        };
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: "authorization.k8s.io/v1".into(),
                kind: "SelfSubjectAccessReview".into(),
            }),
            raw: review.encode_to_vec(),
            ..Default::default()
        };
        [MAGIC, &unknown.encode_to_vec()].concat()
    }

    #[test]
    fn a_self_subject_access_review_decodes_to_its_json_form() {
        let v = review_to_json("SelfSubjectAccessReview", &kubectl_body()).unwrap();
        assert_eq!(v["kind"], "SelfSubjectAccessReview");
        assert_eq!(v["spec"]["resourceAttributes"]["verb"], "create");
        assert_eq!(v["spec"]["resourceAttributes"]["group"], "portcullis.dev");
        assert_eq!(v["spec"]["resourceAttributes"]["namespace"], "default");
        assert!(v["spec"].get("user").is_none());
    }

    #[test]
    fn kubectl_auth_whoamis_self_subject_review_decodes() {
        // The body kubectl 1.32 sent for `kubectl auth whoami` (recorded).
        let body = b"k8s\0\n-\n\x18authentication.k8s.io/v1\x12\x11SelfSubjectReview\x12\x1a\n\x10\n\0\x12\0\x1a\0\"\0*\x002\x008\0B\0\x12\x06\n\x04\n\0\x12\0\x1a\0\"\0";
        let v = review_to_json("SelfSubjectReview", body).unwrap();
        assert_eq!(v["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(v["kind"], "SelfSubjectReview");
        // An access review is not a SelfSubjectReview.
        assert!(review_to_json("SelfSubjectReview", &kubectl_body()).is_err());
    }

    #[test]
    fn wrong_kind_missing_magic_and_garbage_are_bad_requests() {
        assert!(review_to_json("SubjectAccessReview", &kubectl_body()).is_err());
        assert!(review_to_json("SelfSubjectAccessReview", &kubectl_body()[4..]).is_err());
        assert!(review_to_json("SelfSubjectAccessReview", b"k8s\0\xff\xff\xff").is_err());
    }
}
