//! Trust at the seams between concerns, through the real binary over HTTP/1.1 and HTTP/2:
//! whole bodies decided on before any byte reaches the integration, Lambda and AWS service
//! answers framed by the gateway, forwarding and reserved headers no client can forge, edge
//! loops. Each probe asserts what the origin, function or service actually received.

use crate::common::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "trust-secret";

fn body_gateway(origin: &Origin) -> Gateway {
    let url = origin.url();
    Gateway::start(move |d, p| {
        let iam = allow_all_sigv4(d, "AKTRUST", SECRET);
        format!(
            r#"{server}
{iam}[[apis]]
name = "b"
[apis.stages.prod]
[[apis.routes]]
route = "POST /validated"
integration = {{ type = "http", uri = "{url}/validated" }}
validate = {{ body = {{ type = "object", properties = {{ meta = {{ type = "object", properties = {{ tagcount = {{ type = "integer" }} }} }}, pad = {{ type = "string" }} }} }} }}
[[apis.routes]]
route = "PUT /templated"
integration = {{ type = "http", uri = "{url}/templated" }}
request_transform = {{ body = '{{"wrapped": {{{{ input.json | tojson }}}}}}' }}
[[apis.routes]]
route = "POST /signed"
integration = {{ type = "http", uri = "{url}/signed" }}
authorizer = "iam"
[[apis.routes]]
route = "POST /stream"
integration = {{ type = "http", uri = "{url}/stream" }}
"#,
            server = server_section(d, p, "max_body = \"1MiB\"")
        )
    })
}

/// `{"meta": {"tagcount": TAG}, "pad": "xxx…"}`, `len` bytes long.
fn doc(tag: &str, len: usize) -> Vec<u8> {
    let head = format!("{{\"meta\": {{\"tagcount\": {tag}}}, \"pad\": \"");
    let pad = len.saturating_sub(head.len() + 2);
    let mut b = head.into_bytes();
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(b"\"}");
    b
}

