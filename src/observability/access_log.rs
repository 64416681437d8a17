//! One JSON object a line per request, with AWS `$context`-style field names. Lines are
//! handed to a writer thread through a bounded channel so the request path never blocks
//! on the log's disk or pipe; if the writer falls behind, lines are dropped and counted.

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
        let Ok(mut line) = serde_json::to_string(e) else {
            return;
        };
        line.push('\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    });
}
