//! Validation of decoded objects, with the rules and error shape of Kubernetes'
//! apimachinery validation.
//!
//! [`validate`] checks one object; [`validate_update`] also checks what may not change.
//! Every problem is a [`FieldError`] naming the field by its path
//! (`spec.redirectURIs[2]`, `metadata.labels[app]`), so the API can answer with a
//! Kubernetes `422 Invalid` `Status` whose `details.causes` lists them all.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::common::{LocalObjectReference, SecretKeySelector};
use crate::label_selector::{LabelSelector, LabelSelectorOperator};
use crate::meta::ObjectMeta;
use crate::registry::{KindInfo, Resource};
use crate::syntax;

/// Most bytes that all annotation keys and values of one object may take together, as
/// Kubernetes' `TotalAnnotationSizeLimitB` (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// Longest `displayName`.
pub const DISPLAY_NAME_MAX_LEN: usize = 256;
/// Longest `description`.
pub const DESCRIPTION_MAX_LEN: usize = 4096;
/// Longest URL (redirect URIs, API server and issuer URLs).
pub const URL_MAX_LEN: usize = 2048;
/// Largest PEM CA bundle.
pub const CA_BUNDLE_MAX_LEN: usize = 256 * 1024;

/// Why a field is invalid, as the `reason` of a `meta/v1` `StatusCause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorType {
    /// A required field is missing or empty (`FieldValueRequired`).
    Required,
    /// The value is malformed or out of range (`FieldValueInvalid`).
    Invalid,
    /// The value is not one of the supported ones (`FieldValueNotSupported`).
    NotSupported,
    /// The value repeats one given before (`FieldValueDuplicate`).
    Duplicate,
    /// The value is too long (`FieldValueTooLong`).
    TooLong,
    /// The field may not be set here, or not changed (`FieldValueForbidden`).
    Forbidden,
}

impl FieldErrorType {
    /// The `StatusCause` `reason` string (`FieldValueRequired`, …).
    pub fn cause_type(self) -> &'static str {
        match self {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::Forbidden => "FieldValueForbidden",
        }
    }
}

/// One validation problem: which field, what kind of problem, and a message that says
/// what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field: `spec.redirectURIs[2]`, `metadata.labels[app]`.
    pub field: String,
    /// Kind of problem.
    pub reason: FieldErrorType,
    /// What is wrong and what is allowed (`must be an absolute https URL`).
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Checks one object: metadata (name, namespace, labels, annotations, finalizers, owner
/// references) by Kubernetes' rules, and the kind's own rules (see each kind's docs).
///
/// # Errors
///
/// Every problem found, not just the first.
pub fn validate(resource: &Resource) -> Result<(), Vec<FieldError>> {
    let mut errs = Errors::default();
    validate_meta(&mut errs, resource.meta(), resource.kind_info());
    resource.validate_kind(&mut errs);
    errs.finish()
}

/// Checks an update of `old` to `new`: everything [`validate`] checks on `new`, plus the
/// fields that may not change: kind, `metadata.name`, `metadata.namespace`, `metadata.uid`
/// and `metadata.creationTimestamp` (where both are set), and the kind's immutable fields
/// (a workspace's and a project's `spec.namespaceName`, a binding's `roleRef`, a
/// connector's `spec.type`).
///
/// # Errors
///
/// Every problem found, not just the first.
pub fn validate_update(old: &Resource, new: &Resource) -> Result<(), Vec<FieldError>> {
    let mut errs = Errors::default();
    if old.kind_info().kind != new.kind_info().kind {
        errs.invalid("kind", "may not be changed");
        return errs.finish();
    }
    let (o, n) = (old.meta(), new.meta());
    if o.name != n.name {
        errs.invalid("metadata.name", "field is immutable");
    }
    if o.namespace_str() != n.namespace_str() {
        errs.invalid("metadata.namespace", "field is immutable");
    }
    if let (Some(a), Some(b)) = (&o.uid, &n.uid)
        && a != b
    {
        errs.invalid("metadata.uid", "field is immutable");
    }
    if let (Some(a), Some(b)) = (&o.creation_timestamp, &n.creation_timestamp)
        && a != b
    {
        errs.invalid("metadata.creationTimestamp", "field is immutable");
    }
    new.validate_update_kind(old, &mut errs);
    validate_meta(&mut errs, n, new.kind_info());
    new.validate_kind(&mut errs);
    errs.finish()
}

// === collecting errors ===

/// Collects [`FieldError`]s while a validator walks an object.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    list: Vec<FieldError>,
}

