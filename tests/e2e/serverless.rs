//! Lambda integrations against serverless-offline (npm `serverless@3` + `serverless-offline@13`):
//! a real Lambda Invoke API running real Node and Python handlers, and a reference for the
//! events (its `httpPort` builds AWS-shaped 1.0 and 2.0 events for the same request, which
//! are compared with edgegate's field by field). Skipped, saying so, when serverless is not
//! installed (`./dev test` installs it into `target/peers/node`); `EDGEGATE_REQUIRE_PEERS=1`
//! turns the skip into a failure.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const SERVICE: &str = r#"service: edgegate-peer
frameworkVersion: '3'
provider:
  name: aws
  runtime: nodejs20.x
  region: us-east-1
plugins:
  - serverless-offline
custom:
  serverless-offline:
    host: 127.0.0.1
    httpPort: HTTP_PORT
    lambdaPort: LAMBDA_PORT
    websocketPort: WS_PORT
    noPrependStageInUrl: true
functions:
  echo:
    handler: handler.echo
  ref2:
    handler: handler.ref
    events:
      - httpApi: 'ANY /echo/{proxy+}'
  ref1:
    handler: handler.ref
    events:
      - http: 'ANY /echo1/{proxy+}'
  pyecho:
    handler: pyhandler.echo
    runtime: python3.11
  boom:
    handler: handler.boom
  # the reference WebSocket events, from serverless-offline's own WebSocket server
  wsref:
    handler: handler.ws
    events:
      - websocket: $connect
      - websocket: $disconnect
      - websocket:
          route: $default
      - websocket:
          route: join
          routeResponseSelectionExpression: $default
  # the same handler, invoked by edgegate
  wsgw:
    handler: handler.ws
"#;

const NODE_HANDLER: &str = r#"
exports.echo = async (event) => ({
  statusCode: 200,
  headers: { 'content-type': 'application/json', 'x-fn': 'node' },
  multiValueHeaders: { 'x-multi-out': ['a', 'b'] },
  cookies: ['s=1; Path=/', 't=2'],
  body: JSON.stringify(event),
});
// the reference events, from serverless-offline's own HTTP server
exports.ref = async (event) => ({ statusCode: 200, body: JSON.stringify(event) });
exports.boom = async () => { throw new Error('kaboom from node'); };
// records every WebSocket event (with the function that got it); refuses `?deny`; answers
// messages with their body
exports.ws = async (event, context) => {
  require('fs').appendFileSync(require('path').join(__dirname, 'ws-events.jsonl'),
    JSON.stringify({ fn: context.functionName, event }) + '\n');
  const rc = event.requestContext;
  if (rc.eventType === 'CONNECT' && (event.queryStringParameters || {}).deny) return { statusCode: 403 };
  if (rc.eventType === 'MESSAGE') return { statusCode: 200, body: 'fn:' + rc.routeKey + ':' + event.body };
  return { statusCode: 200 };
};
"#;

const PY_HANDLER: &str = r#"import base64, json
def echo(event, context):
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("latin-1")
    return {"statusCode": 201, "headers": {"x-fn": "python"}, "body": json.dumps({"got": body, "len": len(body)})}
"#;

struct Sls {
    child: Child,
    http: u16,
    lambda: u16,
    ws: u16,
    _dir: tempfile::TempDir,
}

