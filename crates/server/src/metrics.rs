//! Prometheus text exposition of the management plane's counters.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, updated lock-free on the request path.
#[derive(Debug, Default)]
pub struct Metrics {
    /// API requests served.
    pub requests: AtomicU64,
    /// Responses by status class: 2xx, 3xx, 4xx, 5xx.
    pub by_class: [AtomicU64; 4],
    /// Requests denied by authorization.
    pub forbidden: AtomicU64,
    /// TLS connections accepted.
    pub connections: AtomicU64,
    /// TLS handshakes that failed (e.g. a client certificate from another CA).
    pub handshake_failures: AtomicU64,
}

impl Metrics {
    /// Counts one response.
    pub fn count_status(&self, code: http::StatusCode) {
        let idx = usize::from(code.as_u16() / 100).saturating_sub(2);
        if let Some(c) = self.by_class.get(idx) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "portcullis_api_requests_total",
            "Management API requests served.",
            self.requests.load(Ordering::Relaxed),
        );
        counter(
            "portcullis_api_forbidden_total",
            "Management API requests denied by authorization.",
            self.forbidden.load(Ordering::Relaxed),
        );
        counter(
            "portcullis_tls_connections_total",
            "TLS connections accepted.",
            self.connections.load(Ordering::Relaxed),
        );
        counter(
            "portcullis_tls_handshake_failures_total",
            "TLS handshakes that failed.",
            self.handshake_failures.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP portcullis_api_responses_total Management API responses by status class.\n# TYPE portcullis_api_responses_total counter"
        );
        for (i, c) in self.by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "portcullis_api_responses_total{{code=\"{}xx\"}} {}",
                i + 2,
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}
