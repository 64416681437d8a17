//! Test harness: the real `edgegate` binary on free loopback ports, a recording origin
//! server, and raw HTTP/1.1 clients (plain and TLS) that show exactly what went over the wire.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_edgegate");

/// A free loopback port for a listener the gateway binds later. Taken below the kernel's
/// ephemeral range (32768+), so the many client connections of parallel tests cannot be
/// given it as their source port in between; one counter per test process, so parallel
/// tests never pick the same one.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = 20_000 + (std::process::id() as usize % 500) * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (base + n % 2_700) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Ports {
    pub listen: u16,
    pub admin: u16,
    pub tls: u16,
    pub private: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports { listen: free_port(), admin: free_port(), tls: free_port(), private: free_port() }
    }
}

/// A running gateway; killed on drop.
pub struct Gateway {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub ports: Ports,
    pub config: PathBuf,
}

/// The `[server]` section every test config starts with.
pub fn server_section(dir: &Path, p: &Ports, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:{}\"]\nadmin_listen = \"127.0.0.1:{}\"\nthreads = 2\ngrace_period = \"1s\"\n\
         upgrade_sock = \"{d}/upgrade.sock\"\npid_file = \"{d}/edgegate.pid\"\naccess_log = \"{d}/access.log\"\n{extra}\n",
        p.listen,
        p.admin,
        d = dir.display()
    )
}

