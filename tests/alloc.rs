//! Allocations on the per-request hot path, counted and pinned: a counting global allocator
//! (per thread, so parallel tests do not disturb each other) around each piece the proxy
//! runs for every request. A change that allocates here again fails the test.

#[path = "../benches/support/counting.rs"]
mod counting;
use counting::allocations;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn request() -> pingora::http::RequestHeader {
    let mut r = pingora::http::RequestHeader::build("GET", b"/prod/pets/7?lang=en", None).expect("request");
    for (k, v) in [("host", "api.example.com"), ("user-agent", "wrk"), ("accept", "*/*"), ("x-api-key", "k")] {
        r.append_header(k, v).expect("header");
    }
    r
}

#[test]
fn head_limits_allocate_nothing() {
    let r = request();
    let (n, (size, fields)) = allocations(|| edgegate::framing::head_size(&r));
    assert_eq!((fields, n), (4, 0), "head_size allocated {n} times");
    assert!(size > 60);
}

#[test]
fn a_keep_alive_origin_answer_loses_its_hop_fields_without_allocating() {
    let mut resp = pingora::http::ResponseHeader::build(200, None).expect("response");
    resp.append_header("connection", "keep-alive").expect("h");
    resp.append_header("keep-alive", "timeout=5").expect("h");
    resp.append_header("content-type", "application/json").expect("h");
    let (n, ()) = allocations(|| edgegate::cache::strip_hop_by_hop(&mut resp));
    assert!(!resp.headers.contains_key("connection") && !resp.headers.contains_key("keep-alive"));
    assert_eq!(n, 0, "strip_hop_by_hop allocated {n} times");
}

#[test]
fn a_keep_alive_request_head_read_whole_costs_no_timer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut s = edgegate::head_deadline::DeadlineStream::new(Box::new(server), std::time::Duration::from_secs(10));
        let head = b"GET /prod/bench HTTP/1.1\r\nhost: t\r\n\r\n";
        let mut buf = vec![0u8; 4096];
        for round in 0..3 {
            client.write_all(head).await.expect("write");
            let (n, read) =
                allocations(|| futures_util::FutureExt::now_or_never(s.read(&mut buf)).expect("ready").expect("read"));
            assert_eq!(read, head.len());
            if round > 0 {
                // the first head is timed from the connection's start; later ones arrive whole
                assert_eq!(n, 0, "reading keep-alive request {round} allocated {n} times");
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.expect("answer");
            let mut answer = [0u8; 64];
            let _ = client.read(&mut answer).await.expect("answer read");
        }
    });
}

#[test]
fn the_access_stack_on_a_known_caller_allocates_nothing() {
    use std::sync::Arc;
    let mut store = edgegate::api_keys::KeyStore::default();
    store.insert("k1", edgegate::api_keys::hash_key(b"secret-1"), "gold", true);
    let key: Arc<str> = Arc::from("k1");
    let quota = edgegate::throttle::quota::Quota::new(u64::MAX, edgegate::throttle::quota::Period::Day, 0);
    let keyed = edgegate::throttle::bucket::KeyedBuckets::new(1e9, 1_000_000_000);
    let (algs, aud) = (vec!["HS256".to_string()], vec![]);
    let jwt = edgegate::auth::jwt::JwtAuthorizer::new(edgegate::auth::jwt::JwtSettings {
        issuer: None,
        audience: &aud,
        algorithms: &algs,
        leeway: std::time::Duration::ZERO,
        identity_header: http::header::AUTHORIZATION,
        jwks: None,
        jwks_url: None,
        refresh: std::time::Duration::from_secs(600),
        secret: Some("s3cret"),
    })
    .expect("authorizer");
    let claims = serde_json::json!({"sub": "u1", "exp": jsonwebtoken::get_current_timestamp() + 600, "scope": "read"});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
    )
    .expect("sign");
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("value"));
    let scopes = ["read".to_string()];
    // first use: the key's counters and the verified token are stored
    assert!(quota.take(&key, 1_795_525_200).is_ok() && jwt.authorize(&headers, &scopes).is_ok());
    let _ = keyed.take(&key, 1);
    let (n, ok) = allocations(|| {
        store.find(b"secret-1").is_some()
            && jwt.authorize(&headers, &scopes).is_ok()
            && quota.take(&key, 1_795_525_200).is_ok()
            && keyed.take(&key, 2).allowed
    });
    assert!(ok);
    assert_eq!(n, 0, "key, token, quota and throttle of a known caller allocated {n} times");
}

