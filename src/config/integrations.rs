//! Integrations per stage view: http and mock targets, stage variables.

use super::*;

impl Compiler {
    /// `[[vpc_links]]`: target groups with balance and health checks.
    pub(super) fn vpc_links(&mut self, root: &KeyPath, cfg: &Config) {
        use crate::integrations::vpc_link::{Balance, Link};
        for (i, l) in cfg.vpc_links.iter().enumerate() {
            let p = root.key("vpc_links").idx(i);
            if self.links.contains_key(&l.name) {
                self.err(p.key("name"), format!("VPC link {:?} is defined twice", l.name));
                continue;
            }
            let balance = match l.balance.as_deref().unwrap_or("round_robin") {
                "round_robin" => Balance::RoundRobin,
                "random" => Balance::Random,
                "consistent" => Balance::Consistent,
                other => {
                    self.err(p.key("balance"), format!("balance {other:?} must be round_robin, random or consistent"));
                    continue;
                }
            };
            let check = match &l.health_check {
                None => None,
                Some(t) => match parse_check(t) {
                    Ok(c) => Some(c),
                    Err((k, m)) => {
                        self.err(p.key("health_check").key(k), m);
                        continue;
                    }
                },
            };
            let sni = l.sni.clone().unwrap_or_default();
            if l.tls == Some(true) && sni.is_empty() {
                self.err(p.key("sni"), "a TLS VPC link needs sni (the name its targets' certificates carry)");
                continue;
            }
            let health = self.rt.link_health.clone();
            match Link::new(&l.name, &l.targets, balance, l.tls.unwrap_or(false), &sni, check, health) {
                Ok(link) => {
                    self.links.insert(l.name.clone(), Arc::new(link));
                }
                Err(e) => self.err(p.key("targets"), e),
            }
        }
    }

    /// `[edge]`: the origins (first healthy wins, health-checked), and the edge cache.
    pub(super) fn edge(
        &mut self,
        p: &KeyPath,
        e: &model::Edge,
        settings: &Settings,
        own: &[String],
    ) -> Option<Arc<crate::integrations::edge::Edge>> {
        if self.links.contains_key(crate::integrations::edge::LINK) {
            self.err(
                p.clone(),
                format!(
                    "a [[vpc_links]] entry is named {:?}, the name of [edge]'s origin group",
                    crate::integrations::edge::LINK
                ),
            );
            return None;
        }
        let check = match &e.health_check {
            Some(t) => match parse_check(t) {
                Ok(c) => c,
                Err((k, m)) => {
                    self.err(p.key("health_check").key(k), m);
                    return None;
                }
            },
            None => crate::integrations::vpc_link::Check {
                http_path: None,
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
            },
        };
        let cache = match &e.cache {
            Some(c) => {
                self.check_cache(&p.key("cache"), c, true, None);
                let ttl = c.ttl.map(|d| d.0).unwrap_or(crate::cache::DEFAULT_TTL);
                let capacity = c.capacity.map(|c| c.0).unwrap_or(crate::cache::DEFAULT_CAPACITY);
                crate::integrations::edge::Edge::cache(
                    &self.rt.caches,
                    ttl,
                    capacity,
                    c.origin_cache_control.as_deref() != Some("ignore"),
                )
            }
            None => crate::integrations::edge::Edge::cache(
                &self.rt.caches,
                crate::cache::DEFAULT_TTL,
                crate::cache::DEFAULT_CAPACITY,
                true,
            ),
        };
        match crate::integrations::edge::Edge::new(
            &e.origins,
            own,
            Some(check),
            settings.max_integration_timeout,
            cache,
            self.rt.link_health.clone(),
        ) {
            Ok(edge) => {
                self.links.insert(crate::integrations::edge::LINK.to_string(), edge.link.clone());
                Some(Arc::new(edge))
            }
            Err((Some(i), m)) => {
                self.err(p.key("origins").idx(i), m);
                None
            }
            Err((None, m)) => {
                self.err(p.key("origins"), m);
                None
            }
        }
    }

