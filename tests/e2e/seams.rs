//! Trust at the seams: each test is a bypass that worked when two concerns read the same
//! request two ways (framing, repeated headers, method case, unkeyed inputs). Each asserts
//! the answer AND what the origin (or the authorizer) actually received.

use crate::common::*;
use edgegate::aws::sigv4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SECRET: &str = "seams-secret";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
}

fn sigv4_gateway(origin: &Origin) -> Gateway {
    let url = origin.url();
    Gateway::start(|d, p| {
        let iam = allow_all_sigv4(d, "AKSEAM", SECRET);
        format!(
            r#"{server}
{iam}[[apis]]
name = "s"
[apis.stages.prod]
[[apis.routes]]
route = "POST /items"
integration = {{ type = "http", uri = "{url}" }}
authorizer = "iam"
"#,
            server = server_section(d, p, "")
        )
    })
}

fn signed_headers(body: &[u8]) -> Vec<(String, String)> {
    let mut h = sigv4::sign_request(
        "AKSEAM",
        SECRET,
        "us-east-1",
        "execute-api",
        "POST",
        "http://localhost/prod/items",
        &[],
        body,
        now(),
    )
    .expect("sign");
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
    if !h.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256")) {
        h.push(("x-amz-content-sha256".into(), hash));
    }
    h
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("host")).map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// #1: the signed body is the body the origin receives, over h2 without content-length.
#[test]
fn sigv4_body_integrity_holds_on_every_framing() {
    let origin = Origin::start("o");
    let gw = sigv4_gateway(&origin);
    let signed = br#"{"amount": 1}"#;
    let h = signed_headers(signed);
    // h2c, DATA frames, no content-length: a different body is refused before the origin
    let r = h2_request(gw.addr(), "POST", "/prod/items", &refs(&h), Some(br#"{"amount": 1000000}"#));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(origin.count(), 0, "the tampered body never reaches the origin");
    // the signed body passes, and is what the origin got
    let r = h2_request(gw.addr(), "POST", "/prod/items", &refs(&h), Some(signed));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(origin.requests()[0].body, signed.to_vec());
    // h2 with content-length
    let mut with_len = refs(&h);
    let len = signed.len().to_string();
    with_len.push(("content-length", &len));
    assert_eq!(h2_request(gw.addr(), "POST", "/prod/items", &with_len, Some(signed)).status, 200);
    // HTTP/1.1 chunked
    let mut raw = "POST /prod/items HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        .to_string();
    for (k, v) in refs(&h) {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("\r\n{:x}\r\n{}\r\n0\r\n\r\n", signed.len(), String::from_utf8_lossy(signed)));
    assert_eq!(request(gw.addr(), raw.as_bytes()).status, 200);
    let bodies: Vec<Vec<u8>> = origin.requests().iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies, vec![signed.to_vec(); 3]);
    // a signed body over the pre-read limit, of unknown length: 411 (send a content-length),
    // nothing forwarded
    let big = vec![b'a'; 70 * 1024];
    let r = h2_request(gw.addr(), "POST", "/prod/items", &refs(&signed_headers(&big)), Some(&big));
    assert_eq!(r.status, 411);
    assert_eq!(origin.count(), 3);
}

fn validating_gateway(origin: &Origin, extra: &str) -> Gateway {
    let url = origin.url();
    let extra = extra.to_string();
    Gateway::start(move |d, p| {
        format!(
            r#"{server}
[[apis]]
name = "v"
[apis.stages.prod]
[[apis.routes]]
route = "POST /pets"
integration = {{ type = "http", uri = "{url}" }}
validate = {{ body = {{ type = "object", required = ["name"], properties = {{ name = {{ type = "string" }} }} }}, body_required = true }}
{extra}
"#,
            server = server_section(d, p, "")
        )
    })
}

/// #2: validation sees the real body on h2 without content-length.
#[test]
fn validation_sees_h2_bodies_without_content_length() {
    let origin = Origin::start("o");
    let gw = validating_gateway(&origin, "");
    let ct = [("content-type", "application/json")];
    let r = h2_request(gw.addr(), "POST", "/prod/pets", &ct, Some(br#"{"name": 5}"#));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(origin.count(), 0, "an invalid body never reaches the origin");
    let r = h2_request(gw.addr(), "POST", "/prod/pets", &ct, Some(br#"{"name": "rex"}"#));
    assert_eq!(r.status, 200, "a legitimate h2 client is not told the body is empty: {}", r.text());
    assert_eq!(origin.requests()[0].body, br#"{"name": "rex"}"#.to_vec());
    let big = format!(r#"{{"name": 1, "pad": "{}"}}"#, "x".repeat(80 * 1024));
    let r = h2_request(gw.addr(), "POST", "/prod/pets", &ct, Some(big.as_bytes()));
    assert_eq!(r.status, 411, "a body of unknown length over 64 KiB cannot be read whole: Length Required");
    assert_eq!(origin.count(), 1, "and nothing of it reaches the origin");
    let h = [("content-type", "application/json"), ("content-length", &*big.len().to_string())];
    let r = h2_request(gw.addr(), "POST", "/prod/pets", &h, Some(big.as_bytes()));
    assert_eq!(r.status, 400, "a large body of declared length is checked whole");
    assert_eq!(origin.count(), 1);
}

/// #4 and #9: the authorizer's cache key and its event see the same value of a repeated
/// identity header; with result_ttl = 0 no two requests share a decision.
#[test]
fn repeated_identity_headers_and_uncached_authorizers() {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let s2 = seen.clone();
    let authz = serve(move |_, body| {
        let ev: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        s2.lock().expect("lock").push(ev.clone());
        std::thread::sleep(std::time::Duration::from_millis(300));
        let ok = ev["headers"]["x-token"] == "good" && ev["path"] == "/open";
        (200, serde_json::json!({"isAuthorized": ok, "context": {"tenant": "t1"}}).to_string())
    });
    let origin = Origin::start("o");
    let (base, url) = (authz.base.clone(), origin.url());
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
{cached}{uncached}[[apis]]
name = "a"
[apis.stages.prod]
[[apis.routes]]
route = "GET /open"
integration = {{ type = "mock", body = "{{{{ context.authorizer.tenant }}}}" }}
authorizer = "cached"
[[apis.routes]]
route = "GET /u/{{p}}"
integration = {{ type = "http", uri = "{url}/u/{{p}}" }}
authorizer = "uncached"
"#,
            server = server_section(d, p, ""),
            cached = token_authorizer_section("cached", &format!("{base}/"), "300s"),
            uncached = token_authorizer_section("uncached", &format!("{base}/"), "0s")
        )
    });
    let r = get(gw.addr(), "/prod/open", &[("X-Token", "good")]);
    assert_eq!((r.status, r.text().as_str()), (200, "t1"), "context.authorizer.<key> as in AWS");
    // the same first line plus a second one: not the cached "good" decision
    let raw = b"GET /prod/open HTTP/1.1\r\nHost: x\r\nX-Token: good\r\nX-Token: evil\r\nConnection: close\r\n\r\n";
    let r = request(gw.addr(), raw);
    assert_eq!(r.status, 403, "a repeated identity header is keyed on all of its values");
    assert_eq!(authz.hits(), 2);
    assert_eq!(seen.lock().expect("lock")[1]["headers"]["x-token"], "good, evil", "the event carries the same value");

    // result_ttl = 0: concurrent requests with one token and different paths are decided apart
    let addr = gw.addr();
    let hits = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = ["/prod/u/open", "/prod/u/admin"]
        .into_iter()
        .map(|path| {
            let hits = hits.clone();
            std::thread::spawn(move || {
                let r = get(addr, path, &[("X-Token", "good")]);
                hits.fetch_add(1, Ordering::SeqCst);
                r.status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().expect("join")).collect();
    assert_eq!(statuses, vec![403, 403], "path /u/* is never /open: each request gets its own decision");
    assert_eq!(authz.hits(), 4, "no coalescing without a result cache");
}

/// #5: every X-Forwarded-For line of a trusted proxy is read; garbage never makes the
/// proxy the client.
#[test]
fn forwarded_for_lines_are_one_chain() {
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "x"
[apis.policy]
allow_cidrs = ["127.0.0.0/8"]
[apis.stages.prod]
[[apis.routes]]
route = "GET /ip"
integration = {{ type = "mock", body = "{{{{ context.identity.sourceIp }}}}" }}
"#,
            server = server_section(d, p, "trusted_proxies = [\"127.0.0.1/32\"]")
        )
    });
    let one = get(gw.addr(), "/prod/ip", &[("X-Forwarded-For", "127.0.0.9")]);
    assert_eq!((one.status, one.text().as_str()), (200, "127.0.0.9"));
    // the attacker's line first, the proxy's own line (the real client) second
    let raw = b"GET /prod/ip HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.9\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n";
    assert_eq!(request(gw.addr(), raw).status, 403, "the CIDR policy sees 203.0.113.7");
    for junk in ["unknown", "203.0.113.7, garbage", "[::1]:x"] {
        let r = get(gw.addr(), "/prod/ip", &[("X-Forwarded-For", junk)]);
        assert_eq!(r.status, 403, "{junk:?}: an unknown client is not the proxy");
    }
    let r = get(gw.addr(), "/prod/ip", &[("X-Forwarded-For", "127.0.0.8:5555")]);
    assert_eq!((r.status, r.text().as_str()), (200, "127.0.0.8"), "ports are ignored");
}

/// #10: HEAD and case cannot reach a route GET would not.
#[test]
fn head_and_method_case_follow_get() {
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| {
        std::fs::write(d.join("keys.toml"), "").expect("keys");
        format!(
            r#"{server}
[authorizers.tok]
type = "token"
uri = "http://127.0.0.1:1/"
identity_source = "$request.header.X-Token"
[[apis]]
name = "h"
[apis.stages.prod]
[[apis.routes]]
route = "GET /secret"
integration = {{ type = "http", uri = "{url}" }}
authorizer = "tok"
[[apis.routes]]
route = "ANY /{{proxy+}}"
integration = {{ type = "mock", body = "open" }}
"#,
            server = server_section(d, p, "")
        )
    });
    let r = request(gw.addr(), b"HEAD /prod/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 401, "HEAD is guarded by the GET route");
    let r = request(gw.addr(), b"get /prod/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "a lowercase get is refused, not routed to ANY");
    let r = h2_request(gw.addr(), "HEAD", "/prod/secret", &[], None);
    assert_eq!(r.status, 401);
    assert_eq!(origin.count(), 0);
}

/// #11, #14, #15: what the origin receives: encoded path values, fixed query parameters,
/// no forwarding claims from untrusted peers; JSON templates stay one document.
#[test]
fn the_origin_receives_only_what_was_decided() {
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "t"
[apis.stages.prod]
[[apis.routes]]
route = "GET /u"
integration = {{ type = "http", uri = "{url}/" }}
request_transform = {{ path = "/users/{{{{ input.params.querystring.id }}}}/profile" }}
[[apis.routes]]
route = "GET /fixed"
integration = {{ type = "http", uri = "{url}?role=user" }}
[[apis.routes]]
route = "GET /m"
integration = {{ type = "mock", headers = {{ "content-type" = "application/json" }}, body = '{{"q": "{{{{ input.params.querystring.q }}}}"}}' }}
"#,
            server = server_section(d, p, "")
        )
    });
    assert_eq!(gw.get("/prod/u?id=..%2F..%2Fadmin").status, 200);
    let target = origin.requests()[0].target.clone();
    assert!(target.starts_with("/users/..%2F..%2Fadmin/profile?"), "one encoded segment: {target}");
    assert_eq!(gw.get("/prod/fixed?role=admin&x=1").status, 200);
    assert_eq!(origin.requests()[1].target, "/fixed?role=user&x=1", "the uri's fixed parameters win");
    let r = get(
        gw.addr(),
        "/prod/fixed",
        &[
            ("Forwarded", "for=1.2.3.4;host=evil"),
            ("X-Forwarded-Prefix", "/admin"),
            ("X-Forwarded-Port", "1"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-Real-IP", "1.2.3.4"),
            ("True-Client-IP", "1.2.3.4"),
        ],
    );
    assert_eq!(r.status, 200);
    let seen = &origin.requests()[2];
    for h in ["forwarded", "x-forwarded-prefix", "x-http-method-override", "x-real-ip", "true-client-ip"] {
        assert_eq!(seen.header(h), None, "{h} from an untrusted peer reaches the origin");
    }
    let port = gw.addr().port().to_string();
    assert_eq!(seen.header("x-forwarded-port"), Some(port.as_str()), "the gateway's own port, not the client's claim");
    let r = gw.get("/prod/m?q=x%22%2C%20%22admin%22%3A%20true%2C%20%22y%22%3A%20%22");
    let j: serde_json::Value = serde_json::from_str(&r.text()).expect("one JSON document");
    assert_eq!(j.as_object().map(|o| o.len()), Some(1), "no key injected: {}", r.text());
}

/// #7, #8, #14: per-user answers are not shared, Vary variants are kept apart, and a GET
/// with a body is never stored.
#[test]
fn caches_keep_callers_and_variants_apart() {
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "c"
[apis.stages.prod]
cache = {{ ttl = "60s" }}
[[apis.routes]]
route = "GET /{{proxy+}}"
integration = {{ type = "http", uri = "{url}/{{proxy}}" }}
"#,
            server = server_section(d, p, "")
        )
    });
    let cache = |r: &Response| r.header("x-edgegate-cache").unwrap_or("").to_string();
    // a Cookie makes the answer the caller's own
    get(gw.addr(), "/prod/me", &[("Cookie", "session=alice")]);
    let bob = get(gw.addr(), "/prod/me", &[("Cookie", "session=bob")]);
    assert_ne!(cache(&bob), "hit");
    assert_eq!(origin.count(), 2);
    // Vary: Accept-Encoding: a gzip variant is never served to an identity client
    let vary = ("x-reply-header", "vary: Accept-Encoding");
    get(gw.addr(), "/prod/v", &[vary, ("Accept-Encoding", "gzip")]);
    let again = get(gw.addr(), "/prod/v", &[vary, ("Accept-Encoding", "gzip")]);
    assert_eq!(cache(&again), "hit", "the same variant is served from the cache");
    let other = get(gw.addr(), "/prod/v", &[vary, ("Accept-Encoding", "identity")]);
    assert_ne!(cache(&other), "hit", "another Accept-Encoding is another variant");
    assert_eq!(other.json()["headers"]["accept-encoding"], "identity");
    // a GET with a body: neither served from nor stored in the cache
    let before = origin.count();
    let fat = send(gw.addr(), "GET", "/prod/fat", &[], b"poison");
    assert_eq!(cache(&fat), "bypass");
    let clean = gw.get("/prod/fat");
    assert_ne!(cache(&clean), "hit");
    assert_eq!(origin.count(), before + 2);
}

