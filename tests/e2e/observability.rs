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

fn counter(gw: &Gateway, name: &str, kind: &str) -> f64 {
    let key = format!("{name}{{kind=\"{kind}\"}} ");
    gw.metrics().lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

fn error_lines(gw: &Gateway) -> Vec<String> {
    gw.stderr().lines().filter(|l| l.contains("ERROR")).map(str::to_string).collect()
}

#[test]
fn an_origin_that_is_down_is_summarised_not_logged_per_request() {
    // a port nothing listens on
    let dead = free_port();
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "down"
[apis.stages.prod]
[[apis.routes]]
route = "GET /x"
integration = {{ type = "http", uri = "http://127.0.0.1:{dead}/x", retries = 0 }}
"#,
            server = server_section(d, p, "")
        )
    });
    let t = std::time::Instant::now();
    for _ in 0..300 {
        assert_eq!(gw.get("/prod/x").status, 502);
    }
    let secs = t.elapsed().as_secs() + 2;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    eventually("the failures to be counted", || {
        counter(&gw, "edgegate_upstream_errors_total", "connect_refused") >= 300.0
    });
    let errors = error_lines(&gw);
    // the first failure at once, then at most one summary a second
    assert!(errors.len() as u64 <= secs + 1, "{} ERROR lines in ~{secs}s:\n{}", errors.len(), errors.join("\n"));
    assert!(
        errors.iter().any(|l| l.contains(&format!("127.0.0.1:{dead}")) && l.contains("more failures")),
        "{errors:?}"
    );
}

#[test]
fn client_protocol_errors_are_counted_not_logged_as_errors() {
    use std::io::{Read, Write};
    let gw = Gateway::start(|d, p| {
        Pki::create(d, &["default.test"]);
        format!(
            r#"{server}
[tls]
listen = ["127.0.0.1:{tls}"]
[[tls.certificates]]
sni = ["default.test"]
cert = "default.test.pem"
key = "default.test.key"
[[apis]]
name = "c"
[apis.stages.prod]
[[apis.routes]]
route = "GET /ok"
integration = {{ type = "mock", body = "ok" }}
"#,
            server = server_section(d, p, ""),
            tls = p.tls
        )
    });
    for _ in 0..50 {
        // not TLS on the TLS listener
        if let Ok(mut s) = std::net::TcpStream::connect(gw.tls_addr()) {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok();
            let _ = s.read(&mut [0u8; 64]);
        }
        // an HTTP/2 preface that is not one, on the h2c listener: GOAWAY(PROTOCOL_ERROR)
        let mut s = std::net::TcpStream::connect(gw.addr()).expect("connect");
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").expect("write");
        s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(buf.len() >= 17 && buf[3] == 7 && buf[13..17] == [0, 0, 0, 1], "GOAWAY expected, got {buf:?}");
    }
    // a real HTTP/1 request still takes the HTTP/1 path
    assert_eq!(gw.get("/prod/ok").text(), "ok");
    eventually("the handshake errors to be counted", || {
        counter(&gw, "edgegate_downstream_errors_total", "tls_handshake") >= 50.0
            && counter(&gw, "edgegate_downstream_errors_total", "h2_preface") >= 50.0
    });
    let errors = error_lines(&gw);
    assert!(errors.is_empty(), "client-caused errors logged as ERROR:\n{}", errors.join("\n"));
}

/// `server.access_log_format`: AWS-style `$context` templates (CLF here), compiled at load;
/// client-chosen text is escaped so it cannot forge a field or a line; an unknown variable is
/// refused at FILE:LINE by `check` and by a reload, which keeps the running format.
#[test]
fn access_log_formats_are_aws_context_templates() {
    let clf = r#"access_log_format = '$context.identity.sourceIp - - [$context.requestTime] "$context.httpMethod $context.path $context.protocol" $context.status $context.responseLength $context.requestId "$context.identity.userAgent" $context.routeKey $context.identity.apiKeyId'"#;
    let gw = Gateway::start(|d, p| cfg(d, p).replacen("[server]\n", &format!("[server]\n{clf}\n"), 1));
    let raw = b"GET /prod/items/7 HTTP/1.1\r\nHost: x\r\nUser-Agent: evil\" 200 0 forged \"x\tend\r\nx-request-id: fmt-1\r\nConnection: close\r\n\r\n";
    assert_eq!(request(gw.addr(), raw).status, 200);
    let log = gw.wait_log("fmt-1");
    let line = log.lines().find(|l| l.contains("fmt-1")).expect("line");
    let re = regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET /prod/items/7 HTTP/1\.1" 200 2 fmt-1 "(.*)" GET /items/\{id\} -$"#,
    )
    .expect("re");
    let caps = re.captures(line).unwrap_or_else(|| panic!("not the format: {line}"));
    assert_eq!(&caps[1], r#"evil\" 200 0 forged \"x\tend"#, "quotes and tabs escaped");
    // an unknown variable: check names the file, line and key; a reload keeps the format
    let good = std::fs::read_to_string(&gw.config).expect("cfg");
    let bad = good.replace("$context.identity.apiKeyId'", "$context.identity.apiKey'");
    let path = gw.dir.path().join("bad.toml");
    std::fs::write(&path, &bad).expect("write");
    let out = std::process::Command::new(BIN).args(["check", "-c"]).arg(&path).output().expect("check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml:2:")
            && err.contains("server.access_log_format")
            && err.contains("$context.identity.apiKey "),
        "{err}"
    );
    gw.write_config(&bad);
    gw.signal("HUP");
    eventually("the reload is refused", || gw.stderr().contains("config reload failed"));
    let raw = b"GET /prod/items/8 HTTP/1.1\r\nHost: x\r\nx-request-id: fmt-2\r\nConnection: close\r\n\r\n";
    assert_eq!(request(gw.addr(), raw).status, 200);
    let log = gw.wait_log("fmt-2");
    assert!(log.lines().any(|l| l.starts_with("127.0.0.1 - - [") && l.contains(" fmt-2 ")), "{log}");
}
