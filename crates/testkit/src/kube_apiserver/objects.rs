//! The double's store: the served kinds, objects as JSON, resourceVersions, watch events,
//! validation as the recordings show it, and managedFields.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::Error;

pub(crate) const RBAC: &str = "rbac.authorization.k8s.io";

/// A served kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) resource: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    /// Top-level fields besides apiVersion, kind and metadata (for `fieldValidation`).
    pub(crate) fields: &'static [&'static str],
}

pub(crate) const KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        resource: "namespaces",
        kind: "Namespace",
        namespaced: false,
        fields: &["spec", "status"],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        fields: &["data", "binaryData", "immutable"],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "secrets",
        kind: "Secret",
        namespaced: true,
        fields: &["data", "stringData", "type", "immutable"],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true,
        fields: &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "pods",
        kind: "Pod",
        namespaced: true,
        fields: &["spec", "status"],
    },
    Kind {
        group: RBAC,
        version: "v1",
        resource: "roles",
        kind: "Role",
        namespaced: true,
        fields: &["rules"],
    },
    Kind {
        group: RBAC,
        version: "v1",
        resource: "rolebindings",
        kind: "RoleBinding",
        namespaced: true,
        fields: &["subjects", "roleRef"],
    },
    Kind {
        group: RBAC,
        version: "v1",
        resource: "clusterroles",
        kind: "ClusterRole",
        namespaced: false,
        fields: &["rules", "aggregationRule"],
    },
    Kind {
        group: RBAC,
        version: "v1",
        resource: "clusterrolebindings",
        kind: "ClusterRoleBinding",
        namespaced: false,
        fields: &["subjects", "roleRef"],
    },
];

const METADATA_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const RULE_FIELDS: &[&str] = &[
    "verbs",
    "apiGroups",
    "resources",
    "resourceNames",
    "nonResourceURLs",
];

