//! Everything decided about a request before its integration (`request_filter`), in order:
//! the connection's settings, identity, framing and head limits, routing, CORS
//! preflights, WebSocket handshakes, edge loops, admission, the declared length, request
//! transforms, and the body an answer integration needs. Each step either lets the request
//! go on or ends it with a [`Refusal`] (or an answer the gateway already sent).

use super::{answers, Gateway};
use crate::integrations::Shape;
use crate::observability::errors;
use crate::proxy::ctx::RequestCtx;
use crate::responses::{Refusal, ResponseType};
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::prelude::*;

/// How deciding ended.
pub(super) enum Decided {
    /// On to the cache phases and the integration.
    Continue,
    /// The gateway has answered (a preflight, a WebSocket connection, a management call).
    Answered,
    /// Refused: the gateway response to send.
    Refused(Refusal),
}

impl From<Refusal> for Decided {
    fn from(r: Refusal) -> Decided {
        Decided::Refused(r)
    }
}

fn declared_length_too_large(req: &RequestHeader, max: u64) -> bool {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max)
}

impl Gateway {
    pub(super) async fn decide(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Decided> {
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
        if let Err(r) = head_limits(session, ctx) {
            session.set_keepalive(None);
            return Ok(r.into());
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
                return Ok(Decided::Answered);
            }
        }
        if let Err(r) = routed {
            return Ok(r.into());
        }
        if let Some(ws) = ctx.route.as_ref().and_then(|m| ctx.snap.apis[m.api].websocket.clone()) {
            self.websocket(session, ctx, ws).await?;
            return Ok(Decided::Answered);
        }
        if let Err(r) = edge_loop(session, ctx) {
            return Ok(r.into());
        }
        Ok(self.admit_and_prepare(session, ctx).await.map_or_else(Decided::Refused, |()| Decided::Continue))
    }

    /// Admission, the declared length, request transforms, then the body an answer
    /// integration needs (read before the cache lookup: a slow client never holds the
    /// cache lock).
    async fn admit_and_prepare(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        self.admit(session, ctx).await?;
        if declared_length_too_large(session.req_header(), ctx.snap.settings.max_body) {
            session.set_keepalive(None);
            return Err(Refusal::new(ResponseType::RequestTooLarge));
        }
        self.prepare_request(session, ctx).await?;
        let integration = ctx.route.as_ref().and_then(|r| r.integration.clone());
        if let Some(Shape::Answer(a)) = integration.as_deref().map(|i| i.shape()) {
            answers::read_for_answer(session, ctx, a.body_use()).await?;
        }
        Ok(())
    }
}

/// Unambiguous HTTP/1 framing, and the header block within `max_header_size` and
/// `max_headers` (431).
fn head_limits(session: &Session, ctx: &RequestCtx) -> Result<(), Refusal> {
    let raw_head = session
        .as_http1()
        .filter(|_| session.req_header().headers.contains_key(http::header::TRANSFER_ENCODING))
        .map(|h1| h1.get_headers_raw_bytes());
    if let Err(why) = crate::framing::check(session.req_header(), raw_head.as_deref()) {
        log::debug!("refused request framing: {why}");
        return Err(Refusal::new(ResponseType::Default4xx));
    }
    let (size, fields) = crate::framing::head_size(session.req_header());
    let settings = &ctx.snap.settings;
    if size as u64 > settings.max_header_size || fields > settings.max_headers {
        return Err(Refusal::new(ResponseType::Default4xx)
            .with_status(431)
            .with_message("Request Header Fields Too Large"));
    }
    Ok(())
}

/// A request this node already forwarded (its origin leads back here): 508.
fn edge_loop(session: &Session, ctx: &RequestCtx) -> Result<(), Refusal> {
    let Some(via) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()?.via.as_ref()) else {
        return Ok(());
    };
    if crate::integrations::edge::looped(&session.req_header().headers, via) {
        errors::upstream("edge", "loop", &"the request already carries this node's Via");
        return Err(Refusal::new(ResponseType::Default5xx).with_status(508).with_message("Loop Detected"));
    }
    Ok(())
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
