//! `Gateway`: the one `ProxyHttp` implementation. Each phase is thin and calls the module
//! that owns the concern (see the phase map in `lib.rs`).

mod admission;
mod answers;
pub mod body;
mod cache_hooks;
pub mod ctx;
pub mod forwarded;
mod transforms;
mod websocket;

use crate::observability::{access_log, errors, metrics};
use crate::responses::{self, Counted, Refusal, ResponseType};
use crate::routing;
use crate::snapshot::{Integration, Shared};
use crate::templates;
use async_trait::async_trait;
use bytes::Bytes;
use ctx::{RequestCtx, RouteMatch};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};
use std::sync::Arc;
use std::time::Duration;

pub struct Gateway {
    pub shared: Shared,
    /// Serves `server.private_listen`: only such listeners see `endpoint = "private"` APIs.
    pub private: bool,
}

/// A caller's request id is kept only if it is short and plain.
fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn host_of(req: &RequestHeader) -> String {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let h = match raw.rfind(':') {
        Some(i) if !raw.ends_with(']') && raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
        _ => raw,
    };
    h.to_ascii_lowercase()
}

impl Gateway {
    /// Sends a gateway response of type `t` (with the API's overrides when routed).
    async fn gateway_response(&self, session: &mut Session, ctx: &mut RequestCtx, t: ResponseType) -> Result<()> {
        let snap = ctx.snap.clone();
        let overrides = ctx.route.as_ref().map(|m| &snap.apis[m.api].responses);
        let resolved = overrides.map(|o| o.resolve(t));
        let status = ctx.status_override.take().or(resolved.as_ref().map(|r| r.status)).unwrap_or(t.status());
        let message = ctx.error_message.take();
        let message = message.as_deref().unwrap_or(t.message());
        let body = match resolved.as_ref().and_then(|r| r.body_template) {
            Some(name) => {
                let v = self.template_vars(session, ctx, Some((message, t.name())), NO_BODY);
                templates::render(&snap.templates, name, &v).unwrap_or_else(|e| {
                    log::warn!("gateway response template {name}: {e}");
                    responses::message_body(message)
                })
            }
            None => responses::message_body(message),
        };
        let mut h = ResponseHeader::build(status, Some(4))?;
        h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        for (k, v) in std::mem::take(&mut ctx.extra_headers) {
            h.insert_header(k, v)?;
        }
        if let Some(r) = &resolved {
            for (k, v) in r.headers {
                h.insert_header(k.clone(), v.clone())?;
            }
        }
        ctx.outcome.error_type = Some(t);
        self.send(session, ctx, h, Bytes::from(body)).await
    }

