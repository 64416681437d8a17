//! A bounded in-memory response store for pingora-cache, one per API stage.
//!
//! Entries live in a TinyUFO map (pingora's admission + eviction policy: a frequency sketch
//! decides what is worth keeping, so one scan of cold URLs cannot flush the hot set), weighed
//! in KiB so `capacity` bounds memory. Bodies are kept as one `Bytes`: a hit is an `Arc` clone
//! and a slice, no copy. The map sits behind an `ArcSwap` so a stage flush (admin
//! `DELETE /cache/{api}/{stage}`) or a capacity change swaps in an empty map and frees the old
//! one as soon as in-flight readers let go.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora::cache::storage::{HandleHit, HandleMiss, MissFinishType, PurgeOutcome, PurgeTarget, PurgeType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, HitHandler, MissHandler, Storage};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tinyufo::TinyUfo;

/// Header bytes counted per entry on top of the body (a typical serialised head).
const HEAD_ESTIMATE: usize = 512;
/// Bound on the per-path purge records; past it a per-key purge flushes the whole stage.
const MAX_PURGES: usize = 10_000;

/// One stored response.
struct Entry {
    /// The full 128-bit key: TinyUFO indexes by a 64-bit hash, so this rules out collisions.
    key: HashBinary,
    header: ResponseHeader,
    created: SystemTime,
    fresh_until: SystemTime,
    variance: Option<HashBinary>,
    body: Bytes,
}

impl Entry {
    fn meta(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(self.fresh_until, self.created, 0, 0, self.header.clone());
        if let Some(v) = self.variance {
            meta.set_variance(v);
        }
        meta
    }
}

type Map = TinyUfo<u128, Arc<Entry>>;

/// The response store of one API stage.
pub struct Store {
    map: ArcSwap<Map>,
    capacity: AtomicU64,
    /// Per-path purge times (admin `?key=`): entries created before are refetched.
    /// Path -> purge time; sharded, since every hit reads it once any path was purged.
    purges: dashmap::DashMap<String, SystemTime>,
    has_purges: AtomicBool,
}

fn new_map(capacity: u64) -> Map {
    let kib = (capacity / 1024).max(1) as usize;
    TinyUfo::new(kib, (kib / 16).max(16))
}

fn id(key: &HashBinary) -> u128 {
    u128::from_le_bytes(*key)
}

/// How long waiters trust a fill in progress: the integration timeout ceiling, plus a margin.
const LOCK_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// Every store by name, for the life of the process (`runtime::Runtime::caches`), with
/// the pieces pingora-cache needs as `&'static`: the cache lock, which makes a stampede of
/// misses for one key wait for a single integration request, and the predictor, which
/// remembers keys whose answers were not storable so their requests skip the lock.
pub struct Stores {
    by_name: Mutex<HashMap<String, &'static Store>>,
    /// Capacity changes of the config being compiled.
    resizes: Mutex<Vec<(&'static Store, u64)>>,
    pub lock: &'static pingora::cache::lock::CacheKeyLockImpl,
    pub predictor: &'static pingora::cache::predictor::Predictor<16>,
}

impl Default for Stores {
    fn default() -> Self {
        Stores {
            by_name: Default::default(),
            resizes: Default::default(),
            // one runtime per process: these live as long as it
            lock: Box::leak(pingora::cache::lock::CacheLock::new_boxed(LOCK_AGE)),
            predictor: Box::leak(Box::new(pingora::cache::predictor::Predictor::new(4096, None))),
        }
    }
}

impl Stores {
    /// How long a request waits on the cache lock for another's fill.
    pub fn overrides(&self) -> pingora::cache::CacheOptionOverrides {
        let mut o = pingora::cache::CacheOptionOverrides::default();
        o.wait_timeout = Some(LOCK_AGE);
        o
    }

    /// The store of `api`/`stage`, created on first use and kept across reloads (so cached
    /// entries survive a reload). A changed capacity starts an empty map of the new size.
    pub fn for_stage(&self, api: &str, stage: &str, capacity: u64) -> &'static Store {
        let mut stores = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("{api}/{stage}");
        if let Some(s) = stores.get(&name) {
            if s.capacity.load(Ordering::Relaxed) != capacity {
                // applied by `commit_capacity_changes` once the whole config compiled
                self.resizes.lock().unwrap_or_else(|e| e.into_inner()).push((s, capacity));
            }
            return s;
        }
        // One store per API stage name for the life of the process: pingora-cache needs
        // `&'static` storage, and flushes and capacity changes reuse it.
        let s: &'static Store = Box::leak(Box::new(Store::new(capacity)));
        stores.insert(name, s);
        s
    }