fn chunked(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> Response {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: b.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in body.chunks(10_000) {
        raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        raw.extend_from_slice(c);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    request(addr, &raw)
}

/// Item 1–3: a route that decides on the whole body reads it, up to `max_body`, before the
/// integration is contacted; nothing of a refused request reaches the origin; the decided
/// bytes are the bytes forwarded; routes that need no decision stream.
#[test]
fn whole_bodies_are_decided_before_the_integration_is_contacted() {
    let origin = Origin::start("o");
    let gw = body_gateway(&origin);
    let json = [("content-type", "application/json")];
    let probes = std::cell::Cell::new(0);
    let check = |name: &str, status: u16, want: u16, sent: Option<&[u8]>, before: usize| {
        probes.set(probes.get() + 1);
        std::thread::sleep(Duration::from_millis(30));
        let seen: Vec<Seen> = origin.requests().into_iter().skip(before).collect();
        assert_eq!(status, want, "{name}");
        match sent {
            None => assert!(
                seen.is_empty(),
                "{name}: the origin saw {:?}",
                seen.iter().map(|s| &s.target).collect::<Vec<_>>()
            ),
            Some(b) => {
                assert_eq!(seen.len(), 1, "{name}: one request reaches the origin");
                assert!(
                    seen[0].body == b,
                    "{name}: the origin received {} bytes, not the {} sent",
                    seen[0].body.len(),
                    b.len()
                );
            }
        }
    };
    for len in [200, 100 * 1024, 900 * 1024] {
        // HTTP/1.1 with Content-Length
        let bad = doc("\"many\"", len);
        let n = origin.count();
        let r = send(gw.addr(), "POST", "/prod/validated", &json, &bad);
        check(&format!("h1 invalid {len}"), r.status, 400, None, n);
        assert!(
            r.text().contains("/meta/tagcount violates type"),
            "item 3: the body location and the rule: {}",
            r.text()
        );
        assert!(!r.text().contains("/properties/"), "not the schema path: {}", r.text());
        let good = doc("7", len);
        let n = origin.count();
        let r = send(gw.addr(), "POST", "/prod/validated", &json, &good);
        check(&format!("h1 valid {len}"), r.status, 200, Some(&good), n);
        // HTTP/2 with content-length
        let cl = len.to_string();
        let h2h = [("content-type", "application/json"), ("content-length", cl.as_str())];
        let n = origin.count();
        let r = h2_request(gw.addr(), "POST", "/prod/validated", &h2h, Some(&bad));
        check(&format!("h2 invalid {len}"), r.status, 400, None, n);
        let n = origin.count();
        let r = h2_request(gw.addr(), "POST", "/prod/validated", &h2h, Some(&good));
        check(&format!("h2 valid {len}"), r.status, 200, Some(&good), n);
    }
    // bodies of unknown length: whole up to 64 KiB, else 411 (nothing reaches the origin)
    let small_bad = br#"{"meta": {"tagcount": "not a number"}}      "#;
    assert_eq!(small_bad.len(), 44);
    let n = origin.count();
    let r = h2_request(gw.addr(), "POST", "/prod/validated", &json, Some(small_bad));
    check("h2 no content-length, 44 bytes invalid", r.status, 400, None, n);
    let small_good = doc("1", 2000);
    let n = origin.count();
    let r = h2_request(gw.addr(), "POST", "/prod/validated", &json, Some(&small_good));
    check("h2 no content-length valid", r.status, 200, Some(&small_good), n);
    let n = origin.count();
    let r = chunked(gw.addr(), "/prod/validated", small_bad);
    check("h1 chunked invalid", r.status, 400, None, n);
    let n = origin.count();
    let r = chunked(gw.addr(), "/prod/validated", &small_good);
    check("h1 chunked valid", r.status, 200, Some(&small_good), n);
    let big = doc("1", 100 * 1024);
    let n = origin.count();
    let r = chunked(gw.addr(), "/prod/validated", &big);
    check("h1 chunked over 64 KiB", r.status, 411, None, n);
    let n = origin.count();
    let r = h2_request(gw.addr(), "POST", "/prod/validated", &json, Some(&big));
    check("h2 no content-length over 64 KiB", r.status, 411, None, n);
    // over max_body: 413, declared or not
    let huge = doc("1", 1100 * 1024);
    let n = origin.count();
    let r = send(gw.addr(), "POST", "/prod/validated", &json, &huge);
    check("h1 over max_body", r.status, 413, None, n);
    // a body template over 64 KiB: the origin gets the transformed body, whole
    let n = origin.count();
    let r = send(gw.addr(), "PUT", "/prod/templated", &json, &good_doc());
    probes.set(probes.get() + 1);
    assert_eq!(r.status, 200);
    let seen = &origin.requests()[n];
    let v: serde_json::Value = serde_json::from_slice(&seen.body).expect("the transformed body is JSON");
    assert_eq!(v["wrapped"]["meta"]["tagcount"], 5);
    assert_eq!(seen.header("content-length"), Some(seen.body.len().to_string().as_str()));
    // no decision: the body streams to the origin as it comes (over max_body is cut)
    let n = origin.count();
    let r = send(gw.addr(), "POST", "/prod/stream", &json, &big);
    check("streamed", r.status, 200, Some(&big), n);
    eprintln!("body probes: {}", probes.get());
}

fn good_doc() -> Vec<u8> {
    doc("5", 150 * 1024)
}

/// Item 2: SigV4 signed payloads are verified up to `max_body`, over both HTTP versions.
#[test]
fn sigv4_signed_payloads_are_verified_up_to_max_body() {
    use edgegate::aws::sigv4::sign_request;
    let origin = Origin::start("o");
    let gw = body_gateway(&origin);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("t").as_secs();
    let sign = |host: &str, body: &[u8]| {
        sign_request(
            "AKTRUST",
            SECRET,
            "us-east-1",
            "execute-api",
            "POST",
            &format!("http://{host}/prod/signed"),
            &[],
            body,
            now,
        )
        .expect("sign")
    };
    for len in [10, 70 * 1024, 600 * 1024] {
        let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let h = sign("b.test", &body);
        let mut headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("host"));
        headers.push(("host", "b.test"));
        let n = origin.count();
        let r = send(gw.addr(), "POST", "/prod/signed", &headers, &body);
        assert_eq!(r.status, 200, "{len} bytes signed: {}", r.text());
        assert_eq!(origin.requests()[n].body, body, "the origin got the signed bytes");
        // tampered: the last byte changed
        let mut t = body.clone();
        *t.last_mut().expect("byte") ^= 1;
        let n = origin.count();
        let r = send(gw.addr(), "POST", "/prod/signed", &headers, &t);
        assert_eq!(r.status, 403, "{len} bytes tampered");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(origin.count(), n, "nothing of a refused request reaches the origin");
        // HTTP/2, no content-length: signed for host localhost
        let h = sign("localhost", &body);
        let headers: Vec<(&str, &str)> =
            h.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("host")).map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let n = origin.count();
        let r = h2_request(gw.addr(), "POST", "/prod/signed", &headers, Some(&body));
        let want = if len > 64 * 1024 { 411 } else { 200 };
        assert_eq!(r.status, want, "h2 {len} bytes without content-length: {}", r.text());
        if want == 200 {
            assert_eq!(origin.requests()[n].body, body);
        }
        let cl = len.to_string();
        let mut headers = headers.clone();
        headers.push(("content-length", &cl));
        let n = origin.count();
        let r = h2_request(gw.addr(), "POST", "/prod/signed", &headers, Some(&body));
        assert_eq!(r.status, 200, "h2 {len} bytes with content-length: {}", r.text());
        assert_eq!(origin.requests()[n].body, body);
    }
}

