//! One WebSocket connection, from the accepted handshake to `$disconnect`.

use super::frames::Socket;
use super::{Conn, Push, WsApi};
use crate::auth::Principal;
use crate::aws::invoke::Invoked;
use crate::integrations::ws_lambda::{self, EventType};
use crate::integrations::Integration;
use crate::observability::trace::{Server, Trace, Tracing};
use crate::observability::{access_log, metrics};
use crate::outbound::Call;
use bytes::Bytes;
use opentelemetry::KeyValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// Message integrations running at once for one connection; the next message waits.
const IN_FLIGHT: usize = 16;

/// What every event of a connection carries, worked out once at the handshake.
pub struct Info {
    pub conn_id: String,
    pub api: Arc<str>,
    pub stage: Arc<str>,
    pub ws: Arc<WsApi>,
    /// The integrations of the stage view the handshake was routed with, by route index.
    pub integrations: Vec<Arc<Integration>>,
    pub route_keys: Vec<Arc<str>>,
    pub principal: Option<Arc<Principal>>,
    pub source_ip: String,
    pub user_agent: String,
    pub log: bool,
    /// The headers every event of the connection carries (its id, API, stage, domain, client,
    /// user agent, and the authorizer's result).
    headers: Vec<(String, String)>,
    /// What Lambda events say of the connection.
    pub domain: String,
    pub connected_at: SystemTime,
    /// `requestContext.authorizer`: the principal id and the authorizer's context or claims.
    authorizer: Option<serde_json::Map<String, serde_json::Value>>,
    api_key_id: Option<Arc<str>>,
    /// Where each event's trace begins (`[tracing]`, as the running configuration has it).
    tracing: Arc<Tracing>,
}

/// The connection as the handshake established it.
pub struct Handshake<'a> {
    /// The handshake request, admitted (its caller is the connection's).
    pub view: crate::request::RequestView<'a>,
    pub conn_id: String,
    pub ws: Arc<WsApi>,
    pub integrations: Vec<Arc<Integration>>,
    pub route_keys: Vec<Arc<str>>,
    pub log: bool,
    pub tracing: Arc<Tracing>,
}

impl Info {
    pub fn new(h: Handshake<'_>) -> Info {
        let v = &h.view;
        let (source_ip, user_agent) = (v.client.source_ip(), v.user_agent().into_owned());
        let principal = v.caller.principal.clone();
        let mut headers: Vec<(String, String)> = vec![
            ("x-edgegate-connection-id".into(), h.conn_id.clone()),
            ("x-edgegate-api".into(), v.api().to_string()),
            ("x-edgegate-stage".into(), v.stage().to_string()),
            ("x-edgegate-domain".into(), v.client.host.clone()),
            ("x-forwarded-for".into(), source_ip.clone()),
            ("user-agent".into(), user_agent.clone()),
        ];
        if let Some(p) = &principal {
            headers.push(("x-edgegate-principal-id".into(), p.principal_id.clone()));
            for (k, v) in p.context.iter().chain(p.claims.iter()) {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(_) | serde_json::Value::Bool(_) => v.to_string(),
                    _ => continue,
                };
                let name = format!("x-edgegate-authorizer-{}", k.to_ascii_lowercase());
                if http::HeaderName::from_bytes(name.as_bytes()).is_ok() && http::HeaderValue::from_str(&v).is_ok() {
                    headers.push((name, v));
                }
            }
        }
        let authorizer = principal.as_deref().map(|p| {
            let mut a = serde_json::Map::new();
            a.insert("principalId".into(), serde_json::Value::String(p.principal_id.clone()));
            if v.caller.jwt {
                a.insert("claims".into(), serde_json::Value::Object(p.claims.clone()));
            } else {
                for (k, v) in p.claims.iter().chain(p.context.iter()) {
                    a.insert(k.clone(), v.clone());
                }
            }
            a
        });
        Info {
            domain: v.client.host.clone(),
            connected_at: SystemTime::now(),
            authorizer,
            api_key_id: v.caller.api_key_id.clone(),
            conn_id: h.conn_id,
            api: v.api().into(),
            stage: v.stage().into(),
            ws: h.ws,
            integrations: h.integrations,
            route_keys: h.route_keys,
            principal,
            source_ip,
            user_agent,
            log: h.log,
            headers,
            tracing: h.tracing,
        }
    }
}

