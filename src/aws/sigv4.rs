//! AWS Signature Version 4: canonicalisation, signing keys, signatures and dates, shared by
//! the SigV4 authorizer (verifying callers) and outbound AWS calls and `edgegate sign`
//! (signing). Canonicalisation follows AWS: the path as sent with dot segments resolved and
//! then URI-encoded (so an encoded byte is encoded twice, as AWS SDKs sign for non-S3
//! services), the query decoded, re-encoded and sorted, the signed headers trimmed and folded.

use crate::clock::{civil_from_days, days_from_civil};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// HMAC-SHA256 (the `hmac` crate: no per-call provider lookups, unlike an OpenSSL MAC key).
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // an HMAC takes a key of any length: this never fails
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    // encoded into a buffer at once: `hex::encode` collects its digits one `char` at a time
    let mut out = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(data), &mut out).expect("64 hex digits");
    String::from_utf8(out.to_vec()).expect("hex")
}

fn encode(s: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes a query component.
pub fn decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// RFC 3986 dot-segment removal on the path as sent.
fn remove_dots(path: &str) -> String {
    let mut out: Vec<&str> = vec![];
    let segs: Vec<&str> = path.split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        match *s {
            "." => {}
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
            }
            _ => out.push(s),
        }
        if i + 1 == segs.len() && (*s == "." || *s == "..") {
            out.push("");
        }
    }
    let j = out.join("/");
    if j.starts_with('/') {
        j
    } else {
        format!("/{j}")
    }
}

pub fn canonical_uri(path: &str) -> String {
    encode(remove_dots(path).as_bytes(), true)
}

/// Sorted, re-encoded query, leaving out `skip` (the signature itself in the query form).
pub fn canonical_query(query: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k), false), encode(&decode(v), false))
        })
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// `name:value\n` for each signed header (values trimmed, inner spaces folded, repeats joined).
pub fn canonical_headers(signed: &[String], headers: &http::HeaderMap, host: &str) -> Option<String> {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = if name == "host" && !headers.contains_key(http::header::HOST) {
            vec![host.to_string()]
        } else {
            headers
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        };
        if values.is_empty() {
            return None;
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Some(out)
}

pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// The signature over a canonical request.
#[allow(clippy::too_many_arguments)]
pub fn signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or("");
    let creq =
        format!("{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(creq.as_bytes()));
    hex::encode(hmac(&signing_key(secret, date, region, service), sts.as_bytes()))
}

/// Parses "20150830T123600Z" into unix seconds.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    if s.len() != 16 || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<u64>().ok();
    let (y, mo, d, h, mi, se) = (n(0, 4)?, n(4, 6)?, n(6, 8)?, n(9, 11)?, n(11, 13)?, n(13, 15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    Some(days as u64 * 86_400 + h * 3600 + mi * 60 + se)
}

pub fn format_amz_date(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    let secs = unix % 86_400;
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Why a request cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    #[error("bad header name {0:?}")]
    HeaderName(String),
    #[error("bad header value {0:?}")]
    HeaderValue(String),
    #[error("the URL needs a host")]
    NoHost,
    #[error("cannot sign headers")]
    Headers,
}

/// Signs a request (header form): the headers to add, `Authorization` first.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    method: &str,
    url: &str,
    extra: &[(String, String)],
    body: &[u8],
    now: u64,
) -> Result<Vec<(String, String)>, SignError> {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let keys = Keys { access_key, secret, session_token: None };
    Signer::new(region, service, url)?.sign(&keys, method, &extra, body, now)
}

/// The credentials a signature is made with.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub access_key: &'a str,
    pub secret: &'a str,
    /// Sent (and signed) as `x-amz-security-token` when present.
    pub session_token: Option<&'a str>,
}

/// A signer for one endpoint, made once when the config is compiled: the host, the canonical
/// path and query, the region and the service are fixed, so a request only hashes its body
/// and its headers. The derived signing key is kept per thread for its day, region, service
/// and secret (four HMACs a day instead of four per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    region: String,
    service: String,
    host: String,
    canonical_uri: String,
    canonical_query: String,
    /// Whether `X-Amz-Content-Sha256` is sent (and signed). The payload's hash is in every
    /// signature; the field itself is S3's. AWS SDKs send it to S3 alone, but some services'
    /// stand-ins (moto's SQS) check a signature against it, so only the Lambda Invoke call,
    /// where the SDKs' form is known to work, goes without it.
    payload_header: bool,
}

impl Signer {
    pub fn new(region: &str, service: &str, url: &str) -> Result<Signer, SignError> {
        let uri: http::Uri =
            url.parse().map_err(|e: http::uri::InvalidUri| SignError::Url(url.to_string(), e.to_string()))?;
        let host = uri.authority().ok_or(SignError::NoHost)?.as_str().to_string();
        Ok(Signer {
            region: region.to_string(),
            service: service.to_string(),
            host,
            canonical_uri: canonical_uri(uri.path()),
            canonical_query: canonical_query(uri.query().unwrap_or(""), None),
            payload_header: true,
        })
    }

