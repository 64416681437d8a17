//! http and mock integrations: proxying, headers, timeouts, failures, retries, canary,
//! gateway responses and body limits.

use crate::common::*;
use std::io::{Read, Write};

fn http_api(dir: &std::path::Path, p: &Ports, uri: &str, extra_integration: &str, server_extra: &str) -> String {
    format!(
        r#"{server}
[[apis]]
name = "api"
[apis.stages.prod]
variables = {{ backend = "{uri}" }}
[apis.integrations.up]
type = "http"
uri = "${{stageVariables.backend}}"
{extra_integration}
[[apis.routes]]
route = "ANY /{{proxy+}}"
integration = "up"
[[apis.routes]]
route = "GET /explicit/{{id}}/{{rest+}}"
integration = {{ type = "http", uri = "{uri}/v9/things/{{id}}/{{rest}}?fixed=1" }}
"#,
        server = server_section(dir, p, server_extra)
    )
}

#[test]
fn http_proxy_forwards_path_query_body_and_headers() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &format!("{}/base", origin.url()), "", ""));
    let r = send(
        gw.addr(),
        "POST",
        "/prod/pets/1?a=1&b=two",
        &[("X-Request-Id", "caller-id-1"), ("X-Forwarded-For", "6.6.6.6"), ("Content-Type", "text/plain")],
        b"hello body",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-origin"), Some("o"));
    assert_eq!(r.header("x-request-id"), Some("caller-id-1"));
    let seen = origin.requests().pop().expect("origin saw the request");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/base/pets/1?a=1&b=two");
    assert_eq!(seen.body, b"hello body");
    assert_eq!(seen.header("host"), Some(origin.addr.to_string().as_str()));
    assert_eq!(seen.header("x-request-id"), Some("caller-id-1"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "an untrusted client's XFF is replaced");
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("localhost"));

    // a malformed caller id is replaced by a generated one, on both sides
    let r = get(gw.addr(), "/prod/x", &[("X-Request-Id", "bad id <script>")]);
    let id = r.header("x-request-id").expect("id").to_string();
    assert!(id.len() >= 32 && !id.contains(' '), "{id}");
    assert_eq!(origin.requests().pop().expect("seen").header("x-request-id"), Some(id.as_str()));

    // explicit uri with {param} substitution and its own query
    let r = gw.get("/prod/explicit/42/a/b?c=3");
    assert_eq!(r.json()["target"], "/base/v9/things/42/a/b?fixed=1&c=3");
}

#[test]
fn trusted_proxies_may_extend_x_forwarded_for() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &origin.url(), "", "trusted_proxies = [\"127.0.0.0/8\"]"));
    let r = get(gw.addr(), "/prod/x", &[("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https")]);
    assert_eq!(r.status, 200);
    let seen = origin.requests().pop().expect("seen");
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    let line = gw.wait_log("\"path\":\"/prod/x\"");
    assert!(line.contains("\"ip\":\"203.0.113.9\""), "the log shows the client behind the proxy: {line}");
}

#[test]
fn slow_integration_times_out_with_504() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &origin.url(), "timeout = \"300ms\"", ""));
    let t = std::time::Instant::now();
    let r = gw.get("/prod/slow/3000");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["message"], "Endpoint request timed out");
    assert!(t.elapsed() < std::time::Duration::from_millis(2500), "answered at the timeout, not after the origin");
    assert!(r.header("x-request-id").is_some());
    let line = gw.wait_log("INTEGRATION_TIMEOUT");
    assert!(line.contains("\"status\":504"), "{line}");
    // a fast request on the same integration still works
    assert_eq!(gw.get("/prod/slow/10").status, 200);
}

#[test]
fn the_default_timeout_is_the_ceiling() {
    // max_integration_timeout applies when an integration sets none
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &origin.url(), "", "max_integration_timeout = \"400ms\""));
    assert_eq!(gw.get("/prod/slow/2000").status, 504);
}

#[test]
fn unreachable_origin_is_502() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(|d, p| http_api(d, p, &dead, "", ""));
    let r = gw.get("/prod/anything");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["message"], "Bad Gateway");
    gw.wait_log("INTEGRATION_FAILURE");
}

#[test]
fn idempotent_requests_are_retried_others_are_not() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &origin.url(), "retries = 1", ""));
    let r = gw.get("/prod/drop-first/a");
    assert_eq!(r.status, 200, "GET retried after the origin dropped the connection: {}", r.text());
    assert_eq!(origin.requests().iter().filter(|s| s.target == "/drop-first/a").count(), 2);

    let origin2 = Origin::start("o2");
    let gw2 = Gateway::start(|d, p| http_api(d, p, &origin2.url(), "retries = 1", ""));
    let r = send(gw2.addr(), "POST", "/prod/drop-first/b", &[], b"x");
    assert_eq!(r.status, 502, "POST is not retried: {}", r.text());
    assert_eq!(origin2.count(), 1);
}

