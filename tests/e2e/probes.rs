//! The adversarial probe suite: raw HTTP/1 bytes and raw HTTP/2 frames, sent as an attacker
//! would, against the real binary. Each probe states the answer it must get AND what the
//! origin may receive (nothing, or exactly the bytes the gateway decided on). Categories:
//! path normalisation, HTTP/1 smuggling, HTTP/2 framing, JWT attacks, XFF chains, cache
//! poisoning, CRLF and template injection, CORS, SigV4 replay and tampering.

use crate::common::*;
use std::io::{BufReader, Write};
use std::time::Duration;

const SECRET: &str = "probe-secret";

fn gateway(origin: &Origin) -> Gateway {
    let url = origin.url();
    Gateway::start(move |d, p| {
        let iam = allow_all_sigv4(d, "AKPROBE", SECRET);
        format!(
            r#"{server}
[authorizers.jwt]
type = "jwt"
algorithms = ["HS256"]
secret = "{SECRET}"
issuer = "https://issuer.test/"
audience = ["probe-api"]
{iam}clock_skew = "5m"

[[apis]]
name = "p"
[apis.policy]
deny_cidrs = ["10.0.0.0/8"]
[apis.cors]
allow_origins = ["https://app.test"]
allow_credentials = true
allow_headers = ["authorization"]
[apis.stages.prod]
cache = {{ ttl = "60s" }}
[[apis.routes]]
route = "GET /public/{{proxy+}}"
integration = {{ type = "http", uri = "{url}/public/{{proxy}}" }}
[[apis.routes]]
route = "ANY /admin/{{proxy+}}"
integration = {{ type = "http", uri = "{url}/admin/{{proxy}}" }}
authorizer = "jwt"
[[apis.routes]]
route = "POST /echo"
integration = {{ type = "http", uri = "{url}/echo" }}
[[apis.routes]]
route = "POST /signed"
integration = {{ type = "http", uri = "{url}/signed" }}
authorizer = "iam"
[[apis.routes]]
route = "GET /mock"
integration = {{ type = "mock", headers = {{ "content-type" = "application/json" }}, body = '{{"q": "{{{{ input.params.querystring.q }}}}", "h": "{{{{ input.params.header["x-v"] }}}}"}}' }}
[[apis.routes]]
route = "GET /whoami"
integration = {{ type = "mock", body = "{{{{ context.identity.sourceIp }}}}" }}
[[apis.routes]]
route = "GET /hdr"
integration = {{ type = "http", uri = "{url}/hdr" }}
request_transform = {{ set_headers = {{ "x-q" = "{{{{ input.params.querystring.q }}}}" }} }}
"#,
            server = server_section(d, p, "trusted_proxies = [\"127.0.0.1/32\"]\nheader_timeout = \"2s\"")
        )
    })
}

/// Sends raw bytes on one connection; every status read until it closes or goes quiet.
fn exchange(gw: &Gateway, raw: &[u8]) -> Vec<u16> {
    let s = std::net::TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(1500))).expect("timeout");
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

struct Run<'a> {
    gw: &'a Gateway,
    origin: &'a Origin,
    count: usize,
    failures: Vec<String>,
}

impl<'a> Run<'a> {
    fn new(gw: &'a Gateway, origin: &'a Origin) -> Run<'a> {
        Run { gw, origin, count: 0, failures: vec![] }
    }

    /// One probe: the statuses must all be in `ok` (an empty answer counts as refused when
    /// `closed_ok`), and `origin` judges every request the origin received meanwhile.
    fn probe(&mut self, name: &str, raw: &[u8], ok: &[u16], closed_ok: bool, origin: impl Fn(&[Seen]) -> bool) {
        self.count += 1;
        let before = self.origin.count();
        let statuses = exchange(self.gw, raw);
        std::thread::sleep(Duration::from_millis(30));
        let seen: Vec<Seen> = self.origin.requests().into_iter().skip(before).collect();
        let status_ok = if statuses.is_empty() { closed_ok } else { statuses.iter().all(|s| ok.contains(s)) };
        if !status_ok || !origin(&seen) {
            let targets: Vec<String> = seen.iter().map(|s| format!("{} {}", s.method, s.target)).collect();
            self.failures.push(format!("{name}: statuses {statuses:?} (want {ok:?}), origin saw {targets:?}"));
        }
    }

    fn finish(self, at_least: usize) {
        assert!(
            self.failures.is_empty(),
            "{} of {} probes failed:\n{}",
            self.failures.len(),
            self.count,
            self.failures.join("\n")
        );
        assert!(self.count >= at_least, "{} probes", self.count);
    }
}