// ------------------------------------------------------------------ Lambda and AWS answers

/// A Lambda Invoke API: the function's result is chosen by the event's last path segment;
/// `echo` returns the event it got.
fn lambda_api() -> String {
    serve_raw(|req, _| {
        let e: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let path = e["rawPath"].as_str().or(e["path"].as_str()).unwrap_or("").to_string();
        let last = path.rsplit('/').next().unwrap_or("");
        let out = match last {
            s if s.starts_with('s') && s[1..].parse::<u32>().is_ok() => {
                format!(r#"{{"statusCode": {}, "body": "interim?"}}"#, &s[1..])
            }
            "framing" => serde_json::json!({"statusCode": 200, "headers": {
                "Transfer-Encoding": "chunked", "Content-Length": "5", "Connection": "close, x-secret",
                "x-secret": "1", "Keep-Alive": "timeout=5", "Proxy-Connection": "keep-alive",
                "Upgrade": "h2c", "TE": "trailers", "x-ok": "yes"}, "body": "hello world"})
            .to_string(),
            "nocontent" => r#"{"statusCode": 204, "headers": {"content-length": "7"}, "body": "dropped"}"#.into(),
            "notmodified" => r#"{"statusCode": 304, "headers": {"etag": "\"v1\""}, "body": "dropped"}"#.into(),
            "merge" => serde_json::json!({"statusCode": 200,
                "headers": {"content-type": "text/plain", "x-a": "1", "x-b": "only"},
                "multiValueHeaders": {"content-type": ["application/json"], "x-a": ["1", "2"]},
                "body": "{}"})
            .to_string(),
            _ => serde_json::json!({"statusCode": 200, "headers": {"content-type": "application/json"}, "body": e.to_string()})
                .to_string(),
        };
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{out}", out.len())
            .into_bytes()
    })
}

fn lambda_gateway(invoke: &str, origin: &Origin) -> Gateway {
    let (invoke, url) = (invoke.to_string(), origin.url());
    Gateway::start(move |d, p| {
        format!(
            r#"{server}
[[vpc_links]]
name = "lnk"
targets = ["{target}"]
[[apis]]
name = "fn"
[apis.stages.prod]
[apis.integrations.v1]
type = "lambda"
function = "f"
endpoint = "{invoke}"
payload_format = "1.0"
[apis.integrations.v2]
type = "lambda"
function = "f"
endpoint = "{invoke}"
payload_format = "2.0"
[[apis.routes]]
route = "ANY /v1/{{proxy+}}"
integration = "v1"
[[apis.routes]]
route = "ANY /v2/{{proxy+}}"
integration = "v2"
[[apis.routes]]
route = "GET /http"
integration = {{ type = "http", uri = "{url}/http" }}
[[apis.routes]]
route = "GET /linked"
integration = {{ type = "vpc_link", link = "lnk" }}
[[apis.routes]]
route = "GET /tpl"
integration = {{ type = "mock", body = "{{{{ input.params.header['x-forwarded-for'] }}}}|{{{{ input.params.header['x-edgegate-principal-id'] }}}}|{{{{ input.params.header['x-real-ip'] }}}}" }}
"#,
            server = server_section(d, p, ""),
            target = url.trim_start_matches("http://"),
        )
    })
}

/// Reads two answers from one keep-alive connection: the first must leave it in sync.
fn two_on_one(addr: std::net::SocketAddr, first: &str, second: &str) -> (Response, Response) {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    w.write_all(format!("GET {first} HTTP/1.1\r\nHost: fn.test\r\n\r\n").as_bytes()).expect("write");
    let a = read_response(&mut r, false).expect("first answer");
    w.write_all(format!("GET {second} HTTP/1.1\r\nHost: fn.test\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("write");
    let b = read_response(&mut r, false).expect("second answer, in sync");
    (a, b)
}

/// Items 4 and 5: a function's status must be final (200–599); the gateway frames the answer
/// itself; 204/304 carry no body; `headers` and `multiValueHeaders` merge as AWS merges them.
#[test]
fn lambda_answers_are_framed_by_the_gateway() {
    let origin = Origin::start("o");
    let gw = lambda_gateway(&lambda_api(), &origin);
    let mut probes = 0;
    for v in ["v1", "v2"] {
        for code in [100, 101, 103, 199, 600, 999] {
            probes += 2;
            let (a, b) = two_on_one(gw.addr(), &format!("/prod/{v}/s{code}"), &format!("/prod/{v}/s201"));
            assert_eq!(a.status, 502, "{v}: statusCode {code}");
            assert_eq!(b.status, 201, "{v}: the connection stays in sync after {code}");
            let r = h2_request(gw.addr(), "GET", &format!("/prod/{v}/s{code}"), &[], None);
            assert_eq!(r.status, 502, "{v} h2: statusCode {code}");
        }
        probes += 2;
        let (a, b) = two_on_one(gw.addr(), &format!("/prod/{v}/framing"), &format!("/prod/{v}/s200"));
        assert_eq!((a.status, a.text().as_str()), (200, "hello world"));
        assert_eq!(a.header("content-length"), Some("11"), "{v}: the gateway's own length");
        for h in ["transfer-encoding", "x-secret", "keep-alive", "proxy-connection", "upgrade", "te"] {
            assert!(a.header(h).is_none(), "{v}: {h} must not reach the client");
        }
        assert_eq!(a.header("x-ok"), Some("yes"));
        assert_eq!(b.status, 200);
        let r = h2_request(gw.addr(), "GET", &format!("/prod/{v}/framing"), &[], None);
        assert_eq!((r.status, r.text().as_str(), r.header("upgrade")), (200, "hello world", None), "{v} h2");
        for (path, code) in [("nocontent", 204), ("notmodified", 304)] {
            probes += 2;
            let (a, b) = two_on_one(gw.addr(), &format!("/prod/{v}/{path}"), &format!("/prod/{v}/s202"));
            assert_eq!(a.status, code);
            assert!(a.body.is_empty() && a.header("content-length").is_none(), "{v} {code}: no body, no length of one");
            assert_eq!(b.status, 202, "{v}: in sync after {code}");
            let r = h2_request(gw.addr(), "GET", &format!("/prod/{v}/{path}"), &[], None);
            assert!(r.status == code && r.body.is_empty() && r.header("content-length").is_none(), "{v} h2 {code}");
        }
        probes += 1;
        let raw = format!("GET /prod/{v}/merge HTTP/1.1\r\nHost: fn.test\r\nConnection: close\r\n\r\n");
        let r = request(gw.addr(), raw.as_bytes());
        let all = |n: &str| {
            r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone()).collect::<Vec<_>>()
        };
        assert_eq!(all("content-type"), vec!["application/json"], "{v}: a single-valued field once");
        let mut xa = all("x-a");
        xa.sort();
        assert_eq!(xa, vec!["1", "2"], "{v}: a pair given in both appears once");
        assert_eq!(all("x-b"), vec!["only"]);
    }
    eprintln!("lambda answer probes: {probes}");
}

/// Item 4: an AWS service's interim (1xx) answers are skipped as a client skips them; a 1xx
/// or 101 with no final answer behind it is no answer: 502. (A 1xx once made the outbound
/// client panic.)
#[test]
fn aws_service_interim_answers_are_never_final() {
    let base = serve_raw(|req, _| {
        let b = String::from_utf8_lossy(&req.body).to_string();
        match b.as_str() {
            "continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: 5\r\n\r\n<ok/>".to_vec(),
            "only-interim" => b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            "switch" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n".to_vec(),
            "many" => b"HTTP/1.1 100 Continue\r\n\r\n".repeat(20),
            _ => b"HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: 5\r\n\r\n<ok/>".to_vec(),
        }
    });
    let gw = aws_gateway(&format!(
        "[[apis.routes]]\nroute = \"POST /q\"\nintegration = {{ type = \"aws\", service = \"sqs\", endpoint = \"{base}\", path = \"/\", timeout = \"2s\" }}\n"
    ));
    for (body, want) in [("continue", 200), ("only-interim", 502), ("switch", 502), ("many", 502), ("plain", 200)] {
        let raw = format!(
            "POST /prod/q HTTP/1.1\r\nHost: q\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let r = try_request(gw.addr(), raw.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}: {}", gw.stderr()));
        assert!(r.status == want || (want == 502 && r.status == 504), "{body}: {} {}", r.status, r.text());
        if want == 200 {
            assert_eq!(r.text(), "<ok/>");
        }
        let r = h2_request(gw.addr(), "POST", "/prod/q", &[], Some(body.as_bytes()));
        assert!(r.status == want || (want == 502 && r.status == 504), "h2 {body}: {}", r.status);
    }
    assert!(!gw.stderr().contains("panicked"), "{}", gw.stderr());
}

/// A gateway with AWS credentials in its environment and API `q` (stage `prod`) of `routes`.
fn aws_gateway(routes: &str) -> Gateway {
    Gateway::start_with_env(
        |d, p| format!("{}[[apis]]\nname = \"q\"\n[apis.stages.prod]\n{routes}", server_section(d, p, "")),
        &[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "sk")],
    )
}

