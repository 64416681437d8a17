//! Error logging that stays useful under attack and outages.
//!
//! - Client-caused errors (TLS and HTTP/2 handshakes that fail, connections reset mid-request,
//!   protocol violations) are counted in `edgegate_downstream_errors_total{kind}` and logged
//!   at debug: a scanner or a flaky client network cannot flood the log.
//! - Integration failures are counted in `edgegate_upstream_errors_total{kind}` and logged once
//!   a second per upstream as a summary (the first failure of a quiet upstream at once).
//!
//! Pingora's own per-connection ERROR lines go through [`Gate`], the process's `log` logger,
//! which classifies them before they reach the tracing subscriber.

use crate::observability::metrics;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A `log` logger in front of `tracing`: Pingora's client-caused ERROR lines become counted
/// debug lines; everything else passes unchanged.
pub struct Gate {
    pub inner: tracing_log::LogTracer,
}

impl log::Log for Gate {
    fn enabled(&self, m: &log::Metadata) -> bool {
        self.inner.enabled(m)
    }

    fn log(&self, r: &log::Record) {
        if r.level() <= log::Level::Warn && r.target().starts_with("pingora") {
            let msg = r.args().to_string();
            if let Some(kind) = downstream_kind(&msg) {
                metrics::DOWNSTREAM_ERRORS.with_label_values(&[kind]).inc();
                let meta = log::Metadata::builder().level(log::Level::Debug).target(r.target()).build();
                if self.inner.enabled(&meta) {
                    self.inner.log(
                        &log::Record::builder()
                            .args(format_args!("{msg}"))
                            .metadata(meta)
                            .module_path(r.module_path())
                            .file(r.file())
                            .line(r.line())
                            .build(),
                    );
                }
                return;
            }
        }
        self.inner.log(r)
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// The class of a client-caused error in one of Pingora's log lines, if it is one.
pub fn downstream_kind(msg: &str) -> Option<&'static str> {
    const KINDS: &[(&str, &str)] = &[
        ("Downstream handshake timeout", "tls_handshake_timeout"),
        ("Downstream handshake error", "tls_handshake"),
        ("H2 handshake error", "h2_handshake"),
        ("fails to read from downstream", "read"),
        ("Downstream", "read"),
        ("downstream", "write"),
        ("Fail to proxy", "protocol"),
        ("Error finish sending body", "write"),
    ];
    KINDS.iter().find(|(needle, _)| msg.contains(needle)).map(|(_, k)| *k)
}

/// A client-caused error our own code saw (counted; logged at debug).
pub fn downstream(kind: &'static str, detail: &dyn std::fmt::Display) {
    metrics::DOWNSTREAM_ERRORS.with_label_values(&[kind]).inc();
    log::debug!("client error ({kind}): {detail}");
}

#[derive(Default)]
struct Window {
    count: u64,
    kinds: HashMap<&'static str, u64>,
    last: String,
    /// When this upstream last had a line of its own.
    logged: Option<Instant>,
}

static UPSTREAMS: Lazy<Mutex<HashMap<String, Window>>> = Lazy::new(|| Mutex::new(HashMap::new()));
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// An integration failure against `upstream` (an address or integration name).
pub fn upstream(upstream: &str, kind: &'static str, detail: &dyn std::fmt::Display) {
    metrics::UPSTREAM_ERRORS.with_label_values(&[kind]).inc();
    let Ok(mut map) = UPSTREAMS.lock() else { return };
    if !map.contains_key(upstream) && map.len() >= 10_000 {
        return; // bounded: the counter still counts
    }
    let w = map.entry(upstream.to_string()).or_default();
    let quiet = w.logged.is_none_or(|t| t.elapsed() >= SUMMARY_EVERY);
    if quiet && w.count == 0 {
        // the first failure of a quiet upstream shows at once
        w.logged = Some(Instant::now());
        log::error!("upstream {upstream}: {kind}: {detail}");
        return;
    }
    w.count += 1;
    *w.kinds.entry(kind).or_default() += 1;
    w.last = detail.to_string();
}

/// Logs one summary line per upstream with failures since the last call; call once a second.
pub fn flush_upstream_summaries() {
    let Ok(mut map) = UPSTREAMS.lock() else { return };
    map.retain(|name, w| {
        if w.count > 0 {
            let mut kinds: Vec<String> = w.kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            kinds.sort();
            log::error!(
                "upstream {name}: {} more failures in the last second ({}); last: {}",
                w.count,
                kinds.join(", "),
                w.last
            );
            w.count = 0;
            w.kinds.clear();
            w.logged = Some(Instant::now());
            true
        } else {
            // forget upstreams that have been quiet for a while
            w.logged.is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        }
    });
}

/// The `kind` label of an integration failure.
pub fn upstream_kind(e: &pingora::Error) -> &'static str {
    use pingora::ErrorType::*;
    match e.etype() {
        ConnectTimedout => "connect_timeout",
        ConnectRefused => "connect_refused",
        ConnectNoRoute | ConnectError | SocketError | BindError => "connect",
        TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => "tls",
        ReadTimedout | WriteTimedout => "timeout",
        ConnectionClosed => "closed",
        ReadError | WriteError => "io",
        InvalidHTTPHeader | H1Error | H2Error | InvalidH2 | H2Downgrade => "protocol",
        _ => "other",
    }
}

/// The `kind` label of a client-caused failure.
pub fn downstream_error_kind(e: &pingora::Error) -> &'static str {
    use pingora::ErrorType::*;
    match e.etype() {
        ReadTimedout | WriteTimedout => "timeout",
        ConnectionClosed => "closed",
        ReadError | WriteError => "io",
        InvalidHTTPHeader | H1Error | H2Error | InvalidH2 => "protocol",
        HTTPStatus(_) => "status",
        _ => "other",
    }
}
