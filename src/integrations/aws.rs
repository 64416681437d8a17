//! AWS service integrations (`type = "aws"`): a request to a service endpoint (SQS, SNS,
//! DynamoDB, S3, …) made from a template, SigV4-signed for the service with the AWS
//! credential chain, sent through the one outbound client; the service's answer (success or
//! its XML/JSON error) goes back to the client with its status.

use crate::aws::credentials::Credentials;
use crate::outbound::{Answer, Call, Endpoint, OutboundError};
use bytes::Bytes;
use std::time::Duration;

/// The largest service answer passed through.
pub const MAX_ANSWER: usize = 10 * 1024 * 1024;

/// A compiled `type = "aws"` integration.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    pub region: String,
    pub method: http::Method,
    /// The service URL (endpoint + path), resolved at load.
    pub endpoint: Endpoint,
    /// Signs requests for that URL, region and service.
    pub signer: crate::aws::sigv4::Signer,
    /// VTL mapping templates and integration responses (a non-proxy integration).
    pub mapping: Option<super::mapping::Mapping>,
    /// The name of the `request_template` in the snapshot's templates (the body).
    pub template: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Target {
    /// Sends `body` to the service, signed when credentials are found, with the request
    /// parameters' headers, query and path values (`params`).
    pub async fn call(
        &self,
        body: Bytes,
        request_id: &str,
        params: &super::mapping::Resolved,
        trace: &[(&str, &str)],
    ) -> Result<Answer, OutboundError> {
        let mut headers: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.retain(|(k, _)| !params.headers.iter().any(|(n, _)| n.as_str() == *k));
        headers.extend(params.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // query and path values make this request's own URL (and canonical request)
        let endpoint;
        let signer;
        let (endpoint, signer) = if params.query.is_empty() && params.path.is_empty() {
            (&self.endpoint, &self.signer)
        } else {
            let e = self.endpoint.with_target(params.apply(self.endpoint.target()));
            let scheme = if e.tls { "https" } else { "http" };
            signer = crate::aws::sigv4::Signer::new(
                &self.region,
                &self.service,
                &format!("{scheme}://{}{}", e.host, e.target()),
            )
            .map_err(|err| OutboundError::BadUrl(format!("cannot sign the request: {err}")))?;
            endpoint = e;
            (&endpoint, &signer)
        };
        let signed = match Credentials::load() {
            Some(c) => signer
                .sign(&c.keys(), self.method.as_str(), &headers, &body, crate::clock::unix_now())
                .map_err(|e| OutboundError::BadUrl(format!("cannot sign the request: {e}")))?,
            None => Vec::new(),
        };
        headers.push(("x-request-id", request_id));
        headers.extend_from_slice(trace);
        headers.extend(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = (!body.is_empty() || self.method != http::Method::GET).then_some(body);
        let call = Call {
            method: self.method.as_str(),
            headers: &headers,
            body,
            timeout: self.timeout,
            max_answer: MAX_ANSWER,
        };
        crate::outbound::client().send(endpoint, call).await
    }
}

/// How an action-style call (`action = "PutItem"`) reaches a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionStyle {
    /// JSON protocol: `X-Amz-Target: {prefix}.{action}` and the protocol's media type.
    Json { target: String, content_type: &'static str },
    /// Query protocol: `Action={action}` in the query string.
    Query(String),
}

/// The services whose action-style calls are known.
pub const ACTION_SERVICES: [&str; 8] = ["dynamodb", "states", "kinesis", "events", "logs", "firehose", "sqs", "sns"];

/// The action-style call of `action` on `service`, as API Gateway makes it for
/// `arn:aws:apigateway:REGION:SERVICE:action/ACTION`.
pub fn action_style(service: &str, action: &str) -> Option<ActionStyle> {
    if action.is_empty() || !action.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let json =
        |prefix: &str, content_type| Some(ActionStyle::Json { target: format!("{prefix}.{action}"), content_type });
    match service {
        "dynamodb" => json("DynamoDB_20120810", "application/x-amz-json-1.0"),
        "states" => json("AWSStepFunctions", "application/x-amz-json-1.0"),
        "kinesis" => json("Kinesis_20131202", "application/x-amz-json-1.1"),
        "events" => json("AWSEvents", "application/x-amz-json-1.1"),
        "logs" => json("Logs_20140328", "application/x-amz-json-1.1"),
        "firehose" => json("Firehose_20150804", "application/x-amz-json-1.1"),
        "sqs" | "sns" => Some(ActionStyle::Query(format!("Action={action}"))),
        _ => None,
    }
}

/// The service URL: `endpoint` (default `https://{service}.{region}.amazonaws.com`) + `path`.
pub fn url(service: &str, region: &str, endpoint: Option<&str>, path: &str) -> String {
    let base = match endpoint {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => format!("https://{service}.{region}.amazonaws.com"),
    };
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    format!("{base}{path}")
}

/// A service answer whose status is not a final one (a 502).
#[derive(Debug, thiserror::Error)]
#[error("the service answered status {0}, not a final answer")]
pub struct NotFinal(pub u16);

/// The head of the client's answer made from a service's: a final status (200–599; an
/// interim or unknown one is `Err`, a 502), and of the service's fields only `Content-Type`
/// and `x-amzn-RequestId` (the gateway frames the answer itself).
pub fn answer_head(
    status: u16,
    headers: &http::HeaderMap,
) -> Result<(u16, Vec<(http::HeaderName, http::HeaderValue)>), NotFinal> {
    if !(200..=599).contains(&status) {
        return Err(NotFinal(status));
    }
    let kept = [http::header::CONTENT_TYPE, http::HeaderName::from_static("x-amzn-requestid")]
        .into_iter()
        .filter_map(|name| headers.get(&name).cloned().map(|v| (name, v)))
        .collect();
    Ok((status, kept))
}

/// An AWS service integration answers with the service's answer, success or error: the
/// request template (or the body as it came) is the service request.
#[async_trait::async_trait]
impl super::Answer for Target {
    fn body_use(&self) -> super::BodyUse {
        super::BodyUse::Whole(crate::aws::invoke::MAX_PAYLOAD as u64)
    }

    async fn answer(
        &self,
        view: &crate::request::RequestView<'_>,
        env: &super::Env<'_>,
    ) -> Result<super::Made, super::IntegrationError> {
        use super::IntegrationError;
        let body = view.body.unwrap_or_default();
        let scope = self.mapping.as_ref().map(|_| super::mapping::Scope::of(view));
        let params = self.mapping.as_ref().zip(scope.as_ref()).map(|(m, s)| m.parameters(s)).unwrap_or_default();
        let mapped = match self.mapping.as_ref().zip(scope.as_ref()) {
            Some((m, scope)) => match m.request(view, scope, env.binary)? {
                super::mapping::Request::Rendered(b) | super::mapping::Request::Passthrough(b) => Some(b),
            },
            None => None,
        };
        let payload = match (&self.template, mapped) {
            (_, Some(p)) => p,
            (None, None) => Bytes::copy_from_slice(body),
            (Some(name), None) => {
                let text = std::str::from_utf8(body).unwrap_or("");
                let json: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
                let vars = crate::templates::Vars::of(view, None, (text, &json));
                let rendered = crate::templates::render(env.templates, name, &vars)
                    .map_err(|e| IntegrationError::Template { name: name.clone(), why: e.to_string() })?;
                Bytes::from(rendered)
            }
        };
        let target = &self.endpoint.url;
        let a = self
            .call(payload, view.request_id, &params, &env.trace_fields().collect::<Vec<_>>())
            .await
            .map_err(|source| IntegrationError::Unreachable { target: target.clone(), source })?;
        if let Some((m, scope)) = self.mapping.as_ref().zip(scope.as_ref()) {
            return m.response(view, scope, Some(&a.status.to_string()), a.status, &a.headers, a.body);
        }
        let (status, headers) = answer_head(a.status, &a.headers).map_err(|why| IntegrationError::Failed {
            target: target.clone(),
            kind: "malformed",
            why: why.to_string(),
            status: Some(a.status),
        })?;
        Ok(super::Made { status, headers, body: a.body, integration_status: Some(a.status), cacheable: true })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_urls() {
        assert_eq!(super::url("sqs", "eu-west-1", None, "/"), "https://sqs.eu-west-1.amazonaws.com/");
        assert_eq!(
            super::url("s3", "us-east-1", Some("http://127.0.0.1:5000/"), "bucket/key"),
            "http://127.0.0.1:5000/bucket/key"
        );
    }
}
