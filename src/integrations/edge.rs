//! The edge role (`[edge]`): this node is an edge location in front of regional gateways.
//!
//! The role is a compile-time step list, not a branch in every phase: an `endpoint = "edge"`
//! API on an edge node compiles (`config::edge::forwarding`) into an API with one `$default` route
//! whose integration forwards to `origins` (the first healthy one, health-checked like a VPC
//! link, failing over on connect errors), with no authorizer, key, throttle, validation or
//! transform of its own (the regional gateway runs those), the API's resource policy kept
//! (checked here before the edge cache, so a cached answer never reaches a refused address),
//! and `[edge].cache` as the cache of every stage. The forwarding integration keeps the
//! client's `Host`, path and query, adds `Via`, and passes `X-Forwarded-For` on under the
//! `trusted_proxies` rule. A node without `[edge]` serves `endpoint = "edge"` APIs itself.
//!
//! What the edge cache stores: answers to GET/HEAD requests of routes that need no credential
//! (no authorizer, no API key; decided by the API's own route table, kept as [`Protected`]),
//! from requests that carry none (`Authorization`, `Cookie`); anything else only when the
//! origin marks it shareable (RFC 9111 3.5: `public`, `s-maxage`, `must-revalidate`).

use crate::cache::{KeyPart, RouteCache};
use crate::integrations::vpc_link::{Balance, Check, Link};
use crate::routing::Router;
use std::sync::Arc;
use std::time::Duration;

/// The name of the origins' group in `Snapshot::links` (its health and metrics label).
pub const LINK: &str = "edge";

/// `[edge]`, compiled.
pub struct Edge {
    pub link: Arc<Link>,
    /// The forwarding target: the origin group, with this node's `Via`.
    pub target: crate::integrations::http::HttpTarget,
    /// `[edge].cache`, the cache of every stage of an edge API.
    pub cache: Option<Arc<RouteCache>>,
}

/// What an edge node keeps of an edge API's own routes: which of them need a credential.
pub struct Protected {
    pub router: Router,
    /// By route index of `router`: the route needs a credential.
    pub protected: Vec<bool>,
}

impl Protected {
    /// Whether the request's route needs a credential (an unknown route is assumed to).
    pub fn requires_credential(&self, method: &http::Method, path: &str) -> bool {
        self.router.find(method, path).is_none_or(|m| self.protected[m.route])
    }
}

/// The `Via` entry of this node: `1.1 HOSTNAME:PORT (edgegate)`, PORT being its first public
/// listener's, so that two nodes on one host are told apart.
fn via(port: Option<u16>) -> http::HeaderValue {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let host = if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) { "edge" } else { host };
    let by = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    http::HeaderValue::from_str(&format!("1.1 {by} (edgegate)"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("1.1 edge (edgegate)"))
}

/// Whether the request already passed this node: one of its `Via` entries (every line, every
/// comma-separated entry) is this node's own. Such a request is answered 508 Loop Detected
/// instead of forwarded again.
pub fn looped(headers: &http::HeaderMap, own: &http::HeaderValue) -> bool {
    let own = own.to_str().unwrap_or_default();
    headers
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.trim().eq_ignore_ascii_case(own))
}

/// Whether `origin` is one of this node's own listeners `own` (`host:port`): the same port,
/// and the same address, or a wildcard listener reached over loopback.
pub fn is_own_listener(origin: &std::net::SocketAddr, own: &[String]) -> bool {
    own.iter().filter_map(|l| l.parse::<std::net::SocketAddr>().ok()).any(|l| {
        l.port() == origin.port()
            && (l.ip() == origin.ip()
                || l.ip().is_unspecified() && (origin.ip().is_loopback() || origin.ip().is_unspecified()))
    })
}

