//! A Lambda function's answer (untrusted bytes) mapped to HTTP: never panics; a mapped answer
//! has a final status (200–599), valid header values (no CRLF), no framing or hop-by-hop
//! field, a single-valued field at most once, and no body on a 204 or 304.
#![no_main]
use edgegate::integrations::lambda::{answer, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [Format::V1, Format::V2] {
        if let Ok(a) = answer(data, format) {
            assert!((200..=599).contains(&a.status.as_u16()));
            for (n, v) in &a.headers {
                assert!(!v.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n'));
                assert!(
                    ![
                        "transfer-encoding",
                        "content-length",
                        "connection",
                        "keep-alive",
                        "proxy-connection",
                        "upgrade",
                        "te",
                        "trailer"
                    ]
                    .contains(&n.as_str()),
                    "{n} reached the answer"
                );
            }
            for single in ["content-type", "location", "etag"] {
                assert!(a.headers.iter().filter(|(n, _)| n == single).count() <= 1, "{single} twice");
            }
            if matches!(a.status.as_u16(), 204 | 304) {
                assert!(a.body.is_empty());
            }
        }
    }
});