    /// Answers a refused request: counts it, then sends its gateway response.
    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, r: Refusal) -> Result<()> {
        let (api, stage, _) = ctx.labels();
        match &r.counted {
            Counted::Auth { check, reason } => {
                metrics::AUTH_FAILURES.with_label_values(&[api, stage, check, reason]).inc();
            }
            Counted::Throttled(reason) => {
                metrics::THROTTLED.with_label_values(&[api, stage, reason]).inc();
                ctx.ratelimit = None; // the refusal carries the fields of the limit that refused
            }
            Counted::Nothing => {}
        }
        ctx.status_override = r.status;
        ctx.error_message = r.message;
        ctx.extra_headers.extend(r.headers);
        self.gateway_response(session, ctx, r.response).await
    }

    /// Writes a whole response made by the gateway.
    async fn send(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut h: ResponseHeader,
        mut body: Bytes,
    ) -> Result<()> {
        if matches!(h.status.as_u16(), 204 | 304) {
            // no body, and no length of one (RFC 9110 8.6)
            body = Bytes::new();
            h.remove_header(&http::header::CONTENT_LENGTH);
        } else {
            h.insert_header("content-length", body.len().to_string())?;
        }
        h.insert_header("x-request-id", ctx.request_id.as_str())?;
        ratelimit_headers(&mut h, ctx)?;
        hsts(&mut h, ctx)?;
        if let Some(cors) = ctx.route.as_ref().and_then(|m| ctx.snap.apis[m.api].cors.as_ref()) {
            cors.apply(session.req_header().headers.get(http::header::ORIGIN), &mut h)?;
        }
        ctx.outcome.status = h.status.as_u16();
        ctx.outcome.response_bytes = body.len();
        let head_only = session.req_header().method == http::Method::HEAD;
        // head and body in one write (one flush), not two
        let mut tasks = vec![pingora::protocols::http::HttpTask::Header(Box::new(h), head_only)];
        if !head_only {
            tasks.push(pingora::protocols::http::HttpTask::Body(Some(body), true));
        }
        session.write_response_tasks(tasks).await?;
        Ok(())
    }

    fn template_vars<'a>(
        &self,
        session: &'a Session,
        ctx: &'a RequestCtx,
        error: Option<(&'a str, &'a str)>,
        body: (&'a str, &'a serde_json::Value),
    ) -> templates::Vars<'a> {
        let (api, stage, route) = ctx.labels();
        let req = session.req_header();
        let epoch = ctx.received_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        templates::Vars {
            context: templates::Context {
                request_id: &ctx.request_id,
                stage,
                api_id: api,
                route_key: route,
                path: req.uri.path(),
                http_method: req.method.as_str(),
                domain_name: &ctx.host,
                request_time: humantime::format_rfc3339_millis(ctx.received_at).to_string(),
                request_time_epoch: epoch,
                identity: templates::Identity {
                    source_ip: ctx.client_ip.map(|i| i.to_string()).unwrap_or_default(),
                    user_agent: crate::request::header(&req.headers, http::header::USER_AGENT).unwrap_or_default(),
                    client_cert: ctx.client_cert.as_deref(),
                },
                error: error.map(|(message, response_type)| templates::ErrorInfo { message, response_type }),
                authorizer: ctx.principal.as_deref(),
            },
            stage_variables: ctx.route.as_ref().map(|m| &*m.variables).unwrap_or(&NO_VARIABLES),
            input: templates::Input {
                params: templates::Params {
                    path: ctx
                        .route
                        .as_ref()
                        .map(|m| m.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                        .unwrap_or_default(),
                    querystring: crate::request::query_map(req.uri.query()),
                    header: {
                        let mut m = crate::request::header_map(&req.headers);
                        let hop = ctx.hop();
                        m.retain(|k, _| !hop.drops(k));
                        let keep_port = m.contains_key("x-forwarded-port");
                        m.extend(hop.fields(keep_port).map(|(k, v)| (k, v.into_owned())));
                        m
                    },
                },
                body: body.0,
                json: body.1,
            },
        }
    }

    /// Identity, forwarding headers and request id: everything known before routing.
    fn identify(&self, session: &Session, ctx: &mut RequestCtx) {
        let req = session.req_header();
        ctx.request_id = match req.headers.get("x-request-id") {
            Some(v) if valid_request_id(v.as_bytes()) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        ctx.host = host_of(req);
        ctx.port = session.server_addr().and_then(|a| a.as_inet()).map(|a| a.port());
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        ctx.proto = if tls.is_some() { "https" } else { "http" };
        ctx.client_cert =
            tls.and_then(|t| t.extension.get::<crate::tls::certs::ClientCert>()).map(|c| Arc::new(c.clone()));
        if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) {
            // every X-Forwarded-For line, in order, as one list (request::header)
            let xff = crate::request::header(&req.headers, "x-forwarded-for");
            let f = forwarded::forwarded(peer, xff.as_deref(), &ctx.snap.settings.trusted_proxies);
            if f.trusted_peer {
                // one value each; a list (several lines or commas) is not believed
                let keep = |n: &str| {
                    crate::request::header(&req.headers, n).filter(|v| !v.contains(',')).map(|v| v.trim().to_string())
                };
                ctx.forwarded_proto = keep("x-forwarded-proto").filter(|p| p == "http" || p == "https");
                ctx.forwarded_host = keep("x-forwarded-host");
            }
            ctx.trusted_peer = f.trusted_peer;
            ctx.client_ip = f.client_ip;
            ctx.xff = f.xff;
        }
    }

    /// Finds API, stage and route; `Err` is the gateway response to send.
    fn route(&self, session: &Session, ctx: &mut RequestCtx) -> std::result::Result<(), ResponseType> {
        let req = session.req_header();
        let path = routing::normalize(req.uri.path()).map_err(|_| ResponseType::Default4xx)?;
        let snap = ctx.snap.clone();
        let Some((mount, rest)) = snap.resolve(&ctx.host, &path, self.private) else {
            return Err(ResponseType::NotFound);
        };
        let api = &snap.apis[mount.api];
        let stage = &api.stages[mount.stage];
        // spec: [apis.policy] — before routes are matched, so a refused client learns nothing
        if let Some(policy) = &api.policy {
            if let Err(denied) = policy.check(ctx.client_ip, &req.headers) {
                metrics::AUTH_FAILURES.with_label_values(&[&api.name, &stage.name, "policy", denied.reason()]).inc();
                ctx.route = Some(RouteMatch {
                    path: String::new(),
                    api: mount.api,
                    stage: mount.stage,
                    route: None,
                    params: vec![],
                    variables: stage.view.variables.clone(),
                    integration: None,
                    canary: false,
                });
                return Err(ResponseType::AccessDenied);
            }
        }
        let view = match &stage.canary {
            Some((share, canary)) if fastrand::f64() < *share => canary,
            _ => &stage.view,
        };
        if let Some(ws) = &api.websocket {
            // every request of a WebSocket API is a handshake ($connect) or a management call
            ctx.route = Some(RouteMatch {
                path: rest.to_string(),
                api: mount.api,
                stage: mount.stage,
                route: ws.connect,
                params: vec![],
                variables: view.variables.clone(),
                integration: ws.connect.map(|i| view.integrations[i].clone()),
                canary: view.is_canary,
            });
            return Ok(());
        }
        let m = api.router.find(&req.method, rest);
        let mut rm = RouteMatch {
            path: rest.to_string(),
            api: mount.api,
            stage: mount.stage,
            route: m.as_ref().map(|m| m.route),
            params: m
                .as_ref()
                .map(|m| m.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
                .unwrap_or_default(),
            variables: view.variables.clone(),
            integration: None,
            canary: view.is_canary,
        };
        let Some(m) = m else {
            ctx.route = Some(rm);
            return Err(ResponseType::NotFound);
        };
        let integration = view.integrations[m.route].clone();
        if let Integration::Http(t) = &*integration {
            ctx.upstream.uri = if t.via.is_some() {
                crate::edge::forward_uri(&path, req.uri.query())
            } else {
                t.request_uri(rest, &rm.params, req.uri.query())
            };
            ctx.upstream.retries_left = t.retries;
        }
        rm.integration = Some(integration);
        ctx.route = Some(rm);
        Ok(())
    }
}

