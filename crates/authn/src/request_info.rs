//! What a request asks for, parsed once from method, path and query as k8s.io/apiserver's
//! `RequestInfoFactory` (`pkg/endpoints/request/requestinfo.go`) does.

use portcullis_rbac::Attributes;

use crate::UserInfo;

/// The verb of a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Verb {
    /// `get` (GET or HEAD of a named object; GET of a non-resource path).
    Get,
    /// `list` (GET of a collection).
    List,
    /// `watch` (`?watch=true`, or the legacy `/watch/` prefix).
    Watch,
    /// `create` (POST).
    Create,
    /// `update` (PUT).
    Update,
    /// `patch` (PATCH).
    Patch,
    /// `delete` (DELETE of a named object; DELETE of a non-resource path).
    Delete,
    /// `deletecollection` (DELETE of a collection).
    DeleteCollection,
    /// `proxy` (the legacy `/proxy/` prefix).
    Proxy,
    /// A resource request whose HTTP method maps to no verb: kube-apiserver leaves the verb
    /// empty, which only a `*` rule matches.
    #[default]
    Unknown,
    /// Any other verb: the lower-cased method of a non-resource request (`post`, `put`,
    /// `head`, `options`, …), or a custom verb of an authorization check (`impersonate`,
    /// `bind`, `escalate`, `use`, `approve`, …).
    Other(String),
}

impl Verb {
    /// The verb as Kubernetes spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Proxy => "proxy",
            Verb::Unknown => "",
            Verb::Other(v) => v,
        }
    }

    /// The verb of a non-resource request: the method lower-cased.
    fn non_resource(method: &http::Method) -> Verb {
        match *method {
            http::Method::GET => Verb::Get,
            http::Method::DELETE => Verb::Delete,
            http::Method::PATCH => Verb::Patch,
            ref other => Verb::Other(other.as_str().to_ascii_lowercase()),
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// True for `/api/...` and `/apis/...` paths naming a resource.
    pub is_resource_request: bool,
    /// The request path (without query).
    pub path: String,
    /// The verb.
    pub verb: Verb,
    /// `api` or `apis` (empty for non-resource requests).
    pub api_prefix: String,
    /// API group (`""` for core).
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Namespace (`""`: cluster scope).
    pub namespace: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Object name (`""`: a collection).
    pub name: String,
    /// Path segments from the resource on.
    pub parts: Vec<String>,
}

/// Why a path could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestInfoError {
    /// `/api/v1/watch` or `/api/v1/proxy` with nothing after it.
    #[error("unable to determine kind and namespace from url {0:?}")]
    NoKind(String),
    /// The path is longer than accepted.
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
}

/// Longest path accepted.
pub const MAX_PATH_LEN: usize = 8 * 1024;

impl RequestInfo {
    /// Parses a request. `path` is the URL path as sent: it is percent-decoded first, then
    /// split, as kube-apiserver splits Go's decoded `URL.Path` (so `%2F` separates segments
    /// too); `query` is the raw query string, if any.
    ///
    /// # Errors
    ///
    /// [`RequestInfoError`] as kube-apiserver, for `/watch` or `/proxy` without a resource.
    pub fn parse(
        method: &http::Method,
        path: &str,
        query: Option<&str>,
    ) -> Result<RequestInfo, RequestInfoError> {
        if path.len() > MAX_PATH_LEN {
            return Err(RequestInfoError::TooLong);
        }
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let path: &str = &decoded;
        let non_resource = || RequestInfo {
            is_resource_request: false,
            path: path.to_owned(),
            verb: Verb::non_resource(method),
            ..RequestInfo::default()
        };
        let trimmed = path.trim_matches('/');
        let segments: Vec<String> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').map(str::to_owned).collect()
        };
        let mut parts: &[String] = &segments;
        // Fewer than three parts is never a resource request (`/api/v1`, `/apis`).
        let Some((prefix, rest)) = parts.split_first().filter(|_| segments.len() >= 3) else {
            return Ok(non_resource());
        };
        if prefix != "api" && prefix != "apis" {
            return Ok(non_resource());
        }
        let mut info = RequestInfo {
            path: path.to_owned(),
            api_prefix: prefix.clone(),
            ..RequestInfo::default()
        };
        parts = rest;
        if prefix == "apis" {
            // `/apis/{group}/{version}/{resource}`: four parts at least.
            let Some((group, rest)) = parts.split_first().filter(|_| parts.len() >= 3) else {
                return Ok(non_resource());
            };
            info.api_group = group.clone();
            parts = rest;
        }
        info.is_resource_request = true;
        let Some((version, rest)) = parts.split_first() else {
            return Ok(non_resource());
        };
        info.api_version = version.clone();
        parts = rest;

