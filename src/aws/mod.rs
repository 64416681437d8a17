//! AWS protocols shared by authorizers and integrations.
pub mod sigv4;
