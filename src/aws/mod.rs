//! AWS protocols shared by authorizers and integrations: credentials, SigV4 and the Lambda
//! Invoke client.
pub mod credentials;
pub mod lambda;
pub mod sigv4;
