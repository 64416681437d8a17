//! OpenAPI 3.0 / 3.1 and Swagger 2.0 import. A document (JSON or YAML) becomes one API in
//! the config's own terms: routes from paths and methods, `validate` from parameters and
//! request bodies (schemas with `$ref`s resolved, OpenAPI-only keywords translated), the
//! integration from `x-edgegate-integration` or AWS's `x-amazon-apigateway-integration`,
//! and `api_key_required` / authorizer names from security requirements.
//!
//! Both `edgegate import openapi` (prints the `[[apis]]` block) and `openapi = "FILE"` in an
//! API (merged at config load) use this. What cannot be expressed is listed in the report,
//! never silently dropped.

use serde_json::{Map, Value};
use toml::Value as T;

/// Which dialect a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Swagger2,
    OpenApi30,
    OpenApi31,
}

#[derive(Default)]
pub struct Options {
    /// The API's name (default: from `info.title`).
    pub name: Option<String>,
    /// `--stage NAME=URL`: stages whose `backend` variable is URL.
    pub stages: Vec<(String, String)>,
    /// Loading into a config, whose own stages apply: none are made.
    pub into_config: bool,
}

/// The imported API as a TOML table (`[[apis]]` entry), and what was not converted.
pub struct Import {
    pub api: toml::Table,
    pub report: Vec<String>,
    /// Authorizer names the routes refer to that the document does not define (they must be
    /// defined in `[authorizers]`).
    pub authorizers: Vec<String>,
    /// `[authorizers.NAME]` tables made from the document's `x-amazon-apigateway-authorizer`s.
    pub authorizer_defs: toml::Table,
}

/// The integration routes use when the document names none.
pub const DEFAULT_INTEGRATION: &str = "backend";
const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];
/// Recursive schemas are expanded this deep, then left open.
const MAX_DEPTH: usize = 12;

/// Parses JSON, or YAML (a superset; map keys such as `200:` become strings).
pub fn parse_document(bytes: &[u8]) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Ok(v);
    }
    let y: serde_yaml_ng::Value = serde_yaml_ng::from_slice(bytes).map_err(|e| format!("not JSON or YAML: {e}"))?;
    Ok(yaml_to_json(y))
}

/// YAML to JSON; non-string map keys (`200:`) become strings.
pub fn yaml_to_json(y: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match y {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().map(Value::from).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        Y::Number(n) => n.to_string(),
                        Y::Bool(b) => b.to_string(),
                        other => serde_yaml_ng::to_string(&other).unwrap_or_default().trim().to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

pub fn version(doc: &Value) -> Result<Version, String> {
    if doc.get("swagger").and_then(Value::as_str) == Some("2.0") {
        return Ok(Version::Swagger2);
    }
    match doc.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0") => Ok(Version::OpenApi30),
        Some(v) if v.starts_with("3.1") => Ok(Version::OpenApi31),
        Some(v) => Err(format!("OpenAPI version {v} is not supported (3.0, 3.1 or Swagger 2.0)")),
        None => Err("not an OpenAPI document: no \"openapi\" or \"swagger\" field".into()),
    }
}

struct Importer<'a> {
    doc: &'a Value,
    version: Version,
    report: Vec<String>,
    authorizers: Vec<String>,
    authorizer_defs: toml::Table,
    uses_default: bool,
}

/// `info.title` as an API name: lower case letters, digits and '-'.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "api".into()
    } else {
        out
    }
}

pub fn import(doc: &Value, opts: &Options) -> Result<Import, String> {
    let version = version(doc)?;
    let mut im = Importer {
        doc,
        version,
        report: vec![],
        authorizers: vec![],
        authorizer_defs: toml::Table::new(),
        uses_default: false,
    };
    let mut api = toml::Table::new();
    let name =
        opts.name.clone().unwrap_or_else(|| slug(doc.pointer("/info/title").and_then(Value::as_str).unwrap_or("api")));
    api.insert("name".into(), T::String(name));
    let (base_path, server) = im.server();
    if !base_path.is_empty() {
        api.insert("base_path".into(), T::String(base_path));
    }
    if let Some(types) = doc.get("x-amazon-apigateway-binary-media-types").and_then(Value::as_array) {
        let types: Vec<T> = types.iter().filter_map(Value::as_str).map(|s| T::String(s.to_string())).collect();
        api.insert("binary_media_types".into(), T::Array(types));
    }
    if let Some(c) = doc.get("x-amazon-apigateway-cors") {
        api.insert("cors".into(), T::Table(im.cors(c)));
    }
    im.root_extensions();
    if let Some(g) = doc.get("x-amazon-apigateway-gateway-responses").and_then(Value::as_object) {
        let responses = im.gateway_responses(g);
        if !responses.is_empty() {
            api.insert("gateway_responses".into(), T::Table(responses));
        }
    }

    let mut routes = vec![];
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            im.path_item(path, item, &mut routes);
        }
    }
    api.insert("routes".into(), T::Array(routes));

    let mut stages = toml::Table::new();
    let stage_list: Vec<(String, String)> = if opts.into_config {
        vec![]
    } else if opts.stages.is_empty() {
        match &server {
            Some(url) => vec![("prod".into(), url.clone())],
            None => {
                if im.uses_default {
                    im.report.push(
                        "no absolute server URL: stage \"prod\" gets a placeholder backend (http://127.0.0.1:8080); \
                         pass --stage prod=URL"
                            .into(),
                    );
                }
                vec![("prod".into(), "http://127.0.0.1:8080".into())]
            }
        }
    } else {
        opts.stages.clone()
    };
    for (s, url) in stage_list {
        let mut vars = toml::Table::new();
        vars.insert("backend".into(), T::String(url));
        let mut st = toml::Table::new();
        st.insert("variables".into(), T::Table(vars));
        stages.insert(s, T::Table(st));
    }
    api.insert("stages".into(), T::Table(stages));
    if im.uses_default {
        let mut integ = toml::Table::new();
        integ.insert("type".into(), T::String("http".into()));
        integ.insert("uri".into(), T::String("${stageVariables.backend}".into()));
        let mut integrations = toml::Table::new();
        integrations.insert(DEFAULT_INTEGRATION.into(), T::Table(integ));
        api.insert("integrations".into(), T::Table(integrations));
    }
    // the named integrations `x-edgegate-integration: NAME` refers to (as `export` writes them)
    if let Some(named) = doc.get("x-edgegate-integrations").and_then(Value::as_object) {
        let mut table = match api.remove("integrations") {
            Some(T::Table(t)) => t,
            _ => toml::Table::new(),
        };
        for (name, i) in named {
            let converted = json_to_toml(i, &mut |p| {
                im.report.push(format!("x-edgegate-integrations/{name}{p}: null left out"));
            });
            if let Some(t) = converted {
                table.insert(name.clone(), t);
            }
        }
        api.insert("integrations".into(), T::Table(table));
    }
    im.authorizers.sort();
    im.authorizers.dedup();
    let defined = im.authorizer_defs.clone();
    im.authorizers.retain(|a| !defined.contains_key(a));
    Ok(Import { api, report: im.report, authorizers: im.authorizers, authorizer_defs: im.authorizer_defs })
}

