//! Lambda integrations of WebSocket APIs: AWS's WebSocket event, field for field, for
//! `$connect` (with the handshake's headers and query), messages and `$disconnect` (with
//! `disconnectStatusCode` / `disconnectReason`), and the function's answer read back the way
//! API Gateway reads it (`statusCode`, `body`). Pure functions: `websocket::conn` invokes.

use super::lambda::{all_values, clf_time, epoch_ms, last_values, query_groups, Identity, Query};
use super::mapping::encode_body;
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::time::SystemTime;

/// `requestContext.eventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Connect,
    Message,
    Disconnect,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Connect => "CONNECT",
            EventType::Message => "MESSAGE",
            EventType::Disconnect => "DISCONNECT",
        }
    }
}

/// What a connection's events share, fixed at the handshake.
pub struct Connection<'a> {
    pub connection_id: &'a str,
    pub api_id: &'a str,
    pub stage: &'a str,
    pub domain_name: &'a str,
    /// When the handshake was accepted.
    pub connected_at: SystemTime,
    pub source_ip: &'a str,
    pub user_agent: &'a str,
    /// The `$connect` authorizer's result (`principalId` and its context or claims).
    pub authorizer: Option<&'a Map<String, Value>>,
    pub api_key_id: Option<&'a str>,
}

