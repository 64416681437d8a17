//! The end of every request (`logging`): its metrics and its access-log line.

use crate::observability::{access_log, metrics};
use crate::proxy::ctx::RequestCtx;
use pingora::prelude::*;

/// Counts the request and writes its access-log line (when the stage logs).
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
            ..access_log::Entry::of(&ctx.view(req))
        };
        access_log::write(&entry);
    }
}
