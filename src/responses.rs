//! Gateway responses: every answer the gateway makes itself (not the integration's)
//! is one of these types, with AWS API Gateway's statuses and `{"message": ...}` bodies,
//! overridable per API in `[apis.gateway_responses.TYPE]` (`DEFAULT_4XX` / `DEFAULT_5XX`
//! override every 4xx / 5xx type that has no override of its own).

use std::collections::HashMap;

/// What a refused request counts against (the metric it increments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    Nothing,
    /// `edgegate_auth_failures_total{authorizer, reason}` (policy, authorizers, API keys).
    Auth {
        check: std::sync::Arc<str>,
        reason: &'static str,
    },
    /// `edgegate_throttled_total{reason}`.
    Throttled(&'static str),
}

/// Why a request is answered by the gateway instead of its integration: the one shape that
/// every admission step (policy, authorizer, API key, throttles, quota, validation) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub response: ResponseType,
    /// Replaces the type's own status (415 from validation, 503 when Redis is required).
    pub status: Option<u16>,
    /// Replaces the type's own message (what failed validation).
    pub message: Option<String>,
    /// Extra headers (`retry-after`, `ratelimit-*`).
    pub headers: Vec<(&'static str, String)>,
    pub counted: Counted,
}

impl Refusal {
    pub fn new(response: ResponseType) -> Refusal {
        Refusal { response, status: None, message: None, headers: Vec::new(), counted: Counted::Nothing }
    }

    /// A refusal by an access check (`check` names it in the auth-failure metric).
    pub fn auth(check: &str, reason: &'static str, response: ResponseType) -> Refusal {
        Refusal { counted: Counted::Auth { check: check.into(), reason }, ..Refusal::new(response) }
    }