/// #16, #17: head limits, throttles before authorizers, RateLimit fields on integration answers.
#[test]
fn limits_come_first_and_show_on_every_answer() {
    let origin = Origin::start("o");
    let authz = serve(|_, _| (200, r#"{"isAuthorized": true}"#.to_string()));
    let (base, url) = (authz.base.clone(), origin.url());
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
{a}[[apis]]
name = "l"
[apis.stages.prod]
throttle = {{ rate = 1, burst = 2 }}
[[apis.routes]]
route = "GET /r"
integration = {{ type = "http", uri = "{url}" }}
throttle = {{ rate = 100, burst = 100 }}
[[apis.routes]]
route = "GET /guarded"
integration = {{ type = "http", uri = "{url}" }}
authorizer = "a"
"#,
            server = server_section(d, p, "max_header_size = \"4KiB\"\nmax_headers = 20"),
            a = token_authorizer_section("a", &format!("{base}/"), "0s")
        )
    });
    let r = gw.get("/prod/r");
    assert_eq!(r.status, 200);
    assert!(r.header("ratelimit-limit").is_some(), "integration answers carry the route's RateLimit fields");
    let big = "v".repeat(5000);
    assert_eq!(get(gw.addr(), "/prod/r", &[("x-big", &big)]).status, 431);
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("x-h{i}"), "1".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(get(gw.addr(), "/prod/r", &many).status, 431);
    // the stage bucket is spent: the flood is refused before the authorizer is called
    for _ in 0..5 {
        let _ = get(gw.addr(), "/prod/guarded", &[("X-Token", "t")]);
    }
    let r = get(gw.addr(), "/prod/guarded", &[("X-Token", "t")]);
    assert_eq!(r.status, 429);
    assert!(authz.hits() <= 2, "throttled requests cost no authorizer call ({} calls)", authz.hits());
}

