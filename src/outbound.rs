//! The gateway's own outbound HTTP calls (request/token authorizers, JWKS documents; Lambda
//! and AWS service calls next): one client on Pingora's connector, pooled connections,
//! a deadline on the whole exchange, a bound on the answer, and typed errors that the
//! caller logs. Nothing here blocks a request thread: [`fetch_blocking`] is for config
//! loading only, off the request path.

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Where a call goes: resolved once, when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The `Host` header (with the port when it is not the scheme's default).
    pub host: String,
    /// The TLS server name.
    pub sni: String,
    /// Path and query of the URL ([`Endpoint::target`]).
    target: String,
    /// `target` parsed, once, when the endpoint is made: a call sets it on its head without
    /// parsing it again (`None`: it does not parse, and the call fails as it would).
    uri: Option<http::Uri>,
    /// The URL as configured, for logs.
    pub url: String,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot connect to {url}: {why}")]
    Connect { url: String, why: String },
    #[error("{url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("sending to {url} failed: {why}")]
    Send { url: String, why: String },
    #[error("reading the answer of {url} failed: {why}")]
    Receive { url: String, why: String },
    #[error("the answer of {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

impl Endpoint {
    /// Parses and resolves an `http://` or `https://` URL (blocking DNS: at load only).
    pub fn parse(url: &str) -> Result<Endpoint, OutboundError> {
        use std::net::ToSocketAddrs;
        let bad = |m: String| OutboundError::BadUrl(m);
        let u: http::Uri = url.parse().map_err(|e| bad(format!("invalid URL {url:?}: {e}")))?;
        let tls = match u.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad(format!("URL {url:?} must start with http:// or https://"))),
        };
        let host = u.host().ok_or_else(|| bad(format!("URL {url:?} has no host")))?;
        let default_port = if tls { 443 } else { 80 };
        let port = u.port_u16().unwrap_or(default_port);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare, port)
            .to_socket_addrs()
            .map_err(|e| bad(format!("cannot resolve {host}:{port}: {e}")))?
            .next()
            .ok_or_else(|| bad(format!("{host}:{port} resolves to no address")))?;
        let target = u.path_and_query().map(|p| p.as_str()).filter(|p| !p.is_empty()).unwrap_or("/").to_string();
        let host = if port == default_port { host.to_string() } else { format!("{host}:{port}") };
        Ok(Endpoint::new(addr, tls, host, bare.to_string(), target, url.to_string()))
    }

    /// An endpoint resolved already: `target` is the path and query the calls ask for.
    pub fn new(addr: SocketAddr, tls: bool, host: String, sni: String, target: String, url: String) -> Endpoint {
        let uri = target.parse().ok();
        Endpoint { addr, tls, host, sni, target, uri, url }
    }

    /// Path and query of the URL.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The same endpoint asked for another path and query (a request's own URL).
    pub fn with_target(&self, target: String) -> Endpoint {
        Endpoint::new(self.addr, self.tls, self.host.clone(), self.sni.clone(), target, self.url.clone())
    }

    /// Whether the URL names this machine (loopback), where plain http is acceptable.
    pub fn is_loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }
}

/// An answer: status, header fields and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// One call.
pub struct Call<'a> {
    pub method: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<Bytes>,
    /// The whole exchange: connect, send, answer.
    pub timeout: Duration,
    /// The largest answer body accepted.
    pub max_answer: usize,
}

/// `Host` and the call's fields as `name: value` lines, or `None` when a field must go
/// through the request's header map instead: a name given twice (the map keeps the last), a
/// field the client session reads from the head (framing, `Connection`, `Upgrade`) or
/// `Host` itself, and a name or value the map would refuse (its error is the one reported).
fn field_lines(host: &str, fields: &[(&str, &str)]) -> Option<Vec<u8>> {
    const HEAD_OWN: [&str; 9] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-connection",
    ];
    let len = 8 + host.len() + fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (i, (k, v)) in fields.iter().enumerate() {
        let valid_name = !k.is_empty() && k.bytes().all(|b| TCHAR[b as usize]);
        if !valid_name
            || crate::scan::any_control(v.as_bytes())
            || HEAD_OWN.iter().any(|n| n.eq_ignore_ascii_case(k))
            || fields[..i].iter().any(|(p, _)| p.eq_ignore_ascii_case(k))
        {
            return None;
        }
        for part in [k.as_bytes(), b": ", v.as_bytes(), b"\r\n"] {
            out.extend_from_slice(part);
        }
    }
    Some(out)
}

/// The bytes of a field name (RFC 9110 `tchar`).
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    t
};

/// Interim (1xx) answers skipped before a final one; more is a broken peer.
const MAX_INTERIM: u32 = 8;

