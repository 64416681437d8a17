//! IAM-style authorization: AWS Signature Version 4 on each request (header or query-string
//! form), checked against `credentials.toml`, then the principal's IAM-like policies on the
//! method ARN `arn:edgegate:execute-api:{api}/{stage}/{METHOD}/{path}` (explicit Deny wins).
//! Canonicalisation and signatures: `aws::sigv4`, shared with signing.

use super::iam::Policy;
use super::Principal;
use crate::aws::sigv4::*;
use std::collections::HashMap;
use std::sync::Arc;

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
    /// The IAM action the policy must allow (`execute-api:Invoke`, `execute-api:ManageConnections`).
    pub action: &'a str,
    pub now: u64,
}

impl<'a> Signed<'a> {
    /// What a request view offers: its method, path, query and header fields as received,
    /// the body's digest, and the ARN and action the policy must allow.
    pub fn of(
        view: &crate::request::RequestView<'a>,
        body_sha256: Option<String>,
        method_arn: &'a str,
        action: &'a str,
        now: u64,
    ) -> Signed<'a> {
        Signed {
            method: view.method(),
            path: view.raw_path(),
            query: view.query().unwrap_or(""),
            headers: view.headers(),
            host: view.head.uri.authority().map(|a| a.as_str()).unwrap_or(""),
            body_sha256,
            method_arn,
            action,
            now,
        }
    }
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
        if !cred.policy.allows_action(r.action, r.method_arn) {
            return Err(Refused::Denied);
        }
        Ok(cred.principal.clone())
    }
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
