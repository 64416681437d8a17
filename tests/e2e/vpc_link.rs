//! VPC links: balance, health checks (HTTP and TCP), failover, consistent hashing, reloads.

use crate::common::*;
use std::collections::HashMap;

fn cfg(d: &std::path::Path, p: &Ports, targets: &[String], balance: &str, check: &str, retries: u32) -> String {
    let list = targets.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"{server}
[[vpc_links]]
name = "grp"
targets = [{list}]
balance = "{balance}"
{check}

[[apis]]
name = "v"
[apis.stages.prod]
[apis.integrations.private]
type = "vpc_link"
link = "grp"
retries = {retries}
[[apis.routes]]
route = "ANY /{{proxy+}}"
integration = "private"
"#,
        server = server_section(d, p, "watch = false")
    )
}

fn origin_of(gw: &Gateway, path: &str) -> (u16, String) {
    let r = gw.get(path);
    (r.status, r.header("x-origin").unwrap_or("-").to_string())
}

fn health(gw: &Gateway, target: &str) -> Option<f64> {
    let key = format!("edgegate_upstream_health{{link=\"grp\",target=\"{target}\"}} ");
    gw.metrics().lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok())
}

#[test]
fn round_robin_spreads_and_the_route_path_is_proxied() {
    let (a, b) = (Origin::start("a"), Origin::start("b"));
    let targets = vec![a.addr.to_string(), b.addr.to_string()];
    let gw = Gateway::start(|d, p| cfg(d, p, &targets, "round_robin", "", 0));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..20 {
        let (status, o) = origin_of(&gw, &format!("/prod/items/{i}?q=1"));
        assert_eq!(status, 200);
        *seen.entry(o).or_default() += 1;
    }
    assert_eq!((seen.get("a"), seen.get("b")), (Some(&10), Some(&10)), "{seen:?}");
    let r = a.requests().into_iter().chain(b.requests()).find(|s| s.target.starts_with("/items/3")).expect("seen");
    assert_eq!(r.target, "/items/3?q=1");
    assert_eq!(r.header("host"), Some("grp"));
}

#[test]
fn unhealthy_targets_get_no_traffic_and_health_is_exported() {
    let a = Origin::start("a");
    let dead = format!("127.0.0.1:{}", free_port());
    let targets = vec![a.addr.to_string(), dead.clone()];
    let check = r#"health_check = { kind = "http", path = "/health", interval = "200ms", timeout = "100ms" }"#;
    let gw = Gateway::start(|d, p| cfg(d, p, &targets, "round_robin", check, 0));
    eventually("the dead target to be marked down", || health(&gw, &dead) == Some(0.0));
    assert_eq!(health(&gw, &a.addr.to_string()), Some(1.0));
    for _ in 0..10 {
        assert_eq!(origin_of(&gw, "/prod/x"), (200, "a".to_string()));
    }
    assert!(a.requests().iter().any(|s| s.target == "/health"), "the HTTP check asks its path");
    // a reload that keeps the targets keeps their health: no request goes to the dead one
    gw.write_config(
        &cfg(gw.dir.path(), &gw.ports, &targets, "round_robin", check, 0)
            .replace("[apis.stages.prod]", "[apis.stages.prod]\nvariables = { v = \"2\" }"),
    );
    gw.signal("HUP");
    eventually("the reload", || gw.metrics().contains("edgegate_config_reloads_total{result=\"ok\"} 1"));
    for _ in 0..10 {
        assert_eq!(origin_of(&gw, "/prod/y"), (200, "a".to_string()));
    }
}

#[test]
fn a_target_that_refuses_is_failed_over_and_never_retried_twice() {
    let a = Origin::start("a");
    let dead = format!("127.0.0.1:{}", free_port());
    let targets = vec![dead.clone(), a.addr.to_string()];
    // no health check: failover alone keeps GETs whole
    let gw = Gateway::start(|d, p| cfg(d, p, &targets, "round_robin", "", 1));
    for _ in 0..10 {
        assert_eq!(origin_of(&gw, "/prod/f"), (200, "a".to_string()));
    }
    // every target refusing: one try each, then a clear 502
    let dead2 = format!("127.0.0.1:{}", free_port());
    let all_dead = vec![dead, dead2];
    let gw2 = Gateway::start(|d, p| cfg(d, p, &all_dead, "round_robin", "", 5));
    let r = gw2.get("/prod/f");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("Bad Gateway") || r.text().contains("VPC link"), "{}", r.text());
    // TCP checks then mark both down: the answer says so
    let check = r#"health_check = { kind = "tcp", interval = "200ms", timeout = "100ms" }"#;
    let gw3 = Gateway::start(|d, p| cfg(d, p, &all_dead, "random", check, 0));
    eventually("both targets down", || all_dead.iter().all(|t| health(&gw3, t) == Some(0.0)));
    let r = gw3.get("/prod/f");
    assert_eq!(r.status, 502);
    eventually("the reason in the access log", || {
        gw3.access_log().contains("INTEGRATION_FAILURE") || gw3.access_log().contains("502")
    });
}

#[test]
fn consistent_hashing_keeps_a_client_on_one_target() {
    let (a, b, c) = (Origin::start("a"), Origin::start("b"), Origin::start("c"));
    let targets = vec![a.addr.to_string(), b.addr.to_string(), c.addr.to_string()];
    let gw = Gateway::start(|d, p| cfg(d, p, &targets, "consistent", "", 0));
    let first = origin_of(&gw, "/prod/c/0").1;
    for i in 1..15 {
        assert_eq!(origin_of(&gw, &format!("/prod/c/{i}")).1, first, "one client, one target");
    }
}

#[test]
fn vpc_link_config_errors_name_the_key() {
    let d = tempfile::tempdir().expect("dir");
    let f = d.path().join("edgegate.toml");
    let p = Ports::new();
    for (text, needle) in [
        (cfg(d.path(), &p, &["nope".into()], "round_robin", "", 0), "vpc_links[0].targets"),
        (cfg(d.path(), &p, &["127.0.0.1:1".into()], "fastest", "", 0), "vpc_links[0].balance"),
        (
            cfg(d.path(), &p, &["127.0.0.1:1".into()], "random", "health_check = { kind = \"udp\" }", 0),
            "health_check.kind",
        ),
        (
            cfg(d.path(), &p, &["127.0.0.1:1".into()], "random", "", 0).replace("link = \"grp\"", "link = \"other\""),
            "link",
        ),
    ] {
        std::fs::write(&f, text).expect("write");
        let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&f).output().expect("check");
        let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn unix_socket_targets_are_served() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("dir");
    let sock = dir.path().join("pets.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).expect("bind unix");
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = c.try_clone().expect("clone");
                let mut r = std::io::BufReader::new(c);
                while let Some(req) = read_request(&mut r) {
                    let target = req.target;
                    let body = format!("unix {target}");
                    let _ = w.write_all(
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes(),
                    );
                }
            });
        }
    });
    let targets = vec![format!("unix:{}", sock.display())];
    let gw = Gateway::start(|d, p| {
        cfg(
            d,
            p,
            &targets,
            "round_robin",
            r#"health_check = { kind = "http", path = "/health", interval = "200ms", timeout = "100ms" }"#,
            0,
        )
    });
    assert_eq!(gw.get("/prod/pets/1").text(), "unix /pets/1");
    eventually("the unix target to be checked healthy", || health(&gw, &targets[0]) == Some(1.0));
}
