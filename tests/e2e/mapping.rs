//! Non-proxy integrations with VTL mapping templates, through the real binary: a mock whose
//! request template picks the integration response by status, passthrough refusals (415),
//! render failures (500 with the template and line in the log, nothing of it in the answer),
//! check errors at FILE:LINE, and a DynamoDB `PutItem` through an `aws` integration against
//! moto with IAM auth on (when moto is installed).

use crate::common::*;

const PETS: &str = r#"
[[apis]]
name = "pets"
[apis.stages.prod]
variables = { kind = "dog" }
[apis.integrations.pet]
type = "mock"
passthrough_behavior = "never"
[apis.integrations.pet.request_templates]
"application/json" = """
#set($id = $input.path('$.id'))
#if($id == 'missing'){"statusCode": 404}#else{"statusCode": 200}#end
"""
[[apis.integrations.pet.responses]]
selection_pattern = "404"
status = 404
templates = { "application/json" = '''{"message": "no pet $util.escapeJavaScript($input.params('id'))"}''' }
[[apis.integrations.pet.responses]]
selection_pattern = ""
status = 200
parameters = { "method.response.header.x-pet" = "'yes'" }
templates = { "application/json" = '''{"id": "$input.params('id')", "stage": "$context.stage", "kind": "$stageVariables.kind", "route": "$context.resourcePath"}''' }
[apis.integrations.broken]
type = "mock"
[apis.integrations.broken.request_templates]
"application/json" = """
{"statusCode": 200}
"""
[[apis.integrations.broken.responses]]
status = 200
templates = { "application/json" = """ok
#set($s = 'abc')
$s.substring(9)""" }
[[apis.routes]]
route = "POST /pets/{id}"
integration = "pet"
[[apis.routes]]
route = "GET /broken"
integration = "broken"
"#;

#[test]
fn mock_mapping_templates_pick_the_integration_response() {
    let gw = Gateway::start(|d, p| format!("{}{PETS}", server_section(d, p, "")));
    let json = [("content-type", "application/json")];
    let r = send(gw.addr(), "POST", "/prod/pets/7", &json, br#"{"id": "7"}"#);
    assert_eq!((r.status, r.header("x-pet"), r.header("content-type")), (200, Some("yes"), Some("application/json")));
    assert_eq!(r.json(), serde_json::json!({"id": "7", "stage": "prod", "kind": "dog", "route": "/pets/{id}"}));
    let r = send(gw.addr(), "POST", "/prod/pets/x%22y", &json, br#"{"id": "missing"}"#);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"message": "no pet x\"y"}));
    // no Content-Type is application/json, as in API Gateway
    let r = send(gw.addr(), "POST", "/prod/pets/8", &[], br#"{"id": "8"}"#);
    assert_eq!(r.status, 200);
    // passthrough_behavior = "never": a media type no template names is refused
    let r = send(gw.addr(), "POST", "/prod/pets/7", &[("content-type", "text/plain")], b"id=7");
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.json()["message"], "Unsupported Media Type");
    // a template that fails at run time: 500, its name and line in the log only
    let r = send(gw.addr(), "GET", "/prod/broken", &[], b"");
    assert_eq!(r.status, 500);
    assert_eq!(r.json(), serde_json::json!({"message": "Internal server error"}));
    assert!(!r.text().contains("substring"));
    eventually("the render error in the log", || {
        let log = gw.stderr();
        log.contains("broken response template \"application/json\"") && log.contains("line 3")
    });
}

#[test]
fn vtl_errors_are_check_errors_at_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    let text = "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.m]\ntype = \"mock\"\n[apis.integrations.m.request_templates]\n\"application/json\" = \"#if($x\"\n";
    std::fs::write(&path, text).expect("write");
    let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&path).output().expect("check");
    let msg = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{msg}");
    assert!(msg.contains("bad.toml:7"), "{msg}");
    assert!(msg.contains("VTL 1:7"), "{msg}");
    for (key, text) in [
        ("passthrough_behavior", "passthrough_behavior = \"sometimes\"\n"),
        ("selection_pattern", "[[apis.integrations.m.responses]]\nselection_pattern = \"(\"\nstatus = 200\n"),
        ("parameters", "[[apis.integrations.m.responses]]\nstatus = 200\nparameters = { \"x\" = \"'y'\" }\n"),
    ] {
        let cfg = format!("[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.m]\ntype = \"mock\"\n{text}");
        std::fs::write(&path, cfg).expect("write");
        let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&path).output().expect("check");
        let msg = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && msg.contains(key), "{key}: {msg}");
    }
}

