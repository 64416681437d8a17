//! Mock integrations (`type = "mock"`): the gateway answers with a fixed status, headers
//! and a body template, as API Gateway's MOCK integration does.

use super::{Answer, BodyUse, Env, IntegrationError, Made};
use crate::request::RequestView;
use async_trait::async_trait;
use bytes::Bytes;

/// A compiled `type = "mock"` integration.
pub struct Mock {
    pub status: u16,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Template name in `Snapshot::templates`.
    pub body: Option<String>,
}

#[async_trait]
impl Answer for Mock {
    fn body_use(&self) -> BodyUse {
        // read and checked before the answer, as an integration would
        BodyUse::Drain
    }

    async fn answer(&self, view: &RequestView<'_>, env: &Env<'_>) -> Result<Made, IntegrationError> {
        let body = match &self.body {
            Some(name) => {
                let vars = crate::templates::Vars::of(view, None, ("", &serde_json::Value::Null));
                crate::templates::render(env.templates, name, &vars)
                    .map_err(|e| IntegrationError::Template { name: name.clone(), why: e.to_string() })?
            }
            None => String::new(),
        };
        Ok(Made {
            status: self.status,
            headers: self.headers.clone(),
            body: Bytes::from(body),
            integration_status: None,
            cacheable: false,
        })
    }
}