    /// Leaves `X-Amz-Content-Sha256` out, as AWS SDKs do for every service but S3 (the
    /// payload's hash is still in the signature): about 110 bytes less to hash and to send.
    pub fn without_payload_header(mut self) -> Signer {
        self.payload_header = false;
        self
    }

    /// The headers to add to the request, `Authorization` first, then `X-Amz-Date`,
    /// `X-Amz-Content-Sha256` (unless [`Signer::without_payload_header`]) and, with a session
    /// token, `x-amz-security-token`. `extra` are
    /// the request's other headers to sign (names in any case; repeats are joined).
    pub fn sign(
        &self,
        keys: &Keys<'_>,
        method: &str,
        extra: &[(&str, &str)],
        body: &[u8],
        now: u64,
    ) -> Result<Vec<(String, String)>, SignError> {
        let amz_date = cached_amz_date(now);
        let payload = sha256_hex(body);
        let mut headers: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::with_capacity(extra.len() + 4);
        headers.push((Cow::Borrowed("host"), Cow::Borrowed(&self.host)));
        headers.push((Cow::Borrowed("x-amz-date"), Cow::Borrowed(&amz_date)));
        if self.payload_header {
            headers.push((Cow::Borrowed("x-amz-content-sha256"), Cow::Borrowed(&payload)));
        }
        if let Some(t) = keys.session_token {
            headers.push((Cow::Borrowed("x-amz-security-token"), folded(t)?));
        }
        for (k, v) in extra {
            let name = k.trim();
            let name = if !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
            {
                Cow::Borrowed(name)
            } else {
                let n =
                    http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| SignError::HeaderName(k.to_string()))?;
                Cow::Owned(n.as_str().to_string())
            };
            headers.push((name, folded(v)?));
        }
        // sorted by name, a repeated name's values in the order given
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        // the canonical request is hashed as it is written, and the string to sign goes
        // straight into the keyed HMAC: neither is built as a string
        let mut creq = Sha256::new();
        for part in [method, "\n", &self.canonical_uri, "\n", &self.canonical_query, "\n"] {
            creq.update(part.as_bytes());
        }
        let mut signed = String::with_capacity(24 * headers.len());
        for (i, (name, value)) in headers.iter().enumerate() {
            if i > 0 && headers[i - 1].0 == *name {
                creq.update(b","); // a repeated name's value joins the previous line
            } else {
                if i > 0 {
                    creq.update(b"\n");
                    signed.push(';');
                }
                signed.push_str(name);
                creq.update(name.as_bytes());
                creq.update(b":");
            }
            creq.update(value.as_bytes());
        }
        for part in ["\n\n", &signed, "\n", &payload] {
            creq.update(part.as_bytes());
        }
        let mut hash = [0u8; 64];
        hex::encode_to_slice(creq.finalize(), &mut hash).expect("64 hex digits");
        let date = &amz_date[..8];
        let mut sig = [0u8; 64];
        let mac = {
            use hmac::Mac;
            let mut m = cached_signing_mac(keys.secret, date, &self.region, &self.service);
            for part in
                [ALGORITHM, "\n", &amz_date, "\n", date, "/", &self.region, "/", &self.service, "/aws4_request\n"]
            {
                m.update(part.as_bytes());
            }
            m.update(&hash);
            m.finalize().into_bytes()
        };
        hex::encode_to_slice(mac, &mut sig).expect("64 hex digits");
        let sig = std::str::from_utf8(&sig).expect("hex");
        // `{ALGORITHM} Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}`
        let mut authorization = String::with_capacity(160 + keys.access_key.len() + signed.len());
        for part in [
            ALGORITHM,
            " Credential=",
            keys.access_key,
            "/",
            date,
            "/",
            &self.region,
            "/",
            &self.service,
            "/aws4_request, SignedHeaders=",
            &signed,
            ", Signature=",
            sig,
        ] {
            authorization.push_str(part);
        }
        let mut out = Vec::with_capacity(4);
        out.push(("Authorization".to_string(), authorization));
        out.push(("X-Amz-Date".to_string(), amz_date));
        if self.payload_header {
            out.push(("X-Amz-Content-Sha256".to_string(), payload));
        }
        if let Some(t) = keys.session_token {
            out.push(("x-amz-security-token".to_string(), t.to_string()));
        }
        Ok(out)
    }
}

/// [`format_amz_date`] of `now`, formatted once a second per thread.
fn cached_amz_date(now: u64) -> String {
    thread_local! {
        static LAST: crate::clock::SecondSlot = const { crate::clock::second_slot() };
    }
    crate::clock::once_a_second(&LAST, now, format_amz_date)
}

/// A header value as signed: trimmed, inner runs of whitespace folded to one space; control
/// characters refused.
fn folded(v: &str) -> Result<Cow<'_, str>, SignError> {
    if crate::scan::any_control(v.as_bytes()) {
        return Err(SignError::HeaderValue(v.to_string()));
    }
    let t = v.trim();
    let b = t.as_bytes();
    if b.iter().enumerate().all(|(i, &c)| c != b'\t' && !(c == b' ' && b.get(i + 1) == Some(&b' '))) {
        return Ok(Cow::Borrowed(t));
    }
    Ok(Cow::Owned(t.split_whitespace().collect::<Vec<_>>().join(" ")))
}

