//! External (Lambda-style) authorizers (`type = "request"` / `"token"`): the gateway POSTs AWS's
//! authorizer event to `uri` and reads the answer — an IAM policy (`principalId`,
//! `policyDocument`, `context`) evaluated against the request's method ARN
//! (`arn:edgegate:execute-api:{api}/{stage}/{METHOD}/{path}`), or a simple
//! `{isAuthorized, context}`. Answers are cached per identity-source values for
//! `result_ttl` (0: off), bounded in size; concurrent requests with the same identity make one
//! call. No identity source: 401 without calling; an error, a timeout or a malformed answer:
//! 500 AUTHORIZER_FAILURE.

use super::iam::Policy;
use super::Principal;
use bytes::Bytes;
use dashmap::DashMap;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CACHE_CAPACITY: usize = 100_000;
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Iam,
    Simple,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(http::HeaderName),
    Query(String),
    SourceIp,
    StageVariable(String),
}

/// An identity source the gateway cannot read.
#[derive(Debug, thiserror::Error)]
pub enum BadSource {
    #[error("bad header in {0:?}")]
    Header(String),
    #[error("identity source {0:?}: use $request.header.NAME, $request.querystring.NAME, $context.sourceIp or $stageVariables.NAME")]
    Unknown(String),
}

impl Source {
    pub fn parse(s: &str) -> Result<Source, BadSource> {
        if let Some(h) = s.strip_prefix("$request.header.") {
            return http::HeaderName::from_bytes(h.as_bytes())
                .map(Source::Header)
                .map_err(|_| BadSource::Header(s.to_string()));
        }
        if let Some(q) = s.strip_prefix("$request.querystring.") {
            return Ok(Source::Query(q.to_string()));
        }
        if let Some(v) = s.strip_prefix("$stageVariables.") {
            return Ok(Source::StageVariable(v.to_string()));
        }
        if s == "$context.sourceIp" {
            return Ok(Source::SourceIp);
        }
        Err(BadSource::Unknown(s.to_string()))
    }
}

/// What the request offers the authorizer: the request view, and the header fields as
/// integrations are told them (`forwarded::to_integration`).
pub struct Call<'a> {
    pub view: crate::request::RequestView<'a>,
    pub method_arn: String,
    pub headers: &'a http::HeaderMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// An identity source is missing: 401 UNAUTHORIZED.
    Missing,
    /// The policy does not allow this method ARN: 403 ACCESS_DENIED.
    Denied,
    /// The authorizer failed: 500 AUTHORIZER_FAILURE.
    Failure,
}

impl Refused {
    pub fn response_type(self) -> crate::responses::ResponseType {
        use crate::responses::ResponseType as T;
        match self {
            Refused::Missing => T::Unauthorized,
            Refused::Denied => T::AccessDenied,
            Refused::Failure => T::AuthorizerFailure,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refused::Missing => "missing_identity",
            Refused::Denied => "denied",
            Refused::Failure => "authorizer_failure",
        }
    }
}

/// An authorizer's answer, kept in the cache.
#[derive(Debug)]
struct Answer {
    principal: Arc<Principal>,
    /// The IAM-policy answer, or the simple answer's verdict.
    verdict: Verdict,
}

#[derive(Debug)]
enum Verdict {
    Policy(Policy),
    Simple(bool),
}

impl Answer {
    fn allows(&self, arn: &str) -> bool {
        match &self.verdict {
            Verdict::Policy(p) => p.allows(arn),
            Verdict::Simple(b) => *b,
        }
    }
}

fn parse_answer(v: &Value, format: Format) -> Option<Answer> {
    let claims = v.get("context").and_then(|c| c.as_object()).cloned().unwrap_or_default();
    let (principal_id, verdict) = match format {
        Format::Simple => (String::new(), Verdict::Simple(v.get("isAuthorized")?.as_bool()?)),
        Format::Iam => {
            (v.get("principalId")?.as_str()?.to_string(), Verdict::Policy(Policy::parse(v.get("policyDocument")?)?))
        }
    };
    let mut context = claims.clone();
    context.retain(|k, _| !Principal::RESERVED.contains(&k.as_str()));
    Some(Answer { principal: Arc::new(Principal { principal_id, claims, scopes: vec![], context }), verdict })
}