fn nothing(seen: &[Seen]) -> bool {
    seen.is_empty()
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: p.test\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

#[test]
fn path_normalisation_probes() {
    let origin = Origin::start("o");
    let gw = gateway(&origin);
    let mut run = Run::new(&gw, &origin);
    // each must NOT reach /admin at the origin without a token; 401 (the admin route) or a
    // refusal is fine, and a /public answer must be for a normalised /public path
    let to_admin = [
        "/prod/public/../admin/x",
        "/prod/public/%2e%2e/admin/x",
        "/prod/public/%2E%2E/admin/x",
        "/prod/public/.%2e/admin/x",
        "/prod/public/%2e./admin/x",
        "/prod//admin/x",
        "/prod/./admin/x",
        "/prod/admin/./x",
        "/prod/public/x/../../admin/x",
        "/prod/%61dmin/x",
        "/prod/%41dmin/x",
        "/prod/admin%2fx",
        "/prod/admin/%2e%2e/admin/x",
        "/prod/public/..%2fadmin/x",
        "/prod/public/..%5cadmin/x",
        "/prod/public\\..\\admin/x",
        "/prod/public/%c0%ae%c0%ae/admin/x",
        "/prod/public/%252e%252e/admin/x",
        "/prod/public/..;/admin/x",
        "/prod/admin;x=1/x",
        "/prod/public/%00/../admin/x",
        "/prod/ADMIN/x",
        "/prod/admin/x#frag",
        "/prod/admin/x?../public/y",
        "/prod/%2fadmin/x",
        "/prod/public/%2e%2e%2fadmin%2fx",
        "/prod/public/....//admin/x",
        "/../prod/admin/x",
        "/prod/public/%u002e%u002e/admin/x",
        "/prod/public/..%00/admin/x",
    ];
    for p in to_admin {
        // a /public answer is fine when the origin got one /public path with no segment it
        // could read as a dot-segment (an origin that decodes %2F or honours `;`)
        run.probe(&format!("path {p}"), &get(p, ""), &[200, 400, 401, 403, 404], true, |seen| {
            seen.iter().all(|s| {
                let t = s.target.to_ascii_lowercase();
                s.target.starts_with("/public/")
                    && !t.split('/').any(|seg| {
                        seg == ".."
                            || seg == "."
                            || seg.starts_with("..;")
                            || seg.starts_with("..%2f")
                            || seg.contains("%2f..")
                            || seg.starts_with("%c0")
                    })
            })
        });
    }
    // these are refused outright
    for p in [
        "/prod/public/..%2fadmin/x",
        "/prod/public/..;/admin/x",
        "/prod/public/%c0%ae%c0%ae/admin/x",
        "/prod/public/%2e%2e%2fadmin%2fx",
    ] {
        run.probe(&format!("refused {p}"), &get(p, ""), &[400], false, nothing);
    }
    // legitimate spellings of a public path reach it normalised
    for p in ["/prod/public/a", "/prod//public///a", "/prod/public/./a", "/prod/public/b/../a", "/prod/public/%61"] {
        // served by the origin or, after the first, by the cache: always as /public/a
        run.probe(&format!("public {p}"), &get(p, ""), &[200], false, |seen| {
            seen.iter().all(|s| s.target == "/public/a")
        });
    }
    run.finish(39);
}

#[test]
fn http1_smuggling_probes() {
    let origin = Origin::start("o");
    let gw = gateway(&origin);
    let mut run = Run::new(&gw, &origin);
    let no_smuggle = |seen: &[Seen]| seen.iter().all(|s| !s.target.contains("smuggled"));
    let smuggled = "GET /prod/public/smuggled HTTP/1.1\r\nHost: p.test\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        ("CL.TE", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE.CL", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE.TE dup", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE list", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE identity", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc{smuggled}")),
        ("TE xchunked", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE space name", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE obs-fold", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE tab", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}")),
        ("CL CL differ", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}")),
        ("CL list", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nContent-Length: 4, 40\r\n\r\nabcd{smuggled}")),
        ("CL plus", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nContent-Length: +4\r\n\r\nabcd{smuggled}")),
        ("CL negative", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nContent-Length: -1\r\n\r\n{smuggled}")),
        ("CL hex", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nContent-Length: 0x4\r\n\r\nabcd{smuggled}")),
        ("CL huge", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nContent-Length: 99999999999999999999999\r\n\r\n{smuggled}")),
        ("HTTP/1.0 chunked", format!("POST /prod/echo HTTP/1.0\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("chunk size garbage", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n{smuggled}")),
        ("chunk size overflow", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nabc\r\n0\r\n\r\n{smuggled}")),
        ("chunk ext abuse", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\"\r\n0\r\n\r\n{smuggled}\"\r\nabc\r\n0\r\n\r\n")),
        ("chunk bare LF", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n{smuggled}")),
        ("two Host", format!("GET /prod/public/a HTTP/1.1\r\nHost: p.test\r\nHost: evil.test\r\n\r\n{smuggled}")),
        ("absolute-form other host", format!("GET http://evil.test/prod/public/a HTTP/1.1\r\nHost: p.test\r\n\r\n{smuggled}")),
        ("lowercase method", format!("get /prod/public/a HTTP/1.1\r\nHost: p.test\r\n\r\n{smuggled}")),
        ("space before colon", format!("GET /prod/public/a HTTP/1.1\r\nHost : p.test\r\n\r\n{smuggled}")),
        ("NUL in header", "GET /prod/public/a HTTP/1.1\r\nHost: p.test\r\nX-A: a\0b\r\n\r\nGET /prod/public/smuggled HTTP/1.1\r\nHost: p.test\r\n\r\n".to_string()),
        ("CR in header value", "GET /prod/public/a HTTP/1.1\r\nHost: p.test\r\nX-A: a\rGET /prod/public/smuggled HTTP/1.1\r\n\r\n".to_string()),
        ("bad version", format!("GET /prod/public/a HTTP/1.2\r\nHost: p.test\r\n\r\n{smuggled}")),
        ("upgrade h2c", format!("GET /prod/public/a HTTP/1.1\r\nHost: p.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n{smuggled}")),
        ("upgrade websocket refused", format!("GET /prod/public/a HTTP/1.1\r\nHost: p.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n{smuggled}")),
        ("two Content-Type", format!("POST /prod/echo HTTP/1.1\r\nHost: p.test\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}{smuggled}")),
        ("two Origin", format!("GET /prod/public/a HTTP/1.1\r\nHost: p.test\r\nOrigin: https://app.test\r\nOrigin: https://evil.test\r\n\r\n{smuggled}")),
        ("huge header", format!("GET /prod/public/a HTTP/1.1\r\nHost: p.test\r\nX-Big: {}\r\n\r\n{smuggled}", "a".repeat(40_000))),
    ];
    for (name, raw) in &cases {
        // refused (400/4xx) or, where the first request is legitimate, answered once and the
        // trailing bytes never become a request at the origin
        run.probe(name, raw.as_bytes(), &[200, 400, 404, 405, 413, 431, 501], true, no_smuggle);
    }
    // pipelined legitimate requests stay legitimate
    let two = "GET /prod/public/a HTTP/1.1\r\nHost: p.test\r\n\r\nGET /prod/public/b HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n";
    run.probe("pipelined pair", two.as_bytes(), &[200], false, |seen| {
        seen.iter().all(|s| s.target == "/public/a" || s.target == "/public/b")
    });
    run.finish(33);
}

/// Raw HTTP/2 (h2c prior knowledge) with a minimal HPACK encoder (literals, no Huffman).
mod h2raw {
    use std::io::{Read, Write};
    use std::time::Duration;

    fn int(out: &mut Vec<u8>, prefix_bits: u8, first: u8, mut n: usize) {
        let max = (1usize << prefix_bits) - 1;
        if n < max {
            out.push(first | n as u8);
            return;
        }
        out.push(first | max as u8);
        n -= max;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }

    /// Literal header field without indexing, new name.
    pub fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = vec![];
        for (k, v) in headers {
            out.push(0x00);
            int(&mut out, 7, 0, k.len());
            out.extend_from_slice(k.as_bytes());
            int(&mut out, 7, 0, v.len());
            out.extend_from_slice(v.as_bytes());
        }
        out
    }

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// What the server did with stream 1.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Outcome {
        /// A response HEADERS frame; the status if it was an indexed one (200 = 0x88 …).
        Answered(Option<u16>),
        Reset,
        GoAway,
        Closed,
    }

    pub fn send(addr: std::net::SocketAddr, frames: &[Vec<u8>]) -> Outcome {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        for f in frames {
            out.extend_from_slice(f);
        }
        if s.write_all(&out).is_err() {
            return Outcome::Closed;
        }
        let mut head = [0u8; 9];
        loop {
            if s.read_exact(&mut head).is_err() {
                return Outcome::Closed;
            }
            let len = ((head[0] as usize) << 16) | ((head[1] as usize) << 8) | head[2] as usize;
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).is_err() {
                return Outcome::Closed;
            }
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            match head[3] {
                0x1 if stream == 1 => {
                    let status = match payload.first() {
                        Some(0x88) => Some(200),
                        Some(0x89) => Some(204),
                        Some(0x8c) => Some(400),
                        Some(0x8d) => Some(404),
                        Some(0x8e) => Some(500),
                        _ => None,
                    };
                    return Outcome::Answered(status);
                }
                0x3 if stream == 1 => return Outcome::Reset,
                0x7 => return Outcome::GoAway,
                0x4 if head[4] & 1 == 0 => {
                    let _ = s.write_all(&frame(0x4, 1, 0, &[]));
                }
                _ => {}
            }
        }
    }
}

#[test]
fn http2_framing_probes() {
    use h2raw::{frame, hpack, send, Outcome};
    let origin = Origin::start("o");
    let gw = gateway(&origin);
    let req = |extra: &[(&str, &str)], method: &str, path: &str| {
        let mut h = vec![(":method", method), (":scheme", "http"), (":authority", "p.test"), (":path", path)];
        h.extend_from_slice(extra);
        hpack(&h)
    };
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    let mut count = 0;
    let mut failures = vec![];
    let mut check = |name: &str, frames: Vec<Vec<u8>>, refused: bool| {
        count += 1;
        let before = origin.count();
        let outcome = send(gw.addr(), &frames);
        std::thread::sleep(Duration::from_millis(50));
        let reached = origin.count() > before;
        let good = if refused {
            !reached && !matches!(outcome, Outcome::Answered(Some(200)))
        } else {
            matches!(outcome, Outcome::Answered(Some(200)))
        };
        if !good {
            failures.push(format!("{name}: {outcome:?}, origin reached: {reached}"));
        }
    };
    check("plain GET", vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[], "GET", "/prod/public/a"))], false);
    check(
        "POST body without content-length",
        vec![frame(0x1, END_HEADERS, 1, &req(&[], "POST", "/prod/echo")), frame(0x0, END_STREAM, 1, b"hello")],
        false,
    );
    check(
        "content-length smaller than DATA",
        vec![
            frame(0x1, END_HEADERS, 1, &req(&[("content-length", "2")], "POST", "/prod/echo")),
            frame(0x0, END_STREAM, 1, b"hello"),
        ],
        true,
    );
    check(
        "content-length larger than DATA",
        vec![
            frame(0x1, END_HEADERS, 1, &req(&[("content-length", "50")], "POST", "/prod/echo")),
            frame(0x0, END_STREAM, 1, b"hello"),
        ],
        true,
    );
    // a mock answers only after the body was read and found to match its framing
    check(
        "mock: content-length larger than DATA",
        vec![
            frame(0x1, END_HEADERS, 1, &req(&[("content-length", "50")], "GET", "/prod/mock")),
            frame(0x0, END_STREAM, 1, b"hello"),
        ],
        true,
    );
    check(
        "mock: content-length smaller than DATA",
        vec![
            frame(0x1, END_HEADERS, 1, &req(&[("content-length", "1")], "GET", "/prod/mock")),
            frame(0x0, END_STREAM, 1, b"hello"),
        ],
        true,
    );
    check("path without slash", vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[], "GET", "prod/public/a"))], true);
    check(
        "upper-case header name",
        vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[("X-Up", "1")], "GET", "/prod/public/a"))],
        true,
    );
    check(
        "connection header",
        vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[("connection", "keep-alive")], "GET", "/prod/public/a"))],
        true,
    );
    check(
        "transfer-encoding header",
        vec![frame(
            0x1,
            END_STREAM | END_HEADERS,
            1,
            &req(&[("transfer-encoding", "chunked")], "GET", "/prod/public/a"),
        )],
        true,
    );
    check(
        "te other than trailers",
        vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[("te", "gzip")], "GET", "/prod/public/a"))],
        true,
    );
    let dup = hpack(&[
        (":method", "GET"),
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "p.test"),
        (":path", "/prod/public/a"),
    ]);
    check("duplicate :method", vec![frame(0x1, END_STREAM | END_HEADERS, 1, &dup)], true);
    let late = hpack(&[(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":path", "/prod/public/a")]);
    check("pseudo-header after a regular one", vec![frame(0x1, END_STREAM | END_HEADERS, 1, &late)], true);
    let nopath = hpack(&[(":method", "GET"), (":scheme", "http"), (":authority", "p.test")]);
    check("missing :path", vec![frame(0x1, END_STREAM | END_HEADERS, 1, &nopath)], true);
    check(
        "unknown pseudo-header",
        vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[(":evil", "1")], "GET", "/prod/public/a"))],
        true,
    );
    check(
        "host differs from :authority",
        vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[("host", "evil.test")], "GET", "/prod/public/a"))],
        true,
    );
    check(
        "CRLF in a value",
        vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[("x-a", "a\r\nx-b: c")], "GET", "/prod/public/a"))],
        true,
    );
    check("lowercase method", vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[], "get", "/prod/public/a"))], true);
    // singleton fields repeated, on a body without content-length (the framing check's one pass)
    for (name, fields) in [
        ("two Content-Type", [("content-type", "text/plain"), ("content-type", "application/json")]),
        ("two Origin", [("origin", "https://a.test"), ("origin", "https://b.test")]),
        ("two host", [("host", "p.test"), ("host", "p.test")]),
    ] {
        check(
            name,
            vec![frame(0x1, END_HEADERS, 1, &req(&fields, "POST", "/prod/echo")), frame(0x0, END_STREAM, 1, b"{}")],
            true,
        );
    }
    check(
        "traversal",
        vec![frame(0x1, END_STREAM | END_HEADERS, 1, &req(&[], "GET", "/prod/public/../admin/x"))],
        true,
    );
    check(
        "signed route, unsigned body without content-length",
        vec![
            frame(0x1, END_HEADERS, 1, &req(&[("authorization", "AWS4-HMAC-SHA256 Credential=AKPROBE/20260101/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")], "POST", "/prod/signed")),
            frame(0x0, END_STREAM, 1, b"tampered"),
        ],
        true,
    );
    assert!(failures.is_empty(), "{} of {count} h2 probes failed:\n{}", failures.len(), failures.join("\n"));
    assert!(count >= 20);
}

