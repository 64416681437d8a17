//! Resource policies (`[apis.policy]`), evaluated before any authentication: CIDR allow and
//! deny lists on the client address (the real peer, or the X-Forwarded-For client only
//! behind `server.trusted_proxies`), and headers that must carry exact values.

use ipnet::IpNet;
use std::net::IpAddr;

/// A compiled policy.
#[derive(Debug, Default)]
pub struct Policy {
    /// Empty: every address is allowed (unless denied).
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    /// Lower-case header names and their required values.
    pub require_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Why a policy refused a request (the `reason` of `auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    DeniedCidr,
    NotAllowedCidr,
    MissingHeader,
}

impl Denied {
    pub fn reason(self) -> &'static str {
        match self {
            Denied::DeniedCidr => "deny_cidrs",
            Denied::NotAllowedCidr => "allow_cidrs",
            Denied::MissingHeader => "require_headers",
        }
    }
}

impl Policy {
    /// Deny wins over allow; then every required header must be present with its value.
    pub fn check(&self, client: Option<IpAddr>, headers: &http::HeaderMap) -> Result<(), Denied> {
        let ip = client.map(canonical);
        match ip {
            Some(ip) if self.deny.iter().any(|n| n.contains(&ip)) => return Err(Denied::DeniedCidr),
            // an unknown client (unparsable X-Forwarded-For from a trusted hop) might be denied
            None if !self.deny.is_empty() => return Err(Denied::DeniedCidr),
            _ => {}
        }
        if !self.allow.is_empty() && !ip.is_some_and(|ip| self.allow.iter().any(|n| n.contains(&ip))) {
            return Err(Denied::NotAllowedCidr);
        }
        for (name, value) in &self.require_headers {
            // all lines of the field (request::header): a second line never slips past
            if crate::request::header(headers, name).as_deref().map(str::as_bytes) != Some(value.as_bytes()) {
                return Err(Denied::MissingHeader);
            }
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are matched as the IPv4 address they carry,
/// so a dual-stack listener cannot be used to dodge an IPv4 rule.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(allow: &[&str], deny: &[&str]) -> Policy {
        Policy {
            allow: allow.iter().map(|c| c.parse().expect("cidr")).collect(),
            deny: deny.iter().map(|c| c.parse().expect("cidr")).collect(),
            require_headers: vec![],
        }
    }

    #[test]
    fn deny_wins_and_allow_lists_restrict() {
        let h = http::HeaderMap::new();
        let pol = p(&["127.0.0.0/8"], &["127.0.0.66/32"]);
        assert_eq!(pol.check(Some("127.0.0.1".parse().expect("ip")), &h), Ok(()));
        assert_eq!(pol.check(Some("127.0.0.66".parse().expect("ip")), &h), Err(Denied::DeniedCidr));
        assert_eq!(pol.check(Some("10.0.0.1".parse().expect("ip")), &h), Err(Denied::NotAllowedCidr));
        assert_eq!(pol.check(Some("::ffff:127.0.0.66".parse().expect("ip")), &h), Err(Denied::DeniedCidr));
        assert_eq!(pol.check(None, &h), Err(Denied::DeniedCidr), "an unknown client might be denied");
        assert_eq!(p(&["127.0.0.0/8"], &[]).check(None, &h), Err(Denied::NotAllowedCidr));
        assert_eq!(p(&[], &[]).check(Some("10.0.0.1".parse().expect("ip")), &h), Ok(()));
    }

    #[test]
    fn required_headers_need_exact_values() {
        let mut pol = p(&[], &[]);
        pol.require_headers
            .push((http::HeaderName::from_static("x-vpce-id"), http::HeaderValue::from_static("vpce-1")));
        let mut h = http::HeaderMap::new();
        assert_eq!(pol.check(None, &h), Err(Denied::MissingHeader));
        h.insert("x-vpce-id", http::HeaderValue::from_static("vpce-2"));
        assert_eq!(pol.check(None, &h), Err(Denied::MissingHeader));
        h.insert("x-vpce-id", http::HeaderValue::from_static("vpce-1"));
        assert_eq!(pol.check(None, &h), Ok(()));
    }
}
