//! Integrations: what a routed request is sent to, behind one interface of two shapes.
//!
//! - **Forward** ([`Shape::Forward`]): Pingora proxies the request to a peer. `http`
//!   integrations, VPC links (`vpc_link`: a health-checked, load-balanced target set) and
//!   edge origins (`edge`: the request goes on to the regional gateway unchanged).
//! - **Answer** ([`Shape::Answer`]): the gateway makes the answer itself, through the
//!   [`Answer`] trait: `mock`, `lambda` (Lambda proxy events) and `aws` (signed service
//!   requests). Each takes the request view and returns what it [`Made`] or an
//!   [`IntegrationError`].
//!
//! The proxy branches on the shape once (`proxy::answers::answer` or the Pingora upstream
//! phases); it does not know the kinds. WebSocket message events go through the same
//! integrations from `websocket::conn`.

pub mod aws;
pub mod edge;
pub mod http;
pub mod http_custom;
pub mod lambda;
pub mod mapping;
pub mod mock;
pub mod vpc_link;
pub mod ws_lambda;

use crate::request::RequestView;
use crate::responses::{Refusal, ResponseType};
use async_trait::async_trait;
use bytes::Bytes;

/// A route's integration, compiled.
pub enum Integration {
    Http(http::HttpTarget),
    /// `type = "http"` with `proxy = false`: made by the gateway through the mapping.
    HttpCustom(http_custom::Target),
    Mock(mock::Mock),
    /// `type = "lambda"`: a Lambda proxy integration.
    Lambda(lambda::Target),
    /// `type = "aws"`: a signed request to an AWS service.
    Aws(aws::Target),
}

/// How an integration is served.
pub enum Shape<'a> {
    /// Pingora proxies the request to the target's peer.
    Forward(&'a http::HttpTarget),
    /// The gateway makes the answer.
    Answer(&'a dyn Answer),
}

impl Integration {
    /// Its `type` (and `proxy = false`), as traces name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Http(_) => "http_proxy",
            Integration::HttpCustom(_) => "http",
            Integration::Mock(_) => "mock",
            Integration::Lambda(_) => "lambda",
            Integration::Aws(_) => "aws",
        }
    }

    pub fn shape(&self) -> Shape<'_> {
        match self {
            Integration::Http(t) => Shape::Forward(t),
            Integration::HttpCustom(t) => Shape::Answer(t),
            Integration::Mock(m) => Shape::Answer(m),
            Integration::Lambda(t) => Shape::Answer(t),
            Integration::Aws(t) => Shape::Answer(t),
        }
    }

    /// The forwarding target, for a Forward integration.
    pub fn forward(&self) -> Option<&http::HttpTarget> {
        match self {
            Integration::Http(t) => Some(t),
            _ => None,
        }
    }
}

/// What an answer integration needs of the request body before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// Read and discarded (checked against its framing and `max_body`), as a peer would.
    Drain,
    /// Read whole, up to this many bytes (and `server.max_body`): the event carries it.
    Whole(u64),
}

/// What an answer integration is given besides the request.
pub struct Env<'a> {
    /// The snapshot's compiled templates.
    pub templates: &'a crate::templates::Templates,
    /// The request's media type is one of the API's binary types.
    pub binary: bool,
    /// The trace context for the integration call (`traceparent`, `tracestate`,
    /// `X-Amzn-Trace-Id`), sent with it when tracing is on.
    pub trace: &'a [(&'static str, ::http::HeaderValue)],
}

impl Env<'_> {
    /// The trace context fields as an outbound call's header list takes them.
    pub fn trace_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.trace.iter().filter_map(|(k, v)| Some((*k, v.to_str().ok()?)))
    }
}

/// An answer made by the gateway from an integration's result.
pub struct Made {
    pub status: u16,
    pub headers: Vec<(::http::HeaderName, ::http::HeaderValue)>,
    pub body: Bytes,
    /// The integration's own status, for the log (`None` for mocks).
    pub integration_status: Option<u16>,
    /// The answer came from an outside call and may be stored in the route's cache.
    pub cacheable: bool,
}

/// Why an answer integration made no answer.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// The target could not be reached, or its answer could not be read.
    #[error("{target}: {source}")]
    Unreachable { target: String, source: crate::outbound::OutboundError },
    /// The target answered with a failure, or an answer that makes no response.
    #[error("{target} ({kind}): {why}")]
    Failed { target: String, kind: &'static str, why: String, status: Option<u16> },
    /// The target refused the call for its own rate limits.
    #[error("{target} is throttling: {why}")]
    Throttled { target: String, why: String, status: u16 },
    /// A template failed at run time.
    #[error("template {name}: {why}")]
    Template { name: String, why: String },
    /// No mapping template for the request's media type, and passthrough is off.
    #[error("no mapping template for {media}")]
    UnsupportedMediaType { media: String },
}

impl IntegrationError {
    /// The target's own status, when it answered.
    pub fn integration_status(&self) -> Option<u16> {
        match self {
            IntegrationError::Failed { status, .. } => *status,
            IntegrationError::Throttled { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Logs the failure (counted per target, `observability::errors`) and gives the
    /// gateway response: 504 after a deadline, 502 for a failed target, 429 when it
    /// throttles, 500 for a template.
    pub fn refusal(&self) -> Refusal {
        use crate::observability::errors;
        match self {
            IntegrationError::Unreachable { target, source } => {
                let timeout = matches!(source, crate::outbound::OutboundError::Timeout { .. });
                errors::upstream(target, if timeout { "timeout" } else { "connect" }, source);
                Refusal::new(if timeout { ResponseType::IntegrationTimeout } else { ResponseType::IntegrationFailure })
            }
            IntegrationError::Failed { target, kind, why, .. } => {
                errors::upstream(target, kind, why);
                Refusal::new(ResponseType::IntegrationFailure).with_message("Internal server error")
            }
            IntegrationError::Throttled { target, why, .. } => {
                errors::upstream(target, "throttled", why);
                Refusal::new(ResponseType::Throttled)
            }
            IntegrationError::Template { name, why } => {
                log::warn!("template {name}: {why}");
                Refusal::new(ResponseType::Default5xx)
            }
            IntegrationError::UnsupportedMediaType { .. } => Refusal::new(ResponseType::UnsupportedMediaType),
        }
    }
}

/// An integration whose answer the gateway makes.
#[async_trait]
pub trait Answer: Send + Sync {
    /// What it needs of the body before [`Answer::answer`] runs.
    fn body_use(&self) -> BodyUse;
    /// Makes the answer for the request (its body in `view.body` as `body_use` asked).
    async fn answer(&self, view: &RequestView<'_>, env: &Env<'_>) -> Result<Made, IntegrationError>;
}