fn jwt(claims: serde_json::Value, alg: jsonwebtoken::Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &jsonwebtoken::EncodingKey::from_secret(secret))
        .expect("sign")
}

fn b64(v: &serde_json::Value) -> String {
    openssl::base64::encode_block(v.to_string().as_bytes())
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string()
}

fn hs256_raw(header: &serde_json::Value, claims: &serde_json::Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let key = openssl::pkey::PKey::hmac(secret).expect("key");
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).expect("signer");
    s.update(input.as_bytes()).expect("update");
    let sig = openssl::base64::encode_block(&s.sign_to_vec().expect("sign")).replace('+', "-").replace('/', "_");
    format!("{input}.{}", sig.trim_end_matches('='))
}

#[test]
fn jwt_attack_probes() {
    use jsonwebtoken::Algorithm::*;
    use serde_json::json;
    let origin = Origin::start("o");
    let gw = gateway(&origin);
    let mut run = Run::new(&gw, &origin);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("t").as_secs() as i64;
    let good = json!({"iss": "https://issuer.test/", "aud": "probe-api", "sub": "u1", "exp": now + 300});
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("obj").remove(k);
        c
    };
    let s = SECRET.as_bytes();
    let token_ok = jwt(good.clone(), HS256, s);
    let parts: Vec<&str> = token_ok.split('.').collect();
    let attacks: Vec<(&str, String)> = vec![
        ("wrong secret", jwt(good.clone(), HS256, b"guess")),
        ("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good))),
        ("alg None", format!("{}.{}.", b64(&json!({"alg": "None"})), b64(&good))),
        ("alg HS384 not allowed", jwt(good.clone(), HS384, s)),
        ("alg HS512 not allowed", jwt(good.clone(), HS512, s)),
        ("expired", jwt(with("exp", json!(now - 600)), HS256, s)),
        ("no exp", jwt(without("exp"), HS256, s)),
        ("exp as string", jwt(with("exp", json!("9999999999")), HS256, s)),
        ("nbf in the future", jwt(with("nbf", json!(now + 600)), HS256, s)),
        ("other issuer", jwt(with("iss", json!("https://evil.test/")), HS256, s)),
        ("no issuer", jwt(without("iss"), HS256, s)),
        ("other audience", jwt(with("aud", json!("other-api")), HS256, s)),
        ("no audience", jwt(without("aud"), HS256, s)),
        ("crit extension", hs256_raw(&json!({"alg": "HS256", "crit": ["b64"], "b64": false}), &good, s)),
        ("payload swapped", format!("{}.{}.{}", parts[0], b64(&with("sub", json!("admin"))), parts[2])),
        ("signature stripped", format!("{}.{}.", parts[0], parts[1])),
        (
            "signature of another token",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                jwt(with("sub", json!("x")), HS256, s).split('.').nth(2).unwrap_or("")
            ),
        ),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("four segments", format!("{token_ok}.x")),
        ("garbage", "not-a-token".to_string()),
        ("empty", String::new()),
        (
            "jku header",
            hs256_raw(&json!({"alg": "HS256", "jku": "http://127.0.0.1:1/jwks"}), &with("sub", json!("x")), b"guess"),
        ),
        ("kid injection", hs256_raw(&json!({"alg": "HS256", "kid": "../../../dev/null"}), &good, b"\n")),
        ("bad base64", format!("{}.{}!!.{}", parts[0], parts[1], parts[2])),
    ];
    for (name, t) in &attacks {
        run.probe(
            &format!("jwt {name}"),
            &get("/prod/admin/x", &format!("Authorization: Bearer {t}\r\n")),
            &[401, 403],
            false,
            nothing,
        );
    }
    // header-level tricks with a good token
    run.probe("no scheme", &get("/prod/admin/x", &format!("Authorization: {token_ok}\r\n")), &[200], false, |s| {
        s.len() == 1
    });
    run.probe(
        "two Authorization lines",
        &get("/prod/admin/x", &format!("Authorization: Bearer {token_ok}\r\nAuthorization: Bearer x\r\n")),
        &[401],
        false,
        nothing,
    );
    run.probe(
        "Basic scheme",
        &get("/prod/admin/x", &format!("Authorization: Basic {token_ok}\r\n")),
        &[401],
        false,
        nothing,
    );
    run.probe(
        "token in query only",
        &get(&format!("/prod/admin/x?access_token={token_ok}"), ""),
        &[401],
        false,
        nothing,
    );
    run.probe(
        "good token",
        &get("/prod/admin/x", &format!("Authorization: Bearer {token_ok}\r\n")),
        &[200],
        false,
        |s| s.len() == 1 && s[0].target == "/admin/x",
    );
    run.finish(29);
}

