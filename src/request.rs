//! The canonical view of a request's header fields: ONE rule, used by every concern that
//! reads a header (authorizer identity and events, API keys, resource policies, cache keys,
//! templates, the access log and forwarding decisions), so no two of them can disagree on
//! what a request said.
//!
//! The rule (RFC 9110 §5.3 field combination): a field sent on several lines is read as
//! all of its lines, in the order received, joined with `", "` (`Cookie` lines with `"; "`,
//! RFC 6265 §5.4). Bytes that are not UTF-8 are replaced (U+FFFD). A concern never reads
//! "the first" or "the last" line; a repeated identity header therefore keys caches on all
//! of its values and reaches authorizers as the same joined value.

use http::header::{AsHeaderName, HeaderMap};
use std::borrow::Cow;
use std::collections::BTreeMap;

fn separator(name: &str) -> &'static str {
    if name.eq_ignore_ascii_case("cookie") {
        "; "
    } else {
        ", "
    }
}

fn text(v: &http::HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

/// The value of `name` under the one rule; `None` when the request does not carry it.
pub fn header<K: AsHeaderName + AsRef<str>>(h: &HeaderMap, name: K) -> Option<Cow<'_, str>> {
    let sep = separator(name.as_ref());
    let all = h.get_all(name);
    let mut it = all.iter();
    let first = it.next()?;
    let Some(second) = it.next() else { return Some(text(first)) };
    let mut s = String::with_capacity(first.len() + second.len() + 2);
    s.push_str(&text(first));
    for v in std::iter::once(second).chain(it) {
        s.push_str(sep);
        s.push_str(&text(v));
    }
    Some(Cow::Owned(s))
}

/// Whether `name` was sent on more than one line (for fields that must be single, such as
/// the parts of a SigV4 signature).
pub fn repeated<K: AsHeaderName>(h: &HeaderMap, name: K) -> bool {
    h.get_all(name).iter().nth(1).is_some()
}

/// Every field of the request under the one rule, by lower-case name (for templates,
/// authorizer events and, later, Lambda events).
pub fn header_map(h: &HeaderMap) -> BTreeMap<&str, String> {
    let mut m: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in h {
        let v = text(v);
        m.entry(k.as_str())
            .and_modify(|s| {
                s.push_str(separator(k.as_str()));
                s.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    m
}

// ---------------------------------------------------------------- query and media types

/// Decodes one query-string name or value (`+` is a space, then percent-decoding); borrows
/// when there is nothing to decode.
pub fn decode_component(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['%', '+']) {
        let plus = s.replace('+', " ");
        std::borrow::Cow::Owned(percent_encoding::percent_decode_str(&plus).decode_utf8_lossy().into_owned())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Parses a query string into decoded key/value pairs (last value wins).
pub fn query_map(q: Option<&str>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for pair in q.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| decode_component(s).into_owned();
        m.insert(dec(k), dec(v));
    }
    m
}

/// `application/json` or a `+json` type (as `media_type` returns it).
pub fn is_json(mt: &str) -> bool {
    mt == "application/json" || mt.ends_with("+json")
}

/// The media type of a Content-Type value, lower case, without parameters.
pub fn media_type(ct: Option<&str>) -> String {
    ct.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn repeated_fields_are_all_their_lines_in_order() {
        let h = map(&[("x-token", "a"), ("Other", "z"), ("X-Token", "b"), ("cookie", "s=1"), ("cookie", "t=2")]);
        assert_eq!(header(&h, "x-token").as_deref(), Some("a, b"));
        assert_eq!(header(&h, "other").as_deref(), Some("z"));
        assert_eq!(header(&h, "cookie").as_deref(), Some("s=1; t=2"));
        assert_eq!(header(&h, "missing"), None);
        assert!(repeated(&h, "x-token") && !repeated(&h, "other"));
        let m = header_map(&h);
        assert_eq!(m["x-token"], "a, b");
        assert_eq!(m["cookie"], "s=1; t=2");
    }

    #[test]
    fn the_map_and_the_single_read_agree() {
        let h = map(&[("a", "1"), ("a", "2"), ("a", "3"), ("b", "x")]);
        let m = header_map(&h);
        for name in ["a", "b"] {
            assert_eq!(header(&h, name).as_deref(), Some(m[name].as_str()));
        }
    }
}