/// Where the authorizer's event goes.
pub enum Target {
    /// `uri`: POSTed as JSON; the answer is the function's result.
    Http(crate::outbound::Endpoint),
    /// `lambda = { function, endpoint, region }`: the Lambda Invoke API.
    Lambda(crate::aws::invoke::Function),
}

impl Target {
    fn url(&self) -> &str {
        match self {
            Target::Http(e) => &e.url,
            Target::Lambda(f) => &f.endpoint.url,
        }
    }
}

pub struct Settings {
    pub kind: Kind,
    pub target: Target,
    pub sources: Vec<Source>,
    pub ttl: Duration,
    pub format: Format,
    pub timeout: Duration,
    /// Token authorizers: what the whole token must match before the authorizer is called.
    pub validation: Option<regex::Regex>,
}

pub struct LambdaAuthorizer {
    s: Settings,
    cache: DashMap<String, (Arc<Answer>, Instant)>,
    inflight: DashMap<String, Arc<tokio::sync::OnceCell<Option<Arc<Answer>>>>>,
}

impl LambdaAuthorizer {
    pub fn new(s: Settings) -> LambdaAuthorizer {
        LambdaAuthorizer { s, cache: DashMap::new(), inflight: DashMap::new() }
    }

    /// The identity sources that are headers.
    pub fn identity_headers(&self, mut f: impl FnMut(&http::HeaderName)) {
        for s in &self.s.sources {
            if let Source::Header(h) = s {
                f(h);
            }
        }
    }

    fn identity(&self, c: &Call<'_>) -> Option<Vec<String>> {
        self.s
            .sources
            .iter()
            .map(|src| match src {
                // all lines of a repeated header (request::header): the cache key and the
                // event carry the same value, so one caller cannot take another's decision
                Source::Header(h) => crate::request::header(c.headers, h).map(|v| v.into_owned()),
                Source::Query(q) => crate::request::query_map(c.view.query()).remove(q),
                Source::SourceIp => Some(c.view.client.source_ip()),
                Source::StageVariable(v) => c.view.route.variables.get(v).cloned(),
            })
            .map(|v| v.filter(|s| !s.is_empty()))
            .collect()
    }

    /// Decides a request; `hit` tells whether the cache answered.
    pub async fn authorize(&self, c: &Call<'_>) -> (Result<Arc<Principal>, Refused>, bool) {
        let Some(values) = self.identity(c) else { return (Err(Refused::Missing), false) };
        // a token that fails the validation expression is refused without a call (401)
        if let (Some(re), Some(token)) = (&self.s.validation, values.first()) {
            if !re.is_match(token) {
                return (Err(Refused::Missing), false);
            }
        }
        let key = values.join("\u{1f}");
        let now = Instant::now();
        if !self.s.ttl.is_zero() {
            if let Some(e) = self.cache.get(&key).filter(|e| e.1 > now) {
                return (decide(&e.0, &c.method_arn), true);
            }
        }
        // With result_ttl = 0 every request is decided by its own event (its method ARN,
        // path and headers), so none is coalesced; with a cache, concurrent callers with the
        // same identity share one call, as they would share its cached answer.
        let answer = if self.s.ttl.is_zero() {
            self.call(c, &values).await
        } else {
            let cell = self.inflight.entry(key.clone()).or_default().clone();
            let answer = cell.get_or_init(|| self.call(c, &values)).await.clone();
            self.inflight.remove_if(&key, |_, v| Arc::ptr_eq(v, &cell));
            answer
        };
        let Some(answer) = answer else { return (Err(Refused::Failure), false) };
        if !self.s.ttl.is_zero() {
            if self.cache.len() >= CACHE_CAPACITY {
                self.cache.retain(|_, e| e.1 > now);
                if self.cache.len() >= CACHE_CAPACITY {
                    self.cache.clear();
                }
            }
            self.cache.insert(key, (answer.clone(), now + self.s.ttl));
        }
        (decide(&answer, &c.method_arn), false)
    }

