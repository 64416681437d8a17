//! Hot reload (and the periodic sweep of idle per-key limiter state): SIGHUP, or a change to the config or any file it names (when
//! `server.watch`), loads and compiles a new snapshot off the request path and swaps it in.
//! A config that fails keeps the running one, logs `FILE:LINE:COL` errors and counts
//! `edgegate_config_reloads_total{result="error"}`.

use crate::observability::{access_log, metrics};
use crate::snapshot::Shared;
use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

pub struct Reloader {
    pub shared: Shared,
    /// What every compile takes its limiters, caches and link health from.
    pub runtime: Arc<crate::runtime::Runtime>,
    pub path: PathBuf,
    /// This process took its sockets over from another (`-u`).
    pub upgraded: bool,
}

/// Loads the config at `path` and swaps it in; returns whether it succeeded.
pub fn reload_now(shared: &Shared, rt: &Arc<crate::runtime::Runtime>, path: &Path) -> bool {
    reload(shared, rt, path, false)
}

/// As [`reload_now`]; with `only_if_changed`, an unchanged config is neither swapped nor
/// counted (a check, not a reload somebody asked for).
fn reload(shared: &Shared, rt: &Arc<crate::runtime::Runtime>, path: &Path, only_if_changed: bool) -> bool {
    match crate::config::load(path, rt) {
        Ok(snap) => {
            let old = shared.load();
            if only_if_changed && old.version == snap.version {
                return true;
            }
            if old.listeners != snap.listeners {
                log::warn!("config reload: listener, TLS client-auth, thread or process settings changed; they take effect after a restart or a graceful upgrade (-u)");
            }
            metrics::set_config_version(&snap.version);
            access_log::configure(&snap.settings.access_log);
            access_log::set_format(snap.settings.access_log_format.clone());
            rt.tracing.configure(snap.settings.tracing.as_ref());
            let (from, to) = (old.version.clone(), snap.version.clone());
            drop(old);
            shared.store(Arc::new(snap));
            // said once the new config serves: a request sent after this line sees it
            if from == to {
                log::info!("config reload: unchanged (version {to})");
            } else {
                log::info!("config reloaded: version {from} -> {to}");
            }
            metrics::CONFIG_RELOADS.with_label_values(&["ok"]).inc();
            true
        }
        Err(errs) => {
            for e in &errs.0 {
                log::error!("config reload failed, keeping version {}: {e}", shared.load().version);
            }
            metrics::CONFIG_RELOADS.with_label_values(&["error"]).inc();
            false
        }
    }
}

/// The files a reload reads, as named and, for symbolic links, as resolved now: a link that
/// is pointed elsewhere and an edit of its target both trigger a reload.
fn watched_set(shared: &Shared) -> HashSet<PathBuf> {
    let mut set = HashSet::new();
    for f in shared.load().files.iter() {
        if let Ok(real) = std::fs::canonicalize(f) {
            set.insert(real);
        }
        set.insert(f.clone());
    }
    set
}

