//! `Gateway`: the one `ProxyHttp` implementation. Each phase is thin and calls the module
//! that owns the concern (see the phase map in `lib.rs`).

mod cache_hooks;
pub mod ctx;
pub mod forwarded;
mod transforms;

use crate::observability::{access_log, metrics};
use crate::responses::{self, ResponseType};
use crate::routing;
use crate::snapshot::{Authorizer, Integration, Shared};
use crate::templates;
use crate::throttle;
use crate::throttle::cluster::{Cluster, OnError, QuotaSpec, Verdict, REDIS_ERRORS};
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

    /// Writes a whole response made by the gateway.
    async fn send(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut h: ResponseHeader,
        body: Bytes,
    ) -> Result<()> {
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("x-request-id", ctx.request_id.as_str())?;
        ratelimit_headers(&mut h, ctx)?;
        if let Some(cors) = ctx.route.as_ref().and_then(|m| ctx.snap.apis[m.api].cors.as_ref()) {
            cors.apply(session.req_header().headers.get(http::header::ORIGIN), &mut h)?;
        }
        ctx.outcome.status = h.status.as_u16();
        ctx.outcome.response_bytes = body.len();
        let head_only = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(h), head_only).await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
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
                    user_agent: req.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
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
                    querystring: templates::query_map(req.uri.query()),
                    header: templates::header_map(&req.headers),
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
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        ctx.proto = if tls.is_some() { "https" } else { "http" };
        ctx.client_cert = tls.and_then(|t| t.extension.get::<crate::tls::ClientCert>()).map(|c| Arc::new(c.clone()));
        if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) {
            let xff = req.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
            let f = forwarded::forwarded(peer, xff, &ctx.snap.settings.trusted_proxies);
            if f.trusted_peer {
                let keep = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                ctx.forwarded_proto = keep("x-forwarded-proto");
                ctx.forwarded_host = keep("x-forwarded-host");
            }
            ctx.client_ip = Some(f.client_ip);
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
                });
                return Err(ResponseType::AccessDenied);
            }
        }
        let view = match &stage.canary {
            Some((share, canary)) if fastrand::f64() < *share => canary,
            _ => &stage.view,
        };
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
        };
        let Some(m) = m else {
            ctx.route = Some(rm);
            return Err(ResponseType::NotFound);
        };
        let integration = view.integrations[m.route].clone();
        if let Integration::Http(t) = &*integration {
            ctx.upstream.uri = t.request_uri(rest, &rm.params, req.uri.query());
            ctx.upstream.retries_left = t.retries;
        }
        rm.integration = Some(integration);
        ctx.route = Some(rm);
        Ok(())
    }

    /// API key, then every limit in order (account, stage, route, key, key on route), then
    /// the key's quota. The first refusal wins.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> std::result::Result<(), Refusal> {
        let snap = ctx.snap.clone();
        let Some((ai, si, Some(ri))) = ctx.route.as_ref().map(|m| (m.api, m.stage, m.route)) else {
            return Ok(());
        };
        let stage = &snap.apis[ai].stages[si];
        let route = &snap.apis[ai].routes[ri];
        match &route.authorizer {
            Some((name, Authorizer::Jwt(jwt))) => {
                let p = jwt
                    .authorize_async(&session.req_header().headers, &route.scopes)
                    .await
                    .map_err(|r| Refusal::auth(name, r.reason(), r.response_type()))?;
                ctx.principal = Some(p);
            }
            Some((name, Authorizer::Lambda(authz))) => {
                let req = session.req_header();
                let m = ctx.route.as_ref().ok_or(Refusal::Unavailable)?;
                let api = &snap.apis[ai];
                let call = crate::auth::lambda::Call {
                    method_arn: method_arn(&api.name, &stage.name, req.method.as_str(), &m.path),
                    resource: route.key.split_once(' ').map(|(_, p)| p).unwrap_or(&route.key),
                    path: &m.path,
                    method: req.method.as_str(),
                    headers: &req.headers,
                    query: templates::query_map(req.uri.query()),
                    path_params: &m.params,
                    stage_variables: &m.variables,
                    api: &api.name,
                    stage: &stage.name,
                    request_id: &ctx.request_id,
                    source_ip: ctx.client_ip.map(|i| i.to_string()).unwrap_or_default(),
                };
                let (result, hit) = authz.authorize(&call).await;
                metrics::AUTHORIZER_CACHE.with_label_values(&[&**name, if hit { "hit" } else { "miss" }]).inc();
                ctx.principal = Some(result.map_err(|r| Refusal::auth(name, r.reason(), r.response_type()))?);
            }
            Some((name, Authorizer::SigV4(authz))) => {
                let refuse = |r: crate::auth::sigv4::Refused| Refusal::auth(name, r.reason(), r.response_type());
                let body_sha256 = signed_body_hash(session).await.map_err(refuse)?;
                let req = session.req_header();
                let path = ctx.route.as_ref().map(|m| m.path.as_str()).unwrap_or("/");
                let arn = method_arn(&snap.apis[ai].name, &stage.name, req.method.as_str(), path);
                let signed = crate::auth::sigv4::Signed {
                    method: req.method.as_str(),
                    path: req.uri.path(),
                    query: req.uri.query().unwrap_or(""),
                    headers: &req.headers,
                    host: req.uri.authority().map(|a| a.as_str()).unwrap_or(""),
                    body_sha256,
                    method_arn: &arn,
                    now: unix_now(),
                };
                ctx.principal = Some(authz.authorize(&signed).map_err(refuse)?);
            }
            None => {}
        }
        let mut key = None;
        if snap.apis[ai].routes[ri].api_key_required {
            let keys =
                snap.api_keys.as_ref().ok_or(Refusal::auth("api_key", "no_keys", ResponseType::ApiKeyInvalid))?;
            let presented = session.req_header().headers.get(&keys.header).ok_or(Refusal::auth(
                "api_key",
                "missing_key",
                ResponseType::MissingAuthenticationToken,
            ))?;
            let k = keys.store.find(presented.as_bytes()).filter(|k| k.enabled).ok_or(Refusal::auth(
                "api_key",
                "invalid_key",
                ResponseType::ApiKeyInvalid,
            ))?;
            ctx.api_key_id = Some(k.id.clone());
            let plan = snap.plans.get(&k.plan).filter(|p| p.stages.contains(&(ai, si))).ok_or(Refusal::auth(
                "api_key",
                "not_in_plan",
                ResponseType::ApiKeyInvalid,
            ))?;
            key = Some((k.id.clone(), plan));
        }
        let now = throttle::bucket::now_ns();
        let pass =
            |d: throttle::bucket::Decision, reason| if d.allowed { Ok(d) } else { Err(Refusal::Throttled(reason, d)) };
        pass(snap.account.take(now), "account")?;
        if let Some(b) = &stage.throttle {
            pass(b.take(now), "stage")?;
        }
        if let Some(Some(b)) = stage.route_throttles.get(ri) {
            ctx.ratelimit = Some(pass(b.take(now), "route")?);
        }
        if let Some((id, plan)) = key {
            if let Some((cluster, on_error)) = &snap.cluster {
                match cluster_limits(cluster, plan, &id, (ai, si, ri)).await {
                    Ok(Verdict::Allowed(d)) => {
                        if d.is_some() {
                            ctx.ratelimit = d;
                        }
                        return Ok(());
                    }
                    Ok(Verdict::Throttled(d)) => return Err(Refusal::Throttled("key", d)),
                    Ok(Verdict::QuotaExceeded) => {
                        let unix = unix_now();
                        let retry =
                            plan.quota.as_ref().map(|q| q.period.window(unix).1.saturating_sub(unix)).unwrap_or(1);
                        return Err(Refusal::Quota(retry.max(1)));
                    }
                    Err(e) => {
                        REDIS_ERRORS.inc();
                        log_redis_error(&e);
                        if *on_error == OnError::Deny {
                            return Err(Refusal::Unavailable);
                        }
                        // on_redis_error = "local": this node's own buckets and counters below
                    }
                }
            }
            if let Some(kb) = &plan.throttle {
                ctx.ratelimit = Some(pass(kb.take(&id, now), "key")?);
            }
            if let Some(kb) = plan.route_throttle.get(&(ai, si, ri)) {
                ctx.ratelimit = Some(pass(kb.take(&id, now), "key")?);
            }
            if let Some(q) = &plan.quota {
                q.take(&id, unix_now()).map_err(|e| Refusal::Quota(e.retry_after))?;
            }
        }
        Ok(())
    }

    async fn mock(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(Integration::Mock(m)) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()) else {
            return Ok(());
        };
        let snap = ctx.snap.clone();
        let body = match &m.body {
            Some(name) => {
                let v = self.template_vars(session, ctx, None, NO_BODY);
                match templates::render(&snap.templates, name, &v) {
                    Ok(b) => b,
                    Err(e) => {
                        log::warn!("mock template {name}: {e}");
                        return self.gateway_response(session, ctx, ResponseType::Default5xx).await;
                    }
                }
            }
            None => String::new(),
        };
        let mut h = ResponseHeader::build(m.status, Some(m.headers.len() + 2))?;
        for (k, v) in &m.headers {
            h.insert_header(k.clone(), v.clone())?;
        }
        self.send(session, ctx, h, Bytes::from(body)).await
    }
}

