//! OpenTelemetry traces: what a real OTLP/HTTP receiver gets (decoded with the protocol's own
//! messages, `opentelemetry-proto`), what the origin receives of the trace context, the access
//! log's `traceId`, sampling, a dead collector, reloads and the flush at exit.

use crate::common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
    start: u64,
    end: u64,
    service: String,
    error: bool,
}

/// An OTLP/HTTP (protobuf) trace receiver on loopback that answers `status`.
struct Collector {
    base: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

impl Collector {
    fn start(status: u16) -> Collector {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let s2 = spans.clone();
        let base = serve_raw(move |req, _| {
            assert_eq!((req.method.as_str(), req.target.as_str()), ("POST", "/v1/traces"));
            assert_eq!(req.header("content-type").as_deref(), Some("application/x-protobuf"));
            let export = ExportTraceServiceRequest::decode(req.body.as_slice()).expect("an OTLP protobuf export");
            for rs in export.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .map(|a| text(&a.value))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        s2.lock().expect("lock").push(Span {
                            trace_id: hex::encode(&s.trace_id),
                            span_id: hex::encode(&s.span_id),
                            parent: hex::encode(&s.parent_span_id),
                            name: s.name.clone(),
                            kind: s.kind,
                            attributes: s.attributes.iter().map(|a| (a.key.clone(), text(&a.value))).collect(),
                            start: s.start_time_unix_nano,
                            end: s.end_time_unix_nano,
                            service: service.clone(),
                            error: s.status.as_ref().is_some_and(|st| st.code == 2),
                        });
                    }
                }
            }
            format!("HTTP/1.1 {status} X\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                .into_bytes()
        });
        Collector { base, spans }
    }

    fn trace(&self, id: &str) -> Vec<Span> {
        self.spans.lock().expect("lock").iter().filter(|s| s.trace_id == id).cloned().collect()
    }

    fn all(&self) -> Vec<Span> {
        self.spans.lock().expect("lock").clone()
    }

    /// Waits (up to 10 s) for a trace with `n` spans whose server span is `name`.
    fn wait_trace(&self, server_name: &str, n: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.all();
            let ids: Vec<String> = all
                .iter()
                .filter(|s| s.kind == SpanKind::Server as i32 && s.name == server_name)
                .map(|s| s.trace_id.clone())
                .collect();
            for id in ids {
                let t = self.trace(&id);
                if t.len() >= n {
                    return t;
                }
            }
            assert!(Instant::now() < deadline, "no trace of {server_name} with {n} spans: {all:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// JWT + API key + plan throttle and quota + a cached route, an uncached one and a mock;
/// the JWKS and key file are written (the key file holds `key_entry`).
fn access_stack(d: &std::path::Path, p: &Ports, origin: &str, tracing: &str, key_entry: &str) -> String {
    std::fs::write(d.join("keys.toml"), key_entry).expect("keys file");
    if !d.join("jwks.json").exists() {
        crate::jwt::write_jwks(d);
    }
    format!(
        r#"{server}
{tracing}
[authorizers.users]
type = "jwt"
issuer = "https://auth.example.test/"
audience = ["pets-api"]
jwks = "jwks.json"
algorithms = ["RS256"]

[api_keys]
file = "keys.toml"
[[usage_plans]]
name = "gold"
stages = ["t:prod"]
throttle = {{ rate = 1000, burst = 1000 }}
quota = {{ limit = 1000, period = "day" }}

[[apis]]
name = "t"
[apis.stages.prod]
cache = {{ ttl = "60s" }}
[apis.integrations.up]
type = "http"
uri = "{origin}"
[[apis.routes]]
route = "GET /items/{{id}}"
integration = "up"
authorizer = "users"
api_key_required = true
cache = {{ key = ["path.id", "header.authorization", "header.x-api-key"] }}
[[apis.routes]]
route = "GET /plain/{{id}}"
integration = "up"
[apis.integrations.canned]
type = "mock"
body = "made here"
[[apis.routes]]
route = "GET /mocked"
integration = "canned"
"#,
        server = server_section(d, p, "")
    )
}

fn tracing_section(base: &str, ratio: &str) -> String {
    format!("[tracing]\notlp_endpoint = \"{base}\"\nservice_name = \"edge-test\"\nsample_ratio = {ratio}\n")
}

/// A request through JWT + API key + a cache miss + an http integration is one trace: the
/// server span, its admission and cache children and the client span; the origin got a
/// `traceparent` whose parent is that client span; the access log has the same `traceId`.
/// A cache hit is a trace without a client span.
#[test]
fn one_request_is_one_trace_from_admission_to_the_origin() {
    let collector = Collector::start(200);
    let origin = Origin::start("o");
    let (key, entry) = crate::access::create_key("gold", "acme");
    let keys = Arc::new(Mutex::new(None));
    let k2 = keys.clone();
    let gw = Gateway::start(|d, p| {
        *k2.lock().expect("lock") = Some(crate::jwt::write_jwks(d));
        access_stack(d, p, &origin.url(), &tracing_section(&collector.base, "1.0"), &entry)
    });
    let keys = keys.lock().expect("lock").take().expect("keys");
    let jwt = crate::jwt::rs256(
        &keys.rsa_pem,
        "rsa1",
        &serde_json::json!({"iss": "https://auth.example.test/", "aud": "pets-api", "sub": "u1", "exp": crate::jwt::now() + 300}),
    );
    let auth = format!("Bearer {jwt}");
    let hdrs = [("authorization", auth.as_str()), ("x-api-key", key.as_str())];
    let r = get(gw.addr(), "/prod/items/7", &hdrs);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-edgegate-cache"), Some("miss"));

    let spans = collector.wait_trace("GET /items/{id}", 7);
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).expect("server span");
    assert_eq!(server.parent, "", "a request without a parent is a root span");
    assert_eq!(server.service, "edge-test");
    let a = &server.attributes;
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.route"], "GET /items/{id}");
    assert_eq!(a["url.path"], "/prod/items/7");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["client.address"], "127.0.0.1");
    assert_eq!(a["server.address"], "localhost", "the Host the client asked for");
    let child = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} span in {spans:#?}")).clone()
    };
    for name in ["throttle", "authorizer", "api key", "usage plan", "cache lookup"] {
        let c = child(name);
        assert_eq!(c.parent, server.span_id, "{name} is a child of the server span");
        assert_eq!(c.kind, SpanKind::Internal as i32);
        assert!(server.start <= c.start && c.start <= c.end && c.end <= server.end, "{name} within the request");
        assert!(!c.error);
    }
    assert_eq!(child("authorizer").attributes["edgegate.authorizer"], "users");
    assert_eq!(child("cache lookup").attributes["edgegate.cache.result"], "miss");
    let client = child("integration");
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(client.parent, server.span_id);
    assert_eq!(client.attributes["http.response.status_code"], "200");
    // the origin's traceparent: this trace, the client span as parent, sampled
    let seen = origin.requests();
    let tp = seen[0].header("traceparent").expect("traceparent at the origin");
    assert_eq!(tp, format!("00-{}-{}-01", server.trace_id, client.span_id));
    let amzn = seen[0].header("x-amzn-trace-id").expect("x-amzn-trace-id at the origin");
    assert_eq!(
        amzn,
        format!("Root=1-{}-{};Parent={};Sampled=1", &server.trace_id[..8], &server.trace_id[8..], client.span_id)
    );
    // the access log line carries the same trace id
    let line = gw.wait_log("/prod/items/7");
    let v: serde_json::Value = serde_json::from_str(line.lines().last().expect("line")).expect("json");
    assert_eq!(v["traceId"], server.trace_id.as_str());

    // a cache hit: the lookup says hit, and no integration call
    let r = get(gw.addr(), "/prod/items/7", &hdrs);
    assert_eq!(r.header("x-edgegate-cache"), Some("hit"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let hit = loop {
        let traces: Vec<Vec<Span>> = collector
            .all()
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32 && s.trace_id != server.trace_id)
            .map(|s| collector.trace(&s.trace_id))
            .collect();
        if let Some(t) = traces.into_iter().find(|t| t.iter().any(|s| s.name == "cache lookup")) {
            break t;
        }
        assert!(Instant::now() < deadline, "no trace of the hit");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lookup = hit.iter().find(|s| s.name == "cache lookup").expect("lookup");
    assert_eq!(lookup.attributes["edgegate.cache.result"], "hit");
    assert!(!hit.iter().any(|s| s.kind == SpanKind::Client as i32), "a hit calls no integration: {hit:#?}");
    assert_eq!(origin.count(), 1);

    // a refusal is traced too: its step is marked as the error
    let r = get(gw.addr(), "/prod/items/8", &[("authorization", auth.as_str()), ("x-api-key", "wrong")]);
    assert_eq!(r.status, 403);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused = collector.all().into_iter().find(|s| s.name == "api key" && s.error);
        if let Some(s) = refused {
            let server = collector.trace(&s.trace_id).into_iter().find(|s| s.kind == SpanKind::Server as i32);
            assert_eq!(server.expect("server span").attributes["http.response.status_code"], "403");
            break;
        }
        assert!(Instant::now() < deadline, "no refused api key span");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counter_sum(&gw, "edgegate_trace_export_failures_total"), 0.0);
}

