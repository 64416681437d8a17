//! The canonical view of a request's header fields: ONE rule, used by every concern that
//! reads a header (authorizer identity and events, API keys, resource policies, cache keys,
//! templates, the access log and forwarding decisions), so no two of them can disagree on
//! what a request said.
//!
//! The rule (RFC 9110 §5.3 field combination): a field sent on several lines is read as
//! all of its lines, in the order received, joined with `", "` (`Cookie` lines with `"; "`,
//! RFC 6265 §5.4). Bytes that are not UTF-8 are replaced (U+FFFD). A concern never reads
//! "the first" or "the last" line; a repeated identity header therefore keys caches on all
//! of its values and reaches authorizers as the same joined value.

use crate::tls::ClientCert;
use http::header::{AsHeaderName, HeaderMap};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// `x-request-id`, on every request to an integration and every answer; made once (a name
/// given as a string is checked again at each insert).
pub static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

fn separator(name: &str) -> &'static str {
    if name.eq_ignore_ascii_case("cookie") {
        "; "
    } else {
        ", "
    }
}

/// A field value as text: borrowed when it is valid UTF-8 (nearly every value, after one
/// check), the invalid bytes replaced otherwise.
pub fn text(v: &http::HeaderValue) -> Cow<'_, str> {
    match std::str::from_utf8(v.as_bytes()) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(v.as_bytes()),
    }
}

/// The value of `name` under the one rule; `None` when the request does not carry it.
pub fn header<K: AsHeaderName + AsRef<str>>(h: &HeaderMap, name: K) -> Option<Cow<'_, str>> {
    let sep = separator(name.as_ref());
    let all = h.get_all(name);
    let mut it = all.iter();
    let first = it.next()?;
    let Some(second) = it.next() else { return Some(text(first)) };
    let mut s = String::with_capacity(first.len() + second.len() + 2);
    s.push_str(&text(first));
    for v in std::iter::once(second).chain(it) {
        s.push_str(sep);
        s.push_str(&text(v));
    }
    Some(Cow::Owned(s))
}

/// Whether `name` was sent on more than one line (for fields that must be single, such as
/// the parts of a SigV4 signature).
pub fn repeated<K: AsHeaderName>(h: &HeaderMap, name: K) -> bool {
    h.get_all(name).iter().nth(1).is_some()
}

/// Every field of the request under the one rule, by lower-case name (for templates,
/// authorizer events and, later, Lambda events).
pub fn header_map(h: &HeaderMap) -> BTreeMap<&str, String> {
    let mut m: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in h {
        let v = text(v);
        m.entry(k.as_str())
            .and_modify(|s| {
                s.push_str(separator(k.as_str()));
                s.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    m
}

// ---------------------------------------------------------------- the request view

/// The scheme a request arrived on, or that a trusted proxy says the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http,
    Https,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Https => "https",
        }
    }

    /// `http` or `https` exactly (a forwarded claim); anything else is not believed.
    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "http" => Some(Proto::Http),
            "https" => Some(Proto::Https),
            _ => None,
        }
    }
}

/// The client as the gateway established it (`proxy::identify`, the forwarding rule of
/// `forwarded`): set once, before routing, and read by every later concern.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address: the peer, or the last untrusted hop a trusted proxy names.
    pub ip: Option<IpAddr>,
    /// The X-Forwarded-For chain the integration is told (ending in the peer).
    pub xff: String,
    /// The peer is one of `server.trusted_proxies`.
    pub trusted_peer: bool,
    /// The scheme of the connection to the gateway.
    pub proto: Proto,
    /// A trusted proxy's `X-Forwarded-Proto` (one value, `http` or `https`).
    pub forwarded_proto: Option<Proto>,
    /// A trusted proxy's `X-Forwarded-Host` (one value).
    pub forwarded_host: Option<String>,
    /// The Host the request named, lower case, without its port.
    pub host: String,
    /// The port of the listener the request came in on.
    pub port: Option<u16>,
    /// The verified client certificate of a mutual-TLS connection.
    pub cert: Option<Arc<ClientCert>>,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            ip: None,
            xff: String::new(),
            trusted_peer: false,
            proto: Proto::Http,
            forwarded_proto: None,
            forwarded_host: None,
            host: String::new(),
            port: None,
            cert: None,
        }
    }
}

