//! Rendering the snapshot's templates (transform, mock and gateway-response bodies, service
//! request templates): minijinja, or VTL where the config gives `{ vtl = … }` /
//! `{ vtl_file = … }` (the same variables under AWS's names: `$context`, `$stageVariables`,
//! `$input`, `$util`).
//! Variables: `context.*` (requestId, stage, apiId, routeKey, path, httpMethod, domainName,
//! requestTime, requestTimeEpoch, identity.{sourceIp, userAgent, clientCert}, error.*),
//! `stageVariables.*` and `input.{body, json, params.{path, querystring, header}}`.

use crate::request::RequestView;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity<'a> {
    pub source_ip: String,
    pub user_agent: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<&'a crate::tls::certs::ClientCert>,
}

#[derive(Serialize)]
pub struct ErrorInfo<'a> {
    pub message: &'a str,
    #[serde(rename = "responseType")]
    pub response_type: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Context<'a> {
    pub request_id: &'a str,
    pub stage: &'a str,
    pub api_id: &'a str,
    pub route_key: &'a str,
    pub path: &'a str,
    pub http_method: &'a str,
    pub domain_name: &'a str,
    pub request_time: String,
    pub request_time_epoch: u128,
    pub identity: Identity<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo<'a>>,
    /// `context.authorizer.{principalId, claims, scopes}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorizer: Option<&'a crate::auth::Principal>,
}

#[derive(Serialize)]
pub struct Params<'a> {
    pub path: BTreeMap<&'a str, &'a str>,
    pub querystring: BTreeMap<String, String>,
    /// Request headers by lower-case name (repeated headers joined with ", ").
    pub header: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
pub struct Input<'a> {
    pub params: Params<'a>,
    /// The body as text: the request's in request templates, the integration's in response
    /// templates; empty when there is none or it is not text.
    pub body: &'a str,
    /// The body parsed as JSON (null when it is not JSON).
    pub json: &'a serde_json::Value,
}

#[derive(Serialize)]
pub struct Vars<'a> {
    pub context: Context<'a>,
    #[serde(rename = "stageVariables")]
    pub stage_variables: &'a BTreeMap<String, String>,
    pub input: Input<'a>,
}

impl<'a> Vars<'a> {
    /// The variables of a request: its view, the error of a gateway response, and a body
    /// (the request's, or the integration's in response templates) as text and as JSON.
    /// Header fields are the ones integrations are told (`forwarded::to_integration`).
    pub fn of(
        view: &RequestView<'a>,
        error: Option<(&'a str, &'a str)>,
        body: (&'a str, &'a serde_json::Value),
    ) -> Vars<'a> {
        let epoch = view.received_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let mut header = crate::request::header_map(view.headers());
        let hop = crate::forwarded::Hop::of(view.client);
        header.retain(|k, _| !hop.drops(k));
        let keep_port = header.contains_key("x-forwarded-port");
        header.extend(hop.fields(keep_port).filter_map(|(k, v)| Some((k.as_str(), v.ok()?.to_str().ok()?.to_owned()))));
        Vars {
            context: Context {
                request_id: view.request_id,
                stage: view.stage(),
                api_id: view.api(),
                route_key: view.route(),
                path: view.raw_path(),
                http_method: view.method(),
                domain_name: &view.client.host,
                request_time: humantime::format_rfc3339_millis(view.received_at).to_string(),
                request_time_epoch: epoch,
                identity: Identity {
                    source_ip: view.client.source_ip(),
                    user_agent: view.user_agent(),
                    client_cert: view.client.cert.as_deref(),
                },
                error: error.map(|(message, response_type)| ErrorInfo { message, response_type }),
                authorizer: view.caller.principal.as_deref(),
            },
            stage_variables: view.route.variables,
            input: Input {
                params: Params {
                    path: view.route.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                    querystring: crate::request::query_map(view.query()),
                    header,
                },
                body: body.0,
                json: body.1,
            },
        }
    }
}

/// Renders template `name`; a runtime error is returned for the caller to turn into a 500.
/// The name a template is compiled under: bodies whose text is JSON (it starts with `{` or
/// `[`) get the JSON escape (see [`environment`]).
pub fn name_for(base: &str, text: &str) -> String {
    if matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'[')) {
        format!("{base}+json")
    } else {
        base.to_string()
    }
}

