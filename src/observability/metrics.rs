//! The contract's metrics, all prefixed `edgegate_`. Label values are bounded: `route` is
//! the route key, never the raw path; methods outside the standard set count as `OTHER`.

use once_cell::sync::Lazy;
use prometheus::{
    register_counter_vec, register_gauge_vec, register_histogram_vec, register_int_gauge_vec, Counter, CounterVec,
    GaugeVec, Histogram, HistogramVec, IntGaugeVec,
};
use std::sync::{Arc, OnceLock};

const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

macro_rules! metric {
    ($name:ident, $t:ty, $reg:ident, $key:expr, $help:expr, $labels:expr) => {
        pub static $name: Lazy<$t> = Lazy::new(|| {
            #[allow(clippy::expect_used)]
            $reg!($key, $help, $labels).expect("metric registers once")
        });
    };
}
macro_rules! histogram {
    ($name:ident, $key:expr, $help:expr, $labels:expr) => {
        pub static $name: Lazy<HistogramVec> = Lazy::new(|| {
            #[allow(clippy::expect_used)]
            register_histogram_vec!($key, $help, $labels, BUCKETS.to_vec()).expect("metric registers once")
        });
    };
}

metric!(
    REQUESTS,
    CounterVec,
    register_counter_vec,
    "edgegate_requests_total",
    "Requests answered",
    &["api", "stage", "route", "method", "status"]
);
histogram!(
    REQUEST_DURATION,
    "edgegate_request_duration_seconds",
    "Time from request to the end of the response",
    &["api", "stage", "route"]
);
histogram!(
    INTEGRATION_DURATION,
    "edgegate_integration_duration_seconds",
    "Time spent waiting on the integration",
    &["api", "stage", "integration"]
);
metric!(
    CACHE_REQUESTS,
    CounterVec,
    register_counter_vec,
    "edgegate_cache_requests_total",
    "Response cache lookups",
    &["api", "stage", "result"]
);
metric!(
    THROTTLED,
    CounterVec,
    register_counter_vec,
    "edgegate_throttled_total",
    "Requests refused by a limit",
    &["api", "stage", "reason"]
);
metric!(
    AUTH_FAILURES,
    CounterVec,
    register_counter_vec,
    "edgegate_auth_failures_total",
    "Requests refused by an authorizer",
    &["api", "stage", "authorizer", "reason"]
);
metric!(
    AUTHORIZER_CACHE,
    CounterVec,
    register_counter_vec,
    "edgegate_authorizer_cache_total",
    "Authorizer result cache lookups",
    &["authorizer", "result"]
);
metric!(
    WS_CONNECTIONS,
    IntGaugeVec,
    register_int_gauge_vec,
    "edgegate_websocket_connections",
    "Open WebSocket connections",
    &["api", "stage"]
);
metric!(
    WS_MESSAGES,
    CounterVec,
    register_counter_vec,
    "edgegate_websocket_messages_total",
    "WebSocket messages",
    &["api", "stage", "direction"]
);
metric!(
    UPSTREAM_HEALTH,
    GaugeVec,
    register_gauge_vec,
    "edgegate_upstream_health",
    "VPC-link target health (1 healthy)",
    &["link", "target"]
);
metric!(
    CONFIG_RELOADS,
    CounterVec,
    register_counter_vec,
    "edgegate_config_reloads_total",
    "Configuration loads after startup",
    &["result"]
);
metric!(
    CONFIG_INFO,
    GaugeVec,
    register_gauge_vec,
    "edgegate_config_info",
    "The running configuration's version",
    &["version"]
);

metric!(
    DOWNSTREAM_ERRORS,
    CounterVec,
    register_counter_vec,
    "edgegate_downstream_errors_total",
    "Client-caused errors (handshakes, resets, protocol violations), logged at debug only",
    &["kind"]
);
metric!(
    UPSTREAM_ERRORS,
    CounterVec,
    register_counter_vec,
    "edgegate_upstream_errors_total",
    "Integration failures (logged as one summary a second per upstream)",
    &["kind"]
);
metric!(
    TRACE_EXPORT_FAILURES,
    CounterVec,
    register_counter_vec,
    "edgegate_trace_export_failures_total",
    "Spans not delivered to the trace collector (queue_full, timeout, export)",
    &["reason"]
);

/// Touches every metric so that all names are exported from the first scrape.
pub fn init() {
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&INTEGRATION_DURATION);
    Lazy::force(&CACHE_REQUESTS);
    Lazy::force(&THROTTLED);
    Lazy::force(&AUTH_FAILURES);
    Lazy::force(&AUTHORIZER_CACHE);
    Lazy::force(&WS_CONNECTIONS);
    Lazy::force(&WS_MESSAGES);
    Lazy::force(&UPSTREAM_HEALTH);
    Lazy::force(&DOWNSTREAM_ERRORS);
    Lazy::force(&UPSTREAM_ERRORS);
    for r in ["queue_full", "timeout", "export"] {
        TRACE_EXPORT_FAILURES.with_label_values(&[r]);
    }
    for r in ["ok", "error"] {
        CONFIG_RELOADS.with_label_values(&[r]);
    }
}

/// Marks `version` as the running configuration (one series at 1).
pub fn set_config_version(version: &str) {
    CONFIG_INFO.reset();
    CONFIG_INFO.with_label_values(&[version]).set(1.0);
}

/// The bounded method labels, in the order of [`method_index`].
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"];

fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::PATCH => 4,
        http::Method::DELETE => 5,
        http::Method::OPTIONS => 6,
        _ => 7,
    }
}