/// One event of a connection.
pub struct Event<'a> {
    pub conn: &'a Connection<'a>,
    pub kind: EventType,
    pub route_key: &'a str,
    pub request_id: &'a str,
    /// Messages only.
    pub message_id: Option<&'a str>,
    /// Messages: the payload, and whether it came as a binary frame (base64 in the event).
    pub body: Option<(&'a [u8], bool)>,
    /// `$connect`: the handshake's header fields (as integrations are told them) and query.
    pub handshake: Option<(&'a http::HeaderMap, Option<&'a str>)>,
    /// `$disconnect`: the close code and reason.
    pub disconnect: Option<(u16, &'a str)>,
    pub now: SystemTime,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a, H, MH, Q, MQ> {
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<H>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_headers: Option<MH>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<Q>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_query_string_parameters: Option<MQ>,
    request_context: Ctx<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ctx<'a> {
    route_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    event_type: &'static str,
    extended_request_id: &'a str,
    request_time: String,
    message_direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_reason: Option<&'a str>,
    stage: &'a str,
    connected_at: u64,
    request_time_epoch: u64,
    identity: Identity<'a>,
    request_id: &'a str,
    domain_name: &'a str,
    connection_id: &'a str,
    api_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<&'a Map<String, Value>>,
}

/// The event, serialized.
pub fn event(e: &Event<'_>) -> Vec<u8> {
    let c = e.conn;
    // $disconnect carries the fields AWS gives it (it has no request of its own)
    let disconnect_headers: http::HeaderMap = match e.kind {
        EventType::Disconnect => {
            let mut h = http::HeaderMap::new();
            let mut put = |k: &'static str, v: &str| {
                if let Ok(v) = http::HeaderValue::from_str(v) {
                    h.insert(k, v);
                }
            };
            put("host", c.domain_name);
            put("x-api-key", "");
            put("x-forwarded-for", c.source_ip);
            put("x-restapi", "");
            h
        }
        _ => http::HeaderMap::new(),
    };
    let headers = match (e.kind, e.handshake) {
        (EventType::Connect, Some((h, _))) => Some(h),
        (EventType::Disconnect, _) => Some(&disconnect_headers),
        _ => None,
    };
    let single = headers.map(last_values);
    let multi = headers.map(all_values);
    let groups = query_groups(e.handshake.and_then(|(_, q)| q));
    let query = |multi| (!groups.is_empty()).then(|| Query { groups: groups.clone(), multi });
    let (q, mq) = (query(false), query(true));
    let body = e.body.map(|(b, binary)| encode_body(b, binary));
    let b64 = body.as_ref().is_some_and(|(_, b)| *b);
    let out = Out {
        headers: single,
        multi_value_headers: multi,
        query_string_parameters: q,
        multi_value_query_string_parameters: mq,
        request_context: Ctx {
            route_key: e.route_key,
            message_id: e.message_id,
            event_type: e.kind.as_str(),
            extended_request_id: e.request_id,
            request_time: clf_time(e.now),
            message_direction: "IN",
            disconnect_status_code: e.disconnect.map(|d| d.0),
            disconnect_reason: e.disconnect.map(|d| d.1),
            stage: c.stage,
            connected_at: epoch_ms(c.connected_at),
            request_time_epoch: epoch_ms(e.now),
            identity: Identity {
                api_key: None,
                api_key_id: c.api_key_id.map(Some),
                ..Identity::new(c.source_ip.to_string(), Some(Cow::Borrowed(c.user_agent)), c.api_key_id)
            },
            request_id: e.request_id,
            domain_name: c.domain_name,
            connection_id: c.connection_id,
            api_id: c.api_id,
            authorizer: c.authorizer,
        },
        body: body.map(|(b, _)| b),
        is_base64_encoded: b64,
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

/// A function's answer to an event, as API Gateway reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// `statusCode`, 200 when the result has none, 502 when it is not an HTTP status.
    pub status: u16,
    /// `body` (a string as is, any other JSON value as JSON text), or a bare string result.
    pub body: Option<String>,
}

/// Reads a function's result: an object's `statusCode` and `body`; a bare JSON string is the
/// body; anything else (null, a number, an object without them) is a 200 with no body. A
/// `statusCode` that is no HTTP status (100-599) is a malformed answer: 502.
pub fn answer(result: &[u8]) -> Answer {
    let v: Value = serde_json::from_slice(result).unwrap_or(Value::Null);
    match v {
        Value::Object(o) => {
            let status = match o.get("statusCode") {
                None | Some(Value::Null) => 200,
                Some(s) => s
                    .as_u64()
                    .or_else(|| s.as_str().and_then(|x| x.trim().parse().ok()))
                    .and_then(|s| u16::try_from(s).ok())
                    .filter(|s| (100..=599).contains(s))
                    .unwrap_or(502),
            };
            let body = match o.get("body") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            };
            Answer { status, body }
        }
        Value::String(s) => Answer { status: 200, body: Some(s) },
        _ => Answer { status: 200, body: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(auth: Option<&Map<String, Value>>) -> Connection<'_> {
        Connection {
            connection_id: "abc=",
            api_id: "chat",
            stage: "prod",
            domain_name: "ws.example.com",
            connected_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            source_ip: "127.0.0.9",
            user_agent: "ua/1",
            authorizer: auth,
            api_key_id: None,
        }
    }

    #[test]
    fn connect_message_and_disconnect_events() {
        let mut auth = Map::new();
        auth.insert("principalId".into(), "u1".into());
        let c = conn(Some(&auth));
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_001_000);
        let mut h = http::HeaderMap::new();
        h.append("x-a", "1".parse().expect("test"));
        h.append("x-a", "2".parse().expect("test"));
        let base = Event {
            conn: &c,
            kind: EventType::Connect,
            route_key: "$connect",
            request_id: "r1",
            message_id: None,
            body: None,
            handshake: Some((&h, Some("t=1&t=2&n=a%20b"))),
            disconnect: None,
            now,
        };
        let v: Value = serde_json::from_slice(&event(&base)).expect("test");
        assert_eq!(v["headers"]["x-a"], "2");
        assert_eq!(v["multiValueHeaders"]["x-a"], serde_json::json!(["1", "2"]));
        assert_eq!(v["queryStringParameters"], serde_json::json!({"t": "2", "n": "a b"}));
        assert_eq!(v["multiValueQueryStringParameters"]["t"], serde_json::json!(["1", "2"]));
        let rc = &v["requestContext"];
        assert_eq!(rc["eventType"], "CONNECT");
        assert_eq!(rc["connectedAt"], 1_700_000_000_123u64);
        assert_eq!(rc["requestTimeEpoch"], 1_700_000_001_000u64);
        assert_eq!(rc["authorizer"]["principalId"], "u1");
        assert!(rc.get("messageId").is_none() && v.get("body").is_none());

        let m = Event {
            kind: EventType::Message,
            route_key: "send",
            message_id: Some("m1"),
            body: Some((&[0xff, 0x00], true)),
            handshake: None,
            ..base
        };
        let v: Value = serde_json::from_slice(&event(&m)).expect("test");
        assert_eq!(v["body"], "/wA=");
        assert_eq!(v["isBase64Encoded"], true);
        assert_eq!(v["requestContext"]["messageId"], "m1");
        assert!(v.get("headers").is_none() && v.get("queryStringParameters").is_none());

        let d = Event { kind: EventType::Disconnect, route_key: "$disconnect", disconnect: Some((1001, "bye")), ..m };
        let v: Value = serde_json::from_slice(&event(&Event { body: None, message_id: None, ..d })).expect("test");
        assert_eq!(v["requestContext"]["disconnectStatusCode"], 1001);
        assert_eq!(v["requestContext"]["disconnectReason"], "bye");
        assert_eq!(v["headers"]["host"], "ws.example.com");
    }

    #[test]
    fn answers() {
        assert_eq!(answer(br#"{"statusCode": 403}"#), Answer { status: 403, body: None });
        assert_eq!(answer(br#"{"statusCode": "201", "body": "hi"}"#), Answer { status: 201, body: Some("hi".into()) });
        assert_eq!(answer(br#"{"body": {"a": 1}}"#), Answer { status: 200, body: Some(r#"{"a":1}"#.into()) });
        assert_eq!(answer(br#""text""#), Answer { status: 200, body: Some("text".into()) });
        assert_eq!(answer(b"null"), Answer { status: 200, body: None });
        assert_eq!(answer(b"not json"), Answer { status: 200, body: None });
        assert_eq!(answer(br#"{"statusCode": 99999}"#).status, 502);
        assert_eq!(answer(br#"{"statusCode": -1}"#).status, 502);
        assert_eq!(answer(br#"{"statusCode": "abc"}"#).status, 502);
    }
}
