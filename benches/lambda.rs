//! Lambda proxy integrations on the request path: building the 1.0 and 2.0 events for a
//! request with a 1 KiB JSON body and a dozen headers, mapping a function's answer back, and
//! SigV4-signing the invocation (the endpoint's compiled signer, against signing from the URL).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgegate::aws::sigv4::{sign_request, Keys, Signer};
use edgegate::integrations::lambda::{answer, event, Format, Request};

#[path = "support/counting.rs"]
mod counting;
#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;
use counting::report;

fn bench(c: &mut Criterion) {
    let mut headers = http::HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("authorization", "Bearer abcdefghijklmnopqrstuvwxyz"),
        ("x-request-id", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
        ("x-forwarded-for", "192.0.2.1"),
        ("cookie", "session=abc; theme=dark"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("x-m", "1"),
        ("x-m", "2"),
        ("cache-control", "no-cache"),
    ] {
        headers.append(k, v.parse().expect("value"));
    }
    let body = format!("{{\"data\":\"{}\"}}", "x".repeat(1010));
    let vars = [("flavour".to_string(), "vanilla".to_string())].into_iter().collect();
    let params = vec![("id".to_string(), "7".to_string())];
    let head = http::Request::builder()
        .method("POST")
        .uri("/prod/pets/7?a=1&a=2&b=x%20y")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let client = edgegate::request::Client {
        ip: Some("192.0.2.1".parse().expect("ip")),
        host: "api.example.com".into(),
        ..Default::default()
    };
    let caller = edgegate::request::Caller::default();
    let req = || Request {
        view: edgegate::request::RequestView {
            head: &head,
            route: edgegate::request::Matched {
                api: "pets",
                stage: "prod",
                route_key: "POST /pets/{id}",
                path: "/pets/7",
                params: &params,
                variables: &vars,
            },
            client: &client,
            caller: &caller,
            request_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            received_at: std::time::SystemTime::now(),
            body: Some(body.as_bytes()),
        },
        headers: &headers,
        binary: false,
    };
    c.bench_function("lambda event 1.0 (1 KiB body) to JSON bytes", |b| {
        b.iter(|| black_box(event(&req(), Format::V1)))
    });
    c.bench_function("lambda event 2.0 (1 KiB body) to JSON bytes", |b| {
        b.iter(|| black_box(event(&req(), Format::V2)))
    });
    let result = format!(
        "{{\"statusCode\":200,\"headers\":{{\"content-type\":\"application/json\",\"x-a\":\"1\"}},\"multiValueHeaders\":{{\"x-b\":[\"1\",\"2\"]}},\"body\":\"{}\"}}",
        "y".repeat(1000)
    );
    c.bench_function("lambda answer mapping (1 KiB body)", |b| {
        b.iter(|| black_box(answer(black_box(result.as_bytes()), Format::V2).expect("answer")))
    });

    // the harness origin's answer: a payload 2.0 result without statusCode
    let bare =
        br#"{"ok":true,"origin":"bench","note":"static JSON body served by the benchmark origin","id":1234567890}"#;
    report("lambda answer mapping (bare 2.0 object)", || answer(bare, Format::V2).is_ok());
    c.bench_function("lambda answer mapping (bare 2.0 object)", |b| {
        b.iter(|| black_box(answer(black_box(bare), Format::V2).expect("answer")))
    });

    let payload = event(&req(), Format::V2);
    let url = "http://127.0.0.1:9001/2015-03-31/functions/bench/invocations";
    // as the Invoke call signs: without X-Amz-Content-Sha256
    let signer = Signer::new("us-east-1", "lambda", url).expect("signer").without_payload_header();
    let keys = Keys { access_key: "AKIDEXAMPLE", secret: "bench", session_token: None };
    let now = 1_795_525_200;
    let extra = [("content-type", "application/json")];
    report("SigV4 sign (compiled signer)", || signer.sign(&keys, "POST", &extra, &payload, now).is_ok());
    c.bench_function("SigV4 sign of the invocation (compiled signer)", |b| {
        b.iter(|| black_box(signer.sign(&keys, "POST", &extra, black_box(&payload), now)))
    });
    let extra = [("content-type".to_string(), "application/json".to_string())];
    c.bench_function("SigV4 sign of the invocation (from the URL, one-shot)", |b| {
        b.iter(|| {
            black_box(sign_request("AKIDEXAMPLE", "bench", "us-east-1", "lambda", "POST", url, &extra, &payload, now))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
