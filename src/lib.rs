//! edgegate: a self-hosted API gateway on Cloudflare Pingora.
//!
//! The configuration (`config`) is compiled into an immutable [`snapshot::Snapshot`] that
//! requests read through an atomic pointer (`reload` swaps it); the state that outlives a
//! snapshot is the [`runtime::Runtime`]'s. [`proxy::Gateway`] is the only `ProxyHttp`
//! implementation: each phase is short and calls one module. `docs/architecture.md`
//! follows a request through the phases and maps the modules.

pub mod admin;
pub mod admission;
pub mod alloc;
pub mod api_keys;
pub mod auth;
pub mod aws;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cors;
pub mod forwarded;
pub mod framing;
pub mod head_deadline;
pub mod health;
pub mod integrations;
pub mod lifecycle;
pub mod observability;
pub mod openapi;
pub mod outbound;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod request;
pub mod responses;
pub mod routing;
pub mod runtime;
pub mod scan;
pub mod server;
pub mod snapshot;
pub mod templates;
pub mod throttle;
pub mod tls;
pub mod transform;
pub mod validation;
pub mod vtl;
pub mod websocket;
