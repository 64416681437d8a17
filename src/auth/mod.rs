//! Authorizers: who the caller is, decided before API keys and limits.
pub mod external;
pub mod iam;
pub mod jwt;
pub mod sigv4;

pub use crate::request::Principal;

use std::sync::Arc;

/// A route's authorizer, compiled.
#[derive(Clone)]
pub enum Authorizer {
    Jwt(Arc<jwt::JwtAuthorizer>),
    Lambda(Arc<external::LambdaAuthorizer>),
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
