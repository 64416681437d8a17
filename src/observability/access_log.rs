//! One JSON object a line per request, with AWS `$context`-style field names, or the line
//! `server.access_log_format` makes of the same fields ([`Format`]). Lines are handed to a
//! writer thread through a bounded channel so the request path never blocks on the log's
//! disk or pipe; if the writer falls behind, lines are dropped and counted.

use once_cell::sync::OnceCell;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;

/// Where access-log lines go (`server.access_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(std::path::PathBuf),
}

/// A request's log record. Secrets (Authorization, API keys, cookies) are never fields.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub ip: String,
    pub request_time: String,
    pub http_method: &'a str,
    pub path: &'a str,
    pub route_key: &'a str,
    pub status: u16,
    pub protocol: &'a str,
    pub response_length: usize,
    pub latency: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_latency: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_status: Option<u16>,
    pub api_id: &'a str,
    pub stage: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'a str>,
    pub user_agent: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<&'a str>,
    /// A WebSocket connection's messages from and to the client (its CONNECTION line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_out: Option<u64>,
    /// The request's W3C trace id, when tracing is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl<'a> Entry<'a> {
    /// The fields a request view gives; its outcome (status, lengths, latencies, cache,
    /// error type) is the caller's to fill in.
    pub fn of(view: &crate::request::RequestView<'a>) -> Entry<'a> {
        Entry {
            request_id: view.request_id,
            ip: view.client.source_ip(),
            request_time: humantime::format_rfc3339_millis(view.received_at).to_string(),
            http_method: view.method(),
            path: view.raw_path(),
            route_key: view.route(),
            protocol: view.protocol(),
            api_id: view.api(),
            stage: view.stage(),
            user_agent: view.user_agent(),
            client_cert: view.client.cert.as_deref().map(|c| c.subject.as_str()),
            api_key_id: view.caller.api_key_id.as_deref(),
            principal_id: view.caller.principal.as_ref().map(|p| p.principal_id.as_str()).filter(|s| !s.is_empty()),
            ..Default::default()
        }
    }
}

struct Writer {
    target: AccessLogTarget,
    tx: SyncSender<String>,
}

static WRITER: OnceCell<Mutex<Option<Writer>>> = OnceCell::new();
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SENDER: std::cell::RefCell<Option<(u64, SyncSender<String>)>> = const { std::cell::RefCell::new(None) };
}
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Points the log at `target` (called at startup and after each reload); reopens a file.
pub fn configure(target: &AccessLogTarget) {
    let cell = WRITER.get_or_init(|| Mutex::new(None));
    let Ok(mut guard) = cell.lock() else { return };
    if guard.as_ref().map(|w| &w.target) == Some(target) {
        return;
    }
    *guard = match target {
        AccessLogTarget::Off => None,
        t => {
            let out: Box<dyn Write + Send> = match t {
                AccessLogTarget::File(p) => match std::fs::OpenOptions::new().create(true).append(true).open(p) {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        log::error!("access log: cannot open {}: {e}", p.display());
                        return;
                    }
                },
                _ => Box::new(std::io::stdout()),
            };
            let (tx, rx) = sync_channel::<String>(65536);
            let spawned = std::thread::Builder::new().name("access-log".into()).spawn(move || {
                let mut w = std::io::BufWriter::with_capacity(64 << 10, out);
                while let Ok(line) = rx.recv() {
                    let _ = w.write_all(line.as_bytes());
                    // Drain what is queued, then flush once.
                    while let Ok(line) = rx.try_recv() {
                        let _ = w.write_all(line.as_bytes());
                    }
                    let _ = w.flush();
                }
            });
            if let Err(e) = spawned {
                log::error!("access log: cannot start writer: {e}");
                return;
            }
            Some(Writer { target: t.clone(), tx })
        }
    };
    GENERATION.fetch_add(1, Ordering::Release);
}

/// The line format of the running configuration (`None`: the JSON object).
static FORMAT: arc_swap::ArcSwapOption<Format> = arc_swap::ArcSwapOption::const_empty();

