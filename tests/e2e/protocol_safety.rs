//! Request framing attacks that a gateway on Pingora must be re-tested against: conflicting
//! Content-Length / Transfer-Encoding, duplicate Transfer-Encoding, HTTP/1.0 with chunked
//! framing, and bytes sent behind an Upgrade request the origin did not accept. Each gets
//! a 400 or a closed connection, and the origin never sees a second request.

use crate::common::*;
use std::io::{BufReader, Write};
use std::time::Duration;

fn start(origin: &Origin) -> Gateway {
    let url = origin.url();
    Gateway::start(move |d, p| {
        format!(
            r#"{server}
[[apis]]
name = "p"
[apis.stages.prod]
[[apis.routes]]
route = "ANY /{{proxy+}}"
integration = {{ type = "http", uri = "{url}" }}
"#,
            server = server_section(d, p, "")
        )
    })
}

/// Sends raw bytes and reads every response until the connection closes or goes quiet.
fn exchange(gw: &Gateway, raw: &[u8]) -> Vec<u16> {
    let s = std::net::TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let _ = w.write_all(raw);
    let mut r = BufReader::new(s);
    let mut statuses = vec![];
    while let Ok(resp) = read_response(&mut r, false) {
        statuses.push(resp.status);
        if statuses.len() > 3 {
            break;
        }
    }
    statuses
}

fn assert_refused(gw: &Gateway, origin: &Origin, name: &str, raw: &[u8]) {
    let statuses = exchange(gw, raw);
    std::thread::sleep(Duration::from_millis(200));
    let seen: Vec<String> = origin.requests().iter().map(|s| s.target.clone()).collect();
    assert!(!seen.iter().any(|t| t.contains("smuggled")), "{name}: the origin saw a smuggled request: {seen:?}");
    assert!(statuses.iter().all(|s| *s == 400), "{name}: expected 400 or a closed connection, got {statuses:?}");
}

#[test]
fn conflicting_framing_is_refused() {
    let origin = Origin::start("o");
    let gw = start(&origin);
    assert_refused(
        &gw,
        &origin,
        "CL+TE",
        b"POST /prod/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_refused(
        &gw,
        &origin,
        "two Content-Lengths",
        b"POST /prod/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_refused(
        &gw,
        &origin,
        "duplicate Transfer-Encoding",
        b"POST /prod/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_refused(
        &gw,
        &origin,
        "TE not ending in chunked",
        b"POST /prod/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_refused(
        &gw,
        &origin,
        "HTTP/1.0 with chunked",
        b"POST /prod/a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    // the gateway still works afterwards
    assert_eq!(gw.get("/prod/fine").status, 200);
}

#[test]
fn bytes_after_a_refused_upgrade_are_not_a_request() {
    let origin = Origin::start("o");
    let gw = start(&origin);
    let statuses = exchange(
        &gw,
        b"GET /prod/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nGET /prod/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    std::thread::sleep(Duration::from_millis(200));
    let seen: Vec<String> = origin.requests().iter().map(|s| s.target.clone()).collect();
    assert!(!seen.iter().any(|t| t.contains("smuggled")), "origin saw: {seen:?}");
    assert!(statuses.len() <= 1, "at most the upgrade request itself is answered: {statuses:?}");
}