#[test]
fn streamed_responses_pass_through_unbuffered() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &origin.url(), "", ""));
    let mut s = std::net::TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
    s.write_all(b"GET /prod/sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let t = std::time::Instant::now();
    let mut buf = vec![0; 4096];
    let mut got = String::new();
    while !got.contains("event 0") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(t.elapsed() < std::time::Duration::from_millis(350), "the first event arrives before the stream ends");
    assert!(!got.contains("event 2"));
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.contains("event 2"), "{rest}");
}

#[test]
fn oversized_bodies_get_413() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &origin.url(), "", "max_body = \"1KiB\""));
    let r = send(gw.addr(), "POST", "/prod/upload", &[], &[b'a'; 2048]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["message"], "Request Too Long");
    // chunked, no length announced: counted as it streams
    let mut raw =
        b"POST /prod/upload2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        raw.extend_from_slice(b"200\r\n");
        raw.extend_from_slice(&[b'b'; 512]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = request(gw.addr(), &raw);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(!origin
        .requests()
        .iter()
        .any(|s| s.target == "/upload" || (s.target == "/upload2" && s.body.len() > 1024)));
    assert_eq!(send(gw.addr(), "POST", "/prod/small", &[], &[b'c'; 1000]).status, 200);
}

#[test]
fn mock_integrations_render_templates_and_canary_variables() {
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "m"
[apis.stages.prod]
variables = {{ color = "blue" }}
[apis.stages.beta]
variables = {{ color = "blue" }}
canary = {{ percent = 100, variables = {{ color = "green" }} }}
[apis.integrations.hello]
type = "mock"
status = 201
headers = {{ "content-type" = "application/json", "x-mock" = "yes" }}
body = '{{"color": "{{{{ stageVariables.color }}}}", "stage": "{{{{ context.stage }}}}", "id": "{{{{ context.requestId }}}}", "q": "{{{{ input.params.querystring.q }}}}", "ip": "{{{{ context.identity.sourceIp }}}}"}}'
[[apis.routes]]
route = "GET /hello"
integration = "hello"
[apis.gateway_responses.NOT_FOUND]
status = 410
headers = {{ "x-custom" = "1" }}
body = '{{"gone": "{{{{ context.requestId }}}}", "type": "{{{{ context.error.responseType }}}}"}}'
"#,
            server = server_section(d, p, "")
        )
    });
    let r = get(gw.addr(), "/prod/hello?q=a%20b", &[("X-Request-Id", "rid-7")]);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-mock"), Some("yes"));
    let j = r.json();
    assert_eq!(
        (j["color"].as_str(), j["stage"].as_str(), j["id"].as_str()),
        (Some("blue"), Some("prod"), Some("rid-7"))
    );
    assert_eq!((j["q"].as_str(), j["ip"].as_str()), (Some("a b"), Some("127.0.0.1")));
    let beta = gw.get("/beta/hello");
    assert_eq!(
        beta.json()["color"],
        "green",
        "a 100% canary always sees its variables: {} {}",
        beta.status,
        beta.text()
    );

    let r = get(gw.addr(), "/prod/nope", &[("X-Request-Id", "rid-8")]);
    assert_eq!(r.status, 410);
    assert_eq!(r.header("x-custom"), Some("1"));
    assert_eq!(r.json()["gone"], "rid-8");
    assert_eq!(r.json()["type"], "NOT_FOUND");
}

#[test]
fn canary_share_is_respected() {
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "m"
[apis.stages.prod]
variables = {{ v = "main" }}
canary = {{ percent = 30, variables = {{ v = "canary" }} }}
[[apis.routes]]
route = "GET /v"
integration = {{ type = "mock", body = "{{{{ stageVariables.v }}}}" }}
"#,
            server = server_section(d, p, "")
        )
    });
    let n = 400;
    let canary = (0..n).filter(|_| gw.get("/prod/v").text() == "canary").count();
    // 30% of 400 = 120; binomial sd ~ 9.2, so 60..180 is far outside chance
    assert!((60..=180).contains(&canary), "canary served {canary} of {n}");
}

#[test]
fn upstream_connections_are_kept_alive() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &origin.url(), "", ""));
    for i in 0..30 {
        assert_eq!(gw.get(&format!("/prod/k/{i}")).status, 200);
    }
    let conns = origin.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(conns <= 4, "30 sequential requests opened {conns} upstream connections");
}

#[test]
fn private_apis_answer_only_on_private_listeners() {
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "internal"
endpoint = "private"
base_path = "/internal"
[apis.stages.prod]
[[apis.routes]]
route = "GET /ping"
integration = {{ type = "mock", body = "private pong" }}

[[apis]]
name = "public"
[apis.stages.prod]
[[apis.routes]]
route = "GET /ping"
integration = {{ type = "mock", body = "public pong" }}
"#,
            server = server_section(d, p, &format!("private_listen = [\"127.0.0.1:{}\"]", p.private))
        )
    });
    assert_eq!(gw.get("/prod/internal/ping").status, 404, "as if absent on the public listener");
    assert_eq!(get(gw.private_addr(), "/prod/internal/ping", &[]).text(), "private pong");
    assert_eq!(gw.get("/prod/ping").text(), "public pong");
}

