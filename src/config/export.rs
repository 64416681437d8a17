//! `edgegate export openapi`: one API of a configuration as OpenAPI 3.0 with API Gateway's
//! extensions (`x-amazon-apigateway-integration`, `-authorizer`, `-request-validators`,
//! `-gateway-responses`, `-binary-media-types`, `-cors`, `-api-key-source`), so that
//! `import openapi` of the output gives back the same routes, integrations, templates,
//! validation, authorizers and gateway responses, and AWS API Gateway can import it.
//!
//! It reads the configuration (after the `openapi = "FILE"` merge) once the whole
//! configuration has compiled: an invalid one is never exported. What OpenAPI and API
//! Gateway cannot say (VPC links, edge origins, transforms, caching, throttles) is reported.

use super::model::{self, Config, IntegrationRef, SchemaRef, TemplateText};
use crate::openapi::is_json;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The document, and what it leaves out.
pub struct Exported {
    pub doc: Value,
    pub report: Vec<String>,
}

/// Exports API `api` of the configuration at `path` (already checked by the caller).
pub fn openapi(path: &Path, api: &str, stage: Option<&str>) -> Result<Exported, String> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut cfg: Config = toml::from_str(&src).map_err(|e| e.message().to_string())?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = super::Compiler::new(crate::runtime::Runtime::new(), dir.clone(), path);
    c.merge_openapi(&mut cfg);
    let names: Vec<&str> = cfg.apis.iter().map(|a| a.name.as_str()).collect();
    let a = cfg
        .apis
        .iter()
        .find(|a| a.name == api)
        .ok_or_else(|| format!("no API named {api:?} (the config has {})", names.join(", ")))?;
    if let Some(s) = stage {
        if !a.stages.contains_key(s) {
            return Err(format!("API {api:?} has no stage {s:?}"));
        }
    }
    // the API's named integrations as written (the model keeps no text to write back)
    let raw: toml::Table = toml::from_str(&src).map_err(|e| e.message().to_string())?;
    let written = raw
        .get("apis")
        .and_then(|a| a.as_array())
        .and_then(|l| l.iter().find(|x| x.get("name").and_then(|n| n.as_str()) == Some(api)))
        .and_then(|a| a.get("integrations"))
        .and_then(|i| i.as_table())
        .cloned()
        .unwrap_or_default();
    let mut x = Exporter {
        dir: &dir,
        cfg: &cfg,
        report: vec![],
        schemes: Map::new(),
        validators: BTreeMap::new(),
        written,
        named: Map::new(),
    };
    let doc = x.api(a, stage);
    Ok(Exported { doc, report: x.report })
}

struct Exporter<'a> {
    dir: &'a Path,
    cfg: &'a Config,
    report: Vec<String>,
    schemes: Map<String, Value>,
    /// Validator name -> (body, parameters).
    validators: BTreeMap<&'static str, (bool, bool)>,
    /// `[apis.integrations]` as written, and those the routes use (`x-edgegate-integrations`).
    written: toml::Table,
    named: Map<String, Value>,
}

const METHODS: [&str; 7] = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH"];

