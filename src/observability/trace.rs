//! OpenTelemetry traces (`[tracing]`): one trace per request, exported over OTLP/HTTP
//! (protobuf) by the SDK's batch processor on its own thread.
//!
//! A request's [`Trace`] is begun from its header fields: a W3C `traceparent` (or, failing
//! that, an `X-Amzn-Trace-Id`) is its parent, and its sampling decision is the parent's; a
//! request without a parent is sampled by `sample_ratio` on its trace id (the SDK's
//! `TraceIdRatioBased`). Every request has ids, sampled or not: the access log's `traceId`
//! and the context sent to the integration (`traceparent` with the client span as parent,
//! `tracestate` as received, `X-Amzn-Trace-Id`) are there either way. Only a sampled trace
//! records its spans, and it records them as plain values (name, times, attributes): they
//! become OpenTelemetry spans once, when the request ends ([`Trace::finish`]).
//!
//! The export never blocks or slows a request: a finished trace's spans are handed to the
//! batch processor's bounded queue with `try_send`. A full queue, a failed or timed-out
//! export each count the spans lost in `edgegate_trace_export_failures_total{reason}`.
//!
//! The exporter lives in the runtime ([`Tracing`], reload-surviving): a reload that changes
//! the endpoint or service name starts a new one and the old one flushes what it queued; a
//! shutdown (or the old process of a graceful upgrade) flushes before the process exits.

use super::metrics::TRACE_EXPORT_FAILURES;
use arc_swap::ArcSwapOption;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, ShouldSample, SpanData, SpanEvents,
    SpanExporter, SpanLinks, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Spans queued for export at most; more are dropped and counted (`queue_full`).
const QUEUE: usize = 8192;
/// How long one export may take before it counts as failed (`timeout`).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// `[tracing]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The collector's base URL; spans go to `{endpoint}/v1/traces`.
    pub endpoint: String,
    pub service_name: String,
    /// For requests without a parent: the share sampled, 0 to 1.
    pub sample_ratio: f64,
    /// W3C `traceparent`/`tracestate` read and sent on.
    pub w3c: bool,
    /// `X-Amzn-Trace-Id` read and sent on.
    pub amzn: bool,
}

/// The tracer of the running configuration, if `[tracing]` is set (a runtime value: it
/// outlives reloads).
#[derive(Default)]
pub struct Tracing {
    current: ArcSwapOption<Tracer>,
}

impl Tracing {
    /// Installs the tracer of a snapshot just swapped in: the exporter is kept when its
    /// endpoint and service name are unchanged, otherwise a new one starts and the old one
    /// flushes its queue in the background.
    pub fn configure(&self, settings: Option<&Settings>) {
        let old = self.current.load_full();
        let next = match (settings, &old) {
            (None, _) => None,
            (Some(s), Some(t)) if t.settings == *s => return,
            (Some(s), Some(t)) if t.settings.endpoint == s.endpoint && t.settings.service_name == s.service_name => {
                Some(Arc::new(Tracer::new(s.clone(), t.export.clone())))
            }
            (Some(s), _) => match Export::start(s) {
                Ok(e) => Some(Arc::new(Tracer::new(s.clone(), Arc::new(e)))),
                Err(e) => {
                    log::error!("tracing: cannot start the OTLP exporter for {}: {e}", s.endpoint);
                    None
                }
            },
        };
        self.current.store(next);
    }

    /// A request's trace, from its header fields; `None` when tracing is off.
    pub fn begin(&self, headers: &http::HeaderMap) -> Option<Trace> {
        self.current.load().as_deref().map(|t| t.begin(headers))
    }

    /// Flushes what is queued and stops the exporter (the process is about to exit).
    pub fn shutdown(&self) {
        if let Some(t) = self.current.swap(None) {
            t.export.stop();
        }
    }
}

/// The running `[tracing]` settings with their exporter.
pub struct Tracer {
    settings: Settings,
    export: Arc<Export>,
    ratio: Sampler,
}

impl Tracer {
    fn new(settings: Settings, export: Arc<Export>) -> Tracer {
        let ratio = Sampler::TraceIdRatioBased(settings.sample_ratio);
        Tracer { settings, export, ratio }
    }

