//! Per-request state, filled by the phases in order.

pub use crate::cache::CacheResult;
use crate::request::{Caller, Client, Matched, RequestView};
use crate::responses::{Refusal, ResponseType};
use crate::snapshot::{Integration, Snapshot};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The state of one request, grouped by who fills it: the phases fill it in order
/// (`identify` → `route` → admission → integration → `logging`), and later phases read
/// what earlier ones decided. Nothing in it is a mailbox: a refusal travels as a value
/// (`pending`), a cache state as an enum.
pub struct RequestCtx {
    /// The snapshot this request runs on, start to end.
    pub snap: Arc<Snapshot>,
    pub request_id: String,
    pub timing: Timing,
    /// Counts this request as in flight until the context is dropped (draining waits on it).
    pub in_flight: crate::lifecycle::InFlight,
    /// Who sent it and how (`identify`).
    pub client: Client,
    /// Who admission found the caller to be.
    pub caller: Caller,
    /// Where the request was routed (`identify::route`).
    pub route: Option<RouteMatch>,
    /// The whole request body once read (`proxy::body`), for every concern that needs it.
    pub body: Option<bytes::Bytes>,
    /// The most specific key or route limit applied, for the RateLimit headers.
    pub ratelimit: Option<crate::throttle::bucket::Decision>,
    /// The route's cache in this stage, when it has one (`cache_hooks::enable`).
    pub cache: Option<CacheState>,
    pub upstream: Upstream,
    /// The gateway response for a failure found in a phase that cannot answer itself (a
    /// body check while the body streams, a VPC link with no target, a bad 101):
    /// `fail_to_proxy` sends it.
    pub pending: Option<Refusal>,
    pub outcome: Outcome,
    /// The request became a WebSocket connection, served in its own task, which writes the
    /// connection's access-log line when it ends.
    pub websocket_detached: bool,
    /// The request's trace, when `[tracing]` is on (`identify` begins it, `logging` ends it).
    pub trace: Option<crate::observability::trace::Trace>,
}

/// Stage variables of a request that was not routed.
static NO_VARIABLES: BTreeMap<String, String> = BTreeMap::new();

/// When the request arrived, on the monotonic clock (latencies, limits) and the wall clock
/// (logs, signing times, quota periods).
pub struct Timing {
    pub start: Instant,
    pub received_at: SystemTime,
}

impl Timing {
    /// A request arriving now: the two clocks read once, for everything timed by its arrival.
    pub fn now() -> Timing {
        Timing { start: Instant::now(), received_at: SystemTime::now() }
    }
}

/// A route's cache, for one request.
pub struct CacheState {
    pub settings: Arc<crate::cache::RouteCache>,
    /// The request carries a credential the cache key does not cover (its answer may be
    /// per-user, `cache::carries_unkeyed_credential`).
    pub credential: bool,
    /// The primary cache key (taken by `cache_key_callback`).
    pub key: String,
    /// What the cache did (the `cache` log field and metric label); `None` until known.
    pub result: Option<CacheResult>,
    /// The header fields of an integration's 304 to a revalidation, to update the stored answer.
    pub revalidation: Option<http::HeaderMap>,
    /// When the lookup started, while the request's trace records it.
    pub lookup: Option<Instant>,
}

impl CacheState {
    pub fn new(settings: Arc<crate::cache::RouteCache>) -> Self {
        CacheState { settings, credential: false, key: String::new(), result: None, revalidation: None, lookup: None }
    }
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
    /// The integration response body, collected for a `response_transform` body template.
    pub response_body: Option<bytes::BytesMut>,
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
            request_id: String::new(),
            timing: Timing::now(),
            in_flight: crate::lifecycle::InFlight::start(),
            client: Client::default(),
            caller: Caller::default(),
            route: None,
            body: None,
            ratelimit: None,
            cache: None,
            upstream: Upstream::default(),
            pending: None,
            outcome: Outcome::default(),
            websocket_detached: false,
            trace: None,
        }
    }

    /// What the integration is told of the request's path to it (`forwarded::to_integration`).
    pub fn hop(&self) -> crate::forwarded::Hop<'_> {
        crate::forwarded::Hop::of(&self.client)
    }

    /// What the cache did, when the route has a cache.
    pub fn cache_result(&self) -> Option<CacheResult> {
        self.cache.as_ref().and_then(|c| c.result)
    }

    /// The request as every deciding concern reads it (`request::RequestView`). Before it
    /// is routed, its route names are empty.
    pub fn view<'a>(&'a self, head: &'a http::request::Parts) -> RequestView<'a> {
        let route = match &self.route {
            Some(m) => {
                let api = &self.snap.apis[m.api];
                Matched {
                    api: &api.name,
                    stage: &api.stages[m.stage].name,
                    route_key: m.route.map(|r| &*api.routes[r].key).unwrap_or(""),
                    path: &m.path,
                    params: &m.params,
                    variables: &m.variables,
                }
            }
            None => Matched { api: "", stage: "", route_key: "", path: "", params: &[], variables: &NO_VARIABLES },
        };
        RequestView {
            head,
            route,
            client: &self.client,
            caller: &self.caller,
            request_id: &self.request_id,
            received_at: self.timing.received_at,
            body: self.body.as_deref(),
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
