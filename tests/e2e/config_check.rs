//! `edgegate check`: the shipped configs pass; bad ones fail with FILE:LINE:COL.

use crate::common::BIN;
use std::process::Command;

fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN).arg("check").arg("-c").arg(path).output().expect("run check");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn check_text(text: &str) -> (bool, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, text).expect("write");
    let (ok, out) = check(&p);
    (ok, out, p, dir)
}

/// What the trust review's checks still accept: an insecure endpoint the integration allows,
/// a route cache under a stage cache, a form template (escaped by default).
#[test]
fn deliberate_choices_pass_check() {
    for text in [
        "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.f]\ntype = \"lambda\"\nfunction = \"f\"\nendpoint = \"http://192.0.2.7:9000\"\nallow_insecure_endpoint = true\n",
        "[[apis]]\nname = \"a\"\n[apis.stages.prod]\ncache = { ttl = \"30s\" }\n[[apis.routes]]\nroute = \"GET /x\"\nintegration = { type = \"mock\" }\ncache = { ttl = \"60s\" }\n",
        "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /x\"\nintegration = { type = \"mock\" }\ncache = { ttl = \"0s\" }\n",
    ] {
        let (ok, out, _, _dir) = check_text(text);
        assert!(ok, "refused: {out}\n{text}");
    }
}

#[test]
fn every_shipped_config_passes_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut files = vec![root.join("edgegate.toml")];
    for e in std::fs::read_dir(root.join("examples")).expect("examples") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            files.push(p);
        }
    }
    assert!(files.len() >= 4, "expected the default config and examples, found {files:?}");
    for f in files {
        let (ok, out) = check(&f);
        assert!(ok && out.trim() == "ok", "{}: {out}", f.display());
    }
}

