//! `Gateway`: the one `ProxyHttp` implementation. Each phase is thin and calls the module
//! that owns the concern (see the phase map in `lib.rs`).

pub mod admission;
mod answers;
pub mod body;
mod cache_hooks;
pub mod ctx;
mod identify;
mod request_log;
mod respond;
mod transforms;
mod websocket;

use crate::integrations::{Integration, Shape};
use crate::observability::errors;
use crate::responses::{Refusal, ResponseType};
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
    /// Serves `server.private_listen`: only such listeners see `endpoint = "private"` APIs.
    pub private: bool,
}

impl Gateway {}

static NULL: serde_json::Value = serde_json::Value::Null;
/// Template input when there is no body.
const NO_BODY: (&str, &serde_json::Value) = ("", &NULL);

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
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
        if matches!(&routed, Ok(()) | Err(Refusal { response: ResponseType::NotFound, .. }))
            && crate::cors::Cors::is_preflight(session.req_header())
        {
            if let Some(cors) = ctx.route.as_ref().and_then(|m| ctx.snap.apis[m.api].cors.as_ref()) {
                let h = cors.preflight(session.req_header())?;
                self.send(session, ctx, h, Bytes::new()).await?;
                return Ok(true);
            }
        }
        if let Err(r) = routed {
            self.refuse(session, ctx, r).await?;
            return Ok(true);
        }
        if let Some(ws) = ctx.route.as_ref().and_then(|m| ctx.snap.apis[m.api].websocket.clone()) {
            return self.websocket(session, ctx, ws).await;
        }
        if let Some(via) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()?.via.as_ref()) {
            if crate::integrations::edge::looped(&session.req_header().headers, via) {
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
        if let Some(Shape::Answer(a)) =
            ctx.route.as_ref().and_then(|r| r.integration.clone()).as_deref().map(Integration::shape)
        {
            if let Err(refusal) = self.read_for_answer(session, ctx, a.body_use()).await {
                self.refuse(session, ctx, refusal).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// After the cache lookup missed, before any peer is chosen: the one branch on the
    /// integration's shape. A Forward integration goes on to `upstream_peer` (`true`); an
    /// Answer integration makes its answer here (`proxy::answers`) and the request ends.
    async fn proxy_upstream_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
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
        cache_hooks::enable(session, ctx)
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut RequestCtx) -> Result<pingora::cache::CacheKey> {
        let key = ctx.cache.as_mut().map(|c| std::mem::take(&mut c.key)).unwrap_or_default();
        Ok(pingora::cache::CacheKey::new(key, ""))
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
        let Some(t) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()) else {
            return Error::e_explain(ErrorType::InternalError, "no forwarding integration for this route");
        };
        let mut sni = if t.tls { t.sni.clone() } else { String::new() };
        let mut peer = match &t.link {
            None => HttpPeer::new(t.addr, t.tls, sni),
            Some(link) => {
                // consistent hashing keys on the client address
                let key = match ctx.client.ip {
                    Some(std::net::IpAddr::V4(a)) => a.octets().to_vec(),
                    Some(std::net::IpAddr::V6(a)) => a.octets().to_vec(),
                    None => Vec::new(),
                };
                let Some((target, backend)) = link.select(&key, &ctx.upstream.tried) else {
                    let why = if link.any_healthy() { "every healthy target failed" } else { "no healthy target" };
                    let message = format!("VPC link {}: {why}", link.name);
                    ctx.pending = Some(Refusal::new(ResponseType::IntegrationFailure).with_message(message));
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
        let Some(t) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()) else {
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
            ctx.pending = Some(Refusal::new(ResponseType::IntegrationFailure));
            return Error::e_explain(ErrorType::HTTPStatus(502), why);
        }
        // before the cache stores it: this hop's headers go, and an HTTP/1.0 origin's answer
        // is an HTTP/1.1 answer to our clients
        crate::cache::strip_hop_by_hop(resp);
        resp.set_version(http::Version::HTTP_11);
        if let Some(c) = ctx.cache.as_mut().filter(|_| resp.status == http::StatusCode::NOT_MODIFIED) {
            c.revalidation = Some(resp.headers.clone());
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
        if let Some(via) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()?.via.as_ref()) {
            resp.append_header(http::header::VIA, via.clone())?;
        }
        // addressed to the gateway (a surrogate), read by the cache phase: not for clients
        resp.remove_header("surrogate-control");
        hsts(resp, ctx)?;
        // every answer of a limited route or key, not only the gateway's own
        ratelimit_headers(resp, ctx)?;
        ctx.outcome.status = resp.status.as_u16();
        invalidate_after_write(session, resp, ctx);
        if let Some(c) = &mut ctx.cache {
            let result = *c.result.get_or_insert_with(|| cache_hooks::result(session.cache.phase()));
            resp.insert_header("x-edgegate-cache", result.header())?;
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
        self.failed(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        request_log::request(session, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_limit() {
        let mut r = RequestHeader::build("POST", b"/", None).expect("req");
        r.insert_header("content-length", "11").expect("h");
        assert!(declared_length_too_large(&r, 10));
        assert!(!declared_length_too_large(&r, 11));
    }
}
