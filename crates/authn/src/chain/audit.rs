//! Audit: one `audit.k8s.io/v1` `Event` per request, as JSON lines, at the level an audit
//! `Policy` (Kubernetes' schema, `audit.k8s.io/v1`) gives it — `None`, `Metadata`, `Request`
//! or `RequestResponse` (which records what `Request` does: response bodies, watches among
//! them, are not kept). Events are written at the `ResponseComplete` stage.
//!
//! Never a credential: events hold no headers, and the objects of kinds that carry secrets
//! (users' passwords, clients, connectors, clusters, token reviews, secrets) are never
//! recorded, whatever the policy says.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::RemoteAddr;
use super::metrics::Metrics;
use crate::{RequestInfo, UserInfo};

/// How much of a request is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// Nothing.
    None,
    /// Who, what, when, and the answer's code.
    Metadata,
    /// Metadata and the request's object.
    Request,
    /// Metadata, the request's object (response objects are not recorded: see the module
    /// docs).
    RequestResponse,
}

/// A stage of a request's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// As soon as the request is received.
    RequestReceived,
    /// When a long-running response's headers are sent.
    ResponseStarted,
    /// When the response is complete.
    ResponseComplete,
    /// When a handler panicked.
    Panic,
}

/// `audit.k8s.io/v1` `Policy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// `audit.k8s.io/v1`.
    pub api_version: String,
    /// `Policy`.
    pub kind: String,
    /// Ignored.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// The first rule that matches a request gives its level; no match: `None`.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Stages never recorded.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Leave `metadata.managedFields` out of recorded objects.
    #[serde(default)]
    pub omit_managed_fields: bool,
}

/// One rule of a [`Policy`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// The level of matching requests.
    pub level: Level,
    /// User names (empty: any).
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups, one of which the user must be in (empty: any).
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// Verbs (empty: any).
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources (empty: any resource request).
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// Namespaces; `""` matches cluster-scoped requests (empty: any).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Non-resource paths, exact or ending in `*` (empty: any non-resource request).
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Stages this rule does not record.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Overrides the policy's `omitManagedFields`.
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

/// Resources of one API group in a [`PolicyRule`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResources {
    /// The API group (`""`: core).
    #[serde(default)]
    pub group: String,
    /// Resources (`pods`, `pods/log`, `*/scale`, `pods/*`, `*`); empty: every resource.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names (empty: any).
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// What the policy says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decision {
    level: Level,
    omit_complete: bool,
    omit_managed_fields: bool,
}

impl Policy {
    /// Reads a policy file (YAML or JSON): unknown fields are errors naming their path.
    ///
    /// # Errors
    ///
    /// What is wrong and where, for the operator.
    pub fn from_yaml(text: &str) -> Result<Policy, String> {
        let de = serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())?;
        let policy: Policy = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        if policy.api_version != "audit.k8s.io/v1" || policy.kind != "Policy" {
            return Err(format!(
                "apiVersion {:?} and kind {:?}: an audit policy is apiVersion audit.k8s.io/v1, kind Policy",
                policy.api_version, policy.kind
            ));
        }
        Ok(policy)
    }

    /// The level of a request by `user` described by `info`.
    fn decide(&self, user: &UserInfo, info: &RequestInfo) -> Decision {
        let Some(rule) = self.rules.iter().find(|r| r.matches(user, info)) else {
            return Decision {
                level: Level::None,
                omit_complete: true,
                omit_managed_fields: self.omit_managed_fields,
            };
        };
        let omitted = |s: Stage| self.omit_stages.contains(&s) || rule.omit_stages.contains(&s);
        Decision {
            level: rule.level,
            omit_complete: omitted(Stage::ResponseComplete),
            omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
        }
    }
}

