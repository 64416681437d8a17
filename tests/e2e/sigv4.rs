//! SigV4 (IAM-style) authorizers: signed requests pass and their policies apply; replays
//! outside the clock skew, altered paths and swapped bodies are refused.

use crate::common::*;
use edgegate::aws::sigv4;

const SECRET: &str = "s3cr3t-key-for-tests";

fn config(d: &std::path::Path, p: &Ports, origin: &str) -> String {
    std::fs::write(
        d.join("credentials.toml"),
        format!(
            r#"[[credentials]]
access_key_id = "AKTEST"
secret = "{SECRET}"
principal = "alice"
policies = ['{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:edgegate:execute-api:sig/prod/*"}}, {{"Effect": "Deny", "Action": "execute-api:*", "Resource": "arn:edgegate:execute-api:sig/prod/GET/secret"}}]}}']
"#
        ),
    )
    .expect("credentials");
    format!(
        r#"{server}
[authorizers.iam]
type = "sigv4"
service = "execute-api"
region = "us-east-1"
credentials = "credentials.toml"
clock_skew = "5m"

[[apis]]
name = "sig"
[apis.stages.prod]
[[apis.routes]]
route = "GET /whoami"
integration = {{ type = "mock", body = "{{{{ context.authorizer.principalId }}}}" }}
authorizer = "iam"
[[apis.routes]]
route = "GET /secret"
integration = {{ type = "mock", body = "secret" }}
authorizer = "iam"
[[apis.routes]]
route = "POST /items"
integration = {{ type = "http", uri = "{origin}" }}
authorizer = "iam"
"#,
        server = server_section(d, p, "")
    )
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
}

fn signed(method: &str, path: &str, body: &[u8], at: u64) -> Vec<(String, String)> {
    let url = format!("http://localhost{path}");
    sigv4::sign_request("AKTEST", SECRET, "us-east-1", "execute-api", method, &url, &[], body, at).expect("sign")
}

fn send_signed(gw: &Gateway, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Response {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    send(gw.addr(), method, path, &h, body)
}

#[test]
fn signed_requests_pass_and_policies_apply() {
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| config(d, p, &url));
    let h = signed("GET", "/prod/whoami", b"", now());
    assert_eq!(send_signed(&gw, "GET", "/prod/whoami", &h, b"").text(), "alice");
    let r = gw.get("/prod/whoami");
    assert_eq!((r.status, r.json()["message"].as_str()), (403, Some("Missing Authentication Token")));
    let h = signed("GET", "/prod/secret", b"", now());
    let r = send_signed(&gw, "GET", "/prod/secret", &h, b"");
    assert_eq!((r.status, r.json()["message"].as_str()), (403, Some("Forbidden")), "explicit Deny wins");

    // the CLI signs too
    let out = std::process::Command::new(BIN)
        .args([
            "sign",
            "--access-key",
            "AKTEST",
            "--secret-env",
            "EDGEGATE_TEST_SECRET",
            "GET",
            "http://localhost/prod/whoami",
        ])
        .env("EDGEGATE_TEST_SECRET", SECRET)
        .output()
        .expect("sign");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let cli: Vec<(String, String)> =
        text.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(cli.len(), 3, "{text}");
    assert_eq!(send_signed(&gw, "GET", "/prod/whoami", &cli, b"").text(), "alice");
}

#[test]
fn replays_altered_paths_and_swapped_bodies_are_refused() {
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| config(d, p, &url));
    let old = signed("GET", "/prod/whoami", b"", now() - 600);
    let r = send_signed(&gw, "GET", "/prod/whoami", &old, b"");
    assert_eq!((r.status, r.json()["message"].as_str()), (403, Some("Invalid signature")), "outside the 5 min skew");
    let h = signed("GET", "/prod/whoami", b"", now());
    assert_eq!(send_signed(&gw, "GET", "/prod/secret", &h, b"").status, 403, "a path other than the signed one");
    assert_eq!(send_signed(&gw, "GET", "/prod/whoami?x=1", &h, b"").status, 403, "a query other than the signed one");
    let mut bad = h.clone();
    bad[0].1 = bad[0].1.replace("AKTEST", "AKOTHER");
    assert_eq!(send_signed(&gw, "GET", "/prod/whoami", &bad, b"").status, 403, "unknown access key");

    // a signed body reaches the origin; a swapped one never does
    let h = signed("POST", "/prod/items", b"{\"n\":1}", now());
    let r = send_signed(&gw, "POST", "/prod/items", &h, b"{\"n\":1}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(origin.requests().pop().expect("seen").body, b"{\"n\":1}");
    let before = origin.count();
    let r = send_signed(&gw, "POST", "/prod/items", &h, b"{\"n\":9}");
    assert_eq!(r.status, 403, "{}", r.text());
    let no_hash: Vec<(String, String)> = h.iter().filter(|(k, _)| k != "X-Amz-Content-Sha256").cloned().collect();
    assert_eq!(send_signed(&gw, "POST", "/prod/items", &no_hash, b"{\"n\":9}").status, 403);
    assert_eq!(origin.count(), before, "the origin never saw a body that was not signed");
    eventually("signature metric", || gw.metrics().contains(r#"authorizer="iam",reason="clock_skew""#));
}

#[test]
fn query_string_signatures() {
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| config(d, p, &url));
    let date = sigv4::format_amz_date(now());
    let cred = format!("AKTEST/{}/us-east-1/execute-api/aws4_request", &date[..8]);
    let query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={date}&X-Amz-Expires=60&X-Amz-SignedHeaders=host",
        cred.replace('/', "%2F")
    );
    let mut h = http::HeaderMap::new();
    h.insert("host", "localhost".parse().expect("host"));
    let ch = sigv4::canonical_headers(&["host".to_string()], &h, "localhost").expect("headers");
    let sig = sigv4::signature(
        SECRET,
        &date,
        "us-east-1",
        "execute-api",
        "GET",
        &sigv4::canonical_uri("/prod/whoami"),
        &sigv4::canonical_query(&query, None),
        &ch,
        "host",
        "UNSIGNED-PAYLOAD",
    );
    let r = gw.get(&format!("/prod/whoami?{query}&X-Amz-Signature={sig}"));
    assert_eq!((r.status, r.text().as_str()), (200, "alice"));
    let r = gw.get(&format!("/prod/whoami?{query}&X-Amz-Signature={}", "0".repeat(64)));
    assert_eq!(r.status, 403);
}