/// How a connection ended, for the log and `$disconnect`.
pub struct Ended {
    pub messages_in: u64,
    pub messages_out: u64,
    pub close_code: u16,
    pub reason: &'static str,
}

/// One event of a connection, as its integration is told it.
pub struct EventIn<'a> {
    pub kind: EventType,
    pub request_id: &'a str,
    pub message_id: Option<&'a str>,
    /// A message's payload, and whether it came in a binary frame.
    pub body: Bytes,
    pub binary: bool,
    /// `$connect`: the handshake request (its header fields and query).
    pub handshake: Option<&'a crate::request::RequestView<'a>>,
    /// `$disconnect`: how the connection ended.
    pub ended: Option<&'a Ended>,
    /// The trace context the integration call carries (when tracing is on).
    pub trace: &'a [(&'static str, http::HeaderValue)],
}

/// What an event's integration answered.
pub struct EventAnswer {
    pub status: u16,
    /// What goes back to the client: an http integration's body, a Lambda's `body` on a
    /// `route_response` route.
    pub reply: Option<Bytes>,
}

/// An event's integration call: to an http integration, the message (or, for `$disconnect`,
/// the close code and reason as JSON) POSTed with the connection's context in headers (and
/// the handshake's query on `$connect`); to a Lambda function, AWS's WebSocket event.
/// `Err` is the reason for the log.
pub async fn call(info: &Info, route: usize, e: EventIn<'_>) -> Result<EventAnswer, EventError> {
    let route_key = info.route_keys.get(route).map(|k| &**k).unwrap_or("");
    match info.integrations.get(route).map(|i| &**i) {
        Some(Integration::Lambda(t)) => {
            let conn = ws_lambda::Connection {
                connection_id: &info.conn_id,
                api_id: &info.api,
                stage: &info.stage,
                domain_name: &info.domain,
                connected_at: info.connected_at,
                source_ip: &info.source_ip,
                user_agent: &info.user_agent,
                authorizer: info.authorizer.as_ref(),
                api_key_id: info.api_key_id.as_deref(),
            };
            // the handshake's fields as every integration is told them (forwarded::to_integration)
            let told = e
                .handshake
                .map(|v| crate::forwarded::to_integration(v.headers(), &crate::forwarded::Hop::of(v.client)));
            let event = ws_lambda::Event {
                conn: &conn,
                kind: e.kind,
                route_key,
                request_id: e.request_id,
                message_id: e.message_id,
                body: (e.kind == EventType::Message).then_some((&e.body[..], e.binary)),
                handshake: e.handshake.zip(told.as_ref()).map(|(v, told)| (told, v.query())),
                disconnect: e.ended.map(|x| (x.close_code, x.reason)),
                now: SystemTime::now(),
            };
            let payload = Bytes::from(ws_lambda::event(&event));
            let trace: Vec<(&str, &str)> = e.trace.iter().filter_map(|(k, v)| Some((*k, v.to_str().ok()?))).collect();
            let a = match t.function.invoke_with(payload, t.timeout, e.request_id, &trace).await? {
                Invoked::Answer(result) => ws_lambda::answer(&result),
                Invoked::FunctionError { kind, message, .. } => {
                    return Err(EventError::Function(format!(
                        "function {} failed ({kind}): {message}",
                        t.function.name
                    )))
                }
                Invoked::Service { status, message } => {
                    return Err(EventError::Function(format!(
                        "Lambda answered {status} for {}: {message}",
                        t.function.name
                    )))
                }
            };
            let two_way = info.ws.route_response.get(route).copied().unwrap_or(false);
            Ok(EventAnswer { status: a.status, reply: a.body.filter(|_| two_way).map(Bytes::from) })
        }
        Some(Integration::Http(t)) => {
            // made per event: an idle connection keeps no URL of its own
            let query = e.handshake.and_then(|v| v.query()).filter(|q| !q.is_empty());
            let ep = t.endpoint(query);
            let content_type = if e.binary { "application/octet-stream" } else { "text/plain; charset=utf-8" };
            let mut refs: Vec<(&str, &str)> = info.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            refs.extend([
                ("x-edgegate-route-key", route_key),
                ("x-edgegate-event-type", e.kind.as_str()),
                ("x-request-id", e.request_id),
                ("content-type", content_type),
            ]);
            if let Some(m) = e.message_id {
                refs.push(("x-edgegate-message-id", m));
            }
            refs.extend(e.trace.iter().filter_map(|(k, v)| Some((*k, v.to_str().ok()?))));
            let body = match e.ended {
                Some(x) => Bytes::from(serde_json::json!({"closeCode": x.close_code, "reason": x.reason}).to_string()),
                None => e.body,
            };
            let call =
                Call { method: "POST", headers: &refs, body: Some(body), timeout: t.timeout, max_answer: 10 << 20 };
            let a = crate::outbound::client().send(&ep, call).await?;
            Ok(EventAnswer { status: a.status, reply: Some(a.body).filter(|b| !b.is_empty()) })
        }
        _ => Err(EventError::Unsupported),
    }
}