impl Exporter<'_> {
    fn api(&mut self, a: &model::Api, stage: Option<&str>) -> Value {
        let mut doc = json!({
            "openapi": "3.0.1",
            "info": {"title": a.name, "version": "1"},
        });
        if a.protocol == model::Protocol::Websocket {
            self.report.push("a WebSocket API has no OpenAPI form; only its name is exported".into());
            doc["paths"] = json!({});
            return doc;
        }
        let base = if a.base_path.is_empty() { "/".to_string() } else { a.base_path.clone() };
        let mut server = json!({"url": base});
        if let Some(s) = stage {
            server["description"] = Value::String(format!("stage {s}"));
        }
        doc["servers"] = json!([server]);
        let mut paths = Map::new();
        let mut keys_used = false;
        for r in &a.routes {
            let Some((method, path)) = r.route.split_once(' ') else {
                self.report.push(format!("route {:?} is not METHOD /path; not exported", r.route));
                continue;
            };
            let op_key = if method == "ANY" {
                "x-amazon-apigateway-any-method".to_string()
            } else if METHODS.contains(&method) {
                method.to_ascii_lowercase()
            } else {
                self.report.push(format!("{}: method {method} has no OpenAPI form; not exported", r.route));
                continue;
            };
            let op = self.operation(a, r, path, &mut keys_used);
            let item = paths.entry(path.to_string()).or_insert_with(|| json!({}));
            item[op_key] = op;
        }
        doc["paths"] = Value::Object(paths);
        if let Some(types) = &a.binary_media_types {
            doc["x-amazon-apigateway-binary-media-types"] = json!(types);
        }
        if let Some(c) = &a.cors {
            let mut v = json!({
                "allowOrigins": c.allow_origins, "allowMethods": c.allow_methods,
                "allowHeaders": c.allow_headers, "exposeHeaders": c.expose_headers,
                "allowCredentials": c.allow_credentials,
            });
            if let Some(m) = &c.max_age {
                v["maxAge"] = json!(m.0.as_secs());
            }
            doc["x-amazon-apigateway-cors"] = v;
        }
        if keys_used {
            doc["x-amazon-apigateway-api-key-source"] = json!("HEADER");
            self.schemes.insert("api_key".into(), json!({"type": "apiKey", "name": "x-api-key", "in": "header"}));
        }
        if !self.validators.is_empty() {
            let v: Map<String, Value> = self
                .validators
                .iter()
                .map(|(n, (b, p))| (n.to_string(), json!({"validateRequestBody": b, "validateRequestParameters": p})))
                .collect();
            doc["x-amazon-apigateway-request-validators"] = Value::Object(v);
        }
        if !a.gateway_responses.is_empty() {
            doc["x-amazon-apigateway-gateway-responses"] = self.gateway_responses(&a.gateway_responses);
        }
        if !self.named.is_empty() {
            doc["x-edgegate-integrations"] = Value::Object(std::mem::take(&mut self.named));
        }
        if !self.schemes.is_empty() {
            doc["components"] = json!({"securitySchemes": Value::Object(std::mem::take(&mut self.schemes))});
        }
        for (k, present) in
            [("policy", a.policy.is_some()), ("endpoint = \"edge\"", a.endpoint == model::EndpointType::Edge)]
        {
            if present {
                self.report.push(format!("API {}: {k} is not exported", a.name));
            }
        }
        doc
    }

    fn operation(&mut self, a: &model::Api, r: &model::Route, path: &str, keys_used: &mut bool) -> Value {
        let mut op = Map::new();
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|n| json!({"name": n.trim_end_matches('+'), "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let (mut body_checked, mut params_checked) = (false, false);
        if let Some(v) = &r.validate {
            for q in &v.query {
                params.push(json!({"name": q, "in": "query", "required": true, "schema": {"type": "string"}}));
                params_checked = true;
            }
            for h in &v.headers {
                params.push(json!({"name": h, "in": "header", "required": true, "schema": {"type": "string"}}));
                params_checked = true;
            }
            let schema = match &v.body {
                Some(SchemaRef::Inline(t)) => Some(to_json(&toml::Value::Table(t.clone()))),
                Some(SchemaRef::File(f)) => self.schema_file(&r.route, f),
                None => None,
            };
            let types: Vec<String> =
                if v.content_types.is_empty() { vec!["application/json".into()] } else { v.content_types.clone() };
            if schema.is_some() || !v.content_types.is_empty() {
                body_checked = true;
                let mut content = Map::new();
                for t in &types {
                    let mut media = json!({});
                    if let Some(s) = schema.as_ref().filter(|_| is_json(t)) {
                        media["schema"] = openapi_schema(s);
                    }
                    content.insert(t.clone(), media);
                }
                op.insert(
                    "requestBody".into(),
                    json!({"required": schema.is_some() && v.body_required, "content": content}),
                );
            }
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if body_checked || params_checked {
            let name = match (body_checked, params_checked) {
                (true, true) => "all",
                (true, false) => "body-only",
                _ => "params-only",
            };
            self.validators.insert(name, (body_checked, params_checked));
            op.insert("x-amazon-apigateway-request-validator".into(), json!(name));
        }
        op.insert("responses".into(), json!({"default": {"description": "the integration's answer"}}));
        let mut security = Map::new();
        if let Some(name) = &r.authorizer {
            security.insert(name.clone(), json!(r.scopes.clone().unwrap_or_default()));
            self.authorizer(name);
        }
        if r.api_key_required == Some(true) {
            security.insert("api_key".into(), json!([]));
            *keys_used = true;
        }
        if !security.is_empty() {
            op.insert("security".into(), json!([security]));
        }
        let integration = match &r.integration {
            IntegrationRef::Name(n) => {
                // edgegate's own import keeps the name (AWS reads the integration below)
                if let Some(t) = self.written.get(n) {
                    self.named.insert(n.clone(), to_json(t));
                    op.insert("x-edgegate-integration".into(), json!(n));
                }
                a.integrations.get(n)
            }
            IntegrationRef::Inline(i) => Some(&**i),
        };
        if let Some(i) = integration {
            if let Some(x) = self.integration(&r.route, i) {
                op.insert("x-amazon-apigateway-integration".into(), x);
            }
        }
        for (k, present) in [
            ("request_transform", r.request_transform.is_some()),
            ("response_transform", r.response_transform.is_some()),
            ("cache", r.cache.is_some()),
            ("throttle", r.throttle.is_some()),
        ] {
            if present {
                self.report.push(format!("{}: {k} is not exported", r.route));
            }
        }
        Value::Object(op)
    }

    fn schema_file(&mut self, route: &str, f: &str) -> Option<Value> {
        let bytes = std::fs::read(self.dir.join(f)).ok()?;
        let v = if f.ends_with(".yaml") || f.ends_with(".yml") {
            serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(&bytes).ok().map(crate::openapi::yaml_to_json)
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if v.is_none() {
            self.report.push(format!("{route}: schema file {f} is not readable; not exported"));
        }
        v
    }

    /// `x-amazon-apigateway-integration` of a route's integration.
    fn integration(&mut self, route: &str, i: &model::Integration) -> Option<Value> {
        let method = route.split(' ').next().unwrap_or("ANY");
        let timeout = i.timeout.map(|t| t.0.as_millis() as u64);
        let mut x = match i.kind.as_str() {
            "http" if i.proxy == Some(false) => {
                json!({"type": "http", "uri": i.uri, "httpMethod": i.method.as_deref().unwrap_or(method)})
            }
            "http" => {
                json!({"type": "http_proxy", "uri": i.uri, "httpMethod": method, "passthroughBehavior": "when_no_match"})
            }
            "mock" if has_mapping(i) => json!({"type": "mock"}),
            "mock" => {
                let mut resp = json!({"statusCode": i.status.unwrap_or(200).to_string()});
                let body = match &i.body {
                    Some(TemplateText::Text(t)) => Some(t.clone()),
                    Some(TemplateText::Vtl(v)) => self.vtl_text(route, v),
                    None => None,
                };
                if let Some(t) = body {
                    resp["responseTemplates"] = json!({"application/json": t});
                }
                return Some(json!({"type": "mock", "responses": {"default": resp}}));
            }
            "lambda" => {
                let region = i.region.as_deref().unwrap_or("us-east-1");
                let function = i.function.as_deref().unwrap_or("");
                let uri =
                    format!("arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function}/invocations");
                if !function.starts_with("arn:") {
                    self.report
                        .push(format!("{route}: function {function:?} is not an ARN (AWS API Gateway needs one)"));
                }
                if i.proxy == Some(false) {
                    json!({"type": "aws", "httpMethod": "POST", "uri": uri})
                } else {
                    if i.payload_format.as_deref() == Some("2.0") {
                        self.report.push(format!("{route}: payload format 2.0 is an HTTP API's; REST APIs send 1.0"));
                    }
                    json!({"type": "aws_proxy", "httpMethod": "POST", "uri": uri})
                }
            }
            "aws" => {
                let region = i.region.as_deref().unwrap_or("us-east-1");
                let service = i.service.as_deref().unwrap_or("");
                let what = match (&i.action, &i.path) {
                    (Some(a), _) => format!("action/{a}"),
                    (None, Some(p)) => format!("path/{}", p.trim_start_matches('/')),
                    (None, None) => "path/".to_string(),
                };
                let mut x = json!({"type": "aws", "uri": format!("arn:aws:apigateway:{region}:{service}:{what}"),
                    "httpMethod": i.method.as_deref().unwrap_or("POST")});
                if let Some(t) = &i.request_template {
                    let text = match t {
                        TemplateText::Text(t) => {
                            self.report.push(format!(
                                "{route}: the minijinja request_template is exported as is; AWS reads VTL"
                            ));
                            Some(t.clone())
                        }
                        TemplateText::Vtl(v) => self.vtl_text(route, v),
                    };
                    if let Some(text) = text {
                        x["requestTemplates"] = json!({"application/json": text});
                    }
                }
                x
            }
            other => {
                self.report.push(format!("{route}: a {other} integration has no API Gateway form; not exported"));
                return None;
            }
        };
        if let Some(ms) = timeout {
            x["timeoutInMillis"] = json!(ms);
        }
        if let Some(t) = &i.request_templates {
            x["requestTemplates"] = json!(t);
        }
        if let Some(p) = &i.request_parameters {
            x["requestParameters"] = json!(p);
        }
        if let Some(c) = &i.content_handling {
            x["contentHandling"] = json!(c.to_ascii_uppercase());
        }
        if let Some(p) = &i.passthrough_behavior {
            x["passthroughBehavior"] = json!(p.to_ascii_uppercase());
        } else if x.get("passthroughBehavior").is_some() {
            x["passthroughBehavior"] = json!("WHEN_NO_MATCH");
        }
        if let Some(rs) = &i.responses {
            let mut out = Map::new();
            for resp in rs {
                let key = if resp.selection_pattern.is_empty() {
                    "default".to_string()
                } else {
                    resp.selection_pattern.clone()
                };
                let mut v = json!({"statusCode": resp.status.to_string()});
                if let Some(p) = &resp.parameters {
                    v["responseParameters"] = json!(p);
                }
                if let Some(t) = &resp.templates {
                    v["responseTemplates"] = json!(t);
                }
                if let Some(c) = &resp.content_handling {
                    v["contentHandling"] = json!(c.to_ascii_uppercase());
                }
                out.insert(key, v);
            }
            x["responses"] = Value::Object(out);
        }
        Some(x)
    }

    fn vtl_text(&mut self, route: &str, v: &model::VtlText) -> Option<String> {
        match (&v.vtl, &v.vtl_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => match std::fs::read_to_string(self.dir.join(f)) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.report.push(format!("{route}: {f}: {e}"));
                    None
                }
            },
            _ => None,
        }
    }

    /// The security scheme of authorizer `name`, with its `x-amazon-apigateway-authorizer`.
    fn authorizer(&mut self, name: &str) {
        if self.schemes.contains_key(name) {
            return;
        }
        let Some(a) = self.cfg.authorizers.get(name) else { return };
        let get = |k: &str| a.rest.get(k).and_then(|v| v.as_str());
        let header_of = |src: Option<&str>| {
            src.and_then(|s| s.strip_prefix("$request.header.")).unwrap_or("Authorization").to_string()
        };
        // $request.header.X -> method.request.header.X (the REST form)
        let rest_source = |s: &str| {
            s.strip_prefix("$request.")
                .map(|r| format!("method.request.{r}"))
                .unwrap_or_else(|| s.trim_start_matches('$').to_string())
        };
        let scheme = match a.kind.as_str() {
            "jwt" => {
                let issuer = get("issuer").unwrap_or("");
                let source = get("identity_source");
                let cognito = issuer
                    .strip_prefix("https://cognito-idp.")
                    .and_then(|r| r.split_once(".amazonaws.com/"))
                    .map(|(region, pool)| (region.to_string(), pool.trim_end_matches('/').to_string()));
                match cognito {
                    Some((region, pool)) => json!({
                        "type": "apiKey", "name": header_of(source), "in": "header",
                        "x-amazon-apigateway-authtype": "cognito_user_pools",
                        "x-amazon-apigateway-authorizer": {"type": "cognito_user_pools",
                            "providerARNs": [format!("arn:aws:cognito-idp:{region}:000000000000:userpool/{pool}")]},
                    }),
                    None => {
                        let audience: Vec<&str> = a
                            .rest
                            .get("audience")
                            .and_then(|v| v.as_array())
                            .map(|l| l.iter().filter_map(|v| v.as_str()).collect())
                            .unwrap_or_default();
                        json!({
                            "type": "oauth2", "flows": {},
                            "x-amazon-apigateway-authorizer": {"type": "jwt",
                                "jwtConfiguration": {"issuer": issuer, "audience": audience},
                                "identitySource": source.unwrap_or("$request.header.Authorization")},
                        })
                    }
                }
            }
            kind @ ("token" | "request") => {
                let lambda = a.rest.get("lambda").and_then(|l| l.as_table());
                let Some(l) = lambda else {
                    self.report.push(format!(
                        "authorizer {name}: an http `uri` authorizer has no API Gateway form; not exported"
                    ));
                    return;
                };
                let region = l.get("region").and_then(|v| v.as_str()).unwrap_or("us-east-1");
                let function = l.get("function").and_then(|v| v.as_str()).unwrap_or("");
                let sources: Vec<String> = match kind {
                    "token" => vec![get("identity_source").unwrap_or("$request.header.Authorization").to_string()],
                    _ => a
                        .rest
                        .get("identity_sources")
                        .and_then(|v| v.as_array())
                        .map(|l| l.iter().filter_map(|v| v.as_str()).map(str::to_string).collect())
                        .unwrap_or_else(|| vec!["$request.header.Authorization".into()]),
                };
                let ttl =
                    get("result_ttl").and_then(|t| humantime::parse_duration(t).ok()).map_or(300, |d| d.as_secs());
                let mut def = json!({
                    "type": kind,
                    "authorizerUri": format!("arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function}/invocations"),
                    "identitySource": sources.iter().map(|s| rest_source(s)).collect::<Vec<_>>().join(", "),
                    "authorizerResultTtlInSeconds": ttl,
                });
                if get("response") == Some("simple") {
                    def["enableSimpleResponses"] = json!(true);
                }
                if let Some(re) = get("identity_validation") {
                    def["identityValidationExpression"] = json!(re);
                }
                let header =
                    if kind == "token" { header_of(sources.first().map(String::as_str)) } else { "Unused".into() };
                json!({"type": "apiKey", "name": header, "in": "header", "x-amazon-apigateway-authtype": "custom",
                    "x-amazon-apigateway-authorizer": def})
            }
            "sigv4" => {
                json!({"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"})
            }
            other => {
                self.report.push(format!("authorizer {name}: type {other} is not exported"));
                return;
            }
        };
        self.schemes.insert(name.to_string(), scheme);
    }

    fn gateway_responses(&mut self, g: &BTreeMap<String, model::GatewayResponse>) -> Value {
        let mut out = Map::new();
        for (kind, r) in g {
            let mut v = Map::new();
            if let Some(s) = r.status {
                v.insert("statusCode".into(), json!(s));
            }
            if !r.headers.is_empty() {
                let p: Map<String, Value> = r
                    .headers
                    .iter()
                    .map(|(k, val)| (format!("gatewayresponse.header.{k}"), Value::String(format!("'{val}'"))))
                    .collect();
                v.insert("responseParameters".into(), Value::Object(p));
            }
            let body = match &r.body {
                Some(TemplateText::Vtl(t)) => self.vtl_text(&format!("gateway response {kind}"), t),
                Some(TemplateText::Text(t)) => {
                    self.report
                        .push(format!("gateway response {kind}: a minijinja body is exported as is; AWS reads VTL"));
                    Some(t.clone())
                }
                None => None,
            };
            if let Some(b) = body {
                v.insert("responseTemplates".into(), json!({"application/json": b}));
            }
            out.insert(kind.clone(), Value::Object(v));
        }
        Value::Object(out)
    }
}

fn has_mapping(i: &model::Integration) -> bool {
    i.request_templates.is_some() || i.responses.is_some() || i.passthrough_behavior.is_some()
}

fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A JSON Schema as OpenAPI 3.0's schema object: no `$schema`, and `type: [T, "null"]` as
/// `type: T` with `nullable: true`.
fn openapi_schema(s: &Value) -> Value {
    match s {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                match k.as_str() {
                    "$schema" => {}
                    "type" => match v.as_array() {
                        Some(list) => {
                            let kinds: Vec<&Value> = list.iter().filter(|t| t.as_str() != Some("null")).collect();
                            if kinds.len() < list.len() {
                                out.insert("nullable".into(), Value::Bool(true));
                            }
                            if let Some(first) = kinds.first() {
                                out.insert("type".into(), (*first).clone());
                            }
                        }
                        None => {
                            out.insert(k.clone(), v.clone());
                        }
                    },
                    "properties" | "patternProperties" | "definitions" | "$defs" => {
                        let m = v.as_object().map(|m| m.iter().map(|(n, s)| (n.clone(), openapi_schema(s))).collect());
                        out.insert(k.clone(), m.map(Value::Object).unwrap_or_else(|| v.clone()));
                    }
                    _ => {
                        out.insert(k.clone(), openapi_schema(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(openapi_schema).collect()),
        other => other.clone(),
    }
}
