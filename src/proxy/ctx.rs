//! Per-request state, filled by the phases in order.

use crate::responses::ResponseType;
use crate::snapshot::{Integration, Snapshot};
use crate::tls::certs::ClientCert;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub struct RequestCtx {
    /// The snapshot this request runs on, start to end.
    pub snap: Arc<Snapshot>,
    pub start: Instant,
    pub received_at: SystemTime,
    pub request_id: String,
    /// Counts this request as in flight until the context is dropped (draining waits on it).
    pub in_flight: crate::lifecycle::InFlight,
    /// The header fields of an integration's 304 to a revalidation, to update the stored answer.
    pub revalidation: Option<http::HeaderMap>,
    pub client_ip: Option<IpAddr>,
    pub xff: String,
    /// The peer is one of `server.trusted_proxies`.
    pub trusted_peer: bool,
    pub proto: &'static str,
    pub forwarded_proto: Option<String>,
    pub forwarded_host: Option<String>,
    pub host: String,
    /// The port of the listener the request came in on.
    pub port: Option<u16>,
    pub client_cert: Option<Arc<ClientCert>>,
    pub route: Option<RouteMatch>,
    pub upstream: Upstream,
    /// The whole request body once read (`proxy::body`), for every concern that needs it.
    pub body: Option<bytes::Bytes>,
    pub outcome: Outcome,
    /// The caller as the route's authorizer established it.
    pub principal: Option<Arc<crate::auth::Principal>>,
    /// The API key that was checked (its id only: never the key).
    pub api_key_id: Option<Arc<str>>,
    /// The most specific key or route limit applied, for the RateLimit headers.
    pub ratelimit: Option<crate::throttle::bucket::Decision>,
    /// A status that replaces the gateway response type's own (503 when Redis is required).
    pub status_override: Option<u16>,
    /// Extra headers for a gateway response (retry-after on 429s).
    pub extra_headers: Vec<(&'static str, String)>,
    /// The route's cache settings in this stage, when it has caching.
    pub cache: Option<Arc<crate::cache::RouteCache>>,
    /// The request carries a credential the cache key does not cover (its answer may be
    /// per-user, `cache::carries_unkeyed_credential`).
    pub cache_credential: bool,
    /// The primary cache key, built in `request_cache_filter`.
    pub cache_key: String,
    /// hit, miss, bypass, stale or expired (the `cache` log field and metric label).
    pub cache_result: Option<&'static str>,
    /// A precise message for the next gateway response (what failed validation).
    pub error_message: Option<String>,
    /// The gateway response to send when a body check fails while the body streams.
    pub pending_error: Option<ResponseType>,
    /// The integration response body, collected for a `response_transform` body template.
    pub response_body: Option<bytes::BytesMut>,
    /// A WebSocket connection served by this request (its access-log line).
    pub websocket: Option<WsLog>,
}

/// Where the request was routed.
pub struct RouteMatch {
    /// The path below the stage and base path (normalised): what routes match.
    pub path: String,
    pub api: usize,
    pub stage: usize,
    pub route: Option<usize>,
    pub params: Vec<(String, String)>,
    pub variables: Arc<BTreeMap<String, String>>,
    pub integration: Option<Arc<Integration>>,
    /// The stage's canary view was chosen (a WebSocket connection keeps it for its messages).
    pub canary: bool,
}

#[derive(Default)]
pub struct Upstream {
    pub uri: String,
    pub started: Option<Instant>,
    pub latency_ms: Option<u64>,
    pub status: Option<u16>,
    pub retries_left: u32,
    /// VPC-link targets already tried for this request (never the same one twice).
    pub tried: Vec<String>,
    pub body_bytes: u64,
    /// The request body to send: the one read ahead and checked, or its transformed form.
    pub new_body: Option<bytes::Bytes>,
    /// Rendered `request_transform.set_headers`.
    pub set_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

#[derive(Default)]
pub struct Outcome {
    pub status: u16,
    pub error_type: Option<ResponseType>,
    pub response_bytes: usize,
}

impl RequestCtx {
    pub fn new(snap: Arc<Snapshot>) -> Self {
        RequestCtx {
            snap,
            start: Instant::now(),
            received_at: SystemTime::now(),
            request_id: String::new(),
            in_flight: crate::lifecycle::InFlight::start(),
            revalidation: None,
            client_ip: None,
            xff: String::new(),
            trusted_peer: false,
            proto: "http",
            forwarded_proto: None,
            forwarded_host: None,
            host: String::new(),
            port: None,
            client_cert: None,
            route: None,
            upstream: Upstream::default(),
            body: None,
            outcome: Outcome::default(),
            principal: None,
            api_key_id: None,
            ratelimit: None,
            extra_headers: Vec::new(),
            status_override: None,
            cache: None,
            cache_credential: false,
            cache_key: String::new(),
            cache_result: None,
            error_message: None,
            pending_error: None,
            response_body: None,
            websocket: None,
        }
    }

    /// What the integration is told of the request's path to it (`forwarded::to_integration`).
    pub fn hop(&self) -> super::forwarded::Hop<'_> {
        super::forwarded::Hop {
            xff: &self.xff,
            proto: self.forwarded_proto.as_deref().unwrap_or(self.proto),
            host: self.forwarded_host.as_deref().unwrap_or(&self.host),
            port: self.port,
            trusted_peer: self.trusted_peer,
        }
    }

    /// The route the request matched, as the snapshot defines it.
    pub fn matched_route(&self) -> Option<&crate::snapshot::Route> {
        let m = self.route.as_ref()?;
        Some(&self.snap.apis[m.api].routes[m.route?])
    }

    /// (api, stage, route key) names for metrics and logs; empty when not routed.
    pub fn labels(&self) -> (&str, &str, &str) {
        match &self.route {
            Some(m) => {
                let api = &self.snap.apis[m.api];
                let route = m.route.map(|r| &*api.routes[r].key).unwrap_or("");
                (&api.name, &api.stages[m.stage].name, route)
            }
            None => ("", "", ""),
        }
    }
}

/// What the connection-level access-log line says.
pub struct WsLog {
    pub connection_id: String,
    pub messages_in: u64,
    pub messages_out: u64,
}