impl Importer<'_> {
    /// (base path, absolute backend URL) from `servers[0]` or `host` + `basePath`.
    fn server(&mut self) -> (String, Option<String>) {
        let (url, base) = match self.version {
            Version::Swagger2 => {
                let base = self.doc.get("basePath").and_then(Value::as_str).unwrap_or("").to_string();
                let url = self.doc.get("host").and_then(Value::as_str).map(|h| {
                    let scheme = self
                        .doc
                        .get("schemes")
                        .and_then(Value::as_array)
                        .and_then(|s| {
                            s.iter().filter_map(Value::as_str).find(|s| *s == "https").or(s.first()?.as_str())
                        })
                        .unwrap_or("https");
                    format!("{scheme}://{h}{base}")
                });
                (url, base)
            }
            _ => {
                let raw = self.doc.pointer("/servers/0/url").and_then(Value::as_str).unwrap_or("").to_string();
                if raw.contains('{') {
                    self.report.push(format!("server URL {raw:?} has variables: give the backend with --stage"));
                    (None, String::new())
                } else if let Some(rest) = raw.split_once("://").map(|(_, r)| r) {
                    let base = rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_default();
                    (Some(raw.trim_end_matches('/').to_string()), base)
                } else {
                    (None, raw)
                }
            }
        };
        let base = base.trim_end_matches('/').to_string();
        let base = if base.is_empty() || base.starts_with('/') { base } else { format!("/{base}") };
        (base, url)
    }

    fn root_extensions(&mut self) {
        let Some(obj) = self.doc.as_object() else { return };
        for k in obj.keys() {
            match k.as_str() {
                "x-amazon-apigateway-binary-media-types"
                | "x-amazon-apigateway-cors"
                | "x-amazon-apigateway-gateway-responses"
                | "x-amazon-apigateway-request-validators"
                | "x-amazon-apigateway-request-validator" => {}
                "x-amazon-apigateway-api-key-source" if obj[k].as_str() != Some("HEADER") => {
                    self.report.push(format!("{k} = {}: only HEADER is supported", obj[k]));
                }
                "x-amazon-apigateway-api-key-source" => {}
                k if k.starts_with("x-amazon-apigateway-") => self.report.push(format!("{k} is not converted")),
                _ => {}
            }
        }
    }

    fn cors(&mut self, c: &Value) -> toml::Table {
        let mut t = toml::Table::new();
        for (from, to) in [
            ("allowOrigins", "allow_origins"),
            ("allowMethods", "allow_methods"),
            ("allowHeaders", "allow_headers"),
            ("exposeHeaders", "expose_headers"),
        ] {
            if let Some(list) = c.get(from).and_then(Value::as_array) {
                t.insert(
                    to.into(),
                    T::Array(list.iter().filter_map(Value::as_str).map(|s| T::String(s.into())).collect()),
                );
            }
        }
        if let Some(s) = c.get("maxAge").and_then(Value::as_u64) {
            t.insert("max_age".into(), T::String(format!("{s}s")));
        }
        if let Some(b) = c.get("allowCredentials").and_then(Value::as_bool) {
            t.insert("allow_credentials".into(), T::Boolean(b));
        }
        t
    }

    /// A local `$ref` target (`#/components/...`, `#/definitions/...`).
    fn lookup(&self, r: &str) -> Option<&Value> {
        r.strip_prefix('#').and_then(|p| self.doc.pointer(p))
    }

    /// `v`, or what its `$ref` points at.
    fn resolved(&mut self, v: &Value, what: &str) -> Option<Value> {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => match self.lookup(r) {
                Some(t) => Some(t.clone()),
                None => {
                    self.report.push(format!("{what}: $ref {r:?} is not in this document; left out"));
                    None
                }
            },
            None => Some(v.clone()),
        }
    }

    fn path_item(&mut self, path: &str, item: &Value, routes: &mut Vec<T>) {
        if path.contains('?') || path.contains('#') {
            self.report.push(format!("path {path:?}: query strings in paths cannot be routed; left out"));
            return;
        }
        let (route_path, renamed) = route_path(path);
        if renamed {
            self.report.push(format!("path {path:?}: parameter names changed to {route_path:?}"));
        }
        let Some(obj) = item.as_object() else { return };
        let shared: Vec<Value> = obj.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        for (m, op) in obj {
            let method = if METHODS.contains(&m.as_str()) {
                m.to_ascii_uppercase()
            } else if m == "x-amazon-apigateway-any-method" {
                "ANY".into()
            } else {
                if m == "trace" {
                    self.report.push(format!("TRACE {path}: TRACE routes are not supported; left out"));
                }
                continue;
            };
            let key = format!("{method} {route_path}");
            routes.push(T::Table(self.operation(&key, op, &shared)));
        }
    }

    fn operation(&mut self, key: &str, op: &Value, shared: &[Value]) -> toml::Table {
        let mut r = toml::Table::new();
        r.insert("route".into(), T::String(key.into()));
        r.insert("integration".into(), self.integration(key, op));
        self.security(key, op, &mut r);
        let mut validate = toml::Table::new();
        let mut query = vec![];
        let mut headers = vec![];
        let mut params: Vec<Value> = vec![];
        for p in shared.iter().chain(op.get("parameters").and_then(Value::as_array).into_iter().flatten()) {
            let Some(p) = self.resolved(p, key) else { continue };
            let name = p.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let loc = p.get("in").and_then(Value::as_str).unwrap_or("").to_string();
            // an operation's parameter replaces the path item's of the same name and place
            params.retain(|q| {
                !(q.get("name").and_then(Value::as_str) == Some(&name)
                    && q.get("in").and_then(Value::as_str) == Some(&loc))
            });
            params.push(p);
        }
        for p in &params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            match p.get("in").and_then(Value::as_str).unwrap_or("") {
                "query" if required => query.push(T::String(name.into())),
                "header" if required => headers.push(T::String(name.to_ascii_lowercase())),
                "query" | "header" | "path" => {}
                "body" => {
                    if let Some(s) = p.get("schema") {
                        let schema = self.schema(s, key);
                        validate.insert("body".into(), schema);
                        if !required {
                            validate.insert("body_required".into(), T::Boolean(false));
                        }
                    }
                    let consumes = op.get("consumes").or(self.doc.get("consumes"));
                    self.content_types(
                        consumes.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()),
                        &mut validate,
                    );
                }
                "formData" => self.report.push(format!("{key}: form parameter {name:?} is not validated")),
                other => self.report.push(format!("{key}: {other} parameter {name:?} is not validated")),
            }
        }
        if let Some(rb) = op.get("requestBody") {
            if let Some(rb) = self.resolved(rb, key) {
                let required = rb.get("required").and_then(Value::as_bool).unwrap_or(false);
                if let Some(content) = rb.get("content").and_then(Value::as_object) {
                    let json = content.iter().find(|(t, _)| is_json(t)).and_then(|(_, c)| c.get("schema"));
                    if let Some(s) = json {
                        let schema = self.schema(s, key);
                        validate.insert("body".into(), schema);
                        if !required {
                            validate.insert("body_required".into(), T::Boolean(false));
                        }
                    }
                    self.content_types(Some(content.keys().map(String::as_str).collect()), &mut validate);
                }
            }
        }
        if !query.is_empty() {
            validate.insert("query".into(), T::Array(query));
        }
        if !headers.is_empty() {
            validate.insert("headers".into(), T::Array(headers));
        }
        self.request_validator(key, op, &mut validate);
        if !validate.is_empty() {
            r.insert("validate".into(), T::Table(validate));
        }
        r
    }

    /// API Gateway validates only what a method's request validator asks for
    /// (`x-amazon-apigateway-request-validator` on the operation, else the document's
    /// default, naming one of `x-amazon-apigateway-request-validators`). A document that uses
    /// validators gets AWS's rule; one without (plain OpenAPI, or an export whose API had no
    /// validator) is validated in full, as the document says: the stricter reading.
    fn request_validator(&mut self, key: &str, op: &Value, validate: &mut toml::Table) {
        let validators = self.doc.get("x-amazon-apigateway-request-validators").and_then(Value::as_object);
        let named = op
            .get("x-amazon-apigateway-request-validator")
            .or(self.doc.get("x-amazon-apigateway-request-validator"))
            .and_then(Value::as_str);
        if validators.is_none() && named.is_none() {
            return;
        }
        let v = named.and_then(|n| validators.and_then(|v| v.get(n)));
        if let (Some(n), None) = (named, v) {
            self.report.push(format!(
                "{key}: request validator {n:?} is not in x-amazon-apigateway-request-validators; nothing is validated"
            ));
        }
        let flag = |k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_bool).unwrap_or(false);
        if !flag("validateRequestBody") {
            for k in ["body", "body_required", "content_types"] {
                validate.remove(k);
            }
        }
        if !flag("validateRequestParameters") {
            for k in ["query", "headers"] {
                validate.remove(k);
            }
        }
    }

    /// An `[authorizers.NAME]` table from a security scheme's `x-amazon-apigateway-authorizer`:
    /// Cognito user pools and HTTP APIs' `jwt` become `jwt`; `token` and `request` Lambda
    /// authorizers become `token` / `request` ones invoking the function (name its endpoint).
    fn authorizer(&mut self, name: &str, scheme: &Value, def: &Value) -> Option<toml::Table> {
        let at = |k: &str| format!("security scheme {name}: x-amazon-apigateway-authorizer/{k}");
        let s = |v: &str| T::String(v.to_string());
        let mut t = toml::Table::new();
        let kind = def.get("type").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let header = scheme.get("name").and_then(Value::as_str).unwrap_or("Authorization");
        // method.request.header.X -> $request.header.X (and the like); several are comma-separated
        let sources = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_str)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| {
                    if let Some(rest) = x.strip_prefix("method.request.") {
                        format!("$request.{rest}")
                    } else if x.starts_with('$') {
                        x.to_string()
                    } else {
                        format!("${x}")
                    }
                })
                .collect()
        };
        match kind.as_str() {
            "cognito_user_pools" => {
                let arns: Vec<&str> = def
                    .get("providerARNs")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                // arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID
                let pool = arns.first().and_then(|a| {
                    let region = a.split(':').nth(3)?;
                    let id = a.rsplit_once("userpool/")?.1;
                    Some(format!("https://cognito-idp.{region}.amazonaws.com/{id}"))
                });
                let Some(issuer) = pool else {
                    self.report
                        .push(format!("{}: no user pool ARN; authorizer {name} not defined", at("providerARNs")));
                    return None;
                };
                if arns.len() > 1 {
                    self.report.push(format!("{}: only the first user pool is trusted", at("providerARNs")));
                }
                t.insert("type".into(), s("jwt"));
                t.insert("jwks".into(), T::String(format!("{issuer}/.well-known/jwks.json")));
                t.insert("issuer".into(), T::String(issuer));
                let source = sources(def.get("identitySource"));
                let source = source.first().cloned().unwrap_or(format!("$request.header.{header}"));
                t.insert("identity_source".into(), T::String(source));
                t.insert("algorithms".into(), T::Array(vec![s("RS256")]));
            }
            "jwt" => {
                let c = def.get("jwtConfiguration");
                let Some(issuer) = c.and_then(|c| c.get("issuer")).and_then(Value::as_str) else {
                    self.report.push(format!("{}: no issuer; authorizer {name} not defined", at("jwtConfiguration")));
                    return None;
                };
                t.insert("type".into(), s("jwt"));
                t.insert("issuer".into(), s(issuer));
                t.insert("jwks".into(), T::String(format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'))));
                let aud: Vec<T> = c
                    .and_then(|c| c.get("audience"))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(s).collect())
                    .unwrap_or_default();
                if !aud.is_empty() {
                    t.insert("audience".into(), T::Array(aud));
                }
                if let Some(src) = sources(def.get("identitySource")).first() {
                    t.insert("identity_source".into(), s(src));
                }
            }
            "token" | "request" => {
                let uri = def.get("authorizerUri").and_then(Value::as_str).unwrap_or("");
                let Some(AwsUri::Lambda { function, region }) = parse_aws_uri(uri) else {
                    self.report.push(format!(
                        "{}: {uri:?} is not a Lambda function; authorizer {name} not defined",
                        at("authorizerUri")
                    ));
                    return None;
                };
                t.insert("type".into(), s(&kind));
                let mut l = toml::Table::new();
                l.insert("function".into(), T::String(function));
                l.insert("region".into(), T::String(region));
                t.insert("lambda".into(), T::Table(l));
                let src = sources(def.get("identitySource"));
                if kind == "token" {
                    let one = src.first().cloned().unwrap_or(format!("$request.header.{header}"));
                    t.insert("identity_source".into(), T::String(one));
                } else if !src.is_empty() {
                    t.insert("identity_sources".into(), T::Array(src.into_iter().map(T::String).collect()));
                }
                // REST authorizers answer with an IAM policy; HTTP APIs' may use simple responses
                let simple = def.get("enableSimpleResponses").and_then(Value::as_bool).unwrap_or(false);
                t.insert("response".into(), s(if simple { "simple" } else { "iam" }));
                let ttl = def.get("authorizerResultTtlInSeconds").and_then(Value::as_u64).unwrap_or(300);
                t.insert("result_ttl".into(), T::String(format!("{ttl}s")));
                if let Some(re) = def.get("identityValidationExpression").and_then(Value::as_str) {
                    if kind == "token" {
                        t.insert("identity_validation".into(), s(re));
                    } else {
                        self.report
                            .push(format!("{} applies to token authorizers only", at("identityValidationExpression")));
                    }
                }
                if def.get("authorizerCredentials").is_some() {
                    self.report.push(format!(
                        "{} is not converted: the function is invoked with the gateway's own AWS credentials",
                        at("authorizerCredentials")
                    ));
                }
            }
            other => {
                self.report
                    .push(format!("{}: type {other:?} is not supported; authorizer {name} not defined", at("type")));
                return None;
            }
        }
        Some(t)
    }

    /// `x-amazon-apigateway-gateway-responses` as `gateway_responses`: the status, literal
    /// `gatewayresponse.header.*` values and the JSON response template (as VTL).
    fn gateway_responses(&mut self, g: &Map<String, Value>) -> toml::Table {
        let mut out = toml::Table::new();
        for (kind, r) in g {
            let at = format!("x-amazon-apigateway-gateway-responses/{kind}");
            if crate::responses::ResponseType::from_name(kind).is_none() {
                self.report.push(format!("{at}: response type {kind} is not one of the gateway's; not converted"));
                continue;
            }
            let mut t = toml::Table::new();
            if let Some(st) = r.get("statusCode").and_then(|s| s.as_u64().or_else(|| s.as_str()?.parse().ok())) {
                t.insert("status".into(), T::Integer(st as i64));
            }
            let mut headers = toml::Table::new();
            for (k, v) in r.get("responseParameters").and_then(Value::as_object).into_iter().flatten() {
                let literal = v.as_str().and_then(|v| v.strip_prefix('\'')?.strip_suffix('\''));
                match (k.strip_prefix("gatewayresponse.header."), literal) {
                    (Some(h), Some(v)) => {
                        headers.insert(h.to_ascii_lowercase(), T::String(v.to_string()));
                    }
                    _ => self
                        .report
                        .push(format!("{at}/responseParameters/{k}: only literal header values are converted")),
                }
            }
            if !headers.is_empty() {
                t.insert("headers".into(), T::Table(headers));
            }
            if let Some(tpls) = r.get("responseTemplates").and_then(Value::as_object) {
                let json = tpls.iter().find(|(m, _)| is_json(m)).or(tpls.iter().next());
                if let Some((media, tpl)) = json {
                    let mut v = toml::Table::new();
                    v.insert("vtl".into(), T::String(tpl.as_str().unwrap_or("").to_string()));
                    t.insert("body".into(), T::Table(v));
                    for m in tpls.keys().filter(|m| *m != media) {
                        self.report
                            .push(format!("{at}/responseTemplates/{m}: one template per response; {media} is kept"));
                    }
                }
            }
            out.insert(kind.clone(), T::Table(t));
        }
        out
    }

    /// Lists the accepted media types when they are not just JSON.
    fn content_types(&mut self, types: Option<Vec<&str>>, validate: &mut toml::Table) {
        let Some(types) = types else { return };
        if types.iter().all(|t| is_json(t)) {
            return;
        }
        validate.insert(
            "content_types".into(),
            T::Array(types.iter().map(|t| T::String(t.to_ascii_lowercase())).collect()),
        );
    }

    fn security(&mut self, key: &str, op: &Value, r: &mut toml::Table) {
        let Some(reqs) = op.get("security").or(self.doc.get("security")).and_then(Value::as_array) else { return };
        let Some(first) = reqs.first().and_then(Value::as_object) else { return };
        if reqs.len() > 1 {
            let alts: Vec<String> = reqs[1..]
                .iter()
                .filter_map(Value::as_object)
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join("+"))
                .collect();
            self.report.push(format!(
                "{key}: alternative security requirements [{}] not converted; the route uses {}",
                alts.join(", "),
                first.keys().cloned().collect::<Vec<_>>().join("+")
            ));
        }
        let schemes_at =
            if self.version == Version::Swagger2 { "/securityDefinitions" } else { "/components/securitySchemes" };
        for (name, scopes) in first {
            let Some(scheme) = self.doc.pointer(&format!("{schemes_at}/{name}")).cloned() else {
                self.report.push(format!("{key}: security scheme {name:?} is not defined in the document"));
                continue;
            };
            let kind = scheme.get("type").and_then(Value::as_str).unwrap_or("");
            // a custom authorizer, or IAM (SigV4): an authorizer, not an API key
            let custom = scheme.get("x-amazon-apigateway-authorizer").is_some()
                || scheme.get("x-amazon-apigateway-authtype").and_then(Value::as_str) == Some("awsSigv4");
            match kind {
                "apiKey" if !custom => {
                    let place = scheme.get("in").and_then(Value::as_str).unwrap_or("");
                    let header = scheme.get("name").and_then(Value::as_str).unwrap_or("");
                    if place != "header" {
                        self.report.push(format!("{key}: API key in {place} is not supported (header only)"));
                    } else if !header.eq_ignore_ascii_case("x-api-key") {
                        self.report.push(format!(
                            "{key}: API key header {header:?}: set [api_keys] header = {header:?} for this API's clients"
                        ));
                    }
                    r.insert("api_key_required".into(), T::Boolean(true));
                }
                "http"
                    if scheme
                        .get("scheme")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.eq_ignore_ascii_case("bearer")) =>
                {
                    self.report.push(format!("{key}: HTTP {} authentication is not supported", scheme["scheme"]));
                }
                _ => {
                    if r.contains_key("authorizer") {
                        self.report.push(format!("{key}: a second authorizer {name:?} is not converted"));
                        continue;
                    }
                    r.insert("authorizer".into(), T::String(name.clone()));
                    if let Some(def) = scheme.get("x-amazon-apigateway-authorizer") {
                        if !self.authorizer_defs.contains_key(name) {
                            if let Some(t) = self.authorizer(name, &scheme, def) {
                                self.authorizer_defs.insert(name.clone(), T::Table(t));
                            }
                        }
                    }
                    let scopes: Vec<T> = scopes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|s| T::String(s.into()))
                        .collect();
                    if !scopes.is_empty() {
                        r.insert("scopes".into(), T::Array(scopes));
                    }
                    self.authorizers.push(name.clone());
                }
            }
        }
    }

    fn integration(&mut self, key: &str, op: &Value) -> T {
        if let Some(x) = op.get("x-edgegate-integration") {
            return match x {
                Value::String(name) => T::String(name.clone()),
                other => json_to_toml(other, &mut |p| {
                    self.report.push(format!("{key}: x-edgegate-integration{p}: null left out"))
                })
                .unwrap_or(T::String(DEFAULT_INTEGRATION.into())),
            };
        }
        let Some(aws) = op.get("x-amazon-apigateway-integration") else {
            self.uses_default = true;
            return T::String(DEFAULT_INTEGRATION.into());
        };
        let kind = aws.get("type").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let mut t = toml::Table::new();
        match kind.as_str() {
            "http" | "http_proxy" => {
                t.insert("type".into(), T::String("http".into()));
                let uri = aws.get("uri").and_then(Value::as_str).unwrap_or("");
                t.insert("uri".into(), T::String(uri.into()));
                if let Some(ms) = aws.get("timeoutInMillis").and_then(Value::as_u64) {
                    t.insert("timeout".into(), T::String(format!("{ms}ms")));
                }
                let route_method = key.split(' ').next().unwrap_or("");
                if let Some(m) = aws.get("httpMethod").and_then(Value::as_str) {
                    if kind == "http_proxy"
                        && !m.eq_ignore_ascii_case(route_method)
                        && m != "ANY"
                        && route_method != "ANY"
                    {
                        self.report
                            .push(format!("{key}: integration httpMethod {m} differs; the request's method is kept"));
                    }
                }
                if kind == "http" {
                    // a non-proxy (custom) http integration: the gateway maps request and answer
                    t.insert("proxy".into(), T::Boolean(false));
                    if let Some(m) = aws.get("httpMethod").and_then(Value::as_str).filter(|m| *m != "ANY") {
                        t.insert("method".into(), T::String(m.to_ascii_uppercase()));
                    }
                    self.mapping(key, aws, &mut t);
                } else {
                    for k in ["requestParameters", "requestTemplates", "responses"] {
                        if aws.get(k).is_some() {
                            self.report.push(format!(
                                "{key}: x-amazon-apigateway-integration/{k} is not applied to an http_proxy integration"
                            ));
                        }
                    }
                }
            }
            "mock" if aws.get("requestTemplates").is_some() || has_vtl_responses(aws) => {
                t.insert("type".into(), T::String("mock".into()));
                self.mapping(key, aws, &mut t);
            }
            "mock" => {
                t.insert("type".into(), T::String("mock".into()));
                let resp = aws.pointer("/responses/default");
                let status = resp
                    .and_then(|r| r.get("statusCode"))
                    .and_then(|s| s.as_str().and_then(|s| s.parse().ok()).or(s.as_u64()));
                t.insert("status".into(), T::Integer(status.unwrap_or(200) as i64));
                if let Some(body) =
                    resp.and_then(|r| r.pointer("/responseTemplates/application~1json")).and_then(Value::as_str)
                {
                    t.insert("body".into(), T::String(body.into()));
                    let mut h = toml::Table::new();
                    h.insert("content-type".into(), T::String("application/json".into()));
                    t.insert("headers".into(), T::Table(h));
                }
            }
            "aws" | "aws_proxy" => {
                let uri = aws.get("uri").and_then(Value::as_str).unwrap_or("");
                match parse_aws_uri(uri) {
                    Some(AwsUri::Lambda { function, region }) => {
                        t.insert("type".into(), T::String("lambda".into()));
                        t.insert("function".into(), T::String(function));
                        t.insert("region".into(), T::String(region));
                        if kind == "aws" {
                            t.insert("proxy".into(), T::Boolean(false));
                            self.mapping(key, aws, &mut t);
                        } else {
                            t.insert("payload_format".into(), T::String("1.0".into()));
                        }
                    }
                    Some(AwsUri::Service { service, region, action, path }) if kind == "aws" => {
                        t.insert("type".into(), T::String("aws".into()));
                        t.insert("service".into(), T::String(service));
                        t.insert("region".into(), T::String(region));
                        if let Some(a) = action {
                            t.insert("action".into(), T::String(a));
                        }
                        if let Some(p) = path {
                            t.insert("path".into(), T::String(p));
                        }
                        if let Some(m) = aws.get("httpMethod").and_then(Value::as_str) {
                            t.insert("method".into(), T::String(m.to_ascii_uppercase()));
                        }
                        self.mapping(key, aws, &mut t);
                    }
                    _ => {
                        self.report.push(format!(
                            "{key}: integration uri {uri:?} ({kind}) is not converted; the route answers 501"
                        ));
                        t.insert("type".into(), T::String("mock".into()));
                        t.insert("status".into(), T::Integer(501));
                    }
                }
                if let Some(ms) = aws.get("timeoutInMillis").and_then(Value::as_u64) {
                    t.insert("timeout".into(), T::String(format!("{ms}ms")));
                }
            }
            other => {
                self.report.push(format!("{key}: integration type {other:?} is not supported; the route answers 501"));
                t.insert("type".into(), T::String("mock".into()));
                t.insert("status".into(), T::Integer(501));
                t.insert(
                    "body".into(),
                    T::String(format!("{{\"message\": \"integration type {other} is not supported\"}}")),
                );
            }
        }
        T::Table(t)
    }

    /// `requestTemplates`, `passthroughBehavior` and `responses` of an AWS integration as
    /// `request_templates`, `passthrough_behavior` and `[[responses]]`; what cannot be
    /// converted is reported with its JSON pointer.
    fn mapping(&mut self, key: &str, aws: &Value, t: &mut toml::Table) {
        let pointer = |k: &str| format!("{key}: x-amazon-apigateway-integration/{k}");
        if let Some(rt) = aws.get("requestTemplates").and_then(Value::as_object) {
            let mut m = toml::Table::new();
            for (media, tpl) in rt {
                if let Some(tpl) = tpl.as_str() {
                    m.insert(media.clone(), T::String(tpl.to_string()));
                }
            }
            t.insert("request_templates".into(), T::Table(m));
        }
        if let Some(pb) = aws.get("passthroughBehavior").and_then(Value::as_str) {
            t.insert("passthrough_behavior".into(), T::String(pb.to_ascii_lowercase()));
        }
        if let Some(rp) = aws.get("requestParameters").and_then(Value::as_object) {
            let kind = t.get("type").and_then(T::as_str);
            let custom = t.get("proxy") == Some(&T::Boolean(false));
            if kind == Some("aws") || (matches!(kind, Some("http" | "lambda")) && custom) {
                let mut m = toml::Table::new();
                for (k, v) in rp {
                    if let Some(v) = v.as_str() {
                        m.insert(k.clone(), T::String(v.to_string()));
                    }
                }
                t.insert("request_parameters".into(), T::Table(m));
            } else {
                self.report.push(format!("{} is not converted (request_parameters)", pointer("requestParameters")));
            }
        }
        if aws.get("credentials").is_some() {
            self.report.push(format!(
                "{} is not converted: calls are signed with the gateway's own AWS credential chain",
                pointer("credentials")
            ));
        }
        if let Some(c) = aws.get("contentHandling").and_then(Value::as_str) {
            match c {
                "CONVERT_TO_TEXT" | "CONVERT_TO_BINARY" => {
                    t.insert("content_handling".into(), T::String(c.to_ascii_lowercase()));
                }
                _ => self.report.push(format!("{} {c:?} is not converted", pointer("contentHandling"))),
            }
        }
        let Some(responses) = aws.get("responses").and_then(Value::as_object) else { return };
        let mut rules: Vec<(bool, toml::Table)> = Vec::new();
        for (pattern, r) in responses {
            let mut rule = toml::Table::new();
            let default = pattern == "default";
            rule.insert("selection_pattern".into(), T::String(if default { String::new() } else { pattern.clone() }));
            let status = r
                .get("statusCode")
                .and_then(|s| s.as_str().and_then(|s| s.parse::<i64>().ok()).or(s.as_i64()))
                .unwrap_or(200);
            rule.insert("status".into(), T::Integer(status));
            if let Some(ps) = r.get("responseParameters").and_then(Value::as_object) {
                let mut params = toml::Table::new();
                for (target, source) in ps {
                    let source = source.as_str().unwrap_or("");
                    let ok = target.starts_with("method.response.header.")
                        && ((source.starts_with('\'') && source.ends_with('\'') && source.len() >= 2)
                            || source.starts_with("integration.response.header."));
                    if ok {
                        params.insert(target.clone(), T::String(source.to_string()));
                    } else {
                        self.report.push(format!(
                            "{} {target} = {source:?} is not converted",
                            pointer(&format!(
                                "responses/{}/responseParameters",
                                pattern.replace('~', "~0").replace('/', "~1")
                            ))
                        ));
                    }
                }
                if !params.is_empty() {
                    rule.insert("parameters".into(), T::Table(params));
                }
            }
            if let Some(ts) = r.get("responseTemplates").and_then(Value::as_object) {
                let mut m = toml::Table::new();
                for (media, tpl) in ts {
                    if let Some(tpl) = tpl.as_str() {
                        m.insert(media.clone(), T::String(tpl.to_string()));
                    }
                }
                rule.insert("templates".into(), T::Table(m));
            }
            if let Some(c) = r.get("contentHandling").and_then(Value::as_str) {
                if matches!(c, "CONVERT_TO_TEXT" | "CONVERT_TO_BINARY") {
                    rule.insert("content_handling".into(), T::String(c.to_ascii_lowercase()));
                }
            }
            rules.push((default, rule));
        }
        // patterns first, the default last (the first match wins)
        rules.sort_by_key(|(d, _)| *d);
        t.insert("responses".into(), T::Array(rules.into_iter().map(|(_, r)| T::Table(r)).collect()));
    }

    /// A request body schema in JSON Schema terms, as TOML.
    fn schema(&mut self, s: &Value, key: &str) -> T {
        let mut stack = vec![];
        let mut out = self.expand(s, key, &mut stack, 0);
        if let Value::Object(o) = &mut out {
            let draft = match self.version {
                Version::OpenApi31 => "https://json-schema.org/draft/2020-12/schema",
                _ => "http://json-schema.org/draft-04/schema#",
            };
            o.insert("$schema".into(), Value::String(draft.into()));
        }
        let mut nulls = vec![];
        let t = json_to_toml(&out, &mut |p| nulls.push(p)).unwrap_or(T::Table(toml::Table::new()));
        for p in nulls {
            self.report.push(format!("{key}: schema value at {p} is null, which TOML cannot hold; left out"));
        }
        t
    }

    fn expand(&mut self, s: &Value, key: &str, stack: &mut Vec<String>, depth: usize) -> Value {
        match s {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    if stack.iter().any(|x| x == r) || depth > MAX_DEPTH {
                        self.report
                            .push(format!("{key}: recursive schema {r} is checked down to its first repetition"));
                        return Value::Object(Map::new());
                    }
                    let Some(target) = self.lookup(r).cloned() else {
                        self.report.push(format!("{key}: schema $ref {r:?} is not in this document; not checked"));
                        return Value::Object(Map::new());
                    };
                    stack.push(r.to_string());
                    let mut v = self.expand(&target, key, stack, depth + 1);
                    stack.pop();
                    // 3.1 allows keywords beside $ref: they apply too
                    if let (Value::Object(vo), true) = (&mut v, o.len() > 1) {
                        let siblings: Vec<(String, Value)> =
                            o.iter().filter(|(k, _)| *k != "$ref").map(|(k, x)| (k.clone(), x.clone())).collect();
                        for (k, x) in siblings {
                            if !is_annotation(&k) {
                                let x = self.expand(&x, key, stack, depth + 1);
                                vo.insert(k, x);
                            }
                        }
                    }
                    return v;
                }
                let mut out = Map::new();
                for (k, v) in o {
                    if is_annotation(k) {
                        continue;
                    }
                    if k == "nullable" {
                        continue;
                    }
                    // names under `properties` are data, not keywords
                    let v = if k == "properties" || k == "patternProperties" || k == "definitions" || k == "$defs" {
                        match v {
                            Value::Object(props) => Value::Object(
                                props.iter().map(|(n, p)| (n.clone(), self.expand(p, key, stack, depth + 1))).collect(),
                            ),
                            other => other.clone(),
                        }
                    } else {
                        self.expand(v, key, stack, depth + 1)
                    };
                    out.insert(k.clone(), v);
                }
                if self.version != Version::OpenApi31 && o.get("nullable").and_then(Value::as_bool) == Some(true) {
                    if let Some(Value::String(t)) = out.get("type").cloned() {
                        out.insert("type".into(), Value::Array(vec![Value::String(t), Value::String("null".into())]));
                    }
                    if let Some(Value::Array(e)) = out.get_mut("enum") {
                        e.push(Value::Null);
                    }
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.expand(x, key, stack, depth + 1)).collect()),
            other => other.clone(),
        }
    }
}

