//! Loading the configuration: read, parse (`model`), validate every key, compile into a
//! `Snapshot`. All problems are gathered and reported as `FILE:LINE:COL: message`; a
//! config with any problem compiles to nothing, so a reload keeps what runs.

mod authorizers;
mod caching;
mod content;
mod diagnostics;
mod edge;
pub mod error;
pub mod export;
mod integrations;
mod limits;
pub mod model;
mod server;
pub mod units;
mod websocket;

use crate::responses::{CustomResponse, Overrides, ResponseType};
use crate::routing::{parse_route_key, RouteKey, Router};
use crate::runtime::Runtime;
use crate::snapshot::{self, AccessLogTarget, Listeners, Mount, Settings, Snapshot, StageView};
use crate::tls::CertStore;
pub use error::{ConfigError, ConfigErrors, KeyPath, Locator};
use model::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Reads, validates and compiles the config at `path`, with the state of `rt`.
pub fn load(path: &Path, rt: &Arc<Runtime>) -> Result<Snapshot, ConfigErrors> {
    let src =
        std::fs::read_to_string(path).map_err(|e| ConfigErrors::single(path, format!("cannot read config: {e}")))?;
    load_str(path, &src, rt)
}

/// As `load`, from text already read (`path` names it in errors and anchors relative paths).
pub fn load_str(path: &Path, src: &str, rt: &Arc<Runtime>) -> Result<Snapshot, ConfigErrors> {
    // Compiling changes no runtime state until it succeeded (limiters, cache capacities):
    // one compile at a time, then everything it staged is committed or discarded.
    let _one = rt.compile_lock();
    let result = compile_str(path, src, rt);
    if result.is_ok() {
        rt.limiters.commit();
        rt.caches.commit_capacity_changes();
    } else {
        rt.limiters.discard();
        rt.caches.discard_capacity_changes();
    }
    result
}

