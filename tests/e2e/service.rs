//! Running as a service: the systemd unit's own command lines (with a real `NOTIFY_SOCKET`),
//! lossless upgrades with keep-alive clients, HTTP/1.1 pipelining, symlinked configs, early
//! SIGHUP and a second instance on taken addresses.

use crate::common::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn cfg(d: &Path, p: &Ports, body: &str, extra: &str) -> String {
    format!(
        r#"{server}
[[apis]]
name = "s"
[apis.stages.prod]
[[apis.routes]]
route = "GET /hello"
integration = {{ type = "mock", body = "{body}" }}
"#,
        server = server_section(d, p, extra)
    )
}

/// The command lines of `key` (`ExecStart`, …) in the shipped unit, with the install paths
/// replaced by this test's.
fn unit_commands(key: &str, subst: &[(&str, String)]) -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/edgegate.service")).expect("unit");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|c| subst.iter().fold(c.trim_start_matches(['-', '@', '+', '!']).to_string(), |c, (a, b)| c.replace(a, b)))
        .collect()
}

fn sh(cmd: &str, env: &[(&str, String)], log: &Path) -> Command {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!("exec {cmd}")).stdin(Stdio::null()).stdout(out.try_clone().expect("log")).stderr(out);
    c.env("EDGEGATE_LOG", "info");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// `NOTIFY_SOCKET` messages, as systemd would receive them.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        Notify { sock, path }
    }

    /// Waits for a message containing `needle`; returns it.
    fn wait(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = vec![];
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.contains(needle) {
                    return m;
                }
                seen.push(m);
            }
        }
        panic!("no sd_notify message with {needle:?} within {within:?}; got {seen:?}");
    }
}

