//! WebSocket APIs (`protocol = "websocket"`), AWS-style.
//!
//! The handshake is an ordinary request to the proxy: routed to the API's `$connect` route,
//! admitted by the same pipeline as any HTTP request (policy, throttles, authorizer, API key),
//! then the `$connect` integration is called; a non-2xx answer refuses the handshake with its
//! status. Once accepted, the connection is served in [`conn::serve`] on the proxy's own
//! session (the upgraded HTTP/1.1 stream): frames are decoded by `tungstenite` driven sans-IO
//! ([`frames`]), each text message is routed by `route_selection` (binary ones and unmatched
//! ones go to `$default`), and POSTed to its route's http integration with the connection's
//! context in headers (the answer body, if any, goes back to the client), or sent to its
//! Lambda function as AWS's WebSocket event (`integrations::ws_lambda`; the function's `body`
//! goes back on `route_response` routes).
//! `$disconnect` runs on every close. Open connections are in the node's [`REGISTRY`], which
//! the management API ([`manage`]) reads: `POST|GET|DELETE /@connections/{id}`.

pub mod cluster;
pub mod conn;
pub mod frames;
pub mod manage;
pub mod reach;

use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// AWS's limit on one message, the default of `max_message_size`.
pub const DEFAULT_MAX_MESSAGE: usize = 128 * 1024;
/// Messages queued for one connection by the management API before it answers 429.
pub const QUEUE: usize = 256;

/// A WebSocket API's own settings, compiled.
pub struct WsApi {
    /// `route_selection` as a JSON pointer (`$request.body.action` -> `/action`).
    pub selection: String,
    pub idle_timeout: Option<Duration>,
    pub max_duration: Option<Duration>,
    pub max_message: usize,
    /// Route key -> route index, for the keys a message can select.
    pub routes: HashMap<String, usize>,
    pub connect: Option<usize>,
    pub disconnect: Option<usize>,
    pub default: Option<usize>,
    /// `management.authorizer`: the public `@connections` API, with this (SigV4) authorizer.
    pub management: Option<(Arc<str>, crate::auth::Authorizer)>,
    /// `route_response` by route index: a Lambda's answer `body` goes back to the client (an
    /// http integration's body always does).
    pub route_response: Vec<bool>,
    /// New connections per second, per stage (by stage index), on this node: AWS's 500/s.
    pub connection_rate: Vec<Arc<crate::throttle::bucket::Bucket>>,
}

/// AWS's limit on new connections per second (per stage here, per node).
pub const CONNECTION_RATE: f64 = 500.0;

impl WsApi {
    /// The route for a message: text is parsed as JSON and the selection expression's value
    /// picks the route; anything else (binary, not JSON, no such key) is `$default`.
    pub fn select(&self, text: Option<&str>) -> Option<usize> {
        let key = text
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| v.pointer(&self.selection).and_then(|k| k.as_str().map(str::to_string)));
        match key.and_then(|k| self.routes.get(&k).copied()) {
            Some(r) => Some(r),
            None => self.default,
        }
    }
}

/// `$request.body.a.b` -> `/a/b` (a JSON pointer, `~` and `/` escaped).
pub fn parse_selection(expr: &str) -> Result<String, String> {
    let rest = expr
        .strip_prefix("$request.body.")
        .ok_or_else(|| format!("route_selection {expr:?} must be $request.body.NAME (a field of each JSON message)"))?;
    if rest.is_empty() || rest.split('.').any(str::is_empty) {
        return Err(format!("route_selection {expr:?} names an empty field"));
    }
    Ok(rest.split('.').map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect())
}

/// What the management API sends to a connection.
#[derive(Debug)]
pub enum Push {
    Text(String),
    Binary(bytes::Bytes),
    /// Close with this code and reason (a management DELETE: 1000).
    Close(u16, &'static str),
}

/// One open connection, as the registry and the management API see it.
pub struct Conn {
    pub id: String,
    pub api: Arc<str>,
    pub stage: Arc<str>,
    pub connected_at: SystemTime,
    /// Unix milliseconds of the last message in either direction.
    last_active: AtomicU64,
    pub source_ip: String,
    pub user_agent: String,
    /// The API's `max_message_size`, for management POSTs.
    pub max_message: usize,
    tx: mpsc::Sender<Push>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Conn {
    pub fn touch(&self) {
        self.last_active.store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    pub fn last_active(&self) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_millis(self.last_active.load(Ordering::Relaxed))
    }

    /// Queues `p` for the client. `Err(true)`: the queue is full; `Err(false)`: the
    /// connection is gone.
    pub fn push(&self, p: Push) -> Result<(), bool> {
        match self.tx.try_send(p) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(true),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(false),
        }
    }

    /// Queues an integration's answer for the client, waiting for room when the queue is
    /// full (the relay drains it); nothing when the connection is gone.
    pub async fn reply(&self, p: Push) {
        let _ = self.tx.send(p).await;
    }

    /// Queues a close frame, waiting for room when the queue is full; `false`: the
    /// connection is already gone.
    pub fn close(&self, code: u16, reason: &'static str) -> bool {
        match self.tx.try_send(Push::Close(code, reason)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(p)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(p).await;
                });
                true
            }
        }
    }

    /// AWS's GetConnection answer.
    pub fn describe(&self) -> serde_json::Value {
        let fmt = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        serde_json::json!({
            "connectedAt": fmt(self.connected_at),
            "lastActiveAt": fmt(self.last_active()),
            "identity": {"sourceIp": self.source_ip, "userAgent": self.user_agent},
        })
    }
}

