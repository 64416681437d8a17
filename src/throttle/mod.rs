//! Throttling and quotas: token buckets at every level (account, stage, route, usage plan
//! per key, usage plan per key per route) and per-key quotas. The state lives in
//! `Registry`, outside the config snapshot, so a reload that keeps a limit keeps its state.

pub mod admit;
pub mod bucket;
pub mod cluster;
pub mod quota;
pub mod usage;

use bucket::{Bucket, KeyedBuckets};
use dashmap::DashMap;
use quota::{Period, Quota};
use std::collections::HashMap;
use std::sync::Arc;

/// A usage plan, with its stages and routes by index.
pub struct Plan {
    pub name: String,
    pub throttle_spec: Option<self::cluster::BucketSpec>,
    /// (api, stage, route) -> (Redis name, settings) of `route_throttle`.
    pub route_specs: HashMap<(usize, usize, usize), (String, self::cluster::BucketSpec)>,
    pub stages: std::collections::HashSet<(usize, usize)>,
    pub throttle: Option<Arc<self::bucket::KeyedBuckets>>,
    pub route_throttle: HashMap<(usize, usize, usize), Arc<self::bucket::KeyedBuckets>>,
    pub quota: Option<Arc<self::quota::Quota>>,
    /// Requests per key per day (`GET /usage/{plan}`), kept across reloads.
    pub usage: Arc<self::usage::Usage>,
}

/// Limiter state by name, reused across reloads when the settings are unchanged.
#[derive(Default)]
pub struct Registry {
    buckets: DashMap<String, Arc<Bucket>>,
    keyed: DashMap<String, Arc<KeyedBuckets>>,
    quotas: DashMap<String, Arc<Quota>>,
    usage: DashMap<String, Arc<usage::Usage>>,
    /// The Redis client (and its connection) outlives reloads that keep the URL.
    cluster: std::sync::Mutex<Option<Arc<cluster::Cluster>>>,
    /// New or changed limiters of the config being compiled: registered by `commit` only
    /// once the whole config compiled, so a failed reload leaves the running state alone.
    pending: std::sync::Mutex<Vec<Pending>>,
}

enum Pending {
    Bucket(String, Arc<Bucket>),
    Keyed(String, Arc<KeyedBuckets>),
    Quota(String, Arc<Quota>),
    Usage(String, Arc<usage::Usage>),
    Cluster(Arc<cluster::Cluster>),
}

impl Registry {
    pub fn bucket(&self, name: &str, rate: f64, burst: u64) -> Arc<Bucket> {
        if let Some(b) = self.buckets.get(name) {
            if b.same_settings(rate, burst) {
                return b.clone();
            }
        }
        let b = Arc::new(Bucket::new(rate, burst));
        self.stage(Pending::Bucket(name.to_string(), b.clone()));
        b
    }

    pub fn keyed(&self, name: &str, rate: f64, burst: u64) -> Arc<KeyedBuckets> {
        if let Some(b) = self.keyed.get(name) {
            if b.same_settings(rate, burst) {
                return b.clone();
            }
        }
        let b = Arc::new(KeyedBuckets::new(rate, burst));
        self.stage(Pending::Keyed(name.to_string(), b.clone()));
        b
    }

    pub fn quota(&self, name: &str, limit: u64, period: Period, offset: u64) -> Arc<Quota> {
        if let Some(q) = self.quotas.get(name) {
            if q.same_settings(limit, period, offset) {
                return q.clone();
            }
        }
        let q = Arc::new(Quota::new(limit, period, offset));
        self.stage(Pending::Quota(name.to_string(), q.clone()));
        q
    }

    /// A plan's usage counters: the same for as long as a plan of that name is configured.
    pub fn usage(&self, plan: &str) -> Arc<usage::Usage> {
        if let Some(u) = self.usage.get(plan) {
            return u.clone();
        }
        let u = Arc::new(usage::Usage::default());
        self.stage(Pending::Usage(plan.to_string(), u.clone()));
        u
    }

    pub fn cluster(&self, url: &str) -> Result<Arc<cluster::Cluster>, cluster::ClusterError> {
        let guard = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = guard.as_ref().filter(|c| c.url == url) {
            return Ok(c.clone());
        }
        let c = Arc::new(cluster::Cluster::new(url)?);
        drop(guard);
        self.stage(Pending::Cluster(c.clone()));
        Ok(c)
    }

    fn stage(&self, p: Pending) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }

    /// Registers the limiters of the config that just compiled (their state then survives
    /// the next reload that keeps their settings).
    pub fn commit(&self) {
        for p in std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner())) {
            match p {
                Pending::Bucket(n, b) => {
                    self.buckets.insert(n, b);
                }
                Pending::Keyed(n, b) => {
                    self.keyed.insert(n, b);
                }
                Pending::Quota(n, q) => {
                    self.quotas.insert(n, q);
                }
                Pending::Usage(n, u) => {
                    self.usage.insert(n, u);
                }
                Pending::Cluster(c) => *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) = Some(c),
            }
        }
    }

    /// Forgets the limiters of a config that failed to compile.
    pub fn discard(&self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Forgets full per-key buckets (run periodically).
    pub fn sweep(&self) -> usize {
        let now = bucket::now_ns();
        self.keyed.iter().map(|k| k.sweep(now)).sum()
    }
}