    fn begin(&self, headers: &http::HeaderMap) -> Trace {
        let s = &self.settings;
        let parent = s
            .w3c
            .then(|| parse_traceparent(headers))
            .flatten()
            .or_else(|| s.amzn.then(|| parse_amzn(headers)).flatten());
        let (trace_id, parent_span, sampled, state) = match parent {
            Some(p) => (p.trace_id, Some(p.span_id), p.sampled, p.state),
            None => {
                let id = TraceId::from(fastrand::u128(1..));
                let d = self.ratio.should_sample(None, id, "", &SpanKind::Server, &[], &[]).decision;
                (id, None, d == SamplingDecision::RecordAndSample, None)
            }
        };
        Trace {
            // only a sampled trace holds the exporter (no shared count per request otherwise)
            export: sampled.then(|| self.export.clone()),
            w3c: s.w3c,
            amzn: s.amzn,
            trace_id,
            server: span_id(),
            client: span_id(),
            parent: parent_span,
            sampled,
            state,
            spans: Vec::new(),
        }
    }
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
const X_AMZN_TRACE_ID: http::HeaderName = http::HeaderName::from_static("x-amzn-trace-id");

/// Lower-case hex of `bytes` into `out` (twice as long).
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

/// A header value of bytes made here (visible ASCII only).
fn value(v: &[u8]) -> http::HeaderValue {
    http::HeaderValue::from_bytes(v).unwrap_or(http::HeaderValue::from_static(""))
}

fn span_id() -> SpanId {
    SpanId::from(fastrand::u64(1..))
}

/// The parent a request's header fields name.
struct Parent {
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
    state: Option<String>,
}

/// `traceparent: 00-{32 hex}-{16 hex}-{2 hex}` (W3C Trace Context level 1; a later version's
/// longer value is read for its first four fields). Invalid or all-zero ids are no parent.
fn parse_traceparent(headers: &http::HeaderMap) -> Option<Parent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let v = values.next()?.to_str().ok()?.trim();
    if values.next().is_some() {
        return None; // two traceparents: neither is trusted
    }
    let mut f = v.split('-');
    let (version, trace, span, flags) = (f.next()?, f.next()?, f.next()?, f.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if version == "00" && f.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok().filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span).ok().filter(|s| *s != SpanId::INVALID)?;
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    // tracestate: its list members, as received (several fields are one list), if well formed
    let state = headers.get_all(TRACESTATE).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let state = (!state.is_empty() && TraceState::from_str(&state).is_ok() && state.len() <= 512).then_some(state);
    Some(Parent { trace_id, span_id, sampled, state })
}

/// `X-Amzn-Trace-Id: Root=1-{8 hex}-{24 hex};Parent={16 hex};Sampled={0|1}` (AWS X-Ray).
/// Without `Parent` it is not a parent (AWS's own first hop); `Sampled=?` or absent is the
/// gateway's decision, so it is read as no parent either.
fn parse_amzn(headers: &http::HeaderMap) -> Option<Parent> {
    let mut values = headers.get_all(X_AMZN_TRACE_ID).iter();
    let v = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None; // two of them: neither is trusted
    }
    let (mut root, mut parent, mut sampled) = (None, None, None);
    for part in v.split(';') {
        match part.trim().split_once('=')? {
            ("Root", r) => root = Some(r),
            ("Parent", p) => parent = Some(p),
            ("Sampled", s) => sampled = Some(s),
            _ => {}
        }
    }
    let root = root?.strip_prefix("1-")?;
    let (time, rest) = root.split_once('-')?;
    if time.len() != 8 || rest.len() != 24 {
        return None;
    }
    let trace_id = TraceId::from_hex(&format!("{time}{rest}")).ok().filter(|t| *t != TraceId::INVALID)?;
    let parent = parent.filter(|p| p.len() == 16)?;
    let span_id = SpanId::from_hex(parent).ok().filter(|s| *s != SpanId::INVALID)?;
    let sampled = match sampled? {
        "1" => true,
        "0" => false,
        _ => return None,
    };
    Some(Parent { trace_id, span_id, sampled, state: None })
}