/// Installs the running configuration's line format.
pub fn set_format(format: Option<std::sync::Arc<Format>>) {
    FORMAT.store(format);
}

/// `server.access_log_format`: a line template of AWS `$context` variables (as API Gateway's
/// `accessLogSettings.format`), compiled once. A variable without a value is `-`, as AWS
/// writes it; values are escaped as inside a JSON string (`"`, `\`, control characters), so
/// no client-chosen text can end a field or forge a line.
#[derive(Debug, PartialEq)]
pub struct Format(Vec<Part>);

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    Field(Var),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Var {
    /// An entry field, as it is.
    Plain(&'static str),
    /// `requestTime`: CLF (`07/Dec/2026:06:44:59 +0000`), as AWS's `$context.requestTime`.
    ClfTime,
    /// `requestTimeEpoch`: milliseconds.
    EpochMs,
    /// `resourcePath`: the route key's path.
    ResourcePath,
    /// `xrayTraceId`: the trace id in X-Ray's form (`1-{8 hex}-{24 hex}`).
    XrayTraceId,
}

/// The `$context` variables an access log line can name, and what each is.
const VARIABLES: &[(&str, Var)] = &[
    ("requestId", Var::Plain("requestId")),
    ("extendedRequestId", Var::Plain("requestId")),
    ("identity.sourceIp", Var::Plain("ip")),
    ("identity.userAgent", Var::Plain("userAgent")),
    ("identity.apiKeyId", Var::Plain("apiKeyId")),
    ("identity.clientCert.subjectDN", Var::Plain("clientCert")),
    ("authorizer.principalId", Var::Plain("principalId")),
    ("requestTime", Var::ClfTime),
    ("requestTimeEpoch", Var::EpochMs),
    ("httpMethod", Var::Plain("httpMethod")),
    ("path", Var::Plain("path")),
    ("resourcePath", Var::ResourcePath),
    ("routeKey", Var::Plain("routeKey")),
    ("status", Var::Plain("status")),
    ("protocol", Var::Plain("protocol")),
    ("responseLength", Var::Plain("responseLength")),
    ("responseLatency", Var::Plain("latency")),
    ("integrationLatency", Var::Plain("integrationLatency")),
    ("integration.latency", Var::Plain("integrationLatency")),
    ("integrationStatus", Var::Plain("integrationStatus")),
    ("integration.status", Var::Plain("integrationStatus")),
    ("apiId", Var::Plain("apiId")),
    ("stage", Var::Plain("stage")),
    ("error.responseType", Var::Plain("errorType")),
    ("connectionId", Var::Plain("connectionId")),
    ("eventType", Var::Plain("eventType")),
    ("traceId", Var::Plain("traceId")),
    ("xrayTraceId", Var::XrayTraceId),
    ("cacheStatus", Var::Plain("cache")),
];

impl Format {
    /// Compiles a line template; an unknown `$context` variable is an error naming it.
    pub fn parse(template: &str) -> Result<Format, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(i) = rest.find("$context.") {
            text.push_str(&rest[..i]);
            let after = &rest[i + "$context.".len()..];
            let len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'_').count();
            // a trailing dot is the template's own text ("$context.status." ends a sentence)
            let name = after[..len].trim_end_matches('.');
            let Some((_, var)) = VARIABLES.iter().find(|(n, _)| *n == name) else {
                return Err(format!(
                    "unknown variable $context.{name} (known: {})",
                    VARIABLES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ));
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Field(*var));
            rest = &after[name.len()..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err("the format names no $context variable".into());
        }
        Ok(Format(parts))
    }

    /// The line for one entry (its fields as the JSON object has them).
    pub fn render(&self, fields: &serde_json::Map<String, serde_json::Value>) -> String {
        let mut out = String::with_capacity(256);
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(v) => push_escaped(&mut out, value(*v, fields).as_deref().unwrap_or("-")),
            }
        }
        out
    }
}

