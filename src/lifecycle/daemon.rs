//! `-d`: run in the background. The process forks before it does anything else (no thread
//! exists yet, so none is lost); the parent waits until the daemon accepts connections (or
//! fails) and exits with that outcome, so `edgegate -d` returning 0 means "serving".

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

/// The daemon's end of the readiness pipe, until it reports.
static READY_PIPE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// How long the parent waits for the daemon to serve.
const WAIT: Duration = Duration::from_secs(120);

/// Forks; returns in the daemon (a new session, stdin from /dev/null). The parent never
/// returns: it exits 0 once the daemon reports ready, 1 if the daemon exits first or is late.
pub fn daemonize() {
    let (read, write) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("edgegate: -d: cannot create a pipe: {e}");
            std::process::exit(1);
        }
    };
    // SAFETY: called first thing in main, while the process has a single thread.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(write);
            std::process::exit(wait_for_ready(read));
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read);
            let _ = nix::unistd::setsid();
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let _ = nix::unistd::dup2_stdin(&null);
            }
            // SAFETY: `write` is the pipe's write end, owned here alone.
            let file = unsafe { std::fs::File::from_raw_fd(write.into_raw_fd()) };
            if let Ok(mut g) = READY_PIPE.lock() {
                *g = Some(file);
            }
        }
        Err(e) => {
            eprintln!("edgegate: -d: cannot fork: {e}");
            std::process::exit(1);
        }
    }
}

fn wait_for_ready(read: OwnedFd) -> i32 {
    let mut f = std::fs::File::from(read);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let _ = tx.send(matches!(f.read(&mut b), Ok(1)));
    });
    match rx.recv_timeout(WAIT) {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("edgegate: the daemon exited before it served");
            1
        }
        Err(_) => {
            eprintln!("edgegate: the daemon did not report ready within {WAIT:?}");
            1
        }
    }
}

/// Tells a waiting `-d` parent that this daemon serves (no-op otherwise).
pub fn report_ready() {
    if let Some(mut f) = READY_PIPE.lock().ok().and_then(|mut g| g.take()) {
        let _ = f.write_all(b"R");
    }
}