fn compile_str(path: &Path, src: &str, rt: &Arc<Runtime>) -> Result<Snapshot, ConfigErrors> {
    let locator = Locator::new(src);
    let mut cfg: Config = toml::from_str(src).map_err(|e| {
        let (line, col) = e.span().map(|s| locator.line_col(s.start)).unwrap_or((1, 1));
        let msg = e.message().trim().to_string();
        ConfigErrors(vec![ConfigError { file: path.to_path_buf(), line, col, message: msg }])
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Compiler::new(rt.clone(), dir, path);
    c.hasher.update(src.as_bytes());
    c.merge_openapi(&mut cfg);
    let snap = c.compile(&cfg);
    if !c.errors.is_empty() || !c.other_errors.is_empty() {
        let mut errs: Vec<ConfigError> = c
            .errors
            .iter()
            .map(|(p, m)| {
                let (line, col) = locator.locate(p);
                ConfigError { file: path.to_path_buf(), line, col, message: format!("{p}: {m}") }
            })
            .collect();
        errs.sort_by_key(|e| (e.line, e.col));
        errs.dedup();
        errs.append(&mut c.other_errors);
        return Err(ConfigErrors(errs));
    }
    snap.ok_or_else(|| ConfigErrors::single(path, "config did not compile"))
}

struct Compiler {
    /// Where limiters, cache stores and link health come from.
    rt: Arc<Runtime>,
    dir: PathBuf,
    /// Every `[authorizers.*]` name, of any type (so routes name only defined ones).
    known_authorizers: HashSet<String>,
    errors: Vec<(KeyPath, String)>,
    /// Errors located in other files the config names (the API key file).
    other_errors: Vec<ConfigError>,
    files: Vec<PathBuf>,
    hasher: Sha256,
    /// `[[vpc_links]]`, compiled before the APIs that name them.
    links: HashMap<String, Arc<crate::integrations::vpc_link::Link>>,
    /// `[edge]`: `endpoint = "edge"` APIs are compiled to forward to its origins.
    edge: Option<(Arc<crate::integrations::edge::Edge>, Arc<snapshot::Integration>)>,
}

impl Compiler {
    fn new(rt: Arc<Runtime>, dir: PathBuf, path: &Path) -> Compiler {
        Compiler {
            rt,
            dir,
            known_authorizers: HashSet::new(),
            errors: vec![],
            other_errors: vec![],
            files: vec![path.to_path_buf()],
            hasher: Sha256::new(),
            links: HashMap::new(),
            edge: None,
        }
    }
}

const NAME_CHARS: &str = "letters, digits, '-' and '_'";

/// Where a route is written: its `[[apis.routes]]` entry, or the API's `openapi` key for
/// routes imported from the document.
fn route_at(p: &KeyPath, a: &Api, ri: usize) -> KeyPath {
    match a.imported_routes_from {
        Some(n) if ri >= n => p.key("openapi"),
        _ => p.key("routes").idx(ri),
    }
}

fn integration_at(p: &KeyPath, a: &Api, name: &str) -> KeyPath {
    if a.imported_integrations.contains(name) {
        p.key("openapi")
    } else {
        p.key("integrations").key(name)
    }
}

/// `path.NAME`, `query.NAME` or `header.NAME`.
fn cache_key_part(k: &str) -> Result<crate::cache::KeyPart, String> {
    use crate::cache::KeyPart;
    let bad = || format!("cache key {k:?} must be path.NAME, query.NAME or header.NAME");
    let (kind, name) = k.split_once('.').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    match kind {
        "path" => Ok(KeyPart::Path(name.to_string())),
        "query" => Ok(KeyPart::Query(name.to_string())),
        "header" => http::HeaderName::from_bytes(name.as_bytes())
            .map(KeyPart::Header)
            .map_err(|_| format!("{name:?} is not a header name")),
        _ => Err(bad()),
    }
}

fn good_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Compiler {
    /// `openapi = "FILE"`: the document's routes and integrations join the API's own; a
    /// route or integration the config writes itself wins over the document's. What the
    /// document has that cannot be imported is logged.
    fn merge_openapi(&mut self, cfg: &mut Config) {
        let root = KeyPath::root();
        let authorizers = &mut cfg.authorizers;
        for (ai, a) in cfg.apis.iter_mut().enumerate() {
            let Some(file) = a.openapi.clone() else { continue };
            let p = root.key("apis").idx(ai).key("openapi");
            let Some(doc) = self.data_file(p.clone(), &file) else { continue };
            let opts = crate::openapi::Options { name: Some(a.name.clone()), stages: vec![], into_config: true };
            let im = match crate::openapi::import(&doc, &opts) {
                Ok(im) => im,
                Err(e) => {
                    self.err(p, format!("{file}: {e}"));
                    continue;
                }
            };
            for line in &im.report {
                log::warn!("{file}: not imported: {line}");
            }
            let mut t = im.api;
            let routes: Vec<Route> = match t.remove("routes").map(|r| r.try_into()) {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    self.err(p, format!("{file}: {e}"));
                    continue;
                }
                None => vec![],
            };
            a.imported_routes_from = Some(a.routes.len());
            let own: HashSet<String> = a.routes.iter().map(|r| r.route.clone()).collect();
            a.routes.extend(routes.into_iter().filter(|r| !own.contains(&r.route)));
            if let Some(Ok(integrations)) =
                t.remove("integrations").map(|i| i.try_into::<BTreeMap<String, Integration>>())
            {
                for (name, i) in integrations {
                    if !a.integrations.contains_key(&name) {
                        a.imported_integrations.insert(name.clone());
                        a.integrations.insert(name, i);
                    }
                }
            }
            if a.binary_media_types.is_none() {
                a.binary_media_types = t.remove("binary_media_types").and_then(|v| v.try_into().ok());
            }
            if let Some(Ok(g)) =
                t.remove("gateway_responses").map(|g| g.try_into::<BTreeMap<String, model::GatewayResponse>>())
            {
                for (kind, r) in g {
                    a.gateway_responses.entry(kind).or_insert(r);
                }
            }
            // the document's authorizers, unless the config defines one of the same name
            for (name, def) in im.authorizer_defs {
                if let Ok(def) = def.try_into::<Authorizer>() {
                    authorizers.entry(name).or_insert(def);
                }
            }
            if a.cors.is_none() {
                a.cors = t.remove("cors").and_then(|v| v.try_into().ok());
            }
        }
    }

    fn compile(&mut self, cfg: &Config) -> Option<Snapshot> {
        let root = KeyPath::root();
        let mut settings = self.server(&root.key("server"), &cfg.server);
        settings.tracing = cfg.tracing.as_ref().map(|t| self.tracing(&root.key("tracing"), t));
        let (certs, tls_listen, client_auth, tls_profile) = self.tls(&root.key("tls"), cfg);

        let cluster = cfg.cluster.as_ref().and_then(|c| {
            let p = root.key("cluster");
            let mode = match c.on_redis_error.as_deref().unwrap_or("local") {
                "local" => crate::throttle::cluster::OnError::Local,
                "deny" => crate::throttle::cluster::OnError::Deny,
                other => {
                    self.err(
                        p.key("on_redis_error"),
                        format!("on_redis_error {other:?} must be \"local\" or \"deny\""),
                    );
                    return None;
                }
            };
            let urls: Vec<&str> = match &c.redis {
                model::RedisTarget::One(u) => vec![u.as_str()],
                model::RedisTarget::Seeds(v) => v.iter().map(String::as_str).collect(),
            };
            let url_ok = |u: &str| ["redis://", "rediss://", "unix://"].iter().any(|s| u.starts_with(s));
            let sentinel = urls.len() == 1 && urls[0].starts_with("redis-sentinel://");
            if urls.is_empty() || (!sentinel && !urls.iter().all(|u| url_ok(u))) || urls.iter().any(|u| u.contains(' ')) {
                self.err(
                    p.key("redis"),
                    format!("{urls:?}: give a redis:// URL, a list of them (the seed nodes of a Redis Cluster), or redis-sentinel://HOST:PORT[,HOST:PORT]/MASTER_NAME"),
                );
                return None;
            }
            if urls.len() > 1 && urls.iter().any(|u| u.starts_with("unix://")) {
                self.err(p.key("redis"), "Redis Cluster seed nodes are redis:// URLs");
                return None;
            }
            match self.rt.limiters.cluster(&urls.join(" ")) {
                Ok(cl) => Some((cl, mode)),
                Err(m) => {
                    self.err(p.key("redis"), m);
                    None
                }
            }
        });
        let authorizers = self.authorizers(&root, cfg);
        self.vpc_links(&root, cfg);
        if let Some(e) = &cfg.edge {
            let s = &cfg.server;
            let tls = cfg.tls.as_ref().map(|t| t.listen.as_slice()).unwrap_or_default();
            let own: Vec<String> =
                s.listen.iter().chain(tls).chain(&s.private_listen).chain([&s.admin_listen]).cloned().collect();
            self.edge = self
                .edge(&root.key("edge"), e, &settings, &own)
                .map(|edge| (edge.clone(), Arc::new(snapshot::Integration::Http(edge.target.clone()))));
        }

        let mut env = crate::templates::Templates::new();
        let mut apis = Vec::new();
        let mut api_index: HashMap<&str, usize> = HashMap::new();
        for (i, a) in cfg.apis.iter().enumerate() {
            let p = root.key("apis").idx(i);
            if !good_name(&a.name) {
                self.err(p.key("name"), format!("API name {:?} must be non-empty and use only {NAME_CHARS}", a.name));
            }
            if api_index.insert(a.name.as_str(), i).is_some() {
                self.err(p.key("name"), format!("API name {:?} is used twice", a.name));
            }
            if a.endpoint == EndpointType::Private && cfg.server.private_listen.is_empty() {
                self.err(
                    p.key("endpoint"),
                    "endpoint = \"private\" needs server.private_listen, or the API is unreachable",
                );
            }
            apis.push(self.api(&p, a, &settings, &mut env, &authorizers));
        }

        // default addressing: /{stage}{base_path}
        let mut by_stage: HashMap<String, Vec<Mount>> = HashMap::new();
        let mut base_seen: HashSet<(String, String)> = HashSet::new();
        for (ai, a) in cfg.apis.iter().enumerate() {
            for (si, stage) in a.stages.keys().enumerate() {
                if !base_seen.insert((stage.clone(), a.base_path.clone())) {
                    self.err(
                        root.key("apis").idx(ai).key("base_path"),
                        format!("another API already serves stage {stage:?} at base path {:?}", a.base_path),
                    );
                }
                by_stage.entry(stage.clone()).or_default().push(Mount {
                    base_path: a.base_path.clone(),
                    api: ai,
                    stage: si,
                });
            }
        }
        let mut domains: HashMap<String, Vec<Mount>> = HashMap::new();
        let mut hsts: HashMap<String, http::HeaderValue> = HashMap::new();
        for (di, d) in cfg.domains.iter().enumerate() {
            let p = root.key("domains").idx(di);
            let host = d.host.to_ascii_lowercase();
            if let Some(v) = &d.hsts {
                match http::HeaderValue::from_str(v) {
                    Ok(hv) if v.to_ascii_lowercase().contains("max-age=") => {
                        hsts.insert(host.clone(), hv);
                    }
                    _ => self.err(p.key("hsts"), format!("{v:?} is not a Strict-Transport-Security value (max-age=SECONDS[; includeSubDomains][; preload])")),
                }
            }
            if host.is_empty() || host.contains(['/', ' ', ':']) {
                self.err(p.key("host"), format!("{:?} is not a host name", d.host));
            }
            if domains.contains_key(&host) {
                self.err(p.key("host"), format!("domain {:?} is listed twice", d.host));
            }
            let mut mounts = vec![];
            for (mi, m) in d.mappings.iter().enumerate() {
                let mp = p.key("mappings").idx(mi);
                self.base_path(mp.key("base_path"), &m.base_path);
                let Some(&ai) = api_index.get(m.api.as_str()) else {
                    self.err(mp.key("api"), format!("no API named {:?}", m.api));
                    continue;
                };
                let Some(si) = cfg.apis[ai].stages.keys().position(|s| s == &m.stage) else {
                    self.err(mp.key("stage"), format!("API {:?} has no stage {:?}", m.api, m.stage));
                    continue;
                };
                if mounts.iter().any(|x: &Mount| x.base_path == m.base_path) {
                    self.err(
                        mp.key("base_path"),
                        format!("base path {:?} is mapped twice on {:?}", m.base_path, d.host),
                    );
                }
                mounts.push(Mount { base_path: m.base_path.clone(), api: ai, stage: si });
            }
            domains.insert(host, mounts);
        }
        for v in by_stage.values_mut().chain(domains.values_mut()) {
            v.sort_by_key(|m| std::cmp::Reverse(m.base_path.len()));
        }

        let account = {
            let t = cfg.defaults.as_ref().and_then(|d| d.throttle).unwrap_or(Throttle { rate: 10_000.0, burst: 5_000 });
            self.check_throttle(&root.key("defaults").key("throttle"), &t);
            self.rt.limiters.bucket("account", t.rate, t.burst)
        };
        let api_keys = cfg.api_keys.as_ref().map(|k| self.api_keys(&root.key("api_keys"), k));
        let plans = self.plans(&root, cfg);
        if let Some(k) = &api_keys {
            for (name, line) in &k.plans_used {
                if !plans.contains_key(name) {
                    self.other_errors.push(ConfigError {
                        file: k.file.clone(),
                        line: *line,
                        col: 1,
                        message: format!("plan {name:?} is not a [[usage_plans]] name"),
                    });
                }
            }
        }
        for (ai, a) in cfg.apis.iter().enumerate() {
            for (ri, r) in a.routes.iter().enumerate() {
                if r.api_key_required == Some(true) && api_keys.is_none() {
                    self.err(
                        root.key("apis").idx(ai).key("routes").idx(ri).key("api_key_required"),
                        "api_key_required needs an [api_keys] section",
                    );
                }
            }
        }

        if !self.errors.is_empty() || !self.other_errors.is_empty() {
            return None;
        }
        let version = hex::encode(&std::mem::take(&mut self.hasher).finalize()[..8]);
        Some(Snapshot {
            version,
            loaded_at: SystemTime::now(),
            files: std::mem::take(&mut self.files),
            settings,
            apis: apis.into_iter().flatten().collect(),
            by_stage,
            domains,
            hsts,
            links: self.links.clone(),
            templates: env,
            certs,
            account,
            api_keys: api_keys.map(|k| snapshot::ApiKeys { header: k.header, store: k.store }),
            plans,
            cluster,
            jwt_authorizers: authorizers
                .values()
                .filter_map(|a| match a {
                    snapshot::Authorizer::Jwt(j) => Some(j.clone()),
                    _ => None,
                })
                .collect(),
            listeners: Listeners {
                listen: cfg.server.listen.clone(),
                private_listen: cfg.server.private_listen.clone(),
                admin_listen: cfg.server.admin_listen.clone(),
                tls_listen,
                tls_min_version: cfg.tls.as_ref().map(|t| t.min_version.clone()).unwrap_or_else(|| "1.2".into()),
                tls_client_auth: client_auth.0,
                tls_client_ca: client_auth.1,
                tls_profile,
                threads: cfg.server.threads,
                grace_period: cfg.server.grace_period.0,
                header_timeout: cfg.server.header_timeout.0,
                upgrade_sock: cfg.server.upgrade_sock.clone(),
                pid_file: cfg.server.pid_file.clone(),
                watch: cfg.server.watch,
            },
        })
    }

    fn base_path(&mut self, p: KeyPath, b: &str) {
        if !(b.is_empty()
            || (b.starts_with('/') && !b.ends_with('/') && !b.contains(['{', '}', '?', '#', '%']) && !b.contains("//")))
        {
            self.err(p, format!("base path {b:?} must be empty or like \"/v1\" (no trailing '/')"));
        }
    }

    fn api(
        &mut self,
        p: &KeyPath,
        a: &Api,
        settings: &Settings,
        env: &mut crate::templates::Templates,
        authorizers: &HashMap<String, snapshot::Authorizer>,
    ) -> Option<snapshot::Api> {
        let ws = a.protocol == Protocol::Websocket;
        self.base_path(p.key("base_path"), &a.base_path);
        for (k, present) in [
            ("route_selection", a.route_selection.is_some()),
            ("idle_timeout", a.idle_timeout.is_some()),
            ("max_connection_duration", a.max_connection_duration.is_some()),
            ("max_message_size", a.max_message_size.is_some()),
            ("management", a.management.is_some()),
        ] {
            if present && !ws {
                self.err(p.key(k), format!("`{k}` is a WebSocket API setting (protocol = \"websocket\")"));
            }
        }
        if a.stages.is_empty() {
            self.err(p.key("name"), format!("API {:?} has no stage: add [apis.stages.NAME]", a.name));
        }
        for (name, s) in &a.stages {
            let sp = p.key("stages").key(name);
            if !good_name(name) {
                self.err(sp.clone(), format!("stage name {name:?} must use only {NAME_CHARS}"));
            }
            if let Some(t) = &s.throttle {
                self.check_throttle(&sp.key("throttle"), t);
            }
            if let Some(c) = &s.cache {
                self.check_cache(&sp.key("cache"), c, true, None);
            }
            if let Some(c) = &s.canary {
                if !(0.0..=100.0).contains(&c.percent) {
                    self.err(sp.key("canary").key("percent"), "canary percent must be 0 to 100");
                }
            }
        }
        for (name, i) in &a.integrations {
            self.check_integration(&integration_at(p, a, name), i, settings, env, &format!("{}:{}", a.name, name));
        }

        // routes
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for (ri, r) in a.routes.iter().enumerate() {
            let rp = route_at(p, a, ri);
            if ws {
                self.ws_route(&rp, r);
            } else {
                if r.route_response.is_some() {
                    self.err(rp.key("route_response"), "`route_response` is for WebSocket routes");
                }
                match parse_route_key(&r.route) {
                    Ok(k) => keys.push((ri, k)),
                    Err(m) => self.err(rp.key("route"), m),
                }
            }
            if !seen.insert(r.route.as_str()) {
                self.err(rp.key("route"), format!("route {:?} is defined twice", r.route));
            }
            if let Some(c) = &r.cache {
                self.check_cache(&rp.key("cache"), c, false, Some(&r.route));
                // AWS: a method's cache settings need the stage cache first
                let stage_cached =
                    a.stages.values().any(|s| s.cache.as_ref().is_some_and(|c| c.ttl.is_none_or(|t| !t.0.is_zero())));
                let turns_on = c.ttl.is_none_or(|t| !t.0.is_zero());
                if turns_on && !stage_cached {
                    self.err(
                        rp.key("cache"),
                        "the route's cache does nothing: no stage of this API has a cache (set [apis.stages.NAME] cache = { ttl = ... } first)",
                    );
                }
            }
            if let Some(t) = &r.throttle {
                self.check_throttle(&rp.key("throttle"), t);
            }
            if let Some(name) = &r.authorizer {
                if !self.known_authorizers.contains(name) {
                    self.err(rp.key("authorizer"), format!("no authorizer named {name:?}"));
                }
            }
            if r.scopes.is_some() && r.authorizer.is_none() {
                self.err(rp.key("scopes"), "scopes need an authorizer on the route");
            }
            match &r.integration {
                IntegrationRef::Name(n) => {
                    if !a.integrations.contains_key(n) {
                        self.err(rp.key("integration"), format!("no integration named {n:?} in API {:?}", a.name));
                    }
                }
                IntegrationRef::Inline(i) => {
                    self.check_integration(&rp.key("integration"), i, settings, env, &format!("{}:route{}", a.name, ri))
                }
            }
        }
        let router = match Router::build(keys.iter().map(|(i, k)| (*i, k))) {
            Ok(r) => r,
            Err((ri, m)) => {
                self.err(route_at(p, a, ri).key("route"), m);
                return None;
            }
        };

        // gateway responses
        let mut overrides = Overrides::default();
        for (name, g) in &a.gateway_responses {
            let gp = p.key("gateway_responses").key(name);
            let Some(t) = ResponseType::from_name(name) else {
                self.err(gp, format!("unknown gateway response type {name:?}"));
                continue;
            };
            if let Some(s) = g.status {
                if !(100..=599).contains(&s) {
                    self.err(gp.key("status"), "status must be 100 to 599");
                }
            }
            let headers = self.headers(&gp.key("headers"), &g.headers);
            let body_template = g.body.as_ref().map(|b| {
                // minijinja bodies are JSON-escaped by their `gw:` name
                let base = format!("gw:{}:{}", a.name, name);
                self.text_template(gp.key("body"), env, &base, b, |base, _| base.to_string(), str::to_string)
            });
            overrides.0.insert(t, CustomResponse { status: g.status, headers, body_template });
        }

        // stages: resolve every route's integration under each stage's (and canary's) variables
        let mut stages = vec![];
        for (sname, s) in &a.stages {
            let sp = p.key("stages").key(sname);
            let view = self.stage_view(p, &sp, a, &keys, &s.variables, false, settings);
            let canary = s.canary.as_ref().map(|c| {
                let mut vars = s.variables.clone();
                vars.extend(c.variables.clone());
                (c.percent / 100.0, self.stage_view(p, &sp.key("canary"), a, &keys, &vars, true, settings))
            });
            let rt = self.rt.clone();
            let reg = &rt.limiters;
            let throttle = s.throttle.map(|t| reg.bucket(&format!("stage:{}:{sname}", a.name), t.rate, t.burst));
            let route_throttles = a
                .routes
                .iter()
                .map(|r| {
                    r.throttle.map(|t| reg.bucket(&format!("route:{}:{sname}:{}", a.name, r.route), t.rate, t.burst))
                })
                .collect();
            let route_caches = self.route_caches(a, sname, s);
            stages.push(snapshot::Stage {
                metrics: Box::default(),
                route_caches,
                name: Arc::from(sname.as_str()),
                access_log: s.access_log,
                view,
                canary,
                throttle,
                route_throttles,
            });
        }

        let mut compiled = vec![];
        for (ri, r) in a.routes.iter().enumerate() {
            let rp = route_at(p, a, ri);
            let tname = format!("{}:{ri}", a.name);
            compiled.push((
                r.validate.as_ref().and_then(|v| self.validator(&rp.key("validate"), v)).map(Arc::new),
                r.request_transform
                    .as_ref()
                    .map(|t| Arc::new(self.request_transform(&rp.key("request_transform"), t, env, &tname))),
                r.response_transform
                    .as_ref()
                    .map(|t| Arc::new(self.response_transform(&rp.key("response_transform"), t, env, &tname))),
            ));
        }
        let cors = a.cors.as_ref().map(|c| self.cors(&p.key("cors"), c));
        let binary = crate::transform::BinaryTypes(
            a.binary_media_types.iter().flatten().map(|t| t.trim().to_ascii_lowercase()).collect(),
        );
        let routes = a
            .routes
            .iter()
            .zip(compiled)
            .map(|(r, (validate, request_transform, response_transform))| snapshot::Route {
                validate,
                request_transform,
                response_transform,
                key: Arc::from(r.route.as_str()),
                api_key_required: r.api_key_required.unwrap_or(false),
                authorizer: r
                    .authorizer
                    .as_ref()
                    .and_then(|n| authorizers.get(n).map(|a| (Arc::from(n.as_str()), a.clone()))),
                scopes: r.scopes.clone().unwrap_or_default(),
                integration: Arc::from(match &r.integration {
                    IntegrationRef::Name(n) => n.as_str(),
                    IntegrationRef::Inline(i) => i.kind.as_str(),
                }),
            })
            .collect::<Vec<_>>();
        let name: Arc<str> = Arc::from(a.name.as_str());
        for s in &mut stages {
            s.metrics = snapshot::route_metrics(&name, &s.name, &routes);
        }
        let policy = a.policy.as_ref().map(|pol| self.policy(&p.key("policy"), pol));
        let websocket = if ws { Some(Arc::new(self.ws_api(p, a, authorizers, &stages)?)) } else { None };
        Some(snapshot::Api {
            name,
            private: a.endpoint == EndpointType::Private,
            router,
            routes,
            stages,
            responses: overrides,
            policy,
            cors,
            binary,
            edge: None,
            websocket,
        })
        .map(|api| match (&self.edge, a.endpoint) {
            (Some((edge, target)), EndpointType::Edge) => edge::forwarding(target, edge, api),
            _ => api,
        })
    }
}

/// Parses "10.0.0.0/8", "::1/128" or a bare address.
pub fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR such as \"10.0.0.0/8\" or an address"))
}