    /// A Lambda or AWS endpoint carries signed requests, session tokens and client data:
    /// `http://` only on loopback, unless the integration says `allow_insecure_endpoint`.
    fn secure_endpoint(&mut self, at: &KeyPath, url: &str, allowed: bool) -> Option<()> {
        match crate::outbound::Endpoint::parse(url) {
            Ok(ep) if ep.tls || ep.is_loopback() || allowed => Some(()),
            Ok(_) => {
                self.err(
                    at.clone(),
                    format!("{url:?} is http:// off loopback: signed requests and credentials would travel in clear (use https://, or set allow_insecure_endpoint = true)"),
                );
                None
            }
            Err(e) => {
                self.err(at.clone(), e.to_string());
                None
            }
        }
    }

    /// `text` with the stage's variables substituted; an unknown one is an error at `at`.
    fn stage_substituted(
        &mut self,
        at: &KeyPath,
        sp: &KeyPath,
        text: &str,
        vars: &BTreeMap<String, String>,
    ) -> Option<String> {
        match crate::integrations::http::substitute_stage_vars(text, vars) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(at.clone(), format!("{e} in stage `{}`", sp));
                None
            }
        }
    }

    /// Checks an integration's type and keys (once, independent of stages).
    pub(super) fn check_integration(
        &mut self,
        p: &KeyPath,
        i: &Integration,
        settings: &Settings,
        env: &mut crate::templates::Templates,
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
            ("allow_insecure_endpoint", i.allow_insecure_endpoint.is_some()),
            ("headers", i.headers.is_some()),
            ("link", i.link.is_some()),
            ("status", i.status.is_some()),
            ("body", i.body.is_some()),
            ("action", i.action.is_some()),
            ("passthrough_behavior", i.passthrough_behavior.is_some()),
            ("request_templates", i.request_templates.is_some()),
            ("responses", i.responses.is_some()),
            ("proxy", i.proxy.is_some()),
            ("request_parameters", i.request_parameters.is_some()),
            ("content_handling", i.content_handling.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, b)| b.then_some(k))
        .collect();
        let allowed: &[&str] = match i.kind.as_str() {
            "http" if i.proxy == Some(false) => &[
                "uri",
                "timeout",
                "proxy",
                "method",
                "passthrough_behavior",
                "request_templates",
                "request_parameters",
                "responses",
                "content_handling",
            ],
            "http" => &["uri", "timeout", "retries", "tls_verify", "proxy"],
            "mock" => &["status", "headers", "body", "passthrough_behavior", "request_templates", "responses"],
            "vpc_link" => &["link", "timeout", "retries"],
            "lambda" => &[
                "function",
                "endpoint",
                "payload_format",
                "region",
                "timeout",
                "allow_insecure_endpoint",
                "proxy",
                "passthrough_behavior",
                "request_templates",
                "request_parameters",
                "responses",
                "content_handling",
            ],
            "aws" => &[
                "service",
                "region",
                "endpoint",
                "method",
                "path",
                "request_template",
                "headers",
                "timeout",
                "allow_insecure_endpoint",
                "action",
                "passthrough_behavior",
                "request_templates",
                "request_parameters",
                "responses",
                "content_handling",
            ],
            other => {
                self.err(
                    p.key("type"),
                    format!("unknown integration type {other:?} (http, lambda, aws, vpc_link, mock)"),
                );
                return;
            }
        };
        const MAPPING: [&str; 5] =
            ["passthrough_behavior", "request_templates", "request_parameters", "responses", "method"];
        for k in present {
            if !allowed.contains(&k) {
                let hint = if i.kind == "http" && MAPPING.contains(&k) {
                    " (a non-proxy http integration takes it: set proxy = false)"
                } else {
                    ""
                };
                self.err(p.key(k), format!("key `{k}` does not apply to a {:?} integration{hint}", i.kind));
            }
        }
        if let Err(e) = mapping_of(i, tname) {
            let at = e.at.iter().fold(p.clone(), |at, seg| match seg.parse::<usize>() {
                Ok(n) => at.idx(n),
                Err(_) => at.key(seg),
            });
            self.err(at, e.message);
        }
        if i.request_template.is_some() && i.request_templates.is_some() {
            self.err(
                p.key("request_templates"),
                "give request_template (one template) or request_templates (VTL by media type), not both",
            );
        }
        match i.kind.as_str() {
            "aws" => {
                match i.service.as_deref() {
                    None => self
                        .err(p.key("type"), "an aws integration needs service = \"NAME\" (sqs, sns, dynamodb, s3, …)"),
                    Some(s) if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                        self.err(p.key("service"), format!("service {s:?} is not a service name"))
                    }
                    _ => {}
                }
                if let Some(m) = i.method.as_deref() {
                    if http::Method::from_bytes(m.as_bytes()).is_err() || m != m.to_ascii_uppercase() {
                        self.err(p.key("method"), format!("method {m:?} is not an HTTP method"));
                    }
                }
                if let Some(h) = &i.headers {
                    self.headers(&p.key("headers"), h);
                }
                if let (Some(a), Some(svc)) = (i.action.as_deref(), i.service.as_deref()) {
                    if crate::integrations::aws::action_style(svc, a).is_none() {
                        self.err(
                            p.key("action"),
                            format!(
                                "action-style calls are known for {} (service {svc:?}): give method and path instead",
                                crate::integrations::aws::ACTION_SERVICES.join(", ")
                            ),
                        );
                    }
                }
                if let Some(t) = &i.request_template {
                    let (name, text) = (crate::templates::name_for_service, stage_vars_as_template);
                    self.text_template(p.key("request_template"), env, &format!("aws:{tname}"), t, name, text);
                }
                if let Some(t) = i.timeout {
                    if t.0.is_zero() || t.0 > settings.max_integration_timeout {
                        self.err(
                            p.key("timeout"),
                            "timeout must be above 0 and at most server.max_integration_timeout",
                        );
                    }
                }
            }
            "lambda" => {
                let mapped = i.request_templates.is_some()
                    || i.content_handling.is_some()
                    || i.responses.is_some()
                    || i.passthrough_behavior.is_some()
                    || i.request_parameters.is_some();
                // the Invoke call takes header fields only (its path and query are Lambda's)
                for k in i.request_parameters.iter().flatten().map(|(k, _)| k) {
                    if !k.starts_with("integration.request.header.") {
                        self.err(
                            p.key("request_parameters").key(k),
                            "a Lambda integration's request parameters are header fields of the Invoke call (integration.request.header.NAME)",
                        );
                    }
                }
                if mapped && i.proxy != Some(false) {
                    self.err(
                        p.key("proxy"),
                        "mapping templates and integration responses need proxy = false (a Lambda custom integration)",
                    );
                }
                if i.function.is_none() {
                    self.err(
                        p.key("type"),
                        "a lambda integration needs function = \"NAME\" (a name, ARN or name:alias)",
                    );
                }
                if let Some(f) = i.payload_format.as_deref() {
                    if !matches!(f, "1.0" | "2.0") {
                        self.err(p.key("payload_format"), format!("payload_format {f:?} must be \"1.0\" or \"2.0\""));
                    }
                }
                if let Some(t) = i.timeout {
                    if t.0.is_zero() || t.0 > settings.max_integration_timeout {
                        self.err(
                            p.key("timeout"),
                            "timeout must be above 0 and at most server.max_integration_timeout",
                        );
                    }
                }
            }
            "http" | "vpc_link" => {
                if i.kind == "http" && i.uri.is_none() {
                    self.err(p.key("type"), "an http integration needs uri");
                }
                if let Some(m) = i.method.as_deref() {
                    if http::Method::from_bytes(m.as_bytes()).is_err() || m != m.to_ascii_uppercase() {
                        self.err(p.key("method"), format!("method {m:?} is not an HTTP method"));
                    }
                }
                if i.kind == "vpc_link" && i.link.is_none() {
                    self.err(p.key("type"), "a vpc_link integration needs link = \"NAME\" (a [[vpc_links]] name)");
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
                    let (base, name) = (format!("mock:{tname}"), crate::templates::name_for);
                    self.text_template(p.key("body"), env, &base, b, name, str::to_string);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn stage_view(
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
    pub(super) fn integration(
        &mut self,
        ip: &KeyPath,
        sp: &KeyPath,
        i: &Integration,
        vars: &BTreeMap<String, String>,
        settings: &Settings,
        tname: &str,
    ) -> Option<snapshot::Integration> {
        match i.kind.as_str() {
            "http" if i.proxy == Some(false) => {
                let uri = self.stage_substituted(&ip.key("uri"), sp, i.uri.as_deref()?, vars)?;
                let endpoint = match crate::outbound::Endpoint::parse(&uri) {
                    Ok(e) => e,
                    Err(e) => {
                        self.err(ip.key("uri"), e.to_string());
                        return None;
                    }
                };
                let mapping = match mapping_of(i, tname) {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        crate::integrations::mapping::Mapping::compile(tname, None, None, None, None, &[]).ok()?
                    }
                    Err(_) => return None,
                };
                Some(snapshot::Integration::HttpCustom(crate::integrations::http_custom::Target {
                    endpoint,
                    method: i.method.as_deref().and_then(|m| http::Method::from_bytes(m.as_bytes()).ok()),
                    mapping,
                    timeout: integration_timeout(i, settings),
                }))
            }
            "http" => {
                let uri = i.uri.as_deref()?;
                let uri = match crate::integrations::http::substitute_stage_vars(uri, vars) {
                    Ok(u) => u,
                    Err(e) => {
                        self.err(ip.key("uri"), format!("{e} in stage `{}`", sp));
                        return None;
                    }
                };
                let timeout = integration_timeout(i, settings);
                match crate::integrations::http::parse_target(
                    tname,
                    &uri,
                    timeout,
                    i.retries.unwrap_or(0),
                    i.tls_verify.unwrap_or(true),
                ) {
                    Ok(t) => Some(snapshot::Integration::Http(t)),
                    Err(e) => {
                        self.err(ip.key("uri"), e);
                        None
                    }
                }
            }
            "aws" => {
                let service = i.service.clone()?;
                let region = i.region.clone().unwrap_or_else(|| "us-east-1".into());
                let endpoint = match i.endpoint.as_deref() {
                    Some(e) => Some(self.stage_substituted(&ip.key("endpoint"), sp, e, vars)?),
                    None => None,
                };
                if let Some(e) = &endpoint {
                    self.secure_endpoint(&ip.key("endpoint"), e, i.allow_insecure_endpoint == Some(true))?;
                }
                let mut path =
                    match crate::integrations::http::substitute_stage_vars(i.path.as_deref().unwrap_or("/"), vars) {
                        Ok(p) => p,
                        Err(e) => {
                            self.err(ip.key("path"), format!("{e} in stage `{}`", sp));
                            return None;
                        }
                    };
                let action = i.action.as_deref().map(|a| crate::integrations::aws::action_style(&service, a));
                if let Some(Some(crate::integrations::aws::ActionStyle::Query(q))) = &action {
                    path.push(if path.contains('?') { '&' } else { '?' });
                    path.push_str(q);
                }
                let url = crate::integrations::aws::url(&service, &region, endpoint.as_deref(), &path);
                let ep = match crate::outbound::Endpoint::parse(&url) {
                    Ok(e) => e,
                    Err(e) => {
                        self.err(ip.key(if endpoint.is_some() { "endpoint" } else { "service" }), e.to_string());
                        return None;
                    }
                };
                let signer = match crate::aws::sigv4::Signer::new(&region, &service, &url) {
                    Ok(s) => s,
                    Err(e) => {
                        self.err(ip.key(if endpoint.is_some() { "endpoint" } else { "service" }), e.to_string());
                        return None;
                    }
                };
                let method = http::Method::from_bytes(i.method.as_deref().unwrap_or("POST").as_bytes()).ok()?;
                let mut headers: Vec<(String, String)> =
                    i.headers.iter().flatten().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
                if let Some(Some(crate::integrations::aws::ActionStyle::Json { target, content_type })) = action {
                    headers.retain(|(k, _)| k != "x-amz-target");
                    headers.push(("x-amz-target".into(), target));
                    if !headers.iter().any(|(k, _)| k == "content-type") {
                        headers.push(("content-type".into(), content_type.into()));
                    }
                }
                let template = i.request_template.as_ref().map(|t| {
                    t.name(&format!("aws:{tname}"), |base, text| {
                        crate::templates::name_for_service(base, &stage_vars_as_template(text))
                    })
                });
                let timeout = integration_timeout(i, settings);
                Some(snapshot::Integration::Aws(crate::integrations::aws::Target {
                    service,
                    region,
                    method,
                    endpoint: ep,
                    signer,
                    mapping: mapping_of(i, tname).ok().flatten(),
                    template,
                    headers,
                    timeout,
                }))
            }
            "lambda" => {
                let name = i.function.as_deref()?;
                let endpoint = match i.endpoint.as_deref() {
                    Some(e) => Some(self.stage_substituted(&ip.key("endpoint"), sp, e, vars)?),
                    None => None,
                };
                if let Some(e) = &endpoint {
                    self.secure_endpoint(&ip.key("endpoint"), e, i.allow_insecure_endpoint == Some(true))?;
                }
                let name = match crate::integrations::http::substitute_stage_vars(name, vars) {
                    Ok(n) => n,
                    Err(e) => {
                        self.err(ip.key("function"), format!("{e} in stage `{}`", sp));
                        return None;
                    }
                };
                let region = i.region.as_deref().unwrap_or("us-east-1");
                let function = match crate::aws::invoke::Function::new(&name, endpoint.as_deref(), region) {
                    Ok(f) => f,
                    Err(e) => {
                        self.err(ip.key("function"), e);
                        return None;
                    }
                };
                let format = match i.payload_format.as_deref() {
                    Some("1.0") => crate::integrations::lambda::Format::V1,
                    _ => crate::integrations::lambda::Format::V2,
                };
                let timeout = integration_timeout(i, settings);
                let custom = match i.proxy {
                    Some(false) => mapping_of(i, tname).ok().flatten().or_else(|| {
                        crate::integrations::mapping::Mapping::compile(tname, None, None, None, None, &[]).ok()
                    }),
                    _ => None,
                };
                Some(snapshot::Integration::Lambda(crate::integrations::lambda::Target {
                    function,
                    format,
                    timeout,
                    custom,
                }))
            }
            "vpc_link" => {
                let name = i.link.as_deref()?;
                let Some(link) = self.links.get(name).cloned() else {
                    self.err(ip.key("link"), format!("no [[vpc_links]] named {name:?}"));
                    return None;
                };
                let timeout = integration_timeout(i, settings);
                Some(snapshot::Integration::Http(crate::integrations::http::link_target(
                    tname,
                    link,
                    timeout,
                    i.retries.unwrap_or(0),
                )))
            }
            "mock" => {
                let headers = i.headers.as_ref().map(|h| self.headers(&ip.key("headers"), h)).unwrap_or_default();
                let body = i.body.as_ref().map(|b| b.name(&format!("mock:{tname}"), crate::templates::name_for));
                let mapping = mapping_of(i, tname).ok().flatten();
                Some(snapshot::Integration::Mock(snapshot::Mock {
                    status: i.status.unwrap_or(200),
                    headers,
                    body,
                    mapping,
                }))
            }
            _ => None,
        }
    }
}

/// `health_check = { kind = "http" | "tcp", path, interval, timeout }`.
fn parse_check(t: &toml::Table) -> Result<crate::integrations::vpc_link::Check, (&'static str, String)> {
    let dur = |k: &'static str, default: u64| -> Result<std::time::Duration, (&'static str, String)> {
        match t.get(k) {
            None => Ok(std::time::Duration::from_secs(default)),
            Some(toml::Value::String(s)) => humantime::parse_duration(s).map_err(|e| (k, format!("{s:?}: {e}"))),
            Some(_) => Err((k, format!("{k} must be a duration such as \"5s\""))),
        }
    };
    if let Some(k) = t.keys().find(|k| !["kind", "path", "interval", "timeout"].contains(&k.as_str())) {
        return Err(("kind", format!("unknown key `{k}` (kind, path, interval, timeout)")));
    }
    let kind = t.get("kind").and_then(|v| v.as_str()).unwrap_or("tcp");
    let path = t.get("path").and_then(|v| v.as_str()).unwrap_or("/").to_string();
    let http_path = match kind {
        "http" => {
            if !path.starts_with('/') {
                return Err(("path", format!("path {path:?} must start with /")));
            }
            if path.parse::<http::uri::PathAndQuery>().is_err()
                || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
            {
                return Err((
                    "path",
                    format!("path {path:?} is not a request target (no spaces or control characters such as CR/LF)"),
                ));
            }
            Some(path)
        }
        "tcp" => None,
        other => return Err(("kind", format!("kind {other:?} must be http or tcp"))),
    };
    let interval = dur("interval", 5)?;
    let timeout = dur("timeout", 1)?;
    if interval.is_zero() || timeout.is_zero() || timeout > interval {
        return Err(("timeout", "interval and timeout must be above 0, and timeout at most interval".into()));
    }
    Ok(crate::integrations::vpc_link::Check { http_path, interval, timeout })
}

