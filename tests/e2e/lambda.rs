//! Lambda proxy integrations: the AWS events (1.0 and 2.0) as the function receives them, the
//! answer mapping, binary bodies, and failures (function errors, malformed answers, unknown
//! functions, throttling, timeouts), against a Lambda Invoke API on loopback.

use crate::common::*;

/// A Lambda Invoke API whose "function" acts on the event's path (see `run`).
fn invoke_api() -> String {
    serve_raw(|req, _| {
        let (status, extra, out) = run(&req.target, &req.body);
        json_reply(status, extra, &out)
    })
}

fn run(invoke_path: &str, body: &[u8]) -> (u16, &'static str, String) {
    if invoke_path.contains("/functions/missing/") {
        return (
            404,
            "",
            r#"{"Type":"User","message":"Function not found: arn:aws:lambda:us-east-1:000000000000:function:missing"}"#
                .into(),
        );
    }
    let e: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let path = e["rawPath"].as_str().or(e["path"].as_str()).unwrap_or("").to_string();
    let echo = |status: u16| {
        serde_json::json!({"statusCode": status, "headers": {"content-type": "application/json", "x-fn": "echo"}, "body": e.to_string()}).to_string()
    };
    if path.contains("/c/") {
        // 200: storable without explicit freshness (the stage TTL stands in for a heuristic)
        return (200, "", echo(200));
    }
    match path.rsplit('/').next().unwrap_or("") {
        "bare" => (200, "", r#"{"hello":"world"}"#.into()),
        "throw" => {
            (200, "X-Amz-Function-Error: Unhandled\r\n", r#"{"errorMessage":"kaboom","errorType":"Error"}"#.into())
        }
        "bad" => (200, "", "not json".into()),
        "cookies" => (200, "", r#"{"statusCode":200,"cookies":["a=1; Path=/","b=2"],"body":"c"}"#.into()),
        "bin" => (
            200,
            "",
            r#"{"statusCode":200,"headers":{"content-type":"image/png"},"body":"iVBORw0K","isBase64Encoded":true}"#
                .into(),
        ),
        "multi" => (
            200,
            "",
            r#"{"statusCode":202,"headers":{"x-one":"h"},"multiValueHeaders":{"x-two":["a","b"]},"body":"m"}"#.into(),
        ),
        "throttle" => (429, "", r#"{"Type":"User","message":"Rate Exceeded."}"#.into()),
        "slow" => {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            (200, "", echo(200))
        }
        _ => (200, "", echo(201)),
    }
}

fn cfg(d: &std::path::Path, p: &Ports, base: &str) -> String {
    format!(
        r#"{server}
[[apis]]
name = "fn"
binary_media_types = ["application/octet-stream"]
[apis.stages.prod]
variables = {{ flavour = "vanilla" }}
[apis.stages.cached]
cache = {{ ttl = "60s" }}
[apis.integrations.v1]
type = "lambda"
function = "pets-handler"
endpoint = "{base}"
payload_format = "1.0"
[apis.integrations.v2]
type = "lambda"
function = "arn:aws:lambda:us-east-1:000000000000:function:pets-handler:live"
endpoint = "{base}"
payload_format = "2.0"
timeout = "1s"
[apis.integrations.missing]
type = "lambda"
function = "missing"
endpoint = "{base}"
[[apis.routes]]
route = "ANY /v1/{{proxy+}}"
integration = "v1"
[[apis.routes]]
route = "ANY /v2/pets/{{id}}/{{rest+}}"
integration = "v2"
[[apis.routes]]
route = "GET /missing"
integration = "missing"
"#,
        server = server_section(d, p, "")
    )
}

#[test]
fn payload_1_0_events_and_answers() {
    let base = invoke_api();
    let gw = Gateway::start(|d, p| cfg(d, p, &base));
    let r = send(
        gw.addr(),
        "POST",
        "/prod/v1/pets/7?a=1&a=2&b=x%20y",
        &[("x-m", "1"), ("x-m", "2"), ("content-type", "application/json")],
        b"{\"n\":1}",
    );
    assert_eq!((r.status, r.header("x-fn")), (201, Some("echo")), "{}", r.text());
    let e = r.json();
    assert_eq!(e["resource"], "/v1/{proxy+}");
    assert_eq!(e["path"], "/prod/v1/pets/7");
    assert_eq!(e["httpMethod"], "POST");
    assert_eq!(e["headers"]["x-m"], "2");
    assert_eq!(e["multiValueHeaders"]["x-m"], serde_json::json!(["1", "2"]));
    assert_eq!(e["queryStringParameters"], serde_json::json!({"a": "2", "b": "x y"}));
    assert_eq!(e["multiValueQueryStringParameters"]["a"], serde_json::json!(["1", "2"]));
    assert_eq!(e["pathParameters"], serde_json::json!({"proxy": "pets/7"}));
    assert_eq!(e["stageVariables"], serde_json::json!({"flavour": "vanilla"}));
    assert_eq!(e["requestContext"]["stage"], "prod");
    assert_eq!(e["requestContext"]["identity"]["sourceIp"], "127.0.0.1");
    assert!(e["requestContext"]["requestTime"].as_str().is_some_and(|t| t.ends_with(" +0000") && t.len() == 26), "{e}");
    assert_eq!((e["body"].as_str(), e["isBase64Encoded"].as_bool()), (Some("{\"n\":1}"), Some(false)));
    // a binary media type goes base64
    let r =
        send(gw.addr(), "POST", "/prod/v1/up", &[("content-type", "application/octet-stream")], &[0xff, 0xfe, 0x00]);
    let e = r.json();
    assert_eq!((e["body"].as_str(), e["isBase64Encoded"].as_bool()), (Some("//4A"), Some(true)));
    // multiValueHeaders, a status of the function's choosing; base64 answers are decoded
    let r = gw.get("/prod/v1/multi");
    assert_eq!((r.status, r.text().as_str(), r.header("x-one")), (202, "m", Some("h")));
    assert_eq!(r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("x-two")).count(), 2);
    let r = gw.get("/prod/v1/bin");
    assert_eq!((r.header("content-type"), r.body.as_slice()), (Some("image/png"), &b"\x89PNG\r\n"[..]));
    // a v1 answer without statusCode is malformed
    assert_eq!(gw.get("/prod/v1/bare").status, 502);
}

#[test]
fn payload_2_0_events_and_answers() {
    let base = invoke_api();
    let gw = Gateway::start(|d, p| cfg(d, p, &base));
    let r = send(
        gw.addr(),
        "PUT",
        "/prod/v2/pets/7/a/b?q=1&q=2",
        &[("cookie", "s=1; t=2"), ("x-m", "1"), ("x-m", "2")],
        b"hi",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let e = r.json();
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "ANY /v2/pets/{id}/{rest+}");
    assert_eq!(e["rawPath"], "/prod/v2/pets/7/a/b");
    assert_eq!(e["rawQueryString"], "q=1&q=2");
    assert_eq!(e["cookies"], serde_json::json!(["s=1", "t=2"]));
    assert_eq!(e["headers"]["x-m"], "1,2");
    assert_eq!(e["queryStringParameters"]["q"], "1,2");
    assert_eq!(e["pathParameters"], serde_json::json!({"id": "7", "rest": "a/b"}));
    assert_eq!(e["requestContext"]["http"]["method"], "PUT");
    assert_eq!(e["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert!(e["requestContext"]["timeEpoch"].as_u64().is_some());
    assert_eq!(e["body"], "hi");
    // a bare result is 200 application/json; cookies become set-cookie fields
    let r = gw.get("/prod/v2/pets/1/bare");
    assert_eq!(
        (r.status, r.header("content-type"), r.text().as_str()),
        (200, Some("application/json"), r#"{"hello":"world"}"#)
    );
    let r = gw.get("/prod/v2/pets/1/cookies");
    let cookies: Vec<&str> =
        r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(cookies, vec!["a=1; Path=/", "b=2"]);
}

#[test]
fn failures_map_to_gateway_responses_and_are_logged() {
    let base = invoke_api();
    let gw = Gateway::start(|d, p| cfg(d, p, &base));
    let r = gw.get("/prod/v2/pets/1/throw");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(gw.get("/prod/v2/pets/1/bad").status, 502);
    assert_eq!(gw.get("/prod/missing").status, 502);
    assert_eq!(gw.get("/prod/v2/pets/1/throttle").status, 429);
    let t = std::time::Instant::now();
    assert_eq!(gw.get("/prod/v2/pets/1/slow").status, 504);
    assert!(t.elapsed() < std::time::Duration::from_millis(1450), "the 1 s timeout holds");
    eventually("the reasons in the log", || {
        let log = gw.stderr();
        log.contains("kaboom") && log.contains("malformed") && log.contains("Function not found")
    });
    eventually("the access log", || gw.access_log().contains("INTEGRATION_FAILURE"));
}

#[test]
fn lambda_config_errors_name_the_key() {
    let d = tempfile::tempdir().expect("dir");
    let f = d.path().join("edgegate.toml");
    let p = Ports::new();
    for (from, to, needle) in [
        ("payload_format = \"1.0\"", "payload_format = \"3.0\"", "payload_format"),
        ("function = \"missing\"", "function = \"a/b\"", "function"),
        ("payload_format = \"1.0\"", "payload_format = \"1.0\"\nuri = \"http://x\"", "uri"),
    ] {
        std::fs::write(&f, cfg(d.path(), &p, "http://127.0.0.1:9").replacen(from, to, 1)).expect("write");
        let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&f).output().expect("check");
        let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn lambda_answers_are_cached_like_http_answers() {
    let base = invoke_api();
    let gw = Gateway::start(|d, p| cfg(d, p, &base));
    let first = gw.get("/cached/v1/c/1");
    assert_eq!((first.status, first.header("x-edgegate-cache")), (200, Some("miss")), "{}", first.text());
    let id = first.json()["requestContext"]["requestId"].as_str().map(str::to_string);
    let hit = gw.get("/cached/v1/c/1");
    assert_eq!((hit.status, hit.header("x-edgegate-cache")), (200, Some("hit")));
    assert_eq!(hit.json()["requestContext"]["requestId"].as_str().map(str::to_string), id, "the stored answer");
    // errors are not stored; other keys are other entries
    assert_eq!(gw.get("/cached/v1/throw").status, 502);
    assert_eq!(gw.get("/cached/v1/throw").status, 502);
    assert_eq!(gw.get("/cached/v1/c/2").header("x-edgegate-cache"), Some("miss"));
    // a write invalidates
    assert_eq!(send(gw.addr(), "DELETE", "/cached/v1/c/1", &[], b"").status, 200);
    assert_eq!(gw.get("/cached/v1/c/1").header("x-edgegate-cache"), Some("miss"));
}

#[test]
fn http2_bodies_without_content_length_reach_the_function_whole() {
    let base = invoke_api();
    let gw = Gateway::start(|d, p| cfg(d, p, &base));
    let body = "x".repeat(100_000);
    let r = h2_request(gw.addr(), "POST", "/prod/v2/pets/7/h2", &[("x-m", "1"), ("x-m", "2")], Some(body.as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    let e: serde_json::Value = serde_json::from_str(&r.text()).expect("event");
    assert_eq!(e["body"].as_str().map(str::len), Some(100_000), "the whole h2 body, read once");
    assert_eq!(e["headers"]["x-m"], "1,2");
    assert_eq!(e["requestContext"]["http"]["protocol"], "HTTP/2.0");
}
