//! What a request asks for, parsed once from method, path and query as k8s.io/apiserver's
//! `RequestInfoFactory` (`pkg/endpoints/request/requestinfo.go`) does.

use portcullis_rbac::{Attributes, AttributesRef};

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

/// A request as the authorizer sees it: made only by [`RequestInfo::parse`], its parts read
/// through accessors. Held as the decoded path and the spans of its parts in it, so that
/// parsing a request allocates once (the path), not once per part.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    is_resource_request: bool,
    /// The decoded request path (without query).
    path: String,
    verb: Verb,
    api_prefix: Span,
    api_group: Span,
    api_version: Span,
    namespace: Span,
    resource: Span,
    subresource: Span,
    name: Name,
    /// From the resource to the end of the path (`None`: no resource).
    parts: Option<Span>,
}

/// Where a part of a [`RequestInfo`] is in its path (empty by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Paths are at most [`MAX_PATH_LEN`] bytes, so offsets fit in `u32`.
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(0),
            end: u32::try_from(end).unwrap_or(0),
        }
    }

    fn of(self, path: &str) -> &str {
        path.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// The object name: a path segment, or the `metadata.name` of a list's field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    InPath(Span),
    FromQuery(Box<str>),
}

impl Default for Name {
    fn default() -> Name {
        Name::InPath(Span::default())
    }
}

impl std::fmt::Debug for RequestInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestInfo")
            .field("is_resource_request", &self.is_resource_request)
            .field("path", &self.path)
            .field("verb", &self.verb)
            .field("api_prefix", &self.api_prefix())
            .field("api_group", &self.api_group())
            .field("api_version", &self.api_version())
            .field("namespace", &self.namespace())
            .field("resource", &self.resource())
            .field("subresource", &self.subresource())
            .field("name", &self.name())
            .finish()
    }
}

/// The `/`-separated segments of a trimmed path, as spans in the whole path: the first
/// [`Segments::KEPT`] kept (no parse looks further), all counted.
struct Segments {
    spans: [Span; Segments::KEPT],
    len: usize,
}

impl Segments {
    const KEPT: usize = 16;

