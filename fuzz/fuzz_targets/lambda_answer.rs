//! A Lambda function's answer (untrusted bytes) mapped to HTTP: never panics; a mapped answer
//! carries only valid header names and values (no CRLF), and a status in 100..=999.
#![no_main]
use edgegate::lambda_proxy::{answer, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [Format::V1, Format::V2] {
        if let Ok(a) = answer(data, format) {
            assert!((100..=999).contains(&a.status.as_u16()));
            for (_, v) in &a.headers {
                assert!(!v.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n'));
            }
        }
    }
});
