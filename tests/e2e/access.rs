//! Access control: resource policies.

use crate::common::*;

fn policy_config(d: &std::path::Path, p: &Ports) -> String {
    format!(
        r#"{server}
[[apis]]
name = "guarded"
base_path = "/g"
[apis.policy]
allow_cidrs = ["127.0.0.0/8"]
deny_cidrs = ["127.0.0.2/32"]
require_headers = {{ "x-vpce-id" = "vpce-1" }}
[apis.stages.prod]
[[apis.routes]]
route = "GET /ping"
integration = {{ type = "mock", body = "pong" }}

[[apis]]
name = "tenants"
base_path = "/t"
[apis.policy]
allow_cidrs = ["10.0.0.0/8"]
[apis.stages.prod]
[[apis.routes]]
route = "GET /ping"
integration = {{ type = "mock", body = "tenant pong {{{{ context.identity.sourceIp }}}}" }}
"#,
        server = server_section(d, p, "trusted_proxies = [\"127.0.0.3/32\"]")
    )
}

#[test]
fn resource_policies_allow_deny_and_require_headers() {
    let gw = Gateway::start(policy_config);
    let vpce = [("x-vpce-id", "vpce-1")];
    assert_eq!(get_from("127.0.0.1", gw.addr(), "/prod/g/ping", &vpce).text(), "pong");
    let r = get_from("127.0.0.1", gw.addr(), "/prod/g/ping", &[]);
    assert_eq!((r.status, r.json()["message"].as_str()), (403, Some("Forbidden")), "missing required header");
    assert_eq!(get_from("127.0.0.1", gw.addr(), "/prod/g/ping", &[("x-vpce-id", "vpce-2")]).status, 403);
    assert_eq!(get_from("127.0.0.2", gw.addr(), "/prod/g/ping", &vpce).status, 403, "deny wins over allow");
    // a denied client does not learn which routes exist
    assert_eq!(get_from("127.0.0.2", gw.addr(), "/prod/g/nothing", &vpce).status, 403);
    // a forged X-Forwarded-For from an untrusted peer changes nothing
    let spoof = [("x-vpce-id", "vpce-1"), ("X-Forwarded-For", "127.0.0.1")];
    assert_eq!(get_from("127.0.0.2", gw.addr(), "/prod/g/ping", &spoof).status, 403);
    let line = gw.wait_log("ACCESS_DENIED");
    assert!(line.contains("\"status\":403"), "{line}");
    eventually("the denial metric", || {
        gw.metrics().contains(
            r#"edgegate_auth_failures_total{api="guarded",authorizer="policy",reason="deny_cidrs",stage="prod"}"#,
        )
    });
}

#[test]
fn policies_see_the_client_behind_a_trusted_proxy_only() {
    let gw = Gateway::start(policy_config);
    assert_eq!(get_from("127.0.0.1", gw.addr(), "/prod/t/ping", &[]).status, 403);
    assert_eq!(get_from("127.0.0.1", gw.addr(), "/prod/t/ping", &[("X-Forwarded-For", "10.1.2.3")]).status, 403);
    let r = get_from("127.0.0.3", gw.addr(), "/prod/t/ping", &[("X-Forwarded-For", "10.1.2.3")]);
    assert_eq!((r.status, r.text().as_str()), (200, "tenant pong 10.1.2.3"));
    // the trusted proxy cannot launder a denied address through a longer chain
    let r = get_from("127.0.0.3", gw.addr(), "/prod/t/ping", &[("X-Forwarded-For", "10.1.2.3, 192.0.2.1")]);
    assert_eq!(r.status, 403, "the rightmost untrusted hop is the client");
}

/// Runs `edgegate keys create`; returns (key, key-file entry).
pub fn create_key(plan: &str, name: &str) -> (String, String) {
    let out = std::process::Command::new(BIN)
        .args(["keys", "create", "--plan", plan, "--name", name])
        .output()
        .expect("keys");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text.lines().next().and_then(|l| l.rsplit(' ').next()).expect("key line").to_string();
    let entry: String = text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    (key, entry)
}

fn key_id(entry: &str) -> String {
    entry.lines().find_map(|l| l.strip_prefix("id = \"")).map(|s| s.trim_end_matches('"').to_string()).expect("id")
}