    fn of(path: &str) -> Segments {
        let mut segments = Segments {
            spans: [Span::default(); Segments::KEPT],
            len: 0,
        };
        let bytes = path.as_bytes();
        let start = bytes.iter().take_while(|&&b| b == b'/').count();
        let end = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'/').count();
        if start >= end {
            return segments;
        }
        // Segments end at each `/` (paths are short: a byte loop beats a search per segment).
        let mut from = start;
        let mut push = |from: usize, to: usize| {
            if let Some(span) = segments.spans.get_mut(segments.len) {
                *span = Span::new(from, to);
            }
            segments.len += 1;
        };
        for (i, &b) in bytes.iter().enumerate().take(end).skip(start) {
            if b == b'/' {
                push(from, i);
                from = i + 1;
            }
        }
        push(from, end);
        segments
    }

    fn span(&self, i: usize) -> Option<Span> {
        if i < self.len {
            self.spans.get(i).copied()
        } else {
            None
        }
    }
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
        // Most paths have nothing encoded: those are used as they are (already UTF-8).
        let decoded = if path.contains('%') {
            percent_encoding::percent_decode_str(path).decode_utf8_lossy()
        } else {
            std::borrow::Cow::Borrowed(path)
        };
        let path: &str = &decoded;
        let non_resource = || RequestInfo {
            is_resource_request: false,
            path: path.to_owned(),
            verb: Verb::non_resource(method),
            ..RequestInfo::default()
        };
        let segments = Segments::of(path);
        let segment = |i: usize| segments.span(i).map(|s| s.of(path));
        // Fewer than three parts is never a resource request (`/api/v1`, `/apis`).
        let prefix = segment(0).unwrap_or_default();
        if segments.len < 3 || (prefix != "api" && prefix != "apis") {
            return Ok(non_resource());
        }
        let mut info = RequestInfo {
            api_prefix: segments.span(0).unwrap_or_default(),
            ..RequestInfo::default()
        };
        // The index of the first part not read yet.
        let mut next = 1;
        if prefix == "apis" {
            // `/apis/{group}/{version}/{resource}`: four parts at least.
            if segments.len < 4 {
                return Ok(non_resource());
            }
            info.api_group = segments.span(1).unwrap_or_default();
            next = 2;
        }
        info.is_resource_request = true;
        let Some(version) = segments.span(next) else {
            return Ok(non_resource());
        };
        info.api_version = version;
        next += 1;

        let mut verb = match segment(next) {
            Some(special @ ("proxy" | "watch")) => {
                if segments.len - next < 2 {
                    return Err(RequestInfoError::NoKind(path.to_owned()));
                }
                next += 1;
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
        if segment(next) == Some("namespaces")
            && let Some(namespace) = segments.span(next + 1)
        {
            info.namespace = namespace;
            if let Some(after) = segment(next + 2)
                && after != "status"
                && after != "finalize"
            {
                next += 2;
            }
        }
        // Parts from here: resource, name, subresource.
        if let Some(resource) = segments.span(next) {
            info.resource = resource;
            info.parts = Some(Span {
                end: u32::try_from(path.trim_end_matches('/').len()).unwrap_or(0),
                ..resource
            });
        }
        if let Some(name) = segments.span(next + 1) {
            info.name = Name::InPath(name);
        }
        if verb != Verb::Proxy
            && let Some(sub) = segments.span(next + 2)
        {
            info.subresource = sub;
        }
        info.path = path.to_owned();

        if info.name().is_empty() && verb == Verb::Get {
            let list = ListOptions::parse(query.unwrap_or_default());
            verb = if list.watch { Verb::Watch } else { Verb::List };
            if let Some(name) = list.metadata_name
                && is_valid_path_segment_name(&name)
            {
                info.name = Name::FromQuery(name.into());
            }
        }
        if info.name().is_empty() && verb == Verb::Delete {
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
                    self.subresource(),
                    "attach" | "exec" | "proxy" | "log" | "portforward"
                ))
    }

    /// True for `/api/...` and `/apis/...` paths naming a resource.
    pub fn is_resource_request(&self) -> bool {
        self.is_resource_request
    }

    /// The request path (percent-decoded, without query).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The verb.
    pub fn verb(&self) -> &Verb {
        &self.verb
    }

    /// `api` or `apis` (empty for non-resource requests).
    pub fn api_prefix(&self) -> &str {
        self.api_prefix.of(&self.path)
    }

    /// API group (`""` for core).
    pub fn api_group(&self) -> &str {
        self.api_group.of(&self.path)
    }

    /// API version.
    pub fn api_version(&self) -> &str {
        self.api_version.of(&self.path)
    }

    /// Namespace (`""`: cluster scope).
    pub fn namespace(&self) -> &str {
        self.namespace.of(&self.path)
    }

    /// Resource (plural).
    pub fn resource(&self) -> &str {
        self.resource.of(&self.path)
    }

    /// Subresource.
    pub fn subresource(&self) -> &str {
        self.subresource.of(&self.path)
    }

    /// Object name (`""`: a collection).
    pub fn name(&self) -> &str {
        match &self.name {
            Name::InPath(span) => span.of(&self.path),
            Name::FromQuery(name) => name,
        }
    }

    /// The path's segments from the resource on (none for a request without a resource).
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.parts
            .map(|span| span.of(&self.path).split('/'))
            .into_iter()
            .flatten()
    }

    /// [`RequestInfo::attributes`] borrowed from the request and `user` (no copy).
    pub fn attributes_ref<'a>(&'a self, user: &'a UserInfo) -> AttributesRef<'a> {
        AttributesRef {
            user: &user.name,
            groups: &user.groups,
            verb: self.verb().as_str(),
            resource_request: self.is_resource_request,
            api_group: self.api_group(),
            resource: self.resource(),
            subresource: self.subresource(),
            namespace: self.namespace(),
            name: self.name(),
            path: if self.is_resource_request {
                ""
            } else {
                &self.path
            },
        }
    }

    /// The authorizer attributes of this request made by `user`.
    pub fn attributes(&self, user: &UserInfo) -> Attributes {
        Attributes {
            extra: user.extra.clone(),
            ..self.attributes_ref(user).to_attributes()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: http::Method, path: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, None).unwrap()
    }

    #[test]
    fn parts_are_the_segments_from_the_resource_on() {
        let info = parse(
            http::Method::GET,
            "/apis/apps/v1/namespaces/ns/deployments/d/scale/",
        );
        assert_eq!(
            info.parts().collect::<Vec<_>>(),
            ["deployments", "d", "scale"]
        );
        let info = parse(http::Method::GET, "/api/v1/namespaces/ns");
        assert_eq!(info.parts().collect::<Vec<_>>(), ["namespaces", "ns"]);
        assert_eq!((info.resource(), info.name()), ("namespaces", "ns"));
        assert_eq!(parse(http::Method::GET, "/healthz").parts().count(), 0);
    }

    #[test]
    fn empty_segments_are_parts_as_in_a_split_path() {
        // Go's strings.Split of the trimmed path: `a//b` has an empty part.
        let info = parse(http::Method::GET, "//api/v1/pods//x/");
        assert!(info.is_resource_request());
        assert_eq!(info.parts().collect::<Vec<_>>(), ["pods", "", "x"]);
        assert_eq!(
            (info.resource(), info.name(), info.subresource()),
            ("pods", "", "x")
        );
        assert_eq!(info.verb(), &Verb::List);
        assert_eq!(info.path(), "//api/v1/pods//x/");
    }

    #[test]
    fn parts_are_read_from_the_decoded_path() {
        let info = parse(http::Method::DELETE, "/api/v1/namespaces/n%2Fs/pods/p%20q");
        assert_eq!(
            (
                info.namespace(),
                info.resource(),
                info.name(),
                info.subresource()
            ),
            ("n", "s", "pods", "p q")
        );
        assert_eq!(info.verb(), &Verb::Delete);
    }
}