impl PolicyRule {
    /// Whether the rule applies, as kube-apiserver's audit policy checker decides.
    fn matches(&self, user: &UserInfo, info: &RequestInfo) -> bool {
        if !self.users.is_empty() && !self.users.contains(&user.name) {
            return false;
        }
        if !self.user_groups.is_empty() && !user.groups.iter().any(|g| self.user_groups.contains(g))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == info.verb().as_str()) {
            return false;
        }
        if info.is_resource_request() {
            self.matches_resource(info)
        } else {
            self.matches_path(info.path())
        }
    }

    fn matches_resource(&self, info: &RequestInfo) -> bool {
        if !self.non_resource_urls.is_empty() {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == info.namespace()) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let (resource, subresource) = (info.resource(), info.subresource());
        let combined = if subresource.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}/{subresource}")
        };
        self.resources.iter().any(|gr| {
            if gr.group != info.api_group() {
                return false;
            }
            let names_match =
                gr.resource_names.is_empty() || gr.resource_names.iter().any(|n| n == info.name());
            let resource_matches = gr.resources.is_empty()
                || gr.resources.iter().any(|r| {
                    r == "*"
                        || *r == combined
                        || (subresource.is_empty() && r == resource)
                        || (!subresource.is_empty()
                            && (*r == format!("*/{subresource}") || *r == format!("{resource}/*")))
                });
            resource_matches && names_match
        })
    }

    fn matches_path(&self, path: &str) -> bool {
        if !self.resources.is_empty() || !self.namespaces.is_empty() {
            return false;
        }
        if self.non_resource_urls.is_empty() {
            return true;
        }
        self.non_resource_urls
            .iter()
            .any(|u| match u.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => u == path,
            })
    }
}

/// Resources whose objects carry secrets: recorded at `Metadata` at most.
const SECRET_BEARING: &[(&str, &str)] = &[
    ("portcullis.dev", "users"),
    ("portcullis.dev", "clients"),
    ("portcullis.dev", "connectors"),
    ("portcullis.dev", "clusters"),
    ("authentication.k8s.io", "tokenreviews"),
    ("", "secrets"),
];

// === records ===

/// What one request's audit event will say, filled in by the layers as they learn it. Found
/// in the request's extensions while an [`AuditLog`] is on.
#[derive(Debug, Clone)]
pub struct AuditRecord(Arc<Mutex<Record>>);

#[derive(Debug)]
struct Record {
    id: String,
    request_uri: String,
    verb: String,
    user: Arc<UserInfo>,
    impersonated: Option<UserInfo>,
    source_ips: Vec<String>,
    user_agent: Option<String>,
    info: RequestInfo,
    received: time::OffsetDateTime,
    annotations: BTreeMap<String, String>,
    request_object: Option<Value>,
    decision: Decision,
}

impl AuditRecord {
    /// The record of a request that has passed authentication, at the level `policy` gives it.
    pub(super) fn new<B>(req: &http::Request<B>, policy: &Policy) -> AuditRecord {
        let info = req
            .extensions()
            .get::<RequestInfo>()
            .cloned()
            .unwrap_or_default();
        let user = req
            .extensions()
            .get::<Arc<UserInfo>>()
            .cloned()
            .unwrap_or_default();
        let mut decision = policy.decide(&user, &info);
        if SECRET_BEARING
            .iter()
            .any(|(g, r)| info.api_group() == *g && info.resource() == *r)
        {
            decision.level = decision.level.min(Level::Metadata);
        }
        // As kube-apiserver: the X-Forwarded-For chain first, then the peer.
        let mut source_ips: Vec<String> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|ip| ip.trim().to_owned())
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
            .take(16)
            .collect();
        if let Some(RemoteAddr(addr)) = req.extensions().get::<RemoteAddr>() {
            source_ips.push(addr.ip().to_string());
        }
        // Audit comes right after authentication, as in kube-apiserver's chain.
        let received = time::OffsetDateTime::now_utc();
        let request_uri = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        AuditRecord(Arc::new(Mutex::new(Record {
            id: uuid::Uuid::new_v4().to_string(),
            request_uri,
            verb: info.verb().as_str().to_owned(),
            user,
            impersonated: None,
            source_ips,
            user_agent: req
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(1024).collect()),
            info,
            received,
            annotations: BTreeMap::new(),
            request_object: None,
            decision,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Record) -> T) -> Option<T> {
        self.0.lock().ok().map(|mut r| f(&mut r))
    }

    /// The identity the request acts as, when it impersonated someone.
    pub fn impersonated(&self, user: &UserInfo) {
        self.with(|r| r.impersonated = Some(user.clone()));
    }

    /// The authorization decision, as kube-apiserver's annotations.
    pub fn decision(&self, decision: &portcullis_rbac::Decision) {
        self.with(|r| {
            let verdict = if decision.allowed { "allow" } else { "forbid" };
            r.annotations
                .insert("authorization.k8s.io/decision".into(), verdict.into());
            r.annotations.insert(
                "authorization.k8s.io/reason".into(),
                decision.reason.clone(),
            );
        });
    }

    /// Whether the event records the request's object: a handler that has parsed it hands
    /// it to [`AuditRecord::request_object`] then.
    pub fn wants_request_object(&self) -> bool {
        self.with(|r| r.decision.level >= Level::Request && !r.decision.omit_complete)
            .unwrap_or(false)
    }

    /// The request's object (recorded at `Request` level and above).
    pub fn request_object(&self, object: &Value) {
        self.with(|r| {
            if r.decision.level < Level::Request {
                return;
            }
            let mut object = object.clone();
            if r.decision.omit_managed_fields
                && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.remove("managedFields");
            }
            r.request_object = Some(object);
        });
    }

