//! Loading the configuration: read, parse (`model`), validate every key, compile into a
//! `Snapshot`. All problems are gathered and reported as `FILE:LINE:COL: message`; a
//! config with any problem compiles to nothing, so a reload keeps what runs.

pub mod error;
pub mod model;
pub mod units;

use crate::responses::{CustomResponse, Overrides, ResponseType};
use crate::routing::{parse_route_key, RouteKey, Router};
use crate::snapshot::{self, AccessLogTarget, Listeners, Mount, Settings, Snapshot, StageView};
use crate::tls::CertStore;
use crate::upstream;
pub use error::{ConfigError, ConfigErrors, KeyPath, Locator};
use model::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Reads, validates and compiles the config at `path`.
pub fn load(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let src =
        std::fs::read_to_string(path).map_err(|e| ConfigErrors::single(path, format!("cannot read config: {e}")))?;
    load_str(path, &src)
}

/// As `load`, from text already read (`path` names it in errors and anchors relative paths).
pub fn load_str(path: &Path, src: &str) -> Result<Snapshot, ConfigErrors> {
    // Compiling registers no state until it succeeded (limiters, cache capacities): one
    // compile at a time, then everything it staged is committed or discarded.
    static COMPILING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
    let result = compile_str(path, src);
    if result.is_ok() {
        crate::throttle::REGISTRY.commit();
        crate::cache::Store::commit_capacity_changes();
    } else {
        crate::throttle::REGISTRY.discard();
        crate::cache::Store::discard_capacity_changes();
    }
    result
}

