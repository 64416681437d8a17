//! The serde model of `edgegate.toml`: the user-facing contract, key for key
//! (see `conf/edgegate.toml`). Every table denies unknown keys. This model is only
//! read at load time; `snapshot` compiles it into what requests use.

use super::units::{Dur, Size};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    pub tls: Option<Tls>,
    pub defaults: Option<Defaults>,
    pub cluster: Option<Cluster>,
    #[serde(default)]
    pub domains: Vec<Domain>,
    #[serde(default)]
    pub apis: Vec<Api>,
    #[serde(default)]
    pub authorizers: BTreeMap<String, Authorizer>,
    #[serde(default)]
    pub usage_plans: Vec<UsagePlan>,
    pub api_keys: Option<ApiKeys>,
    #[serde(default)]
    pub vpc_links: Vec<VpcLink>,
    pub edge: Option<Edge>,
    pub tracing: Option<Tracing>,
}

/// `[tracing]`: OpenTelemetry traces over OTLP/HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    pub otlp_endpoint: String,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    #[serde(default = "default_propagate")]
    pub propagate: Vec<String>,
}
fn default_service_name() -> String {
    "edgegate".into()
}
fn default_sample_ratio() -> f64 {
    0.05
}
fn default_propagate() -> Vec<String> {
    vec!["traceparent".into(), "x-amzn-trace-id".into()]
}

fn default_listen() -> Vec<String> {
    vec!["0.0.0.0:8080".into()]
}
fn default_admin() -> String {
    "127.0.0.1:9180".into()
}
fn default_grace() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_upgrade_sock() -> String {
    "/tmp/edgegate-upgrade.sock".into()
}
fn default_pid() -> String {
    "/tmp/edgegate.pid".into()
}
fn default_max_body() -> Size {
    Size(10 << 20)
}
fn default_max_header_size() -> Size {
    Size(32 << 10)
}
fn default_max_headers() -> usize {
    100
}
fn default_header_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}
fn default_max_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(29))
}
fn default_access_log() -> String {
    "stdout".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    #[serde(default)]
    pub private_listen: Vec<String>,
    #[serde(default = "default_admin")]
    pub admin_listen: String,
    #[serde(default)]
    pub threads: usize,
    #[serde(default = "default_grace")]
    pub grace_period: Dur,
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: String,
    #[serde(default = "default_pid")]
    pub pid_file: String,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "default_max_body")]
    pub max_body: Size,
    /// The request head (request line and header fields) → 431 past it.
    #[serde(default = "default_max_header_size")]
    pub max_header_size: Size,
    /// The number of header fields → 431 past it.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// The time a client has to send a request head → 408 and close.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Dur,
    #[serde(default = "default_max_timeout")]
    pub max_integration_timeout: Dur,
    #[serde(default = "default_access_log")]
    pub access_log: String,
    /// A line template of `$context` variables (AWS's accessLogSettings.format); empty = JSON.
    #[serde(default)]
    pub access_log_format: String,
    #[serde(default = "yes")]
    pub watch: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            private_listen: vec![],
            admin_listen: default_admin(),
            threads: 0,
            grace_period: default_grace(),
            upgrade_sock: default_upgrade_sock(),
            pid_file: default_pid(),
            trusted_proxies: vec![],
            max_body: default_max_body(),
            max_header_size: default_max_header_size(),
            max_headers: default_max_headers(),
            header_timeout: default_header_timeout(),
            max_integration_timeout: default_max_timeout(),
            access_log: default_access_log(),
            access_log_format: String::new(),
            watch: true,
        }
    }
}

fn default_min_tls() -> String {
    "1.2".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default = "default_min_tls")]
    pub min_version: String,
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    pub client_auth: Option<ClientAuth>,
    /// TLS 1.2 cipher list (OpenSSL syntax); default: Mozilla "intermediate".
    pub ciphers: Option<String>,
    /// TLS 1.3 cipher suites; default: Mozilla "intermediate".
    pub ciphersuites: Option<String>,
    /// Key-exchange groups; default: X25519, P-256, P-384.
    pub curves: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    #[serde(default)]
    pub sni: Vec<String>,
    pub cert: String,
    pub key: String,
    /// A DER OCSP response to staple (refreshed by whatever writes the file; a reload reads it).
    pub ocsp: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    #[default]
    Off,
    Optional,
    Required,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    #[serde(default)]
    pub mode: ClientAuthMode,
    pub ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub throttle: Option<Throttle>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub rate: f64,
    pub burst: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub redis: RedisTarget,
    #[serde(default)]
    pub on_redis_error: Option<String>,
}

