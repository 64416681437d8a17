//! The listening sockets: bound once by edgegate itself (a clear error, within a bounded wait,
//! when an address is taken) and handed from process to process on a graceful upgrade.
//!
//! Hand-over protocol over `server.upgrade_sock` (a Unix stream socket):
//! 1. the new process (`-u`) binds the socket, then signals the running instance (SIGQUIT,
//!    PID from `pid_file`; an operator's own SIGQUIT works the same) and waits in a blocking
//!    `accept` with a deadline, so there is no poll interval;
//! 2. the old process connects (retrying every 10 ms while the socket is not there yet) and
//!    sends one message: the listen addresses (NUL separated) with their descriptors
//!    (SCM_RIGHTS);
//! 3. the new process answers one byte once its listeners accept connections; only then does
//!    the old one stop accepting and drain. If the new process dies first (EOF), the old one
//!    keeps serving as if nothing happened.

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service as ServiceTrait;
use std::collections::HashSet;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a second instance retries a taken address before it gives up.
pub const BIND_WAIT: Duration = Duration::from_secs(2);
/// How long each side of a hand-over waits for the other.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(30);
const MAX_FDS: usize = 64;

/// The listening sockets of this process, by the address string the config gives.
pub struct Sockets {
    pub fds: ListenFds,
}

impl Sockets {
    pub fn empty() -> Sockets {
        Sockets { fds: Arc::new(pingora::server::Fds::new().into()) }
    }

    /// A table of its own for a service: each descriptor duplicated (close-on-exec), so the
    /// service's listener owns and closes its copy while this table keeps the originals for
    /// the hand-over.
    pub fn copies(&self) -> Result<ListenFds, HandoverError> {
        self.copies_for(0, &[])
    }

    /// The table of the proxy service of core `core`: for each address in `per_core`, a copy
    /// of that core's own socket (see [`bind_per_core`]) when it has one, else of the
    /// address's first socket (then the cores share one accept queue); other addresses as
    /// [`Sockets::copies`].
    pub fn copies_for(&self, core: usize, per_core: &[String]) -> Result<ListenFds, HandoverError> {
        let (binds, fds) = self.table();
        let by_key: std::collections::HashMap<&str, RawFd> =
            binds.iter().map(String::as_str).zip(fds.iter().copied()).collect();
        let mut table = pingora::server::Fds::new();
        for (bind, fd) in binds.iter().zip(fds) {
            if bind.contains('#') {
                continue; // another core's socket
            }
            let own = if per_core.contains(bind) { by_key.get(core_key(bind, core).as_str()) } else { None };
            // SAFETY: the table owns the descriptor and keeps it open for the life of the process
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(*own.unwrap_or(&fd)) };
            let copy = nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(0))
                .map_err(|e| HandoverError::Listen(format!("cannot copy the socket of {bind}: {e}")))?;
            table.add(bind.clone(), copy);
        }
        Ok(Arc::new(table.into()))
    }

    /// The address → descriptor table (the descriptors stay owned by the table).
    pub fn table(&self) -> (Vec<String>, Vec<RawFd>) {
        self.fds.lock().serialize()
    }
}

/// Why the listening sockets could not be bound, received or handed over.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// Binding a listening address.
    #[error("{0}")]
    Listen(String),
    /// Receiving the sockets of the running instance (`-u`).
    #[error("upgrade: {0}")]
    Receive(String),
    /// Handing the sockets to a new process.
    #[error("{0}")]
    Send(String),
}

/// The table key of core `core`'s own socket for `addr` (core 0's is the address itself).
pub fn core_key(addr: &str, core: usize) -> String {
    if core == 0 {
        addr.to_string()
    } else {
        format!("{addr}#{core}")
    }
}

/// Every table key a process with `cores` proxy cores keeps: the addresses, and the extra
/// per-core sockets of those in `per_core`.
pub fn keys(addrs: &[String], per_core: &[String], cores: usize) -> Vec<String> {
    let extra = per_core.iter().flat_map(|a| (1..cores).map(move |c| core_key(a, c)));
    addrs.iter().cloned().chain(extra).collect()
}