impl Sls {
    fn start() -> Option<Sls> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/node/node_modules");
        let bin = root.join(".bin/serverless");
        if !bin.exists() || Command::new("python3").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("EDGEGATE_REQUIRE_PEERS").is_none(),
                "serverless-offline is not installed in target/peers/node (./dev test installs it)"
            );
            eprintln!("skipped: serverless-offline is not installed (./dev test installs it)");
            return None;
        }
        let dir = tempfile::tempdir().expect("dir");
        let (http, lambda, ws) = (free_port(), free_port(), free_port());
        let yml = SERVICE
            .replace("HTTP_PORT", &http.to_string())
            .replace("LAMBDA_PORT", &lambda.to_string())
            .replace("WS_PORT", &ws.to_string());
        std::fs::write(dir.path().join("serverless.yml"), yml).expect("write");
        std::fs::write(dir.path().join("handler.js"), NODE_HANDLER).expect("write");
        std::fs::write(dir.path().join("pyhandler.py"), PY_HANDLER).expect("write");
        std::os::unix::fs::symlink(&root, dir.path().join("node_modules")).expect("link");
        let log = std::fs::File::create(dir.path().join("sls.log")).expect("log");
        use std::os::unix::process::CommandExt;
        let child = Command::new(&bin)
            .args(["offline", "start"])
            .current_dir(dir.path())
            .env("SLS_TELEMETRY_DISABLED", "1")
            .env("SLS_NOTIFICATIONS_MODE", "off")
            .env("SLS_DEPRECATION_DISABLE", "*")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn serverless");
        let s = Sls { child, http, lambda, ws, _dir: dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", s.http)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "serverless-offline did not start: {}",
                std::fs::read_to_string(s._dir.path().join("sls.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(s)
    }
}

impl Drop for Sls {
    fn drop(&mut self) {
        // the whole group: node and the python runners it spawned
        let _ = Command::new("kill").args(["-s", "TERM", "--"]).arg(format!("-{}", self.child.id())).status();
        let _ = self.child.wait();
    }
}

fn gateway(sls: &Sls) -> Gateway {
    let endpoint = format!("http://127.0.0.1:{}", sls.lambda);
    let integration = |name: &str, function: &str, format: &str| {
        format!(
            "[apis.integrations.{name}]\ntype = \"lambda\"\nfunction = \"edgegate-peer-dev-{function}\"\n\
             endpoint = \"{endpoint}\"\nregion = \"us-east-1\"\npayload_format = \"{format}\"\n"
        )
    };
    let routes = [
        ("ANY /echo/{proxy+}", "echo2"),
        ("ANY /echo1/{proxy+}", "echo1"),
        ("POST /py", "py"),
        ("GET /boom", "boom"),
        ("GET /nope", "nope"),
    ];
    let mut text = String::from(
        "[[apis]]\nname = \"fn\"\nbinary_media_types = [\"application/octet-stream\"]\n[apis.stages.prod]\n",
    );
    text += &integration("echo2", "echo", "2.0");
    text += &integration("echo1", "echo", "1.0");
    text += &integration("py", "pyecho", "2.0");
    text += &integration("boom", "boom", "2.0");
    text += &integration("nope", "nope", "2.0");
    for (route, i) in routes {
        text += &format!("[[apis.routes]]\nroute = \"{route}\"\nintegration = \"{i}\"\n");
    }
    // signed with the standard credential variables (serverless-offline accepts any signature)
    Gateway::start_with_env(
        |d, p| format!("{}{text}", server_section(d, p, "watch = false")),
        &[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "secret")],
    )
}

const QUERY: &str = "x=1&x=2&y=a%2Bb";

