//! AWS protocols shared by authorizers and integrations.
pub mod credentials;
pub mod lambda;
pub mod service;
pub mod sigv4;
