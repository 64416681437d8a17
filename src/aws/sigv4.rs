//! AWS Signature Version 4: canonicalisation, signing keys, signatures and dates, shared by
//! the SigV4 authorizer (verifying callers) and outbound AWS calls and `edgegate sign`
//! (signing). Canonicalisation follows AWS: the path as sent with dot segments resolved and
//! then URI-encoded (so an encoded byte is encoded twice, as AWS SDKs sign for non-S3
//! services), the query decoded, re-encoded and sorted, the signed headers trimmed and folded.

use crate::clock::{civil_from_days, days_from_civil};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// HMAC-SHA256 (the `hmac` crate: no per-call provider lookups, unlike an OpenSSL MAC key).
pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let Ok(mut m) = hmac::Hmac::<Sha256>::new_from_slice(key) else { return Vec::new() };
    m.update(data);
    m.finalize().into_bytes().to_vec()
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
    let uri: http::Uri =
        url.parse().map_err(|e: http::uri::InvalidUri| SignError::Url(url.to_string(), e.to_string()))?;
    let host = uri.authority().ok_or(SignError::NoHost)?.as_str().to_string();
    let amz_date = format_amz_date(now);
    let payload = sha256_hex(body);
    let mut headers = http::HeaderMap::new();
    let mut add = |k: &str, v: &str| -> Result<(), SignError> {
        let name =
            http::HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| SignError::HeaderName(k.to_string()))?;
        headers.append(name, v.trim().parse().map_err(|_| SignError::HeaderValue(v.to_string()))?);
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
    let ch = canonical_headers(&signed, &headers, &host).ok_or(SignError::Headers)?;
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