/// OpenAPI keywords that only document (or drive code generators): left out of schemas.
fn is_annotation(k: &str) -> bool {
    matches!(k, "example" | "examples" | "xml" | "externalDocs" | "discriminator" | "deprecated") || k.starts_with("x-")
}

pub(crate) fn is_json(media_type: &str) -> bool {
    crate::request::is_json(&crate::request::media_type(Some(media_type)))
}

/// `/pets/{pet-id}` -> `/pets/{pet_id}`: route parameters are letters, digits and '_'.
fn route_path(p: &str) -> (String, bool) {
    let mut changed = false;
    let out = p
        .split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let (name, plus) = name.strip_suffix('+').map_or((name, ""), |n| (n, "+"));
                let clean: String =
                    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
                changed |= clean != name;
                format!("{{{clean}{plus}}}")
            }
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/");
    (if out.is_empty() { "/".into() } else { out }, changed)
}

/// JSON to TOML; `null`s (which TOML lacks) are left out and reported by JSON pointer.
fn json_to_toml(v: &Value, on_null: &mut dyn FnMut(String)) -> Option<T> {
    fn go(v: &Value, at: &str, on_null: &mut dyn FnMut(String)) -> Option<T> {
        Some(match v {
            Value::Null => {
                on_null(if at.is_empty() { "/".into() } else { at.into() });
                return None;
            }
            Value::Bool(b) => T::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => T::Integer(i),
                None => T::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => T::String(s.clone()),
            Value::Array(a) => {
                T::Array(a.iter().enumerate().filter_map(|(i, x)| go(x, &format!("{at}/{i}"), on_null)).collect())
            }
            Value::Object(o) => T::Table(
                o.iter()
                    .filter_map(|(k, x)| {
                        go(x, &format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), on_null)
                            .map(|t| (k.clone(), t))
                    })
                    .collect(),
            ),
        })
    }
    go(v, "", on_null)
}

