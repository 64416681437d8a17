//! Path normalisation: never panics; idempotent; the result is absolute, has no empty or
//! dot segments, and routes (strip_base) the same way twice.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = edgegate::routing::normalize(s) {
        assert_eq!(edgegate::routing::normalize(&n).as_deref(), Ok(n.as_str()), "not idempotent: {s:?}");
        assert!(n.starts_with('/') && !n.contains("//"), "{s:?} -> {n:?}");
        for seg in n.split('/') {
            assert!(seg != "." && seg != "..", "dot segment left: {s:?} -> {n:?}");
        }
        let _ = edgegate::routing::strip_base(&n, "/v1");
    }
    let _ = edgegate::routing::parse_route_key(s);
});