fn compile_str(path: &Path, src: &str) -> Result<Snapshot, ConfigErrors> {
    let locator = Locator::new(src);
    let mut cfg: Config = toml::from_str(src).map_err(|e| {
        let (line, col) = e.span().map(|s| locator.line_col(s.start)).unwrap_or((1, 1));
        let msg = e.message().trim().to_string();
        ConfigErrors(vec![ConfigError { file: path.to_path_buf(), line, col, message: msg }])
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Compiler {
        dir,
        known_authorizers: HashSet::new(),
        errors: vec![],
        other_errors: vec![],
        files: vec![path.to_path_buf()],
        hasher: Sha256::new(),
    };
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
    dir: PathBuf,
    /// Every `[authorizers.*]` name, of any type (so routes name only defined ones).
    known_authorizers: HashSet<String>,
    errors: Vec<(KeyPath, String)>,
    /// Errors located in other files the config names (the API key file).
    other_errors: Vec<ConfigError>,
    files: Vec<PathBuf>,
    hasher: Sha256,
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
    fn err(&mut self, p: KeyPath, m: impl Into<String>) {
        self.errors.push((p, m.into()));
    }

    fn unsupported(&mut self, p: KeyPath, what: &str) {
        self.err(p, format!("{what} is not supported yet by this version of edgegate; remove it"));
    }

    /// Resolves a path relative to the config's directory, checks it exists and folds its
    /// contents into the version hash.
    fn file(&mut self, p: KeyPath, name: &str) -> Option<(PathBuf, Vec<u8>)> {
        let full = self.dir.join(name);
        match std::fs::read(&full) {
            Ok(bytes) => {
                self.hasher.update(&bytes);
                self.files.push(full.clone());
                Some((full, bytes))
            }
            Err(e) => {
                self.err(p, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    /// Reads and parses another TOML file the config names (the API key file, SigV4
    /// credentials). Its errors point into that file, at FILE:LINE:COL of their own.
    fn side_file<T: serde::de::DeserializeOwned>(&mut self, p: KeyPath, name: &str) -> Option<(T, SideFile)> {
        let (path, bytes) = self.file(p, name)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let side = SideFile { locator: Locator::new(&text), path };
        match toml::from_str(&text) {
            Ok(v) => Some((v, side)),
            Err(e) => {
                let (line, col) = e.span().map(|s| side.locator.line_col(s.start)).unwrap_or((1, 1));
                let message = e.message().trim().to_string();
                self.other_errors.push(ConfigError { file: side.path, line, col, message });
                None
            }
        }
    }

    fn side_error(&mut self, side: &SideFile, kp: &KeyPath, message: String) {
        let (line, col) = side.locator.locate(kp);
        self.other_errors.push(ConfigError { file: side.path.clone(), line, col, message });
    }

    fn listen_addrs(&mut self, p: KeyPath, addrs: &[String], seen: &mut HashSet<SocketAddr>) {
        for (i, a) in addrs.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(sa) => {
                    if !seen.insert(sa) {
                        self.err(p.idx(i), format!("address {a} is listed twice"));
                    }
                }
                Err(_) => {
                    self.err(p.idx(i), format!("{a:?} is not an address such as \"127.0.0.1:8080\" or \"[::1]:8080\""))
                }
            }
        }
    }

    /// `openapi = "FILE"`: the document's routes and integrations join the API's own; a
    /// route or integration the config writes itself wins over the document's. What the
    /// document has that cannot be imported is logged.
    fn merge_openapi(&mut self, cfg: &mut Config) {
        let root = KeyPath::root();
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
            if a.cors.is_none() {
                a.cors = t.remove("cors").and_then(|v| v.try_into().ok());
            }
        }
    }

    fn compile(&mut self, cfg: &Config) -> Option<Snapshot> {
        let root = KeyPath::root();
        let settings = self.server(&root.key("server"), &cfg.server);
        let (certs, tls_listen, client_auth) = self.tls(&root.key("tls"), cfg);

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
            if !(c.redis.starts_with("redis://") || c.redis.starts_with("rediss://") || c.redis.starts_with("unix://"))
            {
                self.err(p.key("redis"), format!("{:?} must be a redis:// URL", c.redis));
                return None;
            }
            match crate::throttle::REGISTRY.cluster(&c.redis) {
                Ok(cl) => Some((cl, mode)),
                Err(m) => {
                    self.err(p.key("redis"), m);
                    None
                }
            }
        });
        let authorizers = self.authorizers(&root, cfg);
        if !cfg.vpc_links.is_empty() {
            self.unsupported(root.key("vpc_links"), "VPC links ([[vpc_links]])");
        }
        if cfg.edge.is_some() {
            self.unsupported(root.key("edge"), "the edge role ([edge])");
        }

        let mut env = crate::templates::environment();
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
        for (di, d) in cfg.domains.iter().enumerate() {
            let p = root.key("domains").idx(di);
            let host = d.host.to_ascii_lowercase();
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
            crate::throttle::REGISTRY.bucket("account", t.rate, t.burst)
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
                threads: cfg.server.threads,
                grace_period: cfg.server.grace_period.0,
                header_timeout: cfg.server.header_timeout.0,
                upgrade_sock: cfg.server.upgrade_sock.clone(),
                pid_file: cfg.server.pid_file.clone(),
                watch: cfg.server.watch,
            },
        })
    }

    fn server(&mut self, p: &KeyPath, s: &Server) -> Settings {
        let mut seen = HashSet::new();
        self.listen_addrs(p.key("listen"), &s.listen, &mut seen);
        self.listen_addrs(p.key("private_listen"), &s.private_listen, &mut seen);
        self.listen_addrs(p.key("admin_listen"), std::slice::from_ref(&s.admin_listen), &mut seen);
        if s.threads > 1024 {
            self.err(p.key("threads"), "threads must be 0 (one per core) to 1024");
        }
        let mut trusted = vec![];
        for (i, c) in s.trusted_proxies.iter().enumerate() {
            match parse_cidr(c) {
                Ok(n) => trusted.push(n),
                Err(m) => self.err(p.key("trusted_proxies").idx(i), m),
            }
        }
        if s.max_body.0 == 0 {
            self.err(p.key("max_body"), "max_body must be greater than 0");
        }
        if s.max_header_size.0 < 1024 {
            self.err(p.key("max_header_size"), "max_header_size must be at least 1KiB");
        }
        if s.header_timeout.0 < Duration::from_millis(100) {
            self.err(p.key("header_timeout"), "header_timeout must be at least 100ms");
        }
        if s.max_headers == 0 {
            self.err(p.key("max_headers"), "max_headers must be greater than 0");
        }
        if s.max_integration_timeout.0.is_zero() {
            self.err(p.key("max_integration_timeout"), "max_integration_timeout must be greater than 0");
        }
        let access_log = match s.access_log.as_str() {
            "off" => AccessLogTarget::Off,
            "stdout" => AccessLogTarget::Stdout,
            f => {
                let full = self.dir.join(f);
                match full.parent() {
                    Some(d) if d.as_os_str().is_empty() || d.is_dir() => AccessLogTarget::File(full),
                    _ => {
                        self.err(p.key("access_log"), format!("the directory of {} does not exist", full.display()));
                        AccessLogTarget::Off
                    }
                }
            }
        };
        for (k, v) in [("upgrade_sock", &s.upgrade_sock), ("pid_file", &s.pid_file)] {
            if v.is_empty() {
                self.err(p.key(k), format!("{k} must not be empty"));
            }
        }
        Settings {
            trusted_proxies: trusted,
            max_body: s.max_body.0,
            max_header_size: s.max_header_size.0,
            max_headers: s.max_headers,
            max_integration_timeout: s.max_integration_timeout.0,
            access_log,
        }
    }

    fn tls(&mut self, p: &KeyPath, cfg: &Config) -> (CertStore, Vec<String>, (ClientAuthMode, Option<PathBuf>)) {
        let mut store = CertStore::default();
        let Some(t) = &cfg.tls else {
            return (store, vec![], (ClientAuthMode::Off, None));
        };
        let mut seen: HashSet<SocketAddr> =
            cfg.server.listen.iter().chain(&cfg.server.private_listen).filter_map(|a| a.parse().ok()).collect();
        self.listen_addrs(p.key("listen"), &t.listen, &mut seen);
        if !matches!(t.min_version.as_str(), "1.2" | "1.3") {
            self.err(p.key("min_version"), format!("min_version {:?} must be \"1.2\" or \"1.3\"", t.min_version));
        }
        if !t.listen.is_empty() && t.certificates.is_empty() {
            self.err(p.key("listen"), "TLS listeners need at least one [[tls.certificates]]");
        }
        for (i, c) in t.certificates.iter().enumerate() {
            let cp = p.key("certificates").idx(i);
            let cert = self.file(cp.key("cert"), &c.cert);
            let key = self.file(cp.key("key"), &c.key);
            if let (Some((_, cert)), Some((_, key))) = (cert, key) {
                match CertStore::load(&cert, &key) {
                    Ok(ck) => store.add(&c.sni, ck),
                    Err(e) => self.err(cp.key("cert"), e),
                }
            }
        }
        let mode = t.client_auth.as_ref().map(|c| c.mode).unwrap_or_default();
        if let Some(ca) = &t.client_auth {
            match (&ca.ca, ca.mode) {
                (None, ClientAuthMode::Optional | ClientAuthMode::Required) => {
                    self.err(p.key("client_auth").key("mode"), "client_auth needs ca = \"FILE\" (the client CA bundle)")
                }
                (Some(f), _) => {
                    if let Some((_, pem)) = self.file(p.key("client_auth").key("ca"), f) {
                        if openssl::x509::X509::stack_from_pem(&pem).map(|v| v.is_empty()).unwrap_or(true) {
                            self.err(
                                p.key("client_auth").key("ca"),
                                format!("{f}: no PEM certificate in the CA bundle"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        let ca = t.client_auth.as_ref().and_then(|c| c.ca.as_ref()).map(|f| self.dir.join(f));
        (store, t.listen.clone(), (mode, ca))
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
        env: &mut minijinja::Environment<'static>,
        authorizers: &HashMap<String, snapshot::Authorizer>,
    ) -> Option<snapshot::Api> {
        if a.protocol == Protocol::Websocket {
            self.unsupported(p.key("protocol"), "WebSocket APIs (protocol = \"websocket\")");
        }
        if a.endpoint == EndpointType::Edge {
            self.unsupported(p.key("endpoint"), "endpoint = \"edge\"");
        }
        self.base_path(p.key("base_path"), &a.base_path);
        for (k, present) in [
            ("route_selection", a.route_selection.is_some()),
            ("idle_timeout", a.idle_timeout.is_some()),
            ("max_connection_duration", a.max_connection_duration.is_some()),
        ] {
            if present {
                self.unsupported(p.key(k), &format!("`{k}`"));
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
            match parse_route_key(&r.route) {
                Ok(k) => keys.push((ri, k)),
                Err(m) => self.err(rp.key("route"), m),
            }
            if !seen.insert(r.route.as_str()) {
                self.err(rp.key("route"), format!("route {:?} is defined twice", r.route));
            }
            if let Some(c) = &r.cache {
                self.check_cache(&rp.key("cache"), c, false, Some(&r.route));
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
                let tname = format!("gw:{}:{}", a.name, name);
                if let Err(e) = env.add_template_owned(tname.clone(), b.clone()) {
                    self.err(gp.key("body"), format!("template error: {e}"));
                }
                tname
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
            let reg = &crate::throttle::REGISTRY;
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
            .collect();
        let policy = a.policy.as_ref().map(|pol| self.policy(&p.key("policy"), pol));
        Some(snapshot::Api {
            name: Arc::from(a.name.as_str()),
            endpoint: a.endpoint,
            router,
            routes,
            stages,
            responses: overrides,
            policy,
            cors,
            binary,
        })
    }

    /// Reads a JSON or YAML document the config names (schemas, OpenAPI documents); errors
    /// point into that file.
    fn data_file(&mut self, p: KeyPath, name: &str) -> Option<serde_json::Value> {
        let (path, bytes) = self.file(p, name)?;
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        let parsed = if yaml {
            serde_yaml::from_slice::<serde_yaml::Value>(&bytes).map(crate::openapi::yaml_to_json).map_err(|e| {
                let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
                (line, col, e.to_string())
            })
        } else {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| (e.line(), e.column(), e.to_string()))
        };
        match parsed {
            Ok(v) => Some(v),
            Err((line, col, message)) => {
                self.other_errors.push(ConfigError { file: path, line, col, message });
                None
            }
        }
    }

    fn validator(&mut self, p: &KeyPath, v: &model::Validate) -> Option<crate::validation::Validator> {
        let body = match &v.body {
            None => None,
            Some(model::SchemaRef::File(f)) => self.data_file(p.key("body"), f),
            Some(model::SchemaRef::Inline(t)) => match serde_json::to_value(t) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(p.key("body"), format!("schema: {e}"));
                    None
                }
            },
        };
        let body = body.and_then(|schema| match crate::validation::compile_schema(&schema) {
            Ok(c) => Some(c),
            Err(e) => {
                self.err(p.key("body"), format!("invalid JSON Schema: {e}"));
                None
            }
        });
        let mut headers = vec![];
        for (i, h) in v.headers.iter().enumerate() {
            match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => headers.push(n),
                Err(_) => self.err(p.key("headers").idx(i), format!("{h:?} is not a header name")),
            }
        }
        Some(crate::validation::Validator {
            query: v.query.clone(),
            headers,
            body,
            body_required: v.body_required,
            content_types: v.content_types.iter().map(|c| c.trim().to_ascii_lowercase()).collect(),
        })
    }

    /// Compiles `template` as `name`; a syntax error is a config error at `p`.
    fn template(
        &mut self,
        p: KeyPath,
        env: &mut minijinja::Environment<'static>,
        name: String,
        template: &str,
    ) -> String {
        if let Err(e) = env.add_template_owned(name.clone(), template.to_string()) {
            self.err(p, format!("template error: {e}"));
        }
        name
    }

    fn header_templates(
        &mut self,
        p: &KeyPath,
        env: &mut minijinja::Environment<'static>,
        prefix: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> (Vec<(http::HeaderName, String)>, Vec<http::HeaderName>) {
        let mut out = vec![];
        for (k, t) in set {
            match http::HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => out.push((n, self.template(p.key("set_headers").key(k), env, format!("{prefix}:h:{k}"), t))),
                Err(_) => self.err(p.key("set_headers").key(k), format!("{k:?} is not a header name")),
            }
        }
        let mut rm = vec![];
        for (i, k) in remove.iter().enumerate() {
            match http::HeaderName::from_bytes(k.as_bytes()) {
                Ok(n) => rm.push(n),
                Err(_) => self.err(p.key("remove_headers").idx(i), format!("{k:?} is not a header name")),
            }
        }
        (out, rm)
    }

    fn request_transform(
        &mut self,
        p: &KeyPath,
        t: &model::RequestTransform,
        env: &mut minijinja::Environment<'static>,
        tname: &str,
    ) -> crate::transform::RequestTransform {
        let prefix = format!("req:{tname}");
        let (set_headers, remove_headers) = self.header_templates(p, env, &prefix, &t.set_headers, &t.remove_headers);
        let set_query = t
            .set_query
            .iter()
            .map(|(k, v)| (k.clone(), self.template(p.key("set_query").key(k), env, format!("{prefix}:q:{k}"), v)))
            .collect();
        crate::transform::RequestTransform {
            set_headers,
            remove_headers,
            set_query,
            path: t.path.as_ref().map(|b| self.template(p.key("path"), env, format!("{prefix}:path"), b)),
            body: self.body_template(p, env, &prefix, t.body.as_deref()),
        }
    }

    /// A transform's `body`: empty means the body passes through untouched.
    fn body_template(
        &mut self,
        p: &KeyPath,
        env: &mut minijinja::Environment<'static>,
        prefix: &str,
        body: Option<&str>,
    ) -> Option<String> {
        body.filter(|b| !b.is_empty())
            .map(|b| self.template(p.key("body"), env, crate::templates::name_for(&format!("{prefix}:body"), b), b))
    }

    fn response_transform(
        &mut self,
        p: &KeyPath,
        t: &model::ResponseTransform,
        env: &mut minijinja::Environment<'static>,
        tname: &str,
    ) -> crate::transform::ResponseTransform {
        let prefix = format!("resp:{tname}");
        let (set_headers, remove_headers) = self.header_templates(p, env, &prefix, &t.set_headers, &t.remove_headers);
        let mut status = vec![];
        for (from, to) in &t.status {
            let sp = p.key("status").key(from);
            let from = from.parse::<u16>().ok().and_then(|c| http::StatusCode::from_u16(c).ok());
            let to = http::StatusCode::from_u16(*to).ok().filter(|c| c.as_u16() >= 200);
            match (from, to) {
                (Some(f), Some(t)) => status.push((f, t)),
                _ => self.err(sp, "status remapping must map a status code to one of 200 to 599, as { \"201\" = 200 }"),
            }
        }
        crate::transform::ResponseTransform {
            status,
            set_headers,
            remove_headers,
            body: self.body_template(p, env, &prefix, t.body.as_deref()),
        }
    }

    fn cors(&mut self, p: &KeyPath, c: &model::Cors) -> crate::cors::Cors {
        let value = |this: &mut Self, k: &str, list: &[String]| -> Option<http::HeaderValue> {
            if list.is_empty() {
                return None;
            }
            http::HeaderValue::from_str(&list.join(", "))
                .map_err(|_| this.err(p.key(k), "values must be plain header text"))
                .ok()
        };
        for (i, o) in c.allow_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                self.err(
                    p.key("allow_origins").idx(i),
                    format!("{o:?} must be \"*\" or an origin such as \"https://app.example.com\""),
                );
            }
        }
        if c.allow_credentials && c.allow_origins.iter().any(|o| o == "*") {
            // a wildcard with credentials would let every site read answers with the user's cookies
            self.err(p.key("allow_credentials"), "allow_credentials = true needs explicit allow_origins, not \"*\"");
        }
        let methods = if c.allow_methods.is_empty() {
            vec!["GET".into(), "HEAD".into(), "POST".into()]
        } else {
            c.allow_methods.clone()
        };
        crate::cors::Cors {
            origins: c.allow_origins.iter().map(|o| o.trim_end_matches('/').to_string()).collect(),
            any_origin: c.allow_origins.iter().any(|o| o == "*"),
            methods: value(self, "allow_methods", &methods).unwrap_or(http::HeaderValue::from_static("GET")),
            headers: value(self, "allow_headers", &c.allow_headers),
            expose: value(self, "expose_headers", &c.expose_headers),
            max_age: c.max_age.map(|d| http::HeaderValue::from(d.0.as_secs())),
            credentials: c.allow_credentials,
        }
    }

    fn authorizers(&mut self, root: &KeyPath, cfg: &Config) -> HashMap<String, snapshot::Authorizer> {
        let mut out = HashMap::new();
        for (name, a) in &cfg.authorizers {
            self.known_authorizers.insert(name.clone());
            let p = root.key("authorizers").key(name);
            match a.kind.as_str() {
                "jwt" => {}
                "request" | "token" => {
                    if let Some(l) = self.lambda_authorizer(&p, a, &cfg.server) {
                        out.insert(name.clone(), snapshot::Authorizer::Lambda(Arc::new(l)));
                    }
                    continue;
                }
                "sigv4" => {
                    if let Some(a) = self.sigv4_authorizer(&p, a) {
                        out.insert(name.clone(), snapshot::Authorizer::SigV4(Arc::new(a)));
                    }
                    continue;
                }
                other => {
                    self.err(p.key("type"), format!("unknown authorizer type {other:?} (jwt, request, token, sigv4)"));
                    continue;
                }
            }
            let spec: JwtSpec = match toml::Value::Table(a.rest.clone()).try_into() {
                Ok(s) => s,
                Err(e) => {
                    self.err(p.clone(), e.message().trim().to_string());
                    continue;
                }
            };
            let src = spec.identity_source.as_deref().unwrap_or("$request.header.Authorization");
            let identity_header =
                match src.strip_prefix("$request.header.").map(|h| http::HeaderName::from_bytes(h.as_bytes())) {
                    Some(Ok(h)) => h,
                    _ => {
                        self.err(p.key("identity_source"), format!("{src:?} must be \"$request.header.NAME\""));
                        continue;
                    }
                };
            let mut jwks_url = None;
            let jwks = match spec.jwks.as_deref() {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                    let loopback = u
                        .parse::<http::Uri>()
                        .ok()
                        .and_then(|x| {
                            x.host().map(|h| {
                                h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|i| i.is_loopback())
                            })
                        })
                        .unwrap_or(false);
                    if u.starts_with("http://") && !loopback {
                        self.err(p.key("jwks"), "a JWKS URL must be https:// (http:// only on loopback)");
                        continue;
                    }
                    match crate::auth::jwt::fetch_jwks(u) {
                        Ok(bytes) => {
                            jwks_url = Some(u);
                            Some(bytes)
                        }
                        Err(m) => {
                            self.err(p.key("jwks"), m);
                            continue;
                        }
                    }
                }
                Some(f) => match self.file(p.key("jwks"), f) {
                    Some((_, bytes)) => Some(bytes),
                    None => continue,
                },
                None => None,
            };
            let settings = crate::auth::jwt::JwtSettings {
                issuer: spec.issuer.as_deref(),
                audience: &spec.audience,
                algorithms: &spec.algorithms,
                leeway: spec.leeway.map(|d| d.0).unwrap_or_default(),
                identity_header,
                jwks: jwks.as_deref(),
                jwks_url,
                refresh: spec
                    .jwks_refresh
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(600))
                    .max(Duration::from_secs(10)),
                secret: spec.secret.as_deref(),
            };
            match crate::auth::jwt::JwtAuthorizer::new(settings) {
                Ok(j) => {
                    out.insert(name.clone(), snapshot::Authorizer::Jwt(Arc::new(j)));
                }
                Err(m) => self.err(p.key("type"), m),
            }
        }
        out
    }

    fn sigv4_authorizer(&mut self, p: &KeyPath, a: &Authorizer) -> Option<crate::auth::sigv4::SigV4Authorizer> {
        let spec: SigV4Spec = match toml::Value::Table(a.rest.clone()).try_into() {
            Ok(s) => s,
            Err(e) => {
                self.err(p.clone(), e.message().trim().to_string());
                return None;
            }
        };
        let (file, side): (CredentialsFile, _) = self.side_file(p.key("credentials"), &spec.credentials)?;
        let fail = |this: &mut Self, kp: &KeyPath, m: String| this.side_error(&side, kp, m);
        let mut credentials = HashMap::new();
        for (i, c) in file.credentials.iter().enumerate() {
            let kp = KeyPath::root().key("credentials").idx(i);
            let secret = match (&c.secret, &c.secret_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => v,
                    _ => {
                        fail(self, &kp.key("secret_env"), format!("environment variable {var} is not set"));
                        continue;
                    }
                },
                _ => {
                    fail(self, &kp.key("access_key_id"), "give exactly one of secret and secret_env".into());
                    continue;
                }
            };
            let mut policy = crate::auth::iam::Policy::default();
            for (j, pol) in c.policies.iter().enumerate() {
                let doc: Result<serde_json::Value, String> = match pol {
                    toml::Value::String(js) => serde_json::from_str(js).map_err(|e| e.to_string()),
                    other => serde_json::to_value(other).map_err(|e| e.to_string()),
                };
                match doc.ok().and_then(|d| crate::auth::iam::Policy::parse(&d)) {
                    Some(p) => policy.extend(p),
                    None => fail(
                        self,
                        &kp.key("policies").idx(j),
                        "not an IAM-like policy document (Statement with Effect, Action, Resource)".into(),
                    ),
                }
            }
            let principal = Arc::new(crate::auth::Principal {
                principal_id: if c.principal.is_empty() { c.access_key_id.clone() } else { c.principal.clone() },
                claims: Default::default(),
                scopes: vec![],
                context: Default::default(),
            });
            if credentials
                .insert(c.access_key_id.clone(), crate::auth::sigv4::Credential { secret, principal, policy })
                .is_some()
            {
                fail(self, &kp.key("access_key_id"), format!("access key {:?} is listed twice", c.access_key_id));
            }
        }
        Some(crate::auth::sigv4::SigV4Authorizer {
            service: spec.service.unwrap_or_else(|| "execute-api".into()),
            region: spec.region,
            clock_skew: spec.clock_skew.map(|d| d.0.as_secs()).unwrap_or(300),
            credentials,
        })
    }

    fn lambda_authorizer(
        &mut self,
        p: &KeyPath,
        a: &Authorizer,
        server: &Server,
    ) -> Option<crate::auth::lambda::LambdaAuthorizer> {
        use crate::auth::lambda::{Format, Kind, Settings, Source};
        let spec: LambdaSpec = match toml::Value::Table(a.rest.clone()).try_into() {
            Ok(s) => s,
            Err(e) => {
                self.err(p.clone(), e.message().trim().to_string());
                return None;
            }
        };
        if spec.lambda.is_some() {
            self.unsupported(p.key("lambda"), "a Lambda-invoked authorizer (give uri = \"http://…\")");
            return None;
        }
        let Some(uri) = spec.uri.as_deref() else {
            self.err(p.key("type"), "a request/token authorizer needs uri");
            return None;
        };
        let kind = if a.kind == "token" { Kind::Token } else { Kind::Request };
        let raw_sources = match (kind, &spec.identity_sources, &spec.identity_source) {
            (Kind::Token, None, Some(one)) => vec![one.clone()],
            (Kind::Token, Some(_), _) => {
                self.err(p.key("identity_sources"), "a token authorizer takes one identity_source");
                return None;
            }
            (_, Some(list), None) if list.is_empty() => {
                // an empty identity would make one cached decision answer every caller
                self.err(p.key("identity_sources"), "identity_sources must name at least one source");
                return None;
            }
            (_, Some(list), None) => list.clone(),
            (Kind::Request, None, Some(_)) => {
                self.err(p.key("identity_source"), "a request authorizer takes identity_sources = [...]");
                return None;
            }
            (_, Some(_), Some(_)) => {
                self.err(p.key("identity_source"), "give identity_sources or identity_source, not both");
                return None;
            }
            (_, None, None) => vec!["$request.header.Authorization".to_string()],
        };
        let mut sources = vec![];
        for (i, s) in raw_sources.iter().enumerate() {
            match Source::parse(s) {
                Ok(src) => sources.push(src),
                Err(m) => self.err(p.key("identity_sources").idx(i), m),
            }
        }
        let ttl = spec.result_ttl.map(|d| d.0).unwrap_or(Duration::from_secs(300));
        if ttl > Duration::from_secs(3600) {
            self.err(p.key("result_ttl"), "result_ttl must be at most 3600s (0 disables the cache)");
        }
        let format = match spec.response.as_deref().unwrap_or("iam") {
            "iam" => Format::Iam,
            "simple" => Format::Simple,
            other => {
                self.err(p.key("response"), format!("response {other:?} must be \"iam\" or \"simple\""));
                return None;
            }
        };
        let timeout = spec.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10));
        if timeout.is_zero() || timeout > server.max_integration_timeout.0 {
            self.err(p.key("timeout"), "timeout must be above 0 and at most server.max_integration_timeout");
        }
        let t = match upstream::parse_target("authorizer", uri, timeout, 0, true) {
            Ok(t) => t,
            Err(m) => {
                self.err(p.key("uri"), m);
                return None;
            }
        };
        let path = t.request_uri("", &[], None);
        Some(crate::auth::lambda::LambdaAuthorizer::new(Settings {
            kind,
            addr: t.addr,
            tls: t.tls,
            host: t.host,
            path,
            sources,
            ttl,
            format,
            timeout,
        }))
    }

    /// Stage caches set the store size and default TTL; route caches set TTL, key and
    /// invalidation. Errors name the key that is wrong.
    fn check_cache(&mut self, p: &KeyPath, c: &model::Cache, stage: bool, route: Option<&str>) {
        if let Some(t) = c.ttl {
            if t.0 > crate::cache::MAX_TTL {
                self.err(p.key("ttl"), format!("ttl must be at most {}s", crate::cache::MAX_TTL.as_secs()));
            }
        }
        if stage {
            if c.key.is_some() {
                self.err(p.key("key"), "`key` is a route setting (routes' cache = { key = [...] })");
            }
            if c.invalidate.is_some() {
                self.err(p.key("invalidate"), "`invalidate` is a route setting");
            }
            if c.capacity.is_some_and(|s| s.0 < 64 * 1024) {
                self.err(p.key("capacity"), "capacity must be at least 64KiB");
            }
            return;
        }
        if c.capacity.is_some() {
            self.err(p.key("capacity"), "`capacity` is a stage setting ([apis.stages.NAME] cache)");
        }
        if let Some(i) = &c.invalidate {
            if !matches!(i.as_str(), "never" | "authorized" | "any") {
                self.err(p.key("invalidate"), format!("invalidate {i:?} must be never, authorized or any"));
            }
        }
        let params = route.and_then(|r| parse_route_key(r).ok()).map(|k| k.params()).unwrap_or_default();
        for (i, k) in c.key.iter().flatten().enumerate() {
            let kp = p.key("key").idx(i);
            match cache_key_part(k) {
                Ok(crate::cache::KeyPart::Path(n)) if !params.contains(&n) => {
                    self.err(kp, format!("{k:?}: the route has no path parameter {n:?}"))
                }
                Ok(_) => {}
                Err(m) => self.err(kp, m),
            }
        }
    }

    /// Each route's cache settings under one stage: the stage's cache turns caching on for
    /// every GET/HEAD route (AWS's stage cache); a route's own `cache` adjusts it, `ttl = 0`
    /// turns it off for that route. Without a stage cache nothing is cached.
    fn route_caches(&self, a: &Api, sname: &str, s: &model::Stage) -> Vec<Option<Arc<crate::cache::RouteCache>>> {
        let Some(sc) = s.cache.as_ref() else {
            return a.routes.iter().map(|_| None).collect();
        };
        let stage_ttl = sc.ttl.map(|d| d.0).unwrap_or(crate::cache::DEFAULT_TTL);
        if stage_ttl.is_zero() {
            return a.routes.iter().map(|_| None).collect();
        }
        let capacity = sc.capacity.map(|c| c.0).unwrap_or(crate::cache::DEFAULT_CAPACITY);
        let store = crate::cache::Store::for_stage(&a.name, sname, capacity);
        a.routes
            .iter()
            .map(|r| {
                let rc = r.cache.as_ref();
                let ttl = rc.and_then(|c| c.ttl).map(|d| d.0).unwrap_or(stage_ttl);
                if ttl.is_zero() {
                    return None;
                }
                let invalidate = match rc.and_then(|c| c.invalidate.as_deref()) {
                    Some("any") => crate::cache::Invalidate::Any,
                    Some("authorized") => crate::cache::Invalidate::Authorized,
                    _ => crate::cache::Invalidate::Never,
                };
                let key = rc.and_then(|c| c.key.as_ref()).into_iter().flatten().filter_map(|k| cache_key_part(k).ok());
                Some(Arc::new(crate::cache::RouteCache {
                    store,
                    ttl,
                    key: key.collect(),
                    invalidate,
                    authorized: r.authorizer.is_some(),
                }))
            })
            .collect()
    }

    fn check_throttle(&mut self, p: &KeyPath, t: &Throttle) {
        if !(t.rate > 0.0 && t.rate.is_finite()) {
            self.err(p.key("rate"), "rate must be a positive number of requests per second");
        }
        if t.burst == 0 {
            self.err(p.key("burst"), "burst must be at least 1");
        }
    }

    fn api_keys(&mut self, p: &KeyPath, k: &ApiKeys) -> LoadedKeys {
        let header = k.header.as_deref().unwrap_or("x-api-key");
        let header = http::HeaderName::from_bytes(header.as_bytes()).unwrap_or_else(|_| {
            self.err(p.key("header"), format!("{header:?} is not a header name"));
            http::HeaderName::from_static("x-api-key")
        });
        let mut out =
            LoadedKeys { header, store: Default::default(), plans_used: vec![], file: self.dir.join(&k.file) };
        let Some((parsed, side)) = self.side_file::<crate::api_keys::KeyFile>(p.key("file"), &k.file) else {
            return out;
        };
        let fail = |this: &mut Self, kp: &KeyPath, m: String| this.side_error(&side, kp, m);
        let mut ids = HashSet::new();
        for (i, r) in parsed.keys.iter().enumerate() {
            let kp = KeyPath::root().key("keys").idx(i);
            if !ids.insert(r.id.as_str()) || r.id.is_empty() {
                fail(self, &kp.key("id"), format!("key id {:?} is empty or used twice", r.id));
            }
            match crate::api_keys::parse_hash(&r.hash) {
                Ok(h) => {
                    if !out.store.insert(&r.id, h, &r.plan, r.enabled) {
                        fail(self, &kp.key("hash"), "this hash is listed twice".into());
                    }
                }
                Err(m) => fail(self, &kp.key("hash"), m),
            }
            out.plans_used.push((r.plan.clone(), side.locator.locate(&kp.key("plan")).0));
        }
        out
    }

    fn plans(&mut self, root: &KeyPath, cfg: &Config) -> HashMap<String, snapshot::Plan> {
        let reg = &crate::throttle::REGISTRY;
        let mut plans = HashMap::new();
        // (api, stage) and (api, stage, route) by their names in the contract's syntax
        let find_stage = |s: &str| -> Option<(usize, usize)> {
            let (api, stage) = s.split_once(':')?;
            let ai = cfg.apis.iter().position(|a| a.name == api)?;
            let si = cfg.apis[ai].stages.keys().position(|n| n == stage)?;
            Some((ai, si))
        };
        for (i, u) in cfg.usage_plans.iter().enumerate() {
            let p = root.key("usage_plans").idx(i);
            if !good_name(&u.name) || plans.contains_key(&u.name) {
                self.err(
                    p.key("name"),
                    format!("plan name {:?} is empty, has odd characters or is used twice", u.name),
                );
            }
            let mut stages = HashSet::new();
            for (j, s) in u.stages.iter().enumerate() {
                match find_stage(s) {
                    Some(x) => {
                        stages.insert(x);
                    }
                    None => self
                        .err(p.key("stages").idx(j), format!("{s:?} is not \"API:STAGE\" of a configured API stage")),
                }
            }
            if let Some(t) = &u.throttle {
                self.check_throttle(&p.key("throttle"), t);
            }
            let throttle = u.throttle.map(|t| reg.keyed(&format!("plan:{}", u.name), t.rate, t.burst));
            let throttle_spec = u.throttle.map(|t| crate::throttle::cluster::BucketSpec::new(t.rate, t.burst));
            let mut route_specs = HashMap::new();
            let mut route_throttle = HashMap::new();
            for (k, t) in u.route_throttle.iter().flatten() {
                let rp = p.key("route_throttle").key(k);
                self.check_throttle(&rp, t);
                let found = k.rsplit_once(':').and_then(|(stage, route)| {
                    let (ai, si) = find_stage(stage)?;
                    let ri = cfg.apis[ai].routes.iter().position(|r| r.route == route)?;
                    Some((ai, si, ri))
                });
                match found {
                    Some(x) => {
                        route_throttle.insert(x, reg.keyed(&format!("plan:{}:{k}", u.name), t.rate, t.burst));
                        let spec = crate::throttle::cluster::BucketSpec::new(t.rate, t.burst);
                        route_specs.insert(x, (format!("{}:{k}", u.name), spec));
                    }
                    None => self.err(rp, format!("{k:?} is not \"API:STAGE:ROUTE KEY\" of a configured route")),
                }
            }
            let quota = u.quota.as_ref().and_then(|q| {
                let qp = p.key("quota");
                let Some(period) = crate::throttle::quota::Period::parse(&q.period) else {
                    self.err(qp.key("period"), format!("period {:?} must be day, week or month", q.period));
                    return None;
                };
                if q.limit == 0 {
                    self.err(qp.key("limit"), "limit must be at least 1");
                }
                if q.offset >= q.limit {
                    self.err(qp.key("offset"), "offset must be below the limit");
                }
                Some(reg.quota(&format!("plan:{}", u.name), q.limit, period, q.offset))
            });
            plans.insert(
                u.name.clone(),
                snapshot::Plan {
                    name: u.name.clone(),
                    throttle_spec,
                    route_specs,
                    stages,
                    throttle,
                    route_throttle,
                    quota,
                },
            );
        }
        plans
    }

    fn policy(&mut self, p: &KeyPath, pol: &Policy) -> crate::policy::Policy {
        let mut cidrs = |key: &str, list: &[String]| -> Vec<ipnet::IpNet> {
            let mut out = vec![];
            for (i, c) in list.iter().enumerate() {
                match parse_cidr(c) {
                    Ok(n) => out.push(n),
                    Err(m) => self.err(p.key(key).idx(i), m),
                }
            }
            out
        };
        let allow = cidrs("allow_cidrs", &pol.allow_cidrs);
        let deny = cidrs("deny_cidrs", &pol.deny_cidrs);
        let require_headers = self.headers(&p.key("require_headers"), &pol.require_headers);
        crate::policy::Policy { allow, deny, require_headers }
    }

    fn headers(&mut self, p: &KeyPath, h: &BTreeMap<String, String>) -> Vec<(http::HeaderName, http::HeaderValue)> {
        let mut out = vec![];
        for (k, v) in h {
            match (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v)) {
                (Ok(n), Ok(v)) => out.push((n, v)),
                _ => self.err(p.key(k), format!("invalid header {k:?}: {v:?}")),
            }
        }
        out
    }

    /// Checks an integration's type and keys (once, independent of stages).
    fn check_integration(
        &mut self,
        p: &KeyPath,
        i: &Integration,
        settings: &Settings,
        env: &mut minijinja::Environment<'static>,
        tname: &str,
    ) {
        let present: Vec<&str> = [
            ("uri", i.uri.is_some()),
            ("timeout", i.timeout.is_some()),
            ("retries", i.retries.is_some()),
            ("tls_verify", i.tls_verify.is_some()),
            ("function", i.function.is_some()),
            ("endpoint", i.endpoint.is_some()),
            ("payload_format", i.payload_format.is_some()),
            ("region", i.region.is_some()),
            ("service", i.service.is_some()),
            ("method", i.method.is_some()),
            ("path", i.path.is_some()),
            ("request_template", i.request_template.is_some()),
            ("headers", i.headers.is_some()),
            ("link", i.link.is_some()),
            ("status", i.status.is_some()),
            ("body", i.body.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, b)| b.then_some(k))
        .collect();
        let allowed: &[&str] = match i.kind.as_str() {
            "http" => &["uri", "timeout", "retries", "tls_verify"],
            "mock" => &["status", "headers", "body"],
            "lambda" | "aws" | "vpc_link" => {
                self.unsupported(p.key("type"), &format!("integration type {:?}", i.kind));
                return;
            }
            other => {
                self.err(
                    p.key("type"),
                    format!("unknown integration type {other:?} (http, lambda, aws, vpc_link, mock)"),
                );
                return;
            }
        };
        for k in present {
            if !allowed.contains(&k) {
                self.err(p.key(k), format!("key `{k}` does not apply to a {:?} integration", i.kind));
            }
        }
        match i.kind.as_str() {
            "http" => {
                if i.uri.is_none() {
                    self.err(p.key("type"), "an http integration needs uri");
                }
                if let Some(t) = i.timeout {
                    if t.0.is_zero() || t.0 > settings.max_integration_timeout {
                        self.err(
                            p.key("timeout"),
                            format!(
                                "timeout must be above 0 and at most server.max_integration_timeout ({})",
                                humantime::format_duration(settings.max_integration_timeout)
                            ),
                        );
                    }
                }
                if i.retries.unwrap_or(0) > 5 {
                    self.err(p.key("retries"), "retries must be 0 to 5");
                }
            }
            _ => {
                if let Some(s) = i.status {
                    if !(100..=599).contains(&s) {
                        self.err(p.key("status"), "status must be 100 to 599");
                    }
                }
                if let Some(h) = &i.headers {
                    self.headers(&p.key("headers"), h);
                }
                if let Some(b) = &i.body {
                    if let Err(e) = env.add_template_owned(crate::templates::name_for(&format!("mock:{tname}"), b), b.clone()) {
                        self.err(p.key("body"), format!("template error: {e}"));
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn stage_view(
        &mut self,
        ap: &KeyPath,
        sp: &KeyPath,
        a: &Api,
        keys: &[(usize, RouteKey)],
        vars: &BTreeMap<String, String>,
        is_canary: bool,
        settings: &Settings,
    ) -> StageView {
        // every named integration resolves under these variables, used by a route or not
        let mut cache: HashMap<String, Arc<snapshot::Integration>> = HashMap::new();
        for (n, i) in &a.integrations {
            if let Some(b) =
                self.integration(&integration_at(ap, a, n), sp, i, vars, settings, &format!("{}:{}", a.name, n))
            {
                cache.insert(n.clone(), Arc::new(b));
            }
        }
        let mut integrations = Vec::with_capacity(a.routes.len());
        for (ri, r) in a.routes.iter().enumerate() {
            let (i, ip, tname, cache_key) = match &r.integration {
                IntegrationRef::Name(n) => match a.integrations.get(n) {
                    Some(i) => (i, integration_at(ap, a, n), format!("{}:{}", a.name, n), Some(n.clone())),
                    None => continue,
                },
                IntegrationRef::Inline(i) => {
                    (&**i, route_at(ap, a, ri).key("integration"), format!("{}:route{}", a.name, ri), None)
                }
            };
            let built = match cache_key.as_ref().and_then(|k| cache.get(k)) {
                Some(b) => b.clone(),
                None => {
                    let Some(b) = self.integration(&ip, sp, i, vars, settings, &tname) else {
                        continue;
                    };
                    let b = Arc::new(b);
                    if let Some(k) = cache_key {
                        cache.insert(k, b.clone());
                    }
                    b
                }
            };
            if let (snapshot::Integration::Http(t), Some((_, RouteKey::Http { path, .. }))) =
                (&*built, keys.iter().find(|(k, _)| *k == ri))
            {
                let params: Vec<String> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                    .map(|s| s.trim_end_matches('+').to_string())
                    .collect();
                let missing = t.missing_params(&params);
                if !missing.is_empty() {
                    self.err(
                        ip.key("uri"),
                        format!("uri uses {missing:?}, which route {:?} does not capture", r.route),
                    );
                }
            }
            integrations.push(built);
        }
        StageView { variables: Arc::new(vars.clone()), integrations, is_canary }
    }

    #[allow(clippy::too_many_arguments)]
    fn integration(
        &mut self,
        ip: &KeyPath,
        sp: &KeyPath,
        i: &Integration,
        vars: &BTreeMap<String, String>,
        settings: &Settings,
        tname: &str,
    ) -> Option<snapshot::Integration> {
        match i.kind.as_str() {
            "http" => {
                let uri = i.uri.as_deref()?;
                let uri = match upstream::substitute_stage_vars(uri, vars) {
                    Ok(u) => u,
                    Err(e) => {
                        self.err(ip.key("uri"), format!("{e} in stage `{}`", sp));
                        return None;
                    }
                };
                let timeout = i
                    .timeout
                    .map(|d| d.0)
                    .unwrap_or(settings.max_integration_timeout)
                    .min(settings.max_integration_timeout);
                match upstream::parse_target(tname, &uri, timeout, i.retries.unwrap_or(0), i.tls_verify.unwrap_or(true))
                {
                    Ok(t) => Some(snapshot::Integration::Http(t)),
                    Err(e) => {
                        self.err(ip.key("uri"), e);
                        None
                    }
                }
            }
            "mock" => {
                let headers = i.headers.as_ref().map(|h| self.headers(&ip.key("headers"), h)).unwrap_or_default();
                let body = i.body.as_ref().map(|b| crate::templates::name_for(&format!("mock:{tname}"), b));
                Some(snapshot::Integration::Mock(snapshot::Mock { status: i.status.unwrap_or(200), headers, body }))
            }
            _ => None,
        }
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