struct Keys {
    gold: String,
    gold_entry: String,
    silver: String,
    disabled: String,
    file: String,
}

fn keys() -> Keys {
    let (gold, gold_entry) = create_key("gold", "acme");
    let (silver, silver_entry) = create_key("silver", "beta");
    let (disabled, disabled_entry) = create_key("gold", "gone");
    let disabled_entry = disabled_entry.replace("enabled = true", "enabled = false");
    let file = format!("{gold_entry}\n{silver_entry}\n{disabled_entry}");
    Keys { gold, gold_entry, silver, disabled, file }
}

fn keyed_config(d: &std::path::Path, p: &Ports, keys_file: &str, defaults: &str) -> String {
    std::fs::write(d.join("keys.toml"), keys_file).expect("keys file");
    format!(
        r#"{server}
{defaults}
[api_keys]
file = "keys.toml"

[[usage_plans]]
name = "gold"
stages = ["k:prod"]
throttle = {{ rate = 0.001, burst = 20 }}
route_throttle = {{ "k:prod:GET /tight" = {{ rate = 0.001, burst = 2 }} }}

[[usage_plans]]
name = "silver"
stages = ["k:dev"]
quota = {{ limit = 3, period = "day" }}

[[apis]]
name = "k"
[apis.stages.prod]
[apis.stages.dev]
[apis.stages.busy]
throttle = {{ rate = 0.001, burst = 4 }}
[apis.integrations.ok]
type = "mock"
body = "ok"
[[apis.routes]]
route = "GET /key"
integration = "ok"
api_key_required = true
[[apis.routes]]
route = "GET /tight"
integration = "ok"
api_key_required = true
[[apis.routes]]
route = "GET /open"
integration = "ok"
throttle = {{ rate = 0.001, burst = 5 }}
[[apis.routes]]
route = "GET /free"
integration = "ok"
"#,
        server = server_section(d, p, "")
    )
}

#[test]
fn api_keys_are_checked_against_usage_plans() {
    let k = keys();
    let file = k.file.clone();
    let gw = Gateway::start(move |d, p| keyed_config(d, p, &file, ""));
    let r = gw.get("/prod/key");
    assert_eq!((r.status, r.json()["message"].as_str()), (403, Some("Missing Authentication Token")));
    let r = get(gw.addr(), "/prod/key", &[("x-api-key", "not-a-key")]);
    assert_eq!((r.status, r.json()["message"].as_str()), (403, Some("Forbidden")));
    assert_eq!(get(gw.addr(), "/prod/key", &[("x-api-key", &k.disabled)]).status, 403, "disabled key");
    assert_eq!(get(gw.addr(), "/prod/key", &[("x-api-key", &k.silver)]).status, 403, "plan without this stage");
    assert_eq!(get(gw.addr(), "/dev/key", &[("x-api-key", &k.silver)]).status, 200);
    let r = get(gw.addr(), "/prod/key", &[("x-api-key", &k.gold), ("X-Request-Id", "with-key")]);
    assert_eq!(r.status, 200);
    let line = gw.wait_log("with-key");
    assert!(line.contains(&format!("\"apiKeyId\":\"{}\"", key_id(&k.gold_entry))), "{line}");
    assert!(!gw.access_log().contains(&k.gold), "the key itself is never logged");
    gw.wait_log("API_KEY_INVALID");
    gw.wait_log("MISSING_AUTHENTICATION_TOKEN");

    // the key file reloads like the config: disable the gold key
    let disabled = k.file.replacen("enabled = true", "enabled = false", 1);
    let tmp = gw.dir.path().join(".keys.tmp");
    std::fs::write(&tmp, disabled).expect("write");
    std::fs::rename(&tmp, gw.dir.path().join("keys.toml")).expect("rename");
    eventually("the disabled key to be refused", || {
        get(gw.addr(), "/prod/key", &[("x-api-key", &k.gold)]).status == 403
    });
}