/// #20: a reload that fails changes nothing: a cache-capacity change in it flushes nothing.
#[test]
fn a_failed_reload_has_no_side_effects() {
    let origin = Origin::start("o");
    let url = origin.url();
    let cfg = |d: &std::path::Path, p: &Ports, capacity: &str, broken: &str| {
        format!(
            r#"{server}
[[apis]]
name = "f"
[apis.stages.prod]
cache = {{ ttl = "60s", capacity = "{capacity}" }}
[[apis.routes]]
route = "GET /x"
integration = {{ type = "http", uri = "{url}" }}
{broken}
"#,
            server = server_section(d, p, "")
        )
    };
    let gw = Gateway::start(|d, p| cfg(d, p, "1MiB", ""));
    gw.get("/prod/x");
    assert_eq!(gw.get("/prod/x").header("x-edgegate-cache"), Some("hit"));
    gw.write_config(&cfg(gw.dir.path(), &gw.ports, "2MiB", "[[apis.routes]]\nroute = \"BOGUS\""));
    eventually("the failed reload", || gw.metrics().contains(r#"edgegate_config_reloads_total{result="error"} 1"#));
    assert_eq!(gw.get("/prod/x").header("x-edgegate-cache"), Some("hit"), "the entry survived the failed reload");
    assert_eq!(origin.count(), 1);
}

/// #3, #12: configs that would be unsafe are refused.
#[test]
fn unsafe_configs_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let check = |text: &str| {
        let f = dir.path().join("e.toml");
        std::fs::write(&f, text).expect("write");
        let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&f).output().expect("check");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = check(
        "[authorizers.a]\ntype = \"request\"\nuri = \"http://127.0.0.1:1/\"\nidentity_sources = []\n[[apis]]\nname = \"a\"\n[apis.stages.prod]\n",
    );
    assert!(!ok && err.contains("identity_sources"), "{err}");
    let (ok, err) = check(
        "[[apis]]\nname = \"a\"\n[apis.cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n[apis.stages.prod]\n",
    );
    assert!(!ok && err.contains("allow_credentials"), "{err}");
}

/// #16: a request head must arrive within `server.header_timeout`; bodies are not timed.
#[test]
fn slow_request_heads_get_408_and_bodies_are_not_timed() {
    use std::io::{Read, Write};
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| {
        format!(
            r#"{server}
[[apis]]
name = "d"
[apis.stages.prod]
[[apis.routes]]
route = "ANY /x"
integration = {{ type = "http", uri = "{url}" }}
"#,
            server = server_section(d, p, "header_timeout = \"1s\"")
        )
    });
    let trickle = |s: &mut std::net::TcpStream, bytes: &[u8]| -> std::time::Duration {
        let start = std::time::Instant::now();
        for b in bytes {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(150));
            if start.elapsed() > std::time::Duration::from_secs(5) {
                break;
            }
        }
        start.elapsed()
    };
    // the first head of a connection, a byte every 150 ms
    let mut s = std::net::TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
    let spent =
        trickle(&mut s, b"GET /prod/x HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "after {spent:?}: {answer:?}");
    assert!(spent < std::time::Duration::from_secs(3), "the connection was closed at the deadline");
    // the second head of a keep-alive connection
    let mut s = std::net::TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
    s.write_all(b"GET /prod/x HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
    assert_eq!(read_response(&mut r, false).expect("first answer").status, 200);
    trickle(&mut s, b"GET /prod/x HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
    assert!(rest.starts_with("HTTP/1.1 408"), "{rest:?}");
    // a body slower than the deadline is fine: only heads are timed
    let mut s = std::net::TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    s.write_all(b"POST /prod/x HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n").expect("write");
    trickle(&mut s, b"slow-body-ok");
    let mut r = std::io::BufReader::new(s);
    assert_eq!(read_response(&mut r, false).expect("answer").status, 200);
    assert_eq!(origin.requests().last().expect("seen").body, b"slow-body-ok".to_vec());
}
