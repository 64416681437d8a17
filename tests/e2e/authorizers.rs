//! Lambda-style request/token authorizers: IAM-policy and simple answers, result caching,
//! one call for concurrent identical requests, failures and timeouts.

use crate::common::*;

fn policy(effect: &str, resource: &str) -> serde_json::Value {
    serde_json::json!({"principalId": "user-1", "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}, "context": {"tenant": "t1"}})
}

fn answer(path: &str, event: &serde_json::Value) -> (u16, String) {
    let token = event["authorizationToken"]
        .as_str()
        .or_else(|| event["headers"]["authorization"].as_str())
        .unwrap_or("")
        .to_string();
    if token.starts_with("slow") {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    if path == "/simple" {
        return (
            200,
            serde_json::json!({"isAuthorized": token.starts_with("allow"), "context": {"tenant": "s1"}}).to_string(),
        );
    }
    match token.as_str() {
        t if t.starts_with("allow") || t.starts_with("slow") => {
            (200, policy("Allow", "arn:edgegate:execute-api:la/prod/*").to_string())
        }
        "get-only" => (200, policy("Allow", "arn:edgegate:execute-api:la/prod/GET/*").to_string()),
        "deny" => (200, policy("Deny", "*").to_string()),
        "broken" => (500, "{}".into()),
        _ => (200, "not json".into()),
    }
}

/// A real authorizer service: decides by the token's prefix, counts its calls.
fn auth_service() -> Service {
    serve(|path, body| answer(path, &serde_json::from_slice(body).unwrap_or_default()))
}

fn config(d: &std::path::Path, p: &Ports, url: &str) -> String {
    format!(
        r#"{server}
[authorizers.partners]
type = "request"
uri = "{url}/authorize"
identity_sources = ["$request.header.Authorization"]
result_ttl = "300s"
response = "iam"
timeout = "500ms"

[authorizers.nocache]
type = "token"
uri = "{url}/authorize"
identity_source = "$request.header.Authorization"
result_ttl = "0s"

[authorizers.simple]
type = "request"
uri = "{url}/simple"
identity_sources = ["$request.header.Authorization", "$context.sourceIp"]
response = "simple"

[[apis]]
name = "la"
[apis.stages.prod]
[apis.integrations.who]
type = "mock"
body = "{{{{ context.authorizer.principalId }}}}/{{{{ context.authorizer.claims.tenant }}}}"
[[apis.routes]]
route = "ANY /things/{{id}}"
integration = "who"
authorizer = "partners"
[[apis.routes]]
route = "GET /token"
integration = "who"
authorizer = "nocache"
[[apis.routes]]
route = "GET /simple"
integration = "who"
authorizer = "simple"
"#,
        server = server_section(d, p, "")
    )
}

fn auth(gw: &Gateway, method: &str, path: &str, token: &str) -> Response {
    send(gw.addr(), method, path, &[("Authorization", token)], b"")
}

#[test]
fn iam_policies_are_cached_and_evaluated_per_method_arn() {
    let svc = auth_service();
    let gw = Gateway::start(|d, p| config(d, p, &svc.base));
    let r = auth(&gw, "GET", "/prod/things/1", "allow-a");
    assert_eq!((r.status, r.text().as_str()), (200, "user-1/t1"));
    assert_eq!(auth(&gw, "GET", "/prod/things/2", "allow-a").status, 200);
    assert_eq!(svc.hits(), 1, "the second request was answered from the cache");

    assert_eq!(auth(&gw, "GET", "/prod/things/1", "get-only").status, 200);
    let r = auth(&gw, "DELETE", "/prod/things/1", "get-only");
    assert_eq!((r.status, r.json()["message"].as_str()), (403, Some("Forbidden")), "the cached policy allows only GET");
    assert_eq!(svc.hits(), 2);
    assert_eq!(auth(&gw, "GET", "/prod/things/1", "deny").status, 403);

    let before = svc.hits();
    let r = gw.get("/prod/things/1");
    assert_eq!((r.status, r.json()["message"].as_str()), (401, Some("Unauthorized")));
    assert_eq!(svc.hits(), before, "no identity source, no call");
    eventually("cache metrics", || {
        let m = gw.metrics();
        m.contains(r#"edgegate_authorizer_cache_total{authorizer="partners",result="hit"}"#)
            && m.contains(r#"authorizer="partners",reason="denied""#)
    });
}

#[test]
fn failures_and_timeouts_are_authorizer_failures() {
    let svc = auth_service();
    let gw = Gateway::start(|d, p| config(d, p, &svc.base));
    for token in ["broken", "garbage"] {
        let r = auth(&gw, "GET", "/prod/things/1", token);
        assert_eq!(r.status, 500, "{token}: {}", r.text());
    }
    let t = std::time::Instant::now();
    let r = auth(&gw, "GET", "/prod/things/1", "slow-1");
    assert_eq!(r.status, 500);
    assert!(t.elapsed() < std::time::Duration::from_millis(1400), "answered at the 500 ms timeout");
    gw.wait_log("AUTHORIZER_FAILURE");
}

#[test]
fn concurrent_identical_requests_make_one_call() {
    let svc = auth_service();
    let gw = Gateway::start(|d, p| config(d, p, &svc.base));
    let addr = gw.addr();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                send(addr, "GET", "/prod/things/9", &[("Authorization", "allow-burst")], b"").status
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    assert_eq!(svc.hits(), 1, "16 concurrent requests, one authorizer call");
}

#[test]
fn token_and_simple_authorizers() {
    let svc = auth_service();
    let gw = Gateway::start(|d, p| config(d, p, &svc.base));
    assert_eq!(auth(&gw, "GET", "/prod/token", "allow-t").text(), "user-1/t1");
    assert_eq!(auth(&gw, "GET", "/prod/token", "allow-t").status, 200);
    assert_eq!(svc.hits(), 2, "result_ttl = 0: no cache");
    assert_eq!(auth(&gw, "GET", "/prod/simple", "allow-s").text(), "/s1");
    assert_eq!(auth(&gw, "GET", "/prod/simple", "nope").status, 403);
}
