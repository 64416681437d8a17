//! Metrics (Prometheus text on the admin listener), the JSON access log and OpenTelemetry traces.
pub mod access_log;
pub mod errors;
pub mod metrics;
pub mod trace;
