//! Rendering the snapshot's minijinja templates (mock bodies, gateway-response bodies).
//! Variables: `context.*` (requestId, stage, apiId, routeKey, path, httpMethod, domainName,
//! requestTime, requestTimeEpoch, identity.{sourceIp, userAgent, clientCert}, error.*),
//! `stageVariables.*` and `input.{body, json, params.{path, querystring, header}}`.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity<'a> {
    pub source_ip: String,
    pub user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<&'a crate::tls::ClientCert>,
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

/// Request headers for `input.params.header`.
pub fn header_map(h: &http::HeaderMap) -> BTreeMap<&str, String> {
    let mut m: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes());
        m.entry(k.as_str())
            .and_modify(|s| {
                s.push_str(", ");
                s.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    m
}

#[derive(Serialize)]
pub struct Vars<'a> {
    pub context: Context<'a>,
    #[serde(rename = "stageVariables")]
    pub stage_variables: &'a BTreeMap<String, String>,
    pub input: Input<'a>,
}

/// Renders template `name`; a runtime error is returned for the caller to turn into a 500.
pub fn render(env: &minijinja::Environment<'static>, name: &str, vars: &Vars<'_>) -> Result<String, minijinja::Error> {
    env.get_template(name)?.render(vars)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_context_and_stage_variables() {
        let mut env = minijinja::Environment::new();
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
                identity: Identity { source_ip: "127.0.0.1".into(), user_agent: "", client_cert: None },
                error: None,
                authorizer: None,
            },
            stage_variables: &vars_map,
            input: Input {
                params: Params {
                    path: BTreeMap::from([("id", "7")]),
                    querystring: query_map(Some("q=a+b%21")),
                    header: BTreeMap::new(),
                },
                body: "",
                json: &serde_json::Value::Null,
            },
        };
        assert_eq!(render(&env, "t", &v).expect("render"), "prod/blue/7/a b!");
    }
}