/// An HMAC keyed with the signing key of (secret, date, region, service), derived once per
/// thread and day; it is kept keyed (its inner and outer pads already hashed), so a signature
/// costs the string to sign's blocks alone.
fn cached_signing_mac(secret: &str, date: &str, region: &str, service: &str) -> hmac::Hmac<Sha256> {
    use hmac::Mac;
    struct Derived {
        secret: String,
        date: String,
        region: String,
        service: String,
        key: hmac::Hmac<Sha256>,
    }
    thread_local! {
        static KEYS: std::cell::RefCell<Vec<Derived>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(d) =
            keys.iter().find(|d| d.date == date && d.region == region && d.service == service && d.secret == secret)
        {
            return d.key.clone();
        }
        let key = hmac::Hmac::<Sha256>::new_from_slice(&signing_key(secret, date, region, service))
            .expect("HMAC takes any key length");
        keys.retain(|d| d.date == date); // yesterday's keys go
        if keys.len() >= 8 {
            keys.remove(0);
        }
        keys.push(Derived {
            secret: secret.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            key: key.clone(),
        });
        key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `X-Amz-Date` is UTC in `YYYYMMDDTHHMMSSZ`, and reads back to the same second.
    #[test]
    fn amz_dates_are_sixteen_characters_of_utc() {
        assert_eq!(format_amz_date(0), "19700101T000000Z");
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(format_amz_date(951_868_799), "20000229T235959Z");
        assert_eq!(format_amz_date(253_402_300_799), "99991231T235959Z");
        assert_eq!(format_amz_date(253_402_300_800), "100000101T000000Z");
        for t in [0, 86_399, 1_440_938_160, 4_102_444_800] {
            assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
        }
    }

    /// The one-shot path (canonical headers from a header map, a fresh signing key) and the
    /// compiled signer agree, with repeated and mixed-case headers and folded spaces, with
    /// and without `X-Amz-Content-Sha256`.
    #[test]
    fn signer_matches_the_canonical_form() {
        let url = "https://sqs.us-east-1.amazonaws.com/a/./b/../c%20d?b=2&a=1";
        let now = 1_440_938_160;
        let extra = [("X-Amz-Target", " DynamoDB_20120810.PutItem "), ("x-tag", "a  b"), ("X-Tag", "c")];
        let keys = Keys { access_key: "AKID", secret: "SECRET", session_token: Some("TOKEN") };
        let plain = Signer::new("us-east-1", "sqs", url).expect("test value");
        for signer in [plain.clone(), plain.clone().without_payload_header()] {
            let hash = sha256_hex(b"{}");
            let hashed = signer.payload_header.then_some(("x-amz-content-sha256", hash.as_str()));
            for _ in 0..2 {
                // the second round uses the cached signing key
                let got = signer.sign(&keys, "POST", &extra, b"{}", now).expect("test value");
                let mut h = http::HeaderMap::new();
                for (k, v) in [("host", "sqs.us-east-1.amazonaws.com"), ("x-amz-date", "20150830T123600Z")]
                    .into_iter()
                    .chain(hashed)
                    .chain([("x-amz-security-token", "TOKEN")])
                    .chain(extra)
                {
                    h.append(
                        http::HeaderName::from_bytes(k.as_bytes()).expect("test value"),
                        v.trim().parse().expect("test value"),
                    );
                }
                let mut names: Vec<String> = h.keys().map(|k| k.to_string()).collect();
                names.sort();
                let ch = canonical_headers(&names, &h, "").expect("test value");
                assert!(ch.contains("x-tag:a b,c\n"), "{ch}");
                let sig = signature(
                    "SECRET",
                    "20150830T123600Z",
                    "us-east-1",
                    "sqs",
                    "POST",
                    &canonical_uri("/a/./b/../c%20d"),
                    &canonical_query("b=2&a=1", None),
                    &ch,
                    &names.join(";"),
                    &hash,
                );
                assert_eq!(
                    got[0].1,
                    format!(
                        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/sqs/aws4_request, SignedHeaders={}, Signature={sig}",
                        names.join(";")
                    )
                );
                assert_eq!(got[1], ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()));
                let sent: Vec<(&str, &str)> = got[2..].iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let want: Vec<(&str, &str)> = hashed
                    .map(|(_, v)| ("X-Amz-Content-Sha256", v))
                    .into_iter()
                    .chain([("x-amz-security-token", "TOKEN")])
                    .collect();
                assert_eq!(sent, want);
            }
        }
        let signer = plain;
        // another secret the same day gets its own key
        let other = Keys { secret: "OTHER", ..keys };
        assert_ne!(
            signer.sign(&other, "POST", &extra, b"{}", now).expect("test value")[0],
            signer.sign(&keys, "POST", &extra, b"{}", now).expect("test value")[0]
        );
    }
}
