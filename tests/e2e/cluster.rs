//! `[cluster]`: two gateway processes share key limits and quotas through a real Redis, and
//! `on_redis_error` decides what happens when Redis goes away.

use crate::common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("dir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by ./dev deps)");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        eventually("redis to listen", || std::net::TcpStream::connect(addr).is_ok());
        Redis { child, port, _dir: dir }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

const KEY: &str = "cluster-test-key-0123456789";
const QUOTA_KEY: &str = "cluster-quota-key-0123456789";

fn config(d: &std::path::Path, p: &Ports, redis_port: u16, on_error: &str) -> String {
    config_for(d, p, &format!("\"redis://127.0.0.1:{redis_port}/0\""), on_error)
}

/// The same config for any `[cluster] redis` value (TOML).
fn config_for(d: &std::path::Path, p: &Ports, redis: &str, on_error: &str) -> String {
    let hash = |k: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(k.as_bytes()))
    };
    std::fs::write(
        d.join("keys.toml"),
        format!(
            "[[keys]]\nid = \"k1\"\nhash = \"sha256:{}\"\nplan = \"gold\"\n[[keys]]\nid = \"k2\"\nhash = \"sha256:{}\"\nplan = \"metered\"\n",
            hash(KEY),
            hash(QUOTA_KEY)
        ),
    )
    .expect("keys");
    format!(
        r#"{server}
[cluster]
redis = {redis}
on_redis_error = "{on_error}"

[api_keys]
file = "keys.toml"

[[usage_plans]]
name = "gold"
stages = ["c:prod"]
throttle = {{ rate = 0.001, burst = 10 }}

[[usage_plans]]
name = "metered"
stages = ["c:prod"]
quota = {{ limit = 6, period = "day" }}

[[apis]]
name = "c"
[apis.stages.prod]
[[apis.routes]]
route = "GET /x"
integration = {{ type = "mock", body = "ok" }}
api_key_required = true
"#,
        server = server_section(d, p, "")
    )
}