/// Items 6 and 7: forwarding claims of an untrusted client and the gateway's reserved
/// `x-edgegate-` fields never reach an integration: Lambda events (1.0 and 2.0), http and
/// VPC-link targets, templates.
#[test]
fn clients_cannot_forge_forwarding_or_reserved_headers() {
    let origin = Origin::start("o");
    let gw = lambda_gateway(&lambda_api(), &origin);
    let forged = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-host", "evil.test"),
        ("x-forwarded-port", "1"),
        ("x-real-ip", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6;proto=https"),
        ("true-client-ip", "6.6.6.6"),
        ("x-edgegate-principal-id", "admin"),
        ("x-edgegate-authorizer-role", "root"),
        ("X-EdgeGate-Connection-Id", "abc"),
    ];
    let port = gw.addr().port().to_string();
    let mut probes = 0;
    let check_map = |what: &str, h: &serde_json::Value, multi: bool| {
        let get = |n: &str| -> Option<String> {
            let v = h
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone()))?;
            Some(if multi { v[0].as_str().unwrap_or("").to_string() } else { v.as_str().unwrap_or("").to_string() })
        };
        assert_eq!(get("x-forwarded-for").as_deref(), Some("127.0.0.1"), "{what}: {h}");
        assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"), "{what}");
        assert_eq!(get("x-forwarded-port").as_deref(), Some(port.as_str()), "{what}");
        assert_ne!(get("x-forwarded-host").as_deref(), Some("evil.test"), "{what}");
        for n in [
            "x-real-ip",
            "forwarded",
            "true-client-ip",
            "x-edgegate-principal-id",
            "x-edgegate-authorizer-role",
            "x-edgegate-connection-id",
        ] {
            assert!(get(n).is_none(), "{what}: {n} reached the function: {h}");
        }
        assert_eq!(get("x-kept").as_deref(), Some("yes"), "{what}");
    };
    let mut with_kept = forged.to_vec();
    with_kept.push(("x-kept", "yes"));
    for v in ["v1", "v2"] {
        probes += 2;
        let r = get(gw.addr(), &format!("/prod/{v}/echo"), &with_kept);
        let e: serde_json::Value = serde_json::from_str(&r.text()).expect("event");
        check_map(&format!("{v} headers"), &e["headers"], false);
        if v == "v1" {
            check_map("v1 multiValueHeaders", &e["multiValueHeaders"], true);
        }
        let r = h2_request(gw.addr(), "GET", &format!("/prod/{v}/echo"), &with_kept, None);
        let e: serde_json::Value = serde_json::from_str(&r.text()).expect("event");
        check_map(&format!("{v} h2 headers"), &e["headers"], false);
    }
    for path in ["/prod/http", "/prod/linked"] {
        probes += 2;
        let n = origin.count();
        assert_eq!(get(gw.addr(), path, &with_kept).status, 200);
        assert_eq!(h2_request(gw.addr(), "GET", path, &with_kept, None).status, 200);
        for seen in &origin.requests()[n..] {
            assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{path}");
            for (k, _) in &forged[3..] {
                if *k != "x-forwarded-port" {
                    assert!(seen.header(k).is_none(), "{path}: {k} reached the target");
                }
            }
            assert_eq!(seen.header("x-forwarded-port"), Some(port.as_str()));
        }
    }
    probes += 1;
    let r = get(gw.addr(), "/prod/tpl", &with_kept);
    assert_eq!(r.text(), "127.0.0.1||", "templates see what integrations see");
    eprintln!("forwarding probes: {probes}");
}

