//! IAM-style authorization: AWS Signature Version 4 on each request (header or query-string
//! form), checked against `credentials.toml`, then the principal's IAM-like policies on the
//! method ARN `arn:edgegate:execute-api:{api}/{stage}/{METHOD}/{path}` (explicit Deny wins).
//! Canonicalisation follows AWS: the path as sent with dot segments resolved and then
//! URI-encoded (so an encoded byte is encoded twice, as AWS SDKs sign for non-S3 services),
//! the query decoded, re-encoded and sorted, the signed headers trimmed and folded.

use super::iam::Policy;
use super::Principal;
use crate::throttle::quota::{civil_from_days, days_from_civil};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let run = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let k = PKey::hmac(key)?;
        let mut s = Signer::new(MessageDigest::sha256(), &k)?;
        s.update(data)?;
        s.sign_to_vec()
    };
    run().unwrap_or_default()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
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

fn decode(s: &str) -> Vec<u8> {
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

pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
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

/// One credential of `credentials.toml`.
pub struct Credential {
    pub secret: String,
    pub principal: Arc<Principal>,
    /// The principal's policies, merged.
    pub policy: Policy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No signature at all: 403 MISSING_AUTHENTICATION_TOKEN.
    Missing,
    /// Malformed, unknown key, outside the clock skew, or not matching: 403 INVALID_SIGNATURE.
    Invalid(&'static str),
    /// Signed correctly, but no policy allows the method ARN: 403 ACCESS_DENIED.
    Denied,
}

impl Refused {
    pub fn response_type(self) -> crate::responses::ResponseType {
        use crate::responses::ResponseType as T;
        match self {
            Refused::Missing => T::MissingAuthenticationToken,
            Refused::Invalid("body_too_large") => T::RequestTooLarge,
            Refused::Invalid(_) => T::InvalidSignature,
            Refused::Denied => T::AccessDenied,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refused::Missing => "missing_signature",
            Refused::Invalid(r) => r,
            Refused::Denied => "denied",
        }
    }
}

pub struct SigV4Authorizer {
    pub service: String,
    pub region: String,
    pub clock_skew: u64,
    pub credentials: HashMap<String, Credential>,
}

/// What the request offers.
pub struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub host: &'a str,
    /// SHA-256 (hex) of the body, when the gateway read it.
    pub body_sha256: Option<String>,
    pub method_arn: &'a str,
    pub now: u64,
}

fn kv<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.split(',').map(str::trim).find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

impl SigV4Authorizer {
    pub fn authorize(&self, r: &Signed<'_>) -> Result<Arc<Principal>, Refused> {
        // the parts of a signature must each be one value: a second line or parameter would be
        // read by one side and not the other
        for h in ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] {
            if crate::request::repeated(r.headers, h) {
                return Err(Refused::Invalid("repeated_header"));
            }
        }
        for p in ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"] {
            if r.query.split('&').filter(|kv| kv.split('=').next() == Some(p)).nth(1).is_some() {
                return Err(Refused::Invalid("repeated_parameter"));
            }
        }
        let q = |name: &str| -> Option<String> {
            r.query.split('&').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k == name).then(|| String::from_utf8_lossy(&decode(v)).into_owned())
            })
        };
        let (credential, signed_headers, given, amz_date, query_form) =
            match r.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
                Some(auth) => {
                    let rest = auth.strip_prefix(ALGORITHM).ok_or(Refused::Invalid("algorithm"))?.trim();
                    let cred = kv(rest, "Credential").ok_or(Refused::Invalid("format"))?.to_string();
                    let sh = kv(rest, "SignedHeaders").ok_or(Refused::Invalid("format"))?.to_string();
                    let sig = kv(rest, "Signature").ok_or(Refused::Invalid("format"))?.to_string();
                    let date =
                        r.headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or(Refused::Invalid("no_date"))?;
                    (cred, sh, sig, date.to_string(), false)
                }
                None => match q("X-Amz-Algorithm") {
                    Some(a) if a == ALGORITHM => (
                        q("X-Amz-Credential").ok_or(Refused::Invalid("format"))?,
                        q("X-Amz-SignedHeaders").ok_or(Refused::Invalid("format"))?,
                        q("X-Amz-Signature").ok_or(Refused::Invalid("format"))?,
                        q("X-Amz-Date").ok_or(Refused::Invalid("no_date"))?,
                        true,
                    ),
                    Some(_) => return Err(Refused::Invalid("algorithm")),
                    None => return Err(Refused::Missing),
                },
            };
        // Credential = AKID/date/region/service/aws4_request
        let parts: Vec<&str> = credential.split('/').collect();
        let [akid, date, region, service, "aws4_request"] = parts[..] else {
            return Err(Refused::Invalid("credential"));
        };
        if region != self.region || service != self.service {
            return Err(Refused::Invalid("scope"));
        }
        let t = parse_amz_date(&amz_date).ok_or(Refused::Invalid("date"))?;
        if !amz_date.starts_with(date) {
            return Err(Refused::Invalid("date"));
        }
        if query_form {
            let expires: u64 = q("X-Amz-Expires").and_then(|e| e.parse().ok()).ok_or(Refused::Invalid("expires"))?;
            if expires > 604_800 || r.now > t + expires || t > r.now + self.clock_skew {
                return Err(Refused::Invalid("expired"));
            }
        } else if r.now.abs_diff(t) > self.clock_skew {
            return Err(Refused::Invalid("clock_skew"));
        }
        let signed: Vec<String> = signed_headers.split(';').map(str::to_ascii_lowercase).collect();
        if !signed.iter().any(|h| h == "host") || (!query_form && !signed.iter().any(|h| h == "x-amz-date")) {
            return Err(Refused::Invalid("signed_headers"));
        }
        let cred = self.credentials.get(akid).ok_or(Refused::Invalid("unknown_key"))?;
        let payload = match r.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()) {
            Some("UNSIGNED-PAYLOAD") => "UNSIGNED-PAYLOAD".to_string(),
            Some(h) => {
                if r.body_sha256.as_deref().is_some_and(|b| !b.eq_ignore_ascii_case(h)) {
                    return Err(Refused::Invalid("payload_hash"));
                }
                h.to_string()
            }
            None if query_form => "UNSIGNED-PAYLOAD".to_string(),
            None => r.body_sha256.clone().unwrap_or_else(|| EMPTY_SHA256.to_string()),
        };
        let headers = canonical_headers(&signed, r.headers, r.host).ok_or(Refused::Invalid("signed_headers"))?;
        let expected = signature(
            &cred.secret,
            &amz_date,
            region,
            service,
            r.method,
            &canonical_uri(r.path),
            &canonical_query(r.query, if query_form { Some("X-Amz-Signature") } else { None }),
            &headers,
            &signed.join(";"),
            &payload,
        );
        if expected.len() != given.len() || !openssl::memcmp::eq(expected.as_bytes(), given.as_bytes()) {
            return Err(Refused::Invalid("signature"));
        }
        if !cred.policy.allows(r.method_arn) {
            return Err(Refused::Denied);
        }
        Ok(cred.principal.clone())
    }
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
) -> Result<Vec<(String, String)>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let host = uri.authority().ok_or("the URL needs a host")?.as_str().to_string();
    let amz_date = format_amz_date(now);
    let payload = sha256_hex(body);
    let mut headers = http::HeaderMap::new();
    let mut add = |k: &str, v: &str| -> Result<(), String> {
        let name = http::HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        headers.append(name, v.trim().parse().map_err(|_| format!("bad header value {v:?}"))?);
        Ok(())
    };
    add("host", &host)?;
    add("x-amz-date", &amz_date)?;
    add("x-amz-content-sha256", &payload)?;
    for (k, v) in extra {
        add(k, v)?;
    }
    let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
    signed.sort();
    signed.dedup();
    let ch = canonical_headers(&signed, &headers, &host).ok_or("cannot sign headers")?;
    let sig = signature(
        secret,
        &amz_date,
        region,
        service,
        method,
        &canonical_uri(uri.path()),
        &canonical_query(uri.query().unwrap_or(""), None),
        &ch,
        &signed.join(";"),
        &payload,
    );
    let date = &amz_date[..8];
    Ok(vec![
        (
            "Authorization".into(),
            format!("{ALGORITHM} Credential={access_key}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={sig}", signed.join(";")),
        ),
        ("X-Amz-Date".into(), amz_date.clone()),
        ("X-Amz-Content-Sha256".into(), payload),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn vector(query: &str) -> String {
        let mut h = http::HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().expect("v"));
        h.insert("x-amz-date", "20150830T123600Z".parse().expect("v"));
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let ch = canonical_headers(&signed, &h, "").expect("headers");
        signature(
            SECRET,
            "20150830T123600Z",
            "us-east-1",
            "service",
            "GET",
            &canonical_uri("/"),
            &canonical_query(query, None),
            &ch,
            "host;x-amz-date",
            EMPTY_SHA256,
        )
    }

    #[test]
    fn aws_test_suite_vectors() {
        // get-vanilla and get-vanilla-query-order-key-case from AWS's SigV4 test suite
        assert_eq!(vector(""), "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        assert_eq!(
            vector("Param2=value2&Param1=value1"),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_uri("/a/./b/../c"), "/a/c");
        assert_eq!(canonical_uri("/example space/"), "/example%20space/");
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b", "encoded twice, as SDKs sign for non-S3 services");
        assert_eq!(canonical_query("b=2&a=1&a=0&c", None), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("k=a%20b&X-Amz-Signature=x", Some("X-Amz-Signature")), "k=a%20b");
    }

    #[test]
    fn amz_dates_round_trip() {
        let t = parse_amz_date("20150830T123600Z").expect("date");
        assert_eq!(t, 1_440_938_160);
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert!(parse_amz_date("2015-08-30").is_none());
    }
}
