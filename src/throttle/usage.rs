//! Requests per API key per UTC day for each usage plan, and the report AWS's GetUsage gives
//! of them (`GET /usage/{plan}` on the admin listener).
//!
//! Every request a plan admits for a key is counted on its UTC day: on this node in
//! [`Usage`], or with `[cluster] redis` in the limit script's own round trip
//! (`{prefix}u:{plan}:{day}:{key}`, kept [`KEEP_DAYS`] days), so the report is cluster-wide.

use super::cluster::Cluster;
use super::quota::Quota;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Days of usage kept (AWS keeps 90).
pub const KEEP_DAYS: u64 = 90;

/// One plan's requests per key per day, on this node.
#[derive(Default)]
pub struct Usage {
    map: DashMap<Arc<str>, Mutex<VecDeque<(u64, u64)>>>,
}

impl Usage {
    /// Counts one admitted request of `key` on `day` (days since 1970-01-01, UTC). A known
    /// key is counted under the map's shared lock and its own lock, without allocating.
    pub fn count(&self, key: &Arc<str>, day: u64) {
        let entry = match self.map.get(key) {
            Some(e) => e,
            None => self.map.entry(key.clone()).or_insert_with(|| Mutex::new(VecDeque::with_capacity(4))).downgrade(),
        };
        let mut days = entry.lock().unwrap_or_else(|p| p.into_inner());
        match days.back_mut() {
            Some((d, n)) if *d == day => *n += 1,
            _ => {
                days.push_back((day, 1));
                while days.front().is_some_and(|(d, _)| *d + KEEP_DAYS < day) {
                    days.pop_front();
                }
            }
        }
    }

    /// The counts of `key` for each day of `from..=to`.
    pub fn days(&self, key: &str, from: u64, to: u64) -> Vec<u64> {
        let mut out = vec![0; (to + 1 - from) as usize];
        if let Some(e) = self.map.get(key) {
            for (d, n) in e.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                if (from..=to).contains(d) {
                    out[(d - from) as usize] = *n;
                }
            }
        }
        out
    }
}

/// The expiry (Unix seconds) of a day's count in Redis: [`KEEP_DAYS`] after the day ends.
pub fn expiry(day: u64) -> u64 {
    (day + 1 + KEEP_DAYS) * 86_400
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the usage store is unavailable: {0}")]
    Store(#[from] redis::RedisError),
}

/// GetUsage's items: per key, `[used, remaining]` for each day of `from..=to` (remaining is
/// the quota left at the end of that day, `None` without a quota).
pub async fn report(
    usage: &Usage,
    quota: Option<&Quota>,
    plan: &str,
    keys: &[Arc<str>],
    (from, to): (u64, u64),
    cluster: Option<&Cluster>,
) -> Result<Vec<(Arc<str>, Vec<(u64, Option<u64>)>)>, ReportError> {
    // a quota's remaining counts the requests since its period began
    let first = quota.map_or(from, |q| q.period.start_day(from));
    let mut items = Vec::with_capacity(keys.len());
    for key in keys {
        let counts = match cluster {
            Some(c) => c.usage_days(plan, key, first, to).await?,
            None => usage.days(key, first, to),
        };
        let mut days = Vec::with_capacity((to + 1 - from) as usize);
        let mut period = None;
        let mut used_in_period = 0;
        for (i, n) in counts.iter().enumerate() {
            let day = first + i as u64;
            let remaining = quota.map(|q| {
                let p = q.period.window(day * 86_400).0;
                if period != Some(p) {
                    period = Some(p);
                    used_in_period = 0;
                }
                used_in_period += n;
                q.limit.saturating_sub(used_in_period)
            });
            if day >= from {
                days.push((*n, remaining));
            }
        }
        items.push((key.clone(), days));
    }
    Ok(items)
}
