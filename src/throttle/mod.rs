//! Throttling and quotas: token buckets at every level (account, stage, route, usage plan
//! per key, usage plan per key per route) and per-key quotas. The state lives in
//! `Registry`, outside the config snapshot, so a reload that keeps a limit keeps its state.

pub mod bucket;
pub mod cluster;
pub mod quota;

use bucket::{Bucket, KeyedBuckets};
use dashmap::DashMap;
use once_cell::sync::Lazy;
use quota::{Period, Quota};
use std::sync::Arc;

/// Limiter state by name, reused across reloads when the settings are unchanged.
#[derive(Default)]
pub struct Registry {
    buckets: DashMap<String, Arc<Bucket>>,
    keyed: DashMap<String, Arc<KeyedBuckets>>,
    quotas: DashMap<String, Arc<Quota>>,
    /// The Redis client (and its connection) outlives reloads that keep the URL.
    cluster: std::sync::Mutex<Option<Arc<cluster::Cluster>>>,
}

pub static REGISTRY: Lazy<Registry> = Lazy::new(Registry::default);

impl Registry {
    pub fn bucket(&self, name: &str, rate: f64, burst: u64) -> Arc<Bucket> {
        if let Some(b) = self.buckets.get(name) {
            if b.same_settings(rate, burst) {
                return b.clone();
            }
        }
        let b = Arc::new(Bucket::new(rate, burst));
        self.buckets.insert(name.to_string(), b.clone());
        b
    }

    pub fn keyed(&self, name: &str, rate: f64, burst: u64) -> Arc<KeyedBuckets> {
        if let Some(b) = self.keyed.get(name) {
            if b.same_settings(rate, burst) {
                return b.clone();
            }
        }
        let b = Arc::new(KeyedBuckets::new(rate, burst));
        self.keyed.insert(name.to_string(), b.clone());
        b
    }

    pub fn quota(&self, name: &str, limit: u64, period: Period, offset: u64) -> Arc<Quota> {
        if let Some(q) = self.quotas.get(name) {
            if q.same_settings(limit, period, offset) {
                return q.clone();
            }
        }
        let q = Arc::new(Quota::new(limit, period, offset));
        self.quotas.insert(name.to_string(), q.clone());
        q
    }

    pub fn cluster(&self, url: &str) -> Result<Arc<cluster::Cluster>, String> {
        let mut guard = self.cluster.lock().map_err(|_| "cluster registry poisoned".to_string())?;
        if let Some(c) = guard.as_ref().filter(|c| c.url == url) {
            return Ok(c.clone());
        }
        let c = Arc::new(cluster::Cluster::new(url)?);
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Forgets full per-key buckets (run periodically).
    pub fn sweep(&self) -> usize {
        let now = bucket::now_ns();
        self.keyed.iter().map(|k| k.sweep(now)).sum()
    }
}
