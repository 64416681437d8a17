//! CORS (`[apis] cors`): the gateway answers preflight requests itself (before any
//! authorizer, as browsers send them without credentials) and adds the allow headers to
//! answers for allowed origins.

use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};

pub struct Cors {
    /// Allowed origins; `*` allows any.
    pub origins: Vec<String>,
    pub any_origin: bool,
    pub methods: HeaderValue,
    pub headers: Option<HeaderValue>,
    pub expose: Option<HeaderValue>,
    pub max_age: Option<HeaderValue>,
    pub credentials: bool,
}

impl Cors {
    fn allowed<'a>(&self, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
        let o = origin?;
        (self.any_origin || self.origins.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(o.as_bytes()))).then_some(o)
    }

    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn is_preflight(req: &RequestHeader) -> bool {
        req.method == http::Method::OPTIONS
            && req.headers.contains_key(http::header::ORIGIN)
            && req.headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The preflight answer: 204, with the allow headers only when the origin is allowed
    /// (a browser then refuses the real request).
    pub fn preflight(&self, req: &RequestHeader) -> pingora::Result<ResponseHeader> {
        let mut h = ResponseHeader::build(204, Some(8))?;
        h.insert_header(http::header::VARY, "Origin")?;
        if let Some(o) = self.allowed(req.headers.get(http::header::ORIGIN)) {
            self.origin_headers(&mut h, o)?;
            h.insert_header(http::header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone())?;
            match &self.headers {
                Some(a) => h.insert_header(http::header::ACCESS_CONTROL_ALLOW_HEADERS, a.clone())?,
                None => {
                    if let Some(asked) = req.headers.get(http::header::ACCESS_CONTROL_REQUEST_HEADERS) {
                        h.insert_header(http::header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone())?;
                    }
                }
            }
            if let Some(m) = &self.max_age {
                h.insert_header(http::header::ACCESS_CONTROL_MAX_AGE, m.clone())?;
            }
        }
        Ok(h)
    }

    fn origin_headers(&self, h: &mut ResponseHeader, origin: &HeaderValue) -> pingora::Result<()> {
        // with credentials the origin must be echoed, never `*`
        let value = if self.any_origin && !self.credentials { HeaderValue::from_static("*") } else { origin.clone() };
        h.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, value)?;
        if self.credentials {
            h.insert_header(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true")?;
        }
        Ok(())
    }

    /// Adds the allow headers to an actual answer (integration, cached or gateway-made).
    pub fn apply(&self, origin: Option<&HeaderValue>, h: &mut ResponseHeader) -> pingora::Result<()> {
        h.append_header(http::header::VARY, "Origin")?;
        if let Some(o) = self.allowed(origin) {
            self.origin_headers(h, o)?;
            if let Some(e) = &self.expose {
                h.insert_header(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors {
            origins: origins.iter().map(|s| s.to_string()).collect(),
            any_origin: origins.contains(&"*"),
            methods: HeaderValue::from_static("GET, POST"),
            headers: Some(HeaderValue::from_static("authorization, content-type")),
            expose: None,
            max_age: Some(HeaderValue::from_static("600")),
            credentials,
        }
    }

    fn preflight(origin: &str) -> RequestHeader {
        let mut r = RequestHeader::build("OPTIONS", b"/x", None).expect("req");
        r.insert_header("origin", origin).expect("h");
        r.insert_header("access-control-request-method", "POST").expect("h");
        r
    }

    #[test]
    fn preflight_allows_listed_origins_only() {
        let c = cors(&["https://app.example.com"], false);
        let r = preflight("https://app.example.com");
        assert!(Cors::is_preflight(&r));
        let h = c.preflight(&r).expect("answer");
        assert_eq!(h.status, 204);
        assert_eq!(h.headers.get("access-control-allow-origin").expect("acao"), "https://app.example.com");
        assert_eq!(h.headers.get("access-control-max-age").expect("max age"), "600");
        let h = c.preflight(&preflight("https://evil.example")).expect("answer");
        assert!(h.headers.get("access-control-allow-origin").is_none());
    }

    #[test]
    fn wildcard_and_credentials() {
        let mut h = ResponseHeader::build(200, None).expect("h");
        let o = HeaderValue::from_static("https://a.example");
        cors(&["*"], false).apply(Some(&o), &mut h).expect("apply");
        assert_eq!(h.headers.get("access-control-allow-origin").expect("acao"), "*");
        let mut h = ResponseHeader::build(200, None).expect("h");
        cors(&["*"], true).apply(Some(&o), &mut h).expect("apply");
        assert_eq!(h.headers.get("access-control-allow-origin").expect("acao"), "https://a.example");
        assert_eq!(h.headers.get("access-control-allow-credentials").expect("acac"), "true");
    }
}