impl Client {
    /// The scheme the integration is told: the trusted proxy's, else the connection's.
    pub fn told_proto(&self) -> Proto {
        self.forwarded_proto.unwrap_or(self.proto)
    }

    /// The host the integration is told: the trusted proxy's, else the request's.
    pub fn told_host(&self) -> &str {
        self.forwarded_host.as_deref().unwrap_or(&self.host)
    }

    /// The client address as text (empty when unknown), as events and logs carry it.
    pub fn source_ip(&self) -> String {
        self.ip.map(ip_text).unwrap_or_default()
    }
}

/// An address as text, as `Display` writes it; an IPv4 address (every request's client, in
/// the common case) without the formatting machinery.
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let mut out = String::with_capacity(15);
            let mut digits = itoa::Buffer::new();
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(o));
            }
            out
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

/// The authenticated caller, for templates (`context.authorizer.*`), logs and the Lambda
/// event.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Principal {
    #[serde(rename = "principalId")]
    pub principal_id: String,
    /// JWT claims; for a Lambda-style authorizer, its answer's `context` (as before).
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub scopes: Vec<String>,
    /// A Lambda-style authorizer's `context`, reachable as `context.authorizer.<key>` as in
    /// AWS's `$context.authorizer.<key>`. Keys named like the fields above are left out.
    #[serde(flatten)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

impl Principal {
    /// The keys of `context` that would shadow a field of the principal.
    pub const RESERVED: [&'static str; 3] = ["principalId", "claims", "scopes"];
}

/// Who admission found the caller to be.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The caller as the route's authorizer established it.
    pub principal: Option<Arc<Principal>>,
    /// The authorizer was a JWT one (Lambda events: `authorizer.jwt`).
    pub jwt: bool,
    /// The API key that was checked (its id only: never the key).
    pub api_key_id: Option<Arc<str>>,
}

/// Where a request was routed, by name.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    pub api: &'a str,
    pub stage: &'a str,
    /// `GET /pets/{id}`; empty when no route matched.
    pub route_key: &'a str,
    /// The path below the stage and base path, normalised: what routes match.
    pub path: &'a str,
    pub params: &'a [(String, String)],
    pub variables: &'a BTreeMap<String, String>,
}

impl Matched<'_> {
    /// The route's resource: `/pets/{id}` of `GET /pets/{id}`.
    pub fn resource(&self) -> &str {
        self.route_key.split_once(' ').map(|(_, p)| p).unwrap_or(self.route_key)
    }
}

/// One request as every deciding concern reads it: built once the request is routed
/// (`proxy::ctx::RequestCtx::view`), and taken by reference by admission, authorizers,
/// the cache key, templates, Lambda events, AWS requests, the access log and WebSocket
/// handshakes, so none of them keeps its own copy of the request. Header fields are read
/// through the one repeated-field rule ([`RequestView::header`]).
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// Method, URI as received (path and query) and header fields.
    pub head: &'a http::request::Parts,
    pub route: Matched<'a>,
    pub client: &'a Client,
    pub caller: &'a Caller,
    pub request_id: &'a str,
    pub received_at: SystemTime,
    /// The whole body, once a concern needed it read (`proxy::body`).
    pub body: Option<&'a [u8]>,
}

