//! The answers the gateway gives itself: gateway responses (with the API's overrides and
//! templates), refusals counted in the metrics, the one writer of a whole answer, the
//! template variables of a request, and what an unproxied failure becomes.

use super::{Gateway, NO_BODY};
use crate::observability::{errors, metrics};
use crate::proxy::ctx::RequestCtx;
use crate::responses::{self, Counted, Refusal, ResponseType};
use crate::templates;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};

impl Gateway {
    /// Answers a refused request: counts it, then sends its gateway response.
    pub(super) async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, r: Refusal) -> Result<()> {
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
        self.answer_refusal(session, ctx, r).await
    }

    /// The gateway response of a refusal: its type resolved through the API's overrides,
    /// the refusal's own status, message and headers over the type's.
    async fn answer_refusal(&self, session: &mut Session, ctx: &mut RequestCtx, r: Refusal) -> Result<()> {
        let t = r.response;
        let snap = ctx.snap.clone();
        let overrides = ctx.route.as_ref().map(|m| &snap.apis[m.api].responses);
        let resolved = overrides.map(|o| o.resolve(t));
        let status = r.status.or(resolved.as_ref().map(|r| r.status)).unwrap_or(t.status());
        let message = r.message.as_deref().unwrap_or(t.message());
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
        for (k, v) in r.headers {
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
    pub(super) async fn send(
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
            h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        h.insert_header(&crate::request::X_REQUEST_ID, ctx.request_id.as_str())?;
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

    /// The template variables of a request (`templates::Vars::of` over its view).
    pub(super) fn template_vars<'a>(
        &self,
        session: &'a Session,
        ctx: &'a RequestCtx,
        error: Option<(&'a str, &'a str)>,
        body: (&'a str, &'a serde_json::Value),
    ) -> templates::Vars<'a> {
        templates::Vars::of(&ctx.view(session.req_header()), error, body)
    }

    /// What a request that failed after admission becomes (`fail_to_proxy`): the failure is
    /// classified and logged, and a gateway response sent when nothing was written yet.
    pub(super) async fn failed(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        use ErrorType::*;
        match e.esource() {
            ErrorSource::Upstream => {
                let forward = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward());
                let target = forward.map_or_else(|| "integration".to_string(), |t| t.addr.to_string());
                errors::upstream(&target, errors::upstream_kind(e), e);
            }
            ErrorSource::Downstream => errors::downstream(errors::downstream_error_kind(e), e),
            _ if matches!(e.etype(), HTTPStatus(_)) => {}
            _ => log::error!("request {}: {e}", ctx.request_id),
        }
        let pending = ctx.pending.take();
        let t = match (e.etype(), e.esource()) {
            _ if pending.is_some() => pending.as_ref().map(|r| r.response),
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
                let r = pending.unwrap_or_else(|| Refusal::new(t));
                match self.answer_refusal(session, ctx, r).await {
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
}

/// `Strict-Transport-Security` for HTTPS answers on a custom domain with `hsts`.
pub(super) fn hsts(h: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if ctx.client.proto == crate::request::Proto::Https {
        if let Some(v) = ctx.snap.hsts.get(&ctx.client.host) {
            h.insert_header(http::header::STRICT_TRANSPORT_SECURITY, v.clone())?;
        }
    }
    Ok(())
}

static RATELIMIT_LIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: http::HeaderName = http::HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: http::HeaderName = http::HeaderName::from_static("ratelimit-reset");

/// IETF RateLimit fields for the most specific limit applied (key or route).
pub(super) fn ratelimit_headers(h: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if let Some(d) = ctx.ratelimit {
        let mut b = itoa::Buffer::new();
        h.insert_header(&RATELIMIT_LIMIT, b.format(d.limit))?;
        h.insert_header(&RATELIMIT_REMAINING, b.format(d.remaining))?;
        h.insert_header(&RATELIMIT_RESET, b.format(d.reset_secs))?;
    }
    Ok(())
}
