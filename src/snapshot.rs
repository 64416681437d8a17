//! The running configuration, compiled once per load into immutable tables that requests
//! read without parsing or locking: one `Arc<Snapshot>` is pinned per request, and a reload
//! swaps the pointer, so in-flight requests finish on the snapshot they started with.

use crate::responses::Overrides;
use crate::routing::Router;
use crate::tls::certs::CertStore;
use arc_swap::ArcSwap;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The pointer the proxy, the TLS callbacks, the admin API and the reloader share.
pub type Shared = Arc<ArcSwap<Snapshot>>;

pub struct Snapshot {
    /// Hash of the config and every file it names (the `/config` version, `config_info`).
    pub version: String,
    pub loaded_at: SystemTime,
    pub files: Vec<PathBuf>,
    pub settings: Settings,
    pub apis: Vec<Api>,
    /// Default addressing: stage name -> (base path, api, stage), longest base path first.
    pub by_stage: HashMap<String, Vec<Mount>>,
    /// Custom domains: lower-case host -> mappings, longest base path first.
    pub domains: HashMap<String, Vec<Mount>>,
    /// Custom domains with `hsts`: lower-case host -> `Strict-Transport-Security` (HTTPS only).
    pub hsts: HashMap<String, http::HeaderValue>,
    /// `[[vpc_links]]` by name (the health checker walks them).
    pub links: HashMap<String, Arc<crate::integrations::vpc_link::Link>>,
    /// Mock bodies and gateway-response bodies.
    pub templates: crate::templates::Templates,
    pub certs: CertStore,
    /// `[defaults.throttle]`: the account-level bucket, checked before every other limit.
    pub account: Arc<crate::throttle::bucket::Bucket>,
    pub api_keys: Option<ApiKeys>,
    pub plans: HashMap<String, Plan>,
    /// JWT authorizers, for the background JWKS refresh.
    pub jwt_authorizers: Vec<Arc<crate::auth::jwt::JwtAuthorizer>>,
    /// `[cluster]`: key limits and quotas shared through Redis.
    pub cluster: Option<(Arc<crate::throttle::cluster::Cluster>, crate::throttle::cluster::OnError)>,
    /// Process-level settings, read at startup; a reload that changes them logs that they
    /// need a restart or a graceful upgrade.
    pub listeners: Listeners,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub listen: Vec<String>,
    pub private_listen: Vec<String>,
    pub admin_listen: String,
    pub tls_listen: Vec<String>,
    pub tls_min_version: String,
    pub tls_client_auth: crate::tls::certs::ClientAuth,
    pub tls_client_ca: Option<PathBuf>,
    /// `tls.ciphers`, `tls.ciphersuites`, `tls.curves`.
    pub tls_profile: crate::tls::certs::Profile,
    pub threads: usize,
    pub grace_period: Duration,
    /// `server.header_timeout`: the request-head deadline (listener setting: restart/upgrade).
    pub header_timeout: Duration,
    pub upgrade_sock: String,
    pub pid_file: String,
    pub watch: bool,
}

#[derive(Debug, Clone)]
pub struct Mount {
    pub base_path: String,
    pub api: usize,
    pub stage: usize,
}

pub struct Settings {
    pub trusted_proxies: Vec<IpNet>,
    pub max_body: u64,
    pub max_header_size: u64,
    pub max_headers: usize,
    pub max_integration_timeout: Duration,
    pub access_log: AccessLogTarget,
    /// `server.access_log_format`: the line template (`None`: the JSON object).
    pub access_log_format: Option<Arc<crate::observability::access_log::Format>>,
    /// `[tracing]`, installed in the runtime's tracer when the snapshot is swapped in.
    pub tracing: Option<crate::observability::trace::Settings>,
}

pub use crate::observability::access_log::AccessLogTarget;

pub struct Api {
    pub name: Arc<str>,
    /// `endpoint = "private"`: served only on `server.private_listen`.
    pub private: bool,
    pub router: Router,
    pub routes: Vec<Route>,
    pub stages: Vec<Stage>,
    pub responses: Overrides,
    /// `[apis.policy]`, checked before anything else about the request.
    pub policy: Option<crate::policy::Policy>,
    pub cors: Option<crate::cors::Cors>,
    pub binary: crate::transform::BinaryTypes,
    /// Forwarded to `[edge].origins` (an `endpoint = "edge"` API on an edge node): which of
    /// the API's own routes need a credential, for the edge cache.
    pub edge: Option<crate::integrations::edge::Protected>,
    /// `protocol = "websocket"`: the API's WebSocket settings and route table.
    pub websocket: Option<Arc<crate::websocket::WsApi>>,
}

