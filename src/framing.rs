//! Request framing checks that run before anything else. Pingora parses HTTP/1 framing
//! leniently (it lets Transfer-Encoding win over Content-Length); a gateway in front of
//! origins that may parse differently must not forward ambiguous framing at all, or a
//! second request can be smuggled past routing and policy. Every ambiguity is refused
//! with 400 and the connection is closed.

use pingora::http::RequestHeader;

/// Why a request's framing was refused. `raw_head` is the HTTP/1 header block as received:
/// Pingora drops Content-Length when Transfer-Encoding is present, so only the raw bytes
/// still show that both were sent.
pub fn check(req: &RequestHeader, raw_head: Option<&[u8]>) -> Result<(), &'static str> {
    let f = Fields::of(req);
    // Host names the API (custom domains) and the cache entry: it must be one value
    if f.hosts > 1 {
        return Err("more than one Host header");
    }
    if let (Some(authority), Some(host)) = (req.uri.authority(), f.host) {
        if !authority.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()) {
            return Err("Host differs from the request target's authority");
        }
    }
    // singleton fields a concern reads (validation, CORS): two values would let the gateway
    // check one and the origin act on the other
    if f.content_types > 1 || f.origins > 1 {
        return Err("a repeated singleton field (Content-Type or Origin)");
    }
    // methods are case-sensitive: `get` is not GET, and must not reach an ANY route that
    // GET would not (routes, authorizers and caches are keyed on the exact method)
    if is_miscased_standard_method(req.method.as_str()) {
        return Err("a standard method in the wrong case");
    }
    if req.version == http::Version::HTTP_2 || req.version == http::Version::HTTP_3 {
        return Ok(());
    }
    if let Some(te) = f.transfer_encoding {
        if f.transfer_encodings > 1 {
            return Err("more than one Transfer-Encoding header");
        }
        if !te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err("Transfer-Encoding other than chunked");
        }
        if f.content_length.is_some() || raw_head.is_some_and(has_content_length_line) {
            return Err("both Content-Length and Transfer-Encoding");
        }
        if req.version == http::Version::HTTP_10 || req.version == http::Version::HTTP_09 {
            return Err("Transfer-Encoding in an HTTP/1.0 request");
        }
    }
    if f.content_length_conflict {
        return Err("invalid or conflicting Content-Length");
    }
    Ok(())
}

/// What the framing rules read of a head's fields, gathered in one pass over them (one
/// lookup per rule would hash each name again, and most heads have few fields).
#[derive(Default)]
struct Fields<'a> {
    hosts: usize,
    host: Option<&'a http::HeaderValue>,
    content_types: usize,
    origins: usize,
    transfer_encodings: usize,
    transfer_encoding: Option<&'a http::HeaderValue>,
    content_length: Option<&'a http::HeaderValue>,
    /// A Content-Length value that is empty, not all digits, or not the first one's.
    content_length_conflict: bool,
}

