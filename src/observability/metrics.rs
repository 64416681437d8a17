//! The contract's metrics, all prefixed `edgegate_`. Label values are bounded: `route` is
//! the route key, never the raw path; methods outside the standard set count as `OTHER`.

use once_cell::sync::Lazy;
use prometheus::{
    register_counter_vec, register_gauge_vec, register_histogram_vec, register_int_gauge_vec, CounterVec, GaugeVec,
    HistogramVec, IntGaugeVec,
};

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
    for r in ["ok", "error"] {
        CONFIG_RELOADS.with_label_values(&[r]);
    }
}

/// Marks `version` as the running configuration (one series at 1).
pub fn set_config_version(version: &str) {
    CONFIG_INFO.reset();
    CONFIG_INFO.with_label_values(&[version]).set(1.0);
}

/// A bounded method label.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
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