/// Why an event reached no integration.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the route's integration takes no WebSocket events")]
    Unsupported,
    #[error("{0}")]
    Function(String),
    #[error(transparent)]
    Outbound(#[from] crate::outbound::OutboundError),
}

/// AWS's error frame for a message no route takes, or whose integration failed.
fn error_frame(message: &str, conn_id: &str, request_id: &str) -> Push {
    Push::Text(serde_json::json!({"message": message, "connectionId": conn_id, "requestId": request_id}).to_string())
}

fn log_event(info: &Info, event: &'static str, route: &str, status: u16, started: Instant, trace_id: Option<String>) {
    if !info.log {
        return;
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    access_log::write(&access_log::Entry {
        request_id: &request_id,
        ip: info.source_ip.clone(),
        request_time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        http_method: "POST",
        path: "",
        route_key: route,
        status,
        protocol: "WebSocket",
        latency: started.elapsed().as_millis() as u64,
        api_id: &info.api,
        stage: &info.stage,
        user_agent: info.user_agent.as_str().into(),
        principal_id: info.principal.as_ref().map(|p| p.principal_id.as_str()).filter(|s| !s.is_empty()),
        connection_id: Some(&info.conn_id),
        event_type: Some(event),
        trace_id,
        ..Default::default()
    });
}

/// Writes the 101 and takes the upgraded connection's stream out of the session: the
/// request is done for Pingora, and the connection is [`relay`]'s.
pub async fn accept(session: &mut Session, key: &str) -> pingora::Result<pingora::protocols::Stream> {
    let mut h = ResponseHeader::build(101, Some(4))?;
    h.insert_header(http::header::UPGRADE, "websocket")?;
    h.insert_header(http::header::CONNECTION, "Upgrade")?;
    h.insert_header("sec-websocket-accept", super::accept_key(key.as_bytes()))?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(h), false).await?;
    take_stream(session).await
}

