//! edgegate: a self-hosted API gateway on Cloudflare Pingora.
//!
//! The configuration (`config`) is compiled into an immutable [`snapshot::Snapshot`] that
//! requests read through an atomic pointer (`reload` swaps it). [`proxy::Gateway`] is the only
//! `ProxyHttp` implementation; each phase calls the module that owns its concern:
//!
//! | phase | module |
//! |---|---|
//! | `request_filter` | `framing` (refuse ambiguous HTTP/1 framing) → `forwarded` (client identity) → `routing` (stage, base path, domain, route) → `policy` → `cors` preflight → `auth` → `api_keys` → `throttle` → max_body → `validation` → `transform` (request parts; a body the route decides on read whole, up to `max_body`, before the integration is contacted) → mock integrations (`proxy::answers`); gateway answers via `responses` |
//! | `proxy_upstream_filter` | Lambda and AWS service answers made by the gateway (`proxy::answers`) |
//! | cache phases | `cache` (key, client refresh, admin purges, storability) over `cache::store` (TinyUFO) |
//! | `request_body_filter` | `server.max_body` on streamed bodies (413); the body read ahead in place of Pingora's replay |
//! | `upstream_peer` | `upstream` (http integration target, timeouts, TLS) |
//! | `upstream_request_filter` | upstream path/query, Host, `x-request-id`, `forwarded::to_integration`, request transform headers |
//! | `upstream_response_filter` / `response_filter` | integration status and latency; response transform, CORS, `x-edgegate-cache`, `x-request-id` |
//! | `response_body_filter` | response body templates |
//! | `fail_to_connect` / `error_while_proxy` | retries (idempotent methods, `retries`) |
//! | `fail_to_proxy` | `responses`: 502 INTEGRATION_FAILURE, 504 INTEGRATION_TIMEOUT, 413, 400 |
//! | `logging` | `observability::{metrics, access_log}` |
//!
//! Outside the request path: `tls` (SNI certificates from the snapshot, mTLS identity),
//! `admin` (metrics, health, config, cache flushes), `openapi` (import), `server` (Pingora
//! services), `cli`.

pub mod admin;
pub mod admission;
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
pub mod server;
pub mod snapshot;
pub mod templates;
pub mod throttle;
pub mod tls;
pub mod transform;
pub mod validation;
pub mod websocket;
