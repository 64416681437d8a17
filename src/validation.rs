//! Request validation (`[apis.routes.validate]`): required query parameters and headers, the
//! body's media type, and JSON bodies against a JSON Schema compiled once per snapshot.
//! Messages name what failed (a parameter, a JSON pointer and the rule) and never echo the
//! body's values.

use crate::request::{is_json, media_type};
use http::HeaderName;

/// How many schema errors one answer lists.
const MAX_ERRORS: usize = 5;

pub struct Validator {
    pub query: Vec<String>,
    pub headers: Vec<HeaderName>,
    pub body: Option<jsonschema::Validator>,
    pub body_required: bool,
    /// Accepted media types for a validated body (lower case; `*/*+json` style suffixes allowed).
    pub content_types: Vec<String>,
}

/// What failed, with the message for the gateway response.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    /// 400 BAD_REQUEST_PARAMETERS.
    Parameters(String),
    /// 400 BAD_REQUEST_BODY.
    Body(String),
    /// 415, as a BAD_REQUEST_BODY gateway response.
    MediaType(String),
}

/// Compiles a schema; the draft follows its `$schema` (2020-12 when absent; draft 4 for
/// OpenAPI 3.0 and Swagger 2.0 documents, which the importer marks).
pub fn compile_schema(schema: &serde_json::Value) -> Result<jsonschema::Validator, BadSchema> {
    jsonschema::validator_for(schema).map_err(|e| BadSchema(e.masked().to_string()))
}

/// A JSON schema that does not compile (the validator's message, without instance values).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadSchema(pub String);

impl From<Invalid> for crate::responses::Refusal {
    fn from(i: Invalid) -> crate::responses::Refusal {
        match i {
            Invalid::Parameters(m) => {
                crate::responses::Refusal::new(crate::responses::ResponseType::BadRequestParameters).with_message(m)
            }
            Invalid::Body(m) => {
                crate::responses::Refusal::new(crate::responses::ResponseType::BadRequestBody).with_message(m)
            }
            Invalid::MediaType(m) => crate::responses::Refusal::new(crate::responses::ResponseType::BadRequestBody)
                .with_message(m)
                .with_status(415),
        }
    }
}

impl Validator {
    /// Required query parameters and headers, all missing ones named (AWS's message).
    pub fn check_params(&self, req: &http::request::Parts) -> Result<(), Invalid> {
        let mut missing: Vec<&str> = vec![];
        if !self.query.is_empty() {
            let q = crate::request::query_map(req.uri.query());
            missing.extend(self.query.iter().filter(|n| !q.contains_key(n.as_str())).map(String::as_str));
        }
        missing.extend(self.headers.iter().filter(|h| !req.headers.contains_key(*h)).map(HeaderName::as_str));
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Invalid::Parameters(format!("Missing required request parameters: [{}]", missing.join(", "))))
        }
    }

    /// The body's media type, checked from the header before the body is read.
    pub fn check_media_type(&self, content_type: Option<&str>) -> Result<(), Invalid> {
        if self.body.is_none() && self.content_types.is_empty() {
            return Ok(());
        }
        let mt = media_type(content_type);
        let ok = if self.content_types.is_empty() {
            is_json(&mt)
        } else {
            self.content_types.iter().any(|c| *c == mt || (c.ends_with("/*") && mt.starts_with(&c[..c.len() - 1])))
        };
        if ok {
            Ok(())
        } else {
            let want = if self.content_types.is_empty() {
                "application/json".to_string()
            } else {
                self.content_types.join(", ")
            };
            Err(Invalid::MediaType(format!("Unsupported Media Type: expected {want}")))
        }
    }

    /// Parses and validates a JSON body (other accepted media types are not parsed);
    /// returns the parsed value for templates.
    pub fn check_body(&self, content_type: Option<&str>, body: &[u8]) -> Result<Option<serde_json::Value>, Invalid> {
        let Some(schema) = &self.body else { return Ok(None) };
        if body.iter().all(u8::is_ascii_whitespace) {
            if self.body_required {
                return Err(Invalid::Body("Invalid request body: the body is empty".into()));
            }
            return Ok(None);
        }
        let mt = media_type(content_type);
        if !(mt.is_empty() || is_json(&mt)) {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            Invalid::Body(format!("Invalid request body: not JSON (line {} column {})", e.line(), e.column()))
        })?;
        let errors: Vec<String> = schema
            .iter_errors(&value)
            .take(MAX_ERRORS)
            // where in the body (its instance location) and which rule failed: never the
            // request's values, nor property names the schema does not declare (a client
            // could put markup or secrets there)
            .map(|e| located(e.instance_path.as_str(), e.schema_path.as_str()))
            .collect();
        if errors.is_empty() {
            Ok(Some(value))
        } else {
            Err(Invalid::Body(format!("Invalid request body: {}", errors.join("; "))))
        }
    }
}

