//! The edge role: an edge edgegate forwarding `endpoint = "edge"` APIs to real regional
//! edgegates, which run the API (authorizers, routes, integrations) themselves.

use crate::common::*;

/// The one API both roles load: `endpoint = "edge"`, a public route, a route behind a
/// request authorizer (x-token: good), a resource policy, and a custom domain.
fn api(origin: &str, authorizer: &str) -> String {
    format!(
        r#"
[authorizers.tok]
type = "request"
uri = "{authorizer}/authorize"
identity_sources = ["$request.header.x-token"]
response = "simple"
result_ttl = "0s"

[[apis]]
name = "shop"
endpoint = "edge"
[apis.policy]
deny_cidrs = ["127.0.0.9/32"]
[apis.stages.prod]
[apis.integrations.web]
type = "http"
uri = "{origin}"
[[apis.routes]]
route = "GET /items/{{id}}"
integration = "web"
[[apis.routes]]
route = "ANY /orders"
integration = "web"
[[apis.routes]]
route = "GET /private"
integration = "web"
authorizer = "tok"

[[domains]]
host = "shop.example.com"
[[domains.mappings]]
base_path = ""
api = "shop"
stage = "prod"
"#
    )
}

/// A regional node: no `[edge]`, so it serves the edge API itself; it believes the
/// forwarding headers of loopback peers (its edges).
fn regional(origin: &Origin, auth: &Service) -> Gateway {
    Gateway::start(|d, p| {
        format!(
            "{}{}",
            server_section(d, p, "watch = false\ntrusted_proxies = [\"127.0.0.1/32\"]"),
            api(&origin.url(), &auth.base)
        )
    })
}

fn edge_cfg(d: &std::path::Path, p: &Ports, origins: &[String], auth: &Service, extra: &str) -> String {
    let list = origins.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "{}[edge]\norigins = [{list}]\nhealth_check = {{ interval = \"200ms\", timeout = \"100ms\" }}\n{extra}\n{}",
        server_section(d, p, "watch = false"),
        // the edge's own API config points nowhere: it never calls integrations itself
        api("http://127.0.0.1:9", &auth.base)
    )
}

fn edge(origins: &[String], auth: &Service) -> Gateway {
    Gateway::start(|d, p| edge_cfg(d, p, origins, auth, ""))
}

fn url(g: &Gateway) -> String {
    format!("http://{}", g.addr())
}