struct LoadedKeys {
    header: http::HeaderName,
    store: crate::api_keys::KeyStore,
    /// (plan, line in the key file) to check once the plans are known.
    plans_used: Vec<(String, usize)>,
    file: PathBuf,
}

/// A file named by the config, kept for locating errors in it.
struct SideFile {
    path: PathBuf,
    locator: Locator,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match load_str(Path::new("/tmp/t.toml"), text, &Runtime::new()) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| format!("{}:{}: {}", e.line, e.col, e.message)).collect(),
        }
    }

    #[test]
    fn unsafe_and_impossible_settings_are_errors_at_their_key() {
        let e = errors("[server]\nmax_headers = 0\nheader_timeout = \"1ms\"\nmax_header_size = \"10B\"\n");
        assert!(e.iter().any(|m| m.starts_with("2:") && m.contains("server.max_headers")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("3:") && m.contains("server.header_timeout")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("4:") && m.contains("server.max_header_size")), "{e:?}");
        let e = errors("[authorizers.a]\ntype = \"request\"\nuri = \"http://127.0.0.1:1/\"\nidentity_sources = []\n");
        assert!(e.iter().any(|m| m.starts_with("4:") && m.contains("identity_sources")), "{e:?}");
        let e = errors("[[apis]]\nname = \"a\"\n[apis.cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n[apis.stages.prod]\n");
        assert!(e.iter().any(|m| m.starts_with("5:") && m.contains("allow_credentials")), "{e:?}");
    }

    #[test]
    fn a_failed_compile_registers_no_limiter() {
        let bad = "[defaults.throttle]\nrate = 77.0\nburst = 7\n[server]\nmax_headers = 0\n";
        let rt = Runtime::new();
        assert!(load_str(Path::new("/tmp/t.toml"), bad, &rt).is_err());
        let good = "[defaults.throttle]\nrate = 77.0\nburst = 7\n";
        let a = load_str(Path::new("/tmp/t.toml"), good, &rt).expect("good");
        let b = load_str(Path::new("/tmp/t.toml"), good, &rt).expect("good");
        assert!(Arc::ptr_eq(&a.account, &b.account), "a committed limiter is reused by the next load");
    }

    /// The shipped `conf/edgegate.toml`, compiled, as a stable text: any change in what it
    /// means (a default, a route, a limit) shows up as a diff against the golden file.
    /// `UPDATE_GOLDEN=1 cargo test --lib golden` rewrites it.
    #[test]
    fn golden_shipped_config() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let snap = load(&root.join("conf/edgegate.toml"), &Runtime::new()).expect("the shipped config compiles");
        let mut out = String::new();
        let s = &snap.settings;
        out += &format!(
            "settings: max_body={} max_header_size={} max_headers={} max_integration_timeout={:?} trusted_proxies={:?}\n",
            s.max_body, s.max_header_size, s.max_headers, s.max_integration_timeout, s.trusted_proxies
        );
        let l = &snap.listeners;
        out += &format!(
            "listeners: listen={:?} private={:?} admin={} tls={:?} threads={} grace={:?} header_timeout={:?}\n",
            l.listen, l.private_listen, l.admin_listen, l.tls_listen, l.threads, l.grace_period, l.header_timeout
        );
        out += &format!("plans: {:?}\n", {
            let mut p: Vec<_> = snap.plans.keys().collect();
            p.sort();
            p
        });
        for a in &snap.apis {
            out += &format!("api {}: cors={} policy={}\n", a.name, a.cors.is_some(), a.policy.is_some());
            for st in &a.stages {
                out += &format!(
                    "  stage {}: throttle={} canary={}\n",
                    st.name,
                    st.throttle.is_some(),
                    st.canary.as_ref().map(|c| c.0).unwrap_or(0.0)
                );
                for (ri, r) in a.routes.iter().enumerate() {
                    let cache = st.route_caches.get(ri).and_then(|c| c.as_ref()).map(|c| c.ttl);
                    out += &format!(
                        "    {} -> {} key={} authorizer={} scopes={:?} validate={} transform={}/{} cache={:?} throttle={}\n",
                        r.key,
                        r.integration,
                        r.api_key_required,
                        r.authorizer.as_ref().map(|a| &*a.0).unwrap_or("-"),
                        r.scopes,
                        r.validate.is_some(),
                        r.request_transform.is_some(),
                        r.response_transform.is_some(),
                        cache,
                        st.route_throttles.get(ri).is_some_and(|t| t.is_some()),
                    );
                }
            }
        }
        let golden = root.join("tests/fixtures/golden/edgegate.toml.txt");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &out).expect("write golden");
        }
        let want = std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 writes it)");
        assert_eq!(out, want, "conf/edgegate.toml compiles to something else now; review and UPDATE_GOLDEN=1");
    }
}
