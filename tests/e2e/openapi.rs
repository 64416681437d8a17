//! OpenAPI / Swagger import: `edgegate import openapi` on the Swagger Petstore in both
//! versions (tests/fixtures/openapi), and `openapi = "FILE"` at config load, hot-reloaded.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi").join(name)
}

fn import(doc: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(["import", "openapi"]).arg(doc).args(args).output().expect("run import");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The imported block, made loadable with the authorizer and key file it names, must pass
/// `edgegate check`: the import is a config the gateway accepts, not just TOML.
fn check_imported(block: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/examples/demo-jwks.json");
    std::fs::write(dir.path().join("keys.toml"), "").expect("keys");
    let config = format!(
        "[api_keys]\nfile = \"keys.toml\"\nheader = \"api_key\"\n[[usage_plans]]\nname = \"p\"\n\
         [authorizers.petstore_auth]\ntype = \"jwt\"\nissuer = \"https://auth.example/\"\naudience = [\"pets\"]\nalgorithms = [\"RS256\"]\njwks = \"{}\"\n{block}",
        jwks.display()
    );
    let path = dir.path().join("edgegate.toml");
    std::fs::write(&path, &config).expect("config");
    let out = Command::new(BIN).arg("check").arg("-c").arg(&path).output().expect("check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "imported config refused:\n{text}\n{config}");
    text
}

#[test]
fn petstore_openapi3_yaml_imports_to_a_valid_api() {
    let (ok, out, err) =
        import(&fixture("petstore3.yaml"), &["--name", "pets", "--stage", "prod=http://127.0.0.1:9000"]);
    assert!(ok, "{err}");
    let t: toml::Table = toml::from_str(&out).expect("TOML");
    let api = &t["apis"][0];
    assert_eq!(api["name"].as_str(), Some("pets"));
    assert_eq!(api["base_path"].as_str(), Some("/v3"));
    let routes = api["routes"].as_array().expect("routes");
    // 13 paths, 19 operations in the document
    assert_eq!(routes.len(), 19, "{out}");
    let route =
        |k: &str| routes.iter().find(|r| r["route"].as_str() == Some(k)).unwrap_or_else(|| panic!("{k} in {out}"));
    assert_eq!(route("POST /pet")["authorizer"].as_str(), Some("petstore_auth"));
    assert_eq!(route("POST /pet")["validate"]["body"]["required"][0].as_str(), Some("name"));
    assert_eq!(route("GET /store/inventory")["api_key_required"].as_bool(), Some(true));
    assert_eq!(route("DELETE /user/{username}")["integration"].as_str(), Some("backend"));
    assert_eq!(api["stages"]["prod"]["variables"]["backend"].as_str(), Some("http://127.0.0.1:9000"));
    // reported, not dropped: the alternative security requirement and the api_key header name
    assert!(out.contains("# not converted: GET /pet/{petId}: alternative security requirements"), "{out}");
    assert!(err.contains("not converted"), "{err}");
    check_imported(&out);
}

#[test]
fn petstore_swagger2_json_imports_to_a_valid_api() {
    let (ok, out, err) = import(&fixture("petstore2.json"), &[]);
    assert!(ok, "{err}");
    let t: toml::Table = toml::from_str(&out).expect("TOML");
    let api = &t["apis"][0];
    assert_eq!(api["name"].as_str(), Some("swagger-petstore"));
    assert_eq!(api["base_path"].as_str(), Some("/v2"));
    assert_eq!(api["stages"]["prod"]["variables"]["backend"].as_str(), Some("https://petstore.swagger.io/v2"));
    let routes = api["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 20, "{out}");
    let route =
        |k: &str| routes.iter().find(|r| r["route"].as_str() == Some(k)).unwrap_or_else(|| panic!("{k} in {out}"));
    let login = &route("GET /user/login")["validate"];
    assert_eq!(login["query"].as_array().map(Vec::len), Some(2));
    let body = &route("POST /store/order")["validate"]["body"];
    assert_eq!(body["$schema"].as_str(), Some("http://json-schema.org/draft-04/schema#"));
    assert_eq!(body["properties"]["status"]["enum"].as_array().map(Vec::len), Some(3));
    assert_eq!(route("POST /user/createWithList")["validate"]["body"]["type"].as_str(), Some("array"));
    assert!(err.contains("form parameter \"file\" is not validated"), "{err}");
    // the document's host is not resolvable here: check it against a loopback backend
    let (ok, out, err) = import(&fixture("petstore2.json"), &["--stage", "prod=http://127.0.0.1:9000"]);
    assert!(ok, "{err}");
    check_imported(&out);
}

#[test]
fn import_refuses_what_is_not_an_api_description() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("x.yaml");
    std::fs::write(&p, "hello: world\n").expect("write");
    let (ok, _, err) = import(&p, &[]);
    assert!(!ok && err.contains("not an OpenAPI document"), "{err}");
    let (ok, _, err) = import(&dir.path().join("missing.json"), &[]);
    assert!(!ok && err.contains("cannot read"), "{err}");
    let (ok, _, err) = import(&fixture("petstore2.json"), &["--stage", "prod"]);
    assert!(!ok && err.contains("NAME=URL"), "{err}");
}

fn doc(origin: &str, extra_path: &str) -> String {
    format!(
        r##"openapi: 3.1.0
info: {{ title: Things, version: "1" }}
paths:
  /things/{{id}}:
    get:
      parameters:
        - {{ name: id, in: path, required: true, schema: {{ type: string }} }}
        - {{ name: lang, in: query, required: true, schema: {{ type: string }} }}
      x-amazon-apigateway-integration:
        type: http_proxy
        httpMethod: GET
        uri: "{origin}/backend/things/{{id}}"
        timeoutInMillis: 3000
  /things:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: {{ $ref: "#/components/schemas/Thing" }}
      x-edgegate-integration: up
  /ping:
    get:
      x-amazon-apigateway-integration:
        type: mock
        responses:
          default:
            statusCode: "200"
            responseTemplates:
              application/json: '{{"pong": true}}'
{extra_path}components:
  schemas:
    Thing:
      type: object
      required: [name]
      properties:
        name: {{ type: string }}
        tags: {{ type: [array, "null"], items: {{ type: string }} }}
"##
    )
}

#[test]
fn an_api_loads_its_routes_from_openapi_and_reloads_with_it() {
    let origin = Origin::start("o");
    let url = origin.url();
    let gw = Gateway::start(|d, p| {
        std::fs::write(d.join("things.yaml"), doc(&url, "")).expect("doc");
        format!(
            "{}\n[[apis]]\nname = \"things\"\nopenapi = \"things.yaml\"\n[apis.stages.prod]\n\
             [apis.integrations.up]\ntype = \"http\"\nuri = \"{url}\"\n\
             [[apis.routes]]\nroute = \"GET /ping\"\nintegration = {{ type = \"mock\", body = \"config wins\" }}\n",
            server_section(d, p, "")
        )
    });
    let r = gw.get("/prod/things/7?lang=en");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(origin.requests().pop().expect("seen").target, "/backend/things/7?lang=en");
    let r = gw.get("/prod/things/7");
    assert_eq!((r.status, r.json()["message"].as_str()), (400, Some("Missing required request parameters: [lang]")));
    let json = [("Content-Type", "application/json")];
    assert_eq!(send(gw.addr(), "POST", "/prod/things", &json, br#"{"name": "a", "tags": null}"#).status, 200);
    let r = send(gw.addr(), "POST", "/prod/things", &json, br#"{"tags": ["x"]}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(gw.get("/prod/ping").text(), "config wins", "a route the config writes itself wins");
    assert_eq!(gw.get("/prod/pong").status, 404);

    // editing the document reloads the API
    let added = "  /pong:\n    get:\n      x-edgegate-integration: { type: mock, body: pong }\n";
    std::fs::write(gw.dir.path().join("things.yaml"), doc(&url, added)).expect("doc");
    eventually("the new route", || gw.get("/prod/pong").text() == "pong");

    // a broken document keeps the running config and names the file
    std::fs::write(gw.dir.path().join("things.yaml"), "openapi: 3.1.0\npaths: [\n").expect("doc");
    eventually("the reload error", || gw.stderr().contains("things.yaml:"));
    assert_eq!(gw.get("/prod/pong").text(), "pong");
}

/// Makes an imported block loadable on loopback: endpoints for Lambda and AWS service calls
/// and Lambda authorizers, a local JWKS for JWT authorizers, and stand-ins for authorizers
/// the document names but does not define.
fn loadable(imported: &toml::Table, undefined: &[String]) -> toml::Table {
    let mut t = imported.clone();
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/examples/demo-jwks.json").display().to_string();
    let here = toml::Value::String("http://127.0.0.1:9".into());
    let name_endpoint = |i: &mut toml::Table| {
        if matches!(i.get("type").and_then(|v| v.as_str()), Some("lambda" | "aws")) {
            i.insert("endpoint".into(), here.clone());
        }
        // a non-proxy http backend is called by the gateway itself: name it on loopback
        if i.get("proxy") == Some(&toml::Value::Boolean(false)) {
            if let Some(uri) = i.get("uri").and_then(|v| v.as_str()) {
                let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
                let path = rest.find('/').map_or("", |at| &rest[at..]);
                i.insert("uri".into(), toml::Value::String(format!("http://127.0.0.1:9{path}")));
            }
        }
    };
    for api in t.get_mut("apis").and_then(|a| a.as_array_mut()).into_iter().flatten() {
        let api = api.as_table_mut().expect("api");
        for r in api.get_mut("routes").and_then(|r| r.as_array_mut()).into_iter().flatten() {
            if let Some(i) = r.get_mut("integration").and_then(|i| i.as_table_mut()) {
                name_endpoint(i);
            }
        }
        for (_, i) in api.get_mut("integrations").and_then(|i| i.as_table_mut()).into_iter().flatten() {
            name_endpoint(i.as_table_mut().expect("integration"));
        }
    }
    let auths = t.entry("authorizers").or_insert(toml::Value::Table(Default::default()));
    let auths = auths.as_table_mut().expect("authorizers");
    for (_, a) in auths.iter_mut() {
        let a = a.as_table_mut().expect("authorizer");
        if a.contains_key("jwks") {
            a.insert("jwks".into(), toml::Value::String(jwks.clone()));
        }
        if let Some(l) = a.get_mut("lambda").and_then(|l| l.as_table_mut()) {
            l.insert("endpoint".into(), here.clone());
        }
    }
    for name in undefined {
        let stand_in = format!(
            "type = \"jwt\"\nissuer = \"https://auth.example/\"\nalgorithms = [\"RS256\"]\njwks = \"{jwks}\"\n"
        );
        auths.insert(name.clone(), toml::Value::Table(toml::from_str(&stand_in).expect("toml")));
    }
    t
}

/// `edgegate export openapi` on every fixture's import, imported again, gives back the same
/// API: routes, integrations and their templates, validation, authorizers (their
/// definitions), gateway responses, media types. The document passes openapi-spec-validator
/// (OpenAPI 3.0), and the YAML form is the same document.
#[test]
fn export_round_trips_every_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut docs: Vec<PathBuf> = vec![];
    for dir in ["openapi", "aws-exports"] {
        for e in std::fs::read_dir(root.join(dir)).expect("fixtures").flatten() {
            docs.push(e.path());
        }
    }
    docs.sort();
    assert!(docs.len() >= 4, "{docs:?}");
    let validator = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/bin/python3");
    let can_validate = Command::new(&validator)
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_validate {
        assert!(std::env::var_os("EDGEGATE_REQUIRE_PEERS").is_none(), "openapi-spec-validator is not installed");
        eprintln!("openapi-spec-validator is not installed (./dev test installs it): documents are not validated");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Ports::new();
    for doc in &docs {
        let what = doc.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        let (ok, first, err) = import(doc, &["--stage", "prod=http://127.0.0.1:9"]);
        assert!(ok, "{what}: {err}");
        let first_text = first;
        let first: toml::Table = toml::from_str(&first_text).expect("TOML");
        let undefined: Vec<String> = first_text
            .lines()
            .filter_map(|l| l.split_once("define these authorizers in [authorizers]: ").map(|(_, n)| n))
            .flat_map(|n| n.split(", ").map(str::to_string))
            .collect();
        let block = toml::to_string(&loadable(&first, &undefined)).expect("TOML");
        std::fs::write(dir.path().join("keys.toml"), "").expect("keys");
        let config = format!(
            "{}[api_keys]\nfile = \"keys.toml\"\n[[usage_plans]]\nname = \"p\"\n{block}",
            server_section(dir.path(), &p, "watch = false")
        );
        let path = dir.path().join("edgegate.toml");
        std::fs::write(&path, &config).expect("config");
        let api = first["apis"][0]["name"].as_str().expect("name").to_string();
        let export = |format: &str| {
            let out = Command::new(BIN)
                .args(["export", "openapi", "-c"])
                .arg(&path)
                .args(["--api", &api, "--stage", "prod", "--format", format])
                .output()
                .expect("export");
            assert!(out.status.success(), "{what}: {}\n{config}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let json_text = export("json");
        let exported: serde_json::Value = serde_json::from_str(&json_text).expect("JSON");
        let yaml: serde_json::Value = serde_yaml_ng::from_str(&export("yaml")).expect("YAML");
        assert_eq!(yaml, exported, "{what}: YAML and JSON say the same");
        assert_eq!(exported["openapi"], "3.0.1");
        let out_path = dir.path().join("exported.json");
        std::fs::write(&out_path, &json_text).expect("write");
        if can_validate {
            let v = Command::new(&validator)
                .args([
                    "-c",
                    "import sys\nfrom openapi_spec_validator import validate\nfrom openapi_spec_validator.readers import read_from_filename\nd, _ = read_from_filename(sys.argv[1])\nvalidate(d)",
                ])
                .arg(&out_path)
                .output()
                .expect("validator");
            assert!(v.status.success(), "{what}: {}\n{json_text}", String::from_utf8_lossy(&v.stderr));
        }
        let (ok, second, err) = import(&out_path, &["--stage", "prod=http://127.0.0.1:9"]);
        assert!(ok, "{what}: {err}");
        let second: toml::Table = toml::from_str(&second).expect("TOML");
        // both sides with the same endpoints named
        let (first_l, second_l) = (loadable(&first, &[]), loadable(&second, &[]));
        let (a, b) = (&first_l["apis"][0], &second_l["apis"][0]);
        for key in ["name", "base_path", "binary_media_types", "cors", "gateway_responses", "stages", "integrations"] {
            assert_eq!(a.get(key), b.get(key), "{what}: {key}");
        }
        let routes = |t: &toml::Value| -> std::collections::BTreeMap<String, toml::Value> {
            t["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (r["route"].as_str().unwrap_or("").to_string(), r.clone()))
                .collect()
        };
        let (ra, rb) = (routes(a), routes(b));
        assert_eq!(ra.keys().collect::<Vec<_>>(), rb.keys().collect::<Vec<_>>(), "{what}: the routes");
        for (k, r) in &ra {
            assert_eq!(Some(r), rb.get(k), "{what}: route {k}");
        }
        // the document's own authorizer definitions come back as they were; the stand-ins the
        // config added for the ones it only named come back defined, with their issuer
        let defs = |t: &toml::Table| t.get("authorizers").and_then(|a| a.as_table()).cloned().unwrap_or_default();
        let (mut da, mut db) = (defs(&first), defs(&second));
        for name in &undefined {
            let stand_in = db.remove(name).unwrap_or_else(|| panic!("{what}: {name} is exported and defined"));
            assert_eq!(stand_in["issuer"].as_str(), Some("https://auth.example/"), "{what}: {name}");
            da.remove(name);
        }
        assert_eq!(da, db, "{what}: the authorizers' definitions");
    }
}

/// `export openapi` refuses what it cannot export, with a clear error and no document: an
/// unknown API or stage, a configuration that does not check; a WebSocket API is exported as
/// its name alone, saying so.
#[test]
fn export_refuses_bad_input_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Ports::new();
    let path = dir.path().join("edgegate.toml");
    let good = format!(
        "{}[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /x\"\n\
         integration = {{ type = \"mock\", status = 204 }}\n\
         [[apis]]\nname = \"chat\"\nprotocol = \"websocket\"\nbase_path = \"/chat\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"$default\"\n\
         integration = {{ type = \"http\", uri = \"http://127.0.0.1:9\" }}\n",
        server_section(dir.path(), &p, "watch = false")
    );
    let run = |text: &str, args: &[&str]| {
        std::fs::write(&path, text).expect("write");
        let out = Command::new(BIN).args(["export", "openapi", "-c"]).arg(&path).args(args).output().expect("export");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&good, &["--api", "nope"]);
    assert!(!ok && out.is_empty() && err.contains("no API named \"nope\"") && err.contains("a, chat"), "{err}");
    let (ok, out, err) = run(&good, &["--api", "a", "--stage", "dev"]);
    assert!(!ok && out.is_empty() && err.contains("no stage \"dev\""), "{err}");
    let (ok, out, err) = run(&good, &["--api", "a", "--format", "xml"]);
    assert!(!ok && out.is_empty() && err.contains("xml"), "{err}");
    let broken = good.replace("status = 204", "status = 9999");
    let (ok, out, err) = run(&broken, &["--api", "a"]);
    assert!(!ok && out.is_empty() && err.contains("edgegate.toml:") && err.contains("status"), "{err}");
    let (ok, out, err) = run(&good, &["--api", "chat"]);
    assert!(ok && err.contains("WebSocket"), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["info"]["title"], "chat");
    let (ok, out, _) = run(&good, &["--api", "a"]);
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["paths"]["/x"]["get"]["x-amazon-apigateway-integration"]["type"], "mock");
}
