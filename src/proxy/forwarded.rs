//! X-Forwarded-For/-Proto/-Host: who the client is, and what the integration is told.
//! An incoming X-Forwarded-For is believed only from a `server.trusted_proxies` peer;
//! from anyone else it is replaced, so a client cannot choose the address that CIDR rules,
//! limits and logs see.

use ipnet::IpNet;
use std::net::IpAddr;

/// The outcome for one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The client address: the peer, or (behind trusted proxies) the rightmost untrusted
    /// address of the chain.
    pub client_ip: IpAddr,
    /// The X-Forwarded-For to send upstream.
    pub xff: String,
    /// Whether the peer is a trusted proxy (its X-Forwarded-Proto/-Host are kept).
    pub trusted_peer: bool,
}

pub fn is_trusted(ip: &IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// Works out the client and the X-Forwarded-For value from the peer and its header.
pub fn forwarded(peer: IpAddr, incoming_xff: Option<&str>, trusted: &[IpNet]) -> Forwarded {
    if !is_trusted(&peer, trusted) {
        return Forwarded { client_ip: peer, xff: peer.to_string(), trusted_peer: false };
    }
    let Some(chain) = incoming_xff.map(str::trim).filter(|s| !s.is_empty()) else {
        return Forwarded { client_ip: peer, xff: peer.to_string(), trusted_peer: true };
    };
    let mut client = peer;
    for hop in chain.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip, trusted) {
                    break;
                }
            }
            Err(_) => break, // garbage: stop believing the chain here
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
        assert_eq!(f.client_ip.to_string(), "127.0.0.9");
        assert_eq!(f.xff, "127.0.0.9");
        assert!(!f.trusted_peer);
    }

    #[test]
    fn trusted_chain_yields_rightmost_untrusted() {
        let t = nets(&["127.0.0.0/24"]);
        let f = forwarded("127.0.0.1".parse().expect("ip"), Some("9.9.9.9, 8.8.8.8, 127.0.0.5"), &t);
        assert_eq!(f.client_ip.to_string(), "8.8.8.8");
        assert_eq!(f.xff, "9.9.9.9, 8.8.8.8, 127.0.0.5, 127.0.0.1");
        let f = forwarded("127.0.0.1".parse().expect("ip"), None, &t);
        assert_eq!((f.client_ip.to_string(), f.xff.as_str()), ("127.0.0.1".to_string(), "127.0.0.1"));
        let f = forwarded("127.0.0.1".parse().expect("ip"), Some("junk, 127.0.0.3"), &t);
        assert_eq!(f.client_ip.to_string(), "127.0.0.3");
    }
}
