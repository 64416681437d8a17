//! systemd's readiness protocol (`sd_notify(3)`): datagrams to `$NOTIFY_SOCKET`, a path or an
//! abstract socket (`@name`). Without the variable every call is a no-op.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`, newline-separated assignments) to the service manager.
pub fn send(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else { return };
    if let Err(e) = send_to(&path, state) {
        log::warn!("sd_notify to {path}: {e}");
    }
}

fn send_to(path: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// `READY=1`, with `MAINPID` when this process took over from another (so that systemd follows
/// the upgrade; the unit needs `NotifyAccess=all`).
pub fn ready(upgraded: bool) {
    if upgraded {
        send(&format!("MAINPID={}\nREADY=1\nSTATUS=serving (upgraded)", std::process::id()));
    } else {
        send("READY=1\nSTATUS=serving");
    }
}

/// Around a configuration reload (`Type=notify-reload` semantics).
pub fn reloading() {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}