fn counter_sum(gw: &Gateway, name: &str) -> f64 {
    gw.metrics().lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Parent-based sampling: a sampled `traceparent` is followed (even at ratio 0), an
/// unsampled one is not sampled (even at ratio 1); `X-Amzn-Trace-Id` is read when no
/// `traceparent` came; a malformed or repeated `traceparent` is no parent. The origin always
/// gets the gateway's own context, never the client's value.
#[test]
fn sampling_follows_the_parent_and_bad_parents_are_ignored() {
    let collector = Collector::start(200);
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| access_stack(d, p, &origin.url(), &tracing_section(&collector.base, "0"), ""));
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    // sampled parent at ratio 0: followed
    let tp = format!("00-{trace}-{parent}-01");
    let r = get(gw.addr(), "/prod/plain/1", &[("traceparent", &tp), ("tracestate", "vendor=abc,other=1")]);
    assert_eq!(r.status, 200);
    let spans = collector.wait_trace("GET /plain/{id}", 2);
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).expect("server");
    assert_eq!((server.trace_id.as_str(), server.parent.as_str()), (trace, parent));
    let client = spans.iter().find(|s| s.kind == SpanKind::Client as i32).expect("client");
    let seen = origin.requests();
    assert_eq!(seen[0].header("traceparent"), Some(format!("00-{trace}-{}-01", client.span_id).as_str()));
    assert_eq!(seen[0].header("tracestate"), Some("vendor=abc,other=1"));

    // an unsampled parent: nothing exported, the decision goes on to the origin
    let tp = format!("00-{trace}-{parent}-00");
    assert_eq!(get(gw.addr(), "/prod/plain/2", &[("traceparent", &tp)]).status, 200);
    let at_origin = origin.requests()[1].header("traceparent").expect("traceparent").to_string();
    assert!(at_origin.starts_with(&format!("00-{trace}-")) && at_origin.ends_with("-00"), "{at_origin}");
    assert!(!at_origin.contains(parent), "the gateway's own span id is the origin's parent");

    // X-Amzn-Trace-Id as the parent
    let amzn = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    assert_eq!(get(gw.addr(), "/prod/plain/3", &[("x-amzn-trace-id", amzn)]).status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let xray = loop {
        let t = collector.trace("5759e988bd862e3fe1be46a994272793");
        if t.len() >= 2 {
            break t;
        }
        assert!(Instant::now() < deadline, "no trace from X-Amzn-Trace-Id");
        std::thread::sleep(Duration::from_millis(50));
    };
    let server = xray.iter().find(|s| s.kind == SpanKind::Server as i32).expect("server");
    assert_eq!(server.parent, "53995c3f42cd8ad8");
    let got = origin.requests()[2].header("x-amzn-trace-id").expect("forwarded").to_string();
    assert!(
        got.starts_with("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=") && got.ends_with(";Sampled=1"),
        "{got}"
    );

    // malformed or repeated parents: ignored (a new root trace, at ratio 0 not sampled)
    let before = collector.all().len();
    let bad = [
        vec![("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_string())],
        vec![("traceparent", format!("00-{}-{parent}-01", trace.to_uppercase()))],
        vec![("traceparent", format!("00-{trace}-0000000000000000-01"))],
        vec![("traceparent", format!("ff-{trace}-{parent}-01"))],
        vec![("traceparent", format!("00-{trace}-{parent}-01-extra"))],
        vec![("traceparent", format!("00-{trace}-{parent}-01")), ("traceparent", format!("00-{trace}-{parent}-01"))],
        vec![("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".to_string())],
        vec![("traceparent", format!("00-{trace}-{parent}-01\u{7f}"))],
    ];
    for (i, h) in bad.iter().enumerate() {
        let path = format!("/prod/plain/bad{i}");
        let raw_headers: String = h.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{raw_headers}Connection: close\r\n\r\n");
        let r = request(gw.addr(), raw.as_bytes());
        assert!(r.status == 200 || r.status == 400, "{i}: {}", r.status);
        if r.status == 200 {
            let seen = origin.requests();
            let last = seen.last().expect("seen");
            let tp = last.header("traceparent").expect("the gateway's own traceparent");
            assert!(!tp.contains(trace) && !tp.contains(&trace.to_uppercase()), "{i}: {tp}");
            assert!(tp.ends_with("-00"), "{i}: a new root at ratio 0 is not sampled: {tp}");
        }
    }
    // the same over HTTP/2: repeated trace fields are no parent, and the origin gets one of
    // each, the gateway's own
    let amzn2 = "Root=1-5759e988-bd862e3fe1be46a994272794;Parent=53995c3f42cd8ad9;Sampled=1";
    let tp = format!("00-{trace}-{parent}-01");
    let r = h2_request(
        gw.addr(),
        "GET",
        "/prod/plain/h2",
        &[("traceparent", &tp), ("traceparent", &tp), ("x-amzn-trace-id", amzn), ("x-amzn-trace-id", amzn2)],
        None,
    );
    assert_eq!(r.status, 200);
    let seen = origin.requests();
    let last = seen.last().expect("seen");
    assert_eq!(last.target, "/plain/h2");
    let lines = |name: &str| last.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let (tps, amzns) = (lines("traceparent"), lines("x-amzn-trace-id"));
    assert_eq!((tps.len(), amzns.len()), (1, 1), "{:?}", last.headers);
    assert!(!tps[0].contains(trace) && tps[0].ends_with("-00"), "a new root, not sampled at ratio 0: {}", tps[0]);
    assert!(!amzns[0].contains("5759e988-bd862e3fe1be46a99427279") && amzns[0].ends_with(";Sampled=0"), "{}", amzns[0]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(collector.all().len(), before, "nothing sampled from a bad parent");
}

/// A dead collector costs a counter and nothing else: requests are answered as fast as
/// ever, and the failures are counted by reason.
#[test]
fn a_dead_collector_costs_only_a_counter() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let failing = Collector::start(500);
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| access_stack(d, p, &origin.url(), &tracing_section(&dead, "1.0"), ""));
    let t = Instant::now();
    for i in 0..200 {
        assert_eq!(get(gw.addr(), &format!("/prod/plain/{i}"), &[]).status, 200);
    }
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "200 requests took {took:?}");
    eventually("export failures counted", || {
        gw.metrics()
            .lines()
            .any(|l| l.starts_with("edgegate_trace_export_failures_total{reason=\"export\"}") && !l.ends_with(" 0"))
    });
    // a collector that answers 500 is a failure too; the new endpoint takes effect on reload
    let cfg = std::fs::read_to_string(&gw.config).expect("cfg").replace(&dead, &failing.base);
    gw.write_config(&cfg);
    gw.signal("HUP");
    eventually("the failing collector is called", || {
        assert_eq!(get(gw.addr(), "/prod/mocked", &[]).status, 200);
        !failing.all().is_empty()
    });
    assert!(gw.stderr().lines().all(|l| !l.contains("panicked")));
}

