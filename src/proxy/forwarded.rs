//! X-Forwarded-For/-Proto/-Host: who the client is, and what the integration is told.
//! An incoming X-Forwarded-For is believed only from a `server.trusted_proxies` peer;
//! from anyone else it is replaced, so a client cannot choose the address that CIDR rules,
//! limits and logs see.
//!
//! Rules (README "Security model"):
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
        return Forwarded { client_ip: Some(peer), xff: peer.to_string(), trusted_peer: false };
    }
    let Some(chain) = incoming_xff.map(str::trim).filter(|s| !s.is_empty()) else {
        return Forwarded { client_ip: Some(peer), xff: peer.to_string(), trusted_peer: true };
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
