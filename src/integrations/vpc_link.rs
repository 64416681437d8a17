//! VPC links: private upstream groups (`[[vpc_links]]`, `type = "vpc_link"` integrations).
//!
//! Targets are `host:port` or `unix:/path`; selection is pingora-load-balancing's round robin,
//! random, or consistent hashing (ketama) on the client IP. One background service
//! (`health::HealthChecker`) runs each link's health check (HTTP or TCP, via pingora's
//! checkers) on the running snapshot; health lives in a process-wide table keyed by link and target, so it
//! survives reloads while a target stays in the config, and is exported as
//! `edgegate_upstream_health{link,target}`. A target that failed to connect is not chosen again
//! for the same request (failover with `retries`).

use crate::observability::metrics;
use dashmap::DashMap;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::{Consistent, Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// `balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Random,
    /// Ketama on the client IP.
    Consistent,
    /// The first healthy target in the configured order (the edge role's origins).
    First,
}

/// `health_check`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `None`: TCP (or TLS) connect; `Some(path)`: HTTP GET, 2xx/3xx expected.
    pub http_path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

enum Selector {
    First,
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Consistent(LoadBalancer<Consistent>),
}

/// One compiled link.
pub struct Link {
    pub name: String,
    /// The targets as configured (the health table's keys).
    pub targets: Vec<String>,
    pub tls: bool,
    pub sni: String,
    /// Per-target SNI (and Host) where targets differ (the edge role's origin URLs).
    snis: Vec<String>,
    pub check: Option<Check>,
    backends: Vec<(String, Backend)>,
    selector: Selector,
    checker: Option<Box<dyn HealthCheck + Send + Sync>>,
    health: Arc<Health>,
}

/// Health by (link, target); unknown means healthy (until a check says otherwise). Owned
/// by the runtime (`runtime::Runtime::link_health`): it outlives the links a reload drops.
#[derive(Default)]
pub struct Health(DashMap<(String, String), bool>);

impl Health {
    /// Forgets what no link of `keep` names any more (after a reload).
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        self.0.retain(|(l, t), _| keep(l, t));
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("name", &self.name).field("targets", &self.targets).finish()
    }
}

/// Why a VPC link does not compile.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("a VPC link needs at least one target")]
    NoTargets,
    #[error("target {0:?}: {1}")]
    UnixPath(String, String),
    #[error("target {0:?} must be IP:PORT or unix:/PATH")]
    Address(String),
    #[error("{0}")]
    Load(String),
    #[error("the target list did not load at once")]
    NotAtOnce,
}

fn backend(target: &str) -> Result<Backend, LinkError> {
    if let Some(path) = target.strip_prefix("unix:") {
        let addr = std::os::unix::net::SocketAddr::from_pathname(path)
            .map_err(|e| LinkError::UnixPath(target.to_string(), e.to_string()))?;
        return Ok(Backend { addr: SocketAddr::Unix(addr), weight: 1, ext: Default::default() });
    }
    let sa: std::net::SocketAddr = target.parse().map_err(|_| LinkError::Address(target.to_string()))?;
    Ok(Backend { addr: SocketAddr::Inet(sa), weight: 1, ext: Default::default() })
}

impl Link {
    pub fn new(
        name: &str,
        targets: &[String],
        balance: Balance,
        tls: bool,
        sni: &str,
        check: Option<Check>,
        health: Arc<Health>,
    ) -> Result<Link, LinkError> {
        if targets.is_empty() {
            return Err(LinkError::NoTargets);
        }
        let mut backends = Vec::with_capacity(targets.len());
        for t in targets {
            backends.push((t.clone(), backend(t)?));
        }
        let set: BTreeSet<Backend> = backends.iter().map(|(_, b)| b.clone()).collect();
        let make = || Backends::new(pingora::lb::discovery::Static::new(set.clone()));
        let selector = match balance {
            Balance::RoundRobin => Selector::RoundRobin(LoadBalancer::from_backends(make())),
            Balance::Random => Selector::Random(LoadBalancer::from_backends(make())),
            Balance::Consistent => Selector::Consistent(LoadBalancer::from_backends(make())),
            Balance::First => Selector::First,
        };
        let checker: Option<Box<dyn HealthCheck + Send + Sync>> = check.as_ref().map(|c| match &c.http_path {
            Some(path) => {
                let mut hc = HttpHealthCheck::new(if sni.is_empty() { name } else { sni }, tls);
                if let Ok(req) = pingora::http::RequestHeader::build("GET", path.as_bytes(), None) {
                    let mut req = req;
                    let _ = req.append_header("Host", if sni.is_empty() { name } else { sni });
                    hc.req = req;
                }
                hc.peer_template.options.connection_timeout = Some(c.timeout);
                hc.peer_template.options.read_timeout = Some(c.timeout);
                // 2xx and 3xx are healthy
                hc.validator = Some(Box::new(|resp: &pingora::http::ResponseHeader| {
                    let s = resp.status.as_u16();
                    if (200..400).contains(&s) {
                        Ok(())
                    } else {
                        pingora::Error::e_explain(pingora::ErrorType::Custom("health"), format!("status {s}"))
                    }
                }));
                Box::new(hc) as Box<dyn HealthCheck + Send + Sync>
            }
            None => {
                let mut hc = if tls { TcpHealthCheck::new_tls(sni) } else { TcpHealthCheck::new() };
                hc.peer_template.options.connection_timeout = Some(c.timeout);
                hc as Box<dyn HealthCheck + Send + Sync>
            }
        });
        let link = Link {
            name: name.to_string(),
            targets: targets.to_vec(),
            tls,
            sni: sni.to_string(),
            snis: Vec::new(),
            check,
            health,
            backends,
            selector,
            checker,
        };
        link.load()?;
        Ok(link)
    }