/// Tracing survives reloads (ratio and endpoint change in place), and the spans queued when
/// the process is told to stop are exported before it exits.
#[test]
fn reloads_keep_tracing_and_the_queue_is_flushed_at_exit() {
    let first = Collector::start(200);
    let second = Collector::start(200);
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| access_stack(d, p, &origin.url(), &tracing_section(&first.base, "1.0"), ""));
    assert_eq!(get(gw.addr(), "/prod/mocked", &[]).status, 200);
    first.wait_trace("GET /mocked", 1);
    // ratio 0 after a reload: nothing more is exported
    let cfg = std::fs::read_to_string(&gw.config).expect("cfg");
    gw.write_config(&cfg.replace("sample_ratio = 1.0", "sample_ratio = 0"));
    gw.signal("HUP");
    eventually("reloaded", || gw.stderr().contains("config reloaded"));
    let n = first.all().len();
    for _ in 0..20 {
        assert_eq!(get(gw.addr(), "/prod/mocked", &[]).status, 200);
    }
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(first.all().len(), n, "ratio 0 exports nothing");
    // another endpoint: spans go there
    gw.write_config(&cfg.replace(&first.base, &second.base));
    gw.signal("HUP");
    eventually("spans reach the new collector", || {
        assert_eq!(get(gw.addr(), "/prod/mocked", &[]).status, 200);
        !second.all().is_empty()
    });
}

