//! The connection registry across nodes (`[cluster] redis`).
//!
//! Each node has a random id. Its connections are recorded as `edgegate:ws:conn:{id}` ->
//! node id (set on connect, deleted on close), and the node keeps `edgegate:ws:alive:{node}`
//! alive with a 15 s TTL, refreshed every 5 s. A management call for a connection this node
//! does not hold looks the holder up; if the holder's heartbeat is gone the connection is Gone
//! (within 15 s of a node's death) and its entry is removed. Otherwise the call is published
//! on the holder's channel `edgegate:ws:node:{node}` and its answer comes back on the caller's
//! own channel; no answer within 2 s is a 504. Without `[cluster]`, everything is node-local.

use super::manage::{self, Answer};
use crate::throttle::cluster::Cluster;
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use dashmap::DashMap;
use futures_util::StreamExt;
use once_cell::sync::Lazy;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// This process's node id.
pub static NODE: Lazy<String> = Lazy::new(|| format!("{:016x}", fastrand::u64(..)));
const ALIVE_TTL: u64 = 15;
const WAIT: Duration = Duration::from_secs(2);

static PENDING: Lazy<DashMap<u64, oneshot::Sender<Answer>>> = Lazy::new(DashMap::new);

fn conn_key(id: &str) -> String {
    format!("edgegate:ws:conn:{id}")
}
fn alive_key(node: &str) -> String {
    format!("edgegate:ws:alive:{node}")
}
fn channel(node: &str) -> String {
    format!("edgegate:ws:node:{node}")
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Wire {
    Req { seq: u64, from: String, method: String, conn: String, body: String, scope: Option<(String, String)> },
    Rep { seq: u64, status: u16, error_type: Option<String>, body: String },
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}
fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
}

/// Records a new connection of this node before its 101 is sent, so that once the client
/// holds the connection every node reaches it. Best effort: Redis calls are bounded (250 ms),
/// and a failure leaves the connection node-local.
pub async fn announce(cluster: &Cluster, id: &str) {
    let r: redis::RedisResult<()> = match cluster.connection().await {
        Ok(mut conn) => redis::cmd("SET").arg(conn_key(id)).arg(&*NODE).query_async(&mut conn).await,
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        log::warn!("websocket registry: {e}");
    }
}

/// Removes a closed connection's entry.
pub fn retire(cluster: &Arc<Cluster>, id: &str) {
    let (c, key) = (cluster.clone(), conn_key(id));
    tokio::spawn(async move {
        if let Ok(mut conn) = c.connection().await {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
        }
    });
}

/// A management call for a connection this node does not hold.
pub async fn remote(
    cluster: &Arc<Cluster>,
    method: &http::Method,
    id: &str,
    body: Bytes,
    scope: Option<(&str, &str)>,
) -> Answer {
    let unavailable = |why: &str| Answer {
        status: 503,
        error_type: Some("InternalServerErrorException"),
        body: serde_json::json!({"message": why}).to_string().into_bytes(),
    };
    let Ok(mut conn) = cluster.connection().await else { return unavailable("the connection registry is unavailable") };
    let node: Option<String> = match redis::cmd("GET").arg(conn_key(id)).query_async(&mut conn).await {
        Ok(n) => n,
        Err(_) => return unavailable("the connection registry is unavailable"),
    };
    let Some(node) = node.filter(|n| *n != *NODE) else { return manage::gone(id) };
    let alive: bool = redis::cmd("EXISTS").arg(alive_key(&node)).query_async(&mut conn).await.unwrap_or(false);
    if !alive {
        // its node died: the entry goes, the connection is gone
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(conn_key(id)).query_async(&mut conn).await;
        return manage::gone(id);
    }
    let seq = fastrand::u64(..);
    let (tx, rx) = oneshot::channel();
    PENDING.insert(seq, tx);
    let msg = Wire::Req {
        seq,
        from: NODE.clone(),
        method: method.to_string(),
        conn: id.to_string(),
        body: b64(&body),
        scope: scope.map(|(a, s)| (a.to_string(), s.to_string())),
    };
    let payload = serde_json::to_string(&msg).unwrap_or_default();
    let sent: redis::RedisResult<u64> =
        redis::cmd("PUBLISH").arg(channel(&node)).arg(payload).query_async(&mut conn).await;
    // (on a Redis Cluster PUBLISH counts only the receiving node's subscribers: wait anyway)
    let answer = match sent {
        Ok(_) => tokio::time::timeout(WAIT, rx).await.ok().and_then(Result::ok),
        Err(_) => None,
    };
    PENDING.remove(&seq);
    answer.unwrap_or_else(|| Answer {
        status: 504,
        error_type: Some("InternalServerErrorException"),
        body: serde_json::json!({"message": "the node holding the connection did not answer"}).to_string().into_bytes(),
    })
}