    /// Loads the selector from the static target list. Static discovery does no I/O, so the
    /// update completes on its first poll; compiling stays synchronous.
    fn load(&self) -> Result<(), LinkError> {
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = pingora::Result<()>> + Send + '_>> =
            match &self.selector {
                Selector::RoundRobin(l) => Box::pin(l.update()),
                Selector::Random(l) => Box::pin(l.update()),
                Selector::Consistent(l) => Box::pin(l.update()),
                Selector::First => return Ok(()),
            };
        let mut fut = fut;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r.map_err(|e| LinkError::Load(e.to_string())),
            std::task::Poll::Pending => Err(LinkError::NotAtOnce),
        }
    }

    /// Gives each target its own SNI (and Host), in target order.
    pub fn with_snis(mut self, snis: Vec<String>) -> Link {
        self.snis = snis;
        self
    }

    /// The SNI (and Host) for `target`: its own, else the link's.
    pub fn sni_of(&self, target: &str) -> &str {
        match self.backends.iter().position(|(t, _)| t == target).and_then(|i| self.snis.get(i)) {
            Some(s) => s,
            None => &self.sni,
        }
    }

    fn target_of(&self, b: &Backend) -> Option<&str> {
        self.backends.iter().find(|(_, x)| x == b).map(|(t, _)| t.as_str())
    }

    pub fn healthy(&self, target: &str) -> bool {
        self.health.0.get(&(self.name.clone(), target.to_string())).is_none_or(|h| *h)
    }

    /// A healthy target not in `tried`, by the link's balance (`key`: the client IP for
    /// consistent hashing). `None` when no such target is left.
    pub fn select(&self, key: &[u8], tried: &[String]) -> Option<(String, Backend)> {
        let accept =
            |b: &Backend, _: bool| self.target_of(b).is_some_and(|t| self.healthy(t) && !tried.iter().any(|x| x == t));
        let n = self.backends.len() * 2 + 1;
        let b = match &self.selector {
            Selector::First => {
                let (t, b) = self.backends.iter().find(|(_, b)| accept(b, true))?;
                return Some((t.clone(), b.clone()));
            }
            Selector::RoundRobin(l) => l.select_with(key, n, accept),
            Selector::Random(l) => l.select_with(key, n, accept),
            Selector::Consistent(l) => l.select_with(key, n, accept),
        }?;
        let t = self.target_of(&b)?.to_string();
        Some((t, b))
    }

    /// Whether any target is healthy.
    pub fn any_healthy(&self) -> bool {
        self.targets.iter().any(|t| self.healthy(t))
    }

    /// Runs the link's health check on every target once, recording the results.
    pub async fn run_checks(&self) {
        let Some(checker) = &self.checker else { return };
        let timeout = self.check.as_ref().map_or(Duration::from_secs(1), |c| c.timeout);
        // one target after the other, each bounded by the check's timeout
        for (t, b) in &self.backends {
            let ok = matches!(tokio::time::timeout(timeout, checker.check(b)).await, Ok(Ok(())));
            let key = (self.name.clone(), t.clone());
            let was = self.health.0.insert(key, ok);
            if was.is_none_or(|w| w != ok) {
                if ok {
                    log::info!("vpc link {}: target {t} is healthy", self.name);
                } else {
                    log::warn!("vpc link {}: target {t} is unhealthy", self.name);
                }
            }
            metrics::UPSTREAM_HEALTH.with_label_values(&[&self.name, t]).set(if ok { 1.0 } else { 0.0 });
        }
    }
}

/// Reports an unchecked link's targets as healthy.
pub fn metrics_unknown(link: &Link) {
    for t in &link.targets {
        metrics::UPSTREAM_HEALTH.with_label_values(&[&link.name, t]).set(1.0);
    }
}
