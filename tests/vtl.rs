//! The VTL engine against its references, on a corpus of API Gateway mapping templates
//! (`tests/fixtures/vtl/corpus.json`): each template renders with the same payload,
//! parameters, `$context` and stage variables in edgegate and in velocityjs as
//! serverless-offline runs it for API Gateway (`tests/fixtures/vtl/reference.mjs`). Where the
//! references differ from API Gateway (Java methods, integer division, `$util` escapes,
//! JSONPath wildcards), the case carries API Gateway's answer (`expect`) and why. Skipped,
//! saying so, when node or the npm peers are missing (`./dev test` installs them);
//! `EDGEGATE_REQUIRE_PEERS=1` turns the skip into a failure.

use edgegate::vtl::{string_map, Input, Limits, Template, Value, Vars};
use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;

fn pairs(v: &Json) -> Vec<(String, String)> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

fn render(case: &Json) -> Result<String, String> {
    let input = Input::new(
        case["body"].as_str().unwrap_or_default(),
        pairs(&case["path"]),
        pairs(&case["querystring"]),
        pairs(&case["header"]),
    );
    let mut context = vec![
        ("apiId".to_string(), Value::str("offlineContext_apiId")),
        ("httpMethod".to_string(), Value::str("POST")),
        ("requestId".to_string(), Value::str("req-1")),
        ("resourcePath".to_string(), Value::str("/orders")),
        ("stage".to_string(), Value::str("prod")),
    ];
    context.push(("identity".to_string(), string_map([("sourceIp", "192.0.2.1")])));
    let stage: Vec<(String, String)> = pairs(&case["stageVariables"]);
    let vars = Vars {
        input: Some(&input),
        context: Value::map(context),
        stage_variables: string_map(stage.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    };
    let t = Template::compile(case["template"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    t.render(&vars, &Limits::default()).map_err(|e| e.to_string())
}

#[test]
fn templates_render_as_the_references_do() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus_path = root.join("tests/fixtures/vtl/corpus.json");
    let corpus: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(&corpus_path).expect("corpus")).expect("JSON");
    assert!(corpus.len() >= 60, "the corpus has {} templates", corpus.len());

    let modules = root.join("target/peers/node/node_modules");
    let have_peers = modules.join("velocityjs").is_dir() && modules.join("serverless-offline").is_dir();
    let reference: Option<Vec<Json>> = if have_peers {
        let out = Command::new("node")
            .arg(root.join("tests/fixtures/vtl/reference.mjs"))
            .arg(&modules)
            .arg(&corpus_path)
            .output()
            .expect("node runs");
        assert!(out.status.success(), "reference: {}", String::from_utf8_lossy(&out.stderr));
        Some(serde_json::from_slice(&out.stdout).expect("reference output"))
    } else {
        assert!(
            std::env::var_os("EDGEGATE_REQUIRE_PEERS").is_none(),
            "velocityjs / serverless-offline are not installed in target/peers/node"
        );
        eprintln!("skipped the velocityjs comparison: the npm peers are not installed (./dev test installs them)");
        None
    };

    let mut failures = Vec::new();
    let mut compared = 0;
    for (i, case) in corpus.iter().enumerate() {
        let name = case["name"].as_str().unwrap_or_default();
        let ours = render(case);
        let want = match (&case["expect"], &reference) {
            (Json::String(e), _) => Some(e.clone()),
            (_, Some(r)) => r[i].as_str().map(str::to_string),
            (_, None) => continue,
        };
        compared += 1;
        match (ours, want) {
            (Ok(o), Some(w)) if o == w => {}
            (o, w) => failures.push(format!("{name}: edgegate {o:?}, reference {w:?}")),
        }
    }
    assert!(failures.is_empty(), "{} of {compared} differ:\n{}", failures.len(), failures.join("\n"));
    if reference.is_some() {
        assert_eq!(compared, corpus.len());
    }
}