// ------------------------------------------------------------------ edge loops

/// Item 8: an edge node whose origin leads back to itself answers 508 at once, without
/// retrying; `check` refuses an origin that is one of the node's own listeners.
#[test]
fn edge_forwarding_loops_end_with_508() {
    // a TCP relay to the gateway itself: not the node's listener by address, so only the
    // request's Via can tell
    let relay = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let relay_addr = relay.local_addr().expect("addr");
    let target: Arc<Mutex<Option<std::net::SocketAddr>>> = Arc::default();
    let requests = Arc::new(AtomicUsize::new(0));
    let (t2, r2) = (target.clone(), requests.clone());
    std::thread::spawn(move || {
        for c in relay.incoming().flatten() {
            let Some(to) = *t2.lock().expect("lock") else { continue };
            let Ok(up) = TcpStream::connect(to) else { continue };
            let r3 = r2.clone();
            let (mut c2, mut up2) = (c.try_clone().expect("clone"), up.try_clone().expect("clone"));
            std::thread::spawn(move || {
                let mut first = [0u8; 1];
                let mut c = c;
                if std::io::Read::read(&mut c, &mut first).unwrap_or(0) == 1 {
                    r3.fetch_add(1, Ordering::SeqCst);
                    let mut up = up;
                    let _ = up.write_all(&first);
                    let _ = std::io::copy(&mut c, &mut up);
                }
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up2, &mut c2);
            });
        }
    });
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[edge]
origins = ["http://{relay_addr}"]
[[apis]]
name = "e"
endpoint = "edge"
[apis.stages.prod]
[[apis.routes]]
route = "GET /x"
integration = {{ type = "mock", body = "regional" }}
"#,
            server = server_section(d, p, "")
        )
    });
    *target.lock().expect("lock") = Some(gw.addr());
    let started = std::time::Instant::now();
    let r = get(gw.addr(), "/prod/x", &[]);
    assert_eq!(r.status, 508, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(3), "answered at once: {:?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one hop back, no retry");
    let r = h2_request(gw.addr(), "GET", "/prod/x", &[], None);
    assert_eq!(r.status, 508);
    // the static case: an origin that is the node's own listener
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("loop.toml");
    std::fs::write(&cfg, "[server]\nlisten = [\"0.0.0.0:18080\"]\n[edge]\norigins = [\"http://127.0.0.1:18080\"]\n")
        .expect("write");
    let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&cfg).output().expect("check");
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("own listener"), "{text}");
}

