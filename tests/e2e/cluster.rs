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
redis = "redis://127.0.0.1:{redis_port}/0"
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
    // requests without a key never needed Redis
    assert_eq!(b.get("/prod/x").status, 403);
}
