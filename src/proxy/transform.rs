//! The proxy's side of validation, transforms and CORS: when to read a body, where the
//! rendered templates go, and how failures become gateway responses. The rules themselves
//! live in `validation`, `transform` and `cors`.

use super::{body, Gateway, NO_BODY};
use crate::proxy::ctx::RequestCtx;
use crate::responses::{Refusal, ResponseType};
use crate::templates;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;

/// A template that fails at run time: 500, the details go to the log.
fn internal() -> Refusal {
    Refusal::new(ResponseType::Default5xx)
}

/// Renders one `set_headers` template into a header value.
fn render_header(
    env: &crate::templates::Templates,
    tpl: &str,
    v: &templates::Vars,
) -> Result<HeaderValue, templates::RenderError> {
    let s = templates::render(env, tpl, v)?;
    HeaderValue::from_str(&s).map_err(|_| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, "the value is not header text").into()
    })
}

fn content_type(req: &RequestHeader) -> Option<&str> {
    req.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

impl Gateway {
    /// Request transforms, after admission and before the integration: the body template
    /// (the whole body read first), then header, query and path templates.
    pub(super) async fn prepare_request(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let Some(t) = ctx.matched_route().and_then(|r| r.request_transform.clone()) else { return Ok(()) };
        let binary =
            ctx.route.as_ref().is_some_and(|m| ctx.snap.apis[m.api].binary.matches(content_type(session.req_header())));
        if let Some(tpl) = t.body.as_ref().filter(|_| !binary) {
            // the whole body, read before the integration is contacted (proxy::body)
            let max = ctx.snap.settings.max_body;
            let whole = body::read(session, ctx, max).await.map_err(body::BodyError::refusal)?.clone();
            let out = self.render_body(session, ctx, tpl, &whole)?;
            ctx.upstream.new_body = Some(out);
        }
        self.render_request_parts(session, ctx)
    }

    /// Renders a request body template over the whole body.
    fn render_body(&self, session: &Session, ctx: &RequestCtx, tpl: &str, body: &[u8]) -> Result<Bytes, Refusal> {
        let json = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        let text = std::str::from_utf8(body).unwrap_or("");
        let v = self.template_vars(session, ctx, None, (text, &json));
        templates::render(&ctx.snap.templates, tpl, &v).map(Bytes::from).map_err(|e| {
            log::warn!("request body template {tpl}: {e}");
            internal()
        })
    }

    /// Header, query and path templates of `request_transform`.
    fn render_request_parts(&self, session: &Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let Some(t) = ctx.matched_route().and_then(|r| r.request_transform.clone()) else { return Ok(()) };
        if t.set_headers.is_empty() && t.set_query.is_empty() && t.path.is_none() {
            return Ok(());
        }
        let fail = |e: templates::RenderError| {
            log::warn!("request transform template: {e}");
            internal()
        };
        let v = self.template_vars(session, ctx, None, NO_BODY);
        let env = &ctx.snap.templates;
        let mut headers = Vec::with_capacity(t.set_headers.len());
        for (name, tpl) in &t.set_headers {
            let value = render_header(env, tpl, &v).map_err(|e| {
                log::warn!("request transform: header {name}: {e}");
                internal()
            })?;
            headers.push((name.clone(), value));
        }
        let mut query = Vec::with_capacity(t.set_query.len());
        for (name, tpl) in &t.set_query {
            query.push((name.as_str(), templates::render(env, tpl, &v).map_err(fail)?));
        }
        let path = t.path.as_ref().map(|p| templates::render(env, p, &v)).transpose().map_err(fail)?;
        drop(v);
        let mut uri = std::mem::take(&mut ctx.upstream.uri);
        if let Some(p) = path {
            uri = crate::transform::set_path(&uri, p.trim());
        }
        if !query.is_empty() {
            uri = crate::transform::set_query(&uri, &query);
        }
        ctx.upstream.uri = uri;
        ctx.upstream.set_headers = headers;
        Ok(())
    }

    /// Header changes and the body length of the integration request.
    pub(super) fn apply_request_transform(&self, up: &mut RequestHeader, ctx: &mut RequestCtx) -> Result<()> {
        if let Some(b) = &ctx.upstream.new_body {
            // the body read ahead (checked, or transformed) goes with its own length
            up.remove_header(&http::header::TRANSFER_ENCODING);
            up.insert_header(http::header::CONTENT_LENGTH, b.len().to_string())?;
        }
        let Some(t) = ctx.matched_route().and_then(|r| r.request_transform.clone()) else { return Ok(()) };
        for h in &t.remove_headers {
            up.remove_header(h);
        }
        for (k, v) in std::mem::take(&mut ctx.upstream.set_headers) {
            up.insert_header(k, v)?;
        }
        Ok(())
    }

    /// The request body on its way to the integration: the body read ahead (checked or
    /// transformed) in place of what Pingora replays.
    pub(super) fn filter_request_body(&self, body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut RequestCtx) {
        // a `None` body tells Pingora the request body ended; an empty one sends nothing
        if let Some(b) = &ctx.upstream.new_body {
            *body = Some(if end_of_stream { b.clone() } else { Bytes::new() });
        }
    }

    /// `response_transform` (status, headers; starts collecting for a body template) and
    /// CORS headers, on integration and cached answers.
    pub(super) fn transform_response(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(m) = ctx.route.as_ref() else { return Ok(()) };
        let api = &ctx.snap.apis[m.api];
        if let Some(cors) = &api.cors {
            cors.apply(session.req_header().headers.get(http::header::ORIGIN), resp)?;
        }
        if matches!(m.integration.as_deref().map(|i| i.shape()), Some(crate::integrations::Shape::Answer(_))) {
            // answers made by the gateway from a function or service result are not
            // transformed (yet); the same on a cache hit as on the miss that stored it
            return Ok(());
        }
        let Some(t) = m.route.and_then(|ri| api.routes[ri].response_transform.clone()) else { return Ok(()) };
        let mapped = t.map_status(resp.status);
        if mapped != resp.status {
            resp.set_status(mapped)?;
        }
        for h in &t.remove_headers {
            resp.remove_header(h);
        }
        if !t.set_headers.is_empty() {
            let v = self.template_vars(session, ctx, None, NO_BODY);
            let mut rendered = Vec::with_capacity(t.set_headers.len());
            for (name, tpl) in &t.set_headers {
                match render_header(&ctx.snap.templates, tpl, &v) {
                    Ok(value) => rendered.push((name.clone(), value)),
                    Err(e) => log::warn!("response transform: header {name}: {e}"),
                }
            }
            drop(v);
            for (k, v) in rendered {
                resp.insert_header(k, v)?;
            }
        }
        let ct = resp.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if t.body.is_some() && session.req_header().method != http::Method::HEAD && !api.binary.matches(ct) {
            resp.remove_header(&http::header::CONTENT_LENGTH);
            if session.req_header().version == http::Version::HTTP_11 {
                resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
            ctx.upstream.response_body = Some(bytes::BytesMut::new());
        }
        Ok(())
    }

    /// Collects the integration's body and renders the `response_transform` body at its end.
    pub(super) fn transform_response_body(
        &self,
        session: &Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(buf) = ctx.upstream.response_body.as_mut() else { return Ok(()) };
        if let Some(b) = body.take() {
            buf.extend_from_slice(&b);
            if buf.len() as u64 > ctx.snap.settings.max_body {
                ctx.upstream.response_body = None;
                return Error::e_explain(
                    ErrorType::InternalError,
                    "integration body exceeds server.max_body for its template",
                );
            }
        }
        if !end_of_stream {
            return Ok(());
        }
        let whole = ctx.upstream.response_body.take().unwrap_or_default().freeze();
        let Some(tpl) = ctx.matched_route().and_then(|r| r.response_transform.as_ref()).and_then(|t| t.body.as_ref())
        else {
            return Ok(());
        };
        let json = serde_json::from_slice(&whole).unwrap_or(serde_json::Value::Null);
        let text = std::str::from_utf8(&whole).unwrap_or("");
        let v = self.template_vars(session, ctx, None, (text, &json));
        match templates::render(&ctx.snap.templates, tpl, &v) {
            Ok(out) => *body = Some(Bytes::from(out)),
            Err(e) => {
                log::warn!("response body template {tpl}: {e}");
                return Error::e_explain(ErrorType::InternalError, "response body template failed");
            }
        }
        Ok(())
    }
}