#[test]
fn bursts_are_exact_across_threads_and_429_says_when() {
    let k = keys();
    let file = k.file.clone();
    let gw = Gateway::start(move |d, p| keyed_config(d, p, &file, ""));
    let addr = gw.addr();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let key = k.gold.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| get(addr, "/prod/key", &[("x-api-key", &key), ("X-Forwarded-For", "10.9.9.9")]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<Response> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
    let ok = all.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 20, "a burst of 20 admits exactly 20 of 60 concurrent requests");
    let refused: Vec<&Response> = all.iter().filter(|r| r.status == 429).collect();
    assert_eq!(refused.len(), 40);
    let r = refused[0];
    assert_eq!(r.json()["message"], "Too Many Requests");
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1), "{:?}", r.headers);
    assert_eq!(r.header("ratelimit-limit"), Some("20"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let fine = all.iter().find(|r| r.status == 200).expect("a 200");
    assert_eq!(fine.header("ratelimit-limit"), Some("20"));
    eventually("the throttle metric", || {
        gw.metrics().contains(r#"edgegate_throttled_total{api="k",reason="key",stage="prod"} 40"#)
    });
}

#[test]
fn route_stage_account_limits_and_quotas() {
    let k = keys();
    let file = k.file.clone();
    let gw = Gateway::start(move |d, p| keyed_config(d, p, &file, ""));
    // route throttle (no key)
    let codes: Vec<u16> = (0..7).map(|_| gw.get("/prod/open").status).collect();
    assert_eq!(codes, vec![200, 200, 200, 200, 200, 429, 429]);
    // stage throttle
    let codes: Vec<u16> = (0..6).map(|_| gw.get("/busy/free").status).collect();
    assert_eq!(codes, vec![200, 200, 200, 200, 429, 429]);
    // per key on one route: burst 2 on GET /tight, while GET /key still has room
    let tight: Vec<u16> = (0..3).map(|_| get(gw.addr(), "/prod/tight", &[("x-api-key", &k.gold)]).status).collect();
    assert_eq!(tight, vec![200, 200, 429]);
    assert_eq!(get(gw.addr(), "/prod/key", &[("x-api-key", &k.gold)]).status, 200);
    // quota: 3 a day for silver
    let q: Vec<u16> = (0..4).map(|_| get(gw.addr(), "/dev/key", &[("x-api-key", &k.silver)]).status).collect();
    assert_eq!(q, vec![200, 200, 200, 429]);
    let r = get(gw.addr(), "/dev/key", &[("x-api-key", &k.silver)]);
    assert_eq!(r.json()["message"], "Limit Exceeded");
    let secs: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("retry-after");
    assert!((1..=86_400).contains(&secs), "until the next UTC day: {secs}");
    gw.wait_log("QUOTA_EXCEEDED");
    eventually("reasons in the metric", || {
        let m = gw.metrics();
        ["reason=\"route\"", "reason=\"stage\"", "reason=\"key\"", "reason=\"quota\""].iter().all(|r| m.contains(r))
    });

    // limiter state survives a reload that keeps the limit
    let (d, p) = (gw.dir.path().to_path_buf(), &gw.ports);
    gw.write_config(&(keyed_config(&d, p, &k.file, "") + "\n# touched\n"));
    eventually("reload", || gw.metrics().contains("edgegate_config_reloads_total{result=\"ok\"} 1"));
    assert_eq!(gw.get("/prod/open").status, 429, "the route bucket was not refilled by the reload");
}

#[test]
fn the_account_limit_comes_first() {
    let k = keys();
    let file = k.file.clone();
    let gw = Gateway::start(move |d, p| keyed_config(d, p, &file, "[defaults.throttle]\nrate = 0.001\nburst = 3\n"));
    let codes: Vec<u16> = (0..4).map(|_| gw.get("/prod/free").status).collect();
    assert_eq!(codes, vec![200, 200, 200, 429]);
    eventually("account reason", || gw.metrics().contains(r#"reason="account""#));
}

fn date(offset_days: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("{offset_days} days"), "+%F"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn usage_config(d: &std::path::Path, p: &Ports, keys: &str, cluster: &str) -> String {
    std::fs::write(d.join("keys.toml"), keys).expect("keys file");
    format!(
        r#"{server}
{cluster}
[api_keys]
file = "keys.toml"
[[usage_plans]]
name = "metered"
stages = ["u:prod"]
quota = {{ limit = 5, period = "day" }}
[[usage_plans]]
name = "open"
stages = ["u:dev"]
[[apis]]
name = "u"
[apis.stages.prod]
[apis.stages.dev]
[[apis.routes]]
route = "GET /x"
integration = {{ type = "mock", body = "ok" }}
api_key_required = true
"#,
        server = server_section(d, p, "")
    )
}

/// `GET /usage/{plan}`: AWS GetUsage's shape, per key and day, [used, remaining]; refused
/// requests are not used; a plan without a quota has no remaining; bad input is refused.
#[test]
fn usage_reports_per_key_and_day() {
    let (m1, m1_entry) = create_key("metered", "m1");
    let (m2, m2_entry) = create_key("metered", "m2");
    let (o1, o1_entry) = create_key("open", "o1");
    let file = format!("{m1_entry}\n{m2_entry}\n{o1_entry}");
    let gw = Gateway::start(|d, p| usage_config(d, p, &file, ""));
    let statuses: Vec<u16> = (0..7).map(|_| get(gw.addr(), "/prod/x", &[("x-api-key", &m1)]).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert_eq!(get(gw.addr(), "/prod/x", &[("x-api-key", &m2)]).status, 200);
    for _ in 0..3 {
        assert_eq!(get(gw.addr(), "/dev/x", &[("x-api-key", &o1)]).status, 200);
    }
    let (start, today, end) = (date(-2), date(0), date(1));
    let r = get(gw.admin(), &format!("/usage/metered?startDate={start}&endDate={end}"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["usagePlanId"].as_str(), v["startDate"].as_str(), v["endDate"].as_str()),
        (Some("metered"), Some(start.as_str()), Some(end.as_str()))
    );
    let (id1, id2, ido) = (key_id(&m1_entry), key_id(&m2_entry), key_id(&o1_entry));
    assert_eq!(v["items"][&id1], serde_json::json!([[0, 5], [0, 5], [5, 0], [0, 5]]), "{v}");
    assert_eq!(v["items"][&id2], serde_json::json!([[0, 5], [0, 5], [1, 4], [0, 5]]));
    assert!(v["items"].get(&ido).is_none(), "only the plan's keys");
    let r = get(gw.admin(), &format!("/usage/open?startDate={today}&endDate={today}&keyId={ido}"), &[]);
    assert_eq!(r.json()["items"], serde_json::json!({ido.clone(): [[3, null]]}), "no quota: remaining is null");
    for (q, status) in [
        (format!("/usage/none?startDate={today}&endDate={today}"), 404),
        (format!("/usage/metered?startDate={today}&endDate={today}&keyId={ido}"), 404),
        (format!("/usage/metered?startDate={today}"), 400),
        ("/usage/metered?startDate=2026-02-30&endDate=2026-03-01".to_string(), 400),
        ("/usage/metered?startDate=2026-1-01&endDate=2026-03-01".to_string(), 400),
        (format!("/usage/metered?startDate={end}&endDate={start}"), 400),
        ("/usage/metered?startDate=2020-01-01&endDate=2026-01-01".to_string(), 400),
    ] {
        let r = get(gw.admin(), &q, &[]);
        assert_eq!(r.status, status, "{q}: {}", r.text());
        assert!(r.json()["message"].is_string());
    }
    // the public listener does not serve it
    assert_eq!(get(gw.addr(), &format!("/usage/metered?startDate={today}&endDate={today}"), &[]).status, 404);
}

/// With `[cluster] redis` the report is cluster-wide: two nodes count into Redis, and either
/// reports the sum.
#[test]
fn usage_reports_are_cluster_wide() {
    let redis = crate::cluster::Redis::start();
    let (k, entry) = create_key("metered", "shared");
    let cluster = format!("[cluster]\nredis = \"redis://127.0.0.1:{}/0\"\n", redis.port);
    let a = Gateway::start(|d, p| usage_config(d, p, &entry, &cluster));
    let b = Gateway::start(|d, p| usage_config(d, p, &entry, &cluster));
    for gw in [&a, &b, &a] {
        assert_eq!(get(gw.addr(), "/prod/x", &[("x-api-key", &k)]).status, 200);
    }
    let today = date(0);
    let id = key_id(&entry);
    for gw in [&a, &b] {
        let r = get(gw.admin(), &format!("/usage/metered?startDate={today}&endDate={today}"), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["items"][&id], serde_json::json!([[3, 2]]), "{}", r.text());
    }
}