/// This node's open connections by id (`runtime::Runtime::connections`).
#[derive(Default)]
pub struct Registry(DashMap<String, Arc<Conn>>);

impl Registry {
    /// Registers a connection; the receiver is the connection's queue.
    pub fn register(
        &self,
        id: String,
        api: Arc<str>,
        stage: Arc<str>,
        source_ip: String,
        user_agent: String,
        max_message: usize,
    ) -> (Arc<Conn>, mpsc::Receiver<Push>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let now = SystemTime::now();
        let c = Arc::new(Conn {
            id: id.clone(),
            api,
            stage,
            connected_at: now,
            last_active: AtomicU64::new(unix_ms(now)),
            source_ip,
            user_agent,
            max_message,
            tx,
        });
        crate::observability::metrics::WS_CONNECTIONS.with_label_values(&[&c.api, &c.stage]).inc();
        self.0.insert(id, c.clone());
        (c, rx)
    }

    /// Removes a connection (idempotent).
    pub fn unregister(&self, c: &Conn) {
        if self.0.remove(&c.id).is_some() {
            crate::observability::metrics::WS_CONNECTIONS.with_label_values(&[&c.api, &c.stage]).dec();
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Conn>> {
        self.0.get(id).map(|c| c.clone())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }
}

/// A new connection id: 10 random bytes in base64 (the URL-safe alphabet, never `/`), like
/// AWS's (`L0SM9cOFvHcCIhw=`): ids end in `=`, which clients percent-encode in management URLs.
pub fn new_id() -> String {
    use base64::Engine;
    let bytes: [u8; 10] = std::array::from_fn(|_| fastrand::u8(..));
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    let mut input = key.to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha1(&input))
}

/// Checks an upgrade request's WebSocket handshake fields (RFC 6455 4.2.1); `Err` says why.
pub fn check_handshake(req: &pingora::http::RequestHeader) -> Result<String, &'static str> {
    use base64::Engine;
    let h = |n: &str| crate::request::header(&req.headers, n).map(|v| v.to_ascii_lowercase());
    if req.method != http::Method::GET {
        return Err("a WebSocket handshake is a GET");
    }
    if req.version != http::Version::HTTP_11 {
        // RFC 6455 4.1: HTTP/1.1 or later; HTTP/1.0 has no Upgrade, HTTP/2 its own way
        return Err("a WebSocket handshake needs HTTP/1.1");
    }
    if !h("upgrade").is_some_and(|u| u.split(',').any(|t| t.trim() == "websocket")) {
        return Err("this is a WebSocket API: the request must be an Upgrade: websocket handshake");
    }
    if !h("connection").is_some_and(|c| c.split(',').any(|t| t.trim() == "upgrade")) {
        return Err("Connection: Upgrade is missing");
    }
    if h("sec-websocket-version").as_deref() != Some("13") {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let key = crate::request::header(&req.headers, "sec-websocket-key").unwrap_or_default().trim().to_string();
    match base64::engine::general_purpose::STANDARD.decode(&key) {
        Ok(k) if k.len() == 16 => Ok(key),
        _ => Err("Sec-WebSocket-Key must be 16 bytes in base64"),
    }
}

/// Whether an origin's 101 to a request's `Upgrade: websocket` is a WebSocket handshake
/// answer for that request: its `Upgrade` is websocket and its `Sec-WebSocket-Accept` is the
/// one the client's key asks for (RFC 6455 4.2.2). Anything else is no tunnel to open.
pub fn origin_accepts(req: &http::HeaderMap, resp: &http::HeaderMap) -> bool {
    let Some(key) = crate::request::header(req, "sec-websocket-key") else { return false };
    if key.contains(',') {
        return false; // repeated keys: no single answer is right
    }
    let upgrade = crate::request::header(resp, "upgrade").is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
    let accept = crate::request::header(resp, "sec-websocket-accept");
    upgrade && accept.is_some_and(|a| a.trim() == accept_key(key.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_rfc_6455s_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn selection_expressions() {
        assert_eq!(parse_selection("$request.body.action").as_deref(), Ok("/action"));
        assert_eq!(parse_selection("$request.body.a.b/c").as_deref(), Ok("/a/b~1c"));
        assert!(parse_selection("$request.header.x").is_err());
        assert!(parse_selection("$request.body.").is_err());
        let api = WsApi {
            selection: "/action".into(),
            idle_timeout: None,
            max_duration: None,
            max_message: DEFAULT_MAX_MESSAGE,
            routes: [("send".to_string(), 1)].into_iter().collect(),
            connect: None,
            disconnect: None,
            default: Some(0),
            management: None,
            connection_rate: vec![],
            route_response: vec![],
        };
        assert_eq!(api.select(Some(r#"{"action":"send"}"#)), Some(1));
        assert_eq!(api.select(Some(r#"{"action":"other"}"#)), Some(0));
        assert_eq!(api.select(Some(r#"{"action":7}"#)), Some(0));
        assert_eq!(api.select(Some("not json")), Some(0));
        assert_eq!(api.select(None), Some(0));
    }

    #[test]
    fn ids_look_like_aws_ones() {
        let id = new_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
    }
}
