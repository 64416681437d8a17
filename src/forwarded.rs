//! X-Forwarded-For/-Proto/-Host: who the client is, and what the integration is told.
//! An incoming X-Forwarded-For is believed only from a `server.trusted_proxies` peer;
//! from anyone else it is replaced, so a client cannot choose the address that CIDR rules,
//! limits and logs see.
//!
//! Rules (docs/security.md):
//! - Every `X-Forwarded-For` line is read, in order, as one list (RFC 9110 field
//!   combination, `request::header`): a proxy that adds its own line is read like one that
//!   appends to the existing line.
//! - The chain is walked from the right; the client is the first address that is not a
//!   trusted proxy. If every entry is trusted, the leftmost one is the client.
//! - An entry is an IPv4 address, an IPv6 address, `[v6]`, or either with a `:port`
//!   (`1.2.3.4:5678`, `[::1]:443`); the port is ignored.
//! - Anything else (`unknown`, an obfuscated name, garbage, an empty entry) that is reached
//!   by the walk makes the client *unknown*: it was written by a trusted proxy, so nothing
//!   to its left can be believed, and the proxy itself is not the client. An unknown client
//!   matches no CIDR rule (a policy with CIDR rules refuses it) and logs as `""`.

use http::header::InvalidHeaderValue;
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;

/// The outcome for one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The client address: the peer, or (behind trusted proxies) the rightmost untrusted
    /// address of the chain; `None` when a trusted hop's entry cannot be parsed.
    pub client_ip: Option<IpAddr>,
    /// The X-Forwarded-For to send upstream.
    pub xff: String,
    /// Whether the peer is a trusted proxy (its X-Forwarded-Proto/-Host are kept).
    pub trusted_peer: bool,
}

/// Headers removed from requests of peers that are not trusted proxies (X-Forwarded-For,
/// -Proto and -Host are replaced instead): they claim things about the client, the path or
/// the method that only a proxy in front of the gateway may claim, and no cache key covers
/// them.
pub const UNTRUSTED_STRIPPED: [&str; 7] = [
    "forwarded",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-http-method-override",
    "x-real-ip",
    "true-client-ip",
];

/// The gateway's reserved namespace: fields only the gateway sets (the caller's principal and
/// authorizer context, WebSocket connection facts). A client's copies never reach an
/// integration.
pub const RESERVED_PREFIX: &str = "x-edgegate-";

/// Whether `name` (lower case, as `http` stores it) is in the reserved namespace.
pub fn is_reserved(name: &str) -> bool {
    name.len() >= RESERVED_PREFIX.len() && name.as_bytes()[..RESERVED_PREFIX.len()] == *RESERVED_PREFIX.as_bytes()
}

/// What the gateway tells an integration about the request's path to it.
pub struct Hop<'a> {
    /// The X-Forwarded-For to send (the trusted chain plus the client, `Forwarded::xff`).
    pub xff: &'a str,
    pub proto: &'a str,
    pub host: &'a str,
    /// The listener's port.
    pub port: Option<u16>,
    /// The peer is one of `server.trusted_proxies`.
    pub trusted_peer: bool,
}

// The forwarding fields' names, made once: a name given as a string is checked again at
// each insert.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