impl<'a> RequestView<'a> {
    pub fn method(&self) -> &'a str {
        self.head.method.as_str()
    }

    /// The path as the client sent it.
    pub fn raw_path(&self) -> &'a str {
        self.head.uri.path()
    }

    pub fn query(&self) -> Option<&'a str> {
        self.head.uri.query()
    }

    pub fn headers(&self) -> &'a HeaderMap {
        &self.head.headers
    }

    /// A header field under the one rule (all lines, in order, joined).
    pub fn header<K: AsHeaderName + AsRef<str>>(&self, name: K) -> Option<Cow<'a, str>> {
        header(&self.head.headers, name)
    }

    pub fn api(&self) -> &'a str {
        self.route.api
    }

    pub fn stage(&self) -> &'a str {
        self.route.stage
    }

    /// The route key (`GET /pets/{id}`), empty when no route matched.
    pub fn route(&self) -> &'a str {
        self.route.route_key
    }

    pub fn user_agent(&self) -> Cow<'a, str> {
        self.header(http::header::USER_AGENT).unwrap_or_default()
    }

    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`, as events and logs name the protocol.
    pub fn protocol(&self) -> &'static str {
        match self.head.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        }
    }

    pub fn content_type(&self) -> Option<&'a str> {
        self.head.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
    }
}

/// Why the body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit (declared, or found while reading).
    TooLarge,
    /// The client stopped sending, or sent a malformed body.
    Broken,
    /// A body of unknown length longer than 64 KiB (`proxy::body::PREREAD_LIMIT`) on a route that reads it whole.
    LengthRequired,
    /// Read whole, but Pingora kept nothing to replay it from.
    Unreplayable,
}

impl BodyError {
    /// The gateway response for a body that could not be read whole.
    pub fn refusal(self) -> crate::responses::Refusal {
        use crate::responses::{Refusal, ResponseType};
        match self {
            BodyError::TooLarge => Refusal::new(ResponseType::RequestTooLarge),
            BodyError::Broken => {
                Refusal::new(ResponseType::BadRequestBody).with_message("the request body was not received")
            }
            BodyError::LengthRequired => Refusal::new(ResponseType::BadRequestBody)
                .with_status(411)
                .with_message("a body over 64 KiB needs a Content-Length on this route"),
            BodyError::Unreplayable => {
                log::warn!("a request body read whole could not be replayed to the integration");
                Refusal::new(ResponseType::Default5xx)
            }
        }
    }
}

// ---------------------------------------------------------------- query and media types

/// Decodes one query-string name or value (`+` is a space, then percent-decoding); borrows
/// when there is nothing to decode.
pub fn decode_component(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['%', '+']) {
        let plus = s.replace('+', " ");
        std::borrow::Cow::Owned(percent_encoding::percent_decode_str(&plus).decode_utf8_lossy().into_owned())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Parses a query string into decoded key/value pairs (last value wins).
pub fn query_map(q: Option<&str>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for pair in q.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| decode_component(s).into_owned();
        m.insert(dec(k), dec(v));
    }
    m
}

/// `application/json` or a `+json` type (as `media_type` returns it).
pub fn is_json(mt: &str) -> bool {
    mt == "application/json" || mt.ends_with("+json")
}

/// The media type of a Content-Type value, lower case, without parameters.
pub fn media_type(ct: Option<&str>) -> String {
    ct.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.0.200.7", "::1", "2001:db8::7", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn repeated_fields_are_all_their_lines_in_order() {
        let h = map(&[("x-token", "a"), ("Other", "z"), ("X-Token", "b"), ("cookie", "s=1"), ("cookie", "t=2")]);
        assert_eq!(header(&h, "x-token").as_deref(), Some("a, b"));
        assert_eq!(header(&h, "other").as_deref(), Some("z"));
        assert_eq!(header(&h, "cookie").as_deref(), Some("s=1; t=2"));
        assert_eq!(header(&h, "missing"), None);
        assert!(repeated(&h, "x-token") && !repeated(&h, "other"));
        let m = header_map(&h);
        assert_eq!(m["x-token"], "a, b");
        assert_eq!(m["cookie"], "s=1; t=2");
    }

    #[test]
    fn the_map_and_the_single_read_agree() {
        let h = map(&[("a", "1"), ("a", "2"), ("a", "3"), ("b", "x")]);
        let m = header_map(&h);
        for name in ["a", "b"] {
            assert_eq!(header(&h, name).as_deref(), Some(m[name].as_str()));
        }
    }
}