/// Binds every address in `addrs` that `sockets` does not hold yet. An address in use is
/// retried for [`BIND_WAIT`], then named in the error. The addresses in `per_core` are bound
/// with SO_REUSEPORT, so that [`bind_per_core`] can add one socket per core beside them.
pub fn bind_missing(sockets: &Sockets, addrs: &[String], per_core: &[String]) -> Result<(), HandoverError> {
    for a in addrs {
        if sockets.fds.lock().get(a).is_some() {
            continue;
        }
        let sa: std::net::SocketAddr =
            a.parse().map_err(|e| HandoverError::Listen(format!("listen address {a}: {e}")))?;
        let deadline = Instant::now() + BIND_WAIT;
        let listener = loop {
            // A probe without SO_REUSEPORT first: a running instance's sockets (SO_REUSEPORT
            // too) would otherwise let a second instance join their group and take half of
            // the traffic instead of failing.
            let bound = listen(sa, false).and_then(|probe| {
                if per_core.contains(a) {
                    drop(probe);
                    listen(sa, true)
                } else {
                    Ok(probe)
                }
            });
            match bound {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(HandoverError::Listen(format!(
                        "cannot listen on {a}: the address is in use (is edgegate already running? \
                         `edgegate -u` takes the sockets over from a running instance)"
                    )));
                }
                Err(e) => return Err(HandoverError::Listen(format!("cannot listen on {a}: {e}"))),
            }
        };
        sockets.fds.lock().add(a.clone(), listener.into_raw_fd());
    }
    Ok(())
}

/// Gives each core after the first its own socket on each address of `per_core` (joining the
/// address's SO_REUSEPORT group), so the kernel spreads new connections over the cores'
/// accept queues instead of one core taking a burst of them from a shared queue. A socket
/// received in a hand-over is kept. Where the group cannot be joined (sockets handed over by
/// an instance that bound them without SO_REUSEPORT), the cores share the first socket.
pub fn bind_per_core(sockets: &Sockets, per_core: &[String], cores: usize) {
    for a in per_core {
        let Ok(sa) = a.parse::<std::net::SocketAddr>() else { continue };
        for core in 1..cores {
            let key = core_key(a, core);
            if sockets.fds.lock().get(&key).is_some() {
                continue;
            }
            match listen(sa, true) {
                Ok(l) => sockets.fds.lock().add(key, l.into_raw_fd()),
                Err(e) => {
                    log::info!("{a}: the cores share one listening socket ({e})");
                    break;
                }
            }
        }
    }
}

/// A non-blocking listening socket on `sa` (the accept loops need non-blocking sockets).
fn listen(sa: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(sa), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&sa.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Closes received sockets that the configuration no longer names.
pub fn close_unclaimed(sockets: &Sockets, keep: &[String]) {
    let keep: HashSet<String> = keep.iter().cloned().collect();
    let closed = sockets.fds.lock().close_unclaimed(&keep);
    if !closed.is_empty() {
        log::info!("closed listening sockets the configuration no longer names: {closed:?}");
    }
}

/// The new process's end of a hand-over: kept until the listeners accept, then acknowledged.
static ACK: Mutex<Option<UnixStream>> = Mutex::new(None);

/// Tells the old process that this one accepts connections now (no-op without a hand-over).
pub fn acknowledge() {
    if let Some(mut s) = ACK.lock().ok().and_then(|mut g| g.take()) {
        if let Err(e) = s.write_all(b"R") {
            log::warn!("upgrade: cannot acknowledge the hand-over: {e}");
        }
    }
}

/// The PID in `pid_file` when that process is alive and is not this one.
pub fn running_pid(pid_file: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    (alive && pid as u32 != std::process::id()).then_some(pid)
}

/// `-u`: takes the listening sockets over from the running instance.
pub fn receive(upgrade_sock: &str, pid_file: &str) -> Result<Sockets, HandoverError> {
    let path = Path::new(upgrade_sock);
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).map_err(|e| HandoverError::Receive(format!("cannot bind {upgrade_sock}: {e}")))?;
    match running_pid(pid_file) {
        Some(pid) => {
            log::info!("upgrade: asking the running instance (pid {pid}) for its listening sockets");
            if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT) {
                log::warn!("upgrade: cannot signal pid {pid}: {e}; waiting for SIGQUIT to reach it");
            }
        }
        None => log::info!("upgrade: no running instance in {pid_file}; waiting for one to get SIGQUIT"),
    }
    let stream = accept_until(&listener, Instant::now() + HANDOVER_WAIT)
        .map_err(|e| HandoverError::Receive(format!("no listening sockets received on {upgrade_sock}: {e}")))?;
    let _ = std::fs::remove_file(path);
    let mut names = vec![0u8; 16 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut names)];
        let msg = socket::recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| HandoverError::Receive(format!("receiving sockets: {e}")))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| HandoverError::Receive(format!("receiving sockets: {e}")))? {
            if let ControlMessageOwned::ScmRights(v) = c {
                fds.extend(v);
            }
        }
        (msg.bytes, fds)
    };
    let binds: Vec<String> = names[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    if binds.len() != fds.len() {
        let (nb, nf) = (binds.len(), fds.len());
        for fd in fds {
            // SAFETY: received by SCM_RIGHTS just now and owned by nobody else.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        return Err(HandoverError::Receive(format!("{nb} addresses but {nf} sockets received")));
    }
    log::info!("upgrade: received {} listening sockets: {binds:?}", binds.len());
    let sockets = Sockets::empty();
    sockets.fds.lock().deserialize(binds, fds);
    if let Ok(mut g) = ACK.lock() {
        *g = Some(stream);
    }
    Ok(sockets)
}

fn accept_until(listener: &UnixListener, deadline: Instant) -> std::io::Result<UnixStream> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"));
        }
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        let mut pfd = [PollFd::new(std::os::fd::AsFd::as_fd(listener), PollFlags::POLLIN)];
        match poll(&mut pfd, ms) {
            Ok(0) => continue,
            Ok(_) => return listener.accept().map(|(s, _)| s),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The old process's end: sends `sockets` to the process waiting on `upgrade_sock` and waits
/// for it to accept connections. `Ok` means the new process serves now; `Err` means this one
/// must keep serving.
pub fn send(sockets: &Sockets, upgrade_sock: &str) -> Result<(), HandoverError> {
    let deadline = Instant::now() + HANDOVER_WAIT;
    let mut stream = loop {
        match UnixStream::connect(upgrade_sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                log::debug!("upgrade: {upgrade_sock} not ready ({e}), retrying");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(HandoverError::Send(format!("no new process listens on {upgrade_sock}: {e}"))),
        }
    };
    let (binds, fds) = sockets.table();
    let mut names = Vec::new();
    for b in &binds {
        names.extend_from_slice(b.as_bytes());
        names.push(0);
    }
    let iov = [IoSlice::new(&names)];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    socket::sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| HandoverError::Send(format!("sending the listening sockets: {e}")))?;
    log::info!("upgrade: sent {} listening sockets to the new process", binds.len());
    stream
        .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
        .ok();
    let mut ack = [0u8; 1];
    match stream.read(&mut ack) {
        Ok(1) => Ok(()),
        Ok(_) => Err(HandoverError::Send("the new process exited before it accepted connections".into())),
        Err(e) => Err(HandoverError::Send(format!("the new process did not confirm it accepts connections: {e}"))),
    }
}