fn ready(admin: std::net::SocketAddr) -> bool {
    try_request(admin, b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").is_ok_and(|r| r.status == 200)
}

fn wait_exit(c: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if c.try_wait().expect("wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[test]
fn the_units_own_command_lines_start_reload_upgrade_and_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ports = Ports::new();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], ports.admin));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.listen));
    let config = d.join("edgegate.toml");
    std::fs::write(&config, cfg(d, &ports, "one", "watch = false")).expect("config");
    // the installed binary: a copy, so that a package upgrade can replace it
    let bin = d.join("edgegate");
    std::fs::copy(BIN, &bin).expect("copy binary");
    let pid_file = d.join("edgegate.pid");
    let notify = Notify::bind(d);
    let subst = |mainpid: Option<u32>| {
        let mut s = vec![
            ("/usr/bin/edgegate", bin.display().to_string()),
            (
                "/usr/lib/edgegate/edgegate-reload",
                concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/edgegate-reload").into(),
            ),
            ("/etc/edgegate/edgegate.toml", config.display().to_string()),
            ("/run/edgegate/edgegate.pid", pid_file.display().to_string()),
        ];
        if let Some(p) = mainpid {
            s.push(("$MAINPID", p.to_string()));
        }
        s
    };
    let env = [("NOTIFY_SOCKET", notify.path.display().to_string()), ("EDGEGATE_BIN", bin.display().to_string())];
    let log = d.join("service.log");

    // ExecStartPre, then ExecStart: READY=1 once it serves
    for pre in unit_commands("ExecStartPre", &subst(None)) {
        assert!(sh(&pre, &env, &log).status().expect("pre").success(), "{pre}");
    }
    let start = unit_commands("ExecStart", &subst(None));
    assert_eq!(start.len(), 1);
    let t0 = Instant::now();
    let mut main = sh(&start[0], &env, &log).spawn().expect("ExecStart");
    let m = notify.wait("READY=1", Duration::from_secs(20));
    assert!(!m.contains("MAINPID"), "a fresh start keeps its pid: {m}");
    assert!(ready(admin), "serving at READY=1");
    assert_eq!(get(addr, "/prod/hello", &[]).text(), "one");
    assert!(t0.elapsed() < Duration::from_secs(20));

    // ExecReload with the same binary: a configuration reload, RELOADING=1 then READY=1
    std::fs::write(&config, cfg(d, &ports, "two", "watch = false")).expect("config");
    let reload = unit_commands("ExecReload", &subst(Some(main.id())));
    assert_eq!(reload.len(), 1);
    let t = Instant::now();
    assert!(sh(&reload[0], &env, &log).status().expect("reload").success());
    assert!(t.elapsed() < Duration::from_secs(5), "ExecReload returns within seconds");
    notify.wait("RELOADING=1", Duration::from_secs(10));
    notify.wait("READY=1", Duration::from_secs(10));
    eventually("the reload", || get(addr, "/prod/hello", &[]).text() == "two");

    // a package upgrade replaces the binary; ExecReload performs a graceful upgrade
    let staged = d.join("edgegate.new");
    std::fs::copy(BIN, &staged).expect("copy");
    std::fs::rename(&staged, &bin).expect("replace binary");
    let load_stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = load_stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, vec![]);
            while !stop.load(Ordering::Relaxed) {
                match try_request(addr, b"GET /prod/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status)),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let reload = unit_commands("ExecReload", &subst(Some(main.id())));
    let t = Instant::now();
    let st = sh(&reload[0], &env, &log).status().expect("upgrade");
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(t.elapsed() < Duration::from_secs(10), "ExecReload (upgrade) returns within seconds: {:?}", t.elapsed());
    let m = notify.wait("MAINPID=", Duration::from_secs(10));
    let new_pid: u32 =
        m.lines().find_map(|l| l.strip_prefix("MAINPID=")).and_then(|p| p.trim().parse().ok()).expect("MAINPID");
    assert!(m.contains("READY=1"), "{m}");
    assert_ne!(new_pid, main.id());
    assert_eq!(std::fs::read_to_string(&pid_file).expect("pid file").trim(), new_pid.to_string());
    assert!(wait_exit(&mut main, Duration::from_secs(10)), "the old process drains and exits");
    std::thread::sleep(Duration::from_millis(300));
    load_stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.join().expect("load");
    assert!(ok > 0 && failed.is_empty(), "{ok} ok, failed: {failed:?}");
    assert_eq!(get(addr, "/prod/hello", &[]).text(), "two");
    assert!(ready(admin));

    // ExecStop on the new main process
    let stop = unit_commands("ExecStop", &subst(Some(new_pid)));
    assert_eq!(stop.len(), 1);
    let t = Instant::now();
    assert!(sh(&stop[0], &env, &log).status().expect("stop").success());
    assert!(t.elapsed() < Duration::from_secs(3));
    notify.wait("STOPPING=1", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(new_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_alive(new_pid), "stopped within the grace period");

    // systemd accepts the unit (where systemd is installed)
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let unit =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/edgegate.service")).expect("unit");
        let local = subst(None).iter().fold(unit, |u, (a, b)| u.replace(a, b));
        let path = d.join("edgegate.service");
        std::fs::write(&path, local).expect("unit copy");
        let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("verify");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One keep-alive client: requests on one connection, reconnecting only when an answer says
/// `Connection: close`. Any request without a full 200 answer is lost.
fn keep_alive_client(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    lost: Arc<Mutex<Vec<String>>>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if conn.is_none() {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    let r = BufReader::new(s.try_clone().expect("clone"));
                    conn = Some((s, r));
                }
                Err(e) => {
                    lost.lock().expect("lock").push(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let Some((w, r)) = conn.as_mut() else { continue };
        let res = w.write_all(b"GET /prod/hello HTTP/1.1\r\nHost: x\r\n\r\n").and_then(|_| read_response(r, false));
        match res {
            Ok(resp) if resp.status == 200 => {
                ok.fetch_add(1, Ordering::Relaxed);
                if resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                    conn = None;
                }
            }
            Ok(resp) => {
                lost.lock().expect("lock").push(format!("status {}", resp.status));
                conn = None;
            }
            Err(e) => {
                lost.lock().expect("lock").push(e.to_string());
                conn = None;
            }
        }
    }
}

#[test]
fn keep_alive_clients_lose_no_request_across_upgrades() {
    // the account throttle lifted: a release build serves these clients past its default rate
    let mut gw = Gateway::start(|d, p| {
        cfg(d, p, "k", "watch = false") + "[defaults.throttle]\nrate = 100000000\nburst = 100000000\n"
    });
    let addr = gw.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (stop, ok, lost) = (stop.clone(), ok.clone(), lost.clone());
            std::thread::spawn(move || keep_alive_client(addr, stop, ok, lost))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut handovers = vec![];
    for _ in 0..3 {
        let mut old = gw.child.take().expect("old");
        let before = ok.load(Ordering::Relaxed);
        let t = Instant::now();
        let new = gw.spawn(&["-u"]);
        let new_pid = new.id().to_string();
        gw.child = Some(new);
        eventually("the new process to serve", || {
            std::fs::read_to_string(gw.dir.path().join("edgegate.pid")).is_ok_and(|p| p.trim() == new_pid)
        });
        handovers.push(t.elapsed());
        assert!(wait_exit(&mut old, Duration::from_secs(10)), "old process exits after draining");
        assert!(ok.load(Ordering::Relaxed) > before, "requests flowed during the upgrade");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let lost = lost.lock().expect("lock").clone();
    let total = ok.load(Ordering::Relaxed);
    assert!(
        lost.is_empty(),
        "{} lost of {}: {:?}\n{}",
        lost.len(),
        total + lost.len(),
        &lost[..lost.len().min(5)],
        gw.stderr()
    );
    assert!(total > 100, "{total}");
    // the hand-over has no one-second poll: the new process serves well within a second
    // (a debug build included)
    assert!(handovers.iter().all(|t| *t < Duration::from_millis(900)), "hand-over times {handovers:?}");
    assert!(!gw.stderr().contains("No incoming socket transfer"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let gw = Gateway::start(|d, p| cfg(d, p, "p", "watch = false"));
    for gap_us in [0u64, 20, 200] {
        for i in 0..20 {
            let mut s = TcpStream::connect(gw.addr()).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let one = format!("GET /prod/hello?n={i}a HTTP/1.1\r\nHost: x\r\n\r\n");
            let two = "GET /prod/missing HTTP/1.1\r\nHost: x\r\n\r\n";
            let three = "GET /prod/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            if gap_us == 0 {
                s.write_all(format!("{one}{two}{three}").as_bytes()).expect("write");
            } else {
                s.write_all(one.as_bytes()).expect("write");
                std::thread::sleep(Duration::from_micros(gap_us));
                s.write_all(two.as_bytes()).expect("write");
                std::thread::sleep(Duration::from_micros(gap_us));
                s.write_all(three.as_bytes()).expect("write");
            }
            let mut r = BufReader::new(s);
            let statuses: Vec<u16> =
                (0..3).map(|_| read_response(&mut r, false).map(|x| x.status).unwrap_or(0)).collect();
            assert_eq!(statuses, vec![200, 404, 200], "gap {gap_us} µs, try {i}");
        }
    }
}

#[test]
fn a_symlinked_config_is_resolved_on_every_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let d = d.as_path();
    let ports = Ports::new();
    std::fs::create_dir(d.join("r1")).expect("dir");
    std::fs::create_dir(d.join("r2")).expect("dir");
    std::fs::write(d.join("r1/edgegate.toml"), cfg(d, &ports, "release-one", "watch = true")).expect("r1");
    std::fs::write(d.join("r2/edgegate.toml"), cfg(d, &ports, "release-two", "watch = true")).expect("r2");
    std::os::unix::fs::symlink(d.join("r1/edgegate.toml"), d.join("current.toml")).expect("link");
    let mut gw = Gateway { child: None, dir, ports, config: d.join("current.toml") };
    gw.child = Some(gw.spawn(&[]));
    gw.wait_ready();
    assert_eq!(gw.get("/prod/hello").text(), "release-one");
    let d = gw.dir.path().to_path_buf();
    // point the link at the next release (atomically, as deploy tools do): the watch follows it
    std::os::unix::fs::symlink(d.join("r2/edgegate.toml"), d.join("next.toml")).expect("link");
    std::fs::rename(d.join("next.toml"), d.join("current.toml")).expect("swap link");
    eventually("the watch to follow the link", || gw.get("/prod/hello").text() == "release-two");
    // the old release is deleted; a SIGHUP still reloads (through the link, anew)
    std::fs::remove_dir_all(d.join("r1")).expect("rm");
    std::fs::write(d.join("r2/edgegate.toml"), cfg(&d, &gw.ports, "release-two-b", "watch = true")).expect("r2");
    eventually("an edit of the link's target to reload", || gw.get("/prod/hello").text() == "release-two-b");
    std::fs::write(d.join("r2/edgegate.toml"), cfg(&d, &gw.ports, "release-two-c", "watch = false")).expect("r2");
    gw.signal("HUP");
    eventually("SIGHUP through the link", || gw.get("/prod/hello").text() == "release-two-c");
    assert!(!gw.stderr().contains("config reload failed"), "{}", gw.stderr());
}

#[test]
fn sighup_while_taking_sockets_over_does_not_kill_the_process() {
    let mut gw = Gateway::start(|d, p| cfg(d, p, "h", "watch = false"));
    let mut old = gw.child.take().expect("old");
    // the PID file names no live process: the new one waits for an operator's SIGQUIT
    let pid_file = gw.dir.path().join("edgegate.pid");
    std::fs::write(&pid_file, "999999\n").expect("pid file");
    let new = gw.spawn(&["-u"]);
    let new_pid = new.id();
    gw.child = Some(new);
    eventually("the new process to wait for the sockets", || gw.stderr().contains("waiting for one to get SIGQUIT"));
    for _ in 0..5 {
        assert!(Command::new("kill").arg("-HUP").arg(new_pid.to_string()).status().expect("kill").success());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(gw.child.as_mut().expect("child").try_wait().expect("wait").is_none(), "SIGHUP did not kill it");
    // the operator's SIGQUIT to the old process completes the hand-over
    assert!(Command::new("kill").arg("-QUIT").arg(old.id().to_string()).status().expect("kill").success());
    assert!(wait_exit(&mut old, Duration::from_secs(10)), "old process drains and exits");
    gw.wait_ready();
    assert_eq!(gw.get("/prod/hello").text(), "h");
    assert_eq!(std::fs::read_to_string(&pid_file).expect("pid").trim(), new_pid.to_string());
    // the SIGHUP was kept and acted on once the reloader ran
    eventually("the early SIGHUP to reload", || gw.stderr().contains("SIGHUP (received while starting)"));
}

#[test]
fn a_second_instance_on_taken_addresses_fails_fast_and_clearly() {
    let gw = Gateway::start(|d, p| cfg(d, p, "one", "watch = false"));
    let t = Instant::now();
    let out = Command::new(BIN).arg("-c").arg(&gw.config).stdin(Stdio::null()).output().expect("second");
    assert!(!out.status.success());
    assert!(t.elapsed() < Duration::from_secs(6), "bounded wait: {:?}", t.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use") && err.contains(&format!("127.0.0.1:{}", gw.ports.listen)), "{err}");
    assert_eq!(gw.get("/prod/hello").text(), "one", "the first instance is untouched");
}

#[test]
fn daemonize_returns_once_serving_and_upgrades_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let config = dir.path().join("edgegate.toml");
    std::fs::write(&config, cfg(dir.path(), &ports, "d", "watch = false")).expect("config");
    let pid_file = dir.path().join("edgegate.pid");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], ports.admin));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.listen));
    let run = |extra: &[&str]| {
        let t = Instant::now();
        let st = Command::new(BIN)
            .arg("-c")
            .arg(&config)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("edgegate -d");
        (st, t.elapsed())
    };
    let (st, took) = run(&["-d"]);
    assert!(st.success() && took < Duration::from_secs(10), "-d returns: {st:?} after {took:?}");
    eventually("the daemon to serve", || ready(admin));
    let first: u32 = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("pid");
    assert_eq!(get(addr, "/prod/hello", &[]).text(), "d");
    let (st, took) = run(&["-u", "-d"]);
    assert!(st.success() && took < Duration::from_secs(10), "-u -d returns: {st:?} after {took:?}");
    eventually("the new daemon to take over", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() != first.to_string()) && !pid_alive(first)
    });
    assert_eq!(get(addr, "/prod/hello", &[]).text(), "d");
    let second: u32 = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("pid");
    assert!(Command::new("kill").arg("-INT").arg(second.to_string()).status().expect("kill").success());
    eventually("the daemon to stop", || !pid_alive(second));
}
