//! Non-proxy (REST "custom") integrations, as API Gateway runs them: the request body is a
//! VTL mapping template chosen by the request's media type (`request_templates`, with
//! `passthrough_behavior` for the media types no template names), and the integration's
//! answer goes through the first integration response whose `selection_pattern` matches
//! (the whole status, or a Lambda function's `errorMessage`): its status, its header
//! `parameters` and its response template.

use super::{IntegrationError, Made};
use crate::request::RequestView;
use crate::vtl;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// What to do with a request whose media type no template names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passthrough {
    /// The body goes to the integration as it came.
    WhenNoMatch,
    /// As it came when the integration has no templates at all; 415 otherwise.
    WhenNoTemplates,
    /// 415 UNSUPPORTED_MEDIA_TYPE.
    Never,
}

impl Passthrough {
    pub fn parse(s: &str) -> Option<Passthrough> {
        match s {
            "when_no_match" | "WHEN_NO_MATCH" => Some(Passthrough::WhenNoMatch),
            "when_no_templates" | "WHEN_NO_TEMPLATES" => Some(Passthrough::WhenNoTemplates),
            "never" | "NEVER" => Some(Passthrough::Never),
            _ => None,
        }
    }
}

/// Where an integration response's header value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `'literal'`
    Literal(HeaderValue),
    /// `integration.response.header.NAME`
    Header(HeaderName),
}

/// One integration response.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `None`: the default response (`selection_pattern = ""`).
    pub pattern: Option<regex::Regex>,
    pub status: u16,
    pub parameters: Vec<(HeaderName, Source)>,
    /// By media type, lowercase.
    pub templates: Vec<(String, vtl::Template)>,
    /// `content_handling` of the integration's answer.
    pub content_handling: Option<ContentHandling>,
}

/// A compiled non-proxy mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// By media type, lowercase.
    pub request_templates: Vec<(String, vtl::Template)>,
    pub passthrough: Passthrough,
    pub responses: Vec<Rule>,
    /// `request_parameters`: integration request headers, query string and path values.
    pub request_parameters: Vec<Param>,
    /// `content_handling` of the request payload.
    pub content_handling: Option<ContentHandling>,
    /// Names the integration in errors and logs.
    pub name: String,
}

/// Where a request parameter goes on the integration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamTarget {
    Header(HeaderName),
    Query(String),
    Path(String),
}

/// Where a request parameter comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamSource {
    Header(String),
    Query(String),
    Path(String),
    /// `context.a.b`: a `$context` value.
    Context(Vec<String>),
    Stage(String),
    Literal(String),
}

/// One `request_parameters` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub target: ParamTarget,
    pub source: ParamSource,
}

/// The request parameters' values for one request.
#[derive(Debug, Default)]
pub struct Resolved {
    pub headers: Vec<(HeaderName, String)>,
    pub query: Vec<(String, String)>,
    pub path: Vec<(String, String)>,
}

impl Resolved {
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty() && self.path.is_empty()
    }

    /// A path and query (`target`) with the path values put into its `{name}`s and the
    /// query values appended, each percent-encoded.
    pub fn apply(&self, target: &str) -> String {
        const SEG: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
        let mut t = target.to_string();
        for (k, v) in &self.path {
            t = t.replace(&format!("{{{k}}}"), &percent_encoding::utf8_percent_encode(v, SEG).to_string());
        }
        for (k, v) in &self.query {
            t.push(if t.contains('?') { '&' } else { '?' });
            t.push_str(&percent_encoding::utf8_percent_encode(k, SEG).to_string());
            t.push('=');
            t.push_str(&percent_encoding::utf8_percent_encode(v, SEG).to_string());
        }
        t
    }
}