impl Errors {
    fn push(
        &mut self,
        field: impl Into<String>,
        reason: FieldErrorType,
        message: impl Into<String>,
    ) {
        self.list.push(FieldError {
            field: field.into(),
            reason,
            message: message.into(),
        });
    }

    pub(crate) fn required(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(field, FieldErrorType::Required, message);
    }

    pub(crate) fn invalid(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(field, FieldErrorType::Invalid, message);
    }

    pub(crate) fn not_supported(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(field, FieldErrorType::NotSupported, message);
    }

    pub(crate) fn duplicate(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(field, FieldErrorType::Duplicate, message);
    }

    pub(crate) fn too_long(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(field, FieldErrorType::TooLong, message);
    }

    pub(crate) fn forbidden(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(field, FieldErrorType::Forbidden, message);
    }

    /// Records `Invalid` if the syntax check failed.
    pub(crate) fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(m) = result {
            self.invalid(field, m);
        }
    }

    /// Required, then a syntax check.
    pub(crate) fn required_with(
        &mut self,
        field: impl Into<String>,
        value: &str,
        check: fn(&str) -> Result<(), String>,
    ) {
        if value.is_empty() {
            self.required(field, "must not be empty");
        } else {
            self.check(field, check(value));
        }
    }

    /// `TooLong` if `value` has more than `max` characters.
    pub(crate) fn max_len(&mut self, field: impl Into<String>, value: &str, max: usize) {
        let n = value.chars().count();
        if n > max {
            self.too_long(
                field,
                format!("may not be more than {max} characters (is {n})"),
            );
        }
    }

    /// `Duplicate` for every element equal to an earlier one.
    pub(crate) fn unique<T: Eq + Hash>(&mut self, field: &str, items: &[T]) {
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            if !seen.insert(item) {
                self.duplicate(format!("{field}[{i}]"), "repeats an earlier entry");
            }
        }
    }

    /// Each string non-empty and unique.
    pub(crate) fn non_empty_unique(&mut self, field: &str, items: &[String]) {
        for (i, item) in items.iter().enumerate() {
            if item.is_empty() {
                self.required(format!("{field}[{i}]"), "must not be empty");
            }
        }
        self.unique(field, items);
    }

    fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(self.list)
        }
    }
}

// === metadata ===

/// Name rules of the kinds: which syntax `metadata.name` must follow.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NameRule {
    /// DNS-1123 label (names that become namespaces or DNS names).
    Label,
    /// DNS-1123 subdomain (most objects).
    Subdomain,
    /// RBAC path-segment name, as Kubernetes' role and binding names.
    PathSegment,
}

impl NameRule {
    fn check(self, name: &str) -> Result<(), String> {
        match self {
            NameRule::Label => syntax::dns1123_label(name),
            NameRule::Subdomain => syntax::dns1123_subdomain(name),
            NameRule::PathSegment => path_segment_name(name),
        }
    }
}

/// As Kubernetes' `IsValidPathSegmentName`, used for RBAC object names: anything but `.`,
/// `..`, or a name with `/` or `%` (the name is a URL path segment).
pub(crate) fn path_segment_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("may not be '{name}'"));
    }
    if name.contains(['/', '%']) {
        return Err("may not contain '/' or '%'".to_owned());
    }
    if name.len() > syntax::DNS1123_SUBDOMAIN_MAX_LEN {
        return Err(format!(
            "must be no more than {} characters",
            syntax::DNS1123_SUBDOMAIN_MAX_LEN
        ));
    }
    Ok(())
}