/// `[cluster] redis`: one URL (or a `redis-sentinel://` one), or the seed nodes of a Redis Cluster.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RedisTarget {
    One(String),
    Seeds(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    pub host: String,
    #[serde(default)]
    pub mappings: Vec<Mapping>,
    /// `Strict-Transport-Security` value for HTTPS answers on this host.
    pub hsts: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default)]
    pub base_path: String,
    pub api: String,
    pub stage: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Websocket,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EndpointType {
    #[default]
    Regional,
    Edge,
    Private,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub name: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub endpoint: EndpointType,
    #[serde(default)]
    pub base_path: String,
    pub openapi: Option<String>,
    pub binary_media_types: Option<Vec<String>>,
    pub cors: Option<Cors>,
    pub policy: Option<Policy>,
    pub route_selection: Option<String>,
    pub idle_timeout: Option<Dur>,
    pub max_connection_duration: Option<Dur>,
    pub max_message_size: Option<Size>,
    pub management: Option<Management>,
    #[serde(default)]
    pub stages: BTreeMap<String, Stage>,
    #[serde(default)]
    pub integrations: BTreeMap<String, Integration>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub gateway_responses: BTreeMap<String, GatewayResponse>,
    /// Routes and integrations merged in from `openapi` (errors in them point at `openapi`).
    #[serde(skip)]
    pub imported_routes_from: Option<usize>,
    #[serde(skip)]
    pub imported_integrations: std::collections::HashSet<String>,
}

/// `management = { authorizer = "NAME" }` on a WebSocket API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    pub authorizer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    #[serde(default)]
    pub deny_cidrs: Vec<String>,
    #[serde(default)]
    pub require_headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    pub throttle: Option<Throttle>,
    pub cache: Option<Cache>,
    pub canary: Option<Canary>,
    #[serde(default = "yes")]
    pub access_log: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    pub ttl: Option<Dur>,
    pub capacity: Option<Size>,
    pub key: Option<Vec<String>>,
    pub invalidate: Option<String>,
    /// "honor" (default) | "ignore": whether the origin's caching headers may shorten the TTL.
    pub origin_cache_control: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub percent: f64,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// One table for every integration type; `validate` checks which keys a type takes,
/// so a misplaced key is named precisely rather than lost in an untagged-enum error.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    #[serde(rename = "type")]
    pub kind: String,
    // http
    pub uri: Option<String>,
    pub timeout: Option<Dur>,
    pub retries: Option<u32>,
    pub tls_verify: Option<bool>,
    // lambda / aws
    pub function: Option<String>,
    pub endpoint: Option<String>,
    pub payload_format: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub request_template: Option<TemplateText>,
    /// Lambda and AWS service endpoints: allow `http://` off loopback (signed requests,
    /// session tokens and client data then travel in clear).
    pub allow_insecure_endpoint: Option<bool>,
    // aws and mock
    pub headers: Option<BTreeMap<String, String>>,
    // vpc_link
    pub link: Option<String>,
    // mock
    pub status: Option<u16>,
    pub body: Option<TemplateText>,
    // non-proxy (REST custom) integrations: aws and mock
    /// An AWS action-style call (`X-Amz-Target` for JSON services, `Action=` for query ones).
    pub action: Option<String>,
    pub passthrough_behavior: Option<String>,
    /// VTL mapping templates by the request's media type.
    pub request_templates: Option<BTreeMap<String, String>>,
    /// `integration.request.header|querystring|path.NAME` = a method request value,
    /// `context.VAR`, `stageVariables.NAME` or `'literal'`.
    pub request_parameters: Option<BTreeMap<String, String>>,
    pub responses: Option<Vec<IntegrationResponse>>,
    /// lambda: `false` makes a Lambda custom integration (request templates, integration
    /// responses) instead of a proxy one.
    pub proxy: Option<bool>,
    /// `convert_to_text` | `convert_to_binary`: the request payload's conversion.
    pub content_handling: Option<String>,
}

/// An integration response of a non-proxy integration.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IntegrationResponse {
    /// A regular expression over the whole integration status (Lambda: its errorMessage);
    /// "" or absent: the default response.
    #[serde(default)]
    pub selection_pattern: String,
    pub status: u16,
    /// `method.response.header.NAME` = `'literal'` or `integration.response.header.NAME`.
    pub parameters: Option<BTreeMap<String, String>>,
    /// VTL response templates by media type.
    pub templates: Option<BTreeMap<String, String>>,
    /// `convert_to_text` | `convert_to_binary`: the integration answer's conversion.
    pub content_handling: Option<String>,
}