pub use crate::api_keys::ApiKeys;
pub use crate::auth::Authorizer;
pub use crate::throttle::Plan;

pub struct Route {
    /// The route key as written ("GET /pets/{id}"): the `route` metric label and `routeKey`.
    pub key: Arc<str>,
    pub integration: Arc<str>,
    pub api_key_required: bool,
    /// The route's authorizer (name, verifier) and the scopes it must grant.
    pub authorizer: Option<(Arc<str>, Authorizer)>,
    pub scopes: Vec<String>,
    pub validate: Option<Arc<crate::validation::Validator>>,
    pub request_transform: Option<Arc<crate::transform::RequestTransform>>,
    pub response_transform: Option<Arc<crate::transform::ResponseTransform>>,
}

pub struct Stage {
    pub name: Arc<str>,
    pub access_log: bool,
    pub view: StageView,
    /// Canary: this share (0..=1) of requests sees `canary` instead of `view`.
    pub canary: Option<(f64, StageView)>,
    pub throttle: Option<Arc<crate::throttle::bucket::Bucket>>,
    /// Route-level buckets of this stage, by route index.
    pub route_throttles: Vec<Option<Arc<crate::throttle::bucket::Bucket>>>,
    /// Response caching per route index (`None`: not cached in this stage).
    pub route_caches: Vec<Option<Arc<crate::cache::RouteCache>>>,
    /// The stage's metric series per route index, and last those of requests no route matched.
    pub metrics: Box<[RouteMetrics]>,
}

use crate::observability::metrics::RouteMetrics;

impl Stage {
    /// The metric handles of a request of this stage that matched `route` (or none).
    pub fn metrics_of(&self, route: Option<usize>) -> Option<&RouteMetrics> {
        route.map_or(self.metrics.last(), |r| self.metrics.get(r))
    }
}

/// The metric handles of one stage of `api`: one per route, then one for the unmatched.
pub fn route_metrics(api: &Arc<str>, stage: &Arc<str>, routes: &[Route]) -> Box<[RouteMetrics]> {
    let none: Arc<str> = Arc::from("");
    routes
        .iter()
        .map(|r| RouteMetrics::new(api, stage, &r.key, &r.integration))
        .chain(std::iter::once(RouteMetrics::new(api, stage, &none, &none)))
        .collect()
}

/// Stage variables and the integrations they resolve, per route index.
pub struct StageView {
    pub variables: Arc<BTreeMap<String, String>>,
    pub integrations: Vec<Arc<Integration>>,
    pub is_canary: bool,
}

pub use crate::integrations::mock::Mock;
pub use crate::integrations::Integration;

impl Snapshot {
    /// Resolves the API and stage of a request: custom domain first, else `/{stage}/{base}`.
    /// Returns the mount and the path below the base path.
    pub fn resolve<'p>(&self, host: &str, path: &'p str, private_listener: bool) -> Option<(&Mount, &'p str)> {
        let (mounts, rest) = match self.domains.get(host) {
            Some(m) => (m, path),
            None => {
                let trimmed = path.strip_prefix('/')?;
                let (stage, rest) = match trimmed.find('/') {
                    Some(i) => (&trimmed[..i], &trimmed[i..]),
                    None => (trimmed, "/"),
                };
                (self.by_stage.get(stage)?, rest)
            }
        };
        mounts.iter().find_map(|m| {
            let api = &self.apis[m.api];
            if api.private && !private_listener {
                return None; // as if absent
            }
            crate::routing::strip_base(rest, &m.base_path).map(|r| (m, r))
        })
    }
}

/// TLS handshakes find certificates in the running configuration.
impl crate::tls::CertSource for ArcSwap<Snapshot> {
    fn with_store(&self, f: &mut dyn FnMut(&crate::tls::CertStore)) {
        f(&self.load().certs)
    }
}
