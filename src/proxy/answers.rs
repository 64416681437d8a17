//! Integrations whose answer the gateway makes itself, instead of proxying to a peer: Lambda
//! proxy integrations (`lambda_proxy`, `aws::lambda`), AWS service integrations
//! (`aws::service`) and mocks (`templates`). Each reads the whole body first (`proxy::body`),
//! calls its target, maps the result to one answer, stores it in the route's cache when it
//! may be, and sends it.

use super::cache_hooks::invalidate_after_write;
use super::{body, Gateway, NO_BODY};
use crate::forwarded;
use crate::observability::errors;
use crate::proxy::ctx::RequestCtx;
use crate::responses::{Refusal, ResponseType};
use crate::snapshot::Integration;
use crate::templates;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

impl Gateway {
    /// Invokes a Lambda proxy integration with the request's event and answers with its result.
    pub(super) async fn lambda(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        use crate::aws::lambda::Invoked;
        use crate::lambda_proxy::{answer, event, Request};
        let Some(integration) = ctx.route.as_ref().and_then(|r| r.integration.clone()) else { return Ok(()) };
        let Integration::Lambda(t) = &*integration else { return Ok(()) };
        let payload = {
            let view = ctx.view(session.req_header());
            let binary = ctx.route.as_ref().is_some_and(|m| ctx.snap.apis[m.api].binary.matches(view.header(http::header::CONTENT_TYPE).as_deref()));
            let mut headers = view.headers().clone();
            forwarded::to_integration(&mut headers, &ctx.hop());
            let r = Request { view, headers: &headers, binary };
            Bytes::from(event(&r, t.format))
        };
        let started = std::time::Instant::now();
        let invoked = t.function.invoke(payload, t.timeout, &ctx.request_id).await;
        ctx.upstream.latency_ms = Some(started.elapsed().as_millis() as u64);
        let failure = |kind: &'static str, why: String| {
            errors::upstream(&t.function.name, kind, &why);
            Refusal::new(ResponseType::IntegrationFailure).with_message("Internal server error")
        };
        let result = match invoked {
            Ok(Invoked::Answer(b)) => {
                ctx.upstream.status = Some(200);
                b
            }
            Ok(Invoked::FunctionError { kind, message }) => {
                ctx.upstream.status = Some(200);
                let r = failure("function_error", format!("function {} failed ({kind}): {message}", t.function.name));
                return self.refuse(session, ctx, r).await;
            }
            Ok(Invoked::Service { status, message }) => {
                ctx.upstream.status = Some(status);
                if status == 429 {
                    errors::upstream(&t.function.name, "throttled", &message);
                    return self.gateway_response(session, ctx, ResponseType::Throttled).await;
                }
                let r = failure("lambda", format!("Lambda answered {status} for {}: {message}", t.function.name));
                return self.refuse(session, ctx, r).await;
            }
            Err(e) => return self.outbound_failed(session, ctx, &t.function.name, &e).await,
        };
        match answer(&result, t.format) {
            Ok(a) => {
                let mut h = ResponseHeader::build(a.status, Some(a.headers.len() + 4))?;
                for (k, v) in a.headers {
                    h.append_header(k, v)?;
                }
                self.answer_made(session, ctx, h, a.body).await
            }
            Err(why) => {
                let r = failure("malformed", format!("function {} gave a malformed answer: {why}", t.function.name));
                self.refuse(session, ctx, r).await
            }
        }
    }

    /// Calls an AWS service integration: the request template (or the body as it came) is
    /// the service request; the service's answer, success or error, is passed through.
    pub(super) async fn aws_service(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(integration) = ctx.route.as_ref().and_then(|r| r.integration.clone()) else { return Ok(()) };
        let Integration::Aws(t) = &*integration else { return Ok(()) };
        let body = ctx.body.clone().unwrap_or_default();
        let payload = match &t.template {
            None => body,
            Some(name) => {
                let text = std::str::from_utf8(&body).unwrap_or("");
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let snap = ctx.snap.clone();
                let rendered =
                    templates::render(&snap.templates, name, &self.template_vars(session, ctx, None, (text, &json)));
                match rendered {
                    Ok(s) => Bytes::from(s),
                    Err(e) => {
                        log::warn!("aws integration template {name}: {e}");
                        return self.gateway_response(session, ctx, ResponseType::Default5xx).await;
                    }
                }
            }
        };
        let started = std::time::Instant::now();
        let answer = t.call(payload, &ctx.request_id).await;
        ctx.upstream.latency_ms = Some(started.elapsed().as_millis() as u64);
        let a = match answer {
            Ok(a) => a,
            Err(e) => return self.outbound_failed(session, ctx, &t.endpoint.url, &e).await,
        };
        ctx.upstream.status = Some(a.status);
        let (status, fields) = match crate::aws::service::answer_head(a.status, &a.headers) {
            Ok(head) => head,
            Err(why) => {
                errors::upstream(&t.endpoint.url, "malformed", &why);
                let r = Refusal::new(ResponseType::IntegrationFailure).with_message("Internal server error");
                return self.refuse(session, ctx, r).await;
            }
        };
        let mut h = ResponseHeader::build(status, Some(fields.len() + 4))?;
        for (name, v) in fields {
            h.insert_header(name, v)?;
        }
        self.answer_made(session, ctx, h, a.body).await
    }

    /// A Lambda or AWS service call that got no answer: 504 `INTEGRATION_TIMEOUT` after its
    /// deadline, else 502 `INTEGRATION_FAILURE`; counted and summarised per `target`.
    async fn outbound_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &str,
        e: &crate::outbound::OutboundError,
    ) -> Result<()> {
        let timeout = matches!(e, crate::outbound::OutboundError::Timeout { .. });
        errors::upstream(target, if timeout { "timeout" } else { "connect" }, e);
        let t = if timeout { ResponseType::IntegrationTimeout } else { ResponseType::IntegrationFailure };
        self.gateway_response(session, ctx, t).await
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
            h.insert_header("x-edgegate-cache", "miss")?;
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

    pub(super) async fn mock(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(Integration::Mock(m)) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()) else {
            return Ok(());
        };
        // the body is read (and checked) before the answer, as an integration would
        if ctx.body.is_none() && body::framing(session) != body::Framing::Empty {
            match body::drain(session, ctx.snap.settings.max_body).await {
                Ok(()) => {}
                Err(body::BodyError::TooLarge) => {
                    return self.gateway_response(session, ctx, ResponseType::RequestTooLarge).await
                }
                Err(_) => {
                    session.set_keepalive(None);
                    errors::downstream("body", &"request body does not match its framing");
                    return self.gateway_response(session, ctx, ResponseType::Default4xx).await;
                }
            }
        }
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