/// Spans still queued when the process is told to go are exported before it exits: the old
/// process of a graceful upgrade, and a SIGTERM. The export delay is set to a minute
/// (`OTEL_BSP_SCHEDULE_DELAY`), so only the flush at exit can deliver them.
#[test]
fn queued_spans_are_flushed_when_the_process_goes() {
    let collector = Collector::start(200);
    let origin = Origin::start("o");
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "60000")];
    let make = |d: &std::path::Path, p: &Ports| {
        access_stack(d, p, &origin.url(), &tracing_section(&collector.base, "1.0"), "")
    };
    let flushed = |prefix: &str| {
        let spans = collector.all();
        spans
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32 && s.attributes["url.path"].starts_with(prefix))
            .count()
    };
    let mut gw = Gateway::start_with_env(make, &env);
    for i in 0..5 {
        assert_eq!(get(gw.addr(), &format!("/prod/plain/up{i}"), &[]).status, 200);
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(flushed("/prod/plain/up"), 0, "the spans are queued");
    let mut old = gw.child.take().expect("old process");
    gw.child = Some(gw.spawn(&["-u"]));
    let status = old.wait().expect("old exit");
    assert!(status.success(), "{status:?}");
    assert_eq!(flushed("/prod/plain/up"), 5, "the old process of an upgrade flushed its queue");
    gw.wait_ready();
    drop(gw);

    let mut gw = Gateway::start_with_env(make, &env);
    for i in 0..5 {
        assert_eq!(get(gw.addr(), &format!("/prod/plain/term{i}"), &[]).status, 200);
    }
    gw.signal("TERM");
    let status = gw.child.take().expect("child").wait().expect("exit");
    assert!(status.success(), "{status:?}");
    assert_eq!(flushed("/prod/plain/term"), 5, "every queued trace was flushed at SIGTERM");
}

