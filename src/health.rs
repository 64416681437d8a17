//! The health checker: one background service that runs every VPC link's (and the edge's
//! origin group's) health checks on their intervals, on whatever snapshot is current, and
//! forgets links and targets a reload removed.

use crate::integrations::vpc_link;
use crate::snapshot::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Runs every link's health check on its interval, on whatever snapshot is current.
pub struct HealthChecker {
    pub shared: Shared,
    /// The runtime's link health: what checks found, kept across reloads.
    pub health: std::sync::Arc<vpc_link::Health>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snap = self.shared.load_full();
            for link in snap.links.values() {
                let Some(c) = &link.check else {
                    vpc_link::metrics_unknown(link);
                    continue;
                };
                let due = last.get(&link.name).is_none_or(|t| t.elapsed() >= c.interval);
                if due {
                    last.insert(link.name.clone(), Instant::now());
                    link.run_checks().await;
                }
            }
            // forget links and targets the configuration no longer has
            last.retain(|n, _| snap.links.contains_key(n));
            self.health.retain(|l, t| snap.links.get(l).is_some_and(|x| x.targets.iter().any(|x| x == t)));
        }
    }
}
