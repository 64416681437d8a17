//! End-to-end tests: the real `edgegate` binary against real origins on loopback.

mod common;

mod access;
mod authorizers;
mod aws_service;
mod caching;
mod cluster;
mod config_check;
mod edge;
mod integrations;
mod jwt;
mod lambda;
mod mapping;
mod observability;
mod openapi;
mod operators;
mod probes;
mod protocol_safety;
mod reload_upgrade;
mod routing;
mod seams;
mod serverless;
mod service;
mod sigv4;
mod streaming;
mod tls;
mod tracing;
mod transforms;
mod trust;
mod vpc_link;
mod websocket;
