//! Non-proxy http integrations (`type = "http"`, `proxy = false`), as API Gateway's HTTP
//! custom integrations: the gateway makes the backend request itself through the one
//! outbound client. Its body is the request template's output (or the body as it came, per
//! `passthrough_behavior`); its header fields, query and path values are only those
//! `request_parameters` map (the method request's own fields are not passed on); the
//! backend's answer goes through the integration responses (selected by its status).

use crate::outbound::{Call, Endpoint};
use std::time::Duration;

/// The largest backend answer taken.
pub const MAX_ANSWER: usize = 10 * 1024 * 1024;

/// A compiled non-proxy http integration.
#[derive(Debug, Clone)]
pub struct Target {
    /// The backend URL (stage variables resolved; `{name}`s filled by path parameters).
    pub endpoint: Endpoint,
    /// `method`; the request's own when not given.
    pub method: Option<http::Method>,
    pub mapping: super::mapping::Mapping,
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl super::Answer for Target {
    fn body_use(&self) -> super::BodyUse {
        super::BodyUse::Whole(MAX_ANSWER as u64)
    }

    async fn answer(
        &self,
        view: &crate::request::RequestView<'_>,
        env: &super::Env<'_>,
    ) -> Result<super::Made, super::IntegrationError> {
        let scope = super::mapping::Scope::of(view);
        let params = self.mapping.parameters(&scope);
        let (payload, content_type) = match self.mapping.request(view, &scope, env.binary)? {
            super::mapping::Request::Rendered(b) => (b, Some(super::mapping::media_type(view.content_type()))),
            super::mapping::Request::Passthrough(b) => (b, view.content_type().map(str::to_string)),
        };
        let method = self
            .method
            .clone()
            .unwrap_or_else(|| http::Method::from_bytes(view.method().as_bytes()).unwrap_or(http::Method::GET));
        // path and query values make this request's own URL
        let own;
        let endpoint = if params.path.is_empty() && params.query.is_empty() {
            &self.endpoint
        } else {
            own = self.endpoint.with_target(params.apply(self.endpoint.target()));
            &own
        };
        let mut headers: Vec<(&str, &str)> = params.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Some(ct) = content_type.as_deref().filter(|_| !payload.is_empty()) {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                headers.push(("content-type", ct));
            }
        }
        headers.push(("x-request-id", view.request_id));
        headers.extend(env.trace_fields());
        let body =
            (!payload.is_empty() || !matches!(method, http::Method::GET | http::Method::HEAD)).then_some(payload);
        let call =
            Call { method: method.as_str(), headers: &headers, body, timeout: self.timeout, max_answer: MAX_ANSWER };
        let a = crate::outbound::client()
            .send(endpoint, call)
            .await
            .map_err(|source| super::IntegrationError::Unreachable { target: self.endpoint.url.clone(), source })?;
        self.mapping.response(view, &scope, Some(&a.status.to_string()), a.status, &a.headers, a.body)
    }
}