/// Compiles `request_parameters` (`integration.request.{header,querystring,path}.NAME` =
/// `method.request.{header,querystring,path}.NAME`, `context.VAR`, `stageVariables.NAME` or
/// `'literal'`).
fn compile_parameters(map: &std::collections::BTreeMap<String, String>) -> Result<Vec<Param>, CompileError> {
    let err = |m: String| CompileError { at: vec!["request_parameters".into()], message: m };
    let mut out = Vec::new();
    for (to, from) in map {
        let target = if let Some(h) = to.strip_prefix("integration.request.header.") {
            ParamTarget::Header(
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| err(format!("{h:?} is not a header name")))?,
            )
        } else if let Some(q) = to.strip_prefix("integration.request.querystring.") {
            ParamTarget::Query(q.to_string())
        } else if let Some(p) = to.strip_prefix("integration.request.path.") {
            ParamTarget::Path(p.to_string())
        } else {
            return Err(err(format!(
                "{to:?}: a target is integration.request.header.NAME, .querystring.NAME or .path.NAME"
            )));
        };
        let source = if let Some(l) = from.strip_prefix('\'').and_then(|f| f.strip_suffix('\'')) {
            ParamSource::Literal(l.to_string())
        } else if let Some(h) = from.strip_prefix("method.request.header.") {
            ParamSource::Header(h.to_string())
        } else if let Some(q) = from.strip_prefix("method.request.querystring.") {
            ParamSource::Query(q.to_string())
        } else if let Some(p) = from.strip_prefix("method.request.path.") {
            ParamSource::Path(p.to_string())
        } else if let Some(c) = from.strip_prefix("context.") {
            ParamSource::Context(c.split('.').map(str::to_string).collect())
        } else if let Some(v) = from.strip_prefix("stageVariables.") {
            ParamSource::Stage(v.to_string())
        } else {
            return Err(err(format!(
                "{from:?}: a value is method.request.header|querystring|path.NAME, context.VAR, stageVariables.NAME or 'literal'"
            )));
        };
        if matches!(&source, ParamSource::Literal(l) if matches!(target, ParamTarget::Header(_)) && http::HeaderValue::from_str(l).is_err())
        {
            return Err(err(format!("{from:?} is not a header value")));
        }
        out.push(Param { target, source });
    }
    Ok(out)
}

/// The request side's outcome.
pub enum Request {
    /// The rendered template.
    Rendered(Bytes),
    /// No template applies: the body as it came (after `content_handling`).
    Passthrough(Bytes),
}

/// `content_handling`: API Gateway's conversion of a payload between binary and base64 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentHandling {
    /// A binary payload becomes its base64 text.
    ConvertToText,
    /// A base64 text payload becomes the bytes it encodes.
    ConvertToBinary,
}

impl ContentHandling {
    pub fn parse(s: &str) -> Option<ContentHandling> {
        match s.to_ascii_lowercase().as_str() {
            "convert_to_text" => Some(ContentHandling::ConvertToText),
            "convert_to_binary" => Some(ContentHandling::ConvertToBinary),
            _ => None,
        }
    }

    /// Converts `body` (`binary`: the payload is one of the API's binary media types, or not
    /// UTF-8); `Err` when base64 text is expected and the payload is not.
    pub fn apply(self, body: Bytes, binary: bool) -> Result<Bytes, String> {
        use base64::Engine;
        match self {
            ContentHandling::ConvertToText => match encode_body(&body, binary) {
                (text, true) => Ok(Bytes::from(text.into_owned())),
                (_, false) => Ok(body),
            },
            ContentHandling::ConvertToBinary => {
                let text: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map(Bytes::from)
                    .map_err(|e| format!("the payload is not base64: {e}"))
            }
        }
    }
}

/// The media type a template is chosen by (`request::media_type`); API Gateway takes a
/// request without a `Content-Type` as `application/json`.
pub fn media_type(content_type: Option<&str>) -> String {
    match crate::request::media_type(content_type) {
        m if m.is_empty() => "application/json".to_string(),
        m => m,
    }
}

fn limits() -> vtl::Limits {
    vtl::Limits::default()
}

/// What a request's templates see besides the payload, gathered once per request (and
/// `Send`, so it lives across the integration call): `$context` with AWS's names,
/// `$stageVariables`, and the method request's parameters.
pub struct Scope {
    context: serde_json::Value,
    stage: Vec<(String, String)>,
    /// Path parameters decoded, as API Gateway gives them.
    path: Vec<(String, String)>,
    querystring: Vec<(String, String)>,
    header: Vec<(String, String)>,
}

impl Scope {
    pub fn of(view: &RequestView<'_>) -> Scope {
        let null = serde_json::Value::Null;
        let t = crate::templates::Vars::of(view, None, ("", &null));
        let (path, querystring, header) = crate::templates::vtl_params(&t.input.params);
        Scope {
            context: crate::templates::aws_context(&t.context),
            stage: view.route.variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            path,
            querystring,
            header,
        }
    }

