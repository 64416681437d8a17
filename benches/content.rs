//! Hot-path benchmarks of response caching and request content: building a cache key, a
//! cache hit's lookup in the stage store, a body template render, a VTL mapping template
//! render (API Gateway's DynamoDB PutItem example) and a JSON Schema validation.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgegate::cache::{build_key, Invalidate, KeyInput, KeyPart, RouteCache};
use edgegate::validation::{compile_schema, Validator};
use pingora::cache::storage::Storage;
use std::collections::BTreeMap;

#[path = "support/counting.rs"]
mod counting;
#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn bench(c: &mut Criterion) {
    let store = edgegate::cache::Stores::default().for_stage("bench", "prod", 64 << 20);
    let rc = RouteCache {
        store,
        ttl: std::time::Duration::from_secs(300),
        key: vec![
            KeyPart::Path("id".into()),
            KeyPart::Query("lang".into()),
            KeyPart::Header(http::HeaderName::from_static("accept-language")),
        ],
        invalidate: Invalidate::Never,
        authorized: false,
        honor_origin: true,
    };
    let mut headers = http::HeaderMap::new();
    headers.insert("accept-language", "en-GB".parse().expect("v"));
    headers.insert("user-agent", "wrk".parse().expect("v"));
    let method = http::Method::GET;
    let input = KeyInput {
        api: "pets",
        stage: "prod",
        method: &method,
        proto: "https",
        host: "api.example.com",
        path: "/pets/42",
        query: Some("lang=en"),
        headers: &headers,
    };
    let mut out = String::with_capacity(128);
    c.bench_function("cache key (path + query + header)", |b| {
        b.iter(|| {
            build_key(&mut out, &rc, black_box(&input)).expect("key");
            black_box(out.len())
        })
    });

    c.bench_function("cache key hash (SHA-256, the gateway's)", |b| {
        b.iter(|| black_box(edgegate::cache::key_hash(black_box(&out))))
    });
    c.bench_function("cache key hash (BLAKE2b, Pingora's default)", |b| {
        use pingora::cache::key::CacheHashKey;
        let key = pingora::cache::CacheKey::new(out.clone(), "");
        b.iter(|| black_box(black_box(&key).primary_bin()))
    });

    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let key = pingora::cache::CacheKey::new(out.clone(), "");
    let span = pingora::cache::trace::Span::inactive().handle();
    rt.block_on(async {
        let now = std::time::SystemTime::now();
        let mut h = pingora::http::ResponseHeader::build(200, None).expect("h");
        h.insert_header("content-type", "application/json").expect("h");
        let meta = pingora::cache::CacheMeta::new(now + std::time::Duration::from_secs(300), now, 0, 0, h);
        let mut miss = store.get_miss_handler(&key, &meta, &span).await.expect("miss");
        miss.write_body(bytes::Bytes::from(vec![b'x'; 1024]), true).await.expect("write");
        miss.finish().await.expect("finish");
    });
    c.bench_function("cache store lookup (hit, 1 KiB)", |b| {
        b.iter(|| {
            rt.block_on(async { black_box(store.lookup(black_box(&key), &span).await.expect("lookup").is_some()) })
        })
    });

    let mut env = minijinja::Environment::new();
    env.add_template(
        "body",
        r#"{"pet": {{ input.json | tojson }}, "by": "{{ context.requestId }}", "stage": "{{ stageVariables.env }}"}"#,
    )
    .expect("template");
    let json = serde_json::json!({"name": "rex", "age": 3, "tags": ["a", "b"]});
    let vars: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
        ("input", serde_json::json!({"json": json, "body": ""})),
        ("context", serde_json::json!({"requestId": "c0ffee", "stage": "prod"})),
        ("stageVariables", serde_json::json!({"env": "prod"})),
    ]);
    let tpl = env.get_template("body").expect("template");
    c.bench_function("body template render", |b| b.iter(|| black_box(tpl.render(black_box(&vars)).expect("render"))));

    let schema = serde_json::json!({
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "maxLength": 64}, "age": {"type": "integer", "minimum": 0},
                       "tags": {"type": "array", "items": {"type": "string"}}}
    });
    let v = Validator {
        query: vec![],
        headers: vec![],
        body: Some(compile_schema(&schema).expect("schema")),
        body_required: true,
        content_types: vec![],
    };
    let body = br#"{"name": "rex", "age": 3, "tags": ["a", "b"]}"#;
    let vtl = edgegate::vtl::Template::compile(
        r#"#set($body = $input.path('$'))
{"TableName": "$stageVariables.table",
 "Item": {"id": {"S": "$context.requestId"},
          "customer": {"S": "$util.escapeJavaScript($body.customer)"},
          "lines": {"L": [#foreach($l in $body.lines){"S": "$l.sku"}#if($foreach.hasNext),#end#end]}}}"#,
    )
    .expect("VTL");
    let input = edgegate::vtl::Input::new(
        r#"{"customer": "Ann \"A\"", "lines": [{"sku": "a1"}, {"sku": "b2"}, {"sku": "c3"}]}"#,
        vec![],
        vec![],
        vec![],
    );
    let vars = edgegate::vtl::Vars {
        input: Some(&input),
        context: edgegate::vtl::string_map([("requestId", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), ("stage", "prod")]),
        stage_variables: edgegate::vtl::string_map([("table", "orders")]),
    };
    let limits = edgegate::vtl::Limits::default();
    counting::report("VTL render (DynamoDB PutItem)", || vtl.render(&vars, &limits).is_ok());
    c.bench_function("VTL render (DynamoDB PutItem, 3 lines)", |b| {
        b.iter(|| black_box(vtl.render(black_box(&vars), &limits).expect("render")))
    });
    c.bench_function("JSON body parse + schema validation", |b| {
        b.iter(|| black_box(v.check_body(Some("application/json"), black_box(body)).expect("valid")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