/// Item 14: a client value in an AWS service form template is form-encoded by default, so it
/// can never add a parameter; `| urlencode` gives the same bytes, never encoded twice.
#[test]
fn aws_form_templates_escape_client_values() {
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let b2 = bodies.clone();
    let base = serve_raw(move |req, _| {
        b2.lock().expect("lock").push(String::from_utf8_lossy(&req.body).to_string());
        b"HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: 5\r\n\r\n<ok/>".to_vec()
    });
    let tpl = |name: &str, filter: &str| {
        format!(
            "[[apis.routes]]\nroute = \"POST /{name}\"\nintegration = {{ type = \"aws\", service = \"sqs\", endpoint = \"{base}\", path = \"/\", request_template = \"Action=SendMessage&MessageBody={{{{ input.params.querystring.msg{filter} }}}}\" }}\n"
        )
    };
    let gw = aws_gateway(&(tpl("plain", "") + &tpl("filtered", " | urlencode")));
    for path in ["/prod/plain", "/prod/filtered"] {
        let r = send(gw.addr(), "POST", &format!("{path}?msg=hi%26Action%3DDeleteQueue"), &[], b"");
        assert_eq!(r.status, 200, "{path}");
        let r = h2_request(gw.addr(), "POST", &format!("{path}?msg=hi%26Action%3DDeleteQueue"), &[], None);
        assert_eq!(r.status, 200, "{path} h2");
    }
    for body in bodies.lock().expect("lock").iter() {
        assert_eq!(body, "Action=SendMessage&MessageBody=hi%26Action%3DDeleteQueue", "one Action, one MessageBody");
    }
    assert_eq!(bodies.lock().expect("lock").len(), 4);
}