#[test]
fn a_request_counts_into_its_route_series_without_allocating() {
    use edgegate::observability::metrics::{Observed, RouteMetrics};
    use std::sync::Arc;
    let name = |s: &str| -> Arc<str> { Arc::from(s) };
    let m = RouteMetrics::new(&name("alloc-pin"), &name("prod"), &name("GET /a"), &name("origin"));
    let o = Observed {
        method: &http::Method::GET,
        status: 200,
        elapsed: std::time::Duration::from_micros(300),
        cache: Some((0, "hit")),
        integration_ms: Some(1),
    };
    m.observe(&o);
    let (n, ()) = allocations(|| m.observe(&o));
    assert_eq!(n, 0, "counting a request allocated {n} times");
}

/// The fields a proxy adds to a head it read and passes on (a request id, the forwarding
/// fields, Date, Connection, Age, cache status, rate-limit fields), by name and static value.
fn add_eight(h: &mut impl FnMut(http::HeaderName, &'static str)) {
    for (name, value) in [
        (http::HeaderName::from_static("x-request-id"), "0b9e6a0c-3c8e-4d1a-9a57-3f1c2d4e5f60"),
        (http::header::AGE, "0"),
        (http::HeaderName::from_static("x-edgegate-cache"), "hit"),
        (http::header::VIA, "1.1 edgegate"),
        (http::HeaderName::from_static("ratelimit-limit"), "100"),
        (http::HeaderName::from_static("ratelimit-remaining"), "99"),
        (http::HeaderName::from_static("ratelimit-reset"), "1"),
        (http::header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    ] {
        h(name, value);
    }
}

#[test]
fn heads_read_from_the_wire_take_the_fields_a_proxy_adds_without_allocating() {
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        // an origin's answer, as the proxy's upstream session hands it over
        let (mut origin, ours) = tokio::io::duplex(64 * 1024);
        let mut upstream = pingora::protocols::http::v1::client::HttpSession::new(Box::new(ours));
        origin
            .write_all(
                b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 08 Dec 2026 01:41:44 GMT\r\n\
                  Content-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}",
            )
            .await
            .expect("answer");
        let mut answer = upstream.read_resp_header_parts().await.expect("answer head");
        let (n, ()) = allocations(|| {
            add_eight(&mut |name, value| {
                answer.insert_header(name, http::HeaderValue::from_static(value)).expect("insert");
            })
        });
        assert_eq!(n, 0, "adding eight fields to an answer head read allocated {n} times");
        assert_eq!(answer.headers.len(), 13);
        // the session keeps its own copy for its framing and keep-alive checks
        assert_eq!(upstream.get_header("content-length").map(|v| v.as_bytes()), Some(&b"2"[..]));
        assert!(upstream.get_header("x-request-id").is_none());

        // a client's request, as the proxy's downstream session reads it
        let (mut client, ours) = tokio::io::duplex(64 * 1024);
        let mut downstream = pingora::protocols::http::v1::server::HttpSession::new(Box::new(ours));
        client.write_all(b"GET /prod/bench HTTP/1.1\r\nHost: 127.0.0.1:18090\r\n\r\n").await.expect("request");
        downstream.read_request().await.expect("request head");
        let request = downstream.req_header_mut();
        let (n, ()) = allocations(|| {
            add_eight(&mut |name, value| {
                request.insert_header(name, http::HeaderValue::from_static(value)).expect("insert");
            })
        });
        assert_eq!(n, 0, "adding eight fields to a request head read allocated {n} times");
        assert_eq!(request.headers.len(), 9);
    });
}