fn orders(d: &std::path::Path, p: &Ports, endpoint: &str) -> String {
    format!(
        r#"{server}
[[apis]]
name = "shop"
[apis.stages.prod]
variables = {{ table = "orders" }}
[apis.stages.test]
variables = {{ table = "nope" }}
[apis.integrations.orders]
type = "aws"
service = "dynamodb"
region = "us-east-1"
endpoint = "{endpoint}"
action = "PutItem"
passthrough_behavior = "when_no_templates"
[apis.integrations.orders.request_templates]
"application/json" = """
#set($body = $input.path('$'))
{{"TableName": "$stageVariables.table",
 "Item": {{"id": {{"S": "$context.requestId"}},
          "customer": {{"S": "$util.escapeJavaScript($body.customer)"}},
          "lines": {{"L": [#foreach($l in $body.lines){{"S": "$l.sku"}}#if($foreach.hasNext),#end#end]}}}}}}
"""
[[apis.integrations.orders.responses]]
selection_pattern = "2\\d{{2}}"
status = 201
parameters = {{ "method.response.header.location" = "'/orders'", "method.response.header.x-req" = "integration.response.header.x-amzn-requestid" }}
templates = {{ "application/json" = '{{"id": "$context.requestId"}}' }}
[[apis.integrations.orders.responses]]
selection_pattern = ""
status = 500
templates = {{ "application/json" = '''{{"message": "$util.escapeJavaScript($input.path('$.message'))"}}''' }}
[[apis.routes]]
route = "POST /orders"
integration = "orders"
"#,
        server = server_section(d, p, "")
    )
}

