//! Cluster-wide key limits (`[cluster] redis`): the per-key usage-plan buckets and quotas of
//! every node live in Redis, checked by one server-side script per request (one round trip:
//! the plan bucket, the plan's route bucket and the quota together). The script uses Redis's
//! own clock, so nodes need no clock agreement. Account, stage and route limits stay per node.
//!
//! When Redis cannot answer (down, slow beyond the response timeout), `on_redis_error`
//! decides: `local` falls back to this node's own buckets and quota counters (logged and
//! counted in `edgegate_redis_errors_total`), `deny` answers 503.

use super::bucket::Decision;
use once_cell::sync::Lazy;
use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Local,
    Deny,
}

pub static REDIS_ERRORS: Lazy<prometheus::IntCounter> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    prometheus::register_int_counter!("edgegate_redis_errors_total", "Cluster limit checks that Redis did not answer")
        .expect("metric registers once")
});

/// Buckets: tat in microseconds of Redis time. Returns {0, used1, used2, quota_left} when
/// admitted, or {level, wait_us} with level 1/2 for a bucket and 3 for the quota.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local used = {0, 0}
for i = 1, 2 do
  local interval = tonumber(ARGV[i * 2 - 1])
  if interval > 0 then
    local cap = tonumber(ARGV[i * 2])
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    local new = tat + interval
    if new - now > cap then
      return {i, tat - now - cap + interval}
    end
    redis.call('SET', KEYS[i], new, 'PX', math.floor((new - now) / 1000) + 1000)
    used[i] = new - now
  end
end
local left = -1
local limit = tonumber(ARGV[5])
if limit > 0 then
  local n = redis.call('INCR', KEYS[3])
  if n == 1 then redis.call('EXPIREAT', KEYS[3], ARGV[6]) end
  if n > limit then
    redis.call('DECR', KEYS[3])
    return {3, 0}
  end
  left = limit - n
end
return {0, used[1], used[2], left}
"#;

/// One bucket's settings for the script.
#[derive(Debug, Clone, Copy)]
pub struct BucketSpec {
    pub interval_us: u64,
    pub capacity_us: u64,
    pub burst: u64,
}

impl BucketSpec {
    pub fn new(rate: f64, burst: u64) -> BucketSpec {
        let interval_us = (1e6 / rate.max(1e-9)).max(1.0) as u64;
        let burst = burst.max(1);
        BucketSpec { interval_us, capacity_us: interval_us.saturating_mul(burst), burst }
    }

    fn decision(&self, used_us: u64) -> Decision {
        Decision {
            allowed: true,
            limit: self.burst,
            remaining: self.capacity_us.saturating_sub(used_us) / self.interval_us,
            reset_secs: used_us.div_ceil(1_000_000),
        }
    }
}

/// The answer for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; the most specific bucket's decision, if any bucket applied.
    Allowed(Option<Decision>),
    Throttled(Decision),
    QuotaExceeded,
}

/// A quota check: the plan, its limit, the period's index and when the period ends (unix s).
#[derive(Debug, Clone, Copy)]
pub struct QuotaSpec<'a> {
    pub name: &'a str,
    pub limit: u64,
    pub period: u64,
    pub expire_at: u64,
}

pub struct Cluster {
    pub url: String,
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
    /// Distinguishes the keys of one config's plans from another deployment's on the same Redis.
    pub prefix: String,
}

impl Cluster {
    pub fn new(url: &str) -> Result<Cluster, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid redis URL {url:?}: {e}"))?;
        Ok(Cluster {
            url: url.to_string(),
            client,
            conn: OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            prefix: "edgegate:".into(),
        })
    }

    /// The Redis client (a WebSocket node's own pub/sub connection is made from it).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared, reconnecting connection.
    pub async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.conn
            .get_or_try_init(|| async {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_millis(250))
                    .set_response_timeout(Duration::from_millis(250))
                    .set_number_of_retries(1)
                    .set_max_delay(1000);
                ConnectionManager::new_with_config(self.client.clone(), cfg).await
            })
            .await
            .cloned()
    }

    /// Runs the checks of one request. `Err` means Redis did not answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn check(
        &self,
        plan_bucket: Option<(&str, BucketSpec)>,
        route_bucket: Option<(&str, BucketSpec)>,
        quota: Option<QuotaSpec<'_>>,
        key_id: &str,
    ) -> redis::RedisResult<Verdict> {
        let mut conn = self.connection().await?;
        let p = &self.prefix;
        let k1 = plan_bucket.map(|(n, _)| format!("{p}b:{n}:{key_id}")).unwrap_or_else(|| format!("{p}none"));
        let k2 = route_bucket.map(|(n, _)| format!("{p}b:{n}:{key_id}")).unwrap_or_else(|| format!("{p}none"));
        let k3 = quota.map(|q| format!("{p}q:{}:{}:{key_id}", q.name, q.period)).unwrap_or_else(|| format!("{p}none"));
        let (i1, c1) = plan_bucket.map(|(_, s)| (s.interval_us, s.capacity_us)).unwrap_or((0, 0));
        let (i2, c2) = route_bucket.map(|(_, s)| (s.interval_us, s.capacity_us)).unwrap_or((0, 0));
        let (limit, expire_at) = quota.map(|q| (q.limit, q.expire_at)).unwrap_or((0, 0));
        let mut inv = self.script.prepare_invoke();
        inv.key(&k1).key(&k2).key(&k3).arg(i1).arg(c1).arg(i2).arg(c2).arg(limit).arg(expire_at);
        let r: Vec<i64> = inv.invoke_async(&mut conn).await?;
        let spec_of = |level: i64| if level == 1 { plan_bucket.map(|b| b.1) } else { route_bucket.map(|b| b.1) };
        match r.first().copied() {
            Some(0) => {
                let used = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
                let d =
                    route_bucket.map(|(_, s)| s.decision(used(2))).or(plan_bucket.map(|(_, s)| s.decision(used(1))));
                Ok(Verdict::Allowed(d))
            }
            Some(3) => Ok(Verdict::QuotaExceeded),
            Some(level @ (1 | 2)) => {
                let wait = r.get(1).copied().unwrap_or(0).max(0) as u64;
                let s = spec_of(level).unwrap_or(BucketSpec::new(1.0, 1));
                Ok(Verdict::Throttled(Decision {
                    allowed: false,
                    limit: s.burst,
                    remaining: 0,
                    reset_secs: wait.div_ceil(1_000_000).max(1),
                }))
            }
            _ => Err(redis::RedisError::from((redis::ErrorKind::TypeError, "unexpected script answer"))),
        }
    }
}
