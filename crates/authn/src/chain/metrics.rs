//! Prometheus metrics of a front end, with kube-apiserver's names and labels where they mean
//! the same thing: `apiserver_request_total` and `apiserver_request_duration_seconds` (verb,
//! group, version, resource, subresource, scope, component, code), `authentication_attempts`
//! (result), `apiserver_authorization_decisions_total` (decision), in-flight requests, audit
//! events, and the front end's own connection counters.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::{RequestInfo, Verb};

/// The labels of a request, as kube-apiserver's `MonitorRequest` gives them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    scope: &'static str,
    component: &'static str,
}

/// Most label sets of requests counted apart. The resource labels come from the request's
/// path, which the client chooses; requests of label sets past this bound are counted with
/// their group, version, resource and subresource [`OTHER`], so a client cannot make series
/// without end.
const MAX_SERIES: usize = 2000;

/// The labels of requests past [`MAX_SERIES`] (as unknown methods are the verb `other`).
const OTHER: &str = "other";

/// [`RequestLabels`] borrowed from a request's [`RequestInfo`]: what its series is looked up
/// by, with no allocation. Hashes as the owned labels do (the same fields in the same order,
/// `String` hashing as `str`).
#[derive(Hash, Clone, Copy)]
struct LabelsRef<'a> {
    verb: &'static str,
    group: &'a str,
    version: &'a str,
    resource: &'a str,
    subresource: &'a str,
    scope: &'static str,
    component: &'static str,
}

impl hashbrown::Equivalent<RequestLabels> for LabelsRef<'_> {
    fn equivalent(&self, k: &RequestLabels) -> bool {
        let same = |a: &str, b: &str| portcullis_rbac::same_bytes(a.as_bytes(), b.as_bytes());
        same(self.verb, k.verb)
            && same(self.group, &k.group)
            && same(self.version, &k.version)
            && same(self.resource, &k.resource)
            && same(self.subresource, &k.subresource)
            && same(self.scope, k.scope)
            && same(self.component, k.component)
    }
}

impl LabelsRef<'_> {
    fn owned(self) -> RequestLabels {
        RequestLabels {
            verb: self.verb,
            group: self.group.to_owned(),
            version: self.version.to_owned(),
            resource: self.resource.to_owned(),
            subresource: self.subresource.to_owned(),
            scope: self.scope,
            component: self.component,
        }
    }
}

/// The labels of `req`, from its [`RequestInfo`] (parsed here when no layer has yet).
fn with_labels<B, T>(req: &http::Request<B>, f: impl FnOnce(&LabelsRef<'_>) -> T) -> T {
    let parsed;
    let info = match req.extensions().get::<RequestInfo>() {
        Some(info) => info,
        None => {
            parsed = RequestInfo::parse(req.method(), req.uri().path(), req.uri().query())
                .unwrap_or_default();
            &parsed
        }
    };
    let apply = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/apply-patch"));
    // kube-apiserver's CleanVerb: the HTTP method, but LIST, WATCH and APPLY by name.
    // Unknown methods are not labels: a client could otherwise add series at will.
    let verb = match (info.verb(), req.method()) {
        (Verb::List, _) => "LIST",
        (Verb::Watch, _) => "WATCH",
        (Verb::Patch, _) if apply => "APPLY",
        (_, &http::Method::GET) => "GET",
        (_, &http::Method::HEAD) => "HEAD",
        (_, &http::Method::POST) => "POST",
        (_, &http::Method::PUT) => "PUT",
        (_, &http::Method::PATCH) => "PATCH",
        (_, &http::Method::DELETE) => "DELETE",
        (_, &http::Method::OPTIONS) => "OPTIONS",
        (_, &http::Method::CONNECT) => "CONNECT",
        _ => "other",
    };
    let scope = if !info.is_resource_request() {
        ""
    } else if !info.name().is_empty() {
        "resource"
    } else if !info.namespace().is_empty() {
        "namespace"
    } else {
        "cluster"
    };
    f(&LabelsRef {
        verb,
        group: info.api_group(),
        version: info.api_version(),
        resource: info.resource(),
        subresource: info.subresource(),
        scope,
        component: "apiserver",
    })
}

/// The series of one label set, taken from the families once: its duration histogram and
/// its request counter for each common response code.
struct Series {
    labels: RequestLabels,
    duration: Histogram,
    by_code: [OnceLock<Counter>; COMMON_CODES.len()],
}

/// The series a request is counted in ([`Metrics::request_series`]), resolved before it is
/// served.
#[derive(Clone)]
pub struct RequestSeries(Arc<Series>);

impl std::fmt::Debug for RequestSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequestSeries")
            .field(&self.0.labels)
            .finish()
    }
}