/// Serves an accepted connection until it closes, in its own task (so that an idle
/// connection holds only this future, its buffers and the registry's entry, not Pingora's
/// request state); `$disconnect` is the caller's.
pub async fn relay(
    mut stream: pingora::protocols::Stream,
    info: Arc<Info>,
    conn: Arc<Conn>,
    mut rx: mpsc::Receiver<Push>,
) -> Ended {
    let mut buf = [0u8; 2048];

    let ws = info.ws.clone();
    let mut sock = Socket::new(ws.max_message);
    let started = Instant::now();
    let mut last_active = Instant::now();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let seq = Arc::new(AtomicU64::new(0));
    let labels = [&*info.api, &*info.stage, "in"];
    let labels_out = [&*info.api, &*info.stage, "out"];
    let mut ended = Ended { messages_in: 0, messages_out: 0, close_code: 1006, reason: "the client went away" };
    // set when we sent a close frame: the client's reply is awaited this long
    let mut closing: Option<Instant> = None;
    // draining (SIGTERM, or a graceful upgrade) starts: the deadline below moves up
    let mut stop = crate::lifecycle::stop_watch();

    loop {
        let mut deadline = ws.idle_timeout.map(|t| last_active + t);
        let mut why = "idle timeout";
        if let Some(max) = ws.max_duration.map(|t| started + t) {
            if deadline.is_none_or(|d| max < d) {
                deadline = Some(max);
                why = "maximum connection duration";
            }
        }
        if let Some(end) = crate::lifecycle::drain_deadline() {
            // leave time for the close handshake and $disconnect before the process ends
            let end = end.checked_sub(Duration::from_millis(1500)).unwrap_or(end);
            if deadline.is_none_or(|d| end < d) {
                deadline = Some(end);
                why = "the gateway is shutting down";
            }
        }
        if let Some(c) = closing {
            deadline = Some(c + Duration::from_secs(1));
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut out_msgs: Vec<Push> = Vec::new();
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => sock.feed(&buf[..n]),
            },
            Some(p) = rx.recv() => out_msgs.push(p),
            Ok(()) = stop.changed() => {}
            _ = sleep => {
                if closing.is_some() {
                    break; // no close reply in time
                }
                ended.close_code = 1001;
                ended.reason = why;
                let _ = sock.ws.close(Some(CloseFrame { code: CloseCode::Away, reason: why.into() }));
                closing = Some(Instant::now());
            }
        }
        for p in out_msgs {
            let m = match p {
                Push::Text(t) => Message::Text(t.into()),
                Push::Binary(b) => Message::Binary(b),
                Push::Close(code, reason) => {
                    ended.close_code = code;
                    ended.reason = reason;
                    let _ = sock.ws.close(Some(CloseFrame { code: code.into(), reason: reason.into() }));
                    closing.get_or_insert_with(Instant::now);
                    continue;
                }
            };
            if sock.ws.send(m).is_ok() {
                ended.messages_out += 1;
                metrics::WS_MESSAGES.with_label_values(&labels_out).inc();
                conn.touch();
            }
        }
        // every complete message the fed bytes hold
        let mut done = false;
        loop {
            match sock.ws.read() {
                Ok(Message::Text(t)) => {
                    last_active = Instant::now();
                    conn.touch();
                    ended.messages_in += 1;
                    metrics::WS_MESSAGES.with_label_values(&labels).inc();
                    let route = ws.select(Some(t.as_str()));
                    dispatch(&info, &conn, route, Bytes::from(t), false, &slots, &seq).await;
                }
                Ok(Message::Binary(b)) => {
                    last_active = Instant::now();
                    conn.touch();
                    ended.messages_in += 1;
                    metrics::WS_MESSAGES.with_label_values(&labels).inc();
                    dispatch(&info, &conn, ws.default, b, true, &slots, &seq).await;
                }
                Ok(Message::Close(frame)) => {
                    // tungstenite queues the reply; the next read says the connection closed
                    if closing.is_none() {
                        ended.close_code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                        ended.reason = "the client closed";
                    }
                }
                Ok(_) => last_active = Instant::now(), // ping, pong: answered by tungstenite
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::Capacity(_)) => {
                    ended.close_code = 1009;
                    ended.reason = "message too big";
                    let _ = sock.ws.close(Some(CloseFrame { code: CloseCode::Size, reason: "message too big".into() }));
                    closing.get_or_insert_with(Instant::now);
                    break;
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    log::debug!("websocket {}: {e}", conn.id);
                    ended.close_code = 1002;
                    ended.reason = "protocol error";
                    let _ =
                        sock.ws.close(Some(CloseFrame { code: CloseCode::Protocol, reason: "protocol error".into() }));
                    closing.get_or_insert_with(Instant::now);
                    break;
                }
            }
        }
        sock.release();
        if let Some(out) = sock.take_output() {
            if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                break;
            }
        }
        if done {
            break;
        }
    }
    ended
}

