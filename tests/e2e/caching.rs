//! Response caching: keys, poisoning attempts, storability, expiry, eviction, the cache lock,
//! invalidation, admin flushes, and access checks before cached answers.

use crate::common::*;
use std::sync::Arc;

fn cached_api(d: &std::path::Path, p: &Ports, origin: &str, stage_cache: &str, keys: &str) -> String {
    std::fs::write(d.join("keys.toml"), keys).expect("keys file");
    format!(
        r#"{server}
[api_keys]
file = "keys.toml"
[[usage_plans]]
name = "gold"
stages = ["c:prod"]

[[apis]]
name = "c"
[apis.stages.prod]
cache = {stage_cache}
[apis.stages.dev]
[apis.integrations.up]
type = "http"
uri = "{origin}"
[[apis.routes]]
route = "GET /items/{{id}}"
integration = "up"
cache = {{ key = ["path.id", "query.lang", "header.accept-language"] }}
[[apis.routes]]
route = "GET /short/{{id}}"
integration = "up"
cache = {{ ttl = "1s" }}
[[apis.routes]]
route = "GET /fresh/{{id}}"
integration = "up"
cache = {{ invalidate = "any" }}
[[apis.routes]]
route = "GET /uncached"
integration = "up"
cache = {{ ttl = "0s" }}
[[apis.routes]]
route = "GET /keyed"
integration = "up"
api_key_required = true
[[apis.routes]]
route = "ANY /{{proxy+}}"
integration = "up"
"#,
        server = server_section(d, p, "")
    )
}

fn start(origin: &Origin, stage_cache: &str) -> Gateway {
    let url = origin.url();
    Gateway::start(|d, p| cached_api(d, p, &url, stage_cache, ""))
}

fn cache_header(r: &Response) -> &str {
    r.header("x-edgegate-cache").unwrap_or("none")
}