fn headers() -> Vec<(&'static str, &'static str)> {
    vec![("cookie", "a=1; b=2"), ("user-agent", "peer-test/1"), ("accept", "text/plain")]
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

/// Fields the reference has a value for that ours lacks (AWS omits `body` and
/// `stageVariables` when there are none; serverless-offline writes them as null).
fn missing(ours: &Value, reference: &Value) -> Vec<String> {
    let have = keys(ours);
    keys(reference).into_iter().filter(|k| !have.contains(k) && !reference[k.as_str()].is_null()).collect()
}

#[test]
fn lambda_integrations_against_serverless_offline() {
    let Some(sls) = Sls::start() else { return };
    let gw = gateway(&sls);
    let reference_at = std::net::SocketAddr::from(([127, 0, 0, 1], sls.http));

    // payload 2.0: a Node handler answers through edgegate with the event it received
    let r = get(gw.addr(), &format!("/prod/echo/a/b?{QUERY}"), &headers());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fn"), Some("node"));
    let cookies: Vec<&str> =
        r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(cookies, ["s=1; Path=/", "t=2"], "2.0 cookies become separate set-cookie fields");
    let ours = r.json();
    let reference = get(reference_at, &format!("/echo/a/b?{QUERY}"), &headers()).json();
    assert_eq!(missing(&ours, &reference), Vec::<String>::new(), "2.0 top level\nours {ours}\nref {reference}");
    let (oc, rc) = (&ours["requestContext"], &reference["requestContext"]);
    assert_eq!(missing(oc, rc), Vec::<String>::new(), "2.0 requestContext\nours {oc}\nref {rc}");
    assert_eq!(keys(&oc["http"]), keys(&rc["http"]));
    for f in ["version", "routeKey", "cookies", "queryStringParameters", "pathParameters", "isBase64Encoded"] {
        assert_eq!(ours[f], reference[f], "2.0 {f}");
    }
    for f in ["method", "protocol", "sourceIp", "userAgent"] {
        assert_eq!(oc["http"][f], rc["http"][f], "2.0 requestContext.http.{f}");
    }
    assert_eq!(oc["routeKey"], rc["routeKey"]);
    for h in ["user-agent", "accept", "host"] {
        assert_eq!(ours["headers"][h], reference["headers"][h], "2.0 header {h}");
    }
    // AWS moves the Cookie header into `cookies` (serverless-offline keeps both)
    assert!(ours["headers"]["cookie"].is_null(), "{}", ours["headers"]);
    // AWS passes the query string as sent (serverless-offline re-encodes it)
    assert_eq!(ours["rawQueryString"], QUERY);
    assert!(ours["rawPath"].as_str().unwrap_or_default().ends_with(reference["rawPath"].as_str().unwrap_or("?")));

    // payload 1.0
    let r = get(gw.addr(), &format!("/prod/echo1/a/b?{QUERY}"), &headers());
    assert_eq!(r.status, 200, "{}", r.text());
    let multi: Vec<&str> =
        r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("x-multi-out")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(multi, ["a", "b"], "1.0 multiValueHeaders");
    let ours = r.json();
    let reference = get(reference_at, &format!("/echo1/a/b?{QUERY}"), &headers()).json();
    assert_eq!(missing(&ours, &reference), Vec::<String>::new(), "1.0 top level\nours {ours}\nref {reference}");
    let (oc, rc) = (&ours["requestContext"], &reference["requestContext"]);
    assert_eq!(missing(oc, rc), Vec::<String>::new(), "1.0 requestContext\nours {oc}\nref {rc}");
    assert_eq!(missing(&oc["identity"], &rc["identity"]), Vec::<String>::new(), "1.0 requestContext.identity");
    for f in [
        "resource",
        "httpMethod",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "isBase64Encoded",
    ] {
        assert_eq!(ours[f], reference[f], "1.0 {f}");
    }
    assert_eq!(ours["multiValueHeaders"]["cookie"], reference["multiValueHeaders"]["cookie"]);
    assert_eq!(oc["identity"]["sourceIp"], rc["identity"]["sourceIp"]);
    // AWS's resourcePath is the resource (serverless-offline writes hapi's `{proxy*}` there)
    assert_eq!(oc["resourcePath"], ours["resource"]);
    assert_eq!(oc["httpMethod"], rc["httpMethod"]);

    // a Python handler; a binary body arrives base64 and decodes to the same bytes
    let body: Vec<u8> = (0u8..=255).collect();
    let r = send(gw.addr(), "POST", "/prod/py", &[("content-type", "application/octet-stream")], &body);
    assert_eq!((r.status, r.header("x-fn")), (201, Some("python")), "{}", r.text());
    assert_eq!(r.json()["len"], 256);
    let got: Vec<u8> = r.json()["got"].as_str().unwrap_or_default().chars().map(|c| c as u32 as u8).collect();
    assert_eq!(got, body);

    // a handler that throws: Unhandled -> 502, logged with the function's errorMessage
    let r = gw.get("/prod/boom");
    assert_eq!(r.status, 502, "{}", r.text());
    eventually("the function error in the log", || gw.stderr().contains("kaboom from node"));
    // an unknown function: 404 ResourceNotFoundException -> 502 with a clear log line
    let r = gw.get("/prod/nope");
    assert_eq!(r.status, 502, "{}", r.text());
    eventually("the unknown function in the log", || gw.stderr().contains("edgegate-peer-dev-nope"));
}

/// The WebSocket events `function` got, in order.
fn ws_events(sls: &Sls, function: &str) -> Vec<Value> {
    std::fs::read_to_string(sls._dir.path().join("ws-events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fn"].as_str().is_some_and(|f| f.ends_with(function)))
        .map(|v| v["event"].clone())
        .collect()
}

/// One session: a refused handshake, then a connection with query and repeated header
/// fields, a two-way route, a `$default` message, and a close. What the client got back.
fn ws_session(addr: std::net::SocketAddr, path: &str) -> Vec<String> {
    use crate::websocket::{connect, text};
    use tungstenite::Message;
    let refused = connect(addr, &format!("{path}?deny=1"), &[]);
    assert!(matches!(refused, Err(403)), "a $connect answer of 403 refuses the handshake: {:?}", refused.err());
    let headers = [("x-multi", "a"), ("x-multi", "b"), ("user-agent", "ws-peer/1")];
    let mut c = connect(addr, &format!("{path}?q=1&q=2&n=x%20y"), &headers).expect("accepted");
    let mut got = vec![];
    c.send(Message::Text(r#"{"action":"join","n":1}"#.into())).expect("send");
    got.push(text(&mut c));
    // $default has no route response: the answer is dropped; the next join's comes back
    c.send(Message::Text("not json".into())).expect("send");
    c.send(Message::Text(r#"{"action":"join","n":2}"#.into())).expect("send");
    got.push(text(&mut c));
    let normal = tungstenite::protocol::CloseFrame { code: 1000.into(), reason: "done".into() };
    c.close(Some(normal)).expect("close");
    while c.read().is_ok() {}
    got
}

#[test]
fn websocket_lambda_events_against_serverless_offline() {
    let Some(sls) = Sls::start() else { return };
    let endpoint = format!("http://127.0.0.1:{}", sls.lambda);
    let gw = Gateway::start_with_env(
        |d, p| {
            format!(
                "{}[[apis]]\nname = \"chat\"\nprotocol = \"websocket\"\nbase_path = \"/chat\"\n\
                 [apis.stages.prod]\n[apis.integrations.fn]\ntype = \"lambda\"\n\
                 function = \"edgegate-peer-dev-wsgw\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
                 [[apis.routes]]\nroute = \"$connect\"\nintegration = \"fn\"\n\
                 [[apis.routes]]\nroute = \"$disconnect\"\nintegration = \"fn\"\n\
                 [[apis.routes]]\nroute = \"$default\"\nintegration = \"fn\"\n\
                 [[apis.routes]]\nroute = \"join\"\nintegration = \"fn\"\nroute_response = true\n",
                server_section(d, p, "watch = false")
            )
        },
        &[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "secret")],
    );
    let reference_at = std::net::SocketAddr::from(([127, 0, 0, 1], sls.ws));
    let theirs = ws_session(reference_at, "/");
    let ours = ws_session(gw.addr(), "/prod/chat");
    assert_eq!(theirs, [r#"fn:join:{"action":"join","n":1}"#, r#"fn:join:{"action":"join","n":2}"#]);
    assert_eq!(ours, theirs, "route_response sends the function's body back; $default's is dropped");

    eventually("both $disconnect events", || {
        [ws_events(&sls, "wsref"), ws_events(&sls, "wsgw")]
            .iter()
            .all(|e| e.iter().any(|v| v["requestContext"]["eventType"] == "DISCONNECT"))
    });
    let (reference, events) = (ws_events(&sls, "wsref"), ws_events(&sls, "wsgw"));
    let kinds = |e: &[Value]| -> Vec<(String, String)> {
        e.iter()
            .map(|v| {
                let rc = &v["requestContext"];
                (rc["eventType"].as_str().unwrap_or("").into(), rc["routeKey"].as_str().unwrap_or("").into())
            })
            .collect()
    };
    let expect: Vec<(String, String)> =
        [("CONNECT", "$connect"), ("CONNECT", "$connect"), ("MESSAGE", "join"), ("MESSAGE", "$default")]
            .iter()
            .chain(&[("MESSAGE", "join"), ("DISCONNECT", "$disconnect")])
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(kinds(&reference), expect, "the reference saw every event");
    assert_eq!(kinds(&events), expect, "edgegate sent every event, in order");

    // field for field: every field the reference sets, with the same type; AWS's
    // messageId is on messages only (serverless-offline sets one on every event), and
    // $disconnect adds disconnectStatusCode / disconnectReason (serverless-offline has none)
    let kind_of = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    for (i, (o, r)) in events.iter().zip(&reference).enumerate() {
        let what = &expect[i].0;
        assert_eq!(keys(o), keys(r), "{what}: top-level fields\nours {o}\nref {r}");
        let (oc, rc) = (&o["requestContext"], &r["requestContext"]);
        let mut want = keys(rc);
        if what != "MESSAGE" {
            want.retain(|k| k != "messageId");
        }
        if what == "DISCONNECT" {
            want.extend(["disconnectReason".to_string(), "disconnectStatusCode".to_string()]);
            want.sort();
        }
        assert_eq!(keys(oc), want, "{what}: requestContext fields\nours {oc}\nref {rc}");
        for k in keys(rc).iter().filter(|k| oc.get(k.as_str()).is_some()) {
            let (a, b) = (&oc[k.as_str()], &rc[k.as_str()]);
            if !b.is_null() && !a.is_null() {
                assert_eq!(kind_of(a), kind_of(b), "{what}: requestContext.{k}: {a} vs {b}");
            }
        }
        assert_eq!(keys(&oc["identity"]), keys(&rc["identity"]), "{what}: identity");
        assert_eq!(oc["identity"]["sourceIp"], rc["identity"]["sourceIp"]);
        for f in ["eventType", "routeKey", "messageDirection"] {
            assert_eq!(oc[f], rc[f], "{what}: {f}");
        }
        for f in ["body", "isBase64Encoded", "queryStringParameters", "multiValueQueryStringParameters"] {
            assert_eq!(o[f], r[f], "{what}: {f}");
        }
        assert!(oc["connectedAt"].as_u64() <= oc["requestTimeEpoch"].as_u64(), "{oc}");
    }
    // the handshake's fields on $connect, repeated ones in multiValueHeaders
    let (oc, rc) = (&events[1], &reference[1]);
    assert_eq!(oc["multiValueHeaders"]["x-multi"], serde_json::json!(["a", "b"]), "{oc}");
    assert_eq!(oc["multiValueHeaders"]["x-multi"], rc["multiValueHeaders"]["x-multi"]);
    assert_eq!(oc["headers"]["user-agent"], "ws-peer/1");
    assert_eq!(oc["requestContext"]["identity"]["userAgent"], "ws-peer/1");
    // one connection: the same id and connectedAt on every event after the handshake
    let ids: Vec<&Value> = events[1..].iter().map(|v| &v["requestContext"]["connectionId"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let at: Vec<&Value> = events[1..].iter().map(|v| &v["requestContext"]["connectedAt"]).collect();
    assert!(at.iter().all(|t| *t == at[0]), "{at:?}");
    let d = &events[5]["requestContext"];
    assert_eq!(d["disconnectStatusCode"], 1000, "{d}");
    assert_eq!(d["disconnectReason"], "the client closed");
    assert_eq!(events[2]["requestContext"]["stage"], "prod");
    assert_eq!(events[2]["requestContext"]["apiId"], "chat");
}
