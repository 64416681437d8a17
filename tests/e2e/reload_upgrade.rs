//! Hot reload (file watch and SIGHUP) and graceful upgrade under load.

use crate::common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cfg(d: &std::path::Path, p: &Ports, backend: &str, body: &str, watch: bool) -> String {
    format!(
        r#"{server}
[[apis]]
name = "r"
[apis.stages.prod]
variables = {{ backend = "{backend}" }}
[apis.integrations.up]
type = "http"
uri = "${{stageVariables.backend}}"
[[apis.routes]]
route = "ANY /up/{{proxy+}}"
integration = "up"
[[apis.routes]]
route = "GET /hello"
integration = {{ type = "mock", body = "{body}" }}
"#,
        server = server_section(d, p, &format!("watch = {watch}"))
    )
}

fn reload_count(gw: &Gateway, result: &str) -> u64 {
    let m = gw.metrics();
    let key = format!("edgegate_config_reloads_total{{result=\"{result}\"}} ");
    m.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn file_changes_reload_and_broken_configs_keep_the_running_one() {
    let origin = Origin::start("a");
    let url = origin.url();
    let gw = Gateway::start(|d, p| cfg(d, p, &url, "one", true));
    assert_eq!(gw.get("/prod/hello").text(), "one");
    let (d, p) = (gw.dir.path().to_path_buf(), &gw.ports);

    gw.write_config(&cfg(&d, p, &url, "two", true));
    eventually("reload to version two", || gw.get("/prod/hello").text() == "two");

    // broken: an unknown key on line 3
    let broken = cfg(&d, p, &url, "three", true).replacen("listen", "lisen", 1);
    gw.write_config(&broken);
    eventually("the error to be counted", || reload_count(&gw, "error") >= 1);
    assert_eq!(gw.get("/prod/hello").text(), "two", "the running config stays");
    let err = gw.stderr();
    assert!(err.contains(&format!("{}:2:1:", gw.config.display())) && err.contains("lisen"), "{err}");

    gw.write_config(&cfg(&d, p, &url, "four", true));
    eventually("recovery", || gw.get("/prod/hello").text() == "four");
    assert!(reload_count(&gw, "ok") >= 2);
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let gw = Gateway::start(|d, p| cfg(d, p, "http://127.0.0.1:9", "one", false));
    let (d, p) = (gw.dir.path().to_path_buf(), &gw.ports);
    gw.write_config(&cfg(&d, p, "http://127.0.0.1:9", "two", false));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(gw.get("/prod/hello").text(), "one", "no watching: nothing changes by itself");
    gw.signal("HUP");
    eventually("SIGHUP reload", || gw.get("/prod/hello").text() == "two");
}

#[test]
fn in_flight_requests_finish_on_their_snapshot() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let (ua, ub) = (a.url(), b.url());
    let gw = Gateway::start(|d, p| cfg(d, p, &ua, "x", true));
    let addr = gw.addr();
    let slow = std::thread::spawn(move || get(addr, "/prod/up/slow/1500", &[]));
    eventually("the slow request to reach origin a", || a.count() == 1);
    gw.write_config(&cfg(gw.dir.path(), &gw.ports, &ub, "y", true));
    eventually("reload", || gw.get("/prod/hello").text() == "y");
    assert_eq!(gw.get("/prod/up/now").header("x-origin"), Some("b"));
    let r = slow.join().expect("slow request");
    assert_eq!((r.status, r.header("x-origin")), (200, Some("a")), "started on the old snapshot, finished on it");
}

#[test]
fn graceful_upgrade_loses_no_request_under_load() {
    let origin = Origin::start("o");
    let url = origin.url();
    let mut gw = Gateway::start(|d, p| cfg(d, p, &url, "x", true));
    let addr = gw.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = vec![];
    for _ in 0..2 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 20_000 {
                n += 1;
                match try_request(addr, b"GET /prod/up/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failed.lock().expect("lock").push(format!("status {}", r.status)),
                    Err(e) => failed.lock().expect("lock").push(e.to_string()),
                }
                // paced, so the request bound outlasts the hand-over even on a fast, idle machine
                std::thread::sleep(Duration::from_micros(500));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0, "load is running");

    let mut old = gw.child.take().expect("old process");
    // the new process asks the old one (PID from pid_file) for the sockets itself
    let new = gw.spawn(&["-u"]);
    gw.child = Some(new);
    // the old process hands its sockets over, drains and exits
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = old.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "old process did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    let at_exit = ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let failures = failed.lock().expect("lock").clone();
    let total = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}\n{}",
        failures.len(),
        total + failures.len(),
        &failures[..failures.len().min(5)],
        gw.stderr()
    );
    assert!(
        total > at_exit && at_exit > before,
        "requests flowed before, during and after ({before}, {at_exit}, {total})"
    );
    let _ = status;
    // the new process serves the admin listener too
    assert_eq!(get(gw.admin(), "/readyz", &[]).status, 200);
}

use std::sync::Mutex;