impl Edge {
    /// Compiles `origins` (URLs `http(s)://host[:port]`, names resolved now) into the
    /// forwarding target. `Err((index, message))` names the origin that is wrong.
    /// `own` lists this node's listeners: an origin among them would forward to itself.
    pub fn new(
        origins: &[String],
        own: &[String],
        check: Option<Check>,
        timeout: Duration,
        cache: Option<Arc<RouteCache>>,
        health: Arc<crate::integrations::vpc_link::Health>,
    ) -> Result<Edge, (Option<usize>, String)> {
        if origins.is_empty() {
            return Err((None, "[edge] needs at least one origin (a regional gateway URL)".into()));
        }
        let mut targets = Vec::with_capacity(origins.len());
        let mut snis = Vec::with_capacity(origins.len());
        let mut tls = None;
        for (i, o) in origins.iter().enumerate() {
            let t = crate::integrations::http::parse_target(LINK, o, timeout, 0, true)
                .map_err(|e| (Some(i), e.to_string()))?;
            if !matches!(&t.path, crate::integrations::http::UriPath::Prefix(p) if p.is_empty()) || t.query.is_some() {
                return Err((
                    Some(i),
                    format!("origin {o:?} must be scheme://host[:port] only (the path is the client's)"),
                ));
            }
            if is_own_listener(&t.addr, own) {
                return Err((Some(i), format!("origin {o:?} is this node's own listener: it would forward to itself")));
            }
            if tls.is_some_and(|x| x != t.tls) {
                return Err((Some(i), "origins must all be http:// or all https://".into()));
            }
            tls = Some(t.tls);
            targets.push(t.addr.to_string());
            snis.push(t.sni);
        }
        let tls = tls.unwrap_or(false);
        // a TCP check is a plain connect; an HTTP check speaks the origins' scheme
        let check_tls = tls && check.as_ref().is_some_and(|c| c.http_path.is_some());
        let link = Link::new(LINK, &targets, Balance::First, check_tls, &snis[0], check, health)
            .map_err(|e| (None, e.to_string()))?
            .with_snis(snis.clone());
        let link = Arc::new(link);
        let mut target = crate::integrations::http::link_target(LINK, link.clone(), timeout, origins.len() as u32 - 1);
        target.tls = tls;
        target.sni = snis[0].clone();
        target.host = String::new();
        target.connect_timeout = timeout.min(Duration::from_secs(5));
        let port = own.first().and_then(|l| l.parse::<std::net::SocketAddr>().ok()).map(|a| a.port());
        target.via = Some(via(port));
        Ok(Edge { link, target, cache })
    }

    /// The edge cache's settings: `ttl` (default 300 s) over every query parameter and the
    /// client's host, in its own store.
    pub fn cache(
        stores: &crate::cache::Stores,
        ttl: Duration,
        capacity: u64,
        honor_origin: bool,
    ) -> Option<Arc<RouteCache>> {
        if ttl.is_zero() {
            return None;
        }
        Some(Arc::new(RouteCache {
            store: stores.for_stage("[edge]", "", capacity),
            ttl,
            key: vec![KeyPart::AllQuery],
            invalidate: crate::cache::Invalidate::Never,
            authorized: false,
            honor_origin,
        }))
    }
}

/// The origin's path for a forwarded request: the client's normalised path and its query.
pub fn forward_uri(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_and_own_listeners() {
        let own = via(Some(8080));
        let mut h = http::HeaderMap::new();
        h.append(http::header::VIA, "1.1 a".parse().expect("v"));
        assert!(!looped(&h, &own));
        h.append(http::header::VIA, format!("1.0 b, {}", own.to_str().expect("s")).parse().expect("v"));
        assert!(looped(&h, &own));
        let l = vec!["0.0.0.0:8080".to_string(), "127.0.0.2:9000".to_string()];
        assert!(is_own_listener(&"127.0.0.1:8080".parse().expect("a"), &l));
        assert!(is_own_listener(&"127.0.0.2:9000".parse().expect("a"), &l));
        assert!(!is_own_listener(&"127.0.0.3:9000".parse().expect("a"), &l));
        assert!(!is_own_listener(&"10.0.0.1:8080".parse().expect("a"), &l));
    }
}