/// A listening service that uses this process's own socket table and stop signal instead of
/// Pingora's: the sockets are bound (or received) before the server starts, and
/// [`super::stop`] ends accepting while keep-alive connections drain.
pub struct OwnSockets<S> {
    pub inner: S,
    pub fds: ListenFds,
}

#[async_trait::async_trait]
impl<S: ServiceTrait + Send + Sync> ServiceTrait for OwnSockets<S> {
    async fn start_service(&mut self, _fds: Option<ListenFds>, shutdown: ShutdownWatch, listeners_per_fd: usize) {
        // Pingora's own shutdown (SIGINT/SIGTERM paths it handles itself) stops accepting too.
        let mut pingora_shutdown = shutdown;
        tokio::spawn(async move {
            if pingora_shutdown.changed().await.is_ok() && *pingora_shutdown.borrow() {
                super::stop();
            }
        });
        self.inner.start_service(Some(self.fds.clone()), super::stop_watch(), listeners_per_fd).await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn free_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    }

    fn accepted(table: &ListenFds, addr: &str) -> usize {
        let fd = *table.lock().get(addr).expect("the address");
        // SAFETY: the table owns `fd`; the listener is forgotten below, not closed
        let l = std::mem::ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(fd) });
        std::iter::from_fn(|| l.accept().ok()).count()
    }

    #[test]
    fn each_core_accepts_from_its_own_queue_and_a_second_instance_is_refused() {
        let addr = free_port();
        let addrs = vec![addr.clone()];
        let sockets = Sockets::empty();
        bind_missing(&sockets, &addrs, &addrs).expect("bound");
        bind_per_core(&sockets, &addrs, 2);
        assert_eq!(sockets.table().0.len(), 2, "{:?}", sockets.table().0);
        let (core0, core1) = (sockets.copies_for(0, &addrs).expect("0"), sockets.copies_for(1, &addrs).expect("1"));
        let clients: Vec<_> = (0..64).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
        std::thread::sleep(Duration::from_millis(100));
        let (a, b) = (accepted(&core0, &addr), accepted(&core1, &addr));
        assert_eq!(a + b, 64);
        assert!(a > 0 && b > 0, "the kernel spread the connections: {a} and {b}");
        drop(clients);

        // another instance on the same address fails instead of joining the group
        let err = bind_missing(&Sockets::empty(), &addrs, &addrs).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("in use"), "{err}");
        // an address served by one service keeps one socket, shared by its copies
        let single = vec![free_port()];
        let one = Sockets::empty();
        bind_missing(&one, &single, &[]).expect("bound");
        bind_per_core(&one, &[], 2);
        assert_eq!(one.table().0, single);
    }
}
