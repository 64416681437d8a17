//! X-Forwarded-For: never panics; the client is never a trusted proxy unless every entry is
//! trusted; an untrusted peer's header is never believed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use edgegate::forwarded::{forwarded, is_trusted};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    let f = forwarded("127.0.0.1".parse().unwrap(), Some(s), &trusted);
    if let Some(ip) = f.client_ip {
        // without a chain the trusted peer itself is the client
        if is_trusted(&ip, &trusted) && !s.trim().is_empty() {
            // only when the whole chain was trusted
            assert!(s.split(',').all(|e| edgegate::forwarded::parse_entry(e).is_some_and(|i| is_trusted(&i, &trusted))), "{s:?}");
        }
    }
    let g = forwarded("203.0.113.9".parse().unwrap(), Some(s), &trusted);
    assert_eq!(g.client_ip, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(g.xff, "203.0.113.9");
});