thread_local! {
    /// One outbound client per thread. A connection is registered with the reactor of the
    /// thread that opened it; kept in that thread's pool, it is reused by a request on the
    /// same core, and its readiness never has to wake another core.
    static CLIENT: Arc<Client> = Arc::new(Client::new());
}

/// This thread's outbound client (its connection pool is shared by the thread's callers).
pub fn client() -> Arc<Client> {
    CLIENT.with(Arc::clone)
}

pub struct Client {
    connector: Connector,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client { connector: Connector::new(None) }
    }

    /// Sends `call` to `ep`; a connection is returned to the pool after a whole answer.
    pub async fn send(&self, ep: &Endpoint, call: Call<'_>) -> Result<Answer, OutboundError> {
        let after = call.timeout;
        match tokio::time::timeout(after, self.exchange(ep, call)).await {
            Ok(r) => r,
            Err(_) => Err(OutboundError::Timeout { url: ep.url.clone(), after }),
        }
    }

    async fn exchange(&self, ep: &Endpoint, call: Call<'_>) -> Result<Answer, OutboundError> {
        let url = || ep.url.clone();
        let send = |why: String| OutboundError::Send { url: url(), why };
        let mut peer = HttpPeer::new(ep.addr, ep.tls, if ep.tls { ep.sni.clone() } else { String::new() });
        // `send` bounds the whole exchange with one timer: no timer per read and write
        peer.options.connection_timeout = Some(call.timeout);
        let (mut session, _) = self
            .connector
            .get_http_session(&peer)
            .await
            .map_err(|e| OutboundError::Connect { url: url(), why: e.to_string() })?;
        // the head keeps the framing; the call's fields, checked, go as lines after it (no
        // header map to fill and write), unless one of them needs the map (below)
        let fields = field_lines(&ep.host, call.headers);
        let capacity = if fields.is_some() { 1 } else { call.headers.len() + 2 };
        let mut req = match &ep.uri {
            // the head from its parts: the target parsed with the endpoint, no case map
            Some(uri) => {
                let (mut parts, ()) = http::Request::new(()).into_parts();
                parts.method = http::Method::from_bytes(call.method.as_bytes()).map_err(|e| send(e.to_string()))?;
                parts.uri = uri.clone();
                parts.headers = http::HeaderMap::with_capacity(capacity);
                RequestHeader::from(parts)
            }
            None => RequestHeader::build_no_case(call.method, ep.target.as_bytes(), Some(capacity))
                .map_err(|e| send(e.to_string()))?,
        };
        if fields.is_none() {
            // field names go lower-cased (one header map, not a second one for their case)
            req.insert_header(http::header::HOST, ep.host.as_str()).map_err(|e| send(e.to_string()))?;
            for (k, v) in call.headers {
                let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| send(e.to_string()))?;
                req.insert_header(name, *v).map_err(|e| send(e.to_string()))?;
            }
        }
        if let Some(b) = &call.body {
            let mut n = itoa::Buffer::new();
            req.insert_header(http::header::CONTENT_LENGTH, n.format(b.len())).map_err(|e| send(e.to_string()))?;
        }
        // the peer offers HTTP/1.1 only (its default ALPN): head and body go in one send
        let HttpSession::H1(h1) = &mut session else {
            return Err(send("the peer did not speak HTTP/1.1".into()));
        };
        h1.write_request_with_fields(
            Box::new(req),
            fields.as_deref().unwrap_or_default(),
            call.body.as_deref().unwrap_or_default(),
        )
        .await
        .map_err(|e| send(e.to_string()))?;
        let receive = |why: String| OutboundError::Receive { url: url(), why };
        // interim answers (100 Continue, 103 Early Hints) are skipped, as RFC 9110 15.2 asks
        // of a client; a 101 is no answer to a plain request
        let mut interim = 0;
        let status = loop {
            h1.read_response().await.map_err(|e| receive(e.to_string()))?;
            let status = h1.get_status().ok_or_else(|| receive("no head".into()))?.as_u16();
            match status {
                101 => return Err(receive("101 Switching Protocols to a plain request".into())),
                100..=199 if interim < MAX_INTERIM => interim += 1,
                100..=199 => return Err(receive("too many interim (1xx) answers".into())),
                _ => break status,
            }
        };
        // the body is copied once, from the session's buffer
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = h1.read_body_ref().await.map_err(|e| receive(e.to_string()))? {
            if buf.len() + chunk.len() > call.max_answer {
                return Err(OutboundError::TooLarge { url: url(), limit: call.max_answer });
            }
            buf.extend_from_slice(chunk);
        }
        let headers = h1.resp_header().map(|h| h.headers.clone()).unwrap_or_default();
        self.connector.release_http_session(session, &peer, Some(Duration::from_secs(60))).await;
        Ok(Answer { status, headers, body: buf.freeze() })
    }
}