/// One request's trace: its ids, its sampling decision and, when sampled, the spans it
/// recorded so far.
pub struct Trace {
    /// Where a sampled trace's spans go.
    export: Option<Arc<Export>>,
    /// What is propagated (`[tracing] propagate`).
    w3c: bool,
    amzn: bool,
    trace_id: TraceId,
    /// The request's own (server) span.
    server: SpanId,
    /// The integration call's (client) span: what the integration is told is its parent.
    client: SpanId,
    parent: Option<SpanId>,
    sampled: bool,
    state: Option<String>,
    spans: Vec<Recorded>,
}

/// A span recorded during the request: a child of the server span.
pub struct Recorded {
    pub name: &'static str,
    pub kind: SpanKind,
    pub start: Instant,
    pub end: Instant,
    pub attributes: Vec<KeyValue>,
    pub error: bool,
    /// The client span of the integration call (its id is the one sent on).
    client: bool,
}

/// What the request's server span says of it, known at its end.
pub struct Server {
    /// The request's arrival (`start` on the clock the spans are measured with).
    pub start: Instant,
    pub received_at: SystemTime,
    /// The span's name: `{METHOD} {route}`, or the method alone when unrouted.
    pub name: String,
    pub attributes: Vec<KeyValue>,
    pub status: u16,
}

impl Trace {
    /// The 32-hex W3C trace id (the access log's `traceId`).
    pub fn id(&self) -> String {
        self.trace_id.to_string()
    }

    /// Whether spans are recorded (the trace is sampled): callers skip measuring otherwise.
    pub fn recording(&self) -> bool {
        self.sampled
    }

    /// Records a child span of the request (an admission step, the cache lookup).
    pub fn span(&mut self, name: &'static str, start: Instant, attributes: Vec<KeyValue>, error: bool) {
        self.record(name, SpanKind::Internal, start, attributes, error);
    }

    /// Records the integration call (a client span whose id the integration was sent).
    pub fn client_span(&mut self, name: &'static str, start: Instant, attributes: Vec<KeyValue>, error: bool) {
        self.record(name, SpanKind::Client, start, attributes, error);
    }

    fn record(&mut self, name: &'static str, kind: SpanKind, start: Instant, attributes: Vec<KeyValue>, error: bool) {
        if self.sampled {
            let client = kind == SpanKind::Client;
            self.spans.push(Recorded { name, kind, start, end: Instant::now(), attributes, error, client });
        }
    }

    /// The header fields that carry the trace to the integration (the client span as parent).
    /// Static names: Pingora's header insert takes them without copying.
    pub fn outgoing(&self) -> impl Iterator<Item = (&'static str, http::HeaderValue)> {
        let (trace, client) = (self.trace_id.to_bytes(), self.client.to_bytes());
        let flag = if self.sampled { b'1' } else { b'0' };
        let traceparent = self.w3c.then(|| {
            // 00-{trace}-{span}-0{flag}
            let mut v = [b'0'; 55];
            hex_into(&mut v[3..35], &trace);
            hex_into(&mut v[36..52], &client);
            (v[2], v[35], v[52], v[54]) = (b'-', b'-', b'-', flag);
            ("traceparent", value(&v))
        });
        let tracestate = self
            .state
            .as_deref()
            .filter(|_| self.w3c)
            .and_then(|v| Some(("tracestate", http::HeaderValue::from_str(v).ok()?)));
        let amzn = self.amzn.then(|| {
            // Root=1-{8 hex}-{24 hex};Parent={16 hex};Sampled={0|1}
            let mut v = *b"Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0";
            hex_into(&mut v[7..15], &trace[..4]);
            hex_into(&mut v[16..40], &trace[4..]);
            hex_into(&mut v[48..64], &client);
            v[73] = flag;
            ("x-amzn-trace-id", value(&v))
        });
        [traceparent, tracestate, amzn].into_iter().flatten()
    }