    /// `$input` over `body`, `$context` and `$stageVariables`.
    fn vars(&self, body: &str) -> (vtl::Input, vtl::Value, vtl::Value) {
        let input = vtl::Input::new(body, self.path.clone(), self.querystring.clone(), self.header.clone());
        let stage = vtl::string_map(self.stage.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        (input, vtl::Value::from_json(&self.context), stage)
    }
}

impl Mapping {
    /// The integration request's body: the template for the request's media type, rendered;
    /// or the body as it came; or a 415 refusal.
    /// `binary`: the request's media type is one of the API's binary types.
    pub fn request(&self, view: &RequestView<'_>, scope: &Scope, binary: bool) -> Result<Request, IntegrationError> {
        let media = media_type(view.content_type());
        let payload = Bytes::copy_from_slice(view.body.unwrap_or_default());
        let payload = match self.content_handling {
            None => payload,
            Some(c) => c.apply(payload, binary).map_err(|why| IntegrationError::Template {
                name: format!("{} request content_handling", self.name),
                why,
            })?,
        };
        let Some((_, t)) = self.request_templates.iter().find(|(m, _)| *m == media) else {
            return match (self.passthrough, self.request_templates.is_empty()) {
                (Passthrough::WhenNoMatch, _) | (Passthrough::WhenNoTemplates, true) => {
                    Ok(Request::Passthrough(payload))
                }
                _ => Err(IntegrationError::UnsupportedMediaType { media }),
            };
        };
        let body = String::from_utf8_lossy(&payload);
        let (input, context, stage) = scope.vars(&body);
        let vars = vtl::Vars { input: Some(&input), context, stage_variables: stage };
        let out = t.render(&vars, &limits()).map_err(|e| IntegrationError::Template {
            name: format!("{} request template {media:?}", self.name),
            why: e.to_string(),
        })?;
        Ok(Request::Rendered(Bytes::from(out)))
    }

    /// The values of `request_parameters` for this request; a missing value leaves its
    /// parameter out.
    pub fn parameters(&self, scope: &Scope) -> Resolved {
        let mut out = Resolved::default();
        if self.request_parameters.is_empty() {
            return out;
        }
        let context = vtl::Value::from_json(&scope.context);
        let params = |l: &[(String, String)], k: &str, ci: bool| {
            l.iter().find(|(n, _)| if ci { n.eq_ignore_ascii_case(k) } else { n == k }).map(|(_, v)| v.clone())
        };
        for p in &self.request_parameters {
            let v = match &p.source {
                ParamSource::Literal(l) => Some(l.clone()),
                ParamSource::Header(h) => params(&scope.header, h, true),
                ParamSource::Query(q) => params(&scope.querystring, q, false),
                ParamSource::Path(n) => params(&scope.path, n, false),
                ParamSource::Stage(n) => params(&scope.stage, n, false),
                ParamSource::Context(path) => {
                    let mut v = context.clone();
                    for k in path {
                        v = v.get(k).unwrap_or_default();
                    }
                    (!v.is_null()).then(|| v.to_text())
                }
            };
            let Some(v) = v else { continue };
            match &p.target {
                ParamTarget::Header(h) => out.headers.push((h.clone(), v)),
                ParamTarget::Query(q) => out.query.push((q.clone(), v)),
                ParamTarget::Path(n) => out.path.push((n.clone(), v)),
            }
        }
        out
    }