#[test]
fn two_nodes_share_key_limits_and_quotas_and_survive_redis_loss() {
    let mut redis = Redis::start();
    let rp = redis.port;
    let a = Gateway::start(|d, p| config(d, p, rp, "local"));
    let b = Gateway::start(|d, p| config(d, p, rp, "deny"));
    let nodes = [&a, &b];

    let ok = (0..30).filter(|i| get(nodes[i % 2].addr(), "/prod/x", &[("x-api-key", KEY)]).status == 200).count();
    assert_eq!(ok, 10, "a burst of 10 shared by both nodes");
    let r = get(b.addr(), "/prod/x", &[("x-api-key", KEY)]);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());

    let ok = (0..12).filter(|i| get(nodes[i % 2].addr(), "/prod/x", &[("x-api-key", QUOTA_KEY)]).status == 200).count();
    assert_eq!(ok, 6, "a quota of 6 counted across both nodes");
    assert_eq!(get(a.addr(), "/prod/x", &[("x-api-key", QUOTA_KEY)]).json()["message"], "Limit Exceeded");

    // Redis goes away mid-run
    redis.stop();
    std::thread::sleep(Duration::from_millis(200));
    let r = get(a.addr(), "/prod/x", &[("x-api-key", KEY)]);
    assert_eq!(r.status, 200, "local: this node's own bucket decides: {}", r.text());
    let r = get(b.addr(), "/prod/x", &[("x-api-key", KEY)]);
    assert_eq!(r.status, 503, "deny: {}", r.text());
    eventually("the redis error metric", || {
        a.metrics().lines().any(|l| l.starts_with("edgegate_redis_errors_total ") && !l.ends_with(" 0"))
    });
    // the fallback decision is counted on the node that made it, by why Redis did not decide
    let fallbacks = |gw: &Gateway| -> f64 {
        gw.metrics()
            .lines()
            .filter(|l| l.starts_with("edgegate_cluster_fallback_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(fallbacks(&a) >= 1.0, "{}", a.metrics());
    assert_eq!(fallbacks(&b), 0.0, "deny makes no local decision");
    assert!(b.metrics().contains("edgegate_cluster_fallback_total{reason=\"unreachable\"} 0"));
    // requests without a key never needed Redis
    assert_eq!(b.get("/prod/x").status, 403);
}

/// A Redis Cluster of three masters on loopback ports, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("dir");
        let mut ports = vec![];
        let mut nodes = vec![];
        while ports.len() < 3 {
            let port = free_port();
            // the cluster bus listens on port + 10000
            if port > 55_000 || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let d = dir.path().join(port.to_string());
            std::fs::create_dir(&d).expect("dir");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
                .current_dir(&d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            eventually("a cluster node to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
            ports.push(port);
            nodes.push(child);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let c = RedisCluster { nodes, ports, _dir: dir };
        for p in &c.ports {
            eventually("the cluster to be ok", || {
                Command::new("redis-cli")
                    .args(["-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
        }
        c
    }

    pub fn seeds(&self) -> String {
        let list: Vec<String> = self.ports.iter().map(|p| format!("\"redis://127.0.0.1:{p}\"")).collect();
        format!("[{}]", list.join(", "))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Key limits and quotas shared through a real three-master Redis Cluster: the script's keys of
/// one API key share a hash slot, whichever master holds it.
#[test]
fn a_redis_cluster_shares_key_limits_and_quotas() {
    let rc = RedisCluster::start();
    let seeds = rc.seeds();
    let a = Gateway::start(|d, p| config_for(d, p, &seeds, "deny"));
    let b = Gateway::start(|d, p| config_for(d, p, &seeds, "deny"));
    let nodes = [&a, &b];
    let ok = (0..30).filter(|i| get(nodes[i % 2].addr(), "/prod/x", &[("x-api-key", KEY)]).status == 200).count();
    assert_eq!(ok, 10, "a burst of 10 shared by both nodes: {}", a.stderr());
    let ok = (0..12).filter(|i| get(nodes[i % 2].addr(), "/prod/x", &[("x-api-key", QUOTA_KEY)]).status == 200).count();
    assert_eq!(ok, 6, "a quota of 6 counted across both nodes");
    // the keys live on the cluster, in one slot per API key
    let slots: std::collections::HashSet<String> = rc
        .ports
        .iter()
        .flat_map(|p| {
            let out =
                Command::new("redis-cli").args(["-p", &p.to_string(), "keys", "edgegate:*"]).output().expect("cli");
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
        })
        .filter(|k| k.contains("k1"))
        .collect();
    assert!(!slots.is_empty(), "the limit keys are in the cluster");
}

/// A master found through Sentinel.
#[test]
fn a_sentinel_names_the_master_for_key_limits() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("dir");
    let sport = free_port();
    std::fs::write(
        dir.path().join("sentinel.conf"),
        format!("port {sport}\nbind 127.0.0.1\nsentinel monitor main 127.0.0.1 {} 1\n", redis.port),
    )
    .expect("conf");
    let mut sentinel = Command::new("redis-server")
        .arg(dir.path().join("sentinel.conf"))
        .arg("--sentinel")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server --sentinel");
    eventually("the sentinel to listen", || std::net::TcpStream::connect(("127.0.0.1", sport)).is_ok());
    let target = format!("\"redis-sentinel://127.0.0.1:{sport}/main\"");
    let a = Gateway::start(|d, p| config_for(d, p, &target, "deny"));
    let b = Gateway::start(|d, p| config_for(d, p, &target, "deny"));
    let nodes = [&a, &b];
    let ok = (0..30).filter(|i| get(nodes[i % 2].addr(), "/prod/x", &[("x-api-key", KEY)]).status == 200).count();
    let _ = sentinel.kill();
    let _ = sentinel.wait();
    assert_eq!(ok, 10, "a burst of 10 shared through the master Sentinel names: {}", a.stderr());
}