/// Each bad config: the expected line:col and a phrase of the message.
#[test]
fn bad_configs_are_refused_with_their_location() {
    let cases: &[(&str, &str, &str)] = &[
        ("[server]\nlisten = [\"127.0.0.1:1\"]\nlisen = 1\n", ":3:1:", "unknown field `lisen`"),
        ("[server]\ngrace_period = \"soon\"\n", ":2:16:", "invalid duration"),
        ("[server]\nmax_body = \"10 parsecs\"\n", ":2:12:", "size"),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /x\"\nintegration = \"nope\"\n",
            ":6:1:",
            "no integration named \"nope\"",
        ),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.b]\ntype = \"http\"\nuri = \"http://127.0.0.1:1\"\ntimeout = \"30s\"\n",
            ":7:1:",
            "at most server.max_integration_timeout",
        ),
        ("[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"FETCH /x\"\nintegration = { type = \"mock\" }\n", ":5:1:", "unknown method"),
        ("[cluster]\nredis = \"redis://127.0.0.1\"\non_redis_error = \"panic\"\n", ":3:1:", "must be \"local\" or \"deny\""),
        (
            "[authorizers.a]\ntype = \"request\"\nlambda = { function = \"f\", endpoint = \"http://127.0.0.1:1\", colour = \"red\" }\n",
            ":3:",
            "unknown key `colour`",
        ),
        ("[edge]\norigins = [\"ftp://127.0.0.1:1\"]\n", ":2:", "must start with http:// or https://"),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.q]\ntype = \"aws\"\nservice = \"s q s\"\nendpoint = \"http://127.0.0.1:1\"\n",
            ":6:1:",
            "is not a service name",
        ),
        ("[authorizers.a]\ntype = \"sigv4\"\nregion = \"us-east-1\"\ncredentials = \"nope.toml\"\n", ":4:1:", "cannot read"),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /x\"\nintegration = { type = \"mock\" }\napi_key_required = true\n",
            ":7:1:",
            "needs an [api_keys] section",
        ),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.b]\ntype = \"http\"\nuri = \"${stageVariables.backend}\"\n",
            ":6:1:",
            "stage variable \"backend\" is not defined",
        ),
        ("[tls]\nlisten = [\"127.0.0.1:1\"]\n[[tls.certificates]]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n", ":4:1:", "cannot read"),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.m]\ntype = \"mock\"\nbody = \"{{ oops\"\n",
            ":6:1:",
            "template error",
        ),
        ("[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.gateway_responses.NOPE]\nstatus = 400\n", ":4:", "unknown gateway response type"),
        ("[defaults.throttle]\nrate = 0\nburst = 5\n", ":2:1:", "rate must be a positive"),
        (
            "[[usage_plans]]\nname = \"gold\"\nstages = [\"nope:prod\"]\n",
            ":3:",
            "is not \"API:STAGE\"",
        ),
        ("[[usage_plans]]\nname = \"gold\"\nquota = { limit = 10, period = \"year\" }\n", ":3:", "day, week or month"),
        ("[[apis]]\nname = \"a\"\n[apis.policy]\nallow_cidrs = [\"10.0.0.0/33\"]\n[apis.stages.prod]\n", ":4:", "CIDR"),
        ("[[apis]]\nname = \"a\"\n[apis.stages.prod]\ncache = { ttl = \"2h\" }\n", ":4:", "ttl must be at most 3600s"),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /x/{id}\"\nintegration = { type = \"mock\" }\ncache = { key = [\"path.id\", \"path.nope\"] }\n",
            ":7:",
            "no path parameter \"nope\"",
        ),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /x\"\nintegration = { type = \"mock\" }\ncache = { key = [\"cookie.a\"] }\n",
            ":7:",
            "must be path.NAME, query.NAME or header.NAME",
        ),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /x\"\nintegration = { type = \"mock\" }\n[apis.routes.request_transform]\nset_headers = { \"x-a\" = \"{{ broken\" }\n",
            ":8:",
            "template error",
        ),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"POST /x\"\nintegration = { type = \"mock\" }\nvalidate = { body = { type = 12 } }\n",
            ":7:",
            "invalid JSON Schema",
        ),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"POST /x\"\nintegration = { type = \"mock\" }\nresponse_transform = { status = { \"abc\" = 200 } }\n",
            ":7:",
            "status remapping",
        ),
        ("[[apis]]\nname = \"a\"\ncors = { allow_origins = [\"app.example.com\"] }\n[apis.stages.prod]\n", ":3:", "must be \"*\" or an origin"),
        // the trust review's config checks
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.f]\ntype = \"lambda\"\nfunction = \"f\"\nendpoint = \"http://192.0.2.7:9000\"\n",
            ":7:1:",
            "http:// off loopback",
        ),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[apis.integrations.q]\ntype = \"aws\"\nservice = \"sqs\"\nendpoint = \"http://192.0.2.7\"\n",
            ":7:1:",
            "allow_insecure_endpoint",
        ),
        (
            "[[vpc_links]]\nname = \"l\"\ntargets = [\"127.0.0.1:1\"]\nhealth_check = { kind = \"http\", path = \"/h\\r\\nX-Evil: 1\" }\n",
            ":4:",
            "control characters",
        ),
        (
            "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"GET /x\"\nintegration = { type = \"mock\" }\ncache = { ttl = \"60s\" }\n",
            ":7:",
            "no stage of this API has a cache",
        ),
        ("[server]\nlisten = [\"127.0.0.1:18081\"]\n[edge]\norigins = [\"http://127.0.0.1:18081\"]\n", ":4:", "own listener"),
    ];
    for (text, at, phrase) in cases {
        let (ok, out, path, _dir) = check_text(text);
        assert!(!ok, "accepted:\n{text}");
        let first = out.lines().next().unwrap_or("");
        assert!(first.starts_with(&format!("{}{at}", path.display())), "location {at} expected in {out:?} for\n{text}");
        assert!(out.contains(phrase), "{phrase:?} expected in {out:?}");
    }
}

#[test]
fn errors_inside_a_schema_file_point_into_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pet.json"), "{\n  \"type\": \"object\",\n  \"properties\": {,}\n}\n")
        .expect("schema");
    let p = dir.path().join("c.toml");
    let text = "[[apis]]\nname = \"a\"\n[apis.stages.prod]\n[[apis.routes]]\nroute = \"POST /x\"\nintegration = { type = \"mock\" }\nvalidate = { body = \"pet.json\" }\n";
    std::fs::write(&p, text).expect("config");
    let (ok, out) = check(&p);
    assert!(!ok);
    assert!(out.contains(&format!("{}:3:", dir.path().join("pet.json").display())), "{out}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let (ok, out, _, _dir) = check_text(
        "[server]\ntrusted_proxies = [\"not-a-cidr\"]\n[[apis]]\nname = \"a\"\nbase_path = \"v1/\"\n[apis.stages.prod]\n",
    );
    assert!(!ok);
    assert!(out.contains(":2:") && out.contains("CIDR"), "{out}");
    assert!(out.contains(":5:") && out.contains("base path"), "{out}");
}

#[test]
fn a_broken_config_does_not_start() {
    let (_, _, path, _dir) = check_text("[server]\nlisten = 7\n");
    let out = Command::new(BIN).arg("-c").arg(&path).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2:"), "{}", String::from_utf8_lossy(&out.stderr));
}
