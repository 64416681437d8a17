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
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::Sentinel;
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

/// Decisions a node made itself under `on_redis_error = "local"`, by why Redis did not decide
/// (`unreachable`, `timeout`).
pub static CLUSTER_FALLBACK: Lazy<prometheus::IntCounterVec> = Lazy::new(|| {
    #[allow(clippy::expect_used)]
    prometheus::register_int_counter_vec!(
        "edgegate_cluster_fallback_total",
        "Key-limit decisions made by this node because Redis did not answer (on_redis_error = \"local\")",
        &["reason"]
    )
    .expect("metric registers once")
});

/// Buckets: tat in microseconds of Redis time. Returns {0, used1, used2, quota_left} when
/// admitted, or {level, wait_us} with level 1/2 for a bucket and 3 for the quota. An
/// admitted request is counted on its day's usage key (KEYS[4]) when ARGV[7] gives its expiry.
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
local usage_expiry = tonumber(ARGV[7])
if usage_expiry > 0 then
  if redis.call('INCR', KEYS[4]) == 1 then redis.call('EXPIREAT', KEYS[4], usage_expiry) end
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

/// A request's count on its day's usage: the plan, the day (since 1970-01-01) and when the
/// count expires (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct UsageSpec<'a> {
    pub plan: &'a str,
    pub day: u64,
    pub expire_at: u64,
}

/// The Redis key of a plan's count for an API key on a day (one hash slot per API key, as the
/// limit script's other keys).
fn usage_key(prefix: &str, plan: &str, day: u64, key_id: &str) -> String {
    format!("{prefix}u:{plan}:{day}:{{{key_id}}}")
}

/// Where the shared state lives: one Redis, a Redis Cluster (seed nodes), or the master a
/// set of Sentinels names.
enum Backend {
    Single {
        client: redis::Client,
        conn: OnceCell<ConnectionManager>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        seeds: Vec<redis::Client>,
        conn: OnceCell<ClusterConnection>,
    },
    Sentinel {
        sentinel: tokio::sync::Mutex<Sentinel>,
        service: String,
        db: i64,
        conn: tokio::sync::Mutex<Option<(redis::Client, ConnectionManager)>>,
    },
}

/// A connection of any backend (commands and scripts run the same on each).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct Cluster {
    /// The configured target, as written (`[cluster] redis`): its identity across reloads.
    pub url: String,
    backend: Backend,
    script: redis::Script,
    /// Distinguishes the keys of one config's plans from another deployment's on the same Redis.
    pub prefix: String,
}

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_millis(250))
        .set_response_timeout(Duration::from_millis(250))
        .set_number_of_retries(1)
        .set_max_delay(1000)
}

/// Why a `[cluster] redis` target does not compile.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid redis target {0:?}: {1}")]
    Target(String, String),
    #[error("{0:?}: name the master: redis-sentinel://HOST:PORT[,HOST:PORT]/MASTER_NAME[/DB]")]
    NoMaster(String),
    #[error("{0:?}: the database must be a number")]
    Database(String),
    #[error("{0:?} names no sentinel")]
    NoSentinel(String),
}

