//! Integrations whose answer the gateway makes itself (`integrations::Shape::Answer`:
//! mock, Lambda, AWS service). The body is read as the integration asks
//! (`integrations::BodyUse`) before the cache lookup; after it missed, the integration makes
//! its answer from the request view, the answer is stored in the route's cache when it may
//! be, and sent.

use super::cache_hooks::invalidate_after_write;
use super::{body, Gateway};
use crate::integrations::{Answer, BodyUse, Env};
use crate::observability::errors;
use crate::proxy::ctx::RequestCtx;
use crate::responses::{Refusal, ResponseType};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

/// Reads the body as an answer integration needs it, before the cache lookup (a slow
/// client never holds the cache lock). `Err` is the refusal to send.
pub(super) async fn read_for_answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    use_: BodyUse,
) -> std::result::Result<(), Refusal> {
    let max = ctx.snap.settings.max_body;
    match use_ {
        BodyUse::Whole(limit) => {
            body::read_all(session, ctx, max.min(limit)).await.map(|_| ()).map_err(|e| e.refusal())
        }
        BodyUse::Drain if ctx.body.is_some() || body::framing(session) == body::Framing::Empty => Ok(()),
        BodyUse::Drain => match body::drain(session, max).await {
            Ok(()) => Ok(()),
            Err(body::BodyError::TooLarge) => Err(Refusal::new(ResponseType::RequestTooLarge)),
            Err(_) => {
                session.set_keepalive(None);
                errors::downstream("body", &"request body does not match its framing");
                Err(Refusal::new(ResponseType::Default4xx))
            }
        },
    }
}

impl Gateway {
    /// Serves an answer integration: it makes the answer from the request view, and the
    /// gateway sends it (storing it in the route's cache when it may) or the gateway
    /// response of its failure.
    pub(super) async fn answer(&self, session: &mut Session, ctx: &mut RequestCtx, a: &dyn Answer) -> Result<()> {
        let snap = ctx.snap.clone();
        let kind = ctx.route.as_ref().and_then(|r| r.integration.as_deref()).map_or("", |i| i.kind());
        let made = {
            let view = ctx.view(session.req_header());
            let binary = ctx
                .route
                .as_ref()
                .is_some_and(|m| snap.apis[m.api].binary.matches(view.header(http::header::CONTENT_TYPE).as_deref()));
            let trace = ctx.trace.as_ref().map(|t| t.outgoing().collect::<Vec<_>>()).unwrap_or_default();
            let started = std::time::Instant::now();
            let made = a.answer(&view, &Env { templates: &snap.templates, binary, trace: &trace }).await;
            (made, started)
        };
        let (made, started) = made;
        let took = started.elapsed();
        let called = match &made {
            Ok(m) => m.integration_status.is_some(),
            Err(e) => !matches!(e, crate::integrations::IntegrationError::Template { .. }),
        };
        if called {
            ctx.upstream.latency_ms = Some(took.as_millis() as u64);
            if let Some(t) = ctx.trace.as_mut().filter(|t| t.recording()) {
                let status = match &made {
                    Ok(m) => m.integration_status,
                    Err(e) => e.integration_status(),
                };
                let mut attributes = vec![opentelemetry::KeyValue::new("edgegate.integration", kind)];
                attributes.extend(status.map(|s| opentelemetry::KeyValue::new("http.response.status_code", s as i64)));
                let failed = made.is_err() || status.is_some_and(|s| s >= 500);
                t.client_span("integration", started, attributes, failed);
            }
        }
        match made {
            Ok(m) => {
                ctx.upstream.status = m.integration_status;
                let mut h = ResponseHeader::build(m.status, Some(m.headers.len() + 4))?;
                for (k, v) in m.headers {
                    h.append_header(k, v)?;
                }
                if m.cacheable {
                    self.answer_made(session, ctx, h, m.body).await
                } else {
                    self.send(session, ctx, h, m.body).await
                }
            }
            Err(e) => {
                ctx.upstream.status = e.integration_status();
                self.refuse(session, ctx, e.refusal()).await
            }
        }
    }

    /// Sends an answer the gateway made from an integration's result (Lambda, AWS service):
    /// writes invalidate, and the answer is stored in the route's cache when it may be.
    async fn answer_made(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut h: ResponseHeader,
        body: Bytes,
    ) -> Result<()> {
        invalidate_after_write(session, &h, ctx);
        if session.cache.enabled() {
            let stored = self.store_answer(session, ctx, &h, &body).await;
            if let Some(c) = &mut ctx.cache {
                c.result =
                    Some(if stored { crate::cache::CacheResult::Miss } else { crate::cache::CacheResult::Bypass });
            }
            h.insert_header(&crate::cache::CACHE_STATUS, http::HeaderValue::from_static("miss"))?;
        }
        self.send(session, ctx, h, body).await
    }

    /// Stores an answer the gateway made from an integration result (Lambda) in the route's
    /// cache, under the same rules as proxied answers (`response_cache_filter`). Answers that
    /// `Vary` are not stored (their variant key is Pingora's to compute). Returns whether
    /// it was stored; every failure leaves the answer uncached.
    async fn store_answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        h: &ResponseHeader,
        body: &Bytes,
    ) -> bool {
        use pingora::cache::{CachePhase, RespCacheable};
        if !matches!(session.cache.phase(), CachePhase::Miss | CachePhase::Stale | CachePhase::Expired)
            || h.headers.contains_key(http::header::VARY)
        {
            return false;
        }
        let meta = match self.response_cache_filter(session, h, ctx) {
            Ok(RespCacheable::Cacheable(meta)) => meta,
            _ => return false,
        };
        if session.cache.phase() != CachePhase::Expired {
            session.cache.set_cache_meta(meta);
        }
        if let Err(e) = session.cache.set_miss_handler().await {
            log::debug!("cache: cannot store the answer: {e}");
            return false;
        }
        let written = match session.cache.miss_handler() {
            Some(mh) => mh.write_body(body.clone(), true).await.is_ok(),
            None => false,
        };
        written && session.cache.finish_miss_handler().await.is_ok()
    }
}
