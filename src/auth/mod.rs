//! Authorizers: who the caller is, decided before API keys and limits.
pub mod iam;
pub mod jwt;
pub mod lambda;
pub mod sigv4;

/// The authenticated caller, for templates, logs and (later) the Lambda event.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Principal {
    #[serde(rename = "principalId")]
    pub principal_id: String,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub scopes: Vec<String>,
}