    /// Applies the capacity changes of the config that just compiled: each changed store is
    /// flushed under its new capacity.
    pub fn commit_capacity_changes(&self) {
        for (s, capacity) in std::mem::take(&mut *self.resizes.lock().unwrap_or_else(|e| e.into_inner())) {
            if s.capacity.swap(capacity, Ordering::Relaxed) != capacity {
                s.flush();
            }
        }
    }

    /// Forgets the capacity changes of a config that failed to compile.
    pub fn discard_capacity_changes(&self) {
        self.resizes.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Store {
    fn new(capacity: u64) -> Store {
        Store {
            map: ArcSwap::from_pointee(new_map(capacity)),
            capacity: AtomicU64::new(capacity),
            purges: dashmap::DashMap::new(),
            has_purges: AtomicBool::new(false),
        }
    }

    /// Drops every entry of the stage.
    pub fn flush(&self) {
        self.map.store(Arc::new(new_map(self.capacity.load(Ordering::Relaxed))));
        self.purges.clear();
        self.has_purges.store(false, Ordering::Release);
    }

    /// Marks every entry for `path` (all methods, hosts and key parameters) as stale now.
    pub fn purge_path(&self, path: &str) {
        if self.purges.len() >= MAX_PURGES && !self.purges.contains_key(path) {
            self.flush();
            return;
        }
        self.purges.insert(path.to_string(), SystemTime::now());
        self.has_purges.store(true, Ordering::Release);
    }

    /// Whether an entry for `path` created at `created` was purged since.
    pub fn purged(&self, path: &str, created: SystemTime) -> bool {
        if !self.has_purges.load(Ordering::Acquire) {
            return false;
        }
        self.purges.get(path).is_some_and(|t| created <= *t)
    }

    /// Largest body one entry may have: a single response cannot take over the store.
    pub fn max_entry(&self) -> usize {
        let c = self.capacity.load(Ordering::Relaxed) as usize;
        (c / 8).min(u16::MAX as usize * 1024 - HEAD_ESTIMATE)
    }

    fn get(&self, key: &HashBinary) -> Option<Arc<Entry>> {
        self.map.load().get(&id(key)).filter(|e| e.key == *key)
    }
}

/// A stored head, with room for the fields every hit adds (Age, `x-request-id`,
/// `x-edgegate-cache`, Via): each hit's copy keeps the index room, so adding them does not
/// rehash its maps (a copy's list of fields is exactly full, and still grows once).
fn with_room(mut header: ResponseHeader) -> ResponseHeader {
    header.reserve(4);
    header
}

#[async_trait]
impl Storage for Store {
    async fn lookup(&'static self, key: &CacheKey, _trace: &SpanHandle) -> Result<Option<(CacheMeta, HitHandler)>> {
        Ok(self.get(&key.combined_bin()).map(|e| {
            let end = e.body.len();
            let hit: HitHandler = Box::new(Hit { entry: e.clone(), start: 0, end, done: false });
            (e.meta(), hit)
        }))
    }

    async fn get_miss_handler(&'static self, key: &CacheKey, meta: &CacheMeta, _: &SpanHandle) -> Result<MissHandler> {
        Ok(Box::new(Miss {
            map: self.map.load_full(),
            key: key.combined_bin(),
            header: with_room(meta.response_header_copy()),
            created: meta.created(),
            fresh_until: meta.fresh_until(),
            variance: meta.variance(),
            body: BytesMut::new(),
        }))
    }

    async fn purge(&'static self, target: PurgeTarget<'_>, _: PurgeType, _: &SpanHandle) -> Result<PurgeOutcome> {
        let key: &CompactCacheKey = target.key();
        let bin = key.combined_bin();
        if self.get(&bin).is_some() {
            self.map.load().remove(&id(&bin));
            Ok(PurgeOutcome::Purged(None))
        } else {
            Ok(PurgeOutcome::NotFound)
        }
    }

    async fn update_meta(&'static self, key: &CacheKey, meta: &CacheMeta, _: &SpanHandle) -> Result<bool> {
        let bin = key.combined_bin();
        let Some(old) = self.get(&bin) else {
            return Ok(false);
        };
        let entry = Entry {
            key: bin,
            header: with_room(meta.response_header_copy()),
            created: meta.created(),
            fresh_until: meta.fresh_until(),
            variance: meta.variance(),
            body: old.body.clone(),
        };
        let weight = weight(entry.body.len());
        self.map.load().force_put(id(&bin), Arc::new(entry), weight);
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

fn weight(body: usize) -> u16 {
    (body + HEAD_ESTIMATE).div_ceil(1024).min(u16::MAX as usize) as u16
}

struct Hit {
    entry: Arc<Entry>,
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done || self.start >= self.end {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.entry.body.slice(self.start..self.end)))
    }

    async fn finish(self: Box<Self>, _: &'static (dyn Storage + Sync), _: &CacheKey, _: &SpanHandle) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.entry.body.len();
        if start >= len {
            return Error::e_explain(ErrorType::InternalError, format!("seek start {start} beyond body of {len}"));
        }
        self.start = start;
        self.end = end.map_or(len, |e| e.min(len));
        self.done = false;
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Collects a response body; the entry becomes visible only when it is complete (readers
/// that arrive meanwhile wait on the cache lock, then find it).
struct Miss {
    map: Arc<Map>,
    key: HashBinary,
    header: ResponseHeader,
    created: SystemTime,
    fresh_until: SystemTime,
    variance: Option<HashBinary>,
    body: BytesMut,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let Miss { map, key, header, created, fresh_until, variance, body } = *self;
        let size = body.len();
        let entry = Entry { key, header, created, fresh_until, variance, body: body.freeze() };
        map.put(id(&key), Arc::new(entry), weight(size));
        Ok(MissFinishType::Created(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ttl: u64) -> CacheMeta {
        let now = SystemTime::now();
        let h = ResponseHeader::build(200, None).expect("header");
        CacheMeta::new(now + std::time::Duration::from_secs(ttl), now, 0, 0, h)
    }

    #[tokio::test]
    async fn stores_reads_and_flushes() {
        let store = Stores::default().for_stage("unit", "a", 1 << 20);
        let key = CacheKey::new("k1", "");
        let span = pingora::cache::trace::Span::inactive().handle();
        assert!(store.lookup(&key, &span).await.expect("lookup").is_none());
        let mut miss = store.get_miss_handler(&key, &meta(60), &span).await.expect("miss");
        miss.write_body(Bytes::from_static(b"hello "), false).await.expect("write");
        miss.write_body(Bytes::from_static(b"world"), true).await.expect("write");
        miss.finish().await.expect("finish");
        let (m, mut hit) = store.lookup(&key, &span).await.expect("lookup").expect("hit");
        assert!(m.is_fresh(SystemTime::now()));
        assert_eq!(hit.read_body().await.expect("body").as_deref(), Some(&b"hello world"[..]));
        assert!(hit.read_body().await.expect("eof").is_none());
        hit.seek(6, Some(100)).expect("seek");
        assert_eq!(hit.read_body().await.expect("body").as_deref(), Some(&b"world"[..]));
        assert!(store.lookup(&CacheKey::new("k2", ""), &span).await.expect("lookup").is_none());
        store.flush();
        assert!(store.lookup(&key, &span).await.expect("lookup").is_none());
    }

    #[tokio::test]
    async fn capacity_bounds_the_store() {
        let store = Stores::default().for_stage("unit", "b", 64 * 1024);
        let span = pingora::cache::trace::Span::inactive().handle();
        for i in 0..200 {
            let key = CacheKey::new(format!("k{i}"), "");
            let mut miss = store.get_miss_handler(&key, &meta(60), &span).await.expect("miss");
            miss.write_body(Bytes::from(vec![b'x'; 2048]), true).await.expect("write");
            miss.finish().await.expect("finish");
        }
        let mut kept = 0;
        for i in 0..200 {
            if store.lookup(&CacheKey::new(format!("k{i}"), ""), &span).await.expect("lookup").is_some() {
                kept += 1;
            }
        }
        // 64 KiB at 3 KiB an entry: about 21 fit
        assert!(kept > 0 && kept <= 22, "kept {kept}");
    }

    #[test]
    fn purges_are_per_path_and_in_time() {
        let store = Stores::default().for_stage("unit", "c", 1 << 20);
        let before = SystemTime::now() - std::time::Duration::from_secs(1);
        assert!(!store.purged("/a", before));
        store.purge_path("/a");
        assert!(store.purged("/a", before));
        assert!(!store.purged("/b", before));
        assert!(!store.purged("/a", SystemTime::now() + std::time::Duration::from_secs(1)));
    }
}
