//! SigV4 canonicalisation: never panics on any path, query or header; canonical forms are
//! stable (canonicalising the canonical query again gives the same text).
#![no_main]
use libfuzzer_sys::fuzz_target;
use edgegate::aws::sigv4::{canonical_headers, canonical_query, canonical_uri};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (path, rest) = s.split_once('?').unwrap_or((s, ""));
    let _ = canonical_uri(path);
    let q = canonical_query(rest, Some("X-Amz-Signature"));
    assert_eq!(canonical_query(&q, Some("X-Amz-Signature")), q, "{rest:?}");
    let mut h = http::HeaderMap::new();
    for line in rest.split('\n') {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v)) {
                h.append(k, v);
            }
        }
    }
    let names: Vec<String> = h.keys().map(|k| k.as_str().to_string()).collect();
    let _ = canonical_headers(&names, &h, "localhost");
});