/// The `[[apis]]` block for `edgegate import openapi`, with the report as comments.
pub fn to_toml(im: &Import) -> Result<String, String> {
    let mut out = String::new();
    out.push_str("# Imported by `edgegate import openapi`.\n");
    for line in &im.report {
        out.push_str(&format!("# not converted: {line}\n"));
    }
    if !im.authorizers.is_empty() {
        out.push_str(&format!("# define these authorizers in [authorizers]: {}\n", im.authorizers.join(", ")));
    }
    let mut root = toml::Table::new();
    if !im.authorizer_defs.is_empty() {
        root.insert("authorizers".into(), T::Table(im.authorizer_defs.clone()));
    }
    root.insert("apis".into(), T::Array(vec![T::Table(im.api.clone())]));
    let text = toml::to_string(&root).map_err(|e| e.to_string())?;
    // layout: a route reads route, integration, access, validate; schemas and inline
    // integrations stay one value each instead of dozens of sub-tables
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    const ORDER: [&str; 6] = ["route", "integration", "authorizer", "scopes", "api_key_required", "validate"];
    let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
    if let Some(routes) = doc
        .get_mut("apis")
        .and_then(|a| a.as_array_of_tables_mut())
        .and_then(|a| a.get_mut(0))
        .and_then(|api| api.get_mut("routes"))
        .and_then(|r| r.as_array_of_tables_mut())
    {
        for route in routes.iter_mut() {
            for key in ["integration"] {
                if let Some(t) = route.get_mut(key).and_then(|i| i.as_table_mut()) {
                    let inline = std::mem::take(t).into_inline_table();
                    route.insert(key, toml_edit::value(inline));
                }
            }
            if let Some(v) = route.get_mut("validate").and_then(|v| v.as_table_mut()) {
                if let Some(body) = v.get_mut("body").and_then(|b| b.as_table_mut()) {
                    let inline = std::mem::take(body).into_inline_table();
                    v.insert("body", toml_edit::value(inline));
                }
            }
            route.sort_values_by(|a, _, b, _| rank(a.get()).cmp(&rank(b.get())));
        }
    }
    out.push_str(&doc.to_string());
    Ok(out)
}