/// `${stageVariables.NAME}` in a request template becomes `{{ stageVariables.NAME }}`, so one
/// compiled template serves every stage.
fn stage_vars_as_template(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(i) = rest.find("${stageVariables.") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(end) => {
                out.push_str("{{ ");
                out.push_str(&after[..end]);
                out.push_str(" }}");
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `timeout`, defaulting to and bounded by `server.max_integration_timeout`.
fn integration_timeout(i: &Integration, settings: &Settings) -> std::time::Duration {
    i.timeout.map(|d| d.0).unwrap_or(settings.max_integration_timeout).min(settings.max_integration_timeout)
}

/// The integration's non-proxy mapping (`request_templates`, `passthrough_behavior`,
/// `responses`), compiled; `None` for a proxy integration.
pub(super) fn mapping_of(
    i: &Integration,
    tname: &str,
) -> Result<Option<crate::integrations::mapping::Mapping>, crate::integrations::mapping::CompileError> {
    use crate::integrations::mapping::{Mapping, ResponseSpec};
    if i.request_templates.is_none()
        && i.responses.is_none()
        && i.passthrough_behavior.is_none()
        && i.request_parameters.is_none()
        && i.content_handling.is_none()
    {
        return Ok(None);
    }
    let specs: Vec<ResponseSpec<'_>> = i
        .responses
        .iter()
        .flatten()
        .map(|r| ResponseSpec {
            selection_pattern: &r.selection_pattern,
            status: r.status,
            parameters: r.parameters.as_ref(),
            templates: r.templates.as_ref(),
            content_handling: r.content_handling.as_deref(),
        })
        .collect();
    Mapping::compile(
        tname,
        i.passthrough_behavior.as_deref(),
        i.request_templates.as_ref(),
        i.request_parameters.as_ref(),
        i.content_handling.as_deref(),
        &specs,
    )
    .map(Some)
}
