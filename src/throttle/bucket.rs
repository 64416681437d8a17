//! Token buckets (steady `rate` + `burst`) as GCRA: one atomic "theoretical arrival time"
//! per bucket, updated with a compare-and-swap. It admits exactly what a token bucket of
//! `burst` tokens refilled at `rate`/s admits, on every thread at once, without a lock;
//! and a bucket whose arrival time has passed is full, so idle buckets can be dropped
//! without changing any decision (that is how keyed maps stay bounded).
//!
//! (`pingora-limits`' `Rate` is a windowed estimator without a burst allowance; it is not
//! used for these limits.)

use dashmap::DashMap;
use once_cell::sync::Lazy;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

/// Nanoseconds since the process's limiter epoch (monotonic).
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// `t` on the limiter clock: a request's limits are taken at its arrival, read once.
pub fn ns_at(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH).as_nanos() as u64
}

/// What a bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Bucket size (the `ratelimit-limit` value).
    pub limit: u64,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// Seconds until a token is available (refused) or until the bucket is full (allowed).
    pub reset_secs: u64,
}

#[derive(Debug)]
pub struct Bucket {
    tat: AtomicU64,
    /// Nanoseconds per token.
    interval: u64,
    /// `burst` tokens' worth of nanoseconds.
    capacity: u64,
    burst: u64,
}

impl Bucket {
    pub fn new(rate: f64, burst: u64) -> Bucket {
        let interval = (1e9 / rate.max(1e-9)).max(1.0) as u64;
        let burst = burst.max(1);
        Bucket { tat: AtomicU64::new(0), interval, capacity: interval.saturating_mul(burst), burst }
    }

    pub fn same_settings(&self, rate: f64, burst: u64) -> bool {
        let other = Bucket::new(rate, burst);
        other.interval == self.interval && other.burst == self.burst
    }

    /// Takes one token if there is one.
    pub fn take(&self, now: u64) -> Decision {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            let new_tat = start + self.interval;
            if new_tat - now > self.capacity {
                let wait = tat.saturating_sub(now + self.capacity - self.interval);
                return Decision { allowed: false, limit: self.burst, remaining: 0, reset_secs: secs_ceil(wait) };
            }
            match self.tat.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let used = new_tat - now;
                    let remaining = (self.capacity - used) / self.interval;
                    return Decision { allowed: true, limit: self.burst, remaining, reset_secs: secs_ceil(used) };
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Full again: nothing to remember.
    pub fn is_idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Acquire) <= now
    }
}

fn secs_ceil(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// One bucket per key (API key id), created on first use, dropped when full again.
#[derive(Debug)]
pub struct KeyedBuckets {
    rate: f64,
    burst: u64,
    map: DashMap<Arc<str>, Bucket>,
}

impl KeyedBuckets {
    pub fn new(rate: f64, burst: u64) -> KeyedBuckets {
        KeyedBuckets { rate, burst, map: DashMap::new() }
    }

    pub fn same_settings(&self, rate: f64, burst: u64) -> bool {
        self.rate == rate && self.burst == burst
    }

    pub fn take(&self, key: &Arc<str>, now: u64) -> Decision {
        if let Some(b) = self.map.get(key) {
            return b.take(now);
        }
        self.map.entry(key.clone()).or_insert_with(|| Bucket::new(self.rate, self.burst)).take(now)
    }

    /// Drops full (idle) buckets; returns how many remain.
    pub fn sweep(&self, now: u64) -> usize {
        self.map.retain(|_, b| !b.is_idle(now));
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let b = Bucket::new(10.0, 5);
        let t0 = 1_000_000_000;
        let allowed = (0..20).filter(|_| b.take(t0).allowed).count();
        assert_eq!(allowed, 5, "a burst of 5 admits exactly 5");
        let d = b.take(t0);
        assert!(!d.allowed && d.reset_secs == 1);
        // 100 ms later one token has come back (rate 10/s)
        assert!(b.take(t0 + 100_000_000).allowed);
        assert!(!b.take(t0 + 100_000_000).allowed);
        // after 500 ms more the bucket is full again
        assert!(b.is_idle(t0 + 700_000_000));
        let d = b.take(t0 + 700_000_000);
        assert_eq!((d.allowed, d.remaining, d.limit), (true, 4, 5));
    }

    #[test]
    fn exact_under_threads() {
        let b = Arc::new(Bucket::new(0.001, 1000));
        let now = now_ns() + 1;
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..500).filter(|_| b.take(now).allowed).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn keyed_buckets_are_independent_and_swept() {
        let k = KeyedBuckets::new(1.0, 2);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let t = 5_000_000_000;
        assert!(k.take(&a, t).allowed && k.take(&a, t).allowed && !k.take(&a, t).allowed);
        assert!(k.take(&b, t).allowed);
        assert_eq!(k.sweep(t), 2);
        assert_eq!(k.sweep(t + 3_000_000_000), 0, "full buckets are forgotten");
        for i in 0..100_000 {
            k.take(&Arc::from(format!("key-{i}")), t);
        }
        assert_eq!(k.sweep(t + 3_000_000_000), 0, "memory stays bounded by active keys");
    }
}
