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

/// A Lambda Invoke API on loopback: checks the path, the SigV4 signature (service `lambda`,
/// recomputed from what arrived) and runs the "function" on the event.
/// (path, headers, signature verified) of each invocation.
type Invocations = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<(String, String)>, bool)>>>;

struct InvokeApi {
    base: String,
    seen: Invocations,
}

fn invoke_api(secret: &'static str) -> InvokeApi {
    let seen: Invocations = Default::default();
    let s2 = seen.clone();
    let base = serve_raw(move |req, host| {
        let signed_ok = req.sigv4_verifies(host, "AKIDLAMBDA", secret, "eu-west-1", "lambda")
            && req.header("authorization").is_some_and(|a| a.contains("/eu-west-1/lambda/aws4_request"));
        let path = req.target.clone();
        s2.lock().expect("lock").push((path.clone(), req.headers.clone(), signed_ok));
        let event: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let token = event["headers"]["authorization"].as_str().unwrap_or("").to_string();
        let (status, extra, out) = if !path.starts_with("/2015-03-31/functions/") || !path.ends_with("/invocations") {
            (404, "", r#"{"Type":"User","message":"bad path"}"#.to_string())
        } else if path.contains("/missing/") {
            (404, "", r#"{"Type":"User","message":"Function not found: missing"}"#.to_string())
        } else if token == "boom" {
            (
                200,
                "X-Amz-Function-Error: Unhandled\r\n",
                r#"{"errorMessage":"boom from the function","errorType":"Error"}"#.to_string(),
            )
        } else if token.starts_with("allow") {
            (200, "", policy("Allow", "arn:edgegate:execute-api:lam/prod/*").to_string())
        } else {
            (200, "", policy("Deny", "*").to_string())
        };
        json_reply(status, extra, &out)
    });
    InvokeApi { base, seen }
}

fn lambda_config(d: &std::path::Path, p: &Ports, base: &str, function: &str) -> String {
    format!(
        r#"{server}
[authorizers.fn]
type = "request"
lambda = {{ function = "{function}", endpoint = "{base}", region = "eu-west-1" }}
identity_sources = ["$request.header.Authorization"]
result_ttl = "0s"

[[apis]]
name = "lam"
[apis.stages.prod]
[[apis.routes]]
route = "GET /x"
integration = {{ type = "mock", body = "{{{{ context.authorizer.principalId }}}}" }}
authorizer = "fn"
"#,
        server = server_section(d, p, "")
    )
}

#[test]
fn lambda_invoked_authorizers_are_signed_and_their_failures_are_authorizer_failures() {
    let api = invoke_api("secret-lambda");
    let fn_arn = "arn:aws:lambda:eu-west-1:123456789012:function:partners:live";
    let gw = Gateway::start_with_env(
        |d, p| lambda_config(d, p, &api.base, fn_arn),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDLAMBDA"),
            ("AWS_SECRET_ACCESS_KEY", "secret-lambda"),
            ("AWS_SESSION_TOKEN", "tok-1"),
        ],
    );
    let r = send(gw.addr(), "GET", "/prod/x", &[("Authorization", "allow-1")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "user-1"));
    {
        let seen = api.seen.lock().expect("lock");
        let (path, headers, signed) = seen.last().expect("invoked");
        assert_eq!(
            path,
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Apartners%3Alive/invocations"
        );
        assert!(*signed, "SigV4 (lambda, eu-west-1) verifies: {headers:?}");
        assert!(headers.iter().any(|(k, v)| k == "x-amz-security-token" && v == "tok-1"));
        // the payload's hash is in the signature (verified over the body received); the
        // field itself is S3's, and AWS SDKs do not send it to Lambda
        assert!(!headers.iter().any(|(k, _)| k == "x-amz-content-sha256"), "{headers:?}");
    }
    assert_eq!(send(gw.addr(), "GET", "/prod/x", &[("Authorization", "deny")], b"").status, 403);
    // the function throws: an authorizer failure, logged with its errorMessage
    let r = send(gw.addr(), "GET", "/prod/x", &[("Authorization", "boom")], b"");
    assert_eq!(r.status, 500, "{}", r.text());
    eventually("the function's error in the log", || gw.stderr().contains("boom from the function"));

    // an unknown function: 404 from Lambda, a failure with a clear log line
    let gw2 = Gateway::start_with_env(|d, p| lambda_config(d, p, &api.base, "missing"), &[]);
    assert_eq!(send(gw2.addr(), "GET", "/prod/x", &[("Authorization", "allow-2")], b"").status, 500);
    eventually("the 404 in the log", || gw2.stderr().contains("Function not found: missing"));
    // no credentials anywhere: the call goes unsigned (local emulators)
    let seen = api.seen.lock().expect("lock");
    let (_, headers, _) = seen.last().expect("invoked");
    assert!(!headers.iter().any(|(k, _)| k == "authorization"), "unsigned without credentials");
}

#[test]
fn lambda_credentials_come_from_the_profile_file_too() {
    let api = invoke_api("secret-from-file");
    let gw = Gateway::start_with_env(
        |d, p| {
            std::fs::create_dir_all(d.join(".aws")).expect("dir");
            std::fs::write(
                d.join(".aws/credentials"),
                "[default]\naws_access_key_id = nope\naws_secret_access_key = nope\n[ci]\naws_access_key_id = AKIDLAMBDA\naws_secret_access_key = secret-from-file\n",
            )
            .expect("credentials");
            lambda_config(d, p, &api.base, "partners")
        },
        &[("AWS_PROFILE", "ci")],
    );
    assert_eq!(send(gw.addr(), "GET", "/prod/x", &[("Authorization", "allow-3")], b"").status, 200);
    assert!(
        api.seen.lock().expect("lock").last().is_some_and(|(_, _, signed)| *signed),
        "signed with the profile's keys"
    );
}

#[test]
fn moto_verifies_the_lambda_invocation_signature() {
    let Some(moto) = Moto::start(5) else {
        eprintln!("SKIPPED: moto_server is not installed (./dev test installs it into target/peers)");
        return;
    };
    let port = moto.port;
    let key = moto.script("moto_lambda_setup.py", &[&port.to_string()]);
    let (ak, sk) = (key["ak"].as_str().expect("ak").to_string(), key["sk"].as_str().expect("sk").to_string());
    let base = format!("http://127.0.0.1:{port}");
    let config = |d: &std::path::Path, p: &Ports| lambda_config(d, p, &base, "auth").replace("eu-west-1", "us-east-1");
    // the right key: moto checks the signature and runs the function (its queued answer)
    let gw = Gateway::start_with_env(config, &[("AWS_ACCESS_KEY_ID", &ak), ("AWS_SECRET_ACCESS_KEY", &sk)]);
    let r = send(gw.addr(), "GET", "/prod/x", &[("Authorization", "a")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "moto-user"), "{}", gw.stderr());
    drop(gw);
    // a wrong secret: moto answers 403 SignatureDoesNotMatch, the gateway an authorizer failure
    let gw = Gateway::start_with_env(config, &[("AWS_ACCESS_KEY_ID", &ak), ("AWS_SECRET_ACCESS_KEY", "wrong")]);
    assert_eq!(send(gw.addr(), "GET", "/prod/x", &[("Authorization", "b")], b"").status, 500);
    eventually("moto's refusal in the log", || gw.stderr().contains("Lambda answered 403"));
}

/// `identity_validation` (API Gateway's `identityValidationExpression`): a token that does not
/// match the whole expression is refused with 401 and the authorizer is never called; one
/// that matches is decided by it. Only token authorizers take it.
#[test]
fn token_validation_expression_refuses_without_a_call() {
    let svc = auth_service();
    let gw = Gateway::start(|d, p| {
        config(d, p, &svc.base).replace(
            "identity_source = \"$request.header.Authorization\"\nresult_ttl = \"0s\"",
            "identity_source = \"$request.header.Authorization\"\nresult_ttl = \"0s\"\nidentity_validation = \"allow-[a-z]+\"",
        )
    });
    let r = auth(&gw, "GET", "/prod/token", "allow-x1");
    assert_eq!(r.status, 401, "a partial match is not a match: {}", r.text());
    let r = auth(&gw, "GET", "/prod/token", "deny");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(svc.hits(), 0, "refused without calling the authorizer");
    let r = auth(&gw, "GET", "/prod/token", "allow-abc");
    assert_eq!((r.status, r.text().as_str()), (200, "user-1/t1"));
    assert_eq!(svc.hits(), 1);

    let d = tempfile::tempdir().expect("dir");
    let f = d.path().join("edgegate.toml");
    let p = Ports::new();
    for (from, to, needle) in [
        ("result_ttl = \"0s\"", "result_ttl = \"0s\"\nidentity_validation = \"(\"", "not a regular expression"),
        ("result_ttl = \"300s\"", "result_ttl = \"300s\"\nidentity_validation = \"x\"", "for token authorizers"),
    ] {
        std::fs::write(&f, config(d.path(), &p, "http://127.0.0.1:9").replacen(from, to, 1)).expect("write");
        let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&f).output().expect("check");
        let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && err.contains(needle) && err.contains("identity_validation"),
            "{needle}: {err}"
        );
    }
}
