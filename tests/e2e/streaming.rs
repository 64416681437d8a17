//! Plain passthrough on http APIs: WebSocket upgrades proxied byte for byte (python
//! `websockets` on both ends), and streamed answers (SSE, chunked) forwarded as they come.

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn api(d: &std::path::Path, p: &Ports, origin: &str) -> String {
    format!(
        "{}[[apis]]\nname = \"s\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"ANY /{{proxy+}}\"\n\
         integration = {{ type = \"http\", uri = \"{origin}\" }}\n",
        server_section(d, p, "watch = false")
    )
}

fn python_with_websockets() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("target/peers/bin/python3"), "python3".into()].into_iter().find(|p| {
        std::process::Command::new(p).args(["-c", "import websockets"]).output().is_ok_and(|o| o.status.success())
    })
}

#[test]
fn websocket_upgrades_pass_through_unchanged() {
    let Some(python) = python_with_websockets() else {
        assert!(std::env::var_os("EDGEGATE_REQUIRE_PEERS").is_none(), "python websockets is not installed");
        eprintln!("skipped: python websockets is not installed (./dev test installs it)");
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ws_passthrough.py");
    let dir = tempfile::tempdir().expect("dir");
    let closefile = dir.path().join("close");
    let port = free_port();
    let mut server = std::process::Command::new(&python)
        .arg(&script)
        .args(["serve", &port.to_string()])
        .arg(&closefile)
        .spawn()
        .expect("origin");
    eventually("the websockets origin", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    let gw = Gateway::start(|d, p| api(d, p, &format!("http://127.0.0.1:{port}")));
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("client")
        .arg(format!("ws://{}/prod/echo", gw.addr()))
        .arg(&closefile)
        .output()
        .expect("client");
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), gw.stderr());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["text"], serde_json::json!(["str", "héllo"]), "text stays text: {v}");
    assert_eq!(v["binary"], serde_json::json!(["bytes", "00ff62696e"]), "binary stays binary: {v}");
    assert_eq!(v["fragmented"], "fragmented", "{v}");
    assert_eq!(v["big"], true, "1 MiB round trip: {v}");
    assert!(v["pong_ms"].as_f64().is_some(), "ping answered: {v}");
    assert_eq!(v["origin_close"], 4001, "the client's close code reached the origin: {v}");
    assert_eq!(v["client_close"], 4001, "and its echo came back: {v}");
}

/// An origin that sends a response head, then one event per `go` signal, each timestamped
/// when written.
fn stepping_origin(
    head: &'static str,
    chunks: Vec<&'static [u8]>,
) -> (String, mpsc::Sender<()>, mpsc::Receiver<Instant>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (sent_tx, sent_rx) = mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let mut w = s;
        w.write_all(head.as_bytes()).expect("head");
        for c in chunks {
            if go_rx.recv().is_err() {
                return;
            }
            w.write_all(c).expect("chunk");
            w.flush().expect("flush");
            let _ = sent_tx.send(Instant::now());
        }
        let _ = go_rx.recv();
    });
    (url, go_tx, sent_rx)
}

fn first_arrival_delay(head: &'static str, chunks: Vec<&'static [u8]>, marker: &str) -> Vec<Duration> {
    let n = chunks.len();
    let (url, go, sent) = stepping_origin(head, chunks);
    let gw = Gateway::start(|d, p| api(d, p, &url));
    let mut s = TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(b"GET /prod/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut got = String::new();
    let mut buf = vec![0; 4096];
    let mut delays = vec![];
    for i in 0..n {
        go.send(()).expect("go");
        let at = sent.recv_timeout(Duration::from_secs(5)).expect("sent");
        let want = format!("{marker}{i}");
        while !got.contains(&want) {
            let k = s.read(&mut buf).expect("read");
            assert!(k > 0, "closed early: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..k]));
        }
        delays.push(at.elapsed());
    }
    drop(go);
    delays
}

#[test]
fn sse_and_chunked_events_arrive_as_the_origin_sends_them() {
    let sse = first_arrival_delay(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n",
        vec![b"data: event-0\n\n", b"data: event-1\n\n", b"data: event-2\n\n"],
        "event-",
    );
    let chunked = first_arrival_delay(
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n",
        vec![b"8\r\n{\"c\":0}\n\r\n", b"8\r\n{\"c\":1}\n\r\n", b"8\r\n{\"c\":2}\n\r\n0\r\n\r\n"],
        "{\"c\":",
    );
    for (what, d) in [("sse", &sse), ("chunked", &chunked)] {
        // each event before the next is even sent: nothing waits for a buffer to fill
        assert!(d.iter().all(|x| *x < Duration::from_millis(50)), "{what}: {d:?}");
    }
}

/// A client that sends a request without a body and goes away before the answer: the gateway
/// sees the close while it waits for the origin and gives up the upstream exchange (the origin
/// sees its connection end) instead of holding it until the 29 s integration timeout. The
/// same for a request with a body, which takes the other relay, and over HTTP/2 (h2c), with
/// and without a body (no content-length).
#[test]
fn a_client_that_leaves_ends_the_upstream_exchange() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin = format!("http://{}", l.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel::<(String, Duration)>();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s);
                let Some(req) = read_request(&mut r) else { return };
                // never answer; time how long the gateway keeps the connection open
                let start = Instant::now();
                let mut rest = Vec::new();
                let _ = r.get_mut().set_read_timeout(Some(Duration::from_secs(20)));
                let _ = r.read_to_end(&mut rest);
                let _ = tx.send((req.target, start.elapsed()));
            });
        }
    });
    let gw = Gateway::start(|d, p| api(d, p, &origin));
    let check = |path: &str| {
        let (target, held) = rx.recv_timeout(Duration::from_secs(25)).expect("the origin saw the request end");
        assert_eq!(target, path, "the origin got the request");
        assert!(
            held < Duration::from_secs(5),
            "{path}: the upstream connection stayed open {held:?} after the client left"
        );
    };
    for (path, raw) in [
        ("/slow", "GET /prod/slow HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("/slow-post", "POST /prod/slow-post HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"),
    ] {
        let mut c = TcpStream::connect(gw.addr()).expect("connect");
        c.write_all(raw.as_bytes()).expect("send");
        // wait until the origin has the request, then leave
        std::thread::sleep(Duration::from_millis(300));
        drop(c);
        check(path);
    }
    for (path, body) in [("/slow-h2", None), ("/slow-h2-post", Some(&b"abc"[..]))] {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(gw.addr()).await.expect("connect");
            let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
            let conn = tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut client = client.ready().await.expect("ready");
            let req = http::Request::builder()
                .method(if body.is_some() { "POST" } else { "GET" })
                .uri(format!("http://localhost/prod{path}"))
                .body(())
                .expect("request");
            let (_answer, mut send) = client.send_request(req, body.is_none()).expect("send");
            if let Some(b) = body {
                send.send_data(bytes::Bytes::from_static(b), true).expect("data");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            // leave: the connection goes with its task
            conn.abort();
        });
        drop(rt);
        check(path);
    }
}