/// The snapshot's template environment. Output escaping follows where a value lands:
/// - JSON bodies (gateway responses, and body templates named by [`name_for`]): every value
///   is written as JSON string content (`"` `\` and control characters escaped), so a
///   request value can never add keys or close the document (`{{ v | tojson }}` still writes
///   a whole JSON value).
/// - `request_transform.path`: every value is percent-encoded as one path segment (`/`,
///   `%`, `?`, `#` and `..` included), so a value never adds segments or climbs the path.
/// - AWS service form bodies ([`name_for_service`]): every value is form-encoded, so a value
///   never adds a parameter (`| urlencode` gives the same, never twice).
pub fn environment() -> minijinja::Environment<'static> {
    use minijinja::AutoEscape;
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    // canonical percent-encoding (RFC 3986: only unreserved characters stay), as AWS form
    // bodies and query strings expect; minijinja's own keeps `/`
    // (its output is final: never escaped again)
    env.add_filter("urlencode", |v: minijinja::Value| -> minijinja::Value {
        let s = if v.is_undefined() || v.is_none() { String::new() } else { v.to_string() };
        minijinja::Value::from_safe_string(form_encode(&s))
    });
    env.set_auto_escape_callback(|name| {
        if name.ends_with(":path") {
            AutoEscape::Custom("path")
        } else if name.ends_with("+form") {
            AutoEscape::Custom("form")
        } else if name.starts_with("gw:") || name.ends_with("+json") {
            AutoEscape::Custom("json")
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        let mode = match state.auto_escape() {
            AutoEscape::Custom(m) => m,
            _ => return minijinja::escape_formatter(out, state, value),
        };
        let write = |out: &mut minijinja::Output, s: &str| {
            out.write_str(s).map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
        };
        if value.is_undefined() {
            return Ok(());
        }
        let text = value.to_string();
        if value.is_safe() {
            return write(out, &text); // `| tojson`, `| safe`: the template's author chose
        }
        let escaped = match mode {
            "path" => encode_segment(&text),
            "form" => form_encode(&text),
            _ => json_string_content(&text),
        };
        write(out, &escaped)
    });
    env
}

