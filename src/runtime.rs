//! The state that outlives a configuration: everything a reload must keep, owned by one
//! value. `main` creates the [`Runtime`] once, before the first compile; every compile
//! (`config::load`) takes its limiters and cache stores from it and hands link health to
//! the VPC links it builds; the proxy, the admin API, the health checker, the WebSocket
//! relay and the reloader hold it. A snapshot is the configuration, compiled and
//! immutable; the runtime is what happened while it served, and survives the swap.
//!
//! What is not here does not survive a reload by design: JWKS keys and Lambda-authorizer
//! decision caches belong to their compiled authorizer and start afresh with it.
//!
//! The `static`s left in the code are the process's, not a configuration's: lifecycle
//! flags (`lifecycle`: ready, draining, in-flight requests, the stop signal), the metrics
//! registry, the access-log writer, the outbound HTTP client's connection pool, upstream
//! error summaries, this node's id and its pending relay replies (`websocket::cluster`).

use std::sync::{Arc, Mutex, MutexGuard};

pub struct Runtime {
    /// Token buckets and quotas by name, reused by a compile when their settings are
    /// unchanged (`throttle::Registry`).
    pub limiters: crate::throttle::Registry,
    /// Response-cache stores by API stage (and the edge cache), kept so cached answers
    /// survive a reload (`cache::Stores`).
    pub caches: crate::cache::Stores,
    /// Health of every VPC link target, as the health checker last found it.
    pub link_health: Arc<crate::integrations::vpc_link::Health>,
    /// The WebSocket connections this node serves.
    pub connections: Arc<crate::websocket::Registry>,
    /// The OpenTelemetry exporter of `[tracing]`, kept across reloads that leave it unchanged.
    pub tracing: Arc<crate::observability::trace::Tracing>,
    /// One compile at a time: a compile stages limiter and cache changes, then commits or
    /// discards them (`config::load`).
    compiling: Mutex<()>,
}

impl Runtime {
    pub fn new() -> Arc<Runtime> {
        Arc::new(Runtime {
            limiters: Default::default(),
            caches: Default::default(),
            link_health: Default::default(),
            connections: Default::default(),
            tracing: Default::default(),
            compiling: Mutex::new(()),
        })
    }

    /// Held for the length of one compile.
    pub fn compile_lock(&self) -> MutexGuard<'_, ()> {
        self.compiling.lock().unwrap_or_else(|e| e.into_inner())
    }
}
