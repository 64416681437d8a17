//! Authorizers: who the caller is, decided before API keys and limits.
pub mod iam;
pub mod jwt;
pub mod lambda;
pub mod sigv4;

/// The authenticated caller, for templates (`context.authorizer.*`), logs and (later) the
/// Lambda event.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Principal {
    #[serde(rename = "principalId")]
    pub principal_id: String,
    /// JWT claims; for a Lambda-style authorizer, its answer's `context` (as before).
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub scopes: Vec<String>,
    /// A Lambda-style authorizer's `context`, reachable as `context.authorizer.<key>` as in
    /// AWS's `$context.authorizer.<key>`. Keys named like the fields above are left out.
    #[serde(flatten)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

impl Principal {
    /// The keys of `context` that would shadow a field of the principal.
    pub const RESERVED: [&'static str; 3] = ["principalId", "claims", "scopes"];
}

use std::sync::Arc;

/// A route's authorizer, compiled.
#[derive(Clone)]
pub enum Authorizer {
    Jwt(Arc<jwt::JwtAuthorizer>),
    Lambda(Arc<lambda::LambdaAuthorizer>),
    SigV4(Arc<sigv4::SigV4Authorizer>),
}

impl Authorizer {
    /// The request headers that identify the caller to this authorizer.
    pub fn identity_headers(&self, mut f: impl FnMut(&http::HeaderName)) {
        match self {
            Authorizer::Jwt(j) => f(j.identity_header()),
            Authorizer::Lambda(l) => l.identity_headers(f),
            Authorizer::SigV4(_) => f(&http::header::AUTHORIZATION),
        }
    }
}