/// A route names an integration or gives one inline.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IntegrationRef {
    Name(String),
    Inline(Box<Integration>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub route: String,
    pub integration: IntegrationRef,
    pub authorizer: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub api_key_required: Option<bool>,
    pub throttle: Option<Throttle>,
    pub cache: Option<Cache>,
    pub validate: Option<Validate>,
    pub request_transform: Option<RequestTransform>,
    pub response_transform: Option<ResponseTransform>,
    /// WebSocket routes: the integration's answer goes back to the client (AWS's two-way
    /// route with a `$default` route response).
    pub route_response: Option<bool>,
}

/// A template the config gives: minijinja text, or `{ vtl = "..." }` / `{ vtl_file = "FILE" }`
/// (API Gateway's VTL).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TemplateText {
    Text(String),
    Vtl(VtlText),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtlText {
    pub vtl: Option<String>,
    pub vtl_file: Option<String>,
}

impl TemplateText {
    /// The name it is compiled under: a minijinja one as `jinja` names it from its text (the
    /// name picks the output escaping), a VTL one `{base}+vtl`.
    pub fn name(&self, base: &str, jinja: impl FnOnce(&str, &str) -> String) -> String {
        match self {
            TemplateText::Text(t) => jinja(base, t),
            TemplateText::Vtl(_) => format!("{base}+vtl"),
        }
    }

    /// Empty minijinja text (a transform's "pass the body through").
    pub fn is_empty(&self) -> bool {
        matches!(self, TemplateText::Text(t) if t.is_empty())
    }
}

/// `body`: a schema file (JSON or YAML) relative to the config, or the schema inline.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SchemaRef {
    File(String),
    Inline(toml::Table),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    pub body: Option<SchemaRef>,
    /// An empty body is refused when a schema is given (OpenAPI's requestBody.required).
    #[serde(default = "yes")]
    pub body_required: bool,
    #[serde(default)]
    pub query: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub content_types: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTransform {
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub remove_headers: Vec<String>,
    #[serde(default)]
    pub set_query: BTreeMap<String, String>,
    pub path: Option<String>,
    pub body: Option<TemplateText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseTransform {
    #[serde(default)]
    pub status: BTreeMap<String, u16>,
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub remove_headers: Vec<String>,
    pub body: Option<TemplateText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub max_age: Option<Dur>,
    #[serde(default)]
    pub allow_credentials: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayResponse {
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<TemplateText>,
}

/// Authorizers are parsed loosely here (their keys are validated when the
/// authorizer types are implemented); any use is refused as not supported yet.
#[derive(Debug, Deserialize)]
pub struct Authorizer {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub rest: toml::Table,
}

/// `[authorizers.NAME]` with `type = "jwt"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    pub jwks: Option<String>,
    pub jwks_refresh: Option<Dur>,
    #[serde(default)]
    pub algorithms: Vec<String>,
    pub identity_source: Option<String>,
    pub leeway: Option<Dur>,
    pub secret: Option<String>,
}

/// `[authorizers.NAME]` with `type = "sigv4"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Spec {
    pub service: Option<String>,
    pub region: String,
    pub credentials: String,
    pub clock_skew: Option<Dur>,
}

/// The `credentials.toml` a sigv4 authorizer names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    #[serde(default)]
    pub credentials: Vec<CredentialSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    pub access_key_id: String,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    #[serde(default)]
    pub principal: String,
    /// IAM-like policy documents, as JSON strings or TOML tables.
    #[serde(default)]
    pub policies: Vec<toml::Value>,
}

/// `[authorizers.NAME]` with `type = "request"` or `"token"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaSpec {
    pub uri: Option<String>,
    pub lambda: Option<toml::Table>,
    pub identity_sources: Option<Vec<String>>,
    pub identity_source: Option<String>,
    /// token authorizers: a regular expression the whole token must match, or the request is
    /// refused (401) without calling the authorizer (API Gateway's
    /// `identityValidationExpression`).
    pub identity_validation: Option<String>,
    pub result_ttl: Option<Dur>,
    pub response: Option<String>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePlan {
    pub name: String,
    #[serde(default)]
    pub stages: Vec<String>,
    pub throttle: Option<Throttle>,
    pub route_throttle: Option<BTreeMap<String, Throttle>>,
    pub quota: Option<QuotaSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    pub limit: u64,
    pub period: String,
    #[serde(default)]
    pub offset: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeys {
    pub file: String,
    pub header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcLink {
    pub name: String,
    #[serde(default)]
    pub targets: Vec<String>,
    pub balance: Option<String>,
    pub health_check: Option<toml::Table>,
    pub tls: Option<bool>,
    pub sni: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    #[serde(default)]
    pub origins: Vec<String>,
    pub cache: Option<Cache>,
    /// As a VPC link's (default: a TCP connect every 5 s, 1 s timeout).
    pub health_check: Option<toml::Table>,
}
