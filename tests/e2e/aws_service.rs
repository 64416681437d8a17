//! AWS service integrations: a templated, SigV4-signed request to a service; the answer
//! passed through. Against a loopback service that recomputes the signature (always), and
//! against moto's SQS with IAM auth on (when moto is installed).

use crate::common::*;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, String, Vec<(String, String)>, Vec<u8>, bool)>>>;

/// A service on loopback: records (method, path, headers, body, signature verified) and
/// answers 200 with an XML body, or 400 with an AWS-style error for a body containing "bad".
fn service(secret: &'static str) -> (String, Seen) {
    let seen: Seen = Default::default();
    let s2 = seen.clone();
    let base = serve_raw(move |req, host| {
        let verified = req.sigv4_verifies(host, "AKIDSVC", secret, "eu-west-1", "sqs");
        let text = String::from_utf8_lossy(&req.body).to_string();
        s2.lock().expect("lock").push((
            req.method.clone(),
            req.target.clone(),
            req.headers.clone(),
            req.body.clone(),
            verified,
        ));
        let (status, out) = if text.contains("bad") {
            (400, "<ErrorResponse><Error><Code>InvalidParameterValue</Code><Message>bad</Message></Error></ErrorResponse>")
        } else {
            (200, "<SendMessageResponse><SendMessageResult><MessageId>m-1</MessageId></SendMessageResult></SendMessageResponse>")
        };
        format!("HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\nx-amzn-requestid: req-1\r\ncontent-length: {}\r\n\r\n{out}", out.len())
            .into_bytes()
    });
    (base, seen)
}

fn cfg(d: &std::path::Path, p: &Ports, endpoint: &str, queue: &str, region: &str) -> String {
    format!(
        r#"{server}
[[apis]]
name = "q"
[apis.stages.prod]
variables = {{ queue = "{queue}" }}
[apis.integrations.enqueue]
type = "aws"
service = "sqs"
region = "{region}"
endpoint = "{endpoint}"
method = "POST"
path = "/"
request_template = "Action=SendMessage&Version=2012-11-05&QueueUrl={{{{ stageVariables.queue | urlencode }}}}&MessageBody={{{{ input.body | urlencode }}}}"
headers = {{ "content-type" = "application/x-www-form-urlencoded" }}
[[apis.routes]]
route = "POST /orders"
integration = "enqueue"
"#,
        server = server_section(d, p, "")
    )
}

#[test]
fn templated_signed_requests_and_passed_through_answers() {
    let (base, seen) = service("svc-secret");
    let gw = Gateway::start_with_env(
        |d, p| cfg(d, p, &base, "http://sqs.local/000000000000/orders", "eu-west-1"),
        &[("AWS_ACCESS_KEY_ID", "AKIDSVC"), ("AWS_SECRET_ACCESS_KEY", "svc-secret")],
    );
    let r = send(gw.addr(), "POST", "/prod/orders", &[("content-type", "text/plain")], "a & b = c+d ünï".as_bytes());
    assert_eq!(
        (r.status, r.header("content-type"), r.header("x-amzn-requestid")),
        (200, Some("text/xml"), Some("req-1"))
    );
    assert!(r.text().contains("<MessageId>m-1</MessageId>"));
    {
        let seen = seen.lock().expect("lock");
        let (method, path, headers, body, verified) = seen.last().expect("called");
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/"));
        assert!(*verified, "the SigV4 signature (sqs, eu-west-1) verifies: {headers:?}");
        assert_eq!(
            String::from_utf8_lossy(body),
            "Action=SendMessage&Version=2012-11-05&QueueUrl=http%3A%2F%2Fsqs.local%2F000000000000%2Forders&MessageBody=a%20%26%20b%20%3D%20c%2Bd%20%C3%BCn%C3%AF"
        );
        assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/x-www-form-urlencoded"));
    }
    // the service's error passes through with its status
    let r = send(gw.addr(), "POST", "/prod/orders", &[], b"bad");
    assert_eq!((r.status, r.header("content-type")), (400, Some("text/xml")));
    assert!(r.text().contains("InvalidParameterValue"));
}

#[test]
fn moto_sqs_receives_the_message_and_refuses_a_wrong_signature() {
    let Some(moto) = Moto::start(4) else {
        eprintln!("SKIPPED: moto_server is not installed (./dev test installs it into target/peers)");
        return;
    };
    let port = moto.port;
    let v = moto.script("moto_sqs.py", &["setup", &port.to_string()]);
    let (ak, sk, queue) =
        (v["ak"].as_str().expect("ak"), v["sk"].as_str().expect("sk"), v["queue"].as_str().expect("q"));
    let base = format!("http://127.0.0.1:{port}");
    let gw = Gateway::start_with_env(
        |d, p| cfg(d, p, &base, queue, "us-east-1"),
        &[("AWS_ACCESS_KEY_ID", ak), ("AWS_SECRET_ACCESS_KEY", sk)],
    );
    let r = send(gw.addr(), "POST", "/prod/orders", &[], "order 7 & co = ünï+1".as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("MessageId"), "{}", r.text());
    let bodies = moto.script("moto_sqs.py", &["receive", &port.to_string(), ak, sk, queue]);
    assert_eq!(bodies, serde_json::json!(["order 7 & co = ünï+1"]));
    drop(gw);
    // a wrong secret: moto's 403 passes through
    let gw = Gateway::start_with_env(
        |d, p| cfg(d, p, &base, queue, "us-east-1"),
        &[("AWS_ACCESS_KEY_ID", ak), ("AWS_SECRET_ACCESS_KEY", "wrong")],
    );
    let r = send(gw.addr(), "POST", "/prod/orders", &[], b"x");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("SignatureDoesNotMatch"), "{}", r.text());
}

#[test]
fn http2_bodies_without_content_length_become_the_service_request() {
    let (base, seen) = service("svc-secret");
    let gw = Gateway::start_with_env(
        |d, p| cfg(d, p, &base, "q", "eu-west-1"),
        &[("AWS_ACCESS_KEY_ID", "AKIDSVC"), ("AWS_SECRET_ACCESS_KEY", "svc-secret")],
    );
    let r = h2_request(gw.addr(), "POST", "/prod/orders", &[], Some("h2 & more".as_bytes()));
    assert_eq!(r.status, 200);
    let seen = seen.lock().expect("lock");
    let (_, _, _, body, verified) = seen.last().expect("called");
    assert!(*verified);
    assert_eq!(
        String::from_utf8_lossy(body),
        "Action=SendMessage&Version=2012-11-05&QueueUrl=q&MessageBody=h2%20%26%20more"
    );
}
