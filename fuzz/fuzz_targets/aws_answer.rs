//! An AWS service's answer head (untrusted: status and fields) mapped to the client's: never
//! panics; only a final status (200–599) passes, with at most Content-Type and
//! x-amzn-RequestId.
#![no_main]
use edgegate::integrations::aws::answer_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 1000;
    let mut headers = http::HeaderMap::new();
    for line in data[2..].split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(n), Ok(v)) =
            (http::HeaderName::from_bytes(&line[..colon]), http::HeaderValue::from_bytes(&line[colon + 1..]))
        else {
            continue;
        };
        headers.append(n, v);
    }
    match answer_head(status, &headers) {
        Ok((s, fields)) => {
            assert!((200..=599).contains(&s) && s == status);
            assert!(fields.len() <= 2);
            for (n, _) in fields {
                assert!(n == http::header::CONTENT_TYPE || n == "x-amzn-requestid");
            }
        }
        Err(_) => assert!(!(200..=599).contains(&status)),
    }
});
