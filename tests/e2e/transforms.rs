//! Request validation, request/response transforms, binary media types and CORS.

use crate::common::*;

fn api(d: &std::path::Path, p: &Ports, origin: &str) -> String {
    std::fs::create_dir_all(d.join("schemas")).expect("dir");
    std::fs::write(
        d.join("schemas/pet.json"),
        r#"{"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0}}}"#,
    )
    .expect("schema");
    format!(
        r#"{server}
[[apis]]
name = "t"
binary_media_types = ["image/*"]
cors = {{ allow_origins = ["https://app.example.com"], allow_methods = ["GET", "POST"], allow_headers = ["authorization", "content-type"], expose_headers = ["x-api-version"], max_age = "10m" }}
[apis.stages.prod]
variables = {{ team = "blue" }}
[apis.integrations.up]
type = "http"
uri = "{origin}"

[[apis.routes]]
route = "POST /pets"
integration = "up"
[apis.routes.validate]
body = "schemas/pet.json"
query = ["lang"]
headers = ["x-client"]

[[apis.routes]]
route = "POST /draft4"
integration = "up"
validate = {{ body = {{ "$schema" = "http://json-schema.org/draft-04/schema#", type = "object", properties = {{ n = {{ type = "number", maximum = 5, exclusiveMaximum = true }} }} }} }}

[[apis.routes]]
route = "POST /wrap/{{id}}"
integration = "up"
[apis.routes.request_transform]
set_headers = {{ "x-team" = "{{{{ stageVariables.team }}}}", "x-pet" = "{{{{ input.params.path.id }}}}" }}
remove_headers = ["cookie"]
set_query = {{ "source" = "gw", "lang" = "{{{{ input.params.header['accept-language'] | default('none') }}}}" }}
path = "/v2/pets/{{{{ input.params.path.id }}}}"
body = '{{"pet": {{{{ input.json | tojson }}}}, "raw": {{{{ input.body | tojson }}}}, "stage": "{{{{ context.stage }}}}"}}'
[apis.routes.response_transform]
status = {{ "200" = 201 }}
set_headers = {{ "x-api-version" = "1" }}
remove_headers = ["x-origin"]
body = '{{"wrapped": {{{{ input.json.target | tojson }}}}, "method": {{{{ input.json.method | tojson }}}}}}'

[[apis.routes]]
route = "GET /sse"
integration = "up"
response_transform = {{ set_headers = {{ "x-streamed" = "yes" }} }}

[[apis.routes]]
route = "ANY /{{proxy+}}"
integration = "up"
"#,
        server = server_section(d, p, "max_body = \"1MiB\"")
    )
}