impl<'a> Fields<'a> {
    fn of(req: &'a RequestHeader) -> Fields<'a> {
        use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
        let mut f = Fields::default();
        for (name, value) in req.headers.iter() {
            match *name {
                HOST => {
                    f.hosts += 1;
                    f.host.get_or_insert(value);
                }
                CONTENT_TYPE => f.content_types += 1,
                ORIGIN => f.origins += 1,
                TRANSFER_ENCODING => {
                    f.transfer_encodings += 1;
                    f.transfer_encoding.get_or_insert(value);
                }
                CONTENT_LENGTH => {
                    let first = *f.content_length.get_or_insert(value);
                    let digits = !value.is_empty() && value.as_bytes().iter().all(u8::is_ascii_digit);
                    f.content_length_conflict |= !digits || value.as_bytes() != first.as_bytes();
                }
                _ => {}
            }
        }
        f
    }
}

/// The size of a request head as its fields count it (request line, then `name: value\r\n`
/// per field), the same for HTTP/1 and HTTP/2, and its number of fields.
pub fn head_size(req: &RequestHeader) -> (usize, usize) {
    // the request target as it was sent: origin form, or absolute form with scheme and host
    let uri = &req.uri;
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method.as_str().len() + target + 12;
    let fields: usize = req.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    (line + fields, req.headers.len())
}

fn is_miscased_standard_method(m: &str) -> bool {
    const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    STANDARD.iter().any(|s| s.eq_ignore_ascii_case(m) && *s != m)
}

fn has_content_length_line(raw: &[u8]) -> bool {
    raw.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii_start();
        line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: http::Version, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).expect("req");
        r.set_version(version);
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    fn check_(r: &RequestHeader) -> Result<(), &'static str> {
        check(r, None)
    }

    #[test]
    fn raw_head_reveals_a_dropped_content_length() {
        let r = req(http::Version::HTTP_11, &[("transfer-encoding", "chunked")]);
        assert!(check(&r, Some(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")).is_ok());
        assert!(check(&r, Some(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n")).is_err());
    }

    #[test]
    fn refuses_ambiguous_framing() {
        use http::Version as V;
        assert!(check_(&req(V::HTTP_11, &[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_(&req(V::HTTP_11, &[("content-length", "5")])).is_ok());
        assert!(check_(&req(V::HTTP_11, &[("content-length", "5"), ("content-length", "5")])).is_ok());
        assert!(check_(&req(V::HTTP_11, &[("transfer-encoding", "chunked"), ("content-length", "5")])).is_err());
        assert!(
            check_(&req(V::HTTP_11, &[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")])).is_err()
        );
        assert!(check_(&req(V::HTTP_11, &[("transfer-encoding", "gzip, chunked")])).is_err());
        assert!(check_(&req(V::HTTP_10, &[("transfer-encoding", "chunked")])).is_err());
        assert!(check_(&req(V::HTTP_11, &[("content-length", "5"), ("content-length", "6")])).is_err());
        assert!(check_(&req(V::HTTP_11, &[("content-length", "+5")])).is_err());
        assert!(check_(&req(V::HTTP_11, &[("content-length", "")])).is_err());
        assert!(check_(&req(V::HTTP_11, &[("content-length", "5"), ("content-length", "05")])).is_err());
        assert!(check_(&req(V::HTTP_11, &[("content-length", "5"), ("x-a", "1"), ("content-length", "x")])).is_err());
        // the first Transfer-Encoding is the one judged, whatever comes between
        assert!(check_(&req(V::HTTP_11, &[("x-a", "1"), ("transfer-encoding", "chunked"), ("x-b", "2")])).is_ok());
        // HTTP/2 frames bodies itself: its Content-Length is not a framing question here
        assert!(check_(&req(V::HTTP_2, &[("content-length", "5"), ("content-length", "6")])).is_ok());
    }

    #[test]
    fn host_and_method_must_be_unambiguous() {
        use http::Version as V;
        assert!(check_(&req(V::HTTP_11, &[("host", "a"), ("host", "b")])).is_err());
        assert!(check_(&req(V::HTTP_2, &[("host", "a"), ("host", "a")])).is_err());
        assert!(
            check_(&req(V::HTTP_11, &[("content-type", "text/plain"), ("content-type", "application/json")])).is_err()
        );
        assert!(check_(&req(V::HTTP_2, &[("origin", "https://a"), ("origin", "https://b")])).is_err());
        let mut r = RequestHeader::build("GET", b"/x", None).expect("req");
        r.set_uri("http://a.example/x".parse().expect("uri"));
        r.insert_header("host", "b.example").expect("h");
        assert!(check_(&r).is_err());
        r.insert_header("host", "A.example").expect("h");
        assert!(check_(&r).is_ok());
        for (m, ok) in
            [("get", false), ("Get", false), ("head", false), ("GET", true), ("PROPFIND", true), ("purge", true)]
        {
            let r = RequestHeader::build(m, b"/", None).expect("req");
            assert_eq!(check_(&r).is_ok(), ok, "{m}");
        }
    }
}