fn validate_meta(errs: &mut Errors, meta: &ObjectMeta, info: &KindInfo) {
    let rule = Resource::name_rule(info.kind);
    match (&meta.name, &meta.generate_name) {
        (name, Some(prefix)) if name.is_empty() => {
            // As Kubernetes: a generated name is the prefix plus random characters, so the
            // prefix is checked with a trailing '-' masked.
            let masked = prefix
                .strip_suffix('-')
                .map_or(prefix.clone(), |p| format!("{p}a"));
            errs.check("metadata.generateName", rule.check(&masked));
        }
        (name, _) if name.is_empty() => {
            errs.required("metadata.name", "name or generateName is required");
        }
        (name, _) => errs.check("metadata.name", rule.check(name)),
    }
    match (info.namespaced, meta.namespace.as_deref()) {
        (true, None | Some("")) => {
            errs.required(
                "metadata.namespace",
                format!("{} is a namespaced kind", info.kind),
            );
        }
        (true, Some(ns)) => errs.check("metadata.namespace", syntax::dns1123_label(ns)),
        (false, None | Some("")) => {}
        (false, Some(_)) => errs.forbidden(
            "metadata.namespace",
            format!("not allowed: {} is cluster-scoped", info.kind),
        ),
    }
    for (k, v) in &meta.labels {
        let field = format!("metadata.labels[{k}]");
        if let Err(m) = syntax::qualified_name(k) {
            errs.invalid(&field, format!("invalid label key: {m}"));
        }
        if let Err(m) = syntax::label_value(v) {
            errs.invalid(&field, format!("invalid label value: {m}"));
        }
    }
    let mut annotation_bytes = 0usize;
    for (k, v) in &meta.annotations {
        // As Kubernetes: annotation keys are checked in lower case.
        if let Err(m) = syntax::qualified_name(&k.to_ascii_lowercase()) {
            errs.invalid(
                format!("metadata.annotations[{k}]"),
                format!("invalid annotation key: {m}"),
            );
        }
        annotation_bytes = annotation_bytes
            .saturating_add(k.len())
            .saturating_add(v.len());
    }
    if annotation_bytes > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.too_long(
            "metadata.annotations",
            format!(
                "may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes in total \
                 (is {annotation_bytes})"
            ),
        );
    }
    for (i, f) in meta.finalizers.iter().enumerate() {
        errs.check(
            format!("metadata.finalizers[{i}]"),
            syntax::qualified_name(f),
        );
    }
    errs.unique("metadata.finalizers", &meta.finalizers);
    if meta.generation.is_some_and(|g| g < 0) {
        errs.invalid("metadata.generation", "must be greater than or equal to 0");
    }
    if meta.deletion_grace_period_seconds.is_some_and(|s| s < 0) {
        errs.invalid(
            "metadata.deletionGracePeriodSeconds",
            "must be greater than or equal to 0",
        );
    }
    let mut controllers = 0;
    for (i, r) in meta.owner_references.iter().enumerate() {
        let field = format!("metadata.ownerReferences[{i}]");
        for (name, value) in [
            ("apiVersion", &r.api_version),
            ("kind", &r.kind),
            ("name", &r.name),
            ("uid", &r.uid),
        ] {
            if value.is_empty() {
                errs.required(format!("{field}.{name}"), "must not be empty");
            }
        }
        if r.controller == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errs.invalid(
            "metadata.ownerReferences",
            "only one reference can have controller set to true",
        );
    }
}

// === shared field checks ===