/// The response codes whose counters a [`Series`] keeps at hand.
const COMMON_CODES: [u16; 14] = [
    200, 201, 204, 304, 400, 401, 403, 404, 405, 409, 422, 429, 500, 503,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    r#type: &'static str,
    name: &'static str,
    decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    request_kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    request_kind: &'static str,
    code: u16,
}

fn duration_histogram() -> Histogram {
    // kube-apiserver's buckets for request durations, in seconds.
    Histogram::new([
        0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
        10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    ])
}

/// Every metric of a front end, in one registry.
pub struct Metrics {
    registry: Registry,
    /// The handles every request touches, resolved once (a family lookup hashes its labels
    /// under a lock).
    hot: Hot,
    /// Each label set's series, found by the request's borrowed labels (a family lookup
    /// needs owned labels, and compares them twice: the histogram's and the counter's).
    series: RwLock<hashbrown::HashMap<RequestLabels, RequestSeries>>,
    requests: Family<CodeLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    authentication: Family<ResultLabel, Counter>,
    authorization: Family<DecisionLabels, Counter>,
    in_flight: Family<KindLabel, Gauge>,
    dropped: Family<KindLabel, Counter>,
    upstream: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    /// Audit events written.
    pub audit_events: Counter,
    /// Audit events lost (the writer failed or fell behind).
    pub audit_errors: Counter,
    /// TLS connections accepted.
    pub connections: Counter,
    /// TLS handshakes that failed (a client certificate of another CA, a timeout, …).
    pub handshake_failures: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "apiserver_request",
            "Counter of requests, by verb, group, version, resource, scope, component and HTTP response code",
            requests.clone(),
        );
        let durations: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds, by verb, group, version, resource, subresource, scope and component",
            durations.clone(),
        );
        let authentication = Family::<ResultLabel, Counter>::default();
        registry.register(
            "authentication_attempts",
            "Counter of authenticated attempts, by result (success, failure: no credentials, error: bad credentials)",
            authentication.clone(),
        );
        let authorization = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "apiserver_authorization_decisions",
            "Total number of terminal decisions made by an authorizer, by type, name and decision",
            authorization.clone(),
        );
        let in_flight = Family::<KindLabel, Gauge>::default();
        registry.register(
            "apiserver_current_inflight_requests",
            "Number of requests being served, read-only and mutating apart",
            in_flight.clone(),
        );
        let dropped = Family::<KindLabel, Counter>::default();
        registry.register(
            "apiserver_dropped_requests",
            "Requests refused with 429 because too many were in flight, by request kind",
            dropped.clone(),
        );
        let upstream: Family<UpstreamLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "portcullis_upstream_duration_seconds",
            "Time until the upstream's response head arrived (the API proxy's cluster), by request kind (request, upgrade) and HTTP code (0: no answer)",
            upstream.clone(),
        );
        let audit_events = Counter::default();
        registry.register(
            "apiserver_audit_event",
            "Counter of audit events generated and sent to the audit backend",
            audit_events.clone(),
        );
        let audit_errors = Counter::default();
        registry.register(
            "apiserver_audit_error",
            "Counter of audit events that failed to be written",
            audit_errors.clone(),
        );
        let connections = Counter::default();
        registry.register(
            "portcullis_tls_connections",
            "TLS connections accepted",
            connections.clone(),
        );
        let handshake_failures = Counter::default();
        registry.register(
            "portcullis_tls_handshake_failures",
            "TLS handshakes that failed",
            handshake_failures.clone(),
        );
        // One statement each: a family's handle holds its lock until the statement ends, and
        // the next lookup of the same family would wait for it.
        let authenticated = authentication
            .get_or_create(&ResultLabel { result: "success" })
            .clone();
        let allowed = authorization
            .get_or_create(&DecisionLabels {
                r#type: "RBAC",
                name: "rbac",
                decision: "allowed",
            })
            .clone();
        let read_only = in_flight
            .get_or_create(&KindLabel {
                request_kind: "readOnly",
            })
            .clone();
        let mutating = in_flight
            .get_or_create(&KindLabel {
                request_kind: "mutating",
            })
            .clone();
        let hot = Hot {
            authenticated,
            allowed,
            read_only,
            mutating,
            upstream_ok: OnceLock::new(),
        };
        Metrics {
            registry,
            hot,
            series: RwLock::default(),
            requests,
            durations,
            authentication,
            authorization,
            in_flight,
            dropped,
            upstream,
            audit_events,
            audit_errors,
            connections,
            handshake_failures,
        }
    }
}