static NULL: serde_json::Value = serde_json::Value::Null;
/// Stage variables of a request that was not routed.
static NO_VARIABLES: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
/// Template input when there is no body.
const NO_BODY: (&str, &serde_json::Value) = ("", &NULL);
/// Bodies up to this size are read and checked before the integration is contacted (Pingora
/// replays them from its retry buffer); larger or chunked ones are checked as they stream,
/// before their last byte is forwarded.
const PREREAD_LIMIT: usize = 64 * 1024;

/// Why `admit` refused a request.
enum Refusal {
    /// An authorizer or the API-key check said no (`authorizer` and `reason` label the metric).
    Auth {
        authorizer: Arc<str>,
        reason: &'static str,
        response: ResponseType,
    },
    Throttled(&'static str, throttle::bucket::Decision),
    Quota(u64),
    /// `[cluster] on_redis_error = "deny"` and Redis did not answer: 503.
    Unavailable,
}

impl Refusal {
    fn auth(authorizer: &str, reason: &'static str, response: ResponseType) -> Refusal {
        Refusal::Auth { authorizer: Arc::from(authorizer), reason, response }
    }
}

/// `arn:edgegate:execute-api:{api}/{stage}/{METHOD}/{path}`: what IAM-like policies name.
fn method_arn(api: &str, stage: &str, method: &str, path: &str) -> String {
    format!("arn:edgegate:execute-api:{api}/{stage}/{method}/{}", path.trim_start_matches('/'))
}

/// Signed bodies are read (and kept for the integration) before the signature is checked, so
/// a body that does not match never reaches the origin. Up to 64 KiB, Pingora's retry buffer;
/// larger signed bodies must be sent with `x-amz-content-sha256: UNSIGNED-PAYLOAD`.
async fn signed_body_hash(session: &mut Session) -> std::result::Result<Option<String>, crate::auth::sigv4::Refused> {
    use crate::auth::sigv4::Refused;
    const LIMIT: usize = 64 * 1024;
    let req = session.req_header();
    if req.headers.get("x-amz-content-sha256").is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD") {
        return Ok(None);
    }
    let length = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let chunked = req.headers.contains_key(http::header::TRANSFER_ENCODING);
    match (length, chunked) {
        (None | Some(0), false) => return Ok(None),
        (Some(n), false) if n <= LIMIT => {}
        _ => return Err(Refused::Invalid("body_too_large")),
    }
    session.enable_retry_buffering();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut total = 0;
    while let Some(chunk) = session.read_request_body().await.map_err(|_| Refused::Invalid("body"))? {
        total += chunk.len();
        if total > LIMIT {
            return Err(Refused::Invalid("body_too_large"));
        }
        sha2::Digest::update(&mut hasher, &chunk);
    }
    Ok(Some(hex::encode(sha2::Digest::finalize(hasher))))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The key's plan bucket, route bucket and quota in one Redis round trip.
async fn cluster_limits(
    cluster: &Cluster,
    plan: &crate::snapshot::Plan,
    id: &str,
    route: (usize, usize, usize),
) -> redis::RedisResult<Verdict> {
    let plan_bucket = plan.throttle_spec.map(|s| (plan.name.as_str(), s));
    let route_bucket = plan.route_specs.get(&route).map(|(n, s)| (n.as_str(), *s));
    let quota = plan.quota.as_ref().map(|q| {
        let (period, expire_at) = q.period.window(unix_now());
        QuotaSpec { name: &plan.name, limit: q.limit, period, expire_at }
    });
    cluster.check(plan_bucket, route_bucket, quota, id).await
}

/// Logs Redis failures at most once a second (they come with every request while it is down).
fn log_redis_error(e: &redis::RedisError) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = unix_now();
    if LAST.swap(now, std::sync::atomic::Ordering::Relaxed) != now {
        log::warn!("cluster limits: Redis did not answer ({e}); applying on_redis_error");
    }
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
        if let Err(refusal) = self.admit(session, ctx).await {
            let (t, reason) = match refusal {
                Refusal::Auth { authorizer, reason, response } => {
                    let (api, stage, _) = ctx.labels();
                    metrics::AUTH_FAILURES.with_label_values(&[api, stage, &authorizer, reason]).inc();
                    (response, None)
                }
                Refusal::Throttled(reason, d) => {
                    ctx.ratelimit = Some(d);
                    ctx.extra_headers.push(("retry-after", d.reset_secs.max(1).to_string()));
                    (ResponseType::Throttled, Some(reason))
                }
                Refusal::Unavailable => {
                    ctx.status_override = Some(503);
                    (ResponseType::Default5xx, None)
                }
                Refusal::Quota(retry_after) => {
                    ctx.extra_headers.push(("retry-after", retry_after.to_string()));
                    (ResponseType::QuotaExceeded, Some("quota"))
                }
            };
            if let Some(reason) = reason {
                let (api, stage, _) = ctx.labels();
                metrics::THROTTLED.with_label_values(&[api, stage, reason]).inc();
            }
            self.gateway_response(session, ctx, t).await?;
            return Ok(true);
        }
        if declared_length_too_large(session.req_header(), ctx.snap.settings.max_body) {
            session.set_keepalive(None);
            self.gateway_response(session, ctx, ResponseType::RequestTooLarge).await?;
            return Ok(true);
        }
        if let Err(transforms::Refused(t, message, status)) = self.prepare_request(session, ctx).await {
            ctx.error_message = Some(message);
            ctx.status_override = status;
            self.gateway_response(session, ctx, t).await?;
            return Ok(true);
        }
        if matches!(ctx.route.as_ref().and_then(|r| r.integration.as_deref()), Some(Integration::Mock(_))) {
            self.mock(session, ctx).await?;
            return Ok(true);
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
        let req = session.req_header();
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
        if let Some(why) = crate::cache::not_storable(rc, &session.req_header().headers, resp) {
            log::debug!("response not stored: {why}");
            return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache));
        }
        let now = std::time::SystemTime::now();
        Ok(RespCacheable::Cacheable(CacheMeta::new(now + rc.ttl, now, 0, 0, resp.clone())))
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
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
        self.filter_request_body(session, body, end_of_stream, ctx)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Some(Integration::Http(t)) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()) else {
            return Error::e_explain(ErrorType::InternalError, "no http integration for this route");
        };
        let sni = if t.tls { t.sni.clone() } else { String::new() };
        let mut peer = HttpPeer::new(t.addr, t.tls, sni);
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
        up.insert_header(http::header::HOST, t.host.as_str())?;
        up.insert_header("x-request-id", ctx.request_id.as_str())?;
        up.insert_header("x-forwarded-for", ctx.xff.as_str())?;
        up.insert_header("x-forwarded-proto", ctx.forwarded_proto.as_deref().unwrap_or(ctx.proto))?;
        up.insert_header("x-forwarded-host", ctx.forwarded_host.as_deref().unwrap_or(&ctx.host))?;
        self.apply_request_transform(up, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream.status = Some(resp.status.as_u16());
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
        ctx.outcome.status = resp.status.as_u16();
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

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        use ErrorType::*;
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
                user_agent: req.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
                client_cert: ctx.client_cert.as_deref().map(|c| c.subject.as_str()),
                api_key_id: ctx.api_key_id.as_deref(),
                cache: ctx.cache_result,
                principal_id: ctx.principal.as_ref().map(|p| p.principal_id.as_str()).filter(|s| !s.is_empty()),
                ..Default::default()
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