    /// The event, if the policy records this request.
    fn event(&self, code: http::StatusCode) -> Option<Value> {
        self.with(|r| {
            if r.decision.level == Level::None || r.decision.omit_complete {
                return None;
            }
            let user = |u: &UserInfo| {
                let mut v = json!({ "username": u.name, "groups": u.groups });
                if let Some(o) = v.as_object_mut() {
                    if !u.uid.is_empty() {
                        o.insert("uid".into(), u.uid.clone().into());
                    }
                    if !u.extra.is_empty() {
                        o.insert("extra".into(), json!(u.extra));
                    }
                }
                v
            };
            let now = time::OffsetDateTime::now_utc();
            let mut event = json!({
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "level": r.decision.level,
                "auditID": r.id,
                "stage": Stage::ResponseComplete,
                "requestURI": r.request_uri,
                "verb": r.verb,
                "user": user(&r.user),
                "sourceIPs": r.source_ips,
                "responseStatus": { "metadata": {}, "code": code.as_u16() },
                "requestReceivedTimestamp": timestamp(r.received),
                "stageTimestamp": timestamp(now),
            });
            let o = event.as_object_mut()?;
            if let Some(u) = &r.impersonated {
                o.insert("impersonatedUser".into(), user(u));
            }
            if let Some(agent) = &r.user_agent {
                o.insert("userAgent".into(), agent.clone().into());
            }
            if r.info.is_resource_request() {
                let mut object_ref = serde_json::Map::new();
                for (k, v) in [
                    ("resource", r.info.resource()),
                    ("namespace", r.info.namespace()),
                    ("name", r.info.name()),
                    ("apiGroup", r.info.api_group()),
                    ("apiVersion", r.info.api_version()),
                    ("subresource", r.info.subresource()),
                ] {
                    if !v.is_empty() {
                        object_ref.insert(k.into(), v.into());
                    }
                }
                o.insert("objectRef".into(), object_ref.into());
            }
            if let Some(object) = &r.request_object {
                o.insert("requestObject".into(), object.clone());
            }
            if !r.annotations.is_empty() {
                o.insert("annotations".into(), json!(r.annotations));
            }
            Some(event)
        })
        .flatten()
    }
}

/// RFC 3339 with microseconds, as Kubernetes' `MicroTime`.
fn timestamp(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

// === the log ===

/// Events waiting to be written, at most; past that they are counted as lost rather than
/// slowing requests down.
const QUEUE: usize = 8192;

/// Where audit events go: a file of JSON lines (or standard output for `-`), written by a
/// thread of its own.
pub struct AuditLog {
    policy: Policy,
    queue: SyncSender<String>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens `path` for appending (`-`: standard output) and starts its writer.
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub fn open(path: &Path, policy: Policy, metrics: Arc<Metrics>) -> std::io::Result<AuditLog> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        let (queue, events) = std::sync::mpsc::sync_channel::<String>(QUEUE);
        let errors = metrics.audit_errors.clone();
        let name = PathBuf::from(path);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Ok(line) = events.recv() {
                    let mut written = writeln!(out, "{line}");
                    // Flush when nothing else is waiting: a burst is one write.
                    while let Ok(line) = events.try_recv() {
                        written = written.and_then(|()| writeln!(out, "{line}"));
                    }
                    if let Err(e) = written.and_then(|()| out.flush()) {
                        errors.inc();
                        tracing::warn!(path = %name.display(), error = %e, "writing the audit log failed");
                    }
                }
            })?;
        Ok(AuditLog {
            policy,
            queue,
            metrics,
        })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Queues the event of a completed request, if the policy records it.
    fn write(&self, record: &AuditRecord, code: http::StatusCode) {
        let Some(event) = record.event(code) else {
            return;
        };
        match self.queue.try_send(event.to_string()) {
            Ok(()) => {
                self.metrics.audit_events.inc();
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.audit_errors.inc();
            }
        }
    }
}

/// A request's audit record and the log its event goes to once its response is known.
pub(super) struct Audited {
    pub(super) log: Arc<AuditLog>,
    pub(super) record: AuditRecord,
}

impl Audited {
    /// Queues the request's event, with its response's code.
    pub(super) fn write(&self, code: http::StatusCode) {
        self.log.write(&self.record, code);
    }
}