impl<'a> Hop<'a> {
    /// The hop of a client as `proxy::identify` established it.
    pub fn of(c: &'a crate::request::Client) -> Hop<'a> {
        Hop {
            xff: &c.xff,
            proto: c.told_proto().as_str(),
            host: c.told_host(),
            port: c.port,
            trusted_peer: c.trusted_peer,
        }
    }

    /// Whether a client's field `name` (lower case) is dropped on the way to an integration.
    pub fn drops(&self, name: &str) -> bool {
        is_reserved(name) || !self.trusted_peer && UNTRUSTED_STRIPPED.contains(&name)
    }

    /// The forwarding fields the gateway sets, as the values written: X-Forwarded-Port is set
    /// unless a trusted proxy sent one (`keep_port`). A value that is no field value (a
    /// trusted proxy's odd claim) is an `Err`: the caller refuses or leaves it out.
    pub fn fields(
        &self,
        keep_port: bool,
    ) -> impl Iterator<Item = (&'static HeaderName, Result<HeaderValue, InvalidHeaderValue>)> {
        let port = self.port.filter(|_| !(keep_port && self.trusted_peer));
        // the usual scheme words need no copy
        let proto = match self.proto {
            "http" => Ok(HeaderValue::from_static("http")),
            "https" => Ok(HeaderValue::from_static("https")),
            other => HeaderValue::from_str(other),
        };
        [
            (&X_FORWARDED_FOR, HeaderValue::from_str(self.xff)),
            (&X_FORWARDED_PROTO, proto),
            (&X_FORWARDED_HOST, HeaderValue::from_str(self.host)),
        ]
        .into_iter()
        .chain(port.map(|p| (&X_FORWARDED_PORT, Ok(HeaderValue::from(p)))))
    }
}

/// The fields an integration is told of a request's `headers`: without what a client may not
/// say to it, and with the forwarding fields the gateway vouches for. One rule for every
/// integration (proxied http and VPC-link targets, the edge's origins, Lambda events,
/// templates):
/// - every field in the reserved `x-edgegate-` namespace goes;
/// - X-Forwarded-For is the trusted chain plus the client address, as AWS appends it;
/// - X-Forwarded-Proto, -Host and -Port are the gateway's (a trusted proxy's -Proto and -Host
///   are believed, and its -Port kept);
/// - from a peer that is not a trusted proxy, the other forwarding claims
///   ([`UNTRUSTED_STRIPPED`]) go.
pub fn to_integration(headers: &http::HeaderMap, hop: &Hop) -> http::HeaderMap {
    // a new map with room for the forwarding fields (a clone is exactly full: its first
    // insert would rehash every field), the dropped fields left out on the way
    let mut told = http::HeaderMap::with_capacity(headers.keys_len() + 4);
    for (name, value) in headers {
        if !hop.drops(name.as_str()) {
            told.append(name.clone(), value.clone());
        }
    }
    let keep_port = told.contains_key(&X_FORWARDED_PORT);
    for (name, v) in hop.fields(keep_port) {
        match v {
            Ok(v) => told.insert(name, v),
            Err(_) => told.remove(name),
        };
    }
    told
}

pub fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// One X-Forwarded-For entry: an address, with or without brackets and a port.
pub fn parse_entry(e: &str) -> Option<IpAddr> {
    let e = e.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ok_after = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return if ok_after { inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6) } else { None };
    }
    let (host, port) = e.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Works out the client and the X-Forwarded-For value from the peer and its header (all of
/// its lines, already combined by `request::header`).
pub fn forwarded(peer: IpAddr, incoming_xff: Option<&str>, trusted: &[IpNet]) -> Forwarded {
    if !is_trusted(&peer, trusted) {
        return Forwarded { client_ip: Some(peer), xff: crate::request::ip_text(peer), trusted_peer: false };
    }
    let Some(chain) = incoming_xff.map(str::trim).filter(|s| !s.is_empty()) else {
        return Forwarded { client_ip: Some(peer), xff: crate::request::ip_text(peer), trusted_peer: true };
    };
    let mut client = Some(peer);
    for hop in chain.rsplit(',') {
        match parse_entry(hop) {
            Some(ip) => {
                client = Some(ip);
                if !is_trusted(&ip, trusted) {
                    break;
                }
            }
            None => {
                client = None; // written by a trusted hop: the client is unknown
                break;
            }
        }
    }
    Forwarded { client_ip: client, xff: format!("{chain}, {peer}"), trusted_peer: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|c| c.parse().expect("cidr")).collect()
    }

    #[test]
    fn integrations_get_only_what_the_gateway_vouches_for() {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil.test"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("true-client-ip", "6.6.6.6"),
            ("x-edgegate-principal-id", "admin"),
            ("X-Edgegate-Authorizer-Role", "root"),
            ("x-other", "kept"),
        ] {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).expect("n"), v.parse().expect("v"));
        }
        let hop = Hop { xff: "127.0.0.9", proto: "https", host: "api.test", port: Some(8443), trusted_peer: false };
        let h = to_integration(&h, &hop);
        assert_eq!(h.get("x-forwarded-for").map(|v| v.as_bytes()), Some(&b"127.0.0.9"[..]));
        assert_eq!(h.get("x-forwarded-proto").map(|v| v.as_bytes()), Some(&b"https"[..]));
        assert_eq!(h.get("x-forwarded-host").map(|v| v.as_bytes()), Some(&b"api.test"[..]));
        assert_eq!(h.get("x-forwarded-port").map(|v| v.as_bytes()), Some(&b"8443"[..]));
        for gone in
            ["x-real-ip", "forwarded", "true-client-ip", "x-edgegate-principal-id", "x-edgegate-authorizer-role"]
        {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert!(h.contains_key("x-other"));
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let f = forwarded("127.0.0.9".parse().expect("ip"), Some("1.2.3.4"), &nets(&["127.0.0.2/32"]));
        assert_eq!(f.client_ip, Some("127.0.0.9".parse().expect("ip")));
        assert_eq!(f.xff, "127.0.0.9");
        assert!(!f.trusted_peer);
    }

    #[test]
    fn trusted_chain_yields_rightmost_untrusted() {
        let t = nets(&["127.0.0.0/24"]);
        let f = forwarded("127.0.0.1".parse().expect("ip"), Some("9.9.9.9, 8.8.8.8, 127.0.0.5"), &t);
        assert_eq!(f.client_ip, Some("8.8.8.8".parse().expect("ip")));
        assert_eq!(f.xff, "9.9.9.9, 8.8.8.8, 127.0.0.5, 127.0.0.1");
        let f = forwarded("127.0.0.1".parse().expect("ip"), None, &t);
        assert_eq!((f.client_ip, f.xff.as_str()), (Some("127.0.0.1".parse().expect("ip")), "127.0.0.1"));
        // garbage written by a trusted hop: the client is unknown, never the proxy
        let f = forwarded("127.0.0.1".parse().expect("ip"), Some("junk, 127.0.0.3"), &t);
        assert_eq!(f.client_ip, None);
        let f = forwarded("127.0.0.1".parse().expect("ip"), Some("9.9.9.9, unknown"), &t);
        assert_eq!(f.client_ip, None);
        // every entry trusted: the leftmost is the client
        let f = forwarded("127.0.0.1".parse().expect("ip"), Some("127.0.0.7, 127.0.0.3"), &t);
        assert_eq!(f.client_ip, Some("127.0.0.7".parse().expect("ip")));
    }

    #[test]
    fn entries_with_ports_and_brackets() {
        for (e, want) in [
            ("1.2.3.4", Some("1.2.3.4")),
            (" 1.2.3.4:5678 ", Some("1.2.3.4")),
            ("::1", Some("::1")),
            ("[::1]", Some("::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("[::1]x", None),
            ("1.2.3.4:", None),
            ("1.2.3.4:99999999", None),
            ("unknown", None),
            ("", None),
            ("_hidden", None),
            ("2001:db8::1:443", Some("2001:db8::1:443")),
        ] {
            assert_eq!(parse_entry(e), want.map(|w| w.parse().expect("ip")), "{e:?}");
        }
    }

    #[test]
    fn lines_combined_read_as_one_chain() {
        // two lines "8.8.8.8" and "127.0.0.5" from a trusted proxy, combined by request::header
        let t = nets(&["127.0.0.0/24"]);
        let f = forwarded("127.0.0.1".parse().expect("ip"), Some("8.8.8.8, 127.0.0.5"), &t);
        assert_eq!(f.client_ip, Some("8.8.8.8".parse().expect("ip")));
    }
}