fn start(origin: &Origin) -> Gateway {
    let url = origin.url();
    Gateway::start(|d, p| api(d, p, &url))
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn validation_refuses_bad_requests_before_the_origin() {
    let origin = Origin::start("o");
    let gw = start(&origin);
    let ok_headers = [JSON, ("x-client", "web")];
    let r = send(gw.addr(), "POST", "/prod/pets?lang=en", &ok_headers, br#"{"name": "rex", "age": 3}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(origin.count(), 1);
    assert_eq!(origin.requests()[0].body, br#"{"name": "rex", "age": 3}"#, "a valid body is forwarded as sent");

    let r = send(gw.addr(), "POST", "/prod/pets", &[JSON], br#"{"name": "rex"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "Missing required request parameters: [lang, x-client]");
    let line = gw.wait_log("BAD_REQUEST_PARAMETERS");
    assert!(line.contains("\"status\":400"), "{line}");

    let r = send(gw.addr(), "POST", "/prod/pets?lang=en", &ok_headers, br#"{"name": 7, "age": -1, "pw": "hunter2"}"#);
    assert_eq!(r.status, 400);
    let m = r.json()["message"].as_str().expect("message").to_string();
    assert!(m.starts_with("Invalid request body: ") && m.contains("/name") && m.contains("/age"), "{m}");
    assert!(!m.contains("hunter2"), "the body is never echoed: {m}");
    let r = send(gw.addr(), "POST", "/prod/pets?lang=en", &ok_headers, b"{not json");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not JSON"));
    let r = send(gw.addr(), "POST", "/prod/pets?lang=en", &[("Content-Type", "text/plain"), ("x-client", "a")], b"x");
    assert_eq!(r.status, 415);
    assert!(r.text().contains("Unsupported Media Type"));

    // draft 4 semantics for a schema that says so (exclusiveMaximum as a boolean)
    assert_eq!(send(gw.addr(), "POST", "/prod/draft4", &[JSON], br#"{"n": 4}"#).status, 200);
    assert_eq!(send(gw.addr(), "POST", "/prod/draft4", &[JSON], br#"{"n": 5}"#).status, 400);
    assert_eq!(origin.count(), 2, "refused requests never reach the origin");
}

#[test]
fn large_and_chunked_bodies_are_validated_as_they_stream() {
    let origin = Origin::start("o");
    let gw = start(&origin);
    let headers = [JSON, ("x-client", "web")];
    // over the 64 KiB read-ahead: checked at its end, forwarded whole when valid
    let big = format!(r#"{{"name": "rex", "pad": "{}"}}"#, "x".repeat(100_000));
    let r = send(gw.addr(), "POST", "/prod/pets?lang=en", &headers, big.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(origin.requests().last().expect("seen").body.len(), big.len());
    let bad = format!(r#"{{"name": "{}"}}"#, "y".repeat(100_000));
    let r = send(gw.addr(), "POST", "/prod/pets?lang=en", &headers, bad.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["message"].as_str().expect("m").contains("/name"));
    // chunked
    let raw = "POST /prod/pets?lang=en HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-client: a\r\n\
               Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{\"nam\r\n9\r\ne\": \"ok\"}\r\n0\r\n\r\n";
    let r = request(gw.addr(), raw.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let raw = "POST /prod/pets?lang=en HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-client: a\r\n\
               Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n9\r\n{\"name\": \r\n2\r\n1}\r\n0\r\n\r\n";
    assert_eq!(request(gw.addr(), raw.as_bytes()).status, 400);
    assert_eq!(origin.count(), 2, "invalid streamed bodies are never completed to the origin");
}

#[test]
fn request_and_response_transforms() {
    let origin = Origin::start("o");
    let gw = start(&origin);
    let r = send(
        gw.addr(),
        "POST",
        "/prod/wrap/42?keep=1&source=client",
        &[JSON, ("Cookie", "session=secret"), ("Accept-Language", "fr")],
        br#"{"name": "rex"}"#,
    );
    assert_eq!(r.status, 201, "status remapped: {}", r.text());
    assert_eq!(r.header("x-api-version"), Some("1"));
    assert_eq!(r.header("x-origin"), None, "removed");
    let seen = origin.requests().pop().expect("seen");
    assert_eq!(seen.target, "/v2/pets/42?keep=1&lang=fr&source=gw");
    assert_eq!(seen.header("x-team"), Some("blue"));
    assert_eq!(seen.header("x-pet"), Some("42"));
    assert_eq!(seen.header("cookie"), None);
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).expect("json body");
    assert_eq!(sent["pet"]["name"], "rex");
    assert_eq!(sent["raw"], r#"{"name": "rex"}"#);
    assert_eq!(sent["stage"], "prod");
    assert_eq!(seen.header("content-length"), Some(seen.body.len().to_string().as_str()));
    // the response body template saw the origin's JSON answer
    assert_eq!(r.json(), serde_json::json!({"wrapped": "/v2/pets/42?keep=1&lang=fr&source=gw", "method": "POST"}));

    // the same through a large body (streamed, collected, rendered) on a kept-alive connection
    let big = format!(r#"{{"name": "{}"}}"#, "z".repeat(90_000));
    let r = send(gw.addr(), "POST", "/prod/wrap/1", &[JSON], big.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let sent: serde_json::Value = serde_json::from_slice(&origin.requests().pop().expect("seen").body).expect("json");
    assert_eq!(sent["pet"]["name"].as_str().map(str::len), Some(90_000));

    // a binary body passes through the body template untouched
    let r = send(gw.addr(), "POST", "/prod/wrap/9", &[("Content-Type", "image/png")], b"\x89PNG\r\n");
    assert_eq!(r.status, 201);
    assert_eq!(origin.requests().pop().expect("seen").body, b"\x89PNG\r\n");
}

#[test]
fn streams_pass_through_routes_without_body_templates() {
    let origin = Origin::start("o");
    let gw = start(&origin);
    let mut s = std::net::TcpStream::connect(gw.addr()).expect("connect");
    use std::io::{BufRead, BufReader, Write};
    s.write_all(b"GET /prod/sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let start = std::time::Instant::now();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.to_ascii_lowercase().contains("x-streamed: yes"), "{head}");
    let mut first_event = String::new();
    while !first_event.contains("event 0") {
        r.read_line(&mut first_event).expect("read");
    }
    assert!(start.elapsed() < std::time::Duration::from_millis(350), "the first event arrives before the stream ends");
}

#[test]
fn cors_preflight_and_response_headers() {
    let origin = Origin::start("o");
    let gw = start(&origin);
    let pre = [("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST")];
    let r = send(gw.addr(), "OPTIONS", "/prod/pets", &pre, b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("authorization, content-type"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    let r = send(gw.addr(), "OPTIONS", "/prod/pets", &[("Origin", "https://evil.example"), pre[1]], b"");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (204, None));
    assert_eq!(origin.count(), 0, "preflights are answered by the gateway");

    let r = get(gw.addr(), "/prod/anything", &[("Origin", "https://app.example.com")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(r.header("access-control-expose-headers"), Some("x-api-version"));
    assert!(r.header("vary").is_some_and(|v| v.contains("Origin")));
    // gateway-made answers carry them too (a browser can read the error)
    let r = send(gw.addr(), "POST", "/prod/pets", &[("Origin", "https://app.example.com"), JSON], b"{}");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    let r = get(gw.addr(), "/prod/anything", &[("Origin", "https://evil.example")]);
    assert_eq!(r.header("access-control-allow-origin"), None);
}