static NULL: serde_json::Value = serde_json::Value::Null;
/// Stage variables of a request that was not routed.
static NO_VARIABLES: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
/// Template input when there is no body.
const NO_BODY: (&str, &serde_json::Value) = ("", &NULL);

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// RFC 9111 4.4: a successful unsafe request (POST, PUT, PATCH, DELETE, …) invalidates the
/// stored answers for its path, and for the paths its `Location` and `Content-Location` name
/// on the same host and under the same stage.
fn invalidate_after_write(session: &Session, resp: &ResponseHeader, ctx: &RequestCtx) {
    use http::Method;
    let req = session.req_header();
    if matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
        || !(200..400).contains(&resp.status.as_u16())
    {
        return;
    }
    let (Some(rc), Some(m)) = (&ctx.cache, &ctx.route) else { return };
    rc.store.purge_path(&m.path);
    // A URL may be in the client's space (behind the stage or base path) or in the
    // integration's (the origin's own Location): the prefix each puts before the route path.
    let client_prefix = req.uri.path().strip_suffix(m.path.as_str());
    let origin_host = match m.integration.as_deref() {
        Some(Integration::Http(t)) => t.host.as_str(),
        _ => "",
    };
    let origin_path = ctx.upstream.uri.split(['?', '#']).next().unwrap_or("");
    let origin_prefix = origin_path.strip_suffix(m.path.as_str());
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let Some(v) = resp.headers.get(&name).and_then(|v| v.to_str().ok()) else { continue };
        let (host, path) = match split_url(v) {
            Some((h, p)) => (Some(h), p),
            None if v.starts_with('/') => (None, v),
            None => continue,
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let host_name = |h: &str| h.rsplit_once(':').map_or(h, |(n, _)| n).to_ascii_lowercase();
        let ours = host.is_none_or(|h| host_name(h) == ctx.host);
        let origins = host.is_none_or(|h| !origin_host.is_empty() && host_name(h) == host_name(origin_host));
        // over-invalidating both readings is safe; missing one is not
        for (applies, prefix) in [(ours, client_prefix), (origins, origin_prefix)] {
            if let (true, Some(prefix)) = (applies, prefix) {
                if let Some(below) = path.strip_prefix(prefix).filter(|p| p.starts_with('/')) {
                    rc.store.purge_path(below);
                }
            }
        }
    }
}

/// `scheme://authority/path` → (authority, /path).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (_, rest) = url.split_once("://")?;
    Some(rest.split_at(rest.find('/').unwrap_or(rest.len())))
}

/// `Strict-Transport-Security` for HTTPS answers on a custom domain with `hsts`.
fn hsts(h: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if ctx.proto == "https" {
        if let Some(v) = ctx.snap.hsts.get(&ctx.host) {
            h.insert_header(http::header::STRICT_TRANSPORT_SECURITY, v.clone())?;
        }
    }
    Ok(())
}

