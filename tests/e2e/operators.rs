//! What ships for operators (`contrib/`): the alert rules pass `promtool check rules` and their
//! own `promtool test rules`; the Grafana dashboard is well formed; and a real Prometheus,
//! scraping a gateway that served every kind of traffic, answers every query of the dashboard
//! and of the alerts without error, with data where the traffic made some.

use crate::common::*;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DASHBOARD: &str = "contrib/grafana/edgegate.json";
const ALERTS: &str = "contrib/prometheus/alerts.yml";

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir("contrib/prometheus")
        .output()
        .expect("promtool (Debian's prometheus package; ./dev deps installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_their_tests() {
    assert!(promtool(&["check", "rules", "alerts.yml"]).contains("SUCCESS: 7 rules found"));
    assert!(promtool(&["test", "rules", "alerts_test.yml"]).contains("SUCCESS"));
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(DASHBOARD).expect("dashboard")).expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard (panels and annotations) and of the alert rules.
fn queries() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((format!("panel {:?}", p["title"]), t["expr"].as_str().expect("expr").to_string()));
        }
    }
    for a in d["annotations"]["list"].as_array().expect("annotations") {
        out.push(("annotation".into(), a["expr"].as_str().expect("expr").to_string()));
    }
    let rules: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(ALERTS).expect("alerts")).expect("alerts YAML");
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            out.push((format!("alert {}", r["alert"]), r["expr"].as_str().expect("expr").to_string()));
        }
    }
    out
}

/// The metric families a query names (a histogram's `_bucket` is its family).
fn families(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"edgegate_[a-z_]+").expect("re");
    re.find_iter(expr)
        .map(|m| m.as_str().trim_end_matches("_bucket").trim_end_matches("_count").trim_end_matches("_sum").to_string())
        .collect()
}

#[test]
fn the_dashboard_is_a_well_formed_grafana_dashboard() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert_eq!(d["uid"], "edgegate");
    let vars: Vec<&str> =
        d["templating"]["list"].as_array().expect("vars").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(vars, ["datasource", "api", "stage"]);
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        assert!(ids.insert(p["id"].as_u64().expect("id")), "ids are unique");
        let g = &p["gridPos"];
        assert!(["h", "w", "x", "y"].iter().all(|k| g[k].is_u64()), "gridPos of {p}");
        assert!(g["x"].as_u64().unwrap_or(99) + g["w"].as_u64().unwrap_or(99) <= 24);
        if p["type"] == "row" {
            continue;
        }
        assert!(titles.insert(p["title"].as_str().expect("title").to_string()), "titles are unique");
        assert_eq!(p["datasource"]["type"], "prometheus", "{}", p["title"]);
        assert_eq!(p["datasource"]["uid"], "${datasource}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has targets", p["title"]);
        let refs: BTreeSet<&str> = targets.iter().filter_map(|t| t["refId"].as_str()).collect();
        assert_eq!(refs.len(), targets.len(), "refIds are unique in {}", p["title"]);
    }
    // what the issue asks the dashboard to show, by the metric family each panel reads
    let shown: BTreeSet<String> = queries().iter().flat_map(|(_, e)| families(e)).collect();
    for f in [
        "edgegate_requests_total",
        "edgegate_request_duration_seconds",
        "edgegate_integration_duration_seconds",
        "edgegate_throttled_total",
        "edgegate_cache_requests_total",
        "edgegate_authorizer_cache_total",
        "edgegate_upstream_health",
        "edgegate_websocket_connections",
        "edgegate_websocket_messages_total",
        "edgegate_config_reloads_total",
        "edgegate_trace_export_failures_total",
        "edgegate_cluster_fallback_total",
    ] {
        assert!(shown.contains(f), "{f} is on the dashboard or in an alert");
    }
}

/// A gateway with every kind of traffic: cached, throttled, refused by a JWT and a Lambda-style
/// authorizer, a VPC link, a dead origin, a WebSocket API; Redis and tracing configured.
fn busy_gateway(redis: u16) -> (Gateway, Service) {
    let origin = Origin::start("o");
    let authz = token_authorizer();
    let (ws, _) = echo_events();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(|d, p| {
        crate::jwt::write_jwks(d);
        format!(
            r#"{server}
[cluster]
redis = "redis://127.0.0.1:{redis}/0"
[tracing]
otlp_endpoint = "{dead}"
sample_ratio = 0.5
[authorizers.users]
type = "jwt"
issuer = "https://auth.example.test/"
audience = ["pets-api"]
jwks = "jwks.json"
algorithms = ["RS256"]
{tok}
[[vpc_links]]
name = "grp"
targets = ["{target}"]
[[apis]]
name = "pets"
[apis.stages.prod]
cache = {{ ttl = "60s" }}
[apis.integrations.up]
type = "http"
uri = "{origin}"
[apis.integrations.gone]
type = "http"
uri = "{dead}"
[apis.integrations.private]
type = "vpc_link"
link = "grp"
[[apis.routes]]
route = "GET /cached/{{id}}"
integration = "up"
cache = {{ key = ["path.id"] }}
[[apis.routes]]
route = "GET /tight"
integration = "up"
throttle = {{ rate = 0.001, burst = 1 }}
[[apis.routes]]
route = "GET /me"
integration = "up"
authorizer = "users"
[[apis.routes]]
route = "GET /team"
integration = "up"
authorizer = "tok"
[[apis.routes]]
route = "GET /down"
integration = "gone"
[[apis.routes]]
route = "GET /private"
integration = "private"
[[apis]]
name = "chat"
protocol = "websocket"
base_path = "/chat"
route_selection = "$request.body.action"
[apis.stages.prod]
[apis.integrations.be]
type = "http"
uri = "{ws}/ws"
[[apis.routes]]
route = "$default"
integration = "be"
"#,
            server = server_section(d, p, ""),
            tok = token_authorizer_section("tok", &authz.base, "60s"),
            target = origin.addr,
            origin = origin.url(),
        )
    });
    std::mem::forget(origin);
    (gw, authz)
}