/// Follows the running snapshot's `[cluster]`: heartbeats this node and serves the calls other
/// nodes publish for its connections.
pub struct Relay {
    /// The running configuration's cluster, asked anew on every loop (a reload may drop or
    /// change it).
    pub current: Arc<dyn Fn() -> Option<Arc<Cluster>> + Send + Sync>,
    /// This node's connections (the runtime's), which relayed calls reach.
    pub connections: Arc<super::Registry>,
}

#[async_trait]
impl BackgroundService for Relay {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let cluster = (self.current)();
            let Some(cluster) = cluster else {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            };
            tokio::select! {
                r = serve(&cluster, &*self.current, &self.connections) => {
                    if let Err(e) = r {
                        log::warn!("websocket relay on {}: {e}; retrying", cluster.url);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn serve(
    cluster: &Arc<Cluster>,
    current: &(dyn Fn() -> Option<Arc<Cluster>> + Send + Sync),
    registry: &super::Registry,
) -> redis::RedisResult<()> {
    let mut pubsub = cluster.pubsub().await?;
    pubsub.subscribe(channel(&NODE)).await?;
    let mut messages = pubsub.into_on_message();
    let mut beat = tokio::time::interval(Duration::from_secs(5));
    loop {
        // a reload that drops or changes [cluster] ends this subscription
        let still = current().is_some_and(|c| Arc::ptr_eq(&c, cluster));
        if !still {
            return Ok(());
        }
        tokio::select! {
            _ = beat.tick() => {
                let mut conn = cluster.connection().await?;
                redis::cmd("SET").arg(alive_key(&NODE)).arg(1).arg("EX").arg(ALIVE_TTL).query_async::<()>(&mut conn).await?;
            }
            m = messages.next() => {
                let Some(m) = m else { return Ok(()) };
                let Ok(payload) = m.get_payload::<String>() else { continue };
                match serde_json::from_str::<Wire>(&payload) {
                    Ok(Wire::Rep { seq, status, error_type, body }) => {
                        if let Some((_, tx)) = PENDING.remove(&seq) {
                            let error_type = error_type.and_then(|t| manage::ERROR_TYPES.iter().copied().find(|x| *x == t));
                            let _ = tx.send(Answer { status, error_type, body: unb64(&body) });
                        }
                    }
                    Ok(Wire::Req { seq, from, method, conn: id, body, scope }) => {
                        let method = http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET);
                        let scope = scope.as_ref().map(|(a, s)| (a.as_str(), s.as_str()));
                        let a = manage::handle(registry, &method, &id, Bytes::from(unb64(&body)), scope);
                        let rep = Wire::Rep { seq, status: a.status, error_type: a.error_type.map(str::to_string), body: b64(&a.body) };
                        let mut conn = cluster.connection().await?;
                        let payload = serde_json::to_string(&rep).unwrap_or_default();
                        redis::cmd("PUBLISH").arg(channel(&from)).arg(payload).query_async::<()>(&mut conn).await?;
                    }
                    Err(e) => log::debug!("websocket relay: bad message: {e}"),
                }
            }
        }
    }
}
