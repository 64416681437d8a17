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

/// An origin whose answers carry `ETag: "v<version>"` and the headers the test sets; it
/// answers `If-None-Match` with 304 while the version is unchanged. Counts 200s and 304s.
struct Validating {
    addr: std::net::SocketAddr,
    version: Arc<std::sync::atomic::AtomicUsize>,
    extra: Arc<std::sync::Mutex<String>>,
    full: Arc<std::sync::atomic::AtomicUsize>,
    not_modified: Arc<std::sync::atomic::AtomicUsize>,
}

impl Validating {
    fn start(http10: bool) -> Validating {
        use std::io::{BufRead, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let v = Validating {
            addr: l.local_addr().expect("addr"),
            version: Arc::new(1.into()),
            extra: Arc::new(std::sync::Mutex::new(String::new())),
            full: Arc::new(0.into()),
            not_modified: Arc::new(0.into()),
        };
        let (version, extra, full, nm) = (v.version.clone(), v.extra.clone(), v.full.clone(), v.not_modified.clone());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let (version, extra, full, nm) = (version.clone(), extra.clone(), full.clone(), nm.clone());
                std::thread::spawn(move || {
                    let mut w = c.try_clone().expect("clone");
                    let mut r = std::io::BufReader::new(c);
                    loop {
                        let mut inm = None;
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            if h.trim().is_empty() {
                                break;
                            }
                            if let Some((k, val)) = h.split_once(':') {
                                if k.eq_ignore_ascii_case("if-none-match") {
                                    inm = Some(val.trim().to_string());
                                }
                            }
                        }
                        let etag = format!("\"v{}\"", version.load(SeqCst));
                        let proto = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
                        let conn = if http10 {
                            "Connection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: secret\r\n"
                        } else {
                            ""
                        };
                        let extra = extra.lock().expect("lock").clone();
                        let resp = if inm.as_deref() == Some(etag.as_str()) {
                            nm.fetch_add(1, SeqCst);
                            format!("{proto} 304 Not Modified\r\nETag: {etag}\r\n{extra}{conn}\r\n")
                        } else {
                            full.fetch_add(1, SeqCst);
                            let body = format!("body {etag}");
                            format!(
                                "{proto} 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\n{extra}{conn}\r\n{body}",
                                body.len()
                            )
                        };
                        if w.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        v
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_headers(&self, h: &str) {
        *self.extra.lock().expect("lock") = h.to_string();
    }

    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.full.load(SeqCst), self.not_modified.load(SeqCst))
    }
}

#[test]
fn the_origin_may_shorten_or_forbid_storage_and_stale_entries_are_revalidated() {
    let o = Validating::start(false);
    let url = o.url();
    let gw = Gateway::start(|d, p| cached_api(d, p, &url, r#"{ ttl = "300s" }"#, ""));
    // max-age=0 with a validator: stored, but revalidated on every use (a 304 each time)
    o.set_headers("Cache-Control: max-age=0\r\n");
    let r = gw.get("/prod/r/a");
    assert_eq!((r.status, r.text().as_str()), (200, "body \"v1\""));
    assert_eq!(cache_header(&gw.get("/prod/r/a")), "hit", "revalidated: the 304 keeps the entry");
    assert_eq!(o.counts(), (1, 1), "one full answer, one 304");
    // the 304's fields update the stored answer (not the body's own: its ETag stays)
    o.set_headers("Cache-Control: max-age=0\r\nX-Rev: 2\r\n");
    let r = gw.get("/prod/r/a");
    assert_eq!(o.counts(), (1, 2), "stale entries are never served without revalidation");
    assert_eq!((r.header("x-rev"), r.header("etag"), r.text().as_str()), (Some("2"), Some("\"v1\""), "body \"v1\""));
    o.set_headers("Cache-Control: max-age=0\r\n");
    // a new version: the revalidation gets a 200 and the entry is replaced
    o.version.store(2, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(gw.get("/prod/r/a").text(), "body \"v2\"");
    // max-age=1 shortens the stage's 300 s; Age is generated on hits
    o.set_headers("Cache-Control: max-age=1\r\n");
    gw.get("/prod/r/b");
    let hit = gw.get("/prod/r/b");
    assert_eq!(cache_header(&hit), "hit");
    assert!(hit.header("age").is_some_and(|a| a.parse::<u64>().is_ok()), "Age on a hit");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let before = o.counts();
    gw.get("/prod/r/b");
    assert_ne!(o.counts(), before, "expired after the origin's max-age, not the stage TTL");
    // an Expires 83 minutes in the past, no validator: never served from the cache
    let past = httpdate::fmt_http_date(std::time::SystemTime::now() - std::time::Duration::from_secs(83 * 60));
    for (path, h) in [
        ("/prod/p/expired", format!("x-reply-header: Expires: {past}")),
        ("/prod/p/sc-nostore", "x-reply-header: Surrogate-Control: no-store".to_string()),
        ("/prod/p/must", "x-reply-header: Cache-Control: max-age=0, must-revalidate".to_string()),
    ] {
        let origin = Origin::start("o");
        let ou = origin.url();
        let g2 = Gateway::start(|d, p| cached_api(d, p, &ou, r#"{ ttl = "300s" }"#, ""));
        let (k, v) = h.split_once(": ").expect("header");
        for _ in 0..2 {
            let r = get(g2.addr(), path, &[(k, v)]);
            assert_ne!(cache_header(&r), "hit", "{h}");
            assert!(r.header("surrogate-control").is_none(), "Surrogate-Control is for the gateway");
        }
        assert_eq!(origin.count(), 2, "{h}");
    }
    // an origin's Age counts: max-age=100 with Age: 200 is stale on arrival
    let origin = Origin::start("o");
    let ou = origin.url();
    let g3 = Gateway::start(|d, p| cached_api(d, p, &ou, r#"{ ttl = "300s" }"#, ""));
    let aged = [("x-reply-header", "Cache-Control: max-age=100"), ("x-reply-header", "Age: 200")];
    get(g3.addr(), "/prod/p/aged", &aged);
    assert_ne!(cache_header(&get(g3.addr(), "/prod/p/aged", &aged)), "hit");
}

#[test]
fn origin_cache_control_ignore_is_the_aws_model() {
    let origin = Origin::start("o");
    let ou = origin.url();
    let gw = Gateway::start(|d, p| cached_api(d, p, &ou, r#"{ ttl = "300s", origin_cache_control = "ignore" }"#, ""));
    let h = [("x-reply-header", "Cache-Control: max-age=0, no-store")];
    get(gw.addr(), "/prod/p/i", &h);
    assert_eq!(cache_header(&get(gw.addr(), "/prod/p/i", &h)), "hit", "the stage TTL alone decides");
    assert_eq!(origin.count(), 1);
    // a bad value is a config error naming the key
    let d = tempfile::tempdir().expect("dir");
    let f = d.path().join("edgegate.toml");
    std::fs::write(&f, cached_api(d.path(), &Ports::new(), &ou, r#"{ origin_cache_control = "sometimes" }"#, ""))
        .expect("w");
    let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&f).output().expect("check");
    let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && err.contains("origin_cache_control"), "{err}");
}

#[test]
fn successful_writes_invalidate_the_path_and_its_location() {
    let origin = Origin::start("o");
    let gw = start(&origin, r#"{ ttl = "300s" }"#);
    let host = [("host", "gw.test")];
    let g = |p: &str| get(gw.addr(), p, &host);
    for p in ["/prod/w/1", "/prod/w/2", "/prod/w/3", "/prod/w/4"] {
        g(p);
        assert_eq!(cache_header(&g(p)), "hit");
    }
    let n = origin.count();
    // a failed write changes nothing
    send(gw.addr(), "POST", "/prod/status/500", &host, b"x");
    assert_eq!(cache_header(&g("/prod/w/1")), "hit");
    // PUT /w/1 invalidates /w/1; its Location names /w/2 and Content-Location /w/3 (absolute, same host)
    let r = send(
        gw.addr(),
        "PUT",
        "/prod/w/1",
        &[
            ("host", "gw.test"),
            ("x-reply-header", "Location: /prod/w/2"),
            ("x-reply-header", "Content-Location: http://gw.test/prod/w/3"),
        ],
        b"new",
    );
    assert_eq!(r.status, 200);
    for p in ["/prod/w/1", "/prod/w/2", "/prod/w/3"] {
        assert_eq!(cache_header(&g(p)), "miss", "{p} invalidated");
    }
    assert_eq!(origin.count(), n + 1 + 1 + 3);
    // another host's Location is not ours to invalidate
    send(
        gw.addr(),
        "DELETE",
        "/prod/w/5",
        &[("host", "gw.test"), ("x-reply-header", "Location: http://elsewhere.test/prod/w/4")],
        b"",
    );
    assert_eq!(cache_header(&g("/prod/w/4")), "hit");
}

#[test]
fn hop_by_hop_headers_are_not_forwarded_or_stored_and_http10_origins_answer_as_http11() {
    let o = Validating::start(true);
    let url = o.url();
    let gw = Gateway::start(|d, p| cached_api(d, p, &url, r#"{ ttl = "300s" }"#, ""));
    for expect in ["miss", "hit"] {
        let mut s = std::net::TcpStream::connect(gw.addr()).expect("connect");
        std::io::Write::write_all(&mut s, b"GET /prod/h/1 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut r = std::io::BufReader::new(s);
        let mut status = String::new();
        std::io::BufRead::read_line(&mut r, &mut status).expect("status");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut head = String::new();
        loop {
            let mut l = String::new();
            std::io::BufRead::read_line(&mut r, &mut l).expect("header");
            if l.trim().is_empty() {
                break;
            }
            head.push_str(&l.to_ascii_lowercase());
        }
        assert!(!head.contains("x-hop") && !head.contains("keep-alive: timeout"), "{expect}: {head}");
        assert!(head.contains(&format!("x-edgegate-cache: {expect}")), "{head}");
    }
}
