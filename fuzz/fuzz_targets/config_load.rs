//! Config load: any text gives a snapshot or located errors, never a panic. Inputs that
//! name URLs are skipped: loading fetches JWKS URLs and resolves hosts, and a fuzzer must
//! not send traffic anywhere.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if s.contains("://") || s.contains("openapi") || s.contains("redis") {
        return;
    }
    let dir = std::env::temp_dir().join("edgegate-fuzz-config");
    let _ = std::fs::create_dir_all(&dir);
    match edgegate::config::load_str(&dir.join("edgegate.toml"), s, &edgegate::runtime::Runtime::new()) {
        Ok(_) => {}
        Err(errs) => {
            for e in errs.0 {
                assert!(e.line >= 1 && e.col >= 1, "{e:?}");
            }
        }
    }
});