/// What an `aws` / `aws_proxy` integration's `uri` names.
enum AwsUri {
    Lambda { function: String, region: String },
    Service { service: String, region: String, action: Option<String>, path: Option<String> },
}

/// `arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations`,
/// `arn:aws:apigateway:REGION:SERVICE:action/ACTION`, `…:SERVICE:path/PATH`.
fn parse_aws_uri(uri: &str) -> Option<AwsUri> {
    let rest = uri.strip_prefix("arn:aws:apigateway:")?;
    let (region, rest) = rest.split_once(':')?;
    let (service, rest) = rest.split_once(':')?;
    if service == "lambda" {
        let f = rest.strip_prefix("path/2015-03-31/functions/")?.strip_suffix("/invocations")?;
        return Some(AwsUri::Lambda { function: f.to_string(), region: region.to_string() });
    }
    let (action, path) = match rest.split_once('/') {
        Some(("action", a)) => (Some(a.split('&').next().unwrap_or(a).to_string()), None),
        Some(("path", p)) => (None, Some(format!("/{p}"))),
        _ => return None,
    };
    Some(AwsUri::Service { service: service.to_string(), region: region.to_string(), action, path })
}

fn has_vtl_responses(aws: &Value) -> bool {
    aws.get("responses").and_then(Value::as_object).is_some_and(|r| {
        r.values().any(|x| {
            x.get("responseTemplates")
                .and_then(Value::as_object)
                .is_some_and(|t| t.values().any(|v| v.as_str().is_some_and(|v| v.contains('$') || v.contains('#'))))
                || x.get("responseParameters").is_some()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_params_and_security() {
        let doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "My Pets API!"},
            "servers": [{"url": "https://pets.example.com/v1"}],
            "components": {
                "schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "nullable": true, "example": "rex"}}}},
                "securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "x-api-key"}, "jwt": {"type": "http", "scheme": "bearer"}}
            },
            "paths": {
                "/pets/{pet-id}": {
                    "parameters": [{"name": "x-client", "in": "header", "required": true}],
                    "get": {"security": [{"key": []}], "parameters": [{"name": "lang", "in": "query", "required": true}]},
                    "post": {
                        "security": [{"jwt": ["pets/write"]}],
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}
                    },
                    "trace": {}
                }
            }
        });
        let im = import(&doc, &Options::default()).expect("import");
        assert_eq!(im.api["name"].as_str(), Some("my-pets-api"));
        assert_eq!(im.api["base_path"].as_str(), Some("/v1"));
        let routes = im.api["routes"].as_array().expect("routes");
        let get = routes.iter().find(|r| r["route"].as_str() == Some("GET /pets/{pet_id}")).expect("get");
        assert_eq!(get["api_key_required"].as_bool(), Some(true));
        assert_eq!(get["validate"]["query"].as_array().map(Vec::len), Some(1));
        assert_eq!(get["validate"]["headers"][0].as_str(), Some("x-client"));
        let post = routes.iter().find(|r| r["route"].as_str() == Some("POST /pets/{pet_id}")).expect("post");
        assert_eq!(post["authorizer"].as_str(), Some("jwt"));
        assert_eq!(post["scopes"][0].as_str(), Some("pets/write"));
        let body = &post["validate"]["body"];
        assert_eq!(body["properties"]["name"]["type"].as_array().map(Vec::len), Some(2), "nullable -> [string, null]");
        assert!(body["properties"]["name"].get("example").is_none());
        assert!(im.report.iter().any(|r| r.contains("TRACE")), "{:?}", im.report);
        assert!(im.report.iter().any(|r| r.contains("parameter names changed")), "{:?}", im.report);
        assert_eq!(im.api["stages"]["prod"]["variables"]["backend"].as_str(), Some("https://pets.example.com/v1"));
        assert_eq!(im.authorizers, vec!["jwt".to_string()]);
    }

    #[test]
    fn aws_extensions_and_recursion() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "t"},
            "x-amazon-apigateway-binary-media-types": ["image/png"],
            "x-amazon-apigateway-policy": {},
            "x-amazon-apigateway-request-validators": {"all": {"validateRequestBody": true, "validateRequestParameters": true}},
            "x-amazon-apigateway-request-validator": "all",
            "definitions": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/definitions/Node"}}}},
            "paths": {
                "/a": {"get": {"x-amazon-apigateway-integration": {"type": "http_proxy", "uri": "http://127.0.0.1:9/a", "httpMethod": "GET", "timeoutInMillis": 5000}}},
                "/m": {"get": {"x-amazon-apigateway-integration": {"type": "mock", "responses": {"default": {"statusCode": "204"}}}}},
                "/l": {"post": {"x-amazon-apigateway-integration": {"type": "aws_proxy"}}},
                "/n": {"post": {"parameters": [{"in": "body", "name": "b", "schema": {"$ref": "#/definitions/Node"}}]}},
                "/e": {"get": {"x-edgegate-integration": {"type": "mock", "status": 200, "body": "hi"}}}
            }
        });
        let im = import(
            &doc,
            &Options {
                name: Some("x".into()),
                stages: vec![("dev".into(), "http://127.0.0.1:1".into())],
                into_config: false,
            },
        )
        .expect("import");
        let route = |k: &str| {
            im.api["routes"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["route"].as_str() == Some(k)).cloned())
                .expect(k)
        };
        assert_eq!(route("GET /a")["integration"]["timeout"].as_str(), Some("5000ms"));
        assert_eq!(route("GET /m")["integration"]["status"].as_integer(), Some(204));
        assert_eq!(route("POST /l")["integration"]["status"].as_integer(), Some(501));
        assert_eq!(route("GET /e")["integration"]["body"].as_str(), Some("hi"));
        let body = &route("POST /n")["validate"]["body"];
        assert_eq!(body["$schema"].as_str(), Some("http://json-schema.org/draft-04/schema#"));
        assert!(im.report.iter().any(|r| r.contains("aws_proxy")));
        assert!(im.report.iter().any(|r| r.contains("recursive schema")));
        assert!(im.report.iter().any(|r| r.contains("x-amazon-apigateway-policy")));
        assert_eq!(im.api["binary_media_types"][0].as_str(), Some("image/png"));
        assert!(im.api["stages"].get("dev").is_some());
        let text = to_toml(&im).expect("toml");
        assert!(text.contains("[[apis.routes]]"), "{text}");
        toml::from_str::<toml::Table>(&text).expect("valid TOML");
    }

    #[test]
    fn aws_authorizers_validators_and_gateway_responses() {
        let lambda = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:1:function:auth/invocations";
        let doc = json!({
            "openapi": "3.0.1",
            "info": {"title": "t", "version": "1"},
            "x-amazon-apigateway-request-validators": {"params": {"validateRequestBody": false, "validateRequestParameters": true}},
            "x-amazon-apigateway-request-validator": "params",
            "x-amazon-apigateway-gateway-responses": {
                "DEFAULT_4XX": {"responseParameters": {"gatewayresponse.header.x-a": "'1'", "gatewayresponse.header.x-b": "method.request.header.x"}},
                "NOT_A_TYPE": {}
            },
            "components": {"securitySchemes": {
                "tok": {"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "custom",
                    "x-amazon-apigateway-authorizer": {"type": "token", "authorizerUri": lambda, "authorizerResultTtlInSeconds": 60, "identityValidationExpression": "^x"}},
                "req": {"type": "apiKey", "name": "u", "in": "header", "x-amazon-apigateway-authtype": "custom",
                    "x-amazon-apigateway-authorizer": {"type": "request", "authorizerUri": lambda, "identitySource": "method.request.header.A, method.request.querystring.b, context.sourceIp"}},
                "http": {"type": "oauth2", "flows": {}, "x-amazon-apigateway-authorizer": {"type": "jwt", "jwtConfiguration": {"issuer": "https://idp.test/", "audience": ["x"]}, "identitySource": "$request.header.Authorization"}}
            }},
            "paths": {
                "/a": {"post": {"security": [{"tok": []}], "parameters": [{"name": "q", "in": "query", "required": true}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}}}},
                "/b": {"get": {"security": [{"req": []}]}},
                "/c": {"get": {"security": [{"http": ["s"]}]}}
            }
        });
        let im = import(&doc, &Options::default()).expect("import");
        let defs = &im.authorizer_defs;
        assert_eq!(defs["tok"]["type"].as_str(), Some("token"));
        assert_eq!(defs["tok"]["lambda"]["function"].as_str(), Some("arn:aws:lambda:eu-west-1:1:function:auth"));
        assert_eq!(defs["tok"]["result_ttl"].as_str(), Some("60s"));
        assert_eq!(defs["tok"]["identity_source"].as_str(), Some("$request.header.Authorization"));
        let sources: Vec<&str> =
            defs["req"]["identity_sources"].as_array().expect("list").iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(sources, ["$request.header.A", "$request.querystring.b", "$context.sourceIp"]);
        assert_eq!(defs["http"]["issuer"].as_str(), Some("https://idp.test/"));
        assert!(im.authorizers.is_empty(), "every authorizer is defined: {:?}", im.authorizers);
        assert_eq!(defs["tok"]["identity_validation"].as_str(), Some("^x"));
        // the validator checks parameters only
        let routes = im.api["routes"].as_array().expect("routes");
        let a = routes.iter().find(|r| r["route"].as_str() == Some("POST /a")).expect("POST /a");
        assert!(a["validate"].get("body").is_none(), "{a:?}");
        assert_eq!(a["validate"]["query"].as_array().map(Vec::len), Some(1));
        let g = im.api["gateway_responses"].as_table().expect("gateway responses");
        assert_eq!(g["DEFAULT_4XX"]["headers"]["x-a"].as_str(), Some("1"));
        assert!(g.get("NOT_A_TYPE").is_none());
        assert!(im.report.iter().any(|r| r.contains("NOT_A_TYPE")) && im.report.iter().any(|r| r.contains("x-b")));
        // the TOML says it all back: the authorizers are defined ahead of use
        let text = to_toml(&im).expect("toml");
        assert!(text.contains("[authorizers.tok]") && !text.contains("define these authorizers"), "{text}");
    }

    #[test]
    fn yaml_keys_become_strings() {
        let v = parse_document(
            b"openapi: 3.1.0\npaths:\n  /a:\n    get:\n      responses:\n        200:\n          description: ok\n",
        )
        .expect("yaml");
        assert!(v.pointer("/paths/~1a/get/responses/200").is_some());
        assert_eq!(version(&v), Ok(Version::OpenApi31));
        assert!(version(&json!({"openapi": "2.5"})).is_err());
    }
}