impl Kind {
    pub(crate) fn by_resource(group: &str, version: &str, resource: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|k| k.group == group && k.version == version && k.resource == resource)
            .copied()
    }

    pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|k| k.api_version() == api_version && k.kind == kind)
            .copied()
    }

    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `roles.rbac.authorization.k8s.io` or `namespaces`: how messages name the resource.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Role.rbac.authorization.k8s.io` or `Namespace`: how 422 messages name the kind.
    pub(crate) fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// RBAC kinds are created by a PUT to a missing name (A088).
    pub(crate) fn create_on_update(&self) -> bool {
        self.group == RBAC
    }
}

/// The RFC 3339 time now, seconds precision, as Kubernetes prints it.
pub(crate) fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A watch event as the store emits it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) kind: Kind,
    pub(crate) namespace: String,
    pub(crate) kind_of_event: &'static str,
    pub(crate) object: Value,
    /// The object before a MODIFIED event (for watches with selectors).
    pub(crate) previous: Option<Value>,
    pub(crate) revision: u64,
}

type Key = (&'static str, String, String);

/// Objects by (resource, namespace, name), with a revision counter and a bounded event history
/// for watches that start at an old resourceVersion.
pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    revision: u64,
    history: VecDeque<Event>,
}

const HISTORY: usize = 10_000;

pub(crate) fn meta<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    obj.get("metadata").and_then(|m| m.get(field))
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    meta(obj, field).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let Some(map) = obj.as_object_mut() else {
        unreachable!("made an object above")
    };
    let m = map.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    match m.as_object_mut() {
        Some(m) => m,
        None => unreachable!("made an object above"),
    }
}

impl Store {
    pub(crate) fn new() -> Store {
        Store {
            objects: BTreeMap::new(),
            revision: 1,
            history: VecDeque::new(),
        }
    }

    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    pub(crate) fn oldest_history(&self) -> u64 {
        self.history
            .front()
            .map_or(self.revision, |e| e.revision.saturating_sub(1))
    }

    pub(crate) fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&(kind.resource, namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub(crate) fn get_by_resource(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let kind = KINDS.iter().find(|k| k.resource == resource)?;
        self.get(kind, namespace, name)
    }

    /// Objects of `kind` in `namespace` (all namespaces when empty), sorted by namespace, name.
    pub(crate) fn list(&self, kind: &Kind, namespace: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, ns, _), _)| {
                *r == kind.resource && (namespace.is_empty() || ns == namespace)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Events of `kind` after `revision` still in the history; `None` when `revision` is older
    /// than the history.
    pub(crate) fn events_since(&self, kind: &Kind, revision: u64) -> Option<Vec<Event>> {
        if revision < self.oldest_history() {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|e| e.revision > revision && e.kind.resource == kind.resource)
                .cloned()
                .collect(),
        )
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn record(
        &mut self,
        kind: Kind,
        kind_of_event: &'static str,
        object: &Value,
        previous: Option<Value>,
    ) -> Event {
        let event = Event {
            kind,
            namespace: meta_str(object, "namespace").to_owned(),
            kind_of_event,
            object: object.clone(),
            previous,
            revision: self.revision,
        };
        self.history.push_back(event.clone());
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
        event
    }

    /// Writes `object` (complete, with its metadata) at a new revision and returns the event.
    pub(crate) fn put(&mut self, kind: Kind, mut object: Value, created: bool) -> (Value, Event) {
        let rv = self.next_revision();
        metadata_mut(&mut object).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let key = (
            kind.resource,
            meta_str(&object, "namespace").to_owned(),
            meta_str(&object, "name").to_owned(),
        );
        let previous = self.objects.insert(key, object.clone());
        let kind_of_event = if created { "ADDED" } else { "MODIFIED" };
        let event = self.record(kind, kind_of_event, &object, previous);
        (object, event)
    }

    /// Removes an object; the DELETED event carries the deletion's revision.
    pub(crate) fn remove(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Option<(Value, Event)> {
        let mut object =
            self.objects
                .remove(&(kind.resource, namespace.to_owned(), name.to_owned()))?;
        let rv = self.next_revision();
        metadata_mut(&mut object).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let event = self.record(kind, "DELETED", &object, None);
        Some((object, event))
    }

    /// Removes every namespaced object in `namespace` (what the namespace controller does).
    pub(crate) fn remove_namespace_contents(&mut self, namespace: &str) -> Vec<Event> {
        let keys: Vec<Key> = self
            .objects
            .keys()
            .filter(|(_, ns, _)| ns == namespace)
            .cloned()
            .collect();
        let mut events = Vec::new();
        for (resource, ns, name) in keys {
            if let Some(kind) = KINDS.iter().find(|k| k.resource == resource).copied()
                && let Some((_, event)) = self.remove(kind, &ns, &name)
            {
                events.push(event);
            }
        }
        events
    }

    /// Stores an object as a controller would, without admission (kind from its apiVersion and
    /// kind). An existing object of that name is replaced.
    pub(crate) fn seed(&mut self, mut object: Value) -> Result<(Value, Event), Error> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind_name = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let kind = Kind::by_kind(api_version, kind_name).ok_or_else(|| {
            Error(format!(
                "the double does not serve {api_version} {kind_name}"
            ))
        })?;
        if meta_str(&object, "name").is_empty() {
            return Err(Error(format!("a seeded {kind_name} needs metadata.name")));
        }
        let existing = self.get(
            &kind,
            meta_str(&object, "namespace"),
            meta_str(&object, "name"),
        );
        let md = metadata_mut(&mut object);
        md.remove("resourceVersion");
        match &existing {
            Some(old) => {
                md.insert(
                    "uid".into(),
                    meta(old, "uid").cloned().unwrap_or(Value::Null),
                );
                md.insert(
                    "creationTimestamp".into(),
                    meta(old, "creationTimestamp")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
            }
            None => {
                md.entry("uid")
                    .or_insert_with(|| Value::String(uuid::Uuid::new_v4().to_string()));
                md.entry("creationTimestamp")
                    .or_insert_with(|| Value::String(now()));
            }
        }
        normalize(&kind, &mut object);
        if meta(&object, "managedFields").is_none() {
            record_update(&kind, None, &mut object, SEED_MANAGER);
            if object.get("aggregationRule").is_some() {
                // Aggregated ClusterRoles: the aggregation controller applies their rules (A121).
                let mut entries = managed_fields(&object);
                let rules = Field::Top("rules".into());
                for e in entries.iter_mut() {
                    e.fields.remove(&rules);
                }
                entries.push(Managed {
                    manager: "clusterrole-aggregation-controller".into(),
                    operation: "Apply".into(),
                    api_version: kind.api_version(),
                    time: now(),
                    fields: [rules].into_iter().collect(),
                    subresource: None,
                });
                set_managed_fields(&mut object, &entries);
            }
        }
        defaults(&kind, &mut object);
        Ok(self.put(kind, object, existing.is_none()))
    }
}

/// The field manager of objects stored by [`Store::seed`] (the bootstrap policy included).
pub(crate) const SEED_MANAGER: &str = "kube-apiserver";

/// The namespaces a fresh v1.28 server has (A022).
pub(crate) fn system_namespaces() -> Vec<Value> {
    ["default", "kube-node-lease", "kube-public", "kube-system"]
        .iter()
        .map(|n| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
        .collect()
}

/// The bootstrap RBAC policy of v1.28 (recorded with the aggregation controller running).
pub(crate) fn bootstrap_policy() -> Result<Vec<Value>, Error> {
    static POLICY: OnceLock<Result<Vec<Value>, String>> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            let list: Value =
                serde_saphyr::from_str(include_str!("recorded/bootstrap-policy-v1.28.yaml"))
                    .map_err(|e| format!("reading the recorded bootstrap policy: {e}"))?;
            Ok(list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default())
        })
        .clone()
        .map_err(Error)
}

/// What decoding into the typed object and defaulting do before the managed fields are
/// computed: a Role's missing or empty `rules` is `null` (Go's nil slice after a round trip
/// through etcd, A077), binding `apiGroup`s are defaulted, a namespace gets its
/// `kubernetes.io/metadata.name` label.
pub(crate) fn normalize(kind: &Kind, object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    match kind.kind {
        "Role" | "ClusterRole" => {
            let empty = map
                .get("rules")
                .is_none_or(|r| r.as_array().is_some_and(Vec::is_empty));
            if empty {
                map.insert("rules".into(), Value::Null);
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            if let Some(rr) = map.get_mut("roleRef").and_then(Value::as_object_mut) {
                let missing = rr
                    .get("apiGroup")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty();
                if missing {
                    rr.insert("apiGroup".into(), json!(RBAC));
                }
            } else {
                map.insert(
                    "roleRef".into(),
                    json!({"apiGroup": RBAC, "kind": "", "name": ""}),
                );
            }
            if let Some(subjects) = map.get_mut("subjects").and_then(Value::as_array_mut) {
                for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
                    let k = s.get("kind").and_then(Value::as_str).unwrap_or("");
                    let missing = s
                        .get("apiGroup")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty();
                    if missing && (k == "User" || k == "Group") {
                        s.insert("apiGroup".into(), json!(RBAC));
                    }
                }
            }
        }
        "Namespace" => {
            let name = map
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if let Some(md) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = md.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
                }
            }
        }
        _ => {}
    }
}

/// Server-set defaults per kind (what the recordings show a created object carries), not owned
/// by any field manager.
pub(crate) fn defaults(kind: &Kind, object: &mut Value) {
    normalize(kind, object);
    let Some(map) = object.as_object_mut() else {
        return;
    };
    match kind.kind {
        "Namespace" => {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.entry("finalizers")
                    .or_insert_with(|| json!(["kubernetes"]));
            }
            let status = map.entry("status").or_insert_with(|| json!({}));
            if let Some(status) = status.as_object_mut() {
                status.entry("phase").or_insert_with(|| json!("Active"));
            }
        }
        "Pod" => {
            let status = map.entry("status").or_insert_with(|| json!({}));
            if let Some(status) = status.as_object_mut() {
                status.entry("phase").or_insert_with(|| json!("Pending"));
                status
                    .entry("qosClass")
                    .or_insert_with(|| json!("BestEffort"));
            }
        }
        _ => {}
    }
}

/// The object as the server writes it: kind and apiVersion first.
pub(crate) fn with_type(kind: &Kind, object: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), Value::String(kind.kind.to_owned()));
    out.insert("apiVersion".into(), Value::String(kind.api_version()));
    if let Some(map) = object.as_object() {
        for (k, v) in map {
            if k != "kind" && k != "apiVersion" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

// === validation ===

/// One `details.causes` entry of a 422.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) field: String,
}

fn required(field: String, detail: &str) -> Cause {
    let message = if detail.is_empty() {
        "Required value".to_owned()
    } else {
        format!("Required value: {detail}")
    };
    Cause {
        reason: "FieldValueRequired",
        message,
        field,
    }
}

fn go_strings(v: &[String]) -> String {
    let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn not_supported(field: String, value: &str, supported: &[&str]) -> Cause {
    let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Cause {
        reason: "FieldValueNotSupported",
        message: format!(
            "Unsupported value: {value:?}: supported values: {}",
            supported.join(", ")
        ),
        field,
    }
}

/// Validation of the served kinds, as kube-apiserver's for the RBAC kinds (the cases the
/// recordings show) and names.
pub(crate) fn validate(kind: &Kind, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta_str(object, "name");
    if name.is_empty() {
        causes.push(required(
            "metadata.name".into(),
            "name or generateName is required",
        ));
    } else if kind.group == RBAC {
        // RBAC names are path segments: anything but '/' and '%' (and not "." or "..").
        if name.contains('/') {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {name:?}: may not contain '/'"),
                field: "metadata.name".into(),
            });
        } else if name.contains('%') {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {name:?}: may not contain '%'"),
                field: "metadata.name".into(),
            });
        }
    } else if !is_dns_label_or_subdomain(kind, name) {
        let detail = if kind.kind == "Namespace" {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        };
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {name:?}: {detail}"),
            field: "metadata.name".into(),
        });
    }
    match kind.kind {
        "Role" | "ClusterRole" => {
            let rules = object
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, rule) in rules.iter().enumerate() {
                validate_rule(kind.kind == "Role", i, rule, &mut causes);
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => validate_binding(kind, object, &mut causes),
        _ => {}
    }
    causes
}

fn is_dns_label_or_subdomain(kind: &Kind, name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if kind.kind == "Namespace" {
        label_ok(name)
    } else {
        name.len() <= 253 && name.split('.').all(label_ok)
    }
}

fn validate_rule(namespaced: bool, i: usize, rule: &Value, causes: &mut Vec<Cause>) {
    let verbs = strings(rule.get("verbs"));
    let non_resource = strings(rule.get("nonResourceURLs"));
    let resources = strings(rule.get("resources"));
    let api_groups = rule.get("apiGroups").and_then(Value::as_array);
    if verbs.is_empty() {
        causes.push(required(
            format!("rules[{i}].verbs"),
            "verbs must contain at least one value",
        ));
    }
    if !non_resource.is_empty() {
        if namespaced {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                message: format!(
                    "Invalid value: {}: namespaced rules cannot apply to non-resource URLs",
                    go_strings(&non_resource)
                ),
                field: format!("rules[{i}].nonResourceURLs"),
            });
            return;
        }
        if !resources.is_empty() || api_groups.is_some_and(|g| !g.is_empty()) {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                message: format!(
                    "Invalid value: {}: rules cannot apply to both regular resources and non-resource URLs",
                    go_strings(&non_resource)
                ),
                field: format!("rules[{i}].nonResourceURLs"),
            });
        }
        return;
    }
    if api_groups.is_none_or(|g| g.is_empty()) {
        causes.push(required(
            format!("rules[{i}].apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if resources.is_empty() {
        causes.push(required(
            format!("rules[{i}].resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn validate_binding(kind: &Kind, object: &Value, causes: &mut Vec<Cause>) {
    let role_ref = object.get("roleRef");
    let rr = |f: &str| {
        role_ref
            .and_then(|r| r.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let api_group = rr("apiGroup");
    if api_group != RBAC {
        causes.push(not_supported("roleRef.apiGroup".into(), api_group, &[RBAC]));
    }
    let allowed: &[&str] = if kind.kind == "ClusterRoleBinding" {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    let ref_kind = rr("kind");
    if !allowed.contains(&ref_kind) {
        causes.push(not_supported("roleRef.kind".into(), ref_kind, allowed));
    }
    if rr("name").is_empty() {
        causes.push(required("roleRef.name".into(), ""));
    }
    let subjects = object
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, s) in subjects.iter().enumerate() {
        let f = |n: &str| s.get(n).and_then(Value::as_str).unwrap_or("");
        if f("name").is_empty() {
            causes.push(required(format!("subjects[{i}].name"), ""));
        }
        match f("kind") {
            "ServiceAccount" => {
                if !f("apiGroup").is_empty() {
                    causes.push(not_supported(
                        format!("subjects[{i}].apiGroup"),
                        f("apiGroup"),
                        &[""],
                    ));
                }
                if kind.kind == "ClusterRoleBinding" && f("namespace").is_empty() {
                    causes.push(required(format!("subjects[{i}].namespace"), ""));
                }
            }
            "User" | "Group" => {
                if f("apiGroup") != RBAC {
                    causes.push(not_supported(
                        format!("subjects[{i}].apiGroup"),
                        f("apiGroup"),
                        &[RBAC],
                    ));
                }
            }
            other => causes.push(not_supported(
                format!("subjects[{i}].kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

/// Unknown fields of `object` for `kind`, as `fieldValidation` reports them
/// (`bogusField`, `rules[0].bogusRuleField`), and the object without them.
pub(crate) fn unknown_fields(kind: &Kind, object: &Value) -> (Vec<String>, Value) {
    let mut unknown = Vec::new();
    let mut clean = object.clone();
    if let Some(map) = clean.as_object_mut() {
        let keys: Vec<String> = map.keys().cloned().collect();
        for k in keys {
            let known = k == "apiVersion"
                || k == "kind"
                || k == "metadata"
                || kind.fields.contains(&k.as_str());
            if !known {
                unknown.push(k.clone());
                map.remove(&k);
            }
        }
        if let Some(md) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            let keys: Vec<String> = md.keys().cloned().collect();
            for k in keys {
                if !METADATA_FIELDS.contains(&k.as_str()) {
                    unknown.push(format!("metadata.{k}"));
                    md.remove(&k);
                }
            }
        }
        if kind.fields.contains(&"rules")
            && let Some(rules) = map.get_mut("rules").and_then(Value::as_array_mut)
        {
            for (i, rule) in rules.iter_mut().enumerate() {
                if let Some(rule) = rule.as_object_mut() {
                    let keys: Vec<String> = rule.keys().cloned().collect();
                    for k in keys {
                        if !RULE_FIELDS.contains(&k.as_str()) {
                            unknown.push(format!("rules[{i}].{k}"));
                            rule.remove(&k);
                        }
                    }
                }
            }
        }
    }
    (unknown, clean)
}

// === managedFields ===

/// A field that a manager owns: a top-level field (atomic), or one key of labels or annotations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Field {
    Top(String),
    Label(String),
    Annotation(String),
}

impl Field {
    /// `.rules`, `.metadata.labels.owner`: how conflict messages name a field.
    pub(crate) fn path(&self) -> String {
        match self {
            Field::Top(f) => format!(".{f}"),
            Field::Label(k) => format!(".metadata.labels.{k}"),
            Field::Annotation(k) => format!(".metadata.annotations.{k}"),
        }
    }

    pub(crate) fn value<'a>(&self, object: &'a Value) -> Option<&'a Value> {
        match self {
            Field::Top(f) => object.get(f),
            Field::Label(k) => meta(object, "labels").and_then(|l| l.get(k)),
            Field::Annotation(k) => meta(object, "annotations").and_then(|l| l.get(k)),
        }
    }

    /// Sets (or with `None` removes) this field of `object`.
    pub(crate) fn set(&self, object: &mut Value, value: Option<Value>) {
        let (map, key) = match self {
            Field::Top(f) => (object.as_object_mut(), f),
            Field::Label(k) | Field::Annotation(k) => {
                let which = if matches!(self, Field::Label(_)) {
                    "labels"
                } else {
                    "annotations"
                };
                let md = metadata_mut(object);
                if value.is_some() && !md.get(which).is_some_and(Value::is_object) {
                    md.insert(which.into(), json!({}));
                }
                (md.get_mut(which).and_then(Value::as_object_mut), k)
            }
        };
        if let Some(map) = map {
            match value {
                Some(v) => {
                    map.insert(key.clone(), v);
                }
                None => {
                    map.remove(key);
                }
            }
        }
    }
}

/// The fields an object sets (what a manager of it would own).
pub(crate) fn fields_of(object: &Value) -> BTreeSet<Field> {
    let mut out = BTreeSet::new();
    if let Some(map) = object.as_object() {
        for k in map.keys() {
            if k != "apiVersion" && k != "kind" && k != "metadata" && k != "status" {
                out.insert(Field::Top(k.clone()));
            }
        }
    }
    for (which, make) in [
        ("labels", Field::Label as fn(String) -> Field),
        ("annotations", Field::Annotation),
    ] {
        if let Some(m) = meta(object, which).and_then(Value::as_object) {
            for k in m.keys() {
                out.insert(make(k.clone()));
            }
        }
    }
    out
}

/// One managedFields entry, its fieldsV1 parsed into [`Field`]s.
#[derive(Debug, Clone)]
pub(crate) struct Managed {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) time: String,
    pub(crate) fields: BTreeSet<Field>,
    pub(crate) subresource: Option<String>,
}

pub(crate) fn managed_fields(object: &Value) -> Vec<Managed> {
    let Some(entries) = meta(object, "managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| {
            let s = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
            let mut fields = BTreeSet::new();
            if let Some(f) = e.get("fieldsV1").and_then(Value::as_object) {
                for (k, v) in f {
                    if k == "f:metadata" {
                        for (which, make) in [
                            ("f:labels", Field::Label as fn(String) -> Field),
                            ("f:annotations", Field::Annotation),
                        ] {
                            if let Some(m) = v.get(which).and_then(Value::as_object) {
                                for key in m.keys().filter_map(|k| k.strip_prefix("f:")) {
                                    fields.insert(make(key.to_owned()));
                                }
                            }
                        }
                    } else if let Some(top) = k.strip_prefix("f:") {
                        fields.insert(Field::Top(top.to_owned()));
                    }
                }
            }
            Managed {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                fields,
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }
        })
        .collect()
}

fn fields_v1(fields: &BTreeSet<Field>) -> Value {
    let mut out = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for f in fields {
        match f {
            Field::Top(t) => {
                out.insert(format!("f:{t}"), json!({}));
            }
            Field::Label(k) => {
                labels.insert(format!("f:{k}"), json!({}));
            }
            Field::Annotation(k) => {
                annotations.insert(format!("f:{k}"), json!({}));
            }
        }
    }
    let mut md = Map::new();
    for (name, mut m) in [("f:annotations", annotations), ("f:labels", labels)] {
        if !m.is_empty() {
            let mut with_dot = Map::new();
            with_dot.insert(".".into(), json!({}));
            with_dot.append(&mut m);
            md.insert(name.into(), Value::Object(with_dot));
        }
    }
    let mut sorted = Map::new();
    if !md.is_empty() {
        sorted.insert("f:metadata".into(), Value::Object(md));
    }
    let mut rest: Vec<(String, Value)> = out.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in rest {
        sorted.insert(k, v);
    }
    Value::Object(sorted)
}

/// Writes `entries` into `object`'s metadata.managedFields (dropping empty ones, as the server
/// does).
pub(crate) fn set_managed_fields(object: &mut Value, entries: &[Managed]) {
    // As the server's encoder sorts them: operation (Apply before Update), time, manager.
    let mut sorted: Vec<&Managed> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.subresource).cmp(&(
            &b.operation,
            &b.time,
            &b.manager,
            &b.subresource,
        ))
    });
    let rendered: Vec<Value> = sorted
        .into_iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = Map::new();
            e.insert("manager".into(), json!(m.manager));
            e.insert("operation".into(), json!(m.operation));
            e.insert("apiVersion".into(), json!(m.api_version));
            e.insert("time".into(), json!(m.time));
            e.insert("fieldsType".into(), json!("FieldsV1"));
            e.insert("fieldsV1".into(), fields_v1(&m.fields));
            if let Some(s) = &m.subresource {
                e.insert("subresource".into(), json!(s));
            }
            Value::Object(e)
        })
        .collect();
    let md = metadata_mut(object);
    if rendered.is_empty() {
        md.remove("managedFields");
    } else {
        md.insert("managedFields".into(), Value::Array(rendered));
    }
}

/// Records a non-apply write by `manager`: it owns every field whose value changed (taken away
/// from the others), as the server's Update operation does.
pub(crate) fn record_update(kind: &Kind, old: Option<&Value>, new: &mut Value, manager: &str) {
    let mut entries = old.map(managed_fields).unwrap_or_default();
    let new_fields = fields_of(new);
    let changed: BTreeSet<Field> = match old {
        None => new_fields.clone(),
        Some(old) => {
            let mut all = fields_of(old);
            all.extend(new_fields.iter().cloned());
            all.into_iter()
                .filter(|f| f.value(old) != f.value(new))
                .collect()
        }
    };
    for e in entries.iter_mut() {
        e.fields
            .retain(|f| !changed.contains(f) && new_fields.contains(f));
    }
    let mine: BTreeSet<Field> = changed
        .into_iter()
        .filter(|f| new_fields.contains(f))
        .collect();
    if let Some(e) = entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource.is_none())
    {
        e.fields.extend(mine);
        e.time = now();
    } else {
        entries.push(Managed {
            manager: manager.to_owned(),
            operation: "Update".into(),
            api_version: kind.api_version(),
            time: now(),
            fields: mine,
            subresource: None,
        });
    }
    set_managed_fields(new, &entries);
}

// === selectors ===

/// One requirement of a label selector.
#[derive(Debug, Clone)]
pub(crate) enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Parses a label selector (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`).
pub(crate) fn parse_label_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Vec<String> {
            rest.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        };
        if let Some((k, v)) = p.split_once("!=") {
            out.push(Requirement::NotEq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once("==") {
            out.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = p.split_once('=') {
            out.push(Requirement::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            out.push(Requirement::NotIn(k.trim().into(), set(rest)));
        } else if let Some((k, rest)) = p.split_once(" in ") {
            out.push(Requirement::In(k.trim().into(), set(rest)));
        } else if let Some(k) = p.strip_prefix('!') {
            out.push(Requirement::NotExists(k.trim().into()));
        } else if p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            out.push(Requirement::Exists(p.into()));
        } else {
            return Err(format!("unable to parse requirement: {p}"));
        }
    }
    Ok(out)
}

pub(crate) fn matches_labels(object: &Value, reqs: &[Requirement]) -> bool {
    let labels = meta(object, "labels").and_then(Value::as_object);
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

/// Field selectors on `metadata.name` and `metadata.namespace` (`=`, `==`, `!=`).
pub(crate) fn matches_fields(object: &Value, selector: &str) -> Result<bool, String> {
    for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, value, negate) = if let Some((f, v)) = part.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, v, false)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, v, false)
        } else {
            return Err(format!(
                "invalid selector: '{selector}'; can't understand '{part}'"
            ));
        };
        let actual = match field.trim() {
            "metadata.name" => meta_str(object, "name"),
            "metadata.namespace" => meta_str(object, "namespace"),
            "status.phase" => object
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or(""),
            "spec.nodeName" => object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or(""),
            other => return Err(format!("field label not supported: {other}")),
        };
        if (actual == value.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

// === tables ===

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn column(name: &str, ty: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

/// The columns of `kind`'s Table (pods as the kubectl recordings show; others as A089).
pub(crate) fn table_columns(kind: &Kind) -> Vec<Value> {
    match kind.kind {
        "Pod" => vec![
            column("Name", "string", "name", NAME_DESCRIPTION, 0),
            column(
                "Ready",
                "string",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            column(
                "Status",
                "string",
                "",
                "The aggregate status of the containers in this pod.",
                0,
            ),
            column(
                "Restarts",
                "string",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            column("Age", "string", "", CREATED_DESCRIPTION, 0),
            column(
                "IP",
                "string",
                "",
                "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            column(
                "Node",
                "string",
                "",
                "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.",
                1,
            ),
        ],
        "Namespace" => vec![
            column("Name", "string", "name", NAME_DESCRIPTION, 0),
            column("Status", "string", "", "The status of the namespace", 0),
            column("Age", "string", "", CREATED_DESCRIPTION, 0),
        ],
        "ConfigMap" => vec![
            column("Name", "string", "name", NAME_DESCRIPTION, 0),
            column(
                "Data",
                "string",
                "",
                "Data contains the configuration data.",
                0,
            ),
            column("Age", "string", "", CREATED_DESCRIPTION, 0),
        ],
        "RoleBinding" | "ClusterRoleBinding" => vec![
            column("Name", "string", "name", NAME_DESCRIPTION, 0),
            column(
                "Role",
                "string",
                "",
                "RoleRef can only reference the current namespace. It can reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.",
                0,
            ),
            column("Age", "string", "", CREATED_DESCRIPTION, 0),
            column("Users", "string", "", "Users in the roleBinding", 1),
            column("Groups", "string", "", "Groups in the roleBinding", 1),
            column(
                "ServiceAccounts",
                "string",
                "",
                "ServiceAccounts in the roleBinding",
                1,
            ),
        ],
        _ => vec![
            column("Name", "string", "name", NAME_DESCRIPTION, 0),
            column("Created At", "date", "", CREATED_DESCRIPTION, 0),
        ],
    }
}

fn age(object: &Value) -> String {
    let created = meta_str(object, "creationTimestamp");
    let parsed =
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339);
    let Ok(t) = parsed else {
        return "<unknown>".into();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// One Table row for `object` (with the object as PartialObjectMetadata, as kubectl asks).
pub(crate) fn table_row(kind: &Kind, object: &Value) -> Value {
    let name = meta_str(object, "name");
    let cells = match kind.kind {
        "Pod" => {
            let statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| {
                s.iter()
                    .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                    .count()
            });
            let restarts: u64 = statuses.map_or(0, |s| {
                s.iter()
                    .filter_map(|c| c.get("restartCount").and_then(Value::as_u64))
                    .sum()
            });
            let phase = object
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending");
            let status = if meta(object, "deletionTimestamp").is_some() {
                "Terminating"
            } else {
                phase
            };
            let ip = object
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            let node = object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            json!([
                name,
                format!("{ready}/{total}"),
                status,
                restarts.to_string(),
                age(object),
                ip,
                node
            ])
        }
        "Namespace" => {
            let phase = object
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Active");
            json!([name, phase, age(object)])
        }
        "ConfigMap" => {
            let n = object
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, Map::len)
                + object
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, Map::len);
            json!([name, n, age(object)])
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let rr = |f: &str| {
                object
                    .pointer(&format!("/roleRef/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
            };
            let subjects = object
                .get("subjects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let of = |k: &str| -> String {
                subjects
                    .iter()
                    .filter(|s| s.get("kind").and_then(Value::as_str) == Some(k))
                    .map(|s| {
                        let n = s.get("name").and_then(Value::as_str).unwrap_or("");
                        match s.get("namespace").and_then(Value::as_str) {
                            Some(ns) if k == "ServiceAccount" => format!("{ns}/{n}"),
                            _ => n.to_owned(),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            json!([
                name,
                format!("{}/{}", rr("kind"), rr("name")),
                age(object),
                of("User"),
                of("Group"),
                of("ServiceAccount")
            ])
        }
        _ => json!([
            name,
            meta(object, "creationTimestamp")
                .cloned()
                .unwrap_or(Value::Null)
        ]),
    };
    json!({"cells": cells, "object": partial_metadata(object)})
}

/// `PartialObjectMetadata` of an object.
pub(crate) fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

// === duplicate keys ===

/// The duplicated keys of a JSON document as `fieldValidation` names them (`metadata.name`,
/// `rules[0].verbs`): serde_json keeps the last value silently, kube-apiserver reports them.
pub(crate) fn duplicate_fields(bytes: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Vec<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk {
                    path: format!("{}[{i}]", self.path),
                    found: self.found,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    self.found.borrow_mut().push(path.clone());
                }
                map.next_value_seed(Walk {
                    path,
                    found: self.found,
                })?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let _ = Walk {
        path: String::new(),
        found: &found,
    }
    .deserialize(&mut de);
    found.into_inner()
}
