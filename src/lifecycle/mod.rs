//! Process lifecycle: signals, readiness (`sd_notify`, the PID file), the listening sockets
//! and their hand-over on a graceful upgrade, and draining.
//!
//! Signals (docs/operations.md):
//! - SIGHUP reloads the configuration. Its handler is installed first thing in `main`, so a
//!   SIGHUP that arrives while the process starts (or takes sockets over) is kept for the
//!   reloader instead of killing the process.
//! - SIGQUIT hands the listening sockets to a new process (`-u`), waits until it accepts,
//!   then drains: every response carries `Connection: close`, accepting stops, and the process
//!   exits once no request is in flight (at most `grace_period`).
//! - SIGTERM drains the same way without a hand-over; SIGINT stops at once.

pub mod daemon;
pub mod handover;
pub mod notify;

use async_trait::async_trait;
use once_cell::sync::Lazy;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

static HUP_PENDING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_early_hup(_: libc::c_int) {
    HUP_PENDING.store(true, Ordering::SeqCst);
}

/// Installs a SIGHUP handler that only records the signal; call before anything else.
pub fn install_early_hup() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGHUP, on_early_hup as *const () as libc::sighandler_t);
    }
}

/// Whether a SIGHUP arrived before the reloader listened for it (clears the record).
pub fn take_early_hup() -> bool {
    HUP_PENDING.swap(false, Ordering::SeqCst)
}

static STOP: Lazy<watch::Sender<bool>> = Lazy::new(|| watch::channel(false).0);

/// Stops accepting connections on every listener of this process.
pub fn stop() {
    STOP.send_replace(true);
}

/// The stop signal the listening services run with.
pub fn stop_watch() -> watch::Receiver<bool> {
    STOP.subscribe()
}

/// Requests in flight, counted per thread: each proxy thread adds and subtracts on its own
/// cache line, so counting a request never writes a line another core is using. The total
/// (read when draining) is the sum.
#[repr(align(64))]
struct Shard(AtomicUsize);

const SHARDS: usize = 16;
static IN_FLIGHT: [Shard; SHARDS] = [const { Shard(AtomicUsize::new(0)) }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// Held by each request from its first hook to its end.
#[derive(Debug)]
pub struct InFlight(usize);

impl InFlight {
    pub fn start() -> InFlight {
        let shard = SHARD.with(|s| *s);
        IN_FLIGHT[shard].0.fetch_add(1, Ordering::AcqRel);
        InFlight(shard)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT[self.0].0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn in_flight() -> usize {
    IN_FLIGHT.iter().map(|s| s.0.load(Ordering::Acquire)).sum()
}

/// Set once every service has started (`/readyz`).
static READY: AtomicBool = AtomicBool::new(false);
/// Set when the process starts draining (`/readyz` turns 503, responses close connections).
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Every service has started: `/readyz` answers 200.
pub fn set_ready() {
    READY.store(true, Ordering::Release);
}

/// Whether every service has started.
pub fn ready() -> bool {
    READY.load(Ordering::Acquire)
}

/// The process stops taking new work: `/readyz` turns 503.
pub fn mark_draining() {
    DRAINING.store(true, Ordering::Release);
}

/// Whether this process is draining (responses close their connections).
pub fn draining() -> bool {
    DRAINING.load(Ordering::Acquire)
}

static DRAIN_START: Lazy<std::sync::Mutex<Option<(Instant, Duration)>>> = Lazy::new(|| std::sync::Mutex::new(None));

/// After draining began: keep-alive clients are given this long to send what they have in
/// flight (and get `Connection: close` back) before idle connections are closed.
pub const LINGER: Duration = Duration::from_millis(1000);

/// Starts draining: responses close their connections, listeners stop accepting.
fn begin_drain(grace: Duration) {
    mark_draining();
    if let Ok(mut g) = DRAIN_START.lock() {
        g.get_or_insert((Instant::now(), grace));
    }
    stop();
}

/// When the grace period of the drain in progress ends (long-lived connections close before).
pub fn drain_deadline() -> Option<Instant> {
    DRAIN_START.lock().ok().and_then(|g| *g).map(|(start, grace)| start + grace)
}

/// Resolves when draining is over: [`LINGER`] has passed and no request is in flight, or the
/// grace period has ended.
pub async fn drained() {
    let Some((start, grace)) = DRAIN_START.lock().ok().and_then(|g| *g) else { return };
    let linger_end = start + LINGER.min(grace);
    let end = start + grace;
    loop {
        let now = Instant::now();
        if now >= end || (now >= linger_end && in_flight() == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pingora's shutdown signal source, replaced: SIGQUIT and SIGTERM drain as described above.
pub struct Signals {
    pub sockets: std::sync::Arc<handover::Sockets>,
    pub upgrade_sock: String,
    pub grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) =
            (signal(SignalKind::quit()), signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            log::error!("cannot listen for SIGQUIT/SIGTERM/SIGINT");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    log::info!("SIGQUIT: handing the listening sockets over to the new process");
                    let sockets = self.sockets.clone();
                    let path = self.upgrade_sock.clone();
                    let sent = tokio::task::spawn_blocking(move || handover::send(&sockets, &path)).await;
                    match sent {
                        Ok(Ok(())) => {
                            log::info!("upgrade: the new process accepts connections; draining");
                            break;
                        }
                        Ok(Err(e)) => log::error!("upgrade aborted, this process keeps serving: {e}"),
                        Err(e) => log::error!("upgrade aborted, this process keeps serving: {e}"),
                    }
                }
                _ = term.recv() => {
                    log::info!("SIGTERM: draining, then exiting");
                    notify::send("STOPPING=1");
                    break;
                }
                _ = int.recv() => {
                    log::info!("SIGINT: exiting now");
                    notify::send("STOPPING=1");
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
        begin_drain(self.grace);
        tokio::select! {
            _ = drained() => {}
            _ = int.recv() => log::info!("SIGINT: exiting now"),
        }
        log::info!("drained ({} requests still in flight); exiting", in_flight());
        ShutdownSignal::FastShutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_are_summed_over_the_threads_that_count_them() {
        let before = in_flight();
        let here = [InFlight::start(), InFlight::start()];
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let done_rx = std::sync::Arc::new(std::sync::Mutex::new(done_rx));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (held_tx, done_rx) = (held_tx.clone(), done_rx.clone());
                std::thread::spawn(move || {
                    let r = InFlight::start();
                    let _ = held_tx.send(());
                    let _ = done_rx.lock().map(|rx| rx.recv());
                    drop(r);
                })
            })
            .collect();
        for _ in 0..3 {
            held_rx.recv().expect("held");
        }
        assert_eq!(in_flight(), before + 5);
        drop(here);
        assert_eq!(in_flight(), before + 3);
        for _ in 0..3 {
            let _ = done_tx.send(());
        }
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(in_flight(), before);
    }
}
