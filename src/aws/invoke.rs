//! The Lambda Invoke API: `POST {endpoint}/2015-03-31/functions/{function}/invocations`,
//! SigV4-signed (service `lambda`) when credentials are found (`aws::credentials`), through the
//! process's one outbound client (pooled connections, a deadline, a bounded answer).

use crate::aws::credentials::Credentials;
use crate::aws::sigv4::Signer;
use crate::outbound::{Call, Endpoint, OutboundError};
use bytes::Bytes;
use std::time::Duration;

/// Lambda's synchronous response payload limit.
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024;

/// A function and where to invoke it, resolved when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// A name, an ARN, or `name:alias` / `name:version`.
    pub name: String,
    pub region: String,
    /// The invoke URL of this function.
    pub endpoint: Endpoint,
    /// Signs invocations for that URL (service `lambda`).
    pub signer: Signer,
}

/// What an invocation returned.
#[derive(Debug)]
pub enum Invoked {
    /// The function ran and answered (status 200).
    Answer(Bytes),
    /// The function failed (`X-Amz-Function-Error`: `Handled` / `Unhandled`).
    FunctionError { kind: String, message: String, body: Bytes },
    /// The Lambda service refused the call (unknown function, throttled, …).
    Service { status: u16, message: String },
}

/// Why a function reference does not compile.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("function {0:?} must be a function name, ARN or name:alias")]
    Name(String),
    #[error(transparent)]
    Endpoint(#[from] OutboundError),
    #[error(transparent)]
    Sign(#[from] crate::aws::sigv4::SignError),
}

impl Function {
    /// `endpoint` defaults to `https://lambda.{region}.amazonaws.com`.
    pub fn new(name: &str, endpoint: Option<&str>, region: &str) -> Result<Function, FunctionError> {
        let url = invoke_url(name, endpoint, region)?;
        let endpoint = Endpoint::parse(&url)?;
        // without `X-Amz-Content-Sha256`, as the AWS SDKs call Lambda
        let signer = Signer::new(region, "lambda", &url)?.without_payload_header();
        Ok(Function { name: name.to_string(), region: region.to_string(), endpoint, signer })
    }

    /// Invokes the function with `payload` (synchronously, `RequestResponse`).
    pub async fn invoke(&self, payload: Bytes, timeout: Duration, request_id: &str) -> Result<Invoked, OutboundError> {
        self.invoke_with(payload, timeout, request_id, &[]).await
    }

    /// As [`Function::invoke`], with more header fields for the Invoke API (a Lambda custom
    /// integration's request parameters: `X-Amz-Invocation-Type: Event` invokes without
    /// waiting, `X-Amz-Client-Context`, …), signed with the rest.
    pub async fn invoke_with(
        &self,
        payload: Bytes,
        timeout: Duration,
        request_id: &str,
        extra: &[(&str, &str)],
    ) -> Result<Invoked, OutboundError> {
        const TYPE: (&str, &str) = ("content-type", "application/json");
        let given = |n: &str| extra.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        let mut signed_fields: Vec<(&str, &str)> = Vec::with_capacity(2 + extra.len());
        if !given("content-type") {
            signed_fields.push(TYPE);
        }
        if !given("x-amz-invocation-type") {
            signed_fields.push(("x-amz-invocation-type", "RequestResponse"));
        }
        signed_fields.extend_from_slice(extra);
        let signed = match Credentials::load() {
            Some(c) => self
                .signer
                .sign(&c.keys(), "POST", &signed_fields, &payload, crate::clock::unix_now())
                .map_err(|e| OutboundError::BadUrl(format!("cannot sign the invocation: {e}")))?,
            None => Vec::new(),
        };
        let mut headers = Vec::with_capacity(signed_fields.len() + 1 + signed.len());
        headers.extend_from_slice(&signed_fields);
        headers.push(("x-request-id", request_id));
        headers.extend(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let call = Call { method: "POST", headers: &headers, body: Some(payload), timeout, max_answer: MAX_PAYLOAD };
        let a = crate::outbound::client().send(&self.endpoint, call).await?;
        if let Some(kind) = a.headers.get("x-amz-function-error").and_then(|v| v.to_str().ok()) {
            return Ok(Invoked::FunctionError {
                kind: kind.to_string(),
                message: error_message(&a.body),
                body: a.body,
            });
        }
        // 200 for RequestResponse; 202 (Event) and 204 (DryRun) when asked for
        if !(200..300).contains(&a.status) {
            return Ok(Invoked::Service { status: a.status, message: error_message(&a.body) });
        }
        Ok(Invoked::Answer(a.body))
    }
}

/// The invoke URL of `name` (a name, ARN or `name:alias`, percent-encoded into the path).
pub fn invoke_url(name: &str, endpoint: Option<&str>, region: &str) -> Result<String, FunctionError> {
    if name.is_empty() || name.contains(['/', '?', '#', ' ']) {
        return Err(FunctionError::Name(name.to_string()));
    }
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    let base = match endpoint {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => format!("https://lambda.{region}.amazonaws.com"),
    };
    let enc = percent_encoding::utf8_percent_encode(name, UNRESERVED);
    Ok(format!("{base}/2015-03-31/functions/{enc}/invocations"))
}

/// `errorMessage` / `message` / `Message` of a Lambda or service error body (JSON, or the
/// `<Message>` of an XML error), or the body's start.
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Some(m) = text.split_once("<Message>").and_then(|(_, r)| r.split_once("</Message>")).map(|(m, _)| m) {
        return m.to_string();
    }
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    ["errorMessage", "message", "Message"]
        .iter()
        .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_string))
        .or_else(|| v.get("__type").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_urls_encode_the_function() {
        let f = Function::new(
            "arn:aws:lambda:us-east-1:123456789012:function:auth:live",
            Some("http://127.0.0.1:9001/"),
            "us-east-1",
        )
        .expect("function");
        assert_eq!(
            f.endpoint.target(),
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aauth%3Alive/invocations"
        );
        assert_eq!(
            invoke_url("pets-handler_v2.x", None, "eu-west-1").ok().as_deref(),
            Some("https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/pets-handler_v2.x/invocations")
        );
        assert!(Function::new("a/b", None, "us-east-1").is_err());
        assert_eq!(error_message(br#"{"errorMessage":"boom","errorType":"Error"}"#), "boom");
        assert_eq!(error_message(br#"{"Type":"User","message":"Function not found: x"}"#), "Function not found: x");
    }
}