#[test]
fn an_edge_forwards_to_the_regional_node_which_runs_the_api() {
    let (origin, auth) = (Origin::start("o"), token_authorizer());
    let reg = regional(&origin, &auth);
    let e = edge(&[url(&reg)], &auth);

    // a spoofed X-Forwarded-For from an untrusted client is replaced at the edge
    let r = get_from("127.0.0.5", e.addr(), "/prod/items/7?color=red", &[("x-forwarded-for", "6.6.6.6")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["target"], "/items/7?color=red", "the regional node routed and proxied the path");
    let xff = seen["headers"]["x-forwarded-for"].as_str().unwrap_or_default().to_string();
    assert!(xff.starts_with("127.0.0.5, 127.0.0.1"), "client, then the edge: {xff}");
    assert!(!xff.contains("6.6.6.6"), "{xff}");
    let via = r.header("via").unwrap_or_default();
    assert!(via.contains("(edgegate)"), "the client sees the edge's Via: {via:?}");
    // what the regional node received from the edge
    let line = reg.wait_log("/prod/items/7");
    assert!(line.contains("127.0.0.5"), "the regional node logs the real client: {line}");

    // the client's Host goes through: the regional node resolves the custom domain on it
    let r = get(e.addr(), "/items/8", &[("host", "shop.example.com")]);
    assert_eq!((r.status, r.json()["target"].as_str()), (200, Some("/items/8")), "{}", r.text());

    // the regional node runs the authorizer; the edge has none of its own
    assert_eq!(get(e.addr(), "/prod/private", &[]).status, 401);
    assert_eq!(get(e.addr(), "/prod/private", &[("x-token", "bad")]).status, 403);
    assert_eq!(get(e.addr(), "/prod/private", &[("x-token", "good")]).status, 200);
    // writes go through with their body
    let r = send(e.addr(), "POST", "/prod/orders", &[("content-type", "text/plain")], b"two apples");
    assert_eq!((r.status, r.json()["body"].as_str()), (200, Some("two apples")));
    // a regional node serves the edge API itself
    assert_eq!(reg.get("/prod/items/1").status, 200);

    // HTTP/2 without content-length, with repeated Via lines: the body arrives whole, and
    // the Via list keeps every earlier hop, in order, before this one
    let r = h2_request(
        e.addr(),
        "POST",
        "/prod/orders",
        &[("via", "1.1 a"), ("via", "1.1 b"), ("content-type", "text/plain")],
        Some(b"three pears"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: serde_json::Value = serde_json::from_str(&r.text()).expect("json");
    assert_eq!(seen["body"], "three pears");
    let last = origin.requests().into_iter().last().expect("seen");
    let via = last.header("via").unwrap_or_default().to_string();
    assert!(via.starts_with("1.1 a, 1.1 b, 1.1 ") && via.ends_with("(edgegate)"), "{via}");
}

#[test]
fn the_edge_caches_public_answers_and_never_credentialed_ones() {
    let (origin, auth) = (Origin::start("o"), token_authorizer());
    let reg = regional(&origin, &auth);
    let e = edge(&[url(&reg)], &auth);
    let first = e.get("/prod/items/1?x=1");
    assert_eq!(first.header("x-edgegate-cache"), Some("miss"));
    let again = e.get("/prod/items/1?x=1");
    assert_eq!((again.status, again.header("x-edgegate-cache")), (200, Some("hit")));
    assert_eq!(again.json()["seq"], first.json()["seq"], "the same stored answer");
    let n = origin.count();
    // every query parameter is in the edge key
    assert_eq!(e.get("/prod/items/1?x=2").header("x-edgegate-cache"), Some("miss"));
    assert_eq!(origin.count(), n + 1);

    // a route behind an authorizer: never stored at the edge, so a caller without the
    // credential never gets what a caller with it was answered
    let n = origin.count();
    for _ in 0..2 {
        let r = get(e.addr(), "/prod/private", &[("x-token", "good")]);
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-edgegate-cache"), Some("hit"));
    }
    assert_eq!(origin.count(), n + 2, "both reached the origin");
    assert_eq!(get(e.addr(), "/prod/private", &[]).status, 401);

    // a request with Authorization is not stored (RFC 9111 3.5), even on a public route
    let n = origin.count();
    get(e.addr(), "/prod/items/2", &[("authorization", "Bearer a")]);
    let r = get(e.addr(), "/prod/items/2", &[]);
    assert_ne!(r.header("x-edgegate-cache"), Some("hit"));
    assert_eq!(origin.count(), n + 2);

    // the resource policy holds at the edge, before its cache
    assert_eq!(e.get("/prod/items/1?x=1").header("x-edgegate-cache"), Some("hit"));
    assert_eq!(get_from("127.0.0.9", e.addr(), "/prod/items/1?x=1", &[]).status, 403);
    // writes are not cached
    let n = origin.count();
    send(e.addr(), "POST", "/prod/orders", &[], b"a");
    send(e.addr(), "POST", "/prod/orders", &[], b"a");
    assert_eq!(origin.count(), n + 2);
}

#[test]
fn the_first_healthy_origin_wins_and_a_dead_one_fails_over() {
    let auth = token_authorizer();
    let (oa, ob) = (Origin::start("a"), Origin::start("b"));
    let ra = regional(&oa, &auth);
    let rb = regional(&ob, &auth);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let e = Gateway::start(|d, p| edge_cfg(d, p, &[url(&ra), url(&rb)], &auth, "cache = { ttl = \"0s\" }"));
    for i in 0..5 {
        assert_eq!(e.get(&format!("/prod/items/{i}")).header("x-origin"), Some("a"), "the first origin, always");
    }
    assert_eq!(ob.count(), 0);
    // the first origin goes away: traffic moves to the second at once (connect failure), and
    // the health check marks it down
    let target_a = format!("127.0.0.1:{}", ra.ports.listen);
    drop(ra);
    assert_eq!(e.get("/prod/items/9").header("x-origin"), Some("b"));
    let key = format!("edgegate_upstream_health{{link=\"edge\",target=\"{target_a}\"}} 0");
    eventually("the dead origin to be marked down", || e.metrics().contains(&key));
    for i in 0..5 {
        assert_eq!(e.get(&format!("/prod/items/{i}")).header("x-origin"), Some("b"));
    }

    // an edge whose first origin never answered serves from the next one
    let e2 = Gateway::start(|d, p| edge_cfg(d, p, &[dead.clone(), url(&rb)], &auth, ""));
    assert_eq!(e2.get("/prod/items/1").header("x-origin"), Some("b"));
    // no origin left: a gateway response, not a hang
    drop(rb);
    let r = e2.get("/prod/items/5");
    assert!(r.status == 502 || r.status == 503, "{} {}", r.status, r.text());
}

#[test]
fn edge_config_errors_name_their_key() {
    let auth = token_authorizer();
    let check = |extra_edge: &str, origins: &[&str]| -> String {
        let d = tempfile::tempdir().expect("dir");
        let p = Ports::new();
        let list: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        let extra = if extra_edge == "vpc" { "" } else { extra_edge };
        let mut text = edge_cfg(d.path(), &p, &list, &auth, extra);
        if extra_edge == "vpc" {
            text = text.replace("[edge]", "[[vpc_links]]\nname = \"edge\"\ntargets = [\"127.0.0.1:1\"]\n\n[edge]");
        }
        let f = d.path().join("e.toml");
        std::fs::write(&f, text).expect("write");
        let out = std::process::Command::new(BIN).arg("check").arg("-c").arg(&f).output().expect("run");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = check("", &["ftp://127.0.0.1:1"]);
    assert!(e.contains("edge.origins[0]") && e.contains("http://"), "{e}");
    let e = check("", &["http://127.0.0.1:1/regional"]);
    assert!(e.contains("edge.origins[0]") && e.contains("scheme://host[:port] only"), "{e}");
    let e = check("", &["http://127.0.0.1:1", "https://127.0.0.1:2"]);
    assert!(e.contains("edge.origins[1]"), "{e}");
    let e = check("", &[]);
    assert!(e.contains("edge.origins") && e.contains("at least one origin"), "{e}");
    let e = check("cache = { ttl = \"2h\" }", &["http://127.0.0.1:1"]);
    assert!(e.contains("edge.cache.ttl"), "{e}");
    let e = check("vpc", &["http://127.0.0.1:1"]);
    assert!(e.contains("\"edge\""), "{e}");
}