/// `s` percent-encoded for a form body or a query string (RFC 3986: only unreserved
/// characters stay), as AWS's canonical encoding has it.
pub fn form_encode(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The name an AWS service request template is compiled under: a JSON body (see
/// [`name_for`]) gets the JSON escape, anything else is a form body whose values are
/// form-encoded (`?msg=a%26Action%3DDeleteQueue` stays one value).
pub fn name_for_service(base: &str, text: &str) -> String {
    let n = name_for(base, text);
    if n.ends_with("+json") {
        n
    } else {
        format!("{base}+form")
    }
}

/// `s` as JSON string content, without the quotes.
pub fn json_string_content(s: &str) -> String {
    let quoted = serde_json::Value::from(s).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// `s` percent-encoded as one path segment (RFC 3986 unreserved characters stay; `.` and
/// `..` alone are encoded so they cannot be dot-segments).
pub fn encode_segment(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    match s {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => percent_encoding::utf8_percent_encode(s, SEGMENT).to_string(),
    }
}

/// The snapshot's templates by name: minijinja ones in its environment, VTL ones beside it.
pub struct Templates {
    jinja: minijinja::Environment<'static>,
    vtl: std::collections::HashMap<String, crate::vtl::Template>,
}

impl Templates {
    pub fn new() -> Templates {
        Templates { jinja: environment(), vtl: Default::default() }
    }

    /// Adds a compiled VTL template under `name`.
    pub fn add_vtl(&mut self, name: String, t: crate::vtl::Template) {
        self.vtl.insert(name, t);
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl std::ops::Deref for Templates {
    type Target = minijinja::Environment<'static>;
    fn deref(&self) -> &Self::Target {
        &self.jinja
    }
}

impl std::ops::DerefMut for Templates {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.jinja
    }
}

/// Why a template did not render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Jinja(#[from] minijinja::Error),
    #[error("VTL {0}")]
    Vtl(#[from] crate::vtl::RenderError),
}

pub fn render(env: &Templates, name: &str, vars: &Vars<'_>) -> Result<String, RenderError> {
    if let Some(t) = env.vtl.get(name) {
        let (input, context, stage_variables) = vtl_vars(vars);
        let v = crate::vtl::Vars { input: Some(&input), context, stage_variables };
        return Ok(t.render(&v, &crate::vtl::Limits::default())?);
    }
    Ok(env.jinja.get_template(name)?.render(vars)?)
}

/// `$context` with AWS's names: the template context, plus `resourcePath` (the route's path
/// template), `requestTimeEpoch` as AWS writes it, and `error.messageString` (the message as
/// a quoted JSON string, as gateway-response templates use it).
pub fn aws_context(c: &Context<'_>) -> serde_json::Value {
    let mut context = serde_json::to_value(c).unwrap_or_default();
    if let Some(o) = context.as_object_mut() {
        let resource = c.route_key.split_once(' ').map_or(c.route_key, |(_, p)| p);
        o.insert("resourcePath".into(), resource.into());
        o.insert("requestTimeEpoch".into(), c.request_time_epoch.to_string().into());
        if let Some(e) = c.error.as_ref() {
            let quoted = serde_json::Value::String(e.message.to_string()).to_string();
            if let Some(err) = o.get_mut("error").and_then(|v| v.as_object_mut()) {
                err.insert("messageString".into(), quoted.into());
            }
        }
    }
    context
}

/// `$input.params()` as VTL reads them: path parameters decoded (as API Gateway gives them),
/// the query string, and header fields.
pub type VtlParams = (Vec<(String, String)>, Vec<(String, String)>, Vec<(String, String)>);

pub fn vtl_params(p: &Params<'_>) -> VtlParams {
    (
        p.path
            .iter()
            .map(|(k, v)| (k.to_string(), percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned()))
            .collect(),
        p.querystring.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        p.header.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    )
}

/// The VTL variables of a template's: `$input` (the body and [`vtl_params`]), `$context`
/// ([`aws_context`]) and `$stageVariables`.
fn vtl_vars(vars: &Vars<'_>) -> (crate::vtl::Input, crate::vtl::Value, crate::vtl::Value) {
    let (path, querystring, header) = vtl_params(&vars.input.params);
    let input = crate::vtl::Input::new(vars.input.body, path, querystring, header);
    let stage = crate::vtl::string_map(vars.stage_variables.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    (input, crate::vtl::Value::from_json(&aws_context(&vars.context)), stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_context_and_stage_variables() {
        let mut env = Templates::new();
        env.add_template_owned("t", "{{ context.stage }}/{{ stageVariables.color }}/{{ input.params.path.id }}/{{ input.params.querystring.q }}")
            .expect("template");
        let vars_map = BTreeMap::from([("color".to_string(), "blue".to_string())]);
        let v = Vars {
            context: Context {
                request_id: "r",
                stage: "prod",
                api_id: "a",
                route_key: "GET /x/{id}",
                path: "/x/7",
                http_method: "GET",
                domain_name: "h",
                request_time: String::new(),
                request_time_epoch: 0,
                identity: Identity { source_ip: "127.0.0.1".into(), user_agent: "".into(), client_cert: None },
                error: None,
                authorizer: None,
            },
            stage_variables: &vars_map,
            input: Input {
                params: Params {
                    path: BTreeMap::from([("id", "7")]),
                    querystring: crate::request::query_map(Some("q=a+b%21")),
                    header: BTreeMap::new(),
                },
                body: "",
                json: &serde_json::Value::Null,
            },
        };
        assert_eq!(render(&env, "t", &v).expect("render"), "prod/blue/7/a b!");
    }

    #[test]
    fn values_are_escaped_for_where_they_land() {
        let mut env = environment();
        env.add_template_owned("b+json", r#"{"q": "{{ v }}", "n": {{ v | tojson }}}"#).expect("t");
        env.add_template_owned("x:path", "/users/{{ v }}/profile").expect("t");
        env.add_template_owned("plain", "{{ v }}").expect("t");
        let v = minijinja::context! { v => "a\", \"admin\": true, \"x\": \"../../admin" };
        let json = env.get_template("b+json").expect("t").render(&v).expect("r");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("still one JSON document");
        assert_eq!(parsed.as_object().map(|o| o.len()), Some(2), "no key injected: {json}");
        assert_eq!(parsed["q"], parsed["n"]);
        let v = minijinja::context! { v => "../../admin" };
        assert_eq!(env.get_template("x:path").expect("t").render(&v).expect("r"), "/users/..%2F..%2Fadmin/profile");
        let v = minijinja::context! { v => ".." };
        assert_eq!(env.get_template("x:path").expect("t").render(&v).expect("r"), "/users/%2E%2E/profile");
        let none = minijinja::context! {};
        assert_eq!(env.get_template("b+json").expect("t").render(&none).expect("r"), r#"{"q": "", "n": null}"#);
        let v = minijinja::context! { v => "<a>" };
        assert_eq!(env.get_template("plain").expect("t").render(&v).expect("r"), "<a>");
        assert_eq!(name_for("mock:a", "  {\"a\":1}"), "mock:a+json");
        assert_eq!(name_for("mock:a", "hello"), "mock:a");
    }
}