/// Takes the upgraded connection's own stream out of Pingora's HTTP/1.1 session, which would
/// otherwise hold its 64 KiB body buffer (and the whole request's state) for the
/// connection's life: the session left behind is a stand-in that carries the handshake's request line and `User-Agent` (what the
/// proxy's logging phase reads) over an in-memory pipe.
async fn take_stream(session: &mut Session) -> pingora::Result<pingora::protocols::Stream> {
    use pingora::protocols::http::ServerSession;
    use tokio::io::AsyncWriteExt as _;
    let req = session.req_header();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method,
        req.uri,
        crate::request::header(&req.headers, "host").unwrap_or_default()
    );
    if let Some(ua) = crate::request::header(&req.headers, http::header::USER_AGENT) {
        head.push_str(&format!("User-Agent: {ua}\r\n"));
    }
    head.push_str("\r\n");
    let (ours, mut theirs) = tokio::io::duplex(head.len().max(64));
    let _ = theirs.write_all(head.as_bytes()).await;
    drop(theirs);
    let mut stand_in = ServerSession::new_http1(Box::new(ours));
    if !matches!(stand_in.read_request().await, Ok(true)) {
        return pingora::Error::e_explain(pingora::ErrorType::InternalError, "websocket: the stand-in session");
    }
    stand_in.set_keepalive(None);
    let taken = std::mem::replace(&mut session.downstream_session, Box::new(stand_in));
    match *taken {
        ServerSession::H1(h1) => {
            let mut stream = h1.into_inner();
            stream.flush().await.map_err(|e| {
                pingora::Error::because(pingora::ErrorType::WriteError, "websocket: flushing the 101", e)
            })?;
            Ok(stream)
        }
        other => {
            *session.downstream_session = other;
            pingora::Error::e_explain(pingora::ErrorType::InternalError, "websocket APIs are served over HTTP/1.1")
        }
    }
}

/// Routes one message: its integration runs in its own task (at most [`IN_FLIGHT`] at once),
/// and its answer, if any, is queued back to the client.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    info: &Arc<Info>,
    conn: &Arc<Conn>,
    route: Option<usize>,
    body: Bytes,
    binary: bool,
    slots: &Arc<Semaphore>,
    seq: &Arc<AtomicU64>,
) {
    let message_id = format!("{}-{}", conn.id.trim_end_matches('='), seq.fetch_add(1, Ordering::Relaxed));
    let Some(route) = route else {
        // the relay itself is the queue's reader: never wait here
        let _ = conn.push(error_frame("Forbidden", &conn.id, &message_id));
        log_event(info, "MESSAGE", "", 403, Instant::now(), None);
        return;
    };
    let Ok(permit) = slots.clone().acquire_owned().await else { return };
    let (info, conn) = (info.clone(), conn.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let started = Instant::now();
        let key = info.route_keys.get(route).cloned().unwrap_or_else(|| Arc::from(""));
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut trace = info.tracing.begin(&http::HeaderMap::new());
        let context = trace.as_ref().map(|t| t.outgoing().collect::<Vec<_>>()).unwrap_or_default();
        let e = EventIn {
            kind: EventType::Message,
            request_id: &request_id,
            message_id: Some(&message_id),
            body,
            binary,
            handshake: None,
            ended: None,
            trace: &context,
        };
        let answer = call(&info, route, e).await;
        if let Some(t) = &mut trace {
            traced_call(t, started, &answer);
        }
        let status = match answer {
            Ok(a) if (200..300).contains(&a.status) => {
                if let Some(reply) = a.reply {
                    let p = match std::str::from_utf8(&reply) {
                        Ok(t) => Push::Text(t.to_string()),
                        Err(_) => Push::Binary(reply),
                    };
                    conn.reply(p).await;
                }
                a.status
            }
            Ok(a) => {
                log::warn!("websocket {} route {key}: the integration answered {}", conn.id, a.status);
                conn.reply(error_frame("Internal server error", &conn.id, &message_id)).await;
                a.status
            }
            Err(e) => {
                log::warn!("websocket {} route {key}: {e}", conn.id);
                conn.reply(error_frame("Internal server error", &conn.id, &message_id)).await;
                502
            }
        };
        log_event(&info, "MESSAGE", &key, status, started, trace.as_ref().map(|t| t.id()));
        if let Some(t) = trace {
            finish_trace(t, &info, "MESSAGE", &key, status, started, &request_id);
        }
    });
}