/// Statuses a route answers often enough to keep a handle for; others take the label lookup.
const STATUSES: [u16; 28] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 413, 414, 415, 429, 431,
    500, 501, 502, 503, 504,
];
/// Cache results kept with a handle (the cache module's results, by their index).
const CACHE_RESULTS: usize = 5;

/// One route's series in one stage. The compiled configuration keeps one per stage and route
/// (and one for requests no route matched), so a request counts through a handle resolved on
/// first use instead of hashing its labels and taking the registry's lock each time. A reload
/// makes new handles onto the same series: counts carry on.
pub struct RouteMetrics {
    api: Arc<str>,
    stage: Arc<str>,
    route: Arc<str>,
    integration: Arc<str>,
    duration: OnceLock<Histogram>,
    integration_duration: OnceLock<Histogram>,
    cache: [OnceLock<Counter>; CACHE_RESULTS],
    /// `requests_total` by method, then status: a method's table is made when the route
    /// first answers that method, so an idle route costs a few words, not a table per method.
    requests: [OnceLock<Box<[OnceLock<Counter>; STATUSES.len()]>>; METHODS.len()],
}

/// Adds one through the kept handle, or (no slot for these labels) through a lookup.
fn count(slot: Option<&OnceLock<Counter>>, make: impl FnOnce() -> Counter) {
    match slot {
        Some(s) => s.get_or_init(make).inc(),
        None => make().inc(),
    }
}

/// The series of requests that no API or stage took (empty labels).
pub static UNROUTED: Lazy<RouteMetrics> = Lazy::new(|| {
    let none: Arc<str> = Arc::from("");
    RouteMetrics::new(&none, &none, &none, &none)
});

/// What one request adds to its route's series.
pub struct Observed<'a> {
    pub method: &'a http::Method,
    pub status: u16,
    pub elapsed: std::time::Duration,
    /// The cache result (its index among the cache module's results, and its label).
    pub cache: Option<(usize, &'static str)>,
    pub integration_ms: Option<u64>,
}

impl RouteMetrics {
    pub fn new(api: &Arc<str>, stage: &Arc<str>, route: &Arc<str>, integration: &Arc<str>) -> RouteMetrics {
        RouteMetrics {
            api: api.clone(),
            stage: stage.clone(),
            route: route.clone(),
            integration: integration.clone(),
            duration: OnceLock::new(),
            integration_duration: OnceLock::new(),
            cache: Default::default(),
            requests: Default::default(),
        }
    }

    /// Counts one request.
    pub fn observe(&self, o: &Observed<'_>) {
        let (api, stage, route) = (&*self.api, &*self.stage, &*self.route);
        let m = method_index(o.method);
        let si = STATUSES.iter().position(|&s| s == o.status);
        let table = || self.requests[m].get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        count(si.map(|si| &table()[si]), || {
            REQUESTS.with_label_values(&[api, stage, route, METHODS[m], itoa::Buffer::new().format(o.status)])
        });
        self.duration
            .get_or_init(|| REQUEST_DURATION.with_label_values(&[api, stage, route]))
            .observe(o.elapsed.as_secs_f64());
        if let Some((i, label)) = o.cache {
            count(self.cache.get(i), || CACHE_REQUESTS.with_label_values(&[api, stage, label]));
        }
        if let Some(ms) = o.integration_ms {
            self.integration_duration
                .get_or_init(|| INTEGRATION_DURATION.with_label_values(&[api, stage, &self.integration]))
                .observe(ms as f64 / 1000.0);
        }
    }
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = enc.encode(&prometheus::gather(), &mut buf) {
        log::error!("metrics encoding failed: {e}");
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(api: &str, status: &str) -> f64 {
        REQUESTS.with_label_values(&[api, "prod", "GET /a", "GET", status]).get()
    }

    #[test]
    fn kept_handles_and_lookups_count_into_the_same_series() {
        let (api, stage, route, integ): (Arc<str>, Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from("metrics-unit"), Arc::from("prod"), Arc::from("GET /a"), Arc::from("origin"));
        let m = RouteMetrics::new(&api, &stage, &route, &integ);
        let o = |status, cache| Observed {
            method: &http::Method::GET,
            status,
            elapsed: std::time::Duration::from_millis(3),
            cache,
            integration_ms: Some(2),
        };
        m.observe(&o(200, Some((0, "hit"))));
        m.observe(&o(200, None));
        m.observe(&o(418, Some((9, "odd"))));
        // a reload's new handles carry on the same series
        RouteMetrics::new(&api, &stage, &route, &integ).observe(&o(200, None));
        assert_eq!(requests("metrics-unit", "200"), 3.0);
        assert_eq!(requests("metrics-unit", "418"), 1.0, "a status without a kept handle");
        assert_eq!(CACHE_REQUESTS.with_label_values(&["metrics-unit", "prod", "hit"]).get(), 1.0);
        assert_eq!(CACHE_REQUESTS.with_label_values(&["metrics-unit", "prod", "odd"]).get(), 1.0);
        assert_eq!(REQUEST_DURATION.with_label_values(&["metrics-unit", "prod", "GET /a"]).get_sample_count(), 4);
        assert_eq!(INTEGRATION_DURATION.with_label_values(&["metrics-unit", "prod", "origin"]).get_sample_count(), 4);
        assert_eq!(METHODS[method_index(&http::Method::from_bytes(b"PURGE").unwrap_or_default())], "OTHER");
    }
}