    /// The method response from the integration's answer: the first rule whose pattern
    /// matches `selector` wholly, else the default rule (`selector` `None`: a Lambda
    /// function's success, which always takes the default); with no rules, the answer as it is.
    pub fn response(
        &self,
        view: &RequestView<'_>,
        scope: &Scope,
        selector: Option<&str>,
        status: u16,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> Result<Made, IntegrationError> {
        let rule = self
            .responses
            .iter()
            .find(|r| r.pattern.as_ref().zip(selector).is_some_and(|(p, s)| p.is_match(s)))
            .or_else(|| self.responses.iter().find(|r| r.pattern.is_none()));
        let Some(rule) = rule else {
            let kept = headers.get(http::header::CONTENT_TYPE).map(|v| (http::header::CONTENT_TYPE, v.clone()));
            return Ok(Made {
                status,
                headers: kept.into_iter().collect(),
                body,
                integration_status: Some(status),
                cacheable: true,
            });
        };
        let body = match rule.content_handling {
            None => body,
            Some(c) => {
                let binary = headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| !t.starts_with("text/") && !t.contains("json") && !t.contains("xml"));
                c.apply(body, binary).map_err(|why| IntegrationError::Template {
                    name: format!("{} response content_handling", self.name),
                    why,
                })?
            }
        };
        let mut out_headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for (name, source) in &rule.parameters {
            let v = match source {
                Source::Literal(v) => Some(v.clone()),
                Source::Header(h) => headers.get(h).cloned(),
            };
            if let Some(v) = v {
                out_headers.push((name.clone(), v));
            }
        }
        // the response template for the method response's media type: the client's Accept
        // when a template names it, else the first template
        let accept = view.header(http::header::ACCEPT).unwrap_or_default();
        let chosen = rule
            .templates
            .iter()
            .find(|(m, _)| accept.split(',').any(|a| a.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(m)))
            .or_else(|| rule.templates.first());
        let body = match chosen {
            None => body,
            Some((media, t)) => {
                let text = String::from_utf8_lossy(&body);
                let (input, context, stage) = scope.vars(&text);
                let vars = vtl::Vars { input: Some(&input), context, stage_variables: stage };
                let out = t.render(&vars, &limits()).map_err(|e| IntegrationError::Template {
                    name: format!("{} response template {media:?}", self.name),
                    why: e.to_string(),
                })?;
                if let Ok(v) = HeaderValue::from_str(media) {
                    out_headers.retain(|(n, _)| n != http::header::CONTENT_TYPE);
                    out_headers.push((http::header::CONTENT_TYPE, v));
                }
                Bytes::from(out)
            }
        };
        if !out_headers.iter().any(|(n, _)| n == http::header::CONTENT_TYPE) {
            if let Some(v) = headers.get(http::header::CONTENT_TYPE) {
                out_headers.push((http::header::CONTENT_TYPE, v.clone()));
            }
        }
        Ok(Made { status: rule.status, headers: out_headers, body, integration_status: Some(status), cacheable: true })
    }
}

/// Why a mapping does not compile: the key path below the integration (as segments) and why.
pub struct CompileError {
    pub at: Vec<String>,
    pub message: String,
}

fn compile_templates(
    key: &str,
    t: &std::collections::BTreeMap<String, String>,
    at: &[String],
) -> Result<Vec<(String, vtl::Template)>, CompileError> {
    let mut out = Vec::new();
    for (media, src) in t {
        let mut path = at.to_vec();
        path.extend([key.to_string(), media.clone()]);
        let t = vtl::Template::compile(src).map_err(|e| CompileError { at: path, message: format!("VTL {e}") })?;
        out.push((media.to_ascii_lowercase(), t));
    }
    Ok(out)
}

/// An integration response as configured.
pub struct ResponseSpec<'a> {
    pub selection_pattern: &'a str,
    pub status: u16,
    pub parameters: Option<&'a std::collections::BTreeMap<String, String>>,
    pub templates: Option<&'a std::collections::BTreeMap<String, String>>,
    pub content_handling: Option<&'a str>,
}

fn content_handling(s: Option<&str>, at: Vec<String>) -> Result<Option<ContentHandling>, CompileError> {
    match s {
        None => Ok(None),
        Some(v) => ContentHandling::parse(v)
            .map(Some)
            .ok_or_else(|| CompileError { at, message: format!("{v:?} must be convert_to_text or convert_to_binary") }),
    }
}