struct Hot {
    authenticated: Counter,
    allowed: Counter,
    read_only: Gauge,
    mutating: Gauge,
    /// The upstream series of ordinary requests answered 200, taken once it is first used.
    upstream_ok: OnceLock<Histogram>,
}

/// Counts a request as in flight until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// The series `req` will be counted in, by its labels (from its [`RequestInfo`], parsed
    /// here when no layer has yet): found with no allocation once the label set has been seen.
    pub fn request_series<B>(&self, req: &http::Request<B>) -> RequestSeries {
        with_labels(req, |labels| self.series_of(labels))
    }

    /// The series of `labels`, made on first use; past [`MAX_SERIES`] label sets, that of
    /// their verb and scope with the other labels `other`.
    fn series_of(&self, labels: &LabelsRef<'_>) -> RequestSeries {
        let mut full = false;
        if let Ok(series) = self.series.read() {
            if let Some(found) = series.get(labels) {
                return found.clone();
            }
            full = series.len() >= MAX_SERIES;
        }
        let overflow;
        let labels = if full {
            overflow = LabelsRef {
                group: OTHER,
                version: OTHER,
                resource: OTHER,
                subresource: OTHER,
                ..*labels
            };
            // Found, or made past the bound: there are few (a verb and a scope each).
            if let Ok(series) = self.series.read()
                && let Some(found) = series.get(&overflow)
            {
                return found.clone();
            }
            &overflow
        } else {
            labels
        };
        let labels = labels.owned();
        let made = RequestSeries(Arc::new(Series {
            duration: self.durations.get_or_create(&labels).clone(),
            labels,
            by_code: Default::default(),
        }));
        match self.series.write() {
            Ok(mut series) => series.entry(made.0.labels.clone()).or_insert(made).clone(),
            // A poisoned map: counted all the same, through the families.
            Err(_) => made,
        }
    }

    /// Counts and times one served request of `series`.
    pub fn request(&self, series: &RequestSeries, code: http::StatusCode, took: Duration) {
        let series = &*series.0;
        series.duration.observe(took.as_secs_f64());
        let counter = |code: http::StatusCode| {
            self.requests
                .get_or_create(&CodeLabels {
                    request: series.labels.clone(),
                    code: code.as_str().to_owned(),
                })
                .clone()
        };
        let common = COMMON_CODES
            .iter()
            .position(|c| *c == code.as_u16())
            .and_then(|i| series.by_code.get(i));
        match common {
            Some(slot) => slot.get_or_init(|| counter(code)).inc(),
            None => counter(code).inc(),
        };
    }

    /// Counts an authentication attempt: `success`, `failure` (no credential where one is
    /// needed) or `error` (a bad credential).
    pub fn authentication(&self, result: &'static str) {
        if result == "success" {
            self.hot.authenticated.inc();
            return;
        }
        self.authentication
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts an authorization decision of the RBAC authorizer.
    pub fn authorization(&self, allowed: bool) {
        if allowed {
            self.hot.allowed.inc();
            return;
        }
        let decision = "denied";
        self.authorization
            .get_or_create(&DecisionLabels {
                r#type: "RBAC",
                name: "rbac",
                decision,
            })
            .inc();
    }

    /// Counts a request of `kind` (`readOnly` or `mutating`) as in flight, until the guard
    /// drops, unless `max` of them already are (0: no bound); `None` when the bound is reached.
    /// The gauge is the count the bound applies to.
    pub fn try_in_flight(&self, kind: &'static str, max: usize) -> Option<InFlight> {
        let gauge = self.in_flight_gauge(kind);
        let before = gauge.inc();
        if max > 0 && usize::try_from(before).unwrap_or(0) >= max {
            gauge.dec();
            return None;
        }
        Some(InFlight(gauge))
    }

    fn in_flight_gauge(&self, kind: &'static str) -> Gauge {
        match kind {
            "readOnly" => self.hot.read_only.clone(),
            "mutating" => self.hot.mutating.clone(),
            other => self
                .in_flight
                .get_or_create(&KindLabel {
                    request_kind: other,
                })
                .clone(),
        }
    }

    /// Counts a request refused because too many of its kind were in flight.
    pub fn rejected_for_in_flight(&self, kind: &'static str) {
        self.dropped
            .get_or_create(&KindLabel { request_kind: kind })
            .inc();
    }

    /// Times a request forwarded upstream, until its response head (`code` 0 when none came).
    pub fn upstream(&self, upgrade: bool, code: u16, took: Duration) {
        let request_kind = if upgrade { "upgrade" } else { "request" };
        let series = |code| {
            self.upstream
                .get_or_create(&UpstreamLabels { request_kind, code })
                .clone()
        };
        if !upgrade && code == 200 {
            self.hot
                .upstream_ok
                .get_or_init(|| series(200))
                .observe(took.as_secs_f64());
        } else {
            series(code).observe(took.as_secs_f64());
        }
    }

    /// The registry, for metrics of other parts of the same process (the management plane's
    /// delivery metrics) to be registered beside these before the metrics are shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text exposition of every metric (OpenMetrics, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The content type of [`Metrics::render`].
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";
}