#[test]
fn forwarded_for_probes() {
    let origin = Origin::start("o");
    let gw = gateway(&origin);
    let mut run = Run::new(&gw, &origin);
    let who = |extra: &str| get("/prod/whoami", extra);
    // from a trusted peer (127.0.0.1): the chain is believed, right to left
    let denied = [
        "X-Forwarded-For: 10.1.2.3\r\n",
        "X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n",
        "X-Forwarded-For: 127.0.0.9\r\nX-Forwarded-For: 10.1.2.3\r\n",
        "X-Forwarded-For: 10.1.2.3:443\r\n",
        "X-Forwarded-For: unknown\r\n",
        "X-Forwarded-For: 1.1.1.1, garbage\r\n",
        "X-Forwarded-For: ::ffff:10.1.2.3\r\n",
        "X-Forwarded-For: [::ffff:10.1.2.3]:80\r\n",
        "X-Forwarded-For: 1.1.1.1,,\r\n",
        "X-Forwarded-For: 10.1.2.3 1.1.1.1\r\n",
    ];
    for h in denied {
        run.probe(&format!("deny {}", h.trim()), &who(h), &[403], false, nothing);
    }
    let allowed = [
        "X-Forwarded-For: 10.1.2.3, 1.1.1.1\r\n",
        "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-For: 1.1.1.1\r\n",
        "X-Forwarded-For: 1.1.1.1:5555\r\n",
        "X-Forwarded-For: [2001:db8::1]:443\r\n",
        "",
    ];
    for h in allowed {
        run.probe(&format!("allow {}", h.trim()), &who(h), &[200], false, nothing);
    }
    run.finish(15);
    // from an untrusted peer: its header is not believed and forwarding claims are removed
    let r = get_from("127.0.0.7", gw.addr(), "/prod/whoami", &[("X-Forwarded-For", "10.1.2.3")]);
    assert_eq!((r.status, r.text().as_str()), (200, "127.0.0.7"));
    let r =
        get_from("127.0.0.7", gw.addr(), "/prod/public/a", &[("X-Real-IP", "10.1.2.3"), ("Forwarded", "for=10.1.2.3")]);
    assert_eq!(r.status, 200);
    let seen = origin.requests().last().cloned().expect("seen");
    assert_eq!((seen.header("x-real-ip"), seen.header("forwarded")), (None, None));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.7"));
}

