//! `Gateway`: the one `ProxyHttp` implementation. Each phase is thin and calls the module
//! that owns the concern (see the phase map in `lib.rs`).

pub mod admission;
mod answers;
pub mod body;
mod cache_hooks;
pub mod ctx;
mod decide;
mod forward;
mod identify;
mod request_log;
mod respond;
mod transform;
mod websocket;

use crate::integrations::Shape;
use crate::snapshot::Shared;
use async_trait::async_trait;
use bytes::Bytes;
use cache_hooks::invalidate_after_write;
use ctx::{CacheResult, RequestCtx};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::ErrorType;
use respond::{hsts, ratelimit_headers};
use std::time::Duration;

pub struct Gateway {
    pub shared: Shared,
    /// The state that outlives reloads (the WebSocket registry is read here).
    pub runtime: std::sync::Arc<crate::runtime::Runtime>,
    /// Serves `server.private_listen`: only such listeners see `endpoint = "private"` APIs.
    pub private: bool,
}

impl Gateway {}

static NULL: serde_json::Value = serde_json::Value::Null;
/// Template input when there is no body.
const NO_BODY: (&str, &serde_json::Value) = ("", &NULL);

use crate::clock::unix_now;

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// Once per request, before any phase: its state, on the snapshot current now (the
    /// request keeps that snapshot to its end, whatever reloads happen meanwhile).
    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.shared.load_full())
    }

    /// No response compression module: bodies pass through as the integration sent them.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// Runs first, once the request head is read. Decides everything before the
    /// integration (`proxy::decide`): identity, routing, admission, transforms. Returns
    /// `true` when the gateway answered (a refusal, a preflight, a WebSocket connection),
    /// `false` to go on to the cache phases and the integration.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.decide(session, ctx).await? {
            decide::Decided::Continue => Ok(false),
            decide::Decided::Answered => Ok(true),
            decide::Decided::Refused(r) => {
                self.refuse(session, ctx, r).await?;
                Ok(true)
            }
        }
    }

    /// After the cache lookup missed, before any peer is chosen: the one branch on the
    /// integration's shape. A Forward integration goes on to `upstream_peer` (`true`); an
    /// Answer integration makes its answer here (`proxy::answers`) and the request ends.
    async fn proxy_upstream_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        cache_hooks::looked_up(ctx, cache_hooks::result(session.cache.phase()));
        let Some(integration) = ctx.route.as_ref().and_then(|r| r.integration.clone()) else { return Ok(true) };
        let Shape::Answer(a) = integration.shape() else { return Ok(true) };
        self.answer(session, ctx, a).await?;
        if session.cache.enabled() && ctx.cache_result() != Some(CacheResult::Miss) {
            // not stored (an error, or not storable): waiters on the cache lock go on at once
            session.cache.disable(pingora::cache::NoCacheReason::Custom("answer"));
        }
        Ok(false)
    }

    /// Turns the stage's cache on for the route, after every access check has passed (so a
    /// cached answer is never served to a caller the route would refuse).
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        cache_hooks::enable(&self.runtime.caches, session, ctx)
    }

    /// When the cache is on for the request: the primary key `request_cache_filter` built
    /// (`cache::build_key`: API, stage, method, scheme, host, path, keyed query and headers).
    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<pingora::cache::CacheKey> {
        let key = ctx.cache.as_mut().map(|c| std::mem::take(&mut c.key)).unwrap_or_default();
        // hashed once here (the predictor, the lookup and the lock would each hash it again)
        let bin = crate::cache::key_hash(&key);
        let mut key = pingora::cache::CacheKey::new(key, "");
        key.set_primary_bin_override(bin);
        Ok(key)
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
        let (Some(rc), Some(m)) = (ctx.cache.as_ref().map(|c| &c.settings), &ctx.route) else { return Ok(None) };
        if is_fresh
            && (crate::cache::refresh_requested(rc, &session.req_header().headers)
                || rc.store.purged(&m.path, meta.created()))
        {
            cache_hooks::looked_up(ctx, CacheResult::Expired);
            return Ok(Some(pingora::cache::ForcedFreshness::ForceExpired));
        }
        cache_hooks::looked_up(ctx, if is_fresh { CacheResult::Hit } else { CacheResult::Expired });
        Ok(None)
    }

    /// When an answer could be stored: whether it may (RFC 9111 and the route's settings),
    /// and until when (`cache_hooks::storable`).
    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<pingora::cache::RespCacheable> {
        cache_hooks::storable(session, resp, ctx)
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

    /// Each piece of a forwarded request body: `server.max_body` on streamed bodies (413),
    /// and the body read ahead (checked, or transformed) in place of Pingora's replay.
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

    /// After `proxy_upstream_filter` chose Forward: the peer of the route's target (a VPC
    /// link picks a healthy target not tried yet), with its timeouts and TLS settings.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        forward::peer(ctx)
    }

    /// When connecting to the peer failed: retried (`retries`) for idempotent methods only.
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

    /// When the peer failed mid-request: retried only when idempotent and nothing was sent
    /// to the client yet, or once on a stale pooled connection.
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

    /// Before the request head goes to the peer: its URI, Host (or Via, for edge
    /// forwarding), `x-request-id`, the forwarding rule and the request transform headers.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        forward::request_head(up, ctx)?;
        self.apply_request_transform(up, ctx)
    }

    /// When the peer's answer head arrives, before the cache stores it: a 101 must be a
    /// real WebSocket accept; hop-by-hop fields go; the integration status and latency are
    /// noted.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        forward::response_head(session, resp, ctx)
    }

    /// Every answer head to the client, proxied or from the cache: response transforms,
    /// CORS, `x-request-id`, Via (edge), HSTS, RateLimit fields, write invalidation and
    /// `x-edgegate-cache`.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.transform_response(session, resp, ctx)?;
        // x-request-id, x-edgegate-cache, and Via, HSTS or RateLimit fields where they apply
        resp.reserve(3);
        resp.insert_header(&crate::request::X_REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(via) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()?.via.as_ref()) {
            resp.append_header(http::header::VIA, via.clone())?;
        }
        // addressed to the gateway (a surrogate), read by the cache phase: not for clients
        resp.remove_header(&crate::cache::SURROGATE_CONTROL);
        hsts(resp, ctx)?;
        // every answer of a limited route or key, not only the gateway's own
        ratelimit_headers(resp, ctx)?;
        ctx.outcome.status = resp.status.as_u16();
        invalidate_after_write(session, resp, ctx);
        if let Some(c) = &mut ctx.cache {
            let result = *c.result.get_or_insert_with(|| cache_hooks::result(session.cache.phase()));
            resp.insert_header(&crate::cache::CACHE_STATUS, http::HeaderValue::from_static(result.header()))?;
        }
        Ok(())
    }

    /// Each piece of the answer body: response body templates; bytes counted for the log.
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

    /// When the request failed after `request_filter` without an answer: classified, logged,
    /// and answered with its gateway response when nothing was written yet (`proxy::respond`).
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        self.failed(session, e, ctx).await
    }

    /// Last, for every request: its metrics and access-log line (`proxy::request_log`).
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        request_log::request(session, ctx);
    }
}
