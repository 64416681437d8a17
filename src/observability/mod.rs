//! Metrics (Prometheus text on the admin listener) and the JSON access log.
pub mod access_log;
pub mod errors;
pub mod metrics;
