//! The end of every request (`logging`): its metrics and its access-log line.

use crate::observability::{access_log, metrics, trace};
use crate::proxy::ctx::RequestCtx;
use opentelemetry::KeyValue;
use pingora::prelude::*;

/// Counts the request, writes its access-log line (when the stage logs) and ends its trace.
pub(super) fn request(session: &mut Session, ctx: &mut RequestCtx) {
    let status = if ctx.outcome.status != 0 {
        ctx.outcome.status
    } else {
        session.response_written().map(|r| r.status.as_u16()).unwrap_or(0)
    };
    let elapsed = ctx.timing.start.elapsed();
    let req = session.req_header();
    let observed = metrics::Observed {
        method: &req.method,
        status,
        elapsed,
        cache: ctx.cache_result().map(|r| (r as usize, r.as_str())),
        integration_ms: ctx.upstream.latency_ms,
    };
    let handles = ctx.route.as_ref().and_then(|m| ctx.snap.apis[m.api].stages[m.stage].metrics_of(m.route));
    handles.unwrap_or(&metrics::UNROUTED).observe(&observed);
    let stage_logs = ctx.route.as_ref().map(|m| ctx.snap.apis[m.api].stages[m.stage].access_log).unwrap_or(true);
    if stage_logs && !ctx.websocket_detached && ctx.snap.settings.access_log != crate::snapshot::AccessLogTarget::Off {
        let entry = access_log::Entry {
            status,
            response_length: ctx.outcome.response_bytes,
            latency: elapsed.as_millis() as u64,
            integration_latency: ctx.upstream.latency_ms,
            integration_status: ctx.upstream.status,
            error_type: ctx.outcome.error_type.map(|t| t.name()),
            cache: ctx.cache_result().map(|r| r.as_str()),
            trace_id: ctx.trace.as_ref().map(|t| t.id()),
            ..access_log::Entry::of(&ctx.view(req))
        };
        access_log::write(&entry);
    }
    if let Some(mut t) = ctx.trace.take().filter(|t| t.recording()) {
        if let (Some(started), None) = (ctx.upstream.started, ctx.upstream.status) {
            // the integration was called and never answered
            t.client_span("integration", started, vec![KeyValue::new("url.path", ctx.upstream.uri.clone())], true);
        }
        let view = ctx.view(req);
        let mut attributes = vec![
            KeyValue::new("http.request.method", view.method().to_string()),
            KeyValue::new("url.path", view.raw_path().to_string()),
            KeyValue::new("url.scheme", ctx.client.proto.as_str()),
            KeyValue::new("http.response.status_code", status as i64),
            KeyValue::new("server.address", ctx.client.host.clone()),
            KeyValue::new("user_agent.original", view.user_agent().into_owned()),
            KeyValue::new("edgegate.request_id", ctx.request_id.clone()),
        ];
        if let Some(ip) = ctx.client.ip {
            attributes.push(KeyValue::new("client.address", ip.to_string()));
        }
        if ctx.route.is_some() {
            attributes.push(KeyValue::new("edgegate.api", view.api().to_string()));
            attributes.push(KeyValue::new("edgegate.stage", view.stage().to_string()));
        }
        if !view.route().is_empty() {
            attributes.push(KeyValue::new("http.route", view.route().to_string()));
        }
        if let Some(t) = ctx.outcome.error_type {
            attributes.push(KeyValue::new("error.type", t.name()));
        }
        let name = if view.route().is_empty() { view.method().to_string() } else { view.route().to_string() };
        let (start, received_at) = (ctx.timing.start, ctx.timing.received_at);
        t.finish(trace::Server { start, received_at, name, attributes, status });
    }
}