/// IETF RateLimit fields for the most specific limit applied (key or route).
fn ratelimit_headers(h: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if let Some(d) = ctx.ratelimit {
        let mut b = itoa::Buffer::new();
        h.insert_header("ratelimit-limit", b.format(d.limit))?;
        h.insert_header("ratelimit-remaining", b.format(d.remaining))?;
        h.insert_header("ratelimit-reset", b.format(d.reset_secs))?;
    }
    Ok(())
}

fn declared_length_too_large(req: &RequestHeader, max: u64) -> bool {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.shared.load_full())
    }

    /// No response compression module: bodies pass through as the integration sent them.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // HTTP/1.1 pipelining: later requests already read are answered in order (RFC 9112
        // 9.3.2). Never after an upgrade request: what follows it is the new protocol's bytes
        // (or an attempt to smuggle a request past a refused upgrade), not a request.
        let upgrade = session.req_header().headers.contains_key(http::header::UPGRADE);
        session.set_pipelining_enabled(!upgrade);
        if crate::lifecycle::draining() {
            // handed over or shutting down: this answer closes the connection
            session.set_keepalive(None);
        }
        self.identify(session, ctx);
        let raw_head = session
            .as_http1()
            .filter(|_| session.req_header().headers.contains_key(http::header::TRANSFER_ENCODING))
            .map(|h1| h1.get_headers_raw_bytes());
        if let Err(why) = crate::framing::check(session.req_header(), raw_head.as_deref()) {
            log::debug!("refused request framing: {why}");
            session.set_keepalive(None);
            self.gateway_response(session, ctx, ResponseType::Default4xx).await?;
            return Ok(true);
        }
        let (size, fields) = crate::framing::head_size(session.req_header());
        let settings = &ctx.snap.settings;
        if size as u64 > settings.max_header_size || fields > settings.max_headers {
            session.set_keepalive(None);
            let r =
                Refusal::new(ResponseType::Default4xx).with_status(431).with_message("Request Header Fields Too Large");
            self.refuse(session, ctx, r).await?;
            return Ok(true);
        }
        let routed = self.route(session, ctx);
        // CORS preflights are answered by the gateway, with or without an OPTIONS route and
        // before any authorizer (browsers send them without credentials)
        if matches!(routed, Ok(()) | Err(ResponseType::NotFound))
            && crate::cors::Cors::is_preflight(session.req_header())
        {
            if let Some(cors) = ctx.route.as_ref().and_then(|m| ctx.snap.apis[m.api].cors.as_ref()) {
                let h = cors.preflight(session.req_header())?;
                self.send(session, ctx, h, Bytes::new()).await?;
                return Ok(true);
            }
        }
        if let Err(t) = routed {
            self.gateway_response(session, ctx, t).await?;
            return Ok(true);
        }
        if let Some(ws) = ctx.route.as_ref().and_then(|m| ctx.snap.apis[m.api].websocket.clone()) {
            return self.websocket(session, ctx, ws).await;
        }
        if let Some(Integration::Http(crate::upstream::HttpTarget { via: Some(via), .. })) =
            ctx.route.as_ref().and_then(|r| r.integration.as_deref())
        {
            if crate::edge::looped(&session.req_header().headers, via) {
                // this node forwarded the request before: its origin leads back here
                errors::upstream("edge", "loop", &"the request already carries this node's Via");
                let r = Refusal::new(ResponseType::Default5xx).with_status(508).with_message("Loop Detected");
                self.refuse(session, ctx, r).await?;
                return Ok(true);
            }
        }
        if let Err(refusal) = self.admit(session, ctx).await {
            self.refuse(session, ctx, refusal).await?;
            return Ok(true);
        }
        if declared_length_too_large(session.req_header(), ctx.snap.settings.max_body) {
            session.set_keepalive(None);
            self.gateway_response(session, ctx, ResponseType::RequestTooLarge).await?;
            return Ok(true);
        }
        if let Err(refusal) = self.prepare_request(session, ctx).await {
            self.refuse(session, ctx, refusal).await?;
            return Ok(true);
        }
        if matches!(ctx.route.as_ref().and_then(|r| r.integration.as_deref()), Some(Integration::Mock(_))) {
            self.mock(session, ctx).await?;
            return Ok(true);
        }
        if matches!(
            ctx.route.as_ref().and_then(|r| r.integration.as_deref()),
            Some(Integration::Lambda(_) | Integration::Aws(_))
        ) {
            // the event or the service request carries the whole body (Lambda: 6 MiB at most)
            let limit = ctx.snap.settings.max_body.min(crate::aws::lambda::MAX_PAYLOAD as u64);
            if let Err(e) = body::read_all(session, ctx, limit).await {
                self.refuse(session, ctx, e.refusal()).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// After the cache lookup missed: a Lambda integration is invoked here and answered
    /// (`lambda_proxy`), instead of proxying to an HTTP upstream.
    async fn proxy_upstream_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match ctx.route.as_ref().and_then(|r| r.integration.as_deref()) {
            Some(Integration::Lambda(_)) => self.lambda(session, ctx).await?,
            Some(Integration::Aws(_)) => self.aws_service(session, ctx).await?,
            _ => return Ok(true),
        }
        if session.cache.enabled() && ctx.cache_result != Some("miss") {
            // not stored (an error, or not storable): waiters on the cache lock go on at once
            session.cache.disable(pingora::cache::NoCacheReason::Custom("lambda"));
        }
        Ok(false)
    }

    /// Turns the stage's cache on for the route, after every access check has passed (so a
    /// cached answer is never served to a caller the route would refuse).
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(m) = ctx.route.as_ref() else { return Ok(()) };
        let Some(ri) = m.route else { return Ok(()) };
        let stage = &ctx.snap.apis[m.api].stages[m.stage];
        let Some(rc) = stage.route_caches.get(ri).and_then(|c| c.clone()) else { return Ok(()) };
        if body::has_body(session, ctx) {
            // a body is an input no key covers (a "fat GET"): never looked up, never stored
            ctx.cache_result = Some("bypass");
            ctx.cache = Some(rc);
            return Ok(());
        }
        let req = session.req_header();
        let route = &ctx.snap.apis[m.api].routes[ri];
        let mut identity = Vec::new();
        if let Some((_, a)) = &route.authorizer {
            a.identity_headers(|h| identity.push(h.clone()));
        }
        ctx.cache_credential = crate::cache::carries_unkeyed_credential(&rc, &req.headers, &identity)
            || ctx.snap.apis[m.api].edge.as_ref().is_some_and(|p| p.requires_credential(&req.method, &m.path));
        let input = crate::cache::KeyInput {
            api: &ctx.snap.apis[m.api].name,
            stage: &stage.name,
            method: &req.method,
            proto: ctx.forwarded_proto.as_deref().unwrap_or(ctx.proto),
            host: ctx.forwarded_host.as_deref().unwrap_or(&ctx.host),
            path: &m.path,
            query: req.uri.query(),
            headers: &req.headers,
        };
        let mut key = std::mem::take(&mut ctx.cache_key);
        let keyed = crate::cache::build_key(&mut key, &rc, &input);
        ctx.cache_key = key;
        if keyed.is_ok() {
            session.cache.enable(
                rc.store,
                None,
                Some(&*cache_hooks::PREDICTOR),
                Some(cache_hooks::lock()),
                Some(cache_hooks::overrides()),
            );
            session.cache.set_max_file_size_bytes(rc.store.max_entry());
        } else {
            ctx.cache_result = Some("bypass");
        }
        ctx.cache = Some(rc);
        Ok(())
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<pingora::cache::CacheKey> {
        Ok(pingora::cache::CacheKey::new(std::mem::take(&mut ctx.cache_key), ""))
    }

    /// A fresh entry is refetched when the client may ask for that (`invalidate`) and did, or
    /// when the admin API purged its path since it was stored.
    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &pingora::cache::CacheMeta,
        _hit: &mut pingora::cache::HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<pingora::cache::ForcedFreshness>> {
        let (Some(rc), Some(m)) = (&ctx.cache, &ctx.route) else { return Ok(None) };
        if is_fresh
            && (crate::cache::refresh_requested(rc, &session.req_header().headers)
                || rc.store.purged(&m.path, meta.created()))
        {
            return Ok(Some(pingora::cache::ForcedFreshness::ForceExpired));
        }
        Ok(None)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<pingora::cache::RespCacheable> {
        use pingora::cache::{CacheMeta, NoCacheReason, RespCacheable};
        let Some(rc) = &ctx.cache else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        // a 304 to a revalidation: its fields replace the stored ones (RFC 9111 4.3.4)
        let updated;
        // the 304's Date dates the freshened response for its age; the stored Date stays
        let mut dated = None;
        let resp = match ctx.revalidation.take() {
            Some(fields) => {
                // from the stored header itself: Pingora's merge already took the 304's ETag
                let stored = session.cache.maybe_cache_meta().map_or(resp, |m| m.response_header());
                updated = crate::cache::apply_304(stored, &fields);
                if let Some(d) = fields.get(http::header::DATE) {
                    let mut h = updated.clone();
                    h.insert_header(http::header::DATE, d.clone())?;
                    dated = Some(h);
                }
                &updated
            }
            None => resp,
        };
        if let Some(why) = crate::cache::not_storable(ctx.cache_credential, resp, rc.honor_origin) {
            log::debug!("response not stored: {why}");
            return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache));
        }
        let now = std::time::SystemTime::now();
        let Some(f) = crate::cache::freshness(dated.as_ref().unwrap_or(resp), rc.ttl, rc.honor_origin, now) else {
            log::debug!("response not stored: stale on arrival and no validator");
            return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache));
        };
        // never served stale: no stale-while-revalidate, no stale-if-error
        Ok(RespCacheable::Cacheable(CacheMeta::new(f.fresh_until, f.created, 0, 0, resp.clone())))
    }

    /// A stale entry is never served instead of an error: entries are revalidated or refetched
    /// (`must-revalidate` and friends hold by construction).
    fn should_serve_stale(&self, _session: &mut Session, _ctx: &mut RequestCtx, _error: Option<&Error>) -> bool {
        false
    }

    /// Each `Vary` variant is its own entry (pingora-cache variance).
    fn cache_vary_filter(
        &self,
        meta: &pingora::cache::CacheMeta,
        _ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<pingora::cache::key::HashBinary> {
        crate::cache::variance(meta.response_header(), &req.headers)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.upstream.body_bytes += b.len() as u64;
            if ctx.upstream.body_bytes > ctx.snap.settings.max_body {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body exceeds server.max_body");
            }
        }
        self.filter_request_body(body, end_of_stream, ctx);
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Some(Integration::Http(t)) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()) else {
            return Error::e_explain(ErrorType::InternalError, "no http integration for this route");
        };
        let mut sni = if t.tls { t.sni.clone() } else { String::new() };
        let mut peer = match &t.link {
            None => HttpPeer::new(t.addr, t.tls, sni),
            Some(link) => {
                // consistent hashing keys on the client address
                let key = match ctx.client_ip {
                    Some(std::net::IpAddr::V4(a)) => a.octets().to_vec(),
                    Some(std::net::IpAddr::V6(a)) => a.octets().to_vec(),
                    None => Vec::new(),
                };
                let Some((target, backend)) = link.select(&key, &ctx.upstream.tried) else {
                    let why = if link.any_healthy() { "every healthy target failed" } else { "no healthy target" };
                    ctx.pending_error = Some(ResponseType::IntegrationFailure);
                    ctx.error_message = Some(format!("VPC link {}: {why}", link.name));
                    return Error::e_explain(ErrorType::HTTPStatus(503), format!("vpc link {}: {why}", link.name));
                };
                if t.tls {
                    sni = link.sni_of(&target).to_string();
                }
                ctx.upstream.tried.push(target);
                match backend.addr {
                    pingora::protocols::l4::socket::SocketAddr::Inet(sa) => HttpPeer::new(sa, t.tls, sni),
                    pingora::protocols::l4::socket::SocketAddr::Unix(ref ua) => {
                        let path = ua.as_pathname().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                        HttpPeer::new_uds(&path, t.tls, sni)
                            .map_err(|e| Error::because(ErrorType::InternalError, "unix target", e))?
                    }
                }
            }
        };
        peer.options.connection_timeout = Some(t.connect_timeout);
        peer.options.total_connection_timeout = Some(t.connect_timeout);
        peer.options.read_timeout = Some(t.timeout);
        peer.options.write_timeout = Some(t.timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if t.tls {
            peer.options.verify_cert = t.tls_verify;
            peer.options.verify_hostname = t.tls_verify;
        }
        ctx.upstream.started.get_or_insert_with(std::time::Instant::now);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if ctx.upstream.retries_left > 0 && session.req_header().method.is_idempotent() {
            ctx.upstream.retries_left -= 1;
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let idempotent = session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
        if !idempotent {
            e.set_retry(false);
        } else if ctx.upstream.retries_left > 0 && session.response_written().is_none() {
            ctx.upstream.retries_left -= 1;
            e.set_retry(true);
        } else {
            // a stale pooled connection is always worth one more try
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(Integration::Http(t)) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()) else {
            return Ok(());
        };
        let uri: http::Uri =
            ctx.upstream.uri.parse().map_err(|e| Error::because(ErrorType::InternalError, "upstream uri", e))?;
        up.set_uri(uri);
        match &t.via {
            None => up.insert_header(http::header::HOST, t.host.as_str())?,
            // forwarding: the client's Host stays (the origin routes on it)
            Some(via) => {
                let mut v = crate::request::header(&up.headers, "via").map(|v| v.into_owned()).unwrap_or_default();
                if !v.is_empty() {
                    v.push_str(", ");
                }
                v.push_str(via.to_str().unwrap_or_default());
                up.insert_header(http::header::VIA, v)?;
            }
        }
        up.insert_header("x-request-id", ctx.request_id.as_str())?;
        // what the client may not say to the integration goes, and the gateway's forwarding
        // fields are set (forwarded::to_integration, the one rule for every integration)
        let hop = ctx.hop();
        let dropped: Vec<http::HeaderName> = up.headers.keys().filter(|k| hop.drops(k.as_str())).cloned().collect();
        for k in dropped {
            up.remove_header(&k);
        }
        let keep_port = up.headers.contains_key("x-forwarded-port");
        for (name, v) in hop.fields(keep_port) {
            up.insert_header(name, &*v)?;
        }
        self.apply_request_transform(up, ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream.status = Some(resp.status.as_u16());
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS
            && !crate::websocket::origin_accepts(&session.req_header().headers, &resp.headers)
        {
            // a tunnel opens only on a real WebSocket handshake answer for this client's key
            let why = "the integration answered 101 without a valid Sec-WebSocket-Accept";
            errors::upstream(&ctx.upstream.uri, "malformed", &why);
            ctx.upstream.retries_left = 0;
            ctx.pending_error = Some(ResponseType::IntegrationFailure);
            return Error::e_explain(ErrorType::HTTPStatus(502), why);
        }
        // before the cache stores it: this hop's headers go, and an HTTP/1.0 origin's answer
        // is an HTTP/1.1 answer to our clients
        crate::cache::strip_hop_by_hop(resp);
        resp.set_version(http::Version::HTTP_11);
        if resp.status == http::StatusCode::NOT_MODIFIED && ctx.cache.is_some() {
            ctx.revalidation = Some(resp.headers.clone());
        }
        if let Some(s) = ctx.upstream.started {
            ctx.upstream.latency_ms = Some(s.elapsed().as_millis() as u64);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.transform_response(session, resp, ctx)?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        if let Some(Integration::Http(crate::upstream::HttpTarget { via: Some(via), .. })) =
            ctx.route.as_ref().and_then(|r| r.integration.as_deref())
        {
            resp.append_header(http::header::VIA, via.clone())?;
        }
        // addressed to the gateway (a surrogate), read by the cache phase: not for clients
        resp.remove_header("surrogate-control");
        hsts(resp, ctx)?;
        // every answer of a limited route or key, not only the gateway's own
        ratelimit_headers(resp, ctx)?;
        ctx.outcome.status = resp.status.as_u16();
        invalidate_after_write(session, resp, ctx);
        if ctx.cache.is_some() {
            let result = ctx.cache_result.unwrap_or_else(|| cache_hooks::result(session.cache.phase()));
            ctx.cache_result = Some(result);
            resp.insert_header("x-edgegate-cache", if result == "expired" { "miss" } else { result })?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        self.transform_response_body(session, body, end_of_stream, ctx)?;
        if let Some(b) = body {
            ctx.outcome.response_bytes += b.len();
        }
        Ok(None)
    }

    /// Pingora's own "Fail to proxy" line per failed request is replaced by `fail_to_proxy`'s
    /// classification (`observability::errors`).
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, _error: &Error) -> bool {
        true
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        use ErrorType::*;
        match e.esource() {
            ErrorSource::Upstream => {
                let target = match ctx.route.as_ref().and_then(|r| r.integration.as_deref()) {
                    Some(Integration::Http(t)) => t.addr.to_string(),
                    _ => "integration".to_string(),
                };
                errors::upstream(&target, errors::upstream_kind(e), e);
            }
            ErrorSource::Downstream => errors::downstream(errors::downstream_error_kind(e), e),
            _ if matches!(e.etype(), HTTPStatus(_)) => {}
            _ => log::error!("request {}: {e}", ctx.request_id),
        }
        let t = match (e.etype(), e.esource()) {
            _ if ctx.pending_error.is_some() => ctx.pending_error.take(),
            (HTTPStatus(413), _) => Some(ResponseType::RequestTooLarge),
            (HTTPStatus(c), _) if *c >= 500 => Some(ResponseType::Default5xx),
            (HTTPStatus(_), _) => Some(ResponseType::Default4xx),
            (ConnectTimedout | ReadTimedout | WriteTimedout, ErrorSource::Upstream) => {
                Some(ResponseType::IntegrationTimeout)
            }
            (_, ErrorSource::Upstream) => Some(ResponseType::IntegrationFailure),
            (WriteError | ReadError | ConnectionClosed, ErrorSource::Downstream) => None,
            (_, ErrorSource::Downstream) => Some(ResponseType::Default4xx),
            _ => Some(ResponseType::Default5xx),
        };
        let mut code = 0;
        if let Some(t) = t {
            ctx.outcome.error_type = Some(t);
            if session.response_written().is_none() {
                session.set_keepalive(None);
                match self.gateway_response(session, ctx, t).await {
                    Ok(()) => code = ctx.outcome.status,
                    Err(err) => log::debug!("cannot send the error response: {err}"),
                }
            } else {
                code = t.status();
            }
        }
        if code != 0 {
            ctx.outcome.status = code;
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = if ctx.outcome.status != 0 {
            ctx.outcome.status
        } else {
            session.response_written().map(|r| r.status.as_u16()).unwrap_or(0)
        };
        let elapsed = ctx.start.elapsed();
        let (api, stage, route) = ctx.labels();
        let req = session.req_header();
        let method = metrics::method_label(&req.method);
        let mut buf = itoa::Buffer::new();
        metrics::REQUESTS.with_label_values(&[api, stage, route, method, buf.format(status)]).inc();
        metrics::REQUEST_DURATION.with_label_values(&[api, stage, route]).observe(elapsed.as_secs_f64());
        if let Some(result) = ctx.cache_result {
            metrics::CACHE_REQUESTS.with_label_values(&[api, stage, result]).inc();
        }
        if let (Some(m), Some(ms)) = (&ctx.route, ctx.upstream.latency_ms) {
            let integ = m.route.map(|r| &*ctx.snap.apis[m.api].routes[r].integration).unwrap_or("");
            metrics::INTEGRATION_DURATION.with_label_values(&[api, stage, integ]).observe(ms as f64 / 1000.0);
        }
        let stage_logs = ctx.route.as_ref().map(|m| ctx.snap.apis[m.api].stages[m.stage].access_log).unwrap_or(true);
        if stage_logs && ctx.snap.settings.access_log != crate::snapshot::AccessLogTarget::Off {
            let protocol = match req.version {
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/1.1",
            };
            let entry = access_log::Entry {
                request_id: &ctx.request_id,
                ip: ctx.client_ip.map(|i| i.to_string()).unwrap_or_default(),
                request_time: humantime::format_rfc3339_millis(ctx.received_at).to_string(),
                http_method: req.method.as_str(),
                path: req.uri.path(),
                route_key: route,
                status,
                protocol,
                response_length: ctx.outcome.response_bytes,
                latency: elapsed.as_millis() as u64,
                integration_latency: ctx.upstream.latency_ms,
                integration_status: ctx.upstream.status,
                api_id: api,
                stage,
                error_type: ctx.outcome.error_type.map(|t| t.name()),
                user_agent: &crate::request::header(&req.headers, http::header::USER_AGENT).unwrap_or_default(),
                client_cert: ctx.client_cert.as_deref().map(|c| c.subject.as_str()),
                api_key_id: ctx.api_key_id.as_deref(),
                cache: ctx.cache_result,
                principal_id: ctx.principal.as_ref().map(|p| p.principal_id.as_str()).filter(|s| !s.is_empty()),
                connection_id: ctx.websocket.as_ref().map(|w| w.connection_id.as_str()),
                event_type: ctx.websocket.as_ref().map(|_| "CONNECTION"),
                messages_in: ctx.websocket.as_ref().map(|w| w.messages_in),
                messages_out: ctx.websocket.as_ref().map(|w| w.messages_out),
            };
            access_log::write(&entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(valid_request_id(b"abc-123_x.y:z"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id(b"<script>"));
        assert!(!valid_request_id(&[b'a'; 129]));
    }

    #[test]
    fn host_strips_port_and_case() {
        let mut r = RequestHeader::build("GET", b"/", None).expect("req");
        r.insert_header("host", "API.Example.com:8443").expect("h");
        assert_eq!(host_of(&r), "api.example.com");
        r.insert_header("host", "[::1]:80").expect("h");
        assert_eq!(host_of(&r), "[::1]");
    }

    #[test]
    fn content_length_limit() {
        let mut r = RequestHeader::build("POST", b"/", None).expect("req");
        r.insert_header("content-length", "11").expect("h");
        assert!(declared_length_too_large(&r, 10));
        assert!(!declared_length_too_large(&r, 11));
    }
}