    pub fn with_status(mut self, status: u16) -> Refusal {
        self.status = Some(status);
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Refusal {
        self.message = Some(message.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseType {
    AccessDenied,
    ApiKeyInvalid,
    AuthorizerFailure,
    BadRequestBody,
    BadRequestParameters,
    Default4xx,
    Default5xx,
    ExpiredToken,
    IntegrationFailure,
    IntegrationTimeout,
    InvalidSignature,
    MissingAuthenticationToken,
    NotFound,
    QuotaExceeded,
    RequestTooLarge,
    ResourceNotFound,
    Throttled,
    Unauthorized,
    UnsupportedMediaType,
    WafFiltered,
}

pub const ALL_TYPES: [ResponseType; 20] = [
    ResponseType::AccessDenied,
    ResponseType::ApiKeyInvalid,
    ResponseType::AuthorizerFailure,
    ResponseType::BadRequestBody,
    ResponseType::BadRequestParameters,
    ResponseType::Default4xx,
    ResponseType::Default5xx,
    ResponseType::ExpiredToken,
    ResponseType::IntegrationFailure,
    ResponseType::IntegrationTimeout,
    ResponseType::InvalidSignature,
    ResponseType::MissingAuthenticationToken,
    ResponseType::NotFound,
    ResponseType::QuotaExceeded,
    ResponseType::RequestTooLarge,
    ResponseType::ResourceNotFound,
    ResponseType::Throttled,
    ResponseType::Unauthorized,
    ResponseType::UnsupportedMediaType,
    ResponseType::WafFiltered,
];

impl ResponseType {
    pub fn name(self) -> &'static str {
        use ResponseType::*;
        match self {
            AccessDenied => "ACCESS_DENIED",
            ApiKeyInvalid => "API_KEY_INVALID",
            AuthorizerFailure => "AUTHORIZER_FAILURE",
            BadRequestBody => "BAD_REQUEST_BODY",
            BadRequestParameters => "BAD_REQUEST_PARAMETERS",
            Default4xx => "DEFAULT_4XX",
            Default5xx => "DEFAULT_5XX",
            ExpiredToken => "EXPIRED_TOKEN",
            IntegrationFailure => "INTEGRATION_FAILURE",
            IntegrationTimeout => "INTEGRATION_TIMEOUT",
            InvalidSignature => "INVALID_SIGNATURE",
            MissingAuthenticationToken => "MISSING_AUTHENTICATION_TOKEN",
            NotFound => "NOT_FOUND",
            QuotaExceeded => "QUOTA_EXCEEDED",
            RequestTooLarge => "REQUEST_TOO_LARGE",
            ResourceNotFound => "RESOURCE_NOT_FOUND",
            Throttled => "THROTTLED",
            Unauthorized => "UNAUTHORIZED",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            WafFiltered => "WAF_FILTERED",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        ALL_TYPES.iter().copied().find(|t| t.name() == s)
    }

    pub fn status(self) -> u16 {
        use ResponseType::*;
        match self {
            AccessDenied
            | ApiKeyInvalid
            | ExpiredToken
            | InvalidSignature
            | MissingAuthenticationToken
            | WafFiltered => 403,
            AuthorizerFailure | Default5xx => 500,
            BadRequestBody | BadRequestParameters | Default4xx => 400,
            IntegrationFailure => 502,
            IntegrationTimeout => 504,
            NotFound | ResourceNotFound => 404,
            QuotaExceeded | Throttled => 429,
            RequestTooLarge => 413,
            Unauthorized => 401,
            UnsupportedMediaType => 415,
        }
    }

    pub fn message(self) -> &'static str {
        use ResponseType::*;
        match self {
            AccessDenied | ApiKeyInvalid | WafFiltered => "Forbidden",
            AuthorizerFailure | Default5xx => "Internal server error",
            BadRequestBody => "Invalid request body",
            BadRequestParameters => "Missing required request parameters",
            Default4xx => "Bad Request",
            ExpiredToken => "The incoming token has expired",
            IntegrationFailure => "Bad Gateway",
            IntegrationTimeout => "Endpoint request timed out",
            InvalidSignature => "Invalid signature",
            MissingAuthenticationToken => "Missing Authentication Token",
            NotFound | ResourceNotFound => "Not Found",
            QuotaExceeded => "Limit Exceeded",
            RequestTooLarge => "Request Too Long",
            Throttled => "Too Many Requests",
            Unauthorized => "Unauthorized",
            UnsupportedMediaType => "Unsupported Media Type",
        }
    }

    /// The DEFAULT_* type whose override applies when this type has none.
    fn family(self) -> ResponseType {
        if self.status() >= 500 {
            ResponseType::Default5xx
        } else {
            ResponseType::Default4xx
        }
    }
}

/// A per-API override, compiled: the body is a template name in the snapshot's environment.
#[derive(Debug, Clone)]
pub struct CustomResponse {
    pub status: Option<u16>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body_template: Option<String>,
}

/// What to send for one gateway response, before rendering.
pub struct Resolved<'a> {
    pub status: u16,
    pub headers: &'a [(http::HeaderName, http::HeaderValue)],
    pub body_template: Option<&'a str>,
}

/// The overrides of one API.
#[derive(Debug, Default)]
pub struct Overrides(pub HashMap<ResponseType, CustomResponse>);

impl Overrides {
    pub fn resolve(&self, t: ResponseType) -> Resolved<'_> {
        let own = self.0.get(&t);
        let fam =
            if t == ResponseType::Default4xx || t == ResponseType::Default5xx { None } else { self.0.get(&t.family()) };
        let status = own.and_then(|c| c.status).unwrap_or(t.status());
        match own.or(fam) {
            Some(c) => Resolved { status, headers: &c.headers, body_template: c.body_template.as_deref() },
            None => Resolved { status, headers: &[], body_template: None },
        }
    }
}

/// The built-in body: `{"message": "..."}`.
/// The default body, `{"message": ...}`: the type's message, or a more precise one (what
/// failed validation).
pub fn message_body(message: &str) -> String {
    serde_json::json!({ "message": message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_statuses_follow_aws() {
        for t in ALL_TYPES {
            assert_eq!(ResponseType::from_name(t.name()), Some(t));
        }
        assert_eq!(ResponseType::IntegrationTimeout.status(), 504);
        assert_eq!(ResponseType::RequestTooLarge.status(), 413);
        assert_eq!(message_body(ResponseType::NotFound.message()), r#"{"message":"Not Found"}"#);
    }

    #[test]
    fn default_family_overrides_apply() {
        let mut o = Overrides::default();
        o.0.insert(
            ResponseType::Default4xx,
            CustomResponse { status: None, headers: vec![], body_template: Some("t4".into()) },
        );
        let r = o.resolve(ResponseType::NotFound);
        assert_eq!((r.status, r.body_template), (404, Some("t4")));
        let r = o.resolve(ResponseType::IntegrationTimeout);
        assert_eq!((r.status, r.body_template), (504, None));
    }
}