#[test]
fn hits_are_served_without_the_origin_and_keyed_inputs_separate_entries() {
    let origin = Origin::start("o");
    let gw = start(&origin, r#"{ ttl = "60s" }"#);
    let first = gw.get("/prod/items/1");
    assert_eq!((first.status, cache_header(&first)), (200, "miss"), "{}", first.text());
    let again = gw.get("/prod/items/1");
    assert_eq!(cache_header(&again), "hit");
    assert_eq!(again.json()["seq"], first.json()["seq"], "the same stored answer");
    assert_ne!(again.header("x-request-id"), first.header("x-request-id"), "request ids are per request");
    assert_eq!(origin.count(), 1, "a hit does not reach the origin");

    // keyed inputs: path, query.lang, accept-language each make their own entry
    for (path, headers) in [
        ("/prod/items/2", vec![]),
        ("/prod/items/1?lang=en", vec![]),
        ("/prod/items/1", vec![("Accept-Language", "fr")]),
    ] {
        let r = get(gw.addr(), path, &headers);
        assert_eq!(cache_header(&r), "miss", "{path} {headers:?}");
        assert_eq!(cache_header(&get(gw.addr(), path, &headers)), "hit", "{path} {headers:?}");
    }
    assert_eq!(origin.count(), 4);
    // HEAD and POST are not served from GET's entry
    assert_eq!(send(gw.addr(), "POST", "/prod/items/1", &[], b"x").status, 200);
    assert_eq!(origin.count(), 5);

    // a route with ttl 0 and a stage without a cache do not cache
    for path in ["/prod/uncached", "/dev/items/1"] {
        gw.get(path);
        let r = gw.get(path);
        assert_eq!(r.header("x-edgegate-cache"), None, "{path}");
    }
    assert_eq!(origin.count(), 9);

    eventually("cache metrics", || {
        let m = gw.metrics();
        m.contains(r#"edgegate_cache_requests_total{api="c",result="hit",stage="prod"} 4"#)
            && m.contains(r#"edgegate_cache_requests_total{api="c",result="miss",stage="prod"} 4"#)
    });
    let line = gw.wait_log("\"cache\":\"hit\"");
    assert!(line.contains("\"routeKey\":\"GET /items/{id}\""), "{line}");
}

#[test]
fn unkeyed_inputs_cannot_poison_an_entry() {
    let origin = Origin::start("o");
    let gw = start(&origin, r#"{ ttl = "60s" }"#);
    let clean = gw.get("/prod/items/7");
    assert_eq!(cache_header(&clean), "miss");

    // a query parameter outside the key: answered by the origin, never stored or served from the entry
    let r = gw.get("/prod/items/7?evil=1");
    assert_eq!(cache_header(&r), "bypass");
    assert!(r.text().contains("evil=1"));
    let r = gw.get("/prod/items/7?lang=en&evil=1");
    assert_eq!(cache_header(&r), "bypass");
    assert_eq!(origin.count(), 3);

    // an unkeyed header and a forged X-Forwarded-Host: a hit, the stored answer untouched
    for h in [("X-Evil", "poison"), ("X-Forwarded-Host", "evil.example")] {
        let r = get(gw.addr(), "/prod/items/7", &[h]);
        assert_eq!(cache_header(&r), "hit", "{h:?}");
        assert!(!r.text().contains("poison") && !r.text().contains("evil.example"), "{}", r.text());
    }
    assert_eq!(origin.count(), 3);

    // a miss with a forged X-Forwarded-Host stores what the origin saw: the real host
    let r = get(gw.addr(), "/prod/items/8", &[("X-Forwarded-Host", "evil.example")]);
    assert_eq!(cache_header(&r), "miss");
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "localhost");
    // another Host is another entry (the origin sees the host in x-forwarded-host)
    let r = get(gw.addr(), "/prod/items/7", &[("Host", "other.example")]);
    assert_eq!(cache_header(&r), "miss");
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "other.example");
    let r = gw.get("/prod/items/7");
    assert_eq!((cache_header(&r), r.json()["seq"].clone()), ("hit", clean.json()["seq"].clone()));

    eventually("bypass metric", || {
        gw.metrics().contains(r#"edgegate_cache_requests_total{api="c",result="bypass",stage="prod"} 2"#)
    });
}

#[test]
fn private_cookie_vary_and_error_answers_are_not_stored() {
    let origin = Origin::start("o");
    let gw = start(&origin, r#"{ ttl = "60s" }"#);
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("/prod/p/authz", &[("Authorization", "Bearer alice")]),
        ("/prod/p/private", &[("x-reply-header", "cache-control: private, max-age=60")]),
        ("/prod/p/nostore", &[("x-reply-header", "Cache-Control: no-store")]),
        ("/prod/p/cookie", &[("x-reply-header", "set-cookie: session=alice")]),
        ("/prod/status/404", &[]),
    ];
    let mut expected = 0;
    for (path, headers) in cases {
        for _ in 0..2 {
            let r = get(gw.addr(), path, headers);
            expected += 1;
            assert_eq!(origin.count(), expected, "{path} must reach the origin every time");
            assert_ne!(cache_header(&r), "hit");
        }
    }
    // alice's private answer is not served to bob: bob's request reaches the origin
    let bob = get(gw.addr(), "/prod/p/cookie", &[]);
    assert_eq!(cache_header(&bob), "miss");
    assert!(!bob.text().contains("alice") && bob.header("set-cookie").is_none());
    let bob = get(gw.addr(), "/prod/p/authz", &[]);
    assert_eq!(cache_header(&bob), "miss");
    assert!(!bob.text().contains("Bearer alice"), "an answer to alice's credentials is not bob's");
    assert_eq!(origin.count(), expected + 2);
    // unless the origin says it is for everyone
    let public = [("Authorization", "Bearer alice"), ("x-reply-header", "cache-control: public, max-age=60")];
    get(gw.addr(), "/prod/p/shared", &public);
    assert_eq!(cache_header(&get(gw.addr(), "/prod/p/shared", &public)), "hit");
}

#[test]
fn entries_expire_after_their_ttl() {
    let origin = Origin::start("o");
    let gw = start(&origin, r#"{ ttl = "60s" }"#);
    assert_eq!(cache_header(&gw.get("/prod/short/1")), "miss");
    assert_eq!(cache_header(&gw.get("/prod/short/1")), "hit");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(cache_header(&gw.get("/prod/short/1")), "miss", "expired");
    assert_eq!(cache_header(&gw.get("/prod/short/1")), "hit", "stored again");
    assert_eq!(origin.count(), 2);
    eventually("expired metric", || {
        gw.metrics().contains(r#"edgegate_cache_requests_total{api="c",result="expired",stage="prod"} 1"#)
    });
}

#[test]
fn a_stampede_of_misses_makes_one_origin_request() {
    let origin = Origin::start("o");
    let gw = Arc::new(start(&origin, r#"{ ttl = "60s" }"#));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let gw = gw.clone();
            std::thread::spawn(move || gw.get("/prod/slow/500"))
        })
        .collect();
    let answers: Vec<Response> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    assert!(answers.iter().all(|r| r.status == 200), "every caller is answered");
    let seqs: std::collections::HashSet<String> = answers.iter().map(|r| r.json()["seq"].to_string()).collect();
    assert_eq!(origin.count(), 1, "100 concurrent misses, one integration request");
    assert_eq!(seqs.len(), 1);
}

#[test]
fn capacity_bounds_the_store_by_eviction() {
    let origin = Origin::start("o");
    let gw = start(&origin, r#"{ ttl = "60s", capacity = "64KiB" }"#);
    // 40 distinct 4 KiB answers, each asked for twice, into 64 KiB. TinyUFO's admission
    // keeps what is in use: once the store is full a new entry must earn its place.
    let mut second_hits = 0;
    for i in 0..40 {
        gw.get(&format!("/prod/big/4000/{i}"));
        if cache_header(&gw.get(&format!("/prod/big/4000/{i}"))) == "hit" {
            second_hits += 1;
        }
    }
    assert!(second_hits > 0, "entries are stored while there is room");
    // newest first, so the misses of evicted entries cannot disturb the check
    let kept = (0..40).rev().filter(|i| cache_header(&gw.get(&format!("/prod/big/4000/{i}"))) == "hit").count();
    assert!(kept > 0, "entries in use are kept");
    assert!(kept <= 16, "64 KiB holds at most ~14 of them: {kept} hits");
    assert!(origin.count() >= 40 + 24, "what did not fit was fetched again: {}", origin.count());
    // an answer larger than an eighth of the store is not stored at all
    gw.get("/prod/big/20000/x");
    assert_ne!(cache_header(&gw.get("/prod/big/20000/x")), "hit");
}

#[test]
fn clients_refresh_only_where_allowed_and_admins_flush() {
    let origin = Origin::start("o");
    let gw = start(&origin, r#"{ ttl = "60s" }"#);
    let max0 = [("Cache-Control", "max-age=0")];
    // invalidate = never (default): the client's max-age=0 is ignored
    gw.get("/prod/items/1");
    assert_eq!(cache_header(&get(gw.addr(), "/prod/items/1", &max0)), "hit");
    // invalidate = any: refetched and stored again
    gw.get("/prod/fresh/1");
    assert_eq!(cache_header(&get(gw.addr(), "/prod/fresh/1", &max0)), "miss");
    assert_eq!(cache_header(&gw.get("/prod/fresh/1")), "hit");
    assert_eq!(origin.count(), 3);

    // one path
    gw.get("/prod/items/2");
    let r = send(gw.admin(), "DELETE", "/cache/c/prod?key=/items/1", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(cache_header(&gw.get("/prod/items/1")), "miss");
    assert_eq!(cache_header(&gw.get("/prod/items/2")), "hit");
    assert_eq!(cache_header(&gw.get("/prod/items/1")), "hit");
    // the whole stage
    assert_eq!(send(gw.admin(), "DELETE", "/cache/c/prod", &[], b"").status, 200);
    assert_eq!(cache_header(&gw.get("/prod/items/1")), "miss");
    assert_eq!(cache_header(&gw.get("/prod/items/2")), "miss");
    assert_eq!(send(gw.admin(), "DELETE", "/cache/c/dev", &[], b"").status, 404, "dev has no cache");
    assert_eq!(send(gw.admin(), "DELETE", "/cache/nope/prod", &[], b"").status, 404);
    assert_eq!(send(gw.admin(), "GET", "/cache/c/prod", &[], b"").status, 405);
}

#[test]
fn access_checks_run_before_a_cached_answer() {
    let origin = Origin::start("o");
    let (key, entry) = crate::access::create_key("gold", "acme");
    let url = origin.url();
    let gw = Gateway::start(|d, p| cached_api(d, p, &url, r#"{ ttl = "60s" }"#, &entry));
    let r = get(gw.addr(), "/prod/keyed", &[("x-api-key", &key)]);
    assert_eq!((r.status, cache_header(&r)), (200, "miss"));
    assert_eq!(cache_header(&get(gw.addr(), "/prod/keyed", &[("x-api-key", &key)])), "hit");
    let r = gw.get("/prod/keyed");
    assert_eq!(r.status, 403, "no key, no cached answer");
    assert!(!r.text().contains("origin"));
    assert_eq!(get(gw.addr(), "/prod/keyed", &[("x-api-key", "wrong")]).status, 403);
    assert_eq!(origin.count(), 1);
}

#[test]
fn authorized_refresh_needs_the_routes_authorizer_to_admit_the_caller() {
    let origin = Origin::start("o");
    let authz = serve(|_, body| {
        let event: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let ok = event["headers"]["authorization"].as_str().is_some_and(|t| t.starts_with("allow"));
        (200, serde_json::json!({"isAuthorized": ok}).to_string())
    });
    let (url, authz_url) = (origin.url(), authz.base.clone());
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[authorizers.simple]
type = "request"
uri = "{authz_url}/authorize"
identity_sources = ["$request.header.Authorization"]
response = "simple"
[[apis]]
name = "a"
[apis.stages.prod]
cache = {{ ttl = "60s" }}
[[apis.routes]]
route = "GET /doc"
integration = {{ type = "http", uri = "{url}" }}
authorizer = "simple"
cache = {{ key = ["header.authorization"], invalidate = "authorized" }}
"#,
            server = server_section(d, p, "")
        )
    });
    let alice = [("Authorization", "allow-alice")];
    assert_eq!(cache_header(&get(gw.addr(), "/prod/doc", &alice)), "miss");
    assert_eq!(cache_header(&get(gw.addr(), "/prod/doc", &alice)), "hit");
    let refresh = [("Authorization", "allow-alice"), ("Cache-Control", "max-age=0")];
    assert_eq!(cache_header(&get(gw.addr(), "/prod/doc", &refresh)), "miss", "admitted: refreshed");
    assert_eq!(cache_header(&get(gw.addr(), "/prod/doc", &alice)), "hit");
    let r = get(gw.addr(), "/prod/doc", &[("Authorization", "mallory"), ("Cache-Control", "max-age=0")]);
    assert_eq!(r.status, 403, "refused before the cache is consulted");
    assert_eq!(origin.count(), 2);
}