#[test]
fn dynamodb_put_item_through_vtl_lands_in_moto() {
    let Some(moto) = Moto::start(4) else {
        eprintln!("SKIPPED: moto_server is not installed (./dev test installs it into target/peers)");
        return;
    };
    let port = moto.port;
    let v = moto.script("moto_dynamodb.py", &["setup", &port.to_string()]);
    let (ak, sk) = (v["ak"].as_str().expect("ak"), v["sk"].as_str().expect("sk"));
    let base = format!("http://127.0.0.1:{port}");
    let gw = Gateway::start_with_env(
        |d, p| orders(d, p, &base),
        &[("AWS_ACCESS_KEY_ID", ak), ("AWS_SECRET_ACCESS_KEY", sk)],
    );
    let body = r#"{"customer": "Ann \"A\" ü", "lines": [{"sku": "a1"}, {"sku": "b2"}]}"#;
    let r = send(gw.addr(), "POST", "/prod/orders", &[("content-type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some("/orders"));
    assert!(r.header("x-req").is_some_and(|v| !v.is_empty()), "moto's request id is passed on");
    let id = r.json()["id"].as_str().expect("id").to_string();
    assert_eq!(Some(id.as_str()), r.header("x-request-id"));
    let item = moto.script("moto_dynamodb.py", &["get", &port.to_string(), ak, sk, &id]);
    assert_eq!(
        item,
        serde_json::json!({"id": {"S": id}, "customer": {"S": "Ann \"A\" ü"}, "lines": {"L": [{"S": "a1"}, {"S": "b2"}]}})
    );
    // DynamoDB's error (no such table) through the default response
    let r = send(gw.addr(), "POST", "/test/orders", &[("content-type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["message"].as_str().expect("message").to_string();
    assert!(msg.contains("not found") || msg.contains("Requested resource"), "{msg}");
    // a media type no template names: 415 (when_no_templates and the integration has one)
    let r = send(gw.addr(), "POST", "/prod/orders", &[("content-type", "text/plain")], b"x");
    assert_eq!(r.status, 415);
}

/// A Lambda Invoke API for a custom integration: records the payload the function got, and
/// answers by its `id`: "404" and "boom" fail (X-Amz-Function-Error), others succeed.
fn legacy_function() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let s2 = seen.clone();
    let base = serve_raw(move |req, _| {
        let e: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        s2.lock().expect("lock").push(e.clone());
        let id = e["id"].as_str().unwrap_or_default().to_string();
        let (extra, out) = match id.as_str() {
            "404" => (
                "X-Amz-Function-Error: Unhandled\r\n",
                r#"{"errorMessage":"NotFound: no order 404","errorType":"NotFound"}"#.to_string(),
            ),
            "boom" => {
                ("X-Amz-Function-Error: Unhandled\r\n", r#"{"errorMessage":"kaboom","errorType":"Error"}"#.to_string())
            }
            _ => ("", serde_json::json!({"order": id, "user": e["user"]}).to_string()),
        };
        json_reply(200, extra, &out)
    });
    (base, seen)
}

#[test]
fn lambda_custom_integration_selects_responses_by_error_message() {
    let (base, seen) = legacy_function();
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "shop"
[apis.stages.prod]
[apis.integrations.legacy]
type = "lambda"
function = "orders-legacy"
endpoint = "{base}"
proxy = false
request_templates = {{ "application/json" = '''{{"id": "$input.params('id')", "user": "$util.escapeJavaScript($input.path('$.user'))", "stage": "$context.stage"}}''' }}
[[apis.integrations.legacy.responses]]
selection_pattern = "NotFound:.*"
status = 404
templates = {{ "application/json" = '''{{"error": "$input.path('$.errorMessage')"}}''' }}
[[apis.integrations.legacy.responses]]
status = 200
templates = {{ "application/json" = '''{{"order": "$input.path('$.order')", "for": "$util.escapeJavaScript($input.path('$.user'))"}}''' }}
[[apis.routes]]
route = "POST /orders/{{id}}"
integration = "legacy"
"#,
            server = server_section(d, p, "")
        )
    });
    let json = [("content-type", "application/json")];
    let r = send(gw.addr(), "POST", "/prod/orders/7", &json, br#"{"user": "ann \"o\""}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"order": "7", "for": "ann \"o\""}));
    // the function got the rendered template, not a proxy event
    assert_eq!(
        seen.lock().expect("lock").last().cloned(),
        Some(serde_json::json!({"id": "7", "user": "ann \"o\"", "stage": "prod"}))
    );
    // an error whose message matches a pattern takes that response
    let r = send(gw.addr(), "POST", "/prod/orders/404", &json, br#"{"user": "b"}"#);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"error": "NotFound: no order 404"}));
    // one that matches none takes the default response, as in API Gateway
    let r = send(gw.addr(), "POST", "/prod/orders/boom", &json, br#"{"user": "c"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"order": "", "for": ""}));
}

/// An AWS export (`get-export --export-type oas30 --parameters extensions='integrations'`) with
/// a DynamoDB PutItem through VTL, a Lambda custom integration with an error pattern and a
/// mock with a 404 response: imported, and served with no edit beyond naming the endpoints.
#[test]
fn an_aws_export_is_imported_and_served() {
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws-exports/orders-oas30.json");
    let out = std::process::Command::new(BIN)
        .args(["import", "openapi"])
        .arg(&doc)
        .args(["--stage", "prod=http://127.0.0.1:9"])
        .output()
        .expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(report.contains("POST /orders: x-amazon-apigateway-integration/credentials"), "{report}");
    let mut imported: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("TOML");
    let legacy = imported["apis"][0]["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["route"].as_str() == Some("GET /orders/{id}")))
        .map(|r| r["integration"]["content_handling"].clone());
    assert_eq!(legacy.as_ref().and_then(|v| v.as_str()), Some("convert_to_text"), "contentHandling is imported");

    let (lambda, _seen) = legacy_function();
    let moto = Moto::start(4);
    let dynamo = moto.as_ref().map(|m| {
        let v = m.script("moto_dynamodb.py", &["setup", &m.port.to_string()]);
        (format!("http://127.0.0.1:{}", m.port), v)
    });
    // name the endpoints: the Lambda Invoke API and the DynamoDB endpoint
    let api = imported["apis"].as_array_mut().and_then(|a| a.first_mut()).and_then(|a| a.as_table_mut()).expect("api");
    for r in api["routes"].as_array_mut().expect("routes") {
        let i = r.get_mut("integration").and_then(|i| i.as_table_mut()).expect("inline integration");
        match i["type"].as_str() {
            Some("lambda") => {
                i.insert("endpoint".into(), toml::Value::String(lambda.clone()));
            }
            Some("aws") => {
                let e = dynamo.as_ref().map_or("http://127.0.0.1:9".to_string(), |(e, _)| e.clone());
                i.insert("endpoint".into(), toml::Value::String(e));
            }
            _ => {}
        }
    }
    // the Cognito user pool's keys: a local JWKS with the pool's issuer in the tokens
    let keys_dir = tempfile::tempdir().expect("dir");
    let keys = crate::jwt::write_jwks(keys_dir.path());
    let jwks = keys_dir.path().join("jwks.json").display().to_string();
    let pool = imported["authorizers"]["orders-users"].as_table_mut().expect("the Cognito authorizer, imported");
    assert_eq!(pool["issuer"].as_str(), Some("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Orders1"));
    pool.insert("jwks".into(), toml::Value::String(jwks));
    let token = |scope: &str| {
        let c = serde_json::json!({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Orders1",
            "sub": "user-1", "token_use": "access", "scope": scope, "exp": crate::jwt::now() + 300});
        crate::jwt::rs256(&keys.rsa_pem, "rsa1", &c)
    };
    let block = toml::to_string(&imported).expect("TOML");
    let env: Vec<(&str, &str)> = match &dynamo {
        Some((_, v)) => vec![
            ("AWS_ACCESS_KEY_ID", v["ak"].as_str().expect("ak")),
            ("AWS_SECRET_ACCESS_KEY", v["sk"].as_str().expect("sk")),
        ],
        None => vec![],
    };
    let gw = Gateway::start_with_env(|d, p| format!("{}\n{block}", server_section(d, p, "")), &env);
    // the mock's request template picks its 404 response
    let r = send(gw.addr(), "GET", "/prod/missing", &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"message": "no such thing at /missing"}));
    // the Lambda custom integration, success and a NotFound error
    let r = send(gw.addr(), "GET", "/prod/orders/7", &[], b"");
    assert_eq!((r.status, r.json()), (200, serde_json::json!({"order": "7"})), "{}", r.text());
    let r = send(gw.addr(), "GET", "/prod/orders/404", &[], b"");
    assert_eq!((r.status, r.json()), (404, serde_json::json!({"error": "NotFound: no order 404"})));
    // GET has no request validator: its required x-trace header is not enforced (as in AWS)
    assert_eq!(send(gw.addr(), "GET", "/prod/orders/7", &[], b"").status, 200);
    // the Cognito authorizer: no token, a token without the scope; the imported
    // UNAUTHORIZED gateway response (VTL, with its header)
    let json = [("content-type", "application/json")];
    let r = send(gw.addr(), "POST", "/prod/orders", &json, br#"{"customer": "Bo", "lines": [{"sku": "z9"}]}"#);
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")), "{}", r.text());
    assert_eq!(r.json()["kind"], "UNAUTHORIZED", "{}", r.text());
    assert!(r.json()["message"].is_string(), "{}", r.text());
    let other = token("orders/read");
    let r = send(
        gw.addr(),
        "POST",
        "/prod/orders",
        &[("content-type", "application/json"), ("authorization", &other)],
        b"{}",
    );
    assert_eq!(r.status, 403, "a token without the route's scope: {}", r.text());
    // the request validator (body only): a body missing `lines` is refused before DynamoDB
    let tok = token("orders/write");
    let r = send(
        gw.addr(),
        "POST",
        "/prod/orders",
        &[("content-type", "application/json"), ("authorization", &tok)],
        br#"{"customer": "Bo"}"#,
    );
    assert_eq!((r.status, r.json()["invalid"].as_bool()), (400, Some(true)), "{}", r.text());
    // DynamoDB PutItem through the VTL template, into moto
    let (Some(m), Some((_, v))) = (&moto, &dynamo) else {
        eprintln!("SKIPPED (DynamoDB part): moto_server is not installed (./dev test installs it into target/peers)");
        return;
    };
    let body = r#"{"customer": "Bo", "lines": [{"sku": "z9"}]}"#;
    let with_token = [("content-type", "application/json"), ("authorization", tok.as_str())];
    let r = send(gw.addr(), "POST", "/prod/orders", &with_token, body.as_bytes());
    assert_eq!((r.status, r.header("location")), (201, Some("/orders")), "{}", r.text());
    let id = r.json()["id"].as_str().expect("id").to_string();
    let (ak, sk) = (v["ak"].as_str().expect("ak"), v["sk"].as_str().expect("sk"));
    let item = m.script("moto_dynamodb.py", &["get", &m.port.to_string(), ak, sk, &id]);
    assert_eq!(item, serde_json::json!({"id": {"S": id}, "customer": {"S": "Bo"}, "lines": {"L": [{"S": "z9"}]}}));
}

/// `request_parameters` put the method request's values, `$context`, stage variables and
/// literals into the service request's headers, query string and path, and the signature
/// covers them.
#[test]
fn request_parameters_reach_the_service_signed() {
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<(String, String)>, bool)>>>;
    let seen: Seen = Default::default();
    let s2 = seen.clone();
    let seen_h2 = seen.clone();
    let base = serve_raw(move |req, host| {
        let verified = req.sigv4_verifies(host, "AKIDPARAM", "param-secret", "eu-west-1", "sqs");
        s2.lock().expect("lock").push((req.target.clone(), req.headers.clone(), verified));
        let out = "<ok/>";
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{out}", out.len()).into_bytes()
    });
    let gw = Gateway::start_with_env(
        |d, p| {
            format!(
                r#"{server}
[[apis]]
name = "items"
[apis.stages.prod]
variables = {{ env = "production" }}
[apis.integrations.svc]
type = "aws"
service = "sqs"
region = "eu-west-1"
endpoint = "{base}"
method = "POST"
path = "/items/{{id}}"
request_parameters = {{ "integration.request.header.x-user" = "method.request.header.x-caller", "integration.request.querystring.q" = "method.request.querystring.q", "integration.request.path.id" = "method.request.path.id", "integration.request.header.x-fixed" = "'static'", "integration.request.header.x-stage" = "stageVariables.env", "integration.request.header.x-req" = "context.requestId", "integration.request.header.x-none" = "method.request.header.x-absent", "integration.request.header.x-q" = "method.request.querystring.q" }}
request_templates = {{ "application/json" = '''{{"n": $input.json('$.n')}}''' }}
[[apis.routes]]
route = "POST /items/{{id}}"
integration = "svc"
"#,
                server = server_section(d, p, "")
            )
        },
        &[("AWS_ACCESS_KEY_ID", "AKIDPARAM"), ("AWS_SECRET_ACCESS_KEY", "param-secret")],
    );
    let r = send(
        gw.addr(),
        "POST",
        "/prod/items/a%20b?q=x%20y&other=1",
        &[("content-type", "application/json"), ("x-caller", "ann")],
        br#"{"n": 5}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = seen.lock().expect("lock");
    let (target, headers, verified) = seen.last().expect("called");
    assert_eq!(target, "/items/a%20b?q=x%20y");
    let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!((h("x-user"), h("x-fixed"), h("x-stage")), (Some("ann"), Some("static"), Some("production")));
    assert_eq!(h("x-req"), r.header("x-request-id"));
    assert_eq!(h("x-none"), None, "a missing value leaves its parameter out");
    assert!(*verified, "the signature covers the mapped path, query and headers: {headers:?}");
    drop(seen);

    // HTTP/2 without content-length, a repeated header and an encoded path: the service gets
    // the repeated field under the one rule (all lines, joined) and the body as rendered
    let r = h2_request(
        gw.addr(),
        "POST",
        "/prod/items/%C3%A9%2Fx?q=%26",
        &[("content-type", "application/json"), ("x-caller", "ann"), ("x-caller", "bob")],
        Some(br#"{"n": 6}"#),
    );
    assert_eq!(r.status, 200);
    let seen = seen_h2.lock().expect("lock");
    let (target, headers, verified) = seen.last().expect("called");
    assert_eq!(target, "/items/%C3%A9%2Fx?q=%26");
    let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(h("x-user"), Some("ann, bob"));
    assert!(*verified, "{headers:?}");
    let calls = seen.len();
    drop(seen);

    // a mapped value that decodes to a line break (or another control byte) cannot make a
    // field of its own in the service request: the call is refused before it is sent
    for q in ["a%0D%0Ax-injected:%201", "a%0Ax-injected:%201", "a%00b"] {
        let r = send(
            gw.addr(),
            "POST",
            &format!("/prod/items/1?q={q}"),
            &[("content-type", "application/json"), ("x-caller", "ann")],
            br#"{"n": 7}"#,
        );
        assert!(r.status >= 500, "{q}: {} {}", r.status, r.text());
        // the same over HTTP/2 without content-length, the value repeated in a second query
        // parameter of the same name and an odd-case encoding of the line break
        let odd = q.replace("%0D", "%0d").replace("%0A", "%0a");
        let r = h2_request(
            gw.addr(),
            "POST",
            &format!("/prod/items/1?q={odd}&q={q}"),
            &[("content-type", "application/json"), ("x-caller", "ann")],
            Some(br#"{"n": 8}"#),
        );
        assert!(r.status >= 500, "h2 {q}: {}", r.status);
    }
    let seen = seen_h2.lock().expect("lock");
    assert_eq!(seen.len(), calls, "the service saw none of them");
    assert!(seen.iter().all(|(_, h, _)| h.iter().all(|(k, _)| k != "x-injected")));
}

/// `{ vtl = … }` / `{ vtl_file = … }` in place of minijinja: a mock body, request and
/// response transform bodies, and a gateway response body, rendered with AWS's variables;
/// what the origin received is asserted.
#[test]
fn vtl_wherever_minijinja_templates_are_accepted() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let s2 = seen.clone();
    let origin = serve_raw(move |req, _| {
        s2.lock().expect("lock").push((req.target.clone(), String::from_utf8_lossy(&req.body).into_owned()));
        let body = r#"{"id": 7, "name": "rex"}"#;
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
            .into_bytes()
    });
    let gw = Gateway::start(|d, p| {
        std::fs::write(
            d.join("pet.vtl"),
            "#set($p = $input.path('$'))\n{\"pet\": \"$util.escapeJavaScript($p.name)\", \"tags\": [#foreach($t in $p.tags)\"$t\"#if($foreach.hasNext),#end#end], \"stage\": \"$stageVariables.color\"}",
        )
        .expect("vtl file");
        format!(
            r#"{}
[[apis]]
name = "v"
[apis.stages.prod]
variables = {{ color = "blue" }}
[apis.integrations.origin]
type = "http"
uri = "{origin}"
[apis.integrations.hello]
type = "mock"
status = 200
body = {{ vtl = '''{{"hello": "$input.params('who')", "route": "$context.resourcePath", "n": #set($n = 1 + 2)$n}}''' }}
[apis.gateway_responses.BAD_REQUEST_BODY]
status = 422
body = {{ vtl = '{{"error": $context.error.messageString, "type": "$context.error.responseType"}}' }}
[[apis.routes]]
route = "GET /hello/{{who}}"
integration = "hello"
[[apis.routes]]
route = "POST /v"
integration = "hello"
validate = {{ body = {{ type = "object", required = ["x"] }} }}
[[apis.routes]]
route = "POST /pets"
integration = "origin"
[apis.routes.request_transform]
body = {{ vtl_file = "pet.vtl" }}
[apis.routes.response_transform]
body = {{ vtl = '''#set($b = $input.path('$'))[$b.id, "$b.name.toUpperCase()"]''' }}
"#,
            server_section(d, p, "watch = false")
        )
    });
    let r = gw.get("/prod/hello/bo%20b");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"hello": "bo b", "route": "/hello/{who}", "n": 3}));

    let body = r#"{"name": "Rex \"the\" dog", "tags": ["a", "b"]}"#;
    let r = send(gw.addr(), "POST", "/prod/pets", &[("content-type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!([7, "REX"]), "the response transform's VTL");
    let (target, got) = seen.lock().expect("lock").last().cloned().expect("the origin got the request");
    assert_eq!(target, "/pets");
    let got: serde_json::Value = serde_json::from_str(&got).expect("the rendered body is JSON");
    assert_eq!(got, serde_json::json!({"pet": "Rex \"the\" dog", "tags": ["a", "b"], "stage": "blue"}));

    // a gateway response in VTL: AWS's $context.error.messageString is the quoted message
    let r = send(gw.addr(), "POST", "/prod/v", &[("content-type", "application/json")], br#"{"y": "\"quoted\""}"#);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["type"], "BAD_REQUEST_BODY", "{}", r.text());
    assert!(r.json()["error"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.text());

    // errors: a VTL file names its line and column; both keys, or neither, is refused
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(dir.path().join("bad.vtl"), "ok\n#foreach($x in $y)\n").expect("write");
    for (body, needle) in [
        (r#"{ vtl_file = "bad.vtl" }"#, "VTL 2:"),
        (r#"{ vtl = "a", vtl_file = "bad.vtl" }"#, "vtl_file = \"FILE\""),
        (r#"{ vtl_file = "missing.vtl" }"#, "missing.vtl"),
    ] {
        let cfg = format!(
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.m]\ntype = \"mock\"\nbody = {body}\n"
        );
        std::fs::write(&path, cfg).expect("write");
        let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&path).output().expect("check");
        let msg = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && msg.contains(needle), "{needle}: {msg}");
        assert!(msg.contains("bad.toml:6"), "{msg}");
    }
}

/// AWS's PetStore example API, as exported (`tests/fixtures/aws-exports/petstore-oas30.json`):
/// HTTP custom integrations (`http`, non-proxy) with request parameters and integration
/// responses, a mock serving HTML, CORS mocks. Imported, with only the backend's URL named,
/// and served; what the backend received is asserted.
#[test]
fn awss_petstore_export_is_served() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<RawRequest>::new()));
    let s2 = seen.clone();
    let backend = serve_raw(move |req, _| {
        s2.lock().expect("lock").push(req.clone());
        let body = match (req.method.as_str(), req.target.as_str()) {
            ("POST", _) => format!(r#"{{"pet": {}, "message": "success"}}"#, String::from_utf8_lossy(&req.body)),
            (_, t) if t.starts_with("/petstore/pets/") => r#"{"id": 1, "type": "dog", "price": 249.99}"#.to_string(),
            _ => r#"[{"id": 1, "type": "dog", "price": 249.99}]"#.to_string(),
        };
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-backend-secret: s\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws-exports/petstore-oas30.json");
    let out = std::process::Command::new(BIN)
        .args(["import", "openapi"])
        .arg(&doc)
        .args(["--stage", "test=http://127.0.0.1:9"])
        .output()
        .expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // name the backend: the demo endpoint's URL becomes the local one
    let block =
        String::from_utf8_lossy(&out.stdout).replace("http://petstore.execute-api.us-east-1.amazonaws.com", &backend);
    assert!(!block.contains("not converted: x-amazon-apigateway-integration"), "{block}");
    let gw = Gateway::start(|d, p| format!("{}\n{block}", server_section(d, p, "watch = false")));

    // the mock root: HTML from the response template, its Content-Type from the parameters
    let r = gw.get("/test/");
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/html")), "{}", r.text());
    assert!(
        r.text().contains("Welcome to your Pet Store API") && r.text().contains("href=\"/test/pets/\""),
        "{}",
        r.text()
    );

    // GET /pets: only the mapped query parameters reach the backend, no client header
    let r = send(gw.addr(), "GET", "/test/pets?type=dog&page=2&other=x", &[("x-client-secret", "c")], b"");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, Some("*")), "{}", r.text());
    assert_eq!(r.json()[0]["type"], "dog");
    assert!(r.header("x-backend-secret").is_none(), "only mapped response headers go back");
    let got = seen.lock().expect("lock").last().cloned().expect("the backend got the request");
    assert_eq!((got.method.as_str(), got.target.as_str()), ("GET", "/petstore/pets?page=2&type=dog"));
    assert!(got.header("x-client-secret").is_none(), "a non-proxy integration passes only mapped fields");
    // an absent parameter is left out
    let r = send(gw.addr(), "GET", "/test/pets", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(seen.lock().expect("lock").last().map(|g| g.target.clone()).as_deref(), Some("/petstore/pets"));

    // GET /pets/{petId}: the path parameter fills the backend path, encoded as one segment
    let r = send(gw.addr(), "GET", "/test/pets/42", &[], b"");
    assert_eq!((r.status, r.json()["id"].as_i64()), (200, Some(1)), "{}", r.text());
    assert_eq!(seen.lock().expect("lock").last().map(|g| g.target.clone()).as_deref(), Some("/petstore/pets/42"));
    let r = send(gw.addr(), "GET", "/test/pets/a%20b%3Fx%23y", &[], b"");
    assert_eq!(r.status, 200);
    let target = seen.lock().expect("lock").last().map(|g| g.target.clone()).unwrap_or_default();
    assert_eq!(target, "/petstore/pets/a%20b%3Fx%23y", "a path value stays one segment, its ? and # encoded");
    // an encoded slash never reaches the backend (the gateway's path rules refuse it first)
    let before = seen.lock().expect("lock").len();
    let r = send(gw.addr(), "GET", "/test/pets/a%2F..%2Fadmin", &[], b"");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(seen.lock().expect("lock").len(), before);

    // POST /pets: the body passes through (no template, when_no_match), over HTTP/1.1 chunked too
    let pet = br#"{"type": "cat", "price": 9.5}"#;
    let r = send(gw.addr(), "POST", "/test/pets", &[("content-type", "application/json")], pet);
    assert_eq!((r.status, r.json()["message"].as_str()), (200, Some("success")), "{}", r.text());
    let got = seen.lock().expect("lock").last().cloned().expect("POST");
    assert_eq!((got.method.as_str(), got.body.as_slice()), ("POST", pet.as_slice()));
    assert_eq!(got.header("content-type").as_deref(), Some("application/json"));

    // over HTTP/2 in DATA frames without content-length: the body arrives whole
    let big: Vec<u8> = format!(r#"{{"type": "dog", "note": "{}"}}"#, "n".repeat(40_000)).into_bytes();
    let r = h2_request(gw.addr(), "POST", "/test/pets", &[("content-type", "application/json")], Some(&big));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = seen.lock().expect("lock").last().cloned().expect("POST over h2");
    assert_eq!(got.body, big);
    assert_eq!(got.header("content-length"), Some(big.len().to_string()));

    // the CORS preflight mock
    let r = send(gw.addr(), "OPTIONS", "/test/pets", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-methods"), Some("POST,GET,OPTIONS"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

/// A Lambda custom integration's `request_parameters` are header fields of the Invoke call:
/// `X-Amz-Invocation-Type: 'Event'` invokes without waiting (Lambda answers 202), and a method
/// request value reaches the function as `X-Amz-Client-Context`; query or path targets are
/// refused (the Invoke API's path is Lambda's).
#[test]
fn lambda_custom_request_parameters_are_invoke_fields() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<RawRequest>::new()));
    let s2 = seen.clone();
    let invoke = serve_raw(move |req, _| {
        s2.lock().expect("lock").push(req.clone());
        if req.header("x-amz-invocation-type").as_deref() == Some("Event") {
            return b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_vec();
        }
        let out = r#"{"done": true}"#;
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{out}", out.len())
            .into_bytes()
    });
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "jobs"
[apis.stages.prod]
[apis.integrations.async]
type = "lambda"
function = "jobs"
endpoint = "{invoke}"
proxy = false
request_parameters = {{ "integration.request.header.X-Amz-Invocation-Type" = "'Event'", "integration.request.header.X-Amz-Client-Context" = "method.request.header.x-ctx" }}
[[apis.integrations.async.responses]]
status = 202
templates = {{ "application/json" = '''{{"queued": "$context.requestId"}}''' }}
[apis.integrations.sync]
type = "lambda"
function = "jobs"
endpoint = "{invoke}"
proxy = false
[[apis.routes]]
route = "POST /jobs"
integration = "async"
[[apis.routes]]
route = "POST /now"
integration = "sync"
"#,
            server = server_section(d, p, "")
        )
    });
    let r = send(
        gw.addr(),
        "POST",
        "/prod/jobs",
        &[("content-type", "application/json"), ("x-ctx", "eyJhIjoxfQ==")],
        b"{}",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["queued"].as_str(), r.header("x-request-id"), "{}", r.text());
    let got = seen.lock().expect("lock").last().cloned().expect("invoked");
    assert_eq!(got.header("x-amz-invocation-type").as_deref(), Some("Event"));
    assert_eq!(got.header("x-amz-client-context").as_deref(), Some("eyJhIjoxfQ=="));
    assert_eq!(got.target, "/2015-03-31/functions/jobs/invocations");
    // without parameters: a synchronous RequestResponse invocation
    let r = send(gw.addr(), "POST", "/prod/now", &[("content-type", "application/json")], b"{}");
    assert_eq!((r.status, r.json()["done"].as_bool()), (200, Some(true)), "{}", r.text());
    let got = seen.lock().expect("lock").last().cloned().expect("invoked");
    assert_eq!(got.header("x-amz-invocation-type").as_deref(), Some("RequestResponse"));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    let cfg =
        "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.f]\ntype = \"lambda\"\nfunction = \"f\"\n\
               endpoint = \"http://127.0.0.1:9\"\nproxy = false\n\
               request_parameters = { \"integration.request.querystring.q\" = \"'x'\" }\n";
    std::fs::write(&path, cfg).expect("write");
    let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&path).output().expect("check");
    let msg = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && msg.contains("header fields of the Invoke call"), "{msg}");
}

/// API Gateway's mapping template examples (the photo album models), as an export
/// (`tests/fixtures/aws-exports/photos-oas30.json`): the backend's photos reshaped by the
/// response template, the client's by the request template, `passthrough_behavior = never`.
#[test]
fn awss_photo_album_mapping_examples() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<RawRequest>::new()));
    let s2 = seen.clone();
    let backend = serve_raw(move |req, _| {
        s2.lock().expect("lock").push(req.clone());
        let (status, body) = match req.method.as_str() {
            "GET" => (
                200,
                r#"{"photos": {"page": 1, "pages": "1234", "perpage": 100, "total": "123398", "photo": [
                {"id": "12345678901", "owner": "23456789@A12", "secret": "abc123d456", "server": "1234", "farm": 1, "title": "Sample photo 1", "ispublic": true, "isfriend": false, "isfamily": false},
                {"id": "23456789012", "owner": "34567890@B23", "secret": "bcd234e567", "server": "2345", "farm": 2, "title": "Sample photo 2", "ispublic": true, "isfriend": false, "isfamily": false}]}}"#,
            ),
            _ if req.body.windows(4).any(|w| w == b"fail") => (503, "{}"),
            _ => (200, "{}"),
        };
        format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
            .into_bytes()
    });
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws-exports/photos-oas30.json");
    let out = std::process::Command::new(BIN).args(["import", "openapi"]).arg(&doc).output().expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let block = String::from_utf8_lossy(&out.stdout).replace("http://photos.example.com", &backend);
    let gw = Gateway::start(|d, p| format!("{}\n{block}", server_section(d, p, "watch = false")));

    let r = gw.get("/prod/photos");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"photos": [
            {"id": "12345678901", "photographedBy": "23456789@A12", "title": "Sample photo 1", "ispublic": true, "isfriend": false, "isfamily": false},
            {"id": "23456789012", "photographedBy": "34567890@B23", "title": "Sample photo 2", "ispublic": true, "isfriend": false, "isfamily": false}]}),
        "AWS's documented output for this input"
    );

    let input = br#"{"photos": [{"id": "1", "photographedBy": "ann", "title": "Tea time", "ispublic": true, "isfriend": false, "isfamily": true}]}"#;
    let json = [("content-type", "application/json")];
    let r = send(gw.addr(), "POST", "/prod/photos", &json, input);
    assert_eq!(r.status, 201, "{}", r.text());
    let got = seen.lock().expect("lock").last().cloned().expect("posted");
    let sent: serde_json::Value =
        serde_json::from_slice(&got.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&got.body)));
    assert_eq!(sent["photos"]["photo"][0]["owner"], "ann");
    assert_eq!(sent["photos"]["photo"][0]["isfamily"], true);
    // the backend's failure takes the default response; a media type without a template is 415
    let fail = br#"{"photos": [{"id": "fail", "photographedBy": "x", "title": "t", "ispublic": true, "isfriend": true, "isfamily": true}]}"#;
    let r = send(gw.addr(), "POST", "/prod/photos", &json, fail);
    assert_eq!((r.status, r.json()["message"].as_str()), (500, Some("the album could not be saved")));
    let r = send(gw.addr(), "POST", "/prod/photos", &[("content-type", "text/plain")], b"photos");
    assert_eq!(r.status, 415, "{}", r.text());
    // the request validator: a body without photos never reaches the backend
    let n = seen.lock().expect("lock").len();
    let r = send(gw.addr(), "POST", "/prod/photos", &json, b"{}");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(seen.lock().expect("lock").len(), n);
}

