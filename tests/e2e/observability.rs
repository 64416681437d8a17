//! Admin endpoints, metrics and the access log.

use crate::common::*;

fn cfg(d: &std::path::Path, p: &Ports) -> String {
    format!(
        r#"{server}
[[apis]]
name = "obs"
[apis.stages.prod]
[[apis.routes]]
route = "GET /items/{{id}}"
integration = {{ type = "mock", body = "ok" }}
"#,
        server = server_section(d, p, "")
    )
}

#[test]
fn admin_endpoints_answer() {
    let gw = Gateway::start(cfg);
    assert_eq!(get(gw.admin(), "/healthz", &[]).status, 200);
    assert_eq!(get(gw.admin(), "/readyz", &[]).status, 200);
    let c = get(gw.admin(), "/config", &[]).json();
    assert_eq!(c["version"].as_str().map(str::len), Some(16));
    assert!(c["files"][0].as_str().is_some_and(|f| f.ends_with("edgegate.toml")));
    assert_eq!(get(gw.admin(), "/nope", &[]).status, 404);
    // the admin API is not on the public listener
    assert_eq!(gw.get("/metrics").status, 404);
}

#[test]
fn metrics_use_route_keys_not_raw_paths() {
    let gw = Gateway::start(cfg);
    for id in 0..5 {
        assert_eq!(gw.get(&format!("/prod/items/{id}")).status, 200);
    }
    let _ = send(gw.addr(), "BREW", "/prod/items/1", &[], b"");
    // metrics are recorded in the logging phase, just after the response is sent
    eventually("the BREW request to be counted", || gw.metrics().contains(r#"method="OTHER""#));
    let m = gw.metrics();
    assert!(
        m.contains(
            r#"edgegate_requests_total{api="obs",method="GET",route="GET /items/{id}",stage="prod",status="200"} 5"#
        ),
        "{m}"
    );
    assert!(!m.contains("/prod/items/3"), "raw paths never become labels");
    assert!(m.contains(r#"method="OTHER""#), "unknown methods are folded: {m}");
    for name in [
        "edgegate_request_duration_seconds_bucket",
        "edgegate_config_info{version=",
        "edgegate_config_reloads_total{result=\"ok\"} 0",
        "edgegate_config_reloads_total{result=\"error\"} 0",
    ] {
        assert!(m.contains(name), "{name} missing:\n{m}");
    }
}

#[test]
fn access_log_has_the_contract_fields_and_no_secrets() {
    let gw = Gateway::start(cfg);
    let r = get(
        gw.addr(),
        "/prod/items/9",
        &[
            ("Authorization", "Bearer sekret-token"),
            ("x-api-key", "sekret-key"),
            ("Cookie", "sid=sekret"),
            ("User-Agent", "tester/1"),
        ],
    );
    assert_eq!(r.status, 200);
    let line = gw.wait_log("/prod/items/9");
    let j: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
    for k in [
        "requestId",
        "ip",
        "requestTime",
        "httpMethod",
        "path",
        "routeKey",
        "status",
        "protocol",
        "responseLength",
        "latency",
        "apiId",
        "stage",
        "userAgent",
    ] {
        assert!(j.get(k).is_some(), "{k} missing in {line}");
    }
    assert_eq!(j["routeKey"], "GET /items/{id}");
    assert_eq!(j["status"], 200);
    assert_eq!(j["requestId"].as_str(), r.header("x-request-id"));
    assert_eq!(j["userAgent"], "tester/1");
    assert!(!line.contains("sekret"), "a secret reached the log: {line}");
}
