//! WebSocket APIs end to end: real WebSocket clients (tungstenite, and boto3 for the
//! management API) against the binary, with an http integration that records every event.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

/// What the integration received: (event type, route key, connection id, the authorizer's
/// `team` context value, body).
type Events = Arc<Mutex<Vec<(String, String, String, String, Vec<u8>)>>>;

/// The integration: `$connect` refuses `?deny`, `echo` answers `echo:` + the message,
/// `silent` answers nothing, `$default` answers `default:` + the message.
fn backend() -> (String, Events) {
    let events: Events = Arc::new(Mutex::new(vec![]));
    let e2 = events.clone();
    let url = serve_raw(move |req, _| {
        let h = |n: &str| req.header(n).unwrap_or_default();
        let (kind, route) = (h("x-edgegate-event-type"), h("x-edgegate-route-key"));
        e2.lock().expect("lock").push((
            kind.clone(),
            route.clone(),
            h("x-edgegate-connection-id"),
            h("x-edgegate-authorizer-team"),
            req.body.clone(),
        ));
        let (status, body): (u16, Vec<u8>) = match (kind.as_str(), route.as_str()) {
            ("CONNECT", _) if req.target.contains("deny") => (403, b"{}".to_vec()),
            ("MESSAGE", "echo") => (200, [b"echo:".as_slice(), &req.body].concat()),
            ("MESSAGE", "silent") => (200, vec![]),
            ("MESSAGE", "broken") => (500, b"oops".to_vec()),
            ("MESSAGE", _) => (200, [b"default:".as_slice(), &req.body].concat()),
            _ => (200, vec![]),
        };
        let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        out
    });
    (url, events)
}

fn chat(backend: &str, auth: &str, extra: &str) -> String {
    format!(
        r#"
{tok}
[[apis]]
name = "chat"
protocol = "websocket"
base_path = "/chat"
route_selection = "$request.body.action"
max_message_size = "1KiB"
{extra}
[apis.stages.prod]
[apis.integrations.be]
type = "http"
uri = "{backend}/ws"
[[apis.routes]]
route = "$connect"
integration = "be"
authorizer = "tok"
[[apis.routes]]
route = "echo"
integration = "be"
[[apis.routes]]
route = "silent"
integration = "be"
[[apis.routes]]
route = "broken"
integration = "be"
[[apis.routes]]
route = "$default"
integration = "be"
[[apis.routes]]
route = "$disconnect"
integration = "be"
"#,
        tok = token_authorizer_section("tok", &format!("{auth}/authorize"), "0s")
    )
}

pub(crate) type Client = WebSocket<TcpStream>;