/// `content_handling`: a base64 text body reaches the backend as the bytes it encodes
/// (`convert_to_binary`), and a binary answer reaches the client as base64 text
/// (`convert_to_text` on the integration response); text that is not base64 is a 500.
#[test]
fn content_handling_converts_between_binary_and_base64() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<RawRequest>::new()));
    let s2 = seen.clone();
    let backend = serve_raw(move |req, _| {
        s2.lock().expect("lock").push(req.clone());
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 4\r\n\r\n".to_vec();
        out.extend_from_slice(&[0x89, b'P', 0x00, 0xff]);
        out
    });
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "img"
[apis.stages.prod]
[apis.integrations.up]
type = "http"
proxy = false
method = "PUT"
uri = "{backend}/store"
content_handling = "convert_to_binary"
[[apis.integrations.up.responses]]
status = 200
content_handling = "convert_to_text"
[[apis.routes]]
route = "POST /img"
integration = "up"
"#,
            server = server_section(d, p, "")
        )
    });
    let r = send(gw.addr(), "POST", "/prod/img", &[("content-type", "text/plain")], b"AAEC/w==\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "iVAA/w==", "the backend's bytes as base64");
    let got = seen.lock().expect("lock").last().cloned().expect("stored");
    assert_eq!((got.method.as_str(), got.body.as_slice()), ("PUT", [0u8, 1, 2, 255].as_slice()));
    let r = send(gw.addr(), "POST", "/prod/img", &[("content-type", "text/plain")], b"not base64!");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(!r.text().contains("base64"), "no internals in the answer: {}", r.text());
}