        let mut verb = match parts.first().map(String::as_str) {
            Some(special @ ("proxy" | "watch")) => {
                if parts.len() < 2 {
                    return Err(RequestInfoError::NoKind(path.to_owned()));
                }
                parts = parts.get(1..).unwrap_or_default();
                if special == "proxy" {
                    Verb::Proxy
                } else {
                    Verb::Watch
                }
            }
            _ => match *method {
                http::Method::POST => Verb::Create,
                http::Method::GET | http::Method::HEAD => Verb::Get,
                http::Method::PUT => Verb::Update,
                http::Method::PATCH => Verb::Patch,
                http::Method::DELETE => Verb::Delete,
                _ => Verb::Unknown,
            },
        };

        // `/namespaces/{namespace}/{resource}/...`; `namespaces/{name}[/status|/finalize]` is
        // the namespace object itself.
        if parts.first().map(String::as_str) == Some("namespaces")
            && let Some(namespace) = parts.get(1)
        {
            info.namespace = namespace.clone();
            if let Some(next) = parts.get(2)
                && next != "status"
                && next != "finalize"
            {
                parts = parts.get(2..).unwrap_or_default();
            }
        }
        info.parts = parts.to_vec();
        if verb != Verb::Proxy
            && let Some(sub) = parts.get(2)
        {
            info.subresource = sub.clone();
        }
        if let Some(name) = parts.get(1) {
            info.name = name.clone();
        }
        if let Some(resource) = parts.first() {
            info.resource = resource.clone();
        }

        if info.name.is_empty() && verb == Verb::Get {
            let list = ListOptions::parse(query.unwrap_or_default());
            verb = if list.watch { Verb::Watch } else { Verb::List };
            if let Some(name) = list.metadata_name
                && is_valid_path_segment_name(&name)
            {
                info.name = name;
            }
        }
        if info.name.is_empty() && verb == Verb::Delete {
            verb = Verb::DeleteCollection;
        }
        info.verb = verb;
        Ok(info)
    }

    /// Whether the request may last as long as the client wants (kube-apiserver's
    /// `BasicLongRunningRequestCheck`: the verbs `watch` and `proxy`, the subresources
    /// `attach`, `exec`, `proxy`, `log` and `portforward`). Max-in-flight does not count them.
    pub fn is_long_running(&self) -> bool {
        matches!(self.verb, Verb::Watch | Verb::Proxy)
            || (self.is_resource_request
                && matches!(
                    self.subresource.as_str(),
                    "attach" | "exec" | "proxy" | "log" | "portforward"
                ))
    }

    /// The verb.
    pub fn verb(&self) -> &Verb {
        &self.verb
    }

    /// The authorizer attributes of this request made by `user`.
    pub fn attributes(&self, user: &UserInfo) -> Attributes {
        Attributes {
            user: user.name.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            verb: self.verb().as_str().to_owned(),
            resource_request: self.is_resource_request,
            api_group: self.api_group.clone(),
            resource: self.resource.clone(),
            subresource: self.subresource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            path: if self.is_resource_request {
                String::new()
            } else {
                self.path.clone()
            },
        }
    }
}

/// The parts of `ListOptions` that change the request's attributes.
struct ListOptions {
    watch: bool,
    metadata_name: Option<String>,
}

impl ListOptions {
    /// As kube-apiserver: `watch` is true unless its first value is `0` or `false` (any case).
    /// The `metadata.name` of an exact-match field selector names the object, unless the
    /// query fails to decode (a bad number), when only `watch` is read.
    fn parse(query: &str) -> ListOptions {
        let mut watch = None;
        let mut field_selector = None;
        let mut decodes = true;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "watch" if watch.is_none() => {
                    watch = Some(!(value == "0" || value.eq_ignore_ascii_case("false")));
                }
                "fieldSelector" if field_selector.is_none() => {
                    field_selector = Some(value.into_owned())
                }
                "limit" | "timeoutSeconds" if value.parse::<i64>().is_err() => decodes = false,
                _ => {}
            }
        }
        let metadata_name = field_selector
            .filter(|_| decodes)
            .and_then(|s| exact_match(&s, "metadata.name"));
        ListOptions {
            watch: watch.unwrap_or(false),
            metadata_name,
        }
    }
}

/// The value a field selector requires `field` to equal exactly (`field=v` or `field==v`
/// among its comma-separated terms), as `fields.Selector.RequiresExactMatch`.
fn exact_match(selector: &str, field: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let term = term.trim();
        if term.contains("!=") {
            return None;
        }
        let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
        (k.trim() == field).then(|| v.trim().to_owned())
    })
}

/// `path.IsValidPathSegmentName`: not `.` or `..`, no `/` or `%`.
fn is_valid_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}