/// A GET at config load (a JWKS document): its own small runtime and connection, so it
/// runs on the loading thread whatever runtime is (or is not) around it.
pub fn fetch_blocking(ep: &Endpoint, timeout: Duration, max_answer: usize) -> Result<Answer, OutboundError> {
    let ep = ep.clone();
    // a thread of its own: the caller may itself be inside a runtime (a reload)
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OutboundError::Connect { url: ep.url.clone(), why: format!("runtime: {e}") })?;
        rt.block_on(Client::new().send(&ep, Call { method: "GET", headers: &[], body: None, timeout, max_answer }))
    })
    .join()
    .unwrap_or_else(|_| Err(OutboundError::Receive { url: String::new(), why: "the fetching thread failed".into() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's fields go as lines only when they are exactly what the header map would
    /// write; anything else (a repeat, a framing or connection field, `Host`, a value with a
    /// line break or a bad name) goes through the map.
    #[test]
    fn field_lines_are_written_only_when_the_map_would_write_the_same() {
        let lines =
            field_lines("fn.local:9", &[("content-type", "application/json"), ("X-Amz-Date", "20261207T000000Z")]);
        assert_eq!(
            lines.as_deref(),
            Some(&b"Host: fn.local:9\r\ncontent-type: application/json\r\nX-Amz-Date: 20261207T000000Z\r\n"[..])
        );
        assert_eq!(field_lines("h", &[]).as_deref(), Some(&b"Host: h\r\n"[..]));
        for fields in [
            &[("x-a", "1"), ("X-A", "2")][..],
            &[("Transfer-Encoding", "chunked")],
            &[("content-length", "5")],
            &[("connection", "close")],
            &[("upgrade", "websocket")],
            &[("host", "other")],
            &[("x-a", "1\r\nx-injected: 1")],
            &[("x-a", "1\n")],
            &[("x-a", "\0")],
            &[("x a", "1")],
            &[("x-a:", "1")],
            &[("", "1")],
        ] {
            assert_eq!(field_lines("h", fields), None, "{fields:?}");
        }
        // a tab, obs-text and an empty value are what the map accepts too
        assert!(field_lines("h", &[("x-a", "a\tb é"), ("x-b", "")]).is_some());
    }

    #[test]
    fn endpoints_resolve_at_parse() {
        let e = Endpoint::parse("http://127.0.0.1:8081/auth?x=1").expect("endpoint");
        assert_eq!((e.host.as_str(), e.target(), e.tls), ("127.0.0.1:8081", "/auth?x=1", false));
        assert_eq!(e.uri.as_ref().map(|u| u.to_string()).as_deref(), Some("/auth?x=1"));
        assert!(e.is_loopback());
        // another target is parsed again with it (the head a call sends is made from it)
        let own = e.with_target("/pets/7?a=%20".into());
        assert_eq!(
            (own.target(), own.host.as_str(), own.url.as_str()),
            ("/pets/7?a=%20", "127.0.0.1:8081", e.url.as_str())
        );
        assert_eq!(own.uri.as_ref().map(|u| u.to_string()).as_deref(), Some("/pets/7?a=%20"));
        assert!(e.with_target("/a b".into()).uri.is_none(), "a target that does not parse fails at the call");
        let e = Endpoint::parse("https://localhost/").expect("endpoint");
        assert_eq!((e.host.as_str(), e.sni.as_str(), e.tls, e.addr.port()), ("localhost", "localhost", true, 443));
        assert!(matches!(Endpoint::parse("ftp://x/"), Err(OutboundError::BadUrl(_))));
    }

    #[test]
    fn errors_are_typed_and_bounded() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for (i, c) in l.incoming().enumerate() {
                let Ok(mut c) = c else { continue };
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                match i {
                    0 => {
                        let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
                    }
                    1 => {
                        let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n");
                        let _ = c.write_all(&[b'x'; 100]);
                    }
                    _ => std::thread::sleep(Duration::from_secs(2)),
                }
            }
        });
        let ep = Endpoint::parse(&format!("http://{addr}/")).expect("endpoint");
        let a = fetch_blocking(&ep, Duration::from_secs(2), 1024).expect("answer");
        assert_eq!((a.status, &a.body[..]), (200, &b"hello"[..]));
        assert!(matches!(fetch_blocking(&ep, Duration::from_secs(2), 10), Err(OutboundError::TooLarge { .. })));
        assert!(matches!(fetch_blocking(&ep, Duration::from_millis(200), 10), Err(OutboundError::Timeout { .. })));
        let closed = Endpoint::parse("http://127.0.0.1:1/").expect("endpoint");
        assert!(matches!(fetch_blocking(&closed, Duration::from_secs(1), 10), Err(OutboundError::Connect { .. })));
    }
}