    fn event(&self, c: &Call<'_>, values: &[String]) -> Value {
        match self.s.kind {
            Kind::Token => json!({"type": "TOKEN", "authorizationToken": values.first(), "methodArn": c.method_arn}),
            Kind::Request => {
                let headers: Map<String, Value> = crate::request::header_map(c.headers)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Value::from(v)))
                    .collect();
                let v = &c.view;
                let path_params: Map<String, Value> =
                    v.route.params.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
                let (resource, path, method) = (v.route.resource(), v.route.path, v.method());
                json!({
                    "type": "REQUEST",
                    "methodArn": c.method_arn,
                    "resource": resource,
                    "path": path,
                    "httpMethod": method,
                    "headers": headers,
                    "queryStringParameters": crate::request::query_map(v.query()),
                    "pathParameters": path_params,
                    "stageVariables": v.route.variables,
                    "requestContext": {
                        "apiId": v.api(), "stage": v.stage(), "requestId": v.request_id, "httpMethod": method,
                        "resourcePath": resource, "path": path,
                        "identity": {"sourceIp": v.client.source_ip()},
                    },
                })
            }
        }
    }

    /// Calls the authorizer; every failure is logged here, with its cause.
    async fn call(&self, c: &Call<'_>, values: &[String]) -> Option<Arc<Answer>> {
        use crate::outbound::Call as Out;
        let body = Bytes::from(self.event(c, values).to_string());
        let answer = match &self.s.target {
            Target::Http(endpoint) => {
                let headers = [("content-type", "application/json"), ("x-request-id", c.view.request_id)];
                let out = Out {
                    method: "POST",
                    headers: &headers,
                    body: Some(body),
                    timeout: self.s.timeout,
                    max_answer: MAX_ANSWER,
                };
                match crate::outbound::client().send(endpoint, out).await {
                    Ok(a) if a.status == 200 => a.body,
                    Ok(a) => {
                        log::warn!("authorizer {} answered {}", endpoint.url, a.status);
                        return None;
                    }
                    Err(e) => {
                        log::warn!("authorizer call failed: {e}");
                        return None;
                    }
                }
            }
            Target::Lambda(f) => {
                use crate::aws::invoke::Invoked;
                match f.invoke(body, self.s.timeout, c.view.request_id).await {
                    Ok(Invoked::Answer(b)) => b,
                    Ok(Invoked::FunctionError { kind, message, .. }) => {
                        log::warn!("authorizer function {} failed ({kind}): {message}", f.name);
                        return None;
                    }
                    Ok(Invoked::Service { status, message }) => {
                        log::warn!("authorizer function {}: Lambda answered {status}: {message}", f.name);
                        return None;
                    }
                    Err(e) => {
                        log::warn!("authorizer function {}: {e}", f.name);
                        return None;
                    }
                }
            }
        };
        let parsed = serde_json::from_slice::<Value>(&answer).map_err(|e| e.to_string()).and_then(|v| {
            parse_answer(&v, self.s.format).ok_or_else(|| "no principalId/policyDocument or isAuthorized".to_string())
        });
        match parsed {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => {
                log::warn!("authorizer {} gave a malformed answer: {e}", self.s.target.url());
                None
            }
        }
    }
}

fn decide(a: &Answer, arn: &str) -> Result<Arc<Principal>, Refused> {
    if a.allows(arn) {
        Ok(a.principal.clone())
    } else {
        Err(Refused::Denied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_deny_wins() {
        let v = json!({"principalId": "u", "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "arn:edgegate:execute-api:a/prod/*"},
            {"Action": ["execute-api:Invoke"], "Effect": "Deny", "Resource": ["arn:edgegate:execute-api:a/prod/DELETE/*"]},
        ]}, "context": {"tenant": "t1"}});
        let a = parse_answer(&v, Format::Iam).expect("answer");
        assert!(a.allows("arn:edgegate:execute-api:a/prod/GET/x"));
        assert!(!a.allows("arn:edgegate:execute-api:a/prod/DELETE/x"));
        assert!(!a.allows("arn:edgegate:execute-api:a/dev/GET/x"), "nothing allows it");
        assert_eq!(a.principal.claims.get("tenant"), Some(&json!("t1")));
        assert!(parse_answer(&json!({"principalId": "u"}), Format::Iam).is_none(), "malformed: failure");
        let s = parse_answer(&json!({"isAuthorized": false}), Format::Simple).expect("simple");
        assert!(!s.allows("x"));
    }
}