    /// Ends the request's trace: when sampled, its server span and the children it recorded
    /// go to the export queue (never waiting for it).
    pub fn finish(self, server: Server) {
        if !self.sampled {
            return;
        }
        let at = |t: Instant| server.received_at + t.saturating_duration_since(server.start);
        let end = SystemTime::now();
        let context = |id| SpanContext::new(self.trace_id, id, TraceFlags::SAMPLED, false, TraceState::default());
        let Some(export) = self.export else { return };
        let scope = export.scope.clone();
        let status = if server.status >= 500 { Status::error("") } else { Status::Unset };
        let mut spans = Vec::with_capacity(self.spans.len() + 1);
        spans.push(SpanData {
            span_context: context(self.server),
            parent_span_id: self.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: self.parent.is_some(),
            span_kind: SpanKind::Server,
            name: server.name.into(),
            start_time: server.received_at,
            end_time: end,
            attributes: server.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        });
        for r in self.spans {
            let id = if r.client { self.client } else { span_id() };
            spans.push(SpanData {
                span_context: context(id),
                parent_span_id: self.server,
                parent_span_is_remote: false,
                span_kind: r.kind,
                name: r.name.into(),
                start_time: at(r.start),
                end_time: at(r.end),
                attributes: r.attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: if r.error { Status::error("") } else { Status::Unset },
                instrumentation_scope: scope.clone(),
            });
        }
        export.send(spans);
    }
}

/// The batch processor and its OTLP exporter.
struct Export {
    /// Always there until the exporter is dropped (then its flush takes it).
    processor: Option<BatchSpanProcessor>,
    /// Spans handed to the processor and not yet exported (bounds the queue).
    queued: Arc<AtomicUsize>,
    scope: InstrumentationScope,
    stopped: std::sync::atomic::AtomicBool,
}

impl Export {
    fn start(s: &Settings) -> Result<Export, String> {
        let url = format!("{}/v1/traces", s.endpoint.trim_end_matches('/'));
        // the blocking HTTP client is made off any async runtime (it owns one)
        let exporter = std::thread::spawn(move || {
            use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(EXPORT_TIMEOUT)
                .with_headers(Default::default())
                .build()
        })
        .join()
        .map_err(|_| "the exporter's thread failed".to_string())?
        .map_err(|e| e.to_string())?;
        let queued = Arc::new(AtomicUsize::new(0));
        // the SDK's OTEL_BSP_SCHEDULE_DELAY, when set, is the delay between exports
        let mut config = BatchConfigBuilder::default().with_max_queue_size(QUEUE).with_max_export_batch_size(512);
        if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
            config = config.with_scheduled_delay(Duration::from_millis(500));
        }
        let config = config.build();
        let mut processor = BatchSpanProcessor::builder(Counted { inner: exporter, queued: queued.clone() })
            .with_batch_config(config)
            .build();
        processor.set_resource(&Resource::builder().with_service_name(s.service_name.clone()).build());
        let scope = InstrumentationScope::builder("edgegate").with_version(env!("CARGO_PKG_VERSION")).build();
        Ok(Export { processor: Some(processor), queued, scope, stopped: Default::default() })
    }

    fn send(&self, spans: Vec<SpanData>) {
        for span in spans {
            if self.queued.fetch_add(1, Ordering::Relaxed) >= QUEUE {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                TRACE_EXPORT_FAILURES.with_label_values(&["queue_full"]).inc();
                continue;
            }
            if let Some(p) = &self.processor {
                p.on_end(span);
            }
        }
    }

    fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            if let Some(Err(e)) = self.processor.as_ref().map(|p| p.shutdown()) {
                log::warn!("tracing: flushing the spans at shutdown: {e}");
            }
        }
    }
}

impl Drop for Export {
    /// An exporter replaced by a reload flushes what it still holds, off the request path.
    fn drop(&mut self) {
        if let Some(p) = self.processor.take().filter(|_| !self.stopped.swap(true, Ordering::SeqCst)) {
            std::thread::spawn(move || {
                let _ = p.shutdown();
            });
        }
    }
}

/// The OTLP exporter, counting what it could not deliver.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    queued: Arc<AtomicUsize>,
}

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let r = self.inner.export(batch).await;
        self.queued.fetch_sub(n.min(self.queued.load(Ordering::Relaxed)), Ordering::Relaxed);
        if let Err(e) = &r {
            let reason = if matches!(e, OTelSdkError::Timeout(_)) { "timeout" } else { "export" };
            TRACE_EXPORT_FAILURES.with_label_values(&[reason]).inc_by(n as f64);
            log::debug!("tracing: {n} spans not exported: {e}");
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