/// `/meta/tagcount violates type`: the failing value's JSON pointer in the body, with every
/// segment that is neither an array index nor a property the failing schema path declares
/// shown as `*`, and the rule (the schema keyword) that failed.
fn located(instance: &str, schema: &str) -> String {
    let declared: Vec<&str> = schema.split('/').collect();
    let is_declared = |seg: &str| declared.windows(2).any(|w| w[0] == "properties" && w[1] == seg);
    let mut at = String::new();
    for seg in instance.split('/').skip(1) {
        at.push('/');
        if seg.bytes().all(|b| b.is_ascii_digit()) && !seg.is_empty() || is_declared(seg) {
            at.push_str(seg);
        } else {
            at.push('*');
        }
    }
    if at.is_empty() {
        at.push('/');
    }
    let rule = schema.rsplit('/').next().filter(|r| !r.is_empty()).unwrap_or("schema");
    format!("{at} violates {rule}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pet() -> Validator {
        let schema = json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        });
        Validator {
            query: vec!["lang".into()],
            headers: vec![HeaderName::from_static("x-client")],
            body: Some(compile_schema(&schema).expect("schema")),
            body_required: true,
            content_types: vec![],
        }
    }

    #[test]
    fn parameters_are_named() {
        let v = pet();
        let mut r = pingora::http::RequestHeader::build("POST", b"/p?x=1", None).expect("req");
        assert_eq!(
            v.check_params(&r),
            Err(Invalid::Parameters("Missing required request parameters: [lang, x-client]".into()))
        );
        r.set_uri("/p?lang=en".parse().expect("uri"));
        r.insert_header("x-client", "a").expect("h");
        assert_eq!(v.check_params(&r), Ok(()));
    }

    #[test]
    fn bodies_are_checked_without_echoing_values() {
        let v = pet();
        assert!(v.check_body(None, br#"{"name": "rex", "age": 3}"#).is_ok());
        let Err(Invalid::Body(m)) = v.check_body(None, br#"{"name": 42, "age": -1, "secret": "hunter2"}"#) else {
            panic!("invalid")
        };
        assert!(m.contains("/name") && m.contains("/age"), "{m}");
        assert!(!m.contains("42") && !m.contains("hunter2"), "{m}");
        assert!(matches!(v.check_body(None, b"{nope"), Err(Invalid::Body(m)) if m.contains("not JSON")));
        assert!(matches!(v.check_body(None, b""), Err(Invalid::Body(_))));
        assert!(matches!(v.check_body(None, b"[]"), Err(Invalid::Body(m)) if m.contains("/ violates type")));
        // the location in the body and the rule, not the schema path
        let nested = Validator {
            body: Some(
                compile_schema(&json!({"type": "object", "properties": {"meta": {"type": "object",
                    "properties": {"tagcount": {"type": "integer"}}, "additionalProperties": {"type": "string"}}}}))
                .expect("schema"),
            ),
            ..pet()
        };
        let Err(Invalid::Body(m)) = nested.check_body(None, br#"{"meta": {"tagcount": "x"}}"#) else { panic!() };
        assert!(m.ends_with("/meta/tagcount violates type"), "{m}");
        let Err(Invalid::Body(m)) = nested.check_body(None, br#"{"meta": {"<b>hi</b>": 1}}"#) else { panic!() };
        assert!(m.ends_with("/meta/* violates type") && !m.contains("<b>"), "{m}");
        // a property name the client chose is never echoed
        let strict = Validator {
            body: Some(compile_schema(&json!({"type": "object", "additionalProperties": false})).expect("schema")),
            ..pet()
        };
        let Err(Invalid::Body(m)) = strict.check_body(None, br#"{"<script>x</script>": 1}"#) else { panic!("invalid") };
        assert!(!m.contains("script"), "{m}");
    }

    #[test]
    fn media_types() {
        let v = pet();
        assert!(v.check_media_type(Some("application/json; charset=utf-8")).is_ok());
        assert!(v.check_media_type(Some("application/merge-patch+json")).is_ok());
        assert!(matches!(v.check_media_type(Some("text/plain")), Err(Invalid::MediaType(_))));
        assert!(matches!(v.check_media_type(None), Err(Invalid::MediaType(_))));
    }

    #[test]
    fn draft4_and_2020_12() {
        // draft 4: exclusiveMaximum is a boolean; 2020-12: a number
        let d4 = json!({"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": true});
        let v = compile_schema(&d4).expect("draft 4");
        assert!(v.is_valid(&json!(4)) && !v.is_valid(&json!(5)));
        let d2020 = json!({"exclusiveMaximum": 5, "prefixItems": [{"type": "string"}]});
        let v = compile_schema(&d2020).expect("2020-12");
        assert!(!v.is_valid(&json!(5)) && !v.is_valid(&json!([1])) && v.is_valid(&json!(["a"])));
        assert!(compile_schema(&json!({"type": 7})).is_err());
    }
}