/// A `metav1.LabelSelector`: keys, values, and values present exactly for `In`/`NotIn`.
pub(crate) fn label_selector(errs: &mut Errors, field: &str, sel: &LabelSelector) {
    for (k, v) in &sel.match_labels {
        let f = format!("{field}.matchLabels[{k}]");
        if let Err(m) = syntax::qualified_name(k) {
            errs.invalid(&f, format!("invalid label key: {m}"));
        }
        if let Err(m) = syntax::label_value(v) {
            errs.invalid(&f, format!("invalid label value: {m}"));
        }
    }
    for (i, r) in sel.match_expressions.iter().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        errs.required_with(format!("{f}.key"), &r.key, syntax::qualified_name);
        match r.operator {
            LabelSelectorOperator::In | LabelSelectorOperator::NotIn => {
                if r.values.is_empty() {
                    errs.required(
                        format!("{f}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            LabelSelectorOperator::Exists | LabelSelectorOperator::DoesNotExist => {
                if !r.values.is_empty() {
                    errs.forbidden(
                        format!("{f}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
        }
        for (j, v) in r.values.iter().enumerate() {
            errs.check(format!("{f}.values[{j}]"), syntax::label_value(v));
        }
    }
}

/// A reference by name to an object whose names are DNS-1123 subdomains (or labels).
pub(crate) fn object_ref(
    errs: &mut Errors,
    field: &str,
    r: &LocalObjectReference,
    rule: fn(&str) -> Result<(), String>,
) {
    errs.required_with(format!("{field}.name"), &r.name, rule);
}

/// A reference to a key of a secret: the name a DNS-1123 subdomain, the key as Kubernetes'
/// `IsConfigMapKey` (alphanumerics, `-`, `_`, `.`; not `.` or `..`).
pub(crate) fn secret_key_ref(errs: &mut Errors, field: &str, r: &SecretKeySelector) {
    errs.required_with(format!("{field}.name"), &r.name, syntax::dns1123_subdomain);
    let reserved = crate::kinds::cluster::CLUSTER_CREDENTIALS_PREFIX;
    if r.name.starts_with(reserved) {
        errs.forbidden(
            format!("{field}.name"),
            format!(
                "secrets named {reserved}* hold attached clusters' credentials and only \
                 `portcullis cluster attach` writes them; name another secret"
            ),
        );
    }
    errs.required_with(format!("{field}.key"), &r.key, |k| {
        if k.len() > syntax::DNS1123_SUBDOMAIN_MAX_LEN {
            return Err(format!(
                "must be no more than {} characters",
                syntax::DNS1123_SUBDOMAIN_MAX_LEN
            ));
        }
        if k == "."
            || k == ".."
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(
                "must consist of alphanumeric characters, '-', '_' or '.' (and not be '.' or '..')"
                    .to_owned(),
            );
        }
        Ok(())
    });
}

/// Rejects whitespace and control characters anywhere in a URL: URL parsers drop some of
/// them silently, which hides tricks such as `https://good%09.evil` or a trailing newline.
fn url_characters(raw: &str) -> Result<(), String> {
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    Ok(())
}

/// An absolute `https` URL with a host, no user info, no query and no fragment (API
/// servers, issuers). A path is allowed (servers behind a path-routing proxy).
pub(crate) fn https_url(errs: &mut Errors, field: &str, raw: &str) {
    if raw.is_empty() {
        errs.required(field, "must be an absolute https URL");
        return;
    }
    if raw.len() > URL_MAX_LEN {
        errs.too_long(
            field,
            format!("may not be more than {URL_MAX_LEN} characters"),
        );
        return;
    }
    let problem = url_characters(raw)
        .err()
        .or_else(|| match url::Url::parse(raw) {
            Err(e) => Some(format!("must be an absolute https URL ({e})")),
            Ok(u) if u.scheme() != "https" || u.host().is_none() => {
                Some("must be an absolute https URL".to_owned())
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                Some("must not contain user information".to_owned())
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() || raw.contains('#') => {
                Some("must not have a query or fragment".to_owned())
            }
            Ok(_) => None,
        });
    if let Some(m) = problem {
        errs.invalid(field, m);
    }
}

/// A PEM bundle of one or more X.509 certificates and nothing secret.
pub(crate) fn ca_bundle(errs: &mut Errors, field: &str, pem: &str) {
    if pem.is_empty() {
        return;
    }
    if pem.len() > CA_BUNDLE_MAX_LEN {
        errs.too_long(
            field,
            format!("may not be more than {CA_BUNDLE_MAX_LEN} bytes"),
        );
        return;
    }
    if pem.contains("PRIVATE KEY-----") {
        errs.forbidden(
            field,
            "must not contain a private key; give only CA certificates",
        );
        return;
    }
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        match cert {
            // A DER certificate is an ASN.1 SEQUENCE (tag 0x30).
            Ok(der) if der.first() == Some(&0x30) => count += 1,
            Ok(_) => {
                errs.invalid(
                    field,
                    format!("certificate {} is not DER-encoded X.509", count + 1),
                );
                return;
            }
            Err(e) => {
                errs.invalid(field, format!("is not valid PEM: {e}"));
                return;
            }
        }
    }
    if count == 0 {
        errs.invalid(
            field,
            "must contain at least one PEM certificate (-----BEGIN CERTIFICATE-----)",
        );
    }
}

/// Namespaces portcullis will not create or take over for a workspace or project:
/// Kubernetes' own (`default`, `kube-*`) and [`GLOBAL_NAMESPACE`](crate::GLOBAL_NAMESPACE).
pub(crate) fn reserved_namespace(ns: &str) -> Option<String> {
    if ns == "default" || ns.starts_with("kube-") || ns == crate::GLOBAL_NAMESPACE {
        Some(format!(
            "namespace {ns:?} is reserved (default, kube-*, {}); choose another",
            crate::GLOBAL_NAMESPACE
        ))
    } else {
        None
    }
}

/// `status.conditions`: each with a type, no type twice.
pub(crate) fn conditions(errs: &mut Errors, field: &str, list: &[crate::Condition]) {
    for (i, c) in list.iter().enumerate() {
        if c.type_.is_empty() {
            errs.required(format!("{field}[{i}].type"), "must not be empty");
        }
    }
    let types: Vec<&str> = list.iter().map(|c| c.type_.as_str()).collect();
    errs.unique(field, &types);
}

// === dispatch to the kinds ===

impl Resource {
    /// Which syntax `metadata.name` follows for a kind.
    pub(crate) fn name_rule(kind: &str) -> NameRule {
        match kind {
            // Names that become namespaces, DNS names or kubeconfig contexts.
            "Workspace" | "Project" | "Cluster" => NameRule::Label,
            // As Kubernetes RBAC object names.
            "KommanderRole"
            | "ClusterScopeRole"
            | "KommanderRoleBinding"
            | "ClusterScopeRoleBinding" => NameRule::PathSegment,
            _ => NameRule::Subdomain,
        }
    }

    fn validate_kind(&self, errs: &mut Errors) {
        match self {
            Resource::Workspace(o) => o.validate_fields(errs),
            Resource::Project(o) => o.validate_fields(errs),
            Resource::Cluster(o) => o.validate_fields(errs),
            Resource::Group(o) => o.validate_fields(errs),
            Resource::KommanderRole(o) => {
                let global = o.metadata.namespace_str() == crate::GLOBAL_NAMESPACE;
                crate::kinds::role::validate_rules(errs, &o.rules, global, "KommanderRole");
                crate::kinds::role::validate_status(errs, o.status.as_ref());
            }
            Resource::ClusterScopeRole(o) => {
                crate::kinds::role::validate_rules(errs, &o.rules, true, "ClusterScopeRole");
                crate::kinds::role::validate_status(errs, o.status.as_ref());
            }
            Resource::KommanderRoleBinding(o) => {
                crate::kinds::role::validate_binding(
                    errs,
                    &o.subjects,
                    &o.role_ref,
                    "KommanderRole",
                );
                crate::kinds::role::validate_status(errs, o.status.as_ref());
            }
            Resource::ClusterScopeRoleBinding(o) => {
                crate::kinds::role::validate_binding(
                    errs,
                    &o.subjects,
                    &o.role_ref,
                    "ClusterScopeRole",
                );
                crate::kinds::role::validate_status(errs, o.status.as_ref());
            }
            Resource::Client(o) => o.validate_fields(errs),
            Resource::User(o) => o.validate_fields(errs),
            Resource::Connector(o) => o.validate_fields(errs),
        }
    }

    fn validate_update_kind(&self, old: &Resource, errs: &mut Errors) {
        const REF: &str = "cannot change roleRef; delete and re-create the binding";
        match (old, self) {
            (Resource::Workspace(a), Resource::Workspace(b))
                if a.spec.namespace_name != b.spec.namespace_name =>
            {
                errs.invalid("spec.namespaceName", "field is immutable");
            }
            (Resource::Project(a), Resource::Project(b))
                if a.spec.namespace_name != b.spec.namespace_name =>
            {
                errs.invalid("spec.namespaceName", "field is immutable");
            }
            (Resource::KommanderRoleBinding(a), Resource::KommanderRoleBinding(b))
                if a.role_ref != b.role_ref =>
            {
                errs.invalid("roleRef", REF);
            }
            (Resource::ClusterScopeRoleBinding(a), Resource::ClusterScopeRoleBinding(b))
                if a.role_ref != b.role_ref =>
            {
                errs.invalid("roleRef", REF);
            }
            (Resource::Connector(a), Resource::Connector(b)) if a.spec.type_ != b.spec.type_ => {
                errs.invalid("spec.type", "field is immutable");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_types_are_kubernetes_spelling() {
        assert_eq!(FieldErrorType::Required.cause_type(), "FieldValueRequired");
        assert_eq!(FieldErrorType::TooLong.cause_type(), "FieldValueTooLong");
    }

    #[test]
    fn path_segment_names() {
        assert!(path_segment_name("portcullis:admin").is_ok());
        for bad in [".", "..", "a/b", "a%2f"] {
            assert!(path_segment_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_urls() {
        let ok = [
            "https://k8s.example.com:6443",
            "https://rancher.example.com/k8s/clusters/c-1",
        ];
        for u in ok {
            let mut e = Errors::default();
            https_url(&mut e, "f", u);
            assert!(e.list.is_empty(), "{u}: {:?}", e.list);
        }
        let bad = [
            "",
            "http://a",
            "https://",
            "https://u:p@a",
            "https://a/?q",
            "https://a/#f",
            "https://a/\n",
            "https://a\t.b",
            "/relative",
            "k8s.example.com",
        ];
        for u in bad {
            let mut e = Errors::default();
            https_url(&mut e, "f", u);
            assert_eq!(e.list.len(), 1, "{u}");
        }
    }
}
