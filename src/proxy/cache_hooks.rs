//! The cache phases: turning the route's cache on (its key), storability, and invalidation
//! after writes. The cache lock and the predictor pingora-cache needs as `&'static` are the
//! runtime's (`cache::Stores`).

use super::body;
use crate::proxy::ctx::{CacheResult, CacheState, RequestCtx};
use pingora::cache::CachePhase;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

/// The `x-edgegate-cache` / metric word for a cache phase.
pub fn result(phase: CachePhase) -> CacheResult {
    match phase {
        CachePhase::Hit | CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => CacheResult::Hit,
        CachePhase::Stale | CachePhase::StaleUpdating => CacheResult::Stale,
        CachePhase::Expired => CacheResult::Expired,
        CachePhase::Miss => CacheResult::Miss,
        _ => CacheResult::Bypass,
    }
}

/// RFC 9111 4.4: a successful unsafe request (POST, PUT, PATCH, DELETE, …) invalidates the
/// stored answers for its path, and for the paths its `Location` and `Content-Location` name
/// on the same host and under the same stage.
pub(super) fn invalidate_after_write(session: &Session, resp: &ResponseHeader, ctx: &RequestCtx) {
    use http::Method;
    let req = session.req_header();
    if matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
        || !(200..400).contains(&resp.status.as_u16())
    {
        return;
    }
    let (Some(rc), Some(m)) = (ctx.cache.as_ref().map(|c| &c.settings), &ctx.route) else { return };
    rc.store.purge_path(&m.path);
    // A URL may be in the client's space (behind the stage or base path) or in the
    // integration's (the origin's own Location): the prefix each puts before the route path.
    let client_prefix = req.uri.path().strip_suffix(m.path.as_str());
    let origin_host = m.integration.as_deref().and_then(|i| i.forward()).map_or("", |t| t.host.as_str());
    let origin_path = ctx.upstream.uri.split(['?', '#']).next().unwrap_or("");
    let origin_prefix = origin_path.strip_suffix(m.path.as_str());
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let Some(v) = resp.headers.get(&name).and_then(|v| v.to_str().ok()) else { continue };
        let (host, path) = match split_url(v) {
            Some((h, p)) => (Some(h), p),
            None if v.starts_with('/') => (None, v),
            None => continue,
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let host_name = |h: &str| h.rsplit_once(':').map_or(h, |(n, _)| n).to_ascii_lowercase();
        let ours = host.is_none_or(|h| host_name(h) == ctx.client.host);
        let origins = host.is_none_or(|h| !origin_host.is_empty() && host_name(h) == host_name(origin_host));
        // over-invalidating both readings is safe; missing one is not
        for (applies, prefix) in [(ours, client_prefix), (origins, origin_prefix)] {
            if let (true, Some(prefix)) = (applies, prefix) {
                if let Some(below) = path.strip_prefix(prefix).filter(|p| p.starts_with('/')) {
                    rc.store.purge_path(below);
                }
            }
        }
    }
}

/// `scheme://authority/path` → (authority, /path).
pub(super) fn split_url(url: &str) -> Option<(&str, &str)> {
    let (_, rest) = url.split_once("://")?;
    Some(rest.split_at(rest.find('/').unwrap_or(rest.len())))
}

/// `request_cache_filter`: turns the stage's cache on for the route, after every access
/// check has passed (so a cached answer is never served to a caller the route would refuse).
/// The lookup is over (an entry found, or a miss going to the integration): its span, when
/// traced.
pub(super) fn looked_up(ctx: &mut RequestCtx, result: CacheResult) {
    let Some(started) = ctx.cache.as_mut().and_then(|c| c.lookup.take()) else { return };
    if let Some(t) = &mut ctx.trace {
        let attributes = vec![opentelemetry::KeyValue::new("edgegate.cache.result", result.as_str())];
        t.span("cache lookup", started, attributes, false);
    }
}

pub(super) fn enable(stores: &crate::cache::Stores, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
    let Some(m) = ctx.route.as_ref() else { return Ok(()) };
    let Some(ri) = m.route else { return Ok(()) };
    let stage = &ctx.snap.apis[m.api].stages[m.stage];
    let Some(rc) = stage.route_caches.get(ri).and_then(|c| c.clone()) else { return Ok(()) };
    let mut state = CacheState::new(rc.clone());
    if body::has_body(session, ctx) {
        // a body is an input no key covers (a "fat GET"): never looked up, never stored
        state.result = Some(CacheResult::Bypass);
        ctx.cache = Some(state);
        return Ok(());
    }
    let req = session.req_header();
    let route = &ctx.snap.apis[m.api].routes[ri];
    let mut identity = Vec::new();
    if let Some((_, a)) = &route.authorizer {
        a.identity_headers(|h| identity.push(h.clone()));
    }
    state.credential = crate::cache::carries_unkeyed_credential(&rc, &req.headers, &identity)
        || ctx.snap.apis[m.api].edge.as_ref().is_some_and(|p| p.requires_credential(&req.method, &m.path));
    let view = ctx.view(req);
    let input = crate::cache::KeyInput::of(&view);
    let keyed = crate::cache::build_key(&mut state.key, &rc, &input);
    if keyed.is_ok() {
        state.lookup = ctx.trace.as_ref().filter(|t| t.recording()).map(|_| std::time::Instant::now());
        session.cache.enable(rc.store, None, Some(stores.predictor), Some(stores.lock), Some(stores.overrides()));
        session.cache.set_max_file_size_bytes(rc.store.max_entry());
    } else {
        state.result = Some(CacheResult::Bypass);
    }
    ctx.cache = Some(state);
    Ok(())
}

/// `response_cache_filter`: whether the answer may be stored, and until when.
pub(super) fn storable(
    session: &Session,
    resp: &ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<pingora::cache::RespCacheable> {
    use pingora::cache::{CacheMeta, NoCacheReason, RespCacheable};
    let Some(state) = &mut ctx.cache else {
        return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
    };
    // a 304 to a revalidation: its fields replace the stored ones (RFC 9111 4.3.4)
    let updated;
    // the 304's Date dates the freshened response for its age; the stored Date stays
    let mut dated = None;
    let resp = match state.revalidation.take() {
        Some(fields) => {
            // from the stored header itself: Pingora's merge already took the 304's ETag
            let stored = session.cache.maybe_cache_meta().map_or(resp, |m| m.response_header());
            updated = crate::cache::apply_304(stored, &fields);
            if let Some(d) = fields.get(http::header::DATE) {
                let mut h = updated.clone();
                h.insert_header(http::header::DATE, d.clone())?;
                dated = Some(h);
            }
            &updated
        }
        None => resp,
    };
    let rc = &state.settings;
    if let Some(why) = crate::cache::not_storable(state.credential, resp, rc.honor_origin) {
        log::debug!("response not stored: {why}");
        return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache));
    }
    let now = std::time::SystemTime::now();
    let Some(f) = crate::cache::freshness(dated.as_ref().unwrap_or(resp), rc.ttl, rc.honor_origin, now) else {
        log::debug!("response not stored: stale on arrival and no validator");
        return Ok(RespCacheable::Uncacheable(NoCacheReason::OriginNotCache));
    };
    // never served stale: no stale-while-revalidate, no stale-if-error
    Ok(RespCacheable::Cacheable(CacheMeta::new(f.fresh_until, f.created, 0, 0, resp.clone())))
}