/// Items 6 and 7 for request authorizers: the event an authorizer decides on carries what
/// integrations are told, not what the client claimed.
#[test]
fn authorizers_see_what_integrations_see() {
    let events: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let e2 = events.clone();
    let auth = serve(move |_, body| {
        let ev: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        e2.lock().expect("lock").push(ev);
        (200, "{\"isAuthorized\": true}".into())
    });
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
{tok}[[apis]]
name = "a"
[apis.stages.prod]
[[apis.routes]]
route = "GET /x"
integration = {{ type = "http", uri = "{url}/x" }}
authorizer = "tok"
"#,
            server = server_section(d, p, ""),
            tok = token_authorizer_section("tok", &format!("{}/authorize", auth.base), "0s")
        )
    });
    let forged = [
        ("x-token", "t"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
        ("x-edgegate-principal-id", "admin"),
    ];
    assert_eq!(get(gw.addr(), "/prod/x", &forged).status, 200);
    assert_eq!(h2_request(gw.addr(), "GET", "/prod/x", &forged, None).status, 200);
    let events = events.lock().expect("lock");
    assert_eq!(events.len(), 2);
    for ev in events.iter() {
        let h = &ev["headers"];
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");
        assert!(h.get("x-real-ip").is_none() && h.get("x-edgegate-principal-id").is_none(), "{h}");
        assert_eq!(h["x-token"], "t");
    }
}