impl Gateway {
    /// Writes the config made by `make(dir, ports)` and starts the gateway on it.
    pub fn start(make: impl FnOnce(&Path, &Ports) -> String) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = Ports::new();
        let config = dir.path().join("edgegate.toml");
        std::fs::write(&config, make(dir.path(), &ports)).expect("write config");
        let mut gw = Gateway { child: None, dir, ports, config };
        gw.child = Some(gw.spawn(&[]));
        gw.wait_ready();
        gw
    }

    pub fn spawn(&self, extra: &[&str]) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .expect("log");
        Command::new(BIN)
            .arg("-c")
            .arg(&self.config)
            .args(extra)
            .env("EDGEGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn edgegate")
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = try_request(self.admin(), b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway not ready; stderr:\n{}", self.stderr());
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.listen))
    }
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.admin))
    }
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.tls))
    }
    pub fn private_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.private))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Polls the access log until a line contains `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.access_log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no access-log line with {needle:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr(), path, &[])
    }

    pub fn metrics(&self) -> String {
        get(self.admin(), "/metrics", &[]).text()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("child").id();
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill").success();
        assert!(ok, "kill -{sig} {pid}");
    }

    pub fn write_config(&self, text: &str) {
        // write-then-rename, as editors and config management do
        let tmp = self.dir.path().join(".edgegate.toml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `f` holds, or panics with `what` after 10 s.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

// ------------------------------------------------------------------ HTTP/1.1 wire helpers

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Reads header lines up to the blank line.
fn read_headers<R: BufRead>(r: &mut R) -> std::io::Result<Vec<(String, String)>> {
    let mut headers = vec![];
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed inside the header"));
        }
        let l = l.trim_end();
        if l.is_empty() {
            return Ok(headers);
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// Reads a chunked body to its last chunk.
fn read_chunked<R: BufRead>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut body = vec![];
    loop {
        let mut size = String::new();
        if r.read_line(&mut size)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed inside a chunked body"));
        }
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        let mut buf = vec![0; n + 2];
        r.read_exact(&mut buf)?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&buf[..n]);
    }
}

// ------------------------------------------------------------------ client

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Reads one HTTP/1.x response (content-length, chunked, or to EOF).
pub fn read_response<R: BufRead>(r: &mut R, head_only: bool) -> std::io::Result<Response> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed before a response"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad status line {line:?}")))?;
    let headers = read_headers(r)?;
    let mut resp = Response { status, headers, body: vec![] };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    if resp.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        resp.body = read_chunked(r)?;
    } else if let Some(n) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut buf = vec![0; n];
        r.read_exact(&mut buf)?;
        resp.body = buf;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

pub fn try_request(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(40)))?;
    let mut w = s.try_clone()?;
    w.write_all(raw)?;
    let head = raw.starts_with(b"HEAD ");
    read_response(&mut BufReader::new(s), head)
}

pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    try_request(addr, raw).unwrap_or_else(|e| panic!("request to {addr} failed: {e}"))
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    send(addr, "GET", path, headers, b"")
}

pub fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut raw = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        raw.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("Connection: close\r\n\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    request(addr, &bytes)
}

// ------------------------------------------------------------------ origin

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// A recording HTTP/1.1 origin on a loopback port. Behaviour by path:
/// `/slow/{ms}/...` waits before answering, `/status/{code}` answers that code,
/// `/drop-first/...` closes the first connection that asks without answering,
/// `/sse` streams three events, anything else echoes the request as JSON (with `seq`, the
/// number of requests seen so far).
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    pub name: String,
}

impl Origin {
    pub fn start(name: &str) -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = l.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(vec![]));
        let connections = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (s2, c2, n2) = (seen.clone(), connections.clone(), name.to_string());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                c2.fetch_add(1, Ordering::SeqCst);
                let (s3, n3, d3) = (s2.clone(), n2.clone(), dropped.clone());
                std::thread::spawn(move || serve_origin(conn, s3, &n3, d3));
            }
        });
        Origin { addr, seen, connections, name: name.to_string() }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

fn serve_origin(conn: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, name: &str, dropped: Arc<AtomicUsize>) {
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, target) = (method.to_string(), target.to_string());
        let Ok(headers) = read_headers(&mut r) else { return };
        let h = |n: &str| header_in(&headers, n).map(str::to_string);
        let mut body = vec![];
        if h("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let Ok(b) = read_chunked(&mut r) else { return };
            body = b;
        } else if let Some(n) = h("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0; n];
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        let rec = Seen { method: method.clone(), target: target.clone(), headers: headers.clone(), body: body.clone() };
        seen.lock().expect("lock").push(rec);
        let path = target.split('?').next().unwrap_or("").to_string();
        let segs: Vec<&str> = path.split('/').collect();
        let mut status = 200;
        if segs.get(1) == Some(&"slow") {
            let ms: u64 = segs.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
            std::thread::sleep(Duration::from_millis(ms));
        }
        if segs.get(1) == Some(&"status") {
            status = segs.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
        }
        if segs.get(1) == Some(&"drop-first") && dropped.fetch_add(1, Ordering::SeqCst) == 0 {
            return; // close without a response
        }
        if path == "/sse" {
            let _ = w
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
            for i in 0..3 {
                let ev = format!("data: event {i}\n\n");
                let _ = w.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes());
                let _ = w.flush();
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = w.write_all(b"0\r\n\r\n");
            continue;
        }
        let mut hm = BTreeMap::new();
        for (k, v) in &headers {
            hm.insert(k.to_ascii_lowercase(), v.clone());
        }
        // `/big/N` pads the answer to N bytes; `x-reply-header: name: value` is sent back as a header
        let pad = if segs.get(1) == Some(&"big") { segs.get(2).and_then(|s| s.parse().ok()).unwrap_or(0) } else { 0 };
        let mut out = serde_json::json!({
            "origin": name, "method": method, "target": target, "headers": hm,
            "body": String::from_utf8_lossy(&body), "seq": seen.lock().expect("lock").len(),
        })
        .to_string();
        if out.len() < pad {
            out.push_str(&" ".repeat(pad - out.len()));
        }
        let extra: String = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-reply-header"))
            .map(|(_, v)| format!("{v}\r\n"))
            .collect();
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-origin: {name}\r\n{extra}\r\n{out}",
            out.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------------ certificates

/// A test PKI made with the openssl command line: a CA, server certificates, a client.
pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    /// Creates `ca.pem`, `NAME.pem`/`NAME.key` for each server name, and `client.pem`/`client.key`.
    pub fn create(dir: &Path, server_names: &[&str]) -> Pki {
        let d = dir.to_path_buf();
        openssl(
            &d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=edgegate test CA",
            ],
        );
        for n in server_names {
            Pki::issue(&d, n, &format!("subjectAltName=DNS:{n},DNS:*.{n}"));
        }
        Pki::issue(&d, "client", "subjectAltName=DNS:client.test,email:client@example.test");
        Pki { dir: d }
    }

    pub fn issue(d: &Path, name: &str, san: &str) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        std::fs::write(d.join(&ext), format!("{san}\n")).expect("ext");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}/O=edgegate tests"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// A TLS client: returns the server certificate's CN and the response.
pub fn tls_get(
    addr: SocketAddr,
    sni: &str,
    path: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    max_version: Option<openssl::ssl::SslVersion>,
) -> Result<(String, Response), String> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_ca_file(ca).map_err(|e| e.to_string())?;
    b.set_verify(SslVerifyMode::PEER);
    if let Some((cert, key)) = client {
        b.set_certificate_chain_file(cert).map_err(|e| e.to_string())?;
        b.set_private_key_file(key, openssl::ssl::SslFiletype::PEM).map_err(|e| e.to_string())?;
    }
    b.set_max_proto_version(max_version).map_err(|e| e.to_string())?;
    let conn = b.build();
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut s = conn.connect(sni, tcp).map_err(|e| e.to_string())?;
    let cn = s
        .ssl()
        .peer_certificate()
        .and_then(|c| {
            c.subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .next()
                .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        })
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let resp = read_response(&mut BufReader::new(s), false).map_err(|e| e.to_string())?;
    Ok((cn, resp))
}

/// Like `request`, from a chosen loopback source address (127.0.0.0/8 is all local).
pub fn request_from(src: &str, addr: SocketAddr, raw: &[u8]) -> Response {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let src: SocketAddr = format!("{src}:0").parse().expect("source");
    sock.bind(&src.into()).expect("bind source");
    sock.connect(&addr.into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    w.write_all(raw).expect("write");
    read_response(&mut BufReader::new(s), false).expect("response")
}

/// A GET with headers from a chosen source address.
pub fn get_from(src: &str, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    request_from(src, addr, raw.as_bytes())
}

/// A small HTTP/1.1 service on loopback (an authorizer, a JWKS endpoint): `handler(path, body)`
/// gives the status and the JSON body; `hits` counts the requests it answered.
pub struct Service {
    pub base: String,
    pub hits: Arc<AtomicUsize>,
}

impl Service {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A simple-response request authorizer (`response = "simple"`): it allows the callers whose
/// `x-token` header is `good`, and puts `{"team": "blue"}` in their context.
pub fn token_authorizer() -> Service {
    serve(|_, body| {
        let ev: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let ok = ev["headers"]["x-token"] == "good";
        (200, format!("{{\"isAuthorized\": {ok}, \"context\": {{\"team\": \"blue\"}}}}"))
    })
}

pub fn serve(handler: impl Fn(&str, &[u8]) -> (u16, String) + Send + Sync + 'static) -> Service {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let (h, handler) = (hits.clone(), Arc::new(handler));
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let (h, handler) = (h.clone(), handler.clone());
            std::thread::spawn(move || {
                let Ok(mut w) = conn.try_clone() else { return };
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let Ok(headers) = read_headers(&mut r) else { return };
                    let n: usize = header_in(&headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let mut body = vec![0; n];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, out) = handler(&path, &body);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{out}",
                        out.len()
                    );
                    if w.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Service { base, hits }
}

// ------------------------------------------------------------------ HTTP/2 (h2c) client

/// An HTTP/2 answer.
pub struct H2Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl H2Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One h2c (prior knowledge) request. `body` is sent as DATA frames of `chunk` bytes, with
/// no `content-length` unless `headers` gives one: the framing HTTP/1-minded code forgets.
pub fn h2_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> H2Response {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.expect("ready");
        let mut req = http::Request::builder().method(method).uri(format!("http://localhost{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (resp, mut send) = client.send_request(req.body(()).expect("request"), body.is_none()).expect("send");
        if let Some(b) = body {
            let chunks: Vec<&[u8]> = b.chunks(16 * 1024).collect();
            if chunks.is_empty() {
                send.send_data(bytes::Bytes::new(), true).expect("data");
            }
            for (i, c) in chunks.iter().enumerate() {
                send.reserve_capacity(c.len());
                send.send_data(bytes::Bytes::copy_from_slice(c), i + 1 == chunks.len()).expect("data");
            }
        }
        let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("answer in time").expect("answer");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body");
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        H2Response { status, headers, body: out }
    })
}

// ------------------------------------------------------------------ test servers and peers

/// A raw HTTP/1.1 answer with a JSON body: `status`, `extra` header lines (each ending in
/// CRLF), `body`.
pub fn json_reply(status: u16, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request as a raw test server received it.
#[derive(Clone)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.headers, name).map(str::to_string)
    }

    /// Whether its SigV4 `Authorization` is the one `access_key`/`secret` make for this
    /// request as received (content-type and a session token signed along, as edgegate does).
    pub fn sigv4_verifies(&self, host: &str, access_key: &str, secret: &str, region: &str, service: &str) -> bool {
        let (Some(auth), Some(date)) = (self.header("authorization"), self.header("x-amz-date")) else { return false };
        let now = edgegate::aws::sigv4::parse_amz_date(&date).unwrap_or(0);
        // every header the signature names, as received (host, date and payload hash are
        // the signer's own)
        let signed = auth.split("SignedHeaders=").nth(1).and_then(|s| s.split(',').next()).unwrap_or("");
        let extra: Vec<(String, String)> = signed
            .split(';')
            .filter(|n| !["host", "x-amz-date", "x-amz-content-sha256"].contains(n))
            .flat_map(|n| self.headers.iter().filter(move |(k, _)| k == n).cloned())
            .collect();
        let url = format!("http://{host}{}", self.target);
        let Ok(signer) = edgegate::aws::sigv4::Signer::new(region, service, &url) else { return false };
        // the Lambda Invoke call goes without `X-Amz-Content-Sha256`
        let signer = if signed.split(';').any(|n| n == "x-amz-content-sha256") {
            signer
        } else {
            signer.without_payload_header()
        };
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let keys = edgegate::aws::sigv4::Keys { access_key, secret, session_token: None };
        signer.sign(&keys, &self.method, &extra, &self.body, now).is_ok_and(|h| h[0].1 == auth)
    }
}

/// One HTTP/1.1 request off a connection (body by content-length); `None` at its end.
pub fn read_request<R: BufRead>(r: &mut R) -> Option<RawRequest> {
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let n: usize = header_in(&headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; n];
    r.read_exact(&mut body).ok()?;
    Some(RawRequest { method, target, headers, body })
}

/// A keep-alive HTTP/1.1 server on loopback: `handler(request, own host:port)` returns the raw
/// response bytes. Returns the `http://host:port` base.
pub fn serve_raw(handler: impl Fn(&RawRequest, &str) -> Vec<u8> + Send + Sync + 'static) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = l.local_addr().expect("addr").to_string();
    let base = format!("http://{host}");
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let (handler, host) = (handler.clone(), host.clone());
            std::thread::spawn(move || {
                let Ok(mut w) = c.try_clone() else { return };
                let mut r = BufReader::new(c);
                while let Some(req) = read_request(&mut r) {
                    if w.write_all(&handler(&req, &host)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    base
}

impl Gateway {
    /// Starts the gateway with `env` as its only AWS-related environment (`HOME` is the test
    /// directory, so no real `~/.aws` is read).
    pub fn start_with_env(make: impl FnOnce(&Path, &Ports) -> String, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = Ports::new();
        let config = dir.path().join("edgegate.toml");
        std::fs::write(&config, make(dir.path(), &ports)).expect("config");
        let mut gw = Gateway { child: None, dir, ports, config };
        let log = std::fs::File::create(gw.dir.path().join("stderr.log")).expect("log");
        let mut cmd = Command::new(BIN);
        cmd.arg("-c").arg(&gw.config).env("EDGEGATE_LOG", "info").stdout(Stdio::null()).stderr(log);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("HOME", gw.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        gw.child = Some(cmd.spawn().expect("spawn"));
        gw.wait_ready();
        gw
    }
}

/// A moto server on a free loopback port with IAM auth on after `free_actions` actions, and
/// the python that has boto3 next to it; `None` when moto is not installed (`./dev test`
/// installs it into `target/peers`). Stopped on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub python: PathBuf,
}

impl Moto {
    pub fn start(free_actions: u32) -> Option<Moto> {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/bin/moto_server");
        let bin = if local.exists() {
            Some(local)
        } else {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path).map(|d| d.join("moto_server")).find(|p| p.exists())
        };
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("EDGEGATE_REQUIRE_PEERS").is_none(),
                "moto is not installed (./dev test installs it)"
            );
            return None;
        };
        let python = bin.parent().map(|d| d.join("python3")).filter(|p| p.exists()).unwrap_or_else(|| "python3".into());
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", free_actions.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let m = Moto { child, port, python };
        eventually("moto to listen", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Some(m)
    }

    /// Runs a helper script in `tests/peers/` with `args`; its stdout as JSON.
    pub fn script(&self, name: &str, args: &[&str]) -> serde_json::Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(name);
        let out = Command::new(&self.python).arg(script).args(args).output().expect("python");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `credentials.toml` in `dir` with one key (`access_key`/`secret`) allowed to invoke
/// everything, and returns the `[authorizers.iam]` section (sigv4, execute-api, us-east-1)
/// that reads it.
pub fn allow_all_sigv4(dir: &Path, access_key: &str, secret: &str) -> String {
    std::fs::write(
        dir.join("credentials.toml"),
        format!(
            r#"[[credentials]]
access_key_id = "{access_key}"
secret = "{secret}"
policies = ['{{"Statement": [{{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}}]}}']
"#
        ),
    )
    .expect("credentials");
    "[authorizers.iam]\ntype = \"sigv4\"\nservice = \"execute-api\"\nregion = \"us-east-1\"\ncredentials = \"credentials.toml\"\n"
        .to_string()
}

/// An `[authorizers.NAME]` section: a simple-response request authorizer at `uri`, keyed on
/// the `x-token` header, caching its decisions for `ttl`.
pub fn token_authorizer_section(name: &str, uri: &str, ttl: &str) -> String {
    format!(
        "[authorizers.{name}]\ntype = \"request\"\nuri = \"{uri}\"\nidentity_sources = [\"$request.header.x-token\"]\nresponse = \"simple\"\nresult_ttl = \"{ttl}\"\n"
    )
}

/// Each event's type and the `traceparent` it came with, as [`echo_events`] received them.
pub type EventContexts = Arc<Mutex<Vec<(String, String)>>>;

/// A WebSocket integration (http) on loopback that answers every event with `echo:` and its
/// body.
pub fn echo_events() -> (String, EventContexts) {
    let got: EventContexts = Arc::default();
    let g2 = got.clone();
    let base = serve_raw(move |req, _| {
        let kind = req.header("x-edgegate-event-type").unwrap_or_default();
        g2.lock().expect("lock").push((kind, req.header("traceparent").unwrap_or_default()));
        let body = [b"echo:".as_slice(), &req.body].concat();
        let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        out
    });
    (base, got)
}
