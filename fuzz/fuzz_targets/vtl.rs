//! VTL: compiling any text never panics, and rendering what compiles (against a JSON
//! payload, parameters and a context) never panics, hangs or outgrows its limits.
#![no_main]
use edgegate::vtl::{string_map, Input, Limits, Template, Vars};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(t) = Template::compile(text) else { return };
    let input = Input::new(
        r#"{"a": [1, 2.5, "x", {"b": null}], "s": "q\"/\u00e9", "n": -7}"#,
        vec![("id".into(), "7".into())],
        vec![("q".into(), "a b".into())],
        vec![("X-H".into(), "v".into())],
    );
    let vars = Vars {
        input: Some(&input),
        context: string_map([("requestId", "r"), ("stage", "prod")]),
        stage_variables: string_map([("k", "v")]),
    };
    let limits = Limits { max_steps: 20_000, max_iterations: 200, max_output: 64 * 1024, max_memory: 1 << 20 };
    if let Ok(out) = t.render(&vars, &limits) {
        assert!(out.len() <= limits.max_output);
    }
});
