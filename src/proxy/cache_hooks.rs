//! The process-wide pieces pingora-cache needs as `&'static`: the cache lock, which makes a
//! stampede of misses for one key wait for a single integration request, and the predictor,
//! which remembers keys whose answers were not storable so their requests skip the lock.

use once_cell::sync::Lazy;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::predictor::Predictor;
use pingora::cache::{CacheOptionOverrides, CachePhase};
use std::time::Duration;

/// How long waiters trust a fill in progress: the integration timeout ceiling, plus a margin.
const LOCK_AGE: Duration = Duration::from_secs(30);

pub static PREDICTOR: Lazy<Predictor<16>> = Lazy::new(|| Predictor::new(4096, None));
static LOCK: Lazy<Box<CacheKeyLockImpl>> = Lazy::new(|| CacheLock::new_boxed(LOCK_AGE));

pub fn lock() -> &'static CacheKeyLockImpl {
    LOCK.as_ref()
}

pub fn overrides() -> CacheOptionOverrides {
    let mut o = CacheOptionOverrides::default();
    o.wait_timeout = Some(LOCK_AGE);
    o
}

/// The `x-edgegate-cache` / metric word for a cache phase.
pub fn result(phase: CachePhase) -> &'static str {
    match phase {
        CachePhase::Hit | CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "hit",
        CachePhase::Stale | CachePhase::StaleUpdating => "stale",
        CachePhase::Expired => "expired",
        CachePhase::Miss => "miss",
        _ => "bypass",
    }
}