impl Mapping {
    /// Compiles an integration's `request_templates`, `passthrough_behavior` and `responses`.
    pub fn compile(
        name: &str,
        passthrough: Option<&str>,
        request_templates: Option<&std::collections::BTreeMap<String, String>>,
        request_parameters: Option<&std::collections::BTreeMap<String, String>>,
        request_content_handling: Option<&str>,
        specs: &[ResponseSpec<'_>],
    ) -> Result<Mapping, CompileError> {
        let request_content_handling = content_handling(request_content_handling, vec!["content_handling".into()])?;
        let request_parameters = match request_parameters {
            Some(m) => compile_parameters(m)?,
            None => Vec::new(),
        };
        let passthrough = match passthrough {
            None => Passthrough::WhenNoMatch,
            Some(p) => Passthrough::parse(p).ok_or_else(|| CompileError {
                at: vec!["passthrough_behavior".into()],
                message: format!("{p:?} must be when_no_match, when_no_templates or never"),
            })?,
        };
        let request_templates = match request_templates {
            Some(t) => compile_templates("request_templates", t, &[])?,
            None => Vec::new(),
        };
        let mut responses = Vec::new();
        for (k, r) in specs.iter().enumerate() {
            let at = vec!["responses".to_string(), k.to_string()];
            let err = |key: &str, message: String| {
                let mut at = at.clone();
                at.push(key.to_string());
                CompileError { at, message }
            };
            let pattern = selection_pattern(r.selection_pattern)
                .map_err(|e| err("selection_pattern", format!("not a regular expression: {e}")))?;
            if !(100..=599).contains(&r.status) {
                return Err(err("status", "status must be 100 to 599".into()));
            }
            let mut parameters = Vec::new();
            for (target, source) in r.parameters.into_iter().flatten() {
                let Some(h) = target.strip_prefix("method.response.header.") else {
                    return Err(err("parameters", format!("{target:?}: only method.response.header.NAME can be set")));
                };
                let name = HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| err("parameters", format!("{h:?} is not a header name")))?;
                let src = if let Some(lit) = source.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    Source::Literal(
                        HeaderValue::from_str(lit)
                            .map_err(|_| err("parameters", format!("{lit:?} is not a header value")))?,
                    )
                } else if let Some(h) = source.strip_prefix("integration.response.header.") {
                    Source::Header(
                        HeaderName::from_bytes(h.as_bytes())
                            .map_err(|_| err("parameters", format!("{h:?} is not a header name")))?,
                    )
                } else {
                    return Err(err(
                        "parameters",
                        format!("{source:?}: a value is 'literal' or integration.response.header.NAME"),
                    ));
                };
                parameters.push((name, src));
            }
            let templates = match r.templates {
                Some(t) => compile_templates("templates", t, &at)?,
                None => Vec::new(),
            };
            let handling = content_handling(r.content_handling, {
                let mut at = at.clone();
                at.push("content_handling".into());
                at
            })?;
            responses.push(Rule { pattern, status: r.status, parameters, templates, content_handling: handling });
        }
        Ok(Mapping {
            request_templates,
            passthrough,
            responses,
            request_parameters,
            content_handling: request_content_handling,
            name: name.to_string(),
        })
    }
}

/// A whole-string regular expression, as API Gateway's Java patterns match.
pub fn selection_pattern(p: &str) -> Result<Option<regex::Regex>, regex::Error> {
    if p.is_empty() {
        return Ok(None);
    }
    regex::RegexBuilder::new(&format!("^(?:{p})$")).dot_matches_new_line(true).size_limit(1 << 20).build().map(Some)
}

/// A payload as events carry it: the text, or base64 when it is `binary` or not UTF-8 (the
/// flag says which).
pub(super) fn encode_body(b: &[u8], binary: bool) -> (std::borrow::Cow<'_, str>, bool) {
    match (binary, std::str::from_utf8(b)) {
        (false, Ok(s)) => (std::borrow::Cow::Borrowed(s), false),
        _ => (std::borrow::Cow::Owned(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_whole_selector() {
        let p = selection_pattern("2\\d{2}").expect("re").expect("some");
        assert!(p.is_match("201") && !p.is_match("2011") && !p.is_match("x200"));
        let p = selection_pattern("NotFound:.*").expect("re").expect("some");
        assert!(p.is_match("NotFound: no such order\nat line 2"));
        assert!(selection_pattern("").expect("re").is_none());
        assert!(selection_pattern("(").is_err());
    }

    #[test]
    fn media_types() {
        assert_eq!(media_type(None), "application/json");
        assert_eq!(media_type(Some("Text/Plain; charset=utf-8")), "text/plain");
        assert_eq!(Passthrough::parse("never"), Some(Passthrough::Never));
        assert_eq!(Passthrough::parse("sometimes"), None);
    }
}