/// Writes this process's PID to `pid_file` (also in the foreground, for `-u` and tooling).
fn write_pid_file(path: &str) {
    if path.is_empty() {
        return;
    }
    if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
        log::warn!("cannot write pid_file {path}: {e}");
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot listen for SIGHUP: {e}");
                None
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let files = Arc::new(Mutex::new(watched_set(&self.shared)));
        let watch_enabled = self.shared.load().listeners.watch;
        let filter = files.clone();
        let mut watcher = if watch_enabled {
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    let hit = filter.lock().map(|f| ev.paths.iter().any(|p| f.contains(p))).unwrap_or(false);
                    if hit && !ev.kind.is_access() {
                        let _ = tx.try_send(());
                    }
                }
            })
            .map_err(|e| log::error!("file watching unavailable: {e}"))
            .ok()
        } else {
            None
        };
        let mut dirs: HashSet<PathBuf> = HashSet::new();
        // returns whether a directory was added: a file there may have changed before it was
        // watched (between the snapshot swap and now), so the caller checks once more
        let rewatch = |watcher: &mut Option<notify::RecommendedWatcher>, dirs: &mut HashSet<PathBuf>| -> bool {
            let Some(w) = watcher else { return false };
            let want: HashSet<PathBuf> =
                watched_set(&self.shared).iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
            for d in dirs.difference(&want) {
                let _ = w.unwatch(d);
            }
            let mut added = false;
            for d in want.difference(dirs) {
                added = true;
                if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
                    log::warn!("cannot watch {}: {e}", d.display());
                }
            }
            *dirs = want;
            added
        };
        rewatch(&mut watcher, &mut dirs);
        // Ready only now: changes to the config are watched, and every public listener
        // accepts connections (a started service may not have bound its socket yet).
        let l = &self.shared.load().listeners;
        let addrs: Vec<String> = l.listen.iter().chain(&l.tls_listen).chain(&l.private_listen).cloned().collect();
        wait_until_accepting(&addrs).await;
        // an old process waiting on a hand-over stops accepting only now
        crate::lifecycle::handover::acknowledge();
        write_pid_file(&l.pid_file);
        // ready last: whoever sees /readyz 200 (or READY=1) also finds the PID file written
        crate::lifecycle::set_ready();
        crate::lifecycle::notify::ready(self.upgraded);
        crate::lifecycle::daemon::report_ready();
        let mut early_hup = crate::lifecycle::take_early_hup();
        let mut check_again = false;
        let mut checking = false;

        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        let mut summaries = tokio::time::interval(Duration::from_secs(1));
        loop {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = std::future::ready(()), if early_hup => {
                    early_hup = false;
                    log::info!("SIGHUP (received while starting): reloading {}", self.path.display());
                }
                _ = std::future::ready(()), if check_again => {
                    check_again = false;
                    checking = true;
                    log::debug!("newly watched directories: checking {} once more", self.path.display());
                }
                _ = summaries.tick() => {
                    crate::observability::errors::flush_upstream_summaries();
                    continue;
                }
                _ = sweep.tick() => {
                    // full per-key buckets carry no state: forget them, so memory follows active keys
                    self.runtime.limiters.sweep();
                    // JWKS URLs: fetch again when jwks_refresh has passed
                    let jwts = self.shared.load().jwt_authorizers.clone();
                    if !jwts.is_empty() {
                        tokio::spawn(async move {
                            for j in jwts {
                                j.refresh_if_due().await;
                            }
                        });
                    }
                    continue;
                }
                _ = shutdown.changed() => {
                    crate::lifecycle::mark_draining();
                    break;
                }
                _ = hup_recv => {
                    log::info!("SIGHUP: reloading {}", self.path.display());
                }
                Some(()) = rx.recv() => {
                    // editors write in several steps: let them settle
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    while rx.try_recv().is_ok() {}
                    log::info!("change detected: reloading {}", self.path.display());
                }
            }
            let (shared, rt, path) = (self.shared.clone(), self.runtime.clone(), self.path.clone());
            crate::lifecycle::notify::reloading();
            let check = std::mem::take(&mut checking);
            let ok = tokio::task::spawn_blocking(move || reload(&shared, &rt, &path, check)).await.unwrap_or(false);
            crate::lifecycle::notify::ready(false);
            if ok {
                if let Ok(mut f) = files.lock() {
                    *f = watched_set(&self.shared);
                }
                check_again = rewatch(&mut watcher, &mut dirs);
            }
        }
    }
}

/// Waits (up to 10 s) until a TCP connection to each listener address succeeds; a wildcard
/// address is probed on its loopback.
async fn wait_until_accepting(addrs: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for a in addrs {
        let Ok(mut sa) = a.parse::<std::net::SocketAddr>() else { continue };
        if sa.ip().is_unspecified() {
            sa.set_ip(if sa.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        while tokio::net::TcpStream::connect(sa).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                log::warn!("listener {a} does not accept connections yet; reporting ready anyway");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