fn traffic(gw: &Gateway) -> crate::websocket::Client {
    for i in 0..3 {
        assert_eq!(gw.get("/prod/cached/1").status, 200, "{i}");
    }
    assert_eq!(gw.get("/prod/tight").status, 200);
    assert_eq!(gw.get("/prod/tight").status, 429);
    assert_eq!(gw.get("/prod/me").status, 401);
    for _ in 0..2 {
        assert_eq!(get(gw.addr(), "/prod/team", &[("x-token", "good")]).status, 200);
    }
    assert_eq!(gw.get("/prod/down").status, 502);
    assert_eq!(gw.get("/prod/private").status, 200);
    // a client-caused protocol error: an HTTP/2 preface that is not one
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(gw.addr()).expect("connect");
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").expect("write");
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let _ = s.read_to_end(&mut Vec::new());
    }
    let mut c = crate::websocket::connect(gw.addr(), "/prod/chat", &[]).expect("accepted");
    c.send(tungstenite::Message::text("hi")).expect("send");
    assert_eq!(crate::websocket::text(&mut c), "echo:hi");
    c
}

/// Every metric family the dashboard and the alerts name is in `/metrics` after the traffic;
/// then a real Prometheus scrapes the gateway and answers every one of their queries (with
/// Grafana's variables filled in) without error, and with data for the traffic sent.
#[test]
fn prometheus_answers_every_dashboard_and_alert_query() {
    let redis = crate::cluster::Redis::start();
    let (gw, _authz) = busy_gateway(redis.port);
    let _ws = traffic(&gw);
    let metrics = gw.metrics();
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    for (what, expr) in queries() {
        for f in families(&expr) {
            assert!(exported.contains(&f), "{what} names {f}, which /metrics does not export:\n{metrics}");
        }
    }

    // a real Prometheus scraping the admin listener every second
    let dir = tempfile::tempdir().expect("tmp");
    let web = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: edgegate\n    static_configs:\n      - targets: [\"{}\"]\n",
            std::fs::canonicalize(ALERTS).expect("alerts").display(),
            gw.admin()
        ),
    )
    .expect("config");
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
        .spawn()
        .expect("prometheus (Debian's prometheus package; ./dev deps installs it)");
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{web}").parse().expect("addr");
    let query = |expr: &str| -> serde_json::Value {
        let q: String = url_encode(expr);
        let raw = format!("GET /api/v1/query?query={q} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n");
        match try_request(prom_addr, raw.as_bytes()) {
            Ok(r) => serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null, // not listening yet
        }
    };
    // wait for a few scrapes (rate() needs two samples), with more traffic between them
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = query("count_over_time(edgegate_requests_total[1m])");
        let samples = v["data"]["result"].as_array().and_then(|r| r.first()).and_then(|s| s["value"][1].as_str());
        if samples.and_then(|s| s.parse::<u32>().ok()).is_some_and(|n| n >= 3) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape the gateway: {v}");
        let _ = gw.get("/prod/cached/1");
        std::thread::sleep(Duration::from_millis(500));
    }
    for _ in 0..3 {
        let _ = gw.get("/prod/cached/1");
        let _ = get(gw.addr(), "/prod/team", &[("x-token", "good")]);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let fill = |e: &str| {
        e.replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$api", ".*")
            .replace("$stage", ".*")
            .replace("${datasource}", "")
    };
    let mut empty = Vec::new();
    for (what, expr) in queries() {
        let v = query(&fill(&expr));
        assert_eq!(v["status"], "success", "{what}: {expr}: {v}");
        if v["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
            empty.push(what);
        }
    }
    // with the traffic above, these panels have data (the others read failures that did not
    // happen: 5xx ratio and alerts' thresholds, Redis fallback, reload errors)
    for must in [
        "panel \"Requests/s by API and stage\"",
        "panel \"Request latency p99 by route\"",
        "panel \"Throttled/s by reason\"",
        "panel \"Authorization failures/s\"",
        "panel \"Authorizer cache hit ratio\"",
        "panel \"Stage cache hit ratio\"",
        "panel \"VPC link targets healthy\"",
        "panel \"WebSocket connections\"",
        "panel \"Integration failures/s by kind\"",
        "panel \"Running config version\"",
        "panel \"Config reloads\"",
    ] {
        assert!(!empty.iter().any(|e| e == must), "{must} has no data: {empty:?}");
    }
    let _ = prom.kill();
    let _ = prom.wait();
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
