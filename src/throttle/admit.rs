//! Admission steps of the limits, in order:
//! - [`shared`]: account, stage and route buckets. They run BEFORE authorizers, so a flood
//!   of unauthenticated requests is shed without an authorizer call or a signature check
//!   each.
//! - [`keyed`]: the API key's usage plan (plan bucket, plan-per-route bucket, quota), after
//!   the key is known; through Redis with `[cluster]`, with `on_redis_error` as fallback.
//!
//! Each returns the most specific decision applied (for the `ratelimit-*` headers) or the
//! refusal to send.

use super::bucket::{Bucket, Decision};
use super::cluster::{Cluster, OnError, QuotaSpec, Verdict, REDIS_ERRORS};
use super::Plan;
use crate::responses::{Counted, Refusal, ResponseType};

fn throttled(reason: &'static str, d: Decision) -> Refusal {
    let mut r = Refusal::new(ResponseType::Throttled);
    r.counted = Counted::Throttled(reason);
    r.headers = ratelimit_fields(&d);
    r.headers.push(("retry-after", d.reset_secs.max(1).to_string()));
    r
}

fn quota_exceeded(retry_after: u64) -> Refusal {
    let mut r = Refusal::new(ResponseType::QuotaExceeded);
    r.counted = Counted::Throttled("quota");
    r.headers.push(("retry-after", retry_after.max(1).to_string()));
    r
}

/// The IETF RateLimit fields of a decision.
pub fn ratelimit_fields(d: &Decision) -> Vec<(&'static str, String)> {
    vec![
        ("ratelimit-limit", d.limit.to_string()),
        ("ratelimit-remaining", d.remaining.to_string()),
        ("ratelimit-reset", d.reset_secs.to_string()),
    ]
}

fn pass(d: Decision, reason: &'static str) -> Result<Decision, Refusal> {
    if d.allowed {
        Ok(d)
    } else {
        Err(throttled(reason, d))
    }
}

/// Account, stage and route buckets, in that order.
/// `now`: the request's time on the limiter clock (`bucket::ns_at`).
pub fn shared(
    account: &Bucket,
    stage: Option<&Bucket>,
    route: Option<&Bucket>,
    now: u64,
) -> Result<Option<Decision>, Refusal> {
    pass(account.take(now), "account")?;
    if let Some(b) = stage {
        pass(b.take(now), "stage")?;
    }
    match route {
        Some(b) => Ok(Some(pass(b.take(now), "route")?)),
        None => Ok(None),
    }
}

/// The key's plan bucket, plan-per-route bucket and quota (`route` = (api, stage, route)),
/// taken at the request's arrival: `now_ns` on the limiter clock, `unix` in seconds.
pub async fn keyed(
    cluster: Option<&(std::sync::Arc<Cluster>, OnError)>,
    plan: &Plan,
    id: &std::sync::Arc<str>,
    route: (usize, usize, usize),
    (now_ns, unix): (u64, u64),
) -> Result<Option<Decision>, Refusal> {
    if let Some((cluster, on_error)) = cluster {
        match cluster_limits(cluster, plan, id, route, unix).await {
            Ok(Verdict::Allowed(d)) => return Ok(d),
            Ok(Verdict::Throttled(d)) => return Err(throttled("key", d)),
            Ok(Verdict::QuotaExceeded) => {
                let unix = unix_now(); // after the round trip
                let retry = plan.quota.as_ref().map(|q| q.period.window(unix).1.saturating_sub(unix)).unwrap_or(1);
                return Err(quota_exceeded(retry));
            }
            Err(e) => {
                REDIS_ERRORS.inc();
                log_redis_error(&e);
                if *on_error == OnError::Deny {
                    return Err(Refusal::new(ResponseType::Default5xx).with_status(503));
                }
                let reason = if e.is_timeout() { "timeout" } else { "unreachable" };
                super::cluster::CLUSTER_FALLBACK.with_label_values(&[reason]).inc();
                // on_redis_error = "local": this node's own buckets and counters below
            }
        }
    }
    let mut applied = None;
    if let Some(kb) = &plan.throttle {
        applied = Some(pass(kb.take(id, now_ns), "key")?);
    }
    if let Some(kb) = plan.route_throttle.get(&route) {
        applied = Some(pass(kb.take(id, now_ns), "key")?);
    }
    if let Some(q) = &plan.quota {
        q.take(id, unix).map_err(|e| quota_exceeded(e.retry_after))?;
    }
    plan.usage.count(id, unix / 86_400);
    Ok(applied)
}

use crate::clock::unix_now;

/// The key's plan bucket, route bucket and quota in one Redis round trip.
async fn cluster_limits(
    cluster: &Cluster,
    plan: &Plan,
    id: &str,
    route: (usize, usize, usize),
    unix: u64,
) -> redis::RedisResult<Verdict> {
    let plan_bucket = plan.throttle_spec.map(|s| (plan.name.as_str(), s));
    let route_bucket = plan.route_specs.get(&route).map(|(n, s)| (n.as_str(), *s));
    let quota = plan.quota.as_ref().map(|q| {
        let (period, expire_at) = q.period.window(unix);
        QuotaSpec { name: &plan.name, limit: q.limit, period, expire_at }
    });
    let day = unix / 86_400;
    let usage = Some(super::cluster::UsageSpec { plan: &plan.name, day, expire_at: super::usage::expiry(day) });
    cluster.check(plan_bucket, route_bucket, quota, usage, id).await
}

/// Logs Redis failures at most once a second (they come with every request while it is down).
fn log_redis_error(e: &redis::RedisError) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = unix_now();
    if LAST.swap(now, std::sync::atomic::Ordering::Relaxed) != now {
        log::warn!("cluster limits: Redis did not answer ({e}); applying on_redis_error");
    }
}