/// Idle upstream connections: reused across requests, and closed by the gateway within about
/// a second once the origin ends one (no task watches an idle connection; the pool's sweep
/// finds it). A request after that opens a new connection and is answered.
#[test]
fn idle_origin_connections_are_reused_and_closed_once_the_origin_ends_them() {
    use std::net::{Shutdown, TcpListener};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let end = Arc::new(AtomicBool::new(false));
    // per connection: how long the gateway took to close its end after the origin's FIN
    let closed_after: Arc<Mutex<Vec<Option<Duration>>>> = Arc::default();
    {
        let (accepted, end, closed_after) = (accepted.clone(), end.clone(), closed_after.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (end, closed_after) = (end.clone(), closed_after.clone());
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        if end.load(Ordering::SeqCst) && buf.is_empty() {
                            let _ = conn.shutdown(Shutdown::Write);
                            let at = Instant::now();
                            conn.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                            let closed = matches!(conn.read(&mut chunk), Ok(0));
                            closed_after.lock().expect("lock").push(closed.then(|| at.elapsed()));
                            return;
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => return,
                        }
                        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            buf.clear();
                            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").expect("answer");
                        }
                    }
                });
            }
        });
    }
    let gw = Gateway::start(|d, p| http_api(d, p, &url, "", ""));
    for i in 0..8 {
        let r = gw.get(&format!("/prod/n/{i}"));
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    let first = accepted.load(Ordering::SeqCst);
    assert!((1..=2).contains(&first), "8 sequential requests over {first} origin connections (one pool per core)");

    end.store(true, Ordering::SeqCst);
    eventually("the origin's connections ended", || closed_after.lock().expect("lock").len() == first);
    for c in closed_after.lock().expect("lock").iter() {
        let took = c.expect("the gateway closed an idle connection its origin ended");
        assert!(took < Duration::from_millis(2500), "closed {took:?} after the origin's FIN");
    }
    end.store(false, Ordering::SeqCst);
    let r = gw.get("/prod/after");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "a new connection after the pool let the old go");
    assert_eq!(accepted.load(Ordering::SeqCst), first + 1);
}

/// The hop-by-hop fields of a request never reach the origin, whichever of them comes, alone
/// (each is looked for before any is removed), in any case, repeated, over HTTP/1.1 and
/// HTTP/2 (a body without Content-Length); the other fields do.
#[test]
fn request_hop_by_hop_fields_never_reach_the_origin() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| http_api(d, p, &origin.url(), "", ""));
    let hop = [
        ("Keep-Alive", "timeout=5"),
        ("PROXY-CONNECTION", "keep-alive"),
        ("Te", "trailers"),
        ("Trailer", "x-sum"),
        ("Proxy-Authorization", "Basic eDp5"),
        ("Proxy-Authenticate", "Basic"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    ];
    for (name, value) in hop {
        let raw =
            format!("GET /prod/one HTTP/1.1\r\nHost: a\r\n{name}: {value}\r\nX-Ok: 1\r\nConnection: close\r\n\r\n");
        assert_eq!(request(gw.addr(), raw.as_bytes()).status, 200, "{name}");
        let seen = origin.requests().pop().expect("seen");
        assert_eq!(seen.header(&name.to_ascii_lowercase()), None, "{name} reached the origin");
        assert_eq!(seen.header("x-ok"), Some("1"));
    }
    // all of them at once, each twice
    let mut raw = String::from("GET /prod/all HTTP/1.1\r\nHost: a\r\n");
    for (name, value) in hop.iter().chain(hop.iter()) {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("X-Ok: 2\r\nConnection: close\r\n\r\n");
    assert_eq!(request(gw.addr(), raw.as_bytes()).status, 200);
    let seen = origin.requests().pop().expect("seen");
    for (name, _) in hop {
        assert!(
            !seen.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)),
            "{name} reached the origin: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header("x-ok"), Some("2"));
    // HTTP/2 refuses connection-specific fields itself; what it allows goes the same way
    let r = h2_request(
        gw.addr(),
        "POST",
        "/prod/h2",
        &[("te", "trailers"), ("proxy-authorization", "Basic eDp5"), ("x-ok", "3")],
        Some(b"body"),
    );
    assert_eq!(r.status, 200);
    let seen = origin.requests().pop().expect("seen");
    assert_eq!((seen.header("te"), seen.header("proxy-authorization")), (None, None), "{:?}", seen.headers);
    assert_eq!((seen.header("x-ok"), seen.body.as_slice()), (Some("3"), &b"body"[..]));
}