/// The integration call of an event, as a client span of its trace.
fn traced_call(t: &mut Trace, started: Instant, answer: &Result<EventAnswer, EventError>) {
    let status = answer.as_ref().ok().map(|a| a.status);
    let attributes: Vec<KeyValue> =
        status.map(|s| KeyValue::new("http.response.status_code", s as i64)).into_iter().collect();
    t.client_span("integration", started, attributes, answer.is_err() || status.is_some_and(|s| s >= 500));
}

/// Ends an event's trace: its own span (`WebSocket {route key}`) with the connection's.
fn finish_trace(t: Trace, info: &Info, event: &str, route: &str, status: u16, started: Instant, request_id: &str) {
    let attributes = vec![
        KeyValue::new("edgegate.api", info.api.to_string()),
        KeyValue::new("edgegate.stage", info.stage.to_string()),
        KeyValue::new("edgegate.websocket.connection_id", info.conn_id.clone()),
        KeyValue::new("edgegate.websocket.event_type", event.to_string()),
        KeyValue::new("http.route", route.to_string()),
        KeyValue::new("http.response.status_code", status as i64),
        KeyValue::new("client.address", info.source_ip.clone()),
        KeyValue::new("edgegate.request_id", request_id.to_string()),
    ];
    let received_at = SystemTime::now() - started.elapsed();
    t.finish(Server { start: started, received_at, name: format!("WebSocket {route}"), attributes, status });
}

/// `$disconnect`, after the connection is gone (bounded by its integration's timeout, or by a
/// second while the process shuts down).
pub async fn disconnect(info: &Info, ended: &Ended) {
    let conn_id = &info.conn_id;
    let Some(route) = info.ws.disconnect else { return };
    let started = Instant::now();
    let limit = if crate::lifecycle::draining() { Duration::from_secs(1) } else { Duration::from_secs(30) };
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut trace = info.tracing.begin(&http::HeaderMap::new());
    let context = trace.as_ref().map(|t| t.outgoing().collect::<Vec<_>>()).unwrap_or_default();
    let e = EventIn {
        kind: EventType::Disconnect,
        request_id: &request_id,
        message_id: None,
        body: Bytes::new(),
        binary: false,
        handshake: None,
        ended: Some(ended),
        trace: &context,
    };
    let r = tokio::time::timeout(limit, call(info, route, e)).await;
    if let (Some(t), Ok(answer)) = (&mut trace, &r) {
        traced_call(t, started, answer);
    }
    let status = match r {
        Ok(Ok(a)) => a.status,
        Ok(Err(e)) => {
            log::warn!("websocket {conn_id}: $disconnect: {e}");
            502
        }
        Err(_) => 504,
    };
    let key = info.route_keys.get(route).cloned().unwrap_or_else(|| Arc::from("$disconnect"));
    log_event(info, "DISCONNECT", &key, status, started, trace.as_ref().map(|t| t.id()));
    if let Some(t) = trace {
        finish_trace(t, info, "DISCONNECT", &key, status, started, &request_id);
    }
}
