//! Process assembly: Pingora `ServerConf` from `[server]`, the proxy services (public and
//! private listeners, plain and TLS), the admin service and the background reloader.

use crate::admin::Admin;
use crate::head_deadline::HeadDeadline;
use crate::lifecycle::{self, handover, handover::OwnSockets};
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::runtime::Runtime;
use crate::snapshot::Shared;
use crate::tls;
use openssl::ssl::SslVersion;
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Sockets(#[from] handover::HandoverError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

pub struct RunArgs {
    pub config: PathBuf,
    /// `-u`: take the listening sockets over from the running instance. (`-d` is handled
    /// before anything else, by `lifecycle::daemon`.)
    pub upgrade: bool,
}

fn threads(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }
}

/// A proxy service for `gw` whose connections get the request-head deadline
/// (`head_deadline`).
fn proxy_service(
    conf: &std::sync::Arc<ServerConf>,
    name: &str,
    gw: Gateway,
    options: &HttpServerOptions,
    header_timeout: std::time::Duration,
) -> Service<HeadDeadline<pingora::proxy::HttpProxy<Gateway>>> {
    let mut proxy = pingora::proxy::http_proxy(conf, gw);
    proxy.server_options = Some(options.clone());
    Service::new(name.to_string(), HeadDeadline { inner: std::sync::Arc::new(proxy), timeout: header_timeout })
}

/// A plain connection's reads go straight into the HTTP layer's own buffers: Pingora's
/// default 64 KiB read buffer in front of them costs a copy of every byte read and, held by
/// each open connection, 64 KiB of memory for an idle keep-alive or WebSocket client.
const PLAIN_BUFFERS: L4BufferSettings = L4BufferSettings { read: Some(0), write: None };
/// A TLS connection keeps a read buffer of one TLS record, so OpenSSL's small reads (a record
/// header, then its body) cost one system call.
const TLS_BUFFERS: L4BufferSettings = L4BufferSettings { read: Some(16 * 1024 + 256), write: None };

/// Every address this process listens on, as the config spells it.
fn listen_addresses(l: &crate::snapshot::Listeners) -> Vec<String> {
    l.listen
        .iter()
        .chain(&l.tls_listen)
        .chain(&l.private_listen)
        .chain(std::iter::once(&l.admin_listen))
        .cloned()
        .collect()
}