#[test]
fn cache_poisoning_crlf_template_and_cors_probes() {
    let origin = Origin::start("o");
    let gw = gateway(&origin);
    let mut run = Run::new(&gw, &origin);
    // warm an entry, then try to poison or read around it
    let clean = get_from("127.0.0.7", gw.addr(), "/prod/public/c", &[]);
    assert_eq!(clean.header("x-edgegate-cache"), Some("miss"));
    let unkeyed = [
        ("X-Forwarded-Host", "evil.test"),
        ("X-Forwarded-Proto", "https"),
        ("X-Original-URL", "/admin/x"),
        ("X-Rewrite-URL", "/admin/x"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Forwarded-Prefix", "/evil"),
        ("Forwarded", "host=evil.test"),
    ];
    for (h, v) in unkeyed {
        let r = get_from("127.0.0.7", gw.addr(), "/prod/public/c", &[(h, v)]);
        run.count += 1;
        if r.status != 200 || r.text().contains("evil") || r.text().contains("DELETE") {
            run.failures.push(format!("unkeyed {h}: {} {}", r.status, r.text()));
        }
    }
    let after = get_from("127.0.0.7", gw.addr(), "/prod/public/c", &[]);
    assert_eq!(after.json()["seq"], clean.json()["seq"], "the entry is still the clean one");
    // a query outside the key, a body, credentials: bypass, and the entry is untouched
    run.probe("unkeyed query", &get("/prod/public/c?cb=1", ""), &[200], false, |s| s.len() == 1);
    run.probe(
        "fat GET",
        b"GET /prod/public/c HTTP/1.1\r\nHost: p.test\r\nContent-Length: 6\r\nConnection: close\r\n\r\npoison",
        &[200],
        false,
        |s| s.len() == 1,
    );
    run.probe("cookie", &get("/prod/public/c", "Cookie: s=1\r\n"), &[200], false, |s| s.len() == 1);
    run.probe("authorization", &get("/prod/public/c", "Authorization: Bearer x\r\n"), &[200], false, |s| s.len() == 1);
    // CRLF and template injection
    let crlf = [
        "/prod/hdr?q=a%0d%0aSet-Cookie:%20evil=1",
        "/prod/hdr?q=a%0aX-Injected:%201",
        "/prod/hdr?q=%0d%0a%0d%0aHTTP/1.1%20200",
    ];
    for p in crlf {
        run.probe(&format!("crlf {p}"), &get(p, ""), &[200, 500], false, |seen| {
            seen.iter().all(|s| s.header("set-cookie").is_none() && s.header("x-injected").is_none())
        });
    }
    for q in ["%22%2C%22admin%22%3Atrue%2C%22x%22%3A%22", "%7B%7B7*7%7D%7D", "%5C%22%7D", "%3C%2Fscript%3E"] {
        let r = get_from(
            "127.0.0.7",
            gw.addr(),
            &format!("/prod/mock?q={q}"),
            &[("x-v", "\"}, \"admin\": true, \"z\": {\"")],
        );
        run.count += 1;
        match serde_json::from_slice::<serde_json::Value>(&r.body) {
            Ok(v) if v.as_object().is_some_and(|o| o.len() == 2) && !r.text().contains("49") => {}
            other => run.failures.push(format!("template q={q}: {other:?} {}", r.text())),
        }
    }
    // CORS
    let pre = |origin_hdr: &str| {
        format!(
            "OPTIONS /prod/public/a HTTP/1.1\r\nHost: p.test\r\nOrigin: {origin_hdr}\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
        )
    };
    for (o, allowed) in [
        ("https://app.test", true),
        ("https://evil.test", false),
        ("https://app.test.evil.test", false),
        ("null", false),
        ("https://APP.test", true),
        ("http://app.test", false),
    ] {
        run.count += 1;
        let r = request(gw.addr(), pre(o).as_bytes());
        let acao = r.header("access-control-allow-origin").map(str::to_string);
        let ok = if allowed { acao.as_deref() == Some(o) } else { acao.is_none() };
        if !ok || (acao.is_some() && acao.as_deref() == Some("*")) {
            run.failures.push(format!("cors {o}: {} {acao:?}", r.status));
        }
    }
    run.finish(20);
}

#[test]
fn sigv4_replay_and_tampering_probes() {
    use edgegate::aws::sigv4::sign_request;
    let origin = Origin::start("o");
    let gw = gateway(&origin);
    let mut run = Run::new(&gw, &origin);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("t").as_secs();
    let body = b"{\"amount\":1}";
    let sign = |path: &str, body: &[u8], at: u64| {
        sign_request(
            "AKPROBE",
            SECRET,
            "us-east-1",
            "execute-api",
            "POST",
            &format!("http://p.test{path}"),
            &[],
            body,
            at,
        )
        .expect("sign")
    };
    let raw = |path: &str, h: &[(String, String)], body: &[u8], extra: &str| {
        let mut s = format!(
            "POST {path} HTTP/1.1\r\nHost: p.test\r\nContent-Length: {}\r\nConnection: close\r\n{extra}",
            body.len()
        );
        for (k, v) in h {
            if !k.eq_ignore_ascii_case("host") {
                s.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        s.push_str("\r\n");
        let mut b = s.into_bytes();
        b.extend_from_slice(body);
        b
    };
    let h = sign("/prod/signed", body, now);
    run.probe("signed", &raw("/prod/signed", &h, body, ""), &[200], false, |s| {
        s.len() == 1 && s[0].body == body.to_vec()
    });
    run.probe("body tampered", &raw("/prod/signed", &h, b"{\"amount\":9}", ""), &[403], false, nothing);
    run.probe("body extended", &raw("/prod/signed", &h, b"{\"amount\":1}  ", ""), &[403], false, nothing);
    run.probe(
        "replay outside skew",
        &raw("/prod/signed", &sign("/prod/signed", body, now - 3600), body, ""),
        &[403],
        false,
        nothing,
    );
    run.probe(
        "from the future",
        &raw("/prod/signed", &sign("/prod/signed", body, now + 3600), body, ""),
        &[403],
        false,
        nothing,
    );
    run.probe("other path", &raw("/prod/signed?x=1", &h, body, ""), &[403], false, nothing);
    run.probe(
        "second Authorization",
        &raw("/prod/signed", &h, body, "Authorization: AWS4-HMAC-SHA256 Credential=x\r\n"),
        &[403],
        false,
        nothing,
    );
    run.probe(
        "second x-amz-date",
        &raw("/prod/signed", &h, body, "X-Amz-Date: 20200101T000000Z\r\n"),
        &[403],
        false,
        nothing,
    );
    run.probe(
        "unsigned payload claimed",
        &raw("/prod/signed", &h, body, "X-Amz-Content-Sha256: UNSIGNED-PAYLOAD\r\n"),
        &[403],
        false,
        nothing,
    );
    let mut chunked =
        "POST /prod/signed HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n".to_string();
    for (k, v) in &h {
        if !k.eq_ignore_ascii_case("host") {
            chunked.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    chunked.push_str("\r\n4\r\n{\"am\r\n8\r\nount\":9}\r\n0\r\n\r\n");
    run.probe("chunked tampered", chunked.as_bytes(), &[403], false, nothing);
    run.finish(10);
}