impl Cluster {
    /// `spec`: one `redis://` URL; several separated by spaces (the seed nodes of a Redis
    /// Cluster); or `redis-sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]`.
    pub fn new(spec: &str) -> Result<Cluster, ClusterError> {
        // exported from the first scrape of a node that has a cluster
        Lazy::force(&REDIS_ERRORS);
        for reason in ["unreachable", "timeout"] {
            CLUSTER_FALLBACK.with_label_values(&[reason]);
        }
        let bad = |e: redis::RedisError| ClusterError::Target(spec.to_string(), e.to_string());
        let backend = if let Some(rest) = spec.strip_prefix("redis-sentinel://") {
            let mut parts = rest.split('/');
            let hosts = parts.next().unwrap_or("");
            let service =
                parts.next().filter(|s| !s.is_empty()).ok_or_else(|| ClusterError::NoMaster(spec.to_string()))?;
            let db = match parts.next() {
                Some(d) => d.parse().map_err(|_| ClusterError::Database(spec.to_string()))?,
                None => 0,
            };
            let nodes: Vec<String> =
                hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("redis://{h}")).collect();
            if nodes.is_empty() {
                return Err(ClusterError::NoSentinel(spec.to_string()));
            }
            Backend::Sentinel {
                sentinel: tokio::sync::Mutex::new(Sentinel::build(nodes).map_err(bad)?),
                service: service.to_string(),
                db,
                conn: tokio::sync::Mutex::new(None),
            }
        } else if spec.contains(' ') {
            let urls: Vec<&str> = spec.split_whitespace().collect();
            let seeds = urls.iter().map(|u| redis::Client::open(*u)).collect::<Result<Vec<_>, _>>().map_err(bad)?;
            let client = redis::cluster::ClusterClientBuilder::new(urls)
                .connection_timeout(Duration::from_millis(250))
                .response_timeout(Duration::from_millis(250))
                .retries(1)
                .build()
                .map_err(bad)?;
            Backend::Cluster { client, seeds, conn: OnceCell::new() }
        } else {
            Backend::Single { client: redis::Client::open(spec).map_err(bad)?, conn: OnceCell::new() }
        };
        Ok(Cluster { url: spec.to_string(), backend, script: redis::Script::new(SCRIPT), prefix: "edgegate:".into() })
    }

    /// The shared, reconnecting connection.
    pub async fn connection(&self) -> redis::RedisResult<Conn> {
        match &self.backend {
            Backend::Single { client, conn } => conn
                .get_or_try_init(|| ConnectionManager::new_with_config(client.clone(), manager_config()))
                .await
                .cloned()
                .map(Conn::Single),
            Backend::Cluster { client, conn, .. } => {
                conn.get_or_try_init(|| client.get_async_connection()).await.cloned().map(Conn::Cluster)
            }
            Backend::Sentinel { conn, .. } => {
                let mut g = conn.lock().await;
                if let Some((_, c)) = g.as_ref() {
                    return Ok(Conn::Single(c.clone()));
                }
                let client = self.sentinel_master().await?;
                let c = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
                *g = Some((client, c.clone()));
                Ok(Conn::Single(c))
            }
        }
    }

    async fn sentinel_master(&self) -> redis::RedisResult<redis::Client> {
        let Backend::Sentinel { sentinel, service, db, .. } = &self.backend else {
            return Err(redis::RedisError::from((redis::ErrorKind::ClientError, "not a sentinel target")));
        };
        let info = redis::sentinel::SentinelNodeConnectionInfo {
            tls_mode: None,
            redis_connection_info: Some(redis::RedisConnectionInfo { db: *db, ..Default::default() }),
        };
        sentinel.lock().await.async_master_for(service, Some(&info)).await
    }

    /// After a failed command: a Sentinel target asks the Sentinels for the master again (a
    /// failover moves it); the other backends reconnect by themselves.
    pub async fn failed(&self) {
        if let Backend::Sentinel { conn, .. } = &self.backend {
            *conn.lock().await = None;
        }
    }

    /// A new pub/sub connection: to the one Redis, to the master, or to the first seed that
    /// answers (Redis Cluster propagates PUBLISH to every node).
    pub async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        match &self.backend {
            Backend::Single { client, .. } => client.get_async_pubsub().await,
            Backend::Sentinel { .. } => self.sentinel_master().await?.get_async_pubsub().await,
            Backend::Cluster { seeds, .. } => {
                let mut last = redis::RedisError::from((redis::ErrorKind::IoError, "no seed node answered"));
                for s in seeds {
                    match s.get_async_pubsub().await {
                        Ok(p) => return Ok(p),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }

    /// A plan's counts for an API key on each day of `from..=to` (one `MGET`: the keys share
    /// the API key's hash slot).
    pub async fn usage_days(&self, plan: &str, key_id: &str, from: u64, to: u64) -> redis::RedisResult<Vec<u64>> {
        let mut conn = self.connection().await?;
        let keys: Vec<String> = (from..=to).map(|d| usage_key(&self.prefix, plan, d, key_id)).collect();
        let counts: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(counts.into_iter().map(|n| n.unwrap_or(0)).collect())
    }

    /// Runs the checks of one request. `Err` means Redis did not answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn check(
        &self,
        plan_bucket: Option<(&str, BucketSpec)>,
        route_bucket: Option<(&str, BucketSpec)>,
        quota: Option<QuotaSpec<'_>>,
        usage: Option<UsageSpec<'_>>,
        key_id: &str,
    ) -> redis::RedisResult<Verdict> {
        let mut conn = self.connection().await?;
        let p = &self.prefix;
        // every key of one API key carries it as a hash tag: one slot in a Redis Cluster, so the
        // script's keys never cross slots
        let k1 = plan_bucket
            .map(|(n, _)| format!("{p}b:{n}:{{{key_id}}}"))
            .unwrap_or_else(|| format!("{p}none:{{{key_id}}}"));
        let k2 = route_bucket
            .map(|(n, _)| format!("{p}b:{n}:{{{key_id}}}"))
            .unwrap_or_else(|| format!("{p}none:{{{key_id}}}"));
        let k3 = quota
            .map(|q| format!("{p}q:{}:{}:{{{key_id}}}", q.name, q.period))
            .unwrap_or_else(|| format!("{p}none:{{{key_id}}}"));
        let (i1, c1) = plan_bucket.map(|(_, s)| (s.interval_us, s.capacity_us)).unwrap_or((0, 0));
        let (i2, c2) = route_bucket.map(|(_, s)| (s.interval_us, s.capacity_us)).unwrap_or((0, 0));
        let (limit, expire_at) = quota.map(|q| (q.limit, q.expire_at)).unwrap_or((0, 0));
        let k4 = usage.map(|u| usage_key(p, u.plan, u.day, key_id)).unwrap_or_else(|| format!("{p}none:{{{key_id}}}"));
        let usage_expiry = usage.map_or(0, |u| u.expire_at);
        let mut inv = self.script.prepare_invoke();
        inv.key(&k1).key(&k2).key(&k3).key(&k4);
        inv.arg(i1).arg(c1).arg(i2).arg(c2).arg(limit).arg(expire_at).arg(usage_expiry);
        let r: Vec<i64> = match inv.invoke_async(&mut conn).await {
            Ok(r) => r,
            Err(e) => {
                self.failed().await;
                return Err(e);
            }
        };
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
