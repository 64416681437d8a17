//! AWS protocols shared by authorizers and integrations: credentials, SigV4 and the Lambda
//! Invoke client.
pub mod credentials;
pub mod invoke;
pub mod sigv4;
