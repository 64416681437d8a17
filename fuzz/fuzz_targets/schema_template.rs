//! JSON Schema and template compilation (what a config compiles at load): never a panic,
//! whatever the schema or the template text; rendering a compiled template with escaping
//! never panics either.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(validator) = edgegate::validation::compile_schema(&v) {
            let _ = validator.is_valid(&v);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut env = edgegate::templates::environment();
    env.set_fuel(Some(10_000));
    for name in ["t+json", "t:path", "t"] {
        if env.add_template_owned(name.to_string(), text.to_string()).is_ok() {
            let ctx = minijinja::context! { v => "a\"b/../c", input => minijinja::context! { body => text } };
            let _ = env.get_template(name).and_then(|t| t.render(&ctx));
        }
    }
});