/// A WebSocket connection: the handshake is a trace (its `$connect` call a client span), and
/// each message and the `$disconnect` are traces of their own, whose context the backend
/// receives; the access log's lines carry their trace ids.
#[test]
fn websocket_handshakes_and_messages_are_traced() {
    let collector = Collector::start(200);
    let (backend, got) = echo_events();
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
{tracing}
[[apis]]
name = "chat"
protocol = "websocket"
route_selection = "$request.body.action"
[apis.stages.prod]
[apis.integrations.be]
type = "http"
uri = "{backend}/ws"
[[apis.routes]]
route = "$connect"
integration = "be"
[[apis.routes]]
route = "$default"
integration = "be"
[[apis.routes]]
route = "$disconnect"
integration = "be"
"#,
            server = server_section(d, p, ""),
            tracing = tracing_section(&collector.base, "1.0"),
        )
    });
    let mut c = crate::websocket::connect(gw.addr(), "/prod", &[]).expect("accepted");
    c.send(tungstenite::Message::text("hello")).expect("send");
    assert_eq!(crate::websocket::text(&mut c), "echo:hello");
    c.close(None).expect("close");
    let _ = c.flush();
    let handshake = collector.wait_trace("$connect", 2);
    let message = collector.wait_trace("WebSocket $default", 2);
    let disconnect = collector.wait_trace("WebSocket $disconnect", 2);
    let client_of = |t: &[Span]| t.iter().find(|s| s.kind == SpanKind::Client as i32).expect("client span").clone();
    let server_of = |t: &[Span]| t.iter().find(|s| s.kind == SpanKind::Server as i32).expect("server span").clone();
    let got = got.lock().expect("lock").clone();
    for (kind, t) in [("CONNECT", &handshake), ("MESSAGE", &message), ("DISCONNECT", &disconnect)] {
        let (server, client) = (server_of(t), client_of(t));
        assert_eq!(client.parent, server.span_id);
        let tp = &got.iter().find(|(k, _)| k == kind).unwrap_or_else(|| panic!("no {kind} in {got:?}")).1;
        assert_eq!(*tp, format!("00-{}-{}-01", server.trace_id, client.span_id), "{kind}");
    }
    let m = server_of(&message);
    assert_eq!(m.attributes["edgegate.websocket.event_type"], "MESSAGE");
    assert!(!m.attributes["edgegate.websocket.connection_id"].is_empty());
    assert_ne!(server_of(&handshake).trace_id, m.trace_id, "each message is a trace of its own");
    let log = gw.wait_log("\"MESSAGE\"");
    assert!(log.contains(&format!("\"traceId\":\"{}\"", m.trace_id)), "{log}");
}
