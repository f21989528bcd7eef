//! Asking the cluster: SubjectAccessReviews for impersonation through the proxy.

use std::sync::Arc;

use portcullis_authn::AuthorizeRemote;
use portcullis_rbac::{Attributes, Decision};
use serde_json::json;

use crate::upstream::Upstream;

/// Largest SubjectAccessReview answer read.
const MAX_REVIEW_BYTES: usize = 256 * 1024;

/// Decides `impersonate` checks by asking the cluster: a `SubjectAccessReview` naming the
/// requester, sent with the proxy's own credential (which needs `create` on
/// `subjectaccessreviews`). No answer, an error or an unreadable answer deny.
#[derive(Debug, Clone)]
pub struct ClusterAuthorizer {
    upstream: Arc<Upstream>,
}

impl ClusterAuthorizer {
    /// Asking `upstream`.
    pub fn new(upstream: Arc<Upstream>) -> ClusterAuthorizer {
        ClusterAuthorizer { upstream }
    }

    async fn ask(&self, a: &Attributes) -> Result<Decision, String> {
        let mut resource = serde_json::Map::new();
        for (key, value) in [
            ("verb", &a.verb),
            ("group", &a.api_group),
            ("resource", &a.resource),
            ("subresource", &a.subresource),
            ("namespace", &a.namespace),
            ("name", &a.name),
        ] {
            if !value.is_empty() || matches!(key, "verb" | "group" | "resource") {
                resource.insert(key.to_owned(), json!(value));
            }
        }
        let mut spec = serde_json::Map::new();
        spec.insert("user".into(), json!(a.user));
        spec.insert("groups".into(), json!(a.groups));
        spec.insert("resourceAttributes".into(), resource.into());
        if !a.extra.is_empty() {
            spec.insert("extra".into(), json!(a.extra));
        }
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        });
        let answer = self
            .upstream
            .call_json(
                http::Method::POST,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                Some(review),
                MAX_REVIEW_BYTES,
                std::time::Duration::from_secs(30),
            )
            .await?;
        let field = |name: &str| answer.get("status").and_then(|s| s.get(name));
        let allowed = field("allowed").and_then(serde_json::Value::as_bool) == Some(true)
            && field("denied").and_then(serde_json::Value::as_bool) != Some(true);
        let reason = field("reason")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Decision { allowed, reason })
    }
}

#[async_trait::async_trait]
impl AuthorizeRemote for ClusterAuthorizer {
    async fn authorize(&self, attributes: &Attributes) -> Decision {
        match self.ask(attributes).await {
            Ok(decision) => decision,
            Err(reason) => {
                tracing::warn!(%reason, user = %attributes.user, "SubjectAccessReview to the cluster failed; denying");
                Decision {
                    allowed: false,
                    reason: format!("the cluster could not be asked: {reason}"),
                }
            }
        }
    }
}
