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
    /// As API Gateway's MOCK: the request template's `{"statusCode": N}` picks the
    /// integration response, whose template makes the body.
    pub mapping: Option<super::mapping::Mapping>,
}

#[async_trait]
impl Answer for Mock {
    fn body_use(&self) -> BodyUse {
        match self.mapping {
            // the request template reads it
            Some(_) => BodyUse::Whole(crate::aws::invoke::MAX_PAYLOAD as u64),
            // read and checked before the answer, as an integration would
            None => BodyUse::Drain,
        }
    }

    async fn answer(&self, view: &RequestView<'_>, env: &Env<'_>) -> Result<Made, IntegrationError> {
        if let Some(m) = &self.mapping {
            let scope = super::mapping::Scope::of(view);
            let status = match m.request(view, &scope, env.binary)? {
                super::mapping::Request::Rendered(b) => serde_json::from_slice::<serde_json::Value>(&b)
                    .ok()
                    .and_then(|v| v.get("statusCode").and_then(|s| s.as_u64()))
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(200),
                super::mapping::Request::Passthrough(_) => 200,
            };
            let mut made =
                m.response(view, &scope, Some(&status.to_string()), status, &http::HeaderMap::new(), Bytes::new())?;
            made.integration_status = None;
            made.cacheable = false;
            made.headers.extend(self.headers.iter().cloned());
            return Ok(made);
        }
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