/// A handshake; `Err(status)` when refused.
pub(crate) fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).expect("write");
    // the head, byte by byte: what follows belongs to the WebSocket
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).expect("read head") == 0 {
            break;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status != 101 {
        return Err(status);
    }
    assert!(text.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{text}");
    Ok(WebSocket::from_raw_socket(s, Role::Client, None))
}

pub(crate) fn recv(c: &mut Client) -> Message {
    loop {
        match c.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

pub(crate) fn text(c: &mut Client) -> String {
    match recv(c) {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// The close code the client sees (reading until the connection ends).
pub(crate) fn close_code(c: &mut Client) -> Option<u16> {
    loop {
        match c.read() {
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

fn events_of(events: &Events, kind: &str) -> Vec<(String, String, String, String, Vec<u8>)> {
    events.lock().expect("lock").iter().filter(|e| e.0 == kind).cloned().collect()
}

fn connection_id(events: &Events) -> String {
    events_of(events, "CONNECT").last().map(|e| e.2.clone()).expect("a CONNECT event")
}

/// The chat API with `grace_period = "3s"`: time for a connection to see the drain.
fn chat_gateway_with_3s_grace(be: &str, auth: &str) -> Gateway {
    Gateway::start(|d, p| {
        format!(
            "{}{}",
            server_section(d, p, "watch = false").replace("grace_period = \"1s\"", "grace_period = \"3s\""),
            chat(be, auth, "")
        )
    })
}

fn gauge(gw: &Gateway) -> Option<f64> {
    let key = "edgegate_websocket_connections{api=\"chat\",stage=\"prod\"} ";
    gw.metrics().lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok())
}

#[test]
fn connect_route_message_and_disconnect() {
    let (be, events) = backend();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| format!("{}{}", server_section(d, p, "watch = false"), chat(&be, &auth.base, "")));

    // admission runs on the handshake: no token, a bad one; $connect may refuse
    assert_eq!(connect(gw.addr(), "/prod/chat", &[]).err(), Some(401));
    assert_eq!(connect(gw.addr(), "/prod/chat", &[("x-token", "bad")]).err(), Some(403));
    assert_eq!(connect(gw.addr(), "/prod/chat?deny=1", &[("x-token", "good")]).err(), Some(403));
    assert_eq!(events_of(&events, "CONNECT").len(), 1, "only admitted handshakes reach $connect");
    assert!(events_of(&events, "DISCONNECT").is_empty(), "a refused handshake leaves no connection");
    // a plain request to a WebSocket API
    let r = gw.get("/prod/chat");
    assert_eq!(r.status, 426, "{}", r.text());

    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id = connection_id(&events);
    assert_eq!(id.len(), 16, "{id}");
    eventually("the connection gauge", || gauge(&gw) == Some(1.0));

    c.send(Message::Text(r#"{"action":"echo","n":1}"#.into())).expect("send");
    assert_eq!(text(&mut c), r#"echo:{"action":"echo","n":1}"#);
    let m = events_of(&events, "MESSAGE").pop().expect("message event");
    assert_eq!((m.1.as_str(), m.2.as_str(), m.3.as_str()), ("echo", id.as_str(), "blue"), "{m:?}");
    // unmatched, not JSON, binary: $default
    c.send(Message::Text(r#"{"action":"nope"}"#.into())).expect("send");
    assert_eq!(text(&mut c), r#"default:{"action":"nope"}"#);
    c.send(Message::Text("plain words".into())).expect("send");
    assert_eq!(text(&mut c), "default:plain words");
    c.send(Message::Binary(vec![0xff, 0x00, 0x01].into())).expect("send");
    match recv(&mut c) {
        Message::Binary(b) => assert_eq!(&b[..], b"default:\xff\x00\x01"),
        other => panic!("{other:?}"),
    }
    // an integration error: AWS's error frame
    c.send(Message::Text(r#"{"action":"broken"}"#.into())).expect("send");
    let err: serde_json::Value = serde_json::from_str(&text(&mut c)).expect("json");
    assert_eq!((err["message"].as_str(), err["connectionId"].as_str()), (Some("Internal server error"), Some(&*id)));
    // a route without an answer sends nothing back
    c.send(Message::Text(r#"{"action":"silent"}"#.into())).expect("send");
    c.send(Message::Text(r#"{"action":"echo","after":"silent"}"#.into())).expect("send");
    assert_eq!(text(&mut c), r#"echo:{"action":"echo","after":"silent"}"#, "silent answers nothing");

    // the management API on the admin listener
    let enc = id.replace('=', "%3D").replace('+', "%2B").replace('/', "%2F");
    let r = send(gw.admin(), "POST", &format!("/@connections/{enc}"), &[], b"pushed to you");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(text(&mut c), "pushed to you");
    let r = get(gw.admin(), &format!("/@connections/{enc}"), &[]);
    assert_eq!(r.status, 200);
    let info = r.json();
    assert!(info["connectedAt"].is_string() && info["lastActiveAt"].is_string(), "{info}");
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    let r = send(gw.admin(), "POST", &format!("/@connections/{enc}"), &[], &[b'x'; 2048]);
    assert_eq!((r.status, r.header("x-amzn-errortype")), (413, Some("PayloadTooLargeException")));
    let r = send(gw.admin(), "DELETE", &format!("/@connections/{enc}"), &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(close_code(&mut c), Some(1000));
    eventually("$disconnect", || events_of(&events, "DISCONNECT").iter().any(|e| e.2 == id));
    let r = send(gw.admin(), "POST", &format!("/@connections/{enc}"), &[], b"late");
    assert_eq!((r.status, r.header("x-amzn-errortype")), (410, Some("GoneException")));
    eventually("the gauge back to 0", || gauge(&gw) == Some(0.0));
    let line = gw.wait_log("\"eventType\":\"CONNECTION\"");
    assert!(line.contains(&id) && line.contains("\"messagesIn\":7"), "{line}");
    gw.wait_log("\"eventType\":\"MESSAGE\"");
}

#[test]
fn limits_close_with_their_codes_and_disconnect_fires() {
    let (be, events) = backend();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| {
        format!("{}{}", server_section(d, p, "watch = false"), chat(&be, &auth.base, "idle_timeout = \"700ms\""))
    });
    // a message over max_message_size: 1009
    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id = connection_id(&events);
    c.send(Message::Text("x".repeat(2000).into())).expect("send");
    assert_eq!(close_code(&mut c), Some(1009));
    eventually("$disconnect after 1009", || events_of(&events, "DISCONNECT").iter().any(|e| e.2 == id));
    let d = events_of(&events, "DISCONNECT").into_iter().find(|e| e.2 == id).expect("event");
    assert!(String::from_utf8_lossy(&d.4).contains("1009"), "{:?}", String::from_utf8_lossy(&d.4));
    // idle: 1001
    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id = connection_id(&events);
    let t = std::time::Instant::now();
    assert_eq!(close_code(&mut c), Some(1001));
    assert!(t.elapsed() >= Duration::from_millis(600), "{:?}", t.elapsed());
    eventually("$disconnect after idle", || events_of(&events, "DISCONNECT").iter().any(|e| e.2 == id));
    // the client closes with its own code
    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id = connection_id(&events);
    c.close(Some(tungstenite::protocol::CloseFrame { code: 4001u16.into(), reason: "bye".into() })).expect("close");
    let _ = close_code(&mut c);
    eventually("$disconnect after the client's close", || {
        events_of(&events, "DISCONNECT").iter().any(|e| e.2 == id && String::from_utf8_lossy(&e.4).contains("4001"))
    });
    // an unmasked frame is a protocol error: 1002
    drop(c);
    let mut c2 = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    c2.get_mut().write_all(&[0x81, 0x02, b'h', b'i']).expect("raw frame");
    assert_eq!(close_code(&mut c2), Some(1002));
}

#[test]
fn no_default_route_answers_with_awss_error_frame() {
    let (be, _events) = backend();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| {
        let cfg =
            chat(&be, &auth.base, "").replace("[[apis.routes]]\nroute = \"$default\"\nintegration = \"be\"\n", "");
        format!("{}{cfg}", server_section(d, p, "watch = false"))
    });
    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    c.send(Message::Text(r#"{"action":"unknown"}"#.into())).expect("send");
    let v: serde_json::Value = serde_json::from_str(&text(&mut c)).expect("json");
    assert_eq!(v["message"], "Forbidden");
    assert!(v["connectionId"].is_string() && v["requestId"].is_string(), "{v}");
}

/// The management API on the public listener, as an AWS SDK calls it: boto3's
/// `apigatewaymanagementapi` client, SigV4-signed, `@` raw and the id percent-encoded.
#[test]
fn boto3_manages_connections_on_the_public_listener() {
    let python = ["target/peers/bin/python3", "python3"]
        .into_iter()
        .map(|p| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
        .find(|p| {
            std::process::Command::new(p).args(["-c", "import boto3"]).output().is_ok_and(|o| o.status.success())
        });
    let Some(python) = python else {
        assert!(std::env::var_os("EDGEGATE_REQUIRE_PEERS").is_none(), "boto3 is not installed");
        eprintln!("skipped: boto3 is not installed (./dev test installs it)");
        return;
    };
    let (be, events) = backend();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| {
        std::fs::write(
            d.join("credentials.toml"),
            r#"[[credentials]]
access_key_id = "AKBACKEND"
secret = "backend-secret"
principal = "chat-backend"
policies = ['{"Statement": [{"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": "arn:edgegate:execute-api:chat/prod/*"}]}']
[[credentials]]
access_key_id = "AKINVOKER"
secret = "invoker-secret"
principal = "someone"
policies = ['{"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}]}']
"#,
        )
        .expect("credentials");
        let iam = "[authorizers.iam]\ntype = \"sigv4\"\nservice = \"execute-api\"\nregion = \"us-east-1\"\ncredentials = \"credentials.toml\"\n";
        format!(
            "{}{iam}{}",
            server_section(d, p, "watch = false"),
            chat(&be, &auth.base, "management = { authorizer = \"iam\" }")
        )
    });
    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id = connection_id(&events);
    let script = format!(
        r#"
import json, sys, boto3, botocore
def client(ak, sk):
    return boto3.client("apigatewaymanagementapi", endpoint_url="http://{addr}/prod/chat", region_name="us-east-1",
                        aws_access_key_id=ak, aws_secret_access_key=sk)
c = client("AKBACKEND", "backend-secret")
out = {{}}
c.post_to_connection(ConnectionId=sys.argv[1], Data=b"from boto3")
out["get"] = c.get_connection(ConnectionId=sys.argv[1])["Identity"]["SourceIp"]
for name, call in [("wrong_secret", lambda: client("AKBACKEND", "nope").post_to_connection(ConnectionId=sys.argv[1], Data=b"x")),
                   ("no_permission", lambda: client("AKINVOKER", "invoker-secret").post_to_connection(ConnectionId=sys.argv[1], Data=b"x")),
                   ("gone", lambda: c.post_to_connection(ConnectionId="AAAAAAAAAAAAAA==", Data=b"x"))]:
    try:
        call()
        out[name] = "accepted"
    except botocore.exceptions.ClientError as e:
        out[name] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
c.delete_connection(ConnectionId=sys.argv[1])
print(json.dumps(out))
"#,
        addr = gw.addr()
    );
    let out = std::process::Command::new(&python).arg("-c").arg(&script).arg(&id).output().expect("python");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), gw.stderr());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["get"], "127.0.0.1", "{v}");
    assert_eq!(v["wrong_secret"], serde_json::json!(["ForbiddenException", 403]), "{v}");
    assert_eq!(v["no_permission"], serde_json::json!(["ForbiddenException", 403]), "{v}");
    assert_eq!(v["gone"], serde_json::json!(["GoneException", 410]), "{v}");
    assert_eq!(text(&mut c), "from boto3");
    assert_eq!(close_code(&mut c), Some(1000), "delete_connection closed it");
}

/// Two nodes on one Redis: either node's management API reaches a connection the other holds
/// (POST, GET with the holder's data, DELETE), a broadcast reaches connections on both, and a
/// dead node's connections are reported Gone.
#[test]
fn management_reaches_connections_on_other_nodes_through_redis() {
    let redis = crate::cluster::Redis::start();
    let (be, events) = backend();
    let auth = token_authorizer();
    let cluster = format!("[cluster]\nredis = \"redis://127.0.0.1:{}/0\"\n", redis.port);
    let node = || {
        Gateway::start(|d, p| {
            format!("{}{cluster}{}", server_section(d, p, "watch = false"), chat(&be, &auth.base, ""))
        })
    };
    let (a, mut b) = (node(), node());
    let mut on_a = connect(a.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id_a = connection_id(&events);
    let mut on_b = connect(b.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id_b = connection_id(&events);
    let enc = |id: &str| id.replace('=', "%3D").replace('+', "%2B").replace('/', "%2F");
    // node B's admin API, for A's connection (once the registry has it)
    eventually("B reaches A's connection", || {
        send(b.admin(), "POST", &format!("/@connections/{}", enc(&id_a)), &[], b"via b").status == 200
    });
    assert_eq!(text(&mut on_a), "via b");
    let r = get(b.admin(), &format!("/@connections/{}", enc(&id_a)), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["identity"]["sourceIp"], "127.0.0.1");
    // one broadcast from A reaches both nodes' connections
    let body = serde_json::json!({"ids": [id_a, id_b, id_b, id_a, "AAAAAAAAAAAAAA=="], "data": "to all"}).to_string();
    let r = send(a.admin(), "POST", "/@connections", &[("content-type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["delivered"], 2, "{}", r.text());
    assert_eq!(r.json()["gone"], serde_json::json!(["AAAAAAAAAAAAAA=="]));
    assert_eq!(text(&mut on_a), "to all");
    assert_eq!(text(&mut on_b), "to all");
    // DELETE through A closes B's connection, and it is gone at once through the relay
    let r = send(a.admin(), "DELETE", &format!("/@connections/{}", enc(&id_b)), &[], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let r = send(a.admin(), "POST", &format!("/@connections/{}", enc(&id_b)), &[], b"late");
    assert_eq!(r.status, 410, "POST after DELETE, relayed: {}", r.text());
    assert_eq!(get(a.admin(), &format!("/@connections/{}", enc(&id_b)), &[]).status, 410);
    assert_eq!(send(a.admin(), "DELETE", &format!("/@connections/{}", enc(&id_b)), &[], b"").status, 410);
    assert_eq!(close_code(&mut on_b), Some(1000));
    // a node that dies: its connections are Gone from the other node within the heartbeat TTL
    let mut on_b2 = connect(b.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id_b2 = connection_id(&events);
    eventually("A reaches B's new connection", || {
        send(a.admin(), "POST", &format!("/@connections/{}", enc(&id_b2)), &[], b"hi").status == 200
    });
    assert_eq!(text(&mut on_b2), "hi");
    b.signal("KILL");
    let _ = b.child.take().map(|mut c| c.wait());
    let t = std::time::Instant::now();
    let deadline = t + Duration::from_secs(25);
    loop {
        let r = send(a.admin(), "POST", &format!("/@connections/{}", enc(&id_b2)), &[], b"anyone?");
        if r.status == 410 {
            assert_eq!(r.header("x-amzn-errortype"), Some("GoneException"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {} after {:?}", r.status, t.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A config reload keeps open connections (they finish on the snapshot they started with);
/// a graceful upgrade lets the old process keep them until `grace_period`, then closes each
/// with 1001 and runs `$disconnect`, and a reconnecting client lands on the new process.
#[test]
fn reloads_keep_connections_and_upgrades_close_them_with_1001() {
    let (be, events) = backend();
    let auth = token_authorizer();
    let mut gw = chat_gateway_with_3s_grace(&be, &auth.base);
    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id = connection_id(&events);
    let text_now = std::fs::read_to_string(&gw.config).expect("config");
    gw.write_config(&text_now.replace("[apis.stages.prod]", "[apis.stages.prod]\nvariables = { v = \"2\" }"));
    gw.signal("HUP");
    eventually("the reload", || gw.metrics().contains("edgegate_config_reloads_total{result=\"ok\"} 1"));
    c.send(Message::Text(r#"{"action":"echo","after":"reload"}"#.into())).expect("send");
    assert_eq!(text(&mut c), r#"echo:{"action":"echo","after":"reload"}"#, "the connection survived the reload");

    let mut old = gw.child.take().expect("old process");
    let started = std::time::Instant::now();
    gw.child = Some(gw.spawn(&["-u"]));
    // still served by the old process for a while
    std::thread::sleep(Duration::from_millis(300));
    c.send(Message::Text(r#"{"action":"echo","during":"upgrade"}"#.into())).expect("send");
    assert_eq!(text(&mut c), r#"echo:{"action":"echo","during":"upgrade"}"#);
    assert_eq!(close_code(&mut c), Some(1001), "closed as the grace period ends");
    assert!(started.elapsed() >= Duration::from_millis(1000), "{:?}", started.elapsed());
    eventually("$disconnect for the old process's connection", || {
        events_of(&events, "DISCONNECT").iter().any(|e| e.2 == id && String::from_utf8_lossy(&e.4).contains("1001"))
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while old.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    // the client reconnects: the new process
    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted by the new process");
    c.send(Message::Text(r#"{"action":"echo","on":"new"}"#.into())).expect("send");
    assert_eq!(text(&mut c), r#"echo:{"action":"echo","on":"new"}"#);
}

/// New connections are limited per stage (AWS's 500 per second), before any authorizer runs.
#[test]
fn new_connections_are_rate_limited_per_stage() {
    let (be, _events) = backend();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| format!("{}{}", server_section(d, p, "watch = false"), chat(&be, &auth.base, "")));
    let addr = gw.addr();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut counts = (0usize, 0usize);
                for _ in 0..150 {
                    // no token: 401 when admitted this far, 429 when the connection rate refused it
                    match connect(addr, "/prod/chat", &[]).err() {
                        Some(429) => counts.1 += 1,
                        Some(401) => counts.0 += 1,
                        other => panic!("{other:?}"),
                    }
                }
                counts
            })
        })
        .collect();
    let (mut admitted, mut limited) = (0, 0);
    for t in threads {
        let (a, l) = t.join().expect("thread");
        admitted += a;
        limited += l;
    }
    assert!(admitted >= 500 && limited > 0, "admitted {admitted}, limited {limited}");
    assert!(gw.metrics().contains("edgegate_throttled_total{api=\"chat\",reason=\"connections\",stage=\"prod\"}"));
}

/// The connection registry on a three-master Redis Cluster: management calls and broadcasts
/// reach connections held by the other node.
#[test]
fn management_across_nodes_on_a_redis_cluster() {
    let rc = crate::cluster::RedisCluster::start();
    let (be, events) = backend();
    let auth = token_authorizer();
    let cluster = format!("[cluster]\nredis = {}\n", rc.seeds());
    let node = || {
        Gateway::start(|d, p| {
            format!("{}{cluster}{}", server_section(d, p, "watch = false"), chat(&be, &auth.base, ""))
        })
    };
    let (a, b) = (node(), node());
    let mut on_a = connect(a.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id_a = connection_id(&events);
    let mut on_b = connect(b.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id_b = connection_id(&events);
    let enc = |id: &str| id.replace('=', "%3D");
    eventually("B reaches A's connection", || {
        send(b.admin(), "POST", &format!("/@connections/{}", enc(&id_a)), &[], b"via b").status == 200
    });
    assert_eq!(text(&mut on_a), "via b");
    let body = serde_json::json!({"ids": [id_a, id_b], "data": "both"}).to_string();
    let r = send(b.admin(), "POST", "/@connections", &[], body.as_bytes());
    assert_eq!(r.json()["delivered"], 2, "{}", r.text());
    assert_eq!(text(&mut on_a), "both");
    assert_eq!(text(&mut on_b), "both");
}

/// What is not a handshake never reaches `$connect`: HTTP/2 (no Upgrade there; RFC 8441 is not
/// served), a repeated `Sec-WebSocket-Key` (read under the one header rule: two keys are no
/// key), and a management path below the API's root.
#[test]
fn malformed_handshakes_never_reach_connect() {
    let (be, events) = backend();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| format!("{}{}", server_section(d, p, "watch = false"), chat(&be, &auth.base, "")));
    let r = h2_request(gw.addr(), "GET", "/prod/chat", &[("x-token", "good")], None);
    assert_eq!(r.status, 426, "HTTP/2: {}", r.text());
    let r = h2_request(gw.addr(), "POST", "/prod/chat", &[("x-token", "good")], Some(b"{\"action\":\"echo\"}"));
    assert_eq!(r.status, 426, "HTTP/2 with a body and no content-length: {}", r.text());
    let raw = "GET /prod/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
               Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nx-token: good\r\nConnection: close\r\n\r\n";
    assert_eq!(request(gw.addr(), raw.as_bytes()).status, 426, "two keys");
    let raw = "GET /prod/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %64GhlIHNhbXBsZSBub25jZQ==\r\nx-token: good\r\n\r\n";
    assert_eq!(request(gw.addr(), raw.as_bytes()).status, 426, "a percent-encoded key is not base64");
    let r = send(gw.addr(), "POST", "/prod/chat/x/@connections/AAAAAAAAAAAAAA%3D%3D", &[("x-token", "good")], b"x");
    assert_eq!(r.status, 426, "not a management path: {}", r.text());
    assert!(events.lock().expect("lock").is_empty(), "the integration received nothing");
    // and a well-formed one still does
    connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    assert_eq!(events_of(&events, "CONNECT").len(), 1);
}

/// Items 10–12 of the trust review: an HTTP/1.0 upgrade is refused before any authorizer; a
/// deleted connection is gone at once for POST, GET and DELETE; a broadcast delivers once per
/// connection however often its id is listed.
#[test]
fn deleted_connections_are_gone_at_once_and_broadcasts_deduplicate() {
    let (be, events) = backend();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| format!("{}{}", server_section(d, p, "watch = false"), chat(&be, &auth.base, "")));
    let raw = "GET /prod/chat HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-token: good\r\n\r\n";
    let r = request(gw.addr(), raw.as_bytes());
    assert!(r.status == 426 || r.status == 400, "HTTP/1.0: {}", r.status);
    assert_eq!(auth.hits(), 0, "no authorizer ran for an HTTP/1.0 upgrade");
    assert!(events.lock().expect("lock").is_empty(), "$connect never saw it");

    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id = connection_id(&events);
    let enc = id.replace('=', "%3D").replace('+', "%2B").replace('/', "%2F");
    let body = serde_json::json!({"ids": [id, id, id], "data": "once"}).to_string();
    let r = send(gw.admin(), "POST", "/@connections", &[], body.as_bytes());
    assert_eq!(r.json()["delivered"], 1, "{}", r.text());
    send(gw.admin(), "POST", &format!("/@connections/{enc}"), &[], b"marker");
    assert_eq!(text(&mut c), "once");
    assert_eq!(text(&mut c), "marker", "one copy of the broadcast, then the next message");

    let r = send(gw.admin(), "DELETE", &format!("/@connections/{enc}"), &[], b"");
    assert_eq!(r.status, 204);
    // at once: no window in which the connection answers as if alive
    let r = send(gw.admin(), "POST", &format!("/@connections/{enc}"), &[], b"late");
    assert_eq!((r.status, r.header("x-amzn-errortype")), (410, Some("GoneException")), "POST after DELETE");
    assert_eq!(get(gw.admin(), &format!("/@connections/{enc}"), &[]).status, 410, "GET after DELETE");
    assert_eq!(send(gw.admin(), "DELETE", &format!("/@connections/{enc}"), &[], b"").status, 410, "DELETE twice");
    assert_eq!(close_code(&mut c), Some(1000));
    eventually("$disconnect", || events_of(&events, "DISCONNECT").iter().any(|e| e.2 == id));
    eventually("the gauge back to 0", || gauge(&gw) == Some(0.0));
}

/// Item 9: `systemctl stop` (the unit's own ExecStop line) closes open connections with 1001
/// and fires `$disconnect` before the process exits, even on a connection that is quiet.
#[test]
fn stop_closes_connections_with_1001_and_disconnect() {
    let (be, events) = backend();
    let auth = token_authorizer();
    let mut gw = chat_gateway_with_3s_grace(&be, &auth.base);
    let mut c = connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted");
    let id = connection_id(&events);
    let unit =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/edgegate.service"))
            .expect("unit");
    let stop = unit.lines().find_map(|l| l.strip_prefix("ExecStop=")).expect("an ExecStop line");
    let pid = gw.child.as_ref().expect("child").id().to_string();
    let status = std::process::Command::new("sh").arg("-c").arg(stop.replace("$MAINPID", &pid)).status().expect("stop");
    assert!(status.success(), "{stop}");
    assert_eq!(close_code(&mut c), Some(1001), "a close frame, not a cut");
    eventually("$disconnect with 1001", || {
        events_of(&events, "DISCONNECT").iter().any(|e| e.2 == id && String::from_utf8_lossy(&e.4).contains("1001"))
    });
    let mut child = gw.child.take().expect("child");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Item 13: on http routes, an origin's 101 opens a tunnel only when it is a WebSocket answer
/// to this client's key; otherwise 502 and no tunnel.
#[test]
fn passthrough_needs_a_valid_accept_from_the_origin() {
    let origin = serve_raw(|req, _| {
        let accept = match req.target.as_str() {
            "/right" => edgegate::websocket::accept_key(req.header("sec-websocket-key").unwrap_or_default().as_bytes()),
            "/none" => {
                return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                    .to_vec()
            }
            _ => "bm90IHRoZSByaWdodCBvbmU=".to_string(),
        };
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")
            .into_bytes()
    });
    let gw = Gateway::start(|d, p| {
        format!(
            "{}[[apis]]\nname = \"h\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /{{p}}\"\nintegration = {{ type = \"http\", uri = \"{origin}/{{p}}\" }}\n",
            server_section(d, p, "watch = false")
        )
    });
    for (path, want) in [("/prod/wrong", 502), ("/prod/none", 502), ("/prod/right", 101)] {
        match connect(gw.addr(), path, &[]) {
            Ok(_) => assert_eq!(want, 101, "{path}: a tunnel opened"),
            Err(s) => assert_eq!(s, want, "{path}"),
        }
    }
}

fn rss_kib(gw: &Gateway) -> u64 {
    let pid = gw.child.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// An idle connection holds no per-connection read buffer (Pingora's default, 64 KiB for
/// every accepted connection, made an idle WebSocket cost over 110 KiB) and no request
/// state: after the 101 the relay is its own task, whose state is the relay's alone (about
/// 55 KiB before that, 13–14 after, by this RSS measure; the goal is 16).
#[test]
fn idle_connections_stay_small() {
    let (be, _events) = backend();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| format!("{}{}", server_section(d, p, "watch = false"), chat(&be, &auth.base, "")));
    let open = |n: usize| -> Vec<Client> {
        (0..n).map(|_| connect(gw.addr(), "/prod/chat", &[("x-token", "good")]).expect("accepted")).collect()
    };
    let warm = open(50);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(&gw);
    let idle = open(300);
    eventually("the connection gauge", || gauge(&gw) == Some(350.0));
    std::thread::sleep(Duration::from_millis(300));
    let per = (rss_kib(&gw).saturating_sub(before)) / 300;
    eprintln!("{per} KiB per idle connection");
    assert!(per <= 20, "{per} KiB per idle connection");
    drop((warm, idle));
}

/// A Lambda Invoke API that records each WebSocket event and answers by its route: `$connect`
/// with `?deny` gives statusCode 401; `echo` and `$default` answer `{"statusCode": 200,
/// "body": "fn:" + body}`; `fail` is a function error; `five` answers statusCode 500.
fn ws_function() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let events = Arc::new(Mutex::new(vec![]));
    let e2 = events.clone();
    let url = serve_raw(move |req, _| {
        let e: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        e2.lock().expect("lock").push(e.clone());
        let rc = &e["requestContext"];
        let deny = e["queryStringParameters"]["deny"].is_string();
        let (extra, out) = match (rc["eventType"].as_str().unwrap_or(""), rc["routeKey"].as_str().unwrap_or("")) {
            ("CONNECT", _) if deny => ("", r#"{"statusCode": "401"}"#.to_string()),
            ("MESSAGE", "fail") => ("X-Amz-Function-Error: Unhandled\r\n", r#"{"errorMessage":"boom"}"#.to_string()),
            ("MESSAGE", "five") => ("", r#"{"statusCode": 500, "body": "secret detail"}"#.to_string()),
            ("MESSAGE", _) => {
                let body = format!("fn:{}", e["body"].as_str().unwrap_or(""));
                ("", serde_json::json!({"statusCode": 200, "body": body}).to_string())
            }
            _ => ("", "null".to_string()),
        };
        json_reply(200, extra, &out)
    });
    (url, events)
}

#[test]
fn lambda_routes_get_awss_websocket_event() {
    let (function, events) = ws_function();
    let auth = token_authorizer();
    let gw = Gateway::start(|d, p| {
        format!(
            "{}{}[[apis]]\nname = \"chat\"\nprotocol = \"websocket\"\nbase_path = \"/chat\"\n\
             [apis.stages.prod]\n[apis.integrations.fn]\ntype = \"lambda\"\nfunction = \"chat\"\n\
             endpoint = \"{function}\"\nregion = \"us-east-1\"\n\
             [[apis.routes]]\nroute = \"$connect\"\nintegration = \"fn\"\nauthorizer = \"tok\"\n\
             [[apis.routes]]\nroute = \"$disconnect\"\nintegration = \"fn\"\n\
             [[apis.routes]]\nroute = \"$default\"\nintegration = \"fn\"\nroute_response = true\n\
             [[apis.routes]]\nroute = \"echo\"\nintegration = \"fn\"\nroute_response = true\n\
             [[apis.routes]]\nroute = \"quiet\"\nintegration = \"fn\"\n\
             [[apis.routes]]\nroute = \"fail\"\nintegration = \"fn\"\nroute_response = true\n\
             [[apis.routes]]\nroute = \"five\"\nintegration = \"fn\"\nroute_response = true\n",
            server_section(d, p, "watch = false"),
            token_authorizer_section("tok", &format!("{}/authorize", auth.base), "0s"),
        )
    });
    // statusCode "401" from $connect refuses the handshake with it
    assert_eq!(connect(gw.addr(), "/prod/chat?deny=1", &[("x-token", "good")]).err(), Some(401));
    let mut c = connect(gw.addr(), "/prod/chat?room=a%20b", &[("x-token", "good")]).expect("accepted");
    let connect_event = events.lock().expect("lock").last().cloned().expect("$connect event");
    let rc = &connect_event["requestContext"];
    assert_eq!((rc["eventType"].as_str(), rc["routeKey"].as_str()), (Some("CONNECT"), Some("$connect")));
    assert_eq!(rc["authorizer"]["team"], "blue", "the authorizer's context: {rc}");
    assert_eq!(connect_event["queryStringParameters"]["room"], "a b");
    assert_eq!(connect_event["headers"]["x-token"], "good");
    let id = rc["connectionId"].as_str().expect("id").to_string();

    c.send(Message::Text(r#"{"action":"echo","n":1}"#.into())).expect("send");
    assert_eq!(text(&mut c), r#"fn:{"action":"echo","n":1}"#);
    // no route_response: the function's answer is dropped
    c.send(Message::Text(r#"{"action":"quiet"}"#.into())).expect("send");
    // a binary message reaches $default base64-encoded
    c.send(Message::Binary(vec![0xff, 0x00, 0x01].into())).expect("send");
    assert_eq!(text(&mut c), "fn:/wAB", "quiet sent nothing; binary arrives base64");
    // a function error, and a 500 statusCode: AWS's error frame, never the function's detail
    for route in ["fail", "five"] {
        c.send(Message::Text(format!(r#"{{"action":"{route}"}}"#).into())).expect("send");
        let t = text(&mut c);
        let err: serde_json::Value = serde_json::from_str(&t).expect("json");
        assert_eq!(err["message"], "Internal server error", "{route}: {t}");
        assert!(!t.contains("secret") && !t.contains("boom"), "{t}");
    }
    let all = events.lock().expect("lock").clone();
    let bin = all.iter().find(|e| e["isBase64Encoded"] == true).expect("the binary message's event");
    assert_eq!((bin["body"].as_str(), bin["requestContext"]["routeKey"].as_str()), (Some("/wAB"), Some("$default")));
    assert_eq!(bin["requestContext"]["authorizer"]["team"], "blue", "every event carries the authorizer's result");
    assert!(bin["requestContext"]["messageId"].is_string());
    assert!(bin.get("headers").is_none(), "messages carry no headers: {bin}");

    c.close(Some(tungstenite::protocol::CloseFrame { code: 4001.into(), reason: "bye".into() })).expect("close");
    eventually("$disconnect", || {
        events.lock().expect("lock").iter().any(|e| e["requestContext"]["eventType"] == "DISCONNECT")
    });
    let all = events.lock().expect("lock").clone();
    let d = all.iter().find(|e| e["requestContext"]["eventType"] == "DISCONNECT").expect("disconnect");
    assert_eq!(d["requestContext"]["connectionId"], id.as_str());
    assert_eq!(d["requestContext"]["disconnectStatusCode"], 4001);
    assert!(d["requestContext"]["disconnectReason"].is_string(), "{d}");
}

#[test]
fn websocket_integration_kinds_are_checked() {
    let d = tempfile::tempdir().expect("dir");
    let f = d.path().join("edgegate.toml");
    let p = Ports::new();
    let ws = |integration: &str, route_extra: &str| {
        format!(
            "{}[[apis]]\nname = \"chat\"\nprotocol = \"websocket\"\n[apis.stages.prod]\n\
             [apis.integrations.x]\n{integration}\n[[apis.routes]]\nroute = \"$disconnect\"\nintegration = \"x\"\n{route_extra}",
            server_section(d.path(), &p, "watch = false")
        )
    };
    let mock = "type = \"mock\"\nstatus = 200";
    let custom =
        "type = \"lambda\"\nfunction = \"f\"\nendpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\nproxy = false";
    let http = "type = \"http\"\nuri = \"http://127.0.0.1:9\"";
    for (text, needle) in [
        (ws(mock, ""), "type = \"lambda\" with proxy"),
        (ws(custom, ""), "type = \"lambda\" with proxy"),
        (ws(http, "route_response = true"), "$disconnect has no client"),
        (
            format!(
                "{}[[apis]]\nname = \"h\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /\"\n\
                 integration = {{ type = \"http\", uri = \"http://127.0.0.1:9\" }}\nroute_response = true\n",
                server_section(d.path(), &p, "watch = false")
            ),
            "`route_response` is for WebSocket routes",
        ),
    ] {
        std::fs::write(&f, &text).expect("write");
        let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&f).output().expect("check");
        let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && err.contains(needle), "{needle}: {err}");
        assert!(err.contains("edgegate.toml:"), "the file and line: {err}");
    }
}

/// `$connect` answers that are not a 2xx refuse the handshake: a redirect status as 502 (a
/// handshake is not redirected), a function error as 502, a malformed status as 502; the
/// function's text never reaches the client.
#[test]
fn lambda_connect_refusals() {
    let invoke = serve_raw(|req, _| {
        let e: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let q = &e["queryStringParameters"];
        let (extra, out) = if q["r"].is_string() {
            ("", r#"{"statusCode": 301, "headers": {"location": "http://evil.example/"}}"#)
        } else if q["fail"].is_string() {
            ("X-Amz-Function-Error: Unhandled\r\n", r#"{"errorMessage": "secret stack"}"#)
        } else if q["bad"].is_string() {
            ("", r#"{"statusCode": 70000, "body": "secret"}"#)
        } else {
            ("", r#"{"statusCode": 200}"#)
        };
        json_reply(200, extra, out)
    });
    let gw = Gateway::start(|d, p| {
        format!(
            "{}[[apis]]\nname = \"chat\"\nprotocol = \"websocket\"\nbase_path = \"/chat\"\n[apis.stages.prod]\n\
             [apis.integrations.fn]\ntype = \"lambda\"\nfunction = \"c\"\nendpoint = \"{invoke}\"\nregion = \"us-east-1\"\n\
             [[apis.routes]]\nroute = \"$connect\"\nintegration = \"fn\"\n",
            server_section(d, p, "watch = false")
        )
    });
    for (q, status) in [("r=1", 502), ("fail=1", 502), ("bad=1", 502)] {
        assert_eq!(connect(gw.addr(), &format!("/prod/chat?{q}"), &[]).err(), Some(status), "{q}");
    }
    let r = get(
        gw.addr(),
        "/prod/chat?fail=1",
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ],
    );
    assert!(!r.text().contains("secret"), "{}", r.text());
    assert!(r.header("location").is_none());
    assert!(connect(gw.addr(), "/prod/chat", &[]).is_ok(), "a 200 accepts");
}