/// Builds the Pingora server for the loaded snapshot and runs it; never returns.
///
/// The listening sockets are bound here, before Pingora starts (or received from the running
/// instance with `-u`), so that a taken address fails fast with a clear message and the
/// sockets can be handed over without Pingora's one-second polls (`lifecycle::handover`).
/// `runtime` owns the state that outlives reloads (`runtime::Runtime`): the snapshot in
/// `shared` was compiled with it, and every service here holds it or the part it needs.
pub fn run(shared: Shared, runtime: Arc<Runtime>, args: RunArgs) -> Result<std::convert::Infallible, StartError> {
    let l = shared.load().listeners.clone();
    let addrs = listen_addresses(&l);
    let sockets =
        if args.upgrade { handover::receive(&l.upgrade_sock, &l.pid_file)? } else { handover::Sockets::empty() };
    // the public addresses: one socket per proxy core
    let per_core: Vec<String> = l.listen.iter().chain(&l.tls_listen).cloned().collect();
    let cores = threads(l.threads);
    handover::close_unclaimed(&sockets, &handover::keys(&addrs, &per_core, cores));
    handover::bind_missing(&sockets, &addrs, &per_core)?;
    handover::bind_per_core(&sockets, &per_core, cores);
    let sockets = std::sync::Arc::new(sockets);
    let conf = ServerConf {
        threads: cores,
        pid_file: l.pid_file.clone(),
        upgrade_sock: l.upgrade_sock.clone(),
        grace_period_seconds: Some(l.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        max_retries: 6,
        // each proxy service is one thread (below): a current-thread runtime, not a
        // one-worker work-stealing pool, runs it with less bookkeeping per task poll
        work_stealing: false,
        ..ServerConf::default()
    };
    // The hand-over is ours (above), so Pingora never runs its own upgrade.
    let opt = Opt { upgrade: false, daemon: false, nocapture: false, test: false, conf: None };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);

    let mut options = HttpServerOptions::default();
    options.h2c = true;
    let listener_tls = tls::ListenerTls {
        profile: l.tls_profile.clone(),
        min_version: if l.tls_min_version == "1.3" { SslVersion::TLS1_3 } else { SslVersion::TLS1_2 },
        client_auth: l.tls_client_auth,
        ca_file: l.tls_client_ca.as_ref().map(|p| p.display().to_string()),
    };
    // One single-threaded proxy service per core (`server.threads`), each on its own copy of
    // the listening sockets and with its own upstream connection pool: a connection, its
    // requests and their upstream connections stay on one thread (as nginx's workers do).
    // The cost: idle upstream connections are pooled per core. Each core accepts on its own
    // socket of the address's SO_REUSEPORT group (`handover::bind_per_core`): the kernel
    // spreads new connections over the cores.
    let mut listeners = Vec::with_capacity(cores + 2);
    for core in 0..cores {
        let gw = Gateway { shared: shared.clone(), runtime: runtime.clone(), private: false };
        let name = format!("edgegate-{core}");
        let mut public = proxy_service(&server.configuration, &name, gw, &options, l.header_timeout);
        public.threads = Some(1);
        for a in &l.listen {
            public.add_listener(ListenerConfig::tcp(a).l4_buffer(PLAIN_BUFFERS));
        }
        for a in &l.tls_listen {
            let settings = tls::settings(shared.clone(), &listener_tls)?;
            public.add_listener(ListenerConfig::tcp(a).tls(settings).l4_buffer(TLS_BUFFERS));
        }
        // The reloader starts last (it depends on every listener service), so /readyz turns
        // 200 only once the listeners are up.
        listeners.push(server.add_service(OwnSockets { inner: public, fds: sockets.copies_for(core, &per_core)? }));
    }
    if !l.private_listen.is_empty() {
        let gw = Gateway { shared: shared.clone(), runtime: runtime.clone(), private: true };
        let mut private = proxy_service(&server.configuration, "edgegate-private", gw, &options, l.header_timeout);
        for a in &l.private_listen {
            private.add_listener(ListenerConfig::tcp(a).l4_buffer(PLAIN_BUFFERS));
        }
        listeners.push(server.add_service(OwnSockets { inner: private, fds: sockets.copies()? }));
    }
    let mut admin =
        Service::new("edgegate-admin".to_string(), Admin { shared: shared.clone(), runtime: runtime.clone() });
    admin.add_tcp(&l.admin_listen);
    admin.threads = Some(1);
    listeners.push(server.add_service(OwnSockets { inner: admin, fds: sockets.copies()? }));
    server.add_service(background_service(
        "vpc-link-health",
        crate::health::HealthChecker { shared: shared.clone(), health: runtime.link_health.clone() },
    ));
    server.add_service(background_service(
        "websocket-relay",
        crate::websocket::cluster::Relay {
            current: {
                let shared = shared.clone();
                Arc::new(move || shared.load().cluster.as_ref().map(|(c, _)| c.clone()))
            },
            connections: runtime.connections.clone(),
        },
    ));
    // the spans of the drained requests are flushed before the process exits
    let tracing_owner = runtime.clone();
    let reloader = server.add_service(background_service(
        "config-reload",
        Reloader { shared, runtime, path: args.config, upgraded: args.upgrade },
    ));
    for h in &listeners {
        reloader.add_dependency(h);
    }
    let signals = lifecycle::Signals { sockets, upgrade_sock: l.upgrade_sock.clone(), grace: l.grace_period };
    server.run(pingora::server::RunArgs { shutdown_signal: Box::new(signals) });
    tracing_owner.tracing.shutdown();
    std::process::exit(0)
}
