//! Stages, base paths (versions), custom domains, route keys and path normalisation.

use crate::common::*;

fn config(dir: &std::path::Path, p: &Ports, origin: &Origin) -> String {
    format!(
        r#"{server}
[[domains]]
host = "api.example.test"
mappings = [{{ base_path = "/v1", api = "shop-v1", stage = "prod" }}, {{ base_path = "", api = "shop-v2", stage = "test" }}]

[[apis]]
name = "shop-v1"
base_path = "/v1"
[apis.stages.prod]
variables = {{ backend = "{o}" }}
[apis.stages.dev]
variables = {{ backend = "{o}/dev" }}
[apis.integrations.up]
type = "http"
uri = "${{stageVariables.backend}}"
[[apis.routes]]
route = "GET /items/{{id}}"
integration = "up"
[[apis.routes]]
route = "GET /items/special"
integration = {{ type = "mock", body = "special" }}
[[apis.routes]]
route = "ANY /items/{{id}}"
integration = {{ type = "mock", body = "any {{{{ context.httpMethod }}}}" }}
[[apis.routes]]
route = "ANY /files/{{path+}}"
integration = "up"
[[apis.routes]]
route = "GET /secret"
integration = {{ type = "mock", body = "secret" }}

[[apis]]
name = "shop-v2"
base_path = "/v2"
[apis.stages.prod]
[apis.stages.test]
[[apis.routes]]
route = "GET /items/{{id}}"
integration = {{ type = "mock", body = "v2 {{{{ context.stage }}}} {{{{ input.params.path.id }}}}" }}
[[apis.routes]]
route = "$default"
integration = {{ type = "mock", status = 418, body = "v2 default" }}
"#,
        server = server_section(dir, p, ""),
        o = origin.url()
    )
}

#[test]
fn stages_versions_and_domains_pick_the_api() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| config(d, p, &origin));

    let r = gw.get("/prod/v1/items/7?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/items/7?x=1");
    let r = gw.get("/dev/v1/items/7");
    assert_eq!(r.json()["target"], "/dev/items/7", "stage variables pick the dev backend");
    assert_eq!(gw.get("/prod/v2/items/9").text(), "v2 prod 9");
    assert_eq!(gw.get("/test/v2/items/9").text(), "v2 test 9");
    assert_eq!(gw.get("/dev/v2/items/9").status, 404, "shop-v2 has no dev stage");
    assert_eq!(gw.get("/staging/v1/items/7").status, 404);
    assert_eq!(gw.get("/prod/v10/items/7").status, 404, "base paths match whole segments");

    // custom domain: no stage in the path, base path mapping picks the API
    let r = get(gw.addr(), "/v1/items/5", &[("Host", "API.example.test:443")]);
    assert_eq!(r.json()["target"], "/items/5");
    let r = get(gw.addr(), "/items/5", &[("Host", "api.example.test")]);
    assert_eq!(r.text(), "v2 test 5", "empty base path mapping");
}

#[test]
fn most_specific_route_wins_and_unknown_is_404() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| config(d, p, &origin));
    assert_eq!(gw.get("/prod/v1/items/special").text(), "special");
    assert_eq!(gw.get("/prod/v1/items/3").json()["origin"], "o");
    assert_eq!(send(gw.addr(), "DELETE", "/prod/v1/items/3", &[], b"").text(), "any DELETE");
    assert_eq!(gw.get("/prod/v1/files/a/b/c.txt").json()["target"], "/files/a/b/c.txt");
    let r = gw.get("/prod/v1/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "Not Found");
    assert!(r.header("x-request-id").is_some());
    let r = gw.get("/prod/v2/nothing");
    assert_eq!((r.status, r.text().as_str()), (418, "v2 default"));
}

#[test]
fn normalised_paths_cannot_slip_past_a_route() {
    let origin = Origin::start("o");
    let gw = Gateway::start(|d, p| config(d, p, &origin));
    // dot segments resolve before matching, and the origin sees the resolved path
    let r = gw.get("/prod/v1/files/a/../../secret");
    assert_eq!(r.text(), "secret", "resolved to /secret, the route that really matches");
    let r = gw.get("/prod/v1/files/x/%2e%2e/y");
    assert_eq!(r.json()["target"], "/files/y");
    let r = gw.get("/prod//v1///items/4");
    assert_eq!(r.json()["target"], "/items/4");
    // an encoded slash stays inside its segment
    let r = gw.get("/prod/v1/items/a%2Fb");
    assert_eq!(r.json()["target"], "/items/a%2Fb");
    // refused outright
    for bad in ["/prod/v1/items/%zz", "/prod/../../etc/passwd", "/prod/v1/items/a%5cb"] {
        let r = gw.get(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let before = origin.count();
    let _ = gw.get("/prod/v1/files/%2e%2e/%2e%2e/%2e%2e/etc");
    assert_eq!(origin.count(), before, "a path above the root never reaches the origin");
}