fn value(v: Var, fields: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let text = |name: &str| match fields.get(name)? {
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    };
    match v {
        Var::Plain(name) => text(name),
        Var::ClfTime | Var::EpochMs => {
            let t = humantime::parse_rfc3339(&text("requestTime")?).ok()?;
            let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
            Some(if v == Var::EpochMs { ms.to_string() } else { crate::clock::clf_time(ms / 1000) })
        }
        Var::ResourcePath => text("routeKey").map(|k| k.split_once(' ').map_or(k.clone(), |(_, p)| p.to_string())),
        Var::XrayTraceId => text("traceId").filter(|t| t.len() == 32).map(|t| format!("1-{}-{}", &t[..8], &t[8..])),
    }
}

fn push_escaped(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// Queues one entry (an [`Entry`], or a line made from one).
pub fn write(e: &impl Serialize) {
    let gen = GENERATION.load(Ordering::Acquire);
    SENDER.with(|s| {
        let mut s = s.borrow_mut();
        if s.as_ref().map(|(g, _)| *g) != Some(gen) {
            let tx = WRITER.get().and_then(|m| m.lock().ok()).and_then(|w| w.as_ref().map(|w| w.tx.clone()));
            *s = tx.map(|t| (gen, t));
        }
        let Some((_, tx)) = s.as_ref() else { return };
        let format = FORMAT.load();
        let line = match format.as_deref() {
            None => serde_json::to_string(e).ok(),
            Some(f) => match serde_json::to_value(e) {
                Ok(serde_json::Value::Object(fields)) => Some(f.render(&fields)),
                _ => None,
            },
        };
        let Some(mut line) = line else {
            return;
        };
        line.push('\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> serde_json::Map<String, serde_json::Value> {
        let e = Entry {
            request_id: "r-1",
            ip: "192.0.2.7".into(),
            request_time: "2026-12-07T06:44:59.123Z".into(),
            http_method: "GET",
            path: "/prod/pets/7",
            route_key: "GET /pets/{id}",
            status: 200,
            protocol: "HTTP/1.1",
            response_length: 12,
            api_id: "pets",
            stage: "prod",
            user_agent: "curl/8 \"quoted\"\nforged".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            ..Default::default()
        };
        match serde_json::to_value(&e) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn clf_and_json_lines() {
        let clf = Format::parse(
            "$context.identity.sourceIp - - [$context.requestTime] \"$context.httpMethod $context.path $context.protocol\" $context.status $context.responseLength $context.requestId",
        )
        .expect("format");
        assert_eq!(
            clf.render(&fields()),
            "192.0.2.7 - - [07/Dec/2026:06:44:59 +0000] \"GET /prod/pets/7 HTTP/1.1\" 200 12 r-1"
        );
        let json = Format::parse(r#"{"id":"$context.requestId","st":"$context.status","key":"$context.identity.apiKeyId","res":"$context.resourcePath","ua":"$context.identity.userAgent","x":"$context.xrayTraceId","ms":$context.requestTimeEpoch}"#).expect("format");
        let line = json.render(&fields());
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(v["id"], "r-1");
        assert_eq!(v["key"], "-", "a variable without a value is -");
        assert_eq!(v["res"], "/pets/{id}");
        assert_eq!(v["ua"], "curl/8 \"quoted\"\nforged", "escaped, so the line stays one JSON object");
        assert_eq!(v["x"], "1-4bf92f35-77b34da6a3ce929d0e0e4736");
        assert_eq!(v["ms"], 1_796_625_899_123u64);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn unknown_variables_are_named() {
        let e = Format::parse("$context.requestId $context.identity.sourceIP").expect_err("unknown");
        assert!(e.starts_with("unknown variable $context.identity.sourceIP"), "{e}");
        assert!(Format::parse("no variables").is_err());
        // a trailing dot is text
        let f = Format::parse("status $context.status.").expect("format");
        assert_eq!(f.render(&fields()), "status 200.");
    }

    #[test]
    fn clf_dates() {
        use crate::clock::clf_time;
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(clf_time(1_796_625_899), "07/Dec/2026:06:44:59 +0000");
    }
}