/// Shared metrics.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn borrowed_labels_hash_and_compare_as_the_owned_ones() {
        let req = http::Request::get("/apis/apps/v1/namespaces/ns/deployments/d/scale")
            .body(())
            .unwrap();
        let hasher = hashbrown::DefaultHashBuilder::default();
        with_labels(&req, |labels| {
            let owned = labels.owned();
            assert_eq!(hasher.hash_one(labels), hasher.hash_one(&owned));
            assert!(hashbrown::Equivalent::equivalent(labels, &owned));
            assert_eq!(
                (owned.verb, owned.group.as_str(), owned.version.as_str()),
                ("GET", "apps", "v1")
            );
            assert_eq!(
                (
                    owned.resource.as_str(),
                    owned.subresource.as_str(),
                    owned.scope
                ),
                ("deployments", "scale", "resource")
            );
        });
    }

    #[test]
    fn a_series_is_made_once_and_counts_into_the_families() {
        let metrics = Metrics::default();
        let req = http::Request::get("/api/v1/pods").body(()).unwrap();
        let series = metrics.request_series(&req);
        assert!(Arc::ptr_eq(&series.0, &metrics.request_series(&req).0));
        metrics.request(&series, http::StatusCode::OK, Duration::from_millis(1));
        metrics.request(&series, http::StatusCode::OK, Duration::from_millis(1));
        metrics.request(&series, http::StatusCode::IM_A_TEAPOT, Duration::ZERO);
        let text = metrics.render();
        for want in [
            "apiserver_request_total{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"cluster\",component=\"apiserver\",code=\"200\"} 2",
            "apiserver_request_total{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"cluster\",component=\"apiserver\",code=\"418\"} 1",
            "apiserver_request_duration_seconds_count{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"cluster\",component=\"apiserver\"} 3",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }

    #[test]
    fn resources_made_up_by_clients_stop_making_series_at_the_bound() {
        let metrics = Metrics::default();
        for i in 0..MAX_SERIES + 50 {
            let req = http::Request::get(format!("/apis/made.up/v1/things-{i}"))
                .body(())
                .unwrap();
            metrics.request(
                &metrics.request_series(&req),
                http::StatusCode::NOT_FOUND,
                Duration::ZERO,
            );
        }
        let text = metrics.render();
        // The first are counted apart; the 50 past the bound under `other`.
        assert!(text.contains("resource=\"things-0\""), "{text}");
        assert!(!text.contains(&format!("things-{}\"", MAX_SERIES)));
        let other = "apiserver_request_total{verb=\"LIST\",group=\"other\",version=\"other\",resource=\"other\",subresource=\"other\",scope=\"cluster\",component=\"apiserver\",code=\"404\"} 50";
        assert!(text.contains(other), "{other} in\n{text}");
        assert_eq!(metrics.series.read().unwrap().len(), MAX_SERIES + 1);
        // A label set seen before the bound is still its own.
        let req = http::Request::get("/apis/made.up/v1/things-7")
            .body(())
            .unwrap();
        assert_eq!(&*metrics.request_series(&req).0.labels.resource, "things-7");
    }
}
