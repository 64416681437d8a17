//! Everything known of a request before admission: its id, host, client (the forwarding
//! rule), TLS identity, and where it is routed (API, stage, route; the resource policy first).

use super::Gateway;
use crate::forwarded;
use crate::proxy::ctx::{RequestCtx, RouteMatch};
use crate::request::Proto;
use crate::responses::{Refusal, ResponseType};
use crate::routing;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use std::sync::Arc;

/// A caller's request id is kept only if it is short and plain.
fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn host_of(req: &RequestHeader) -> String {
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let h = match raw.rfind(':') {
        Some(i) if !raw.ends_with(']') && raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
        _ => raw,
    };
    h.to_ascii_lowercase()
}

impl Gateway {
    /// Identity, forwarding headers and request id: everything known before routing.
    pub(super) fn identify(&self, session: &Session, ctx: &mut RequestCtx) {
        let req = session.req_header();
        ctx.request_id = match req.headers.get(&crate::request::X_REQUEST_ID) {
            Some(v) if valid_request_id(v.as_bytes()) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            _ => {
                let mut buf = uuid::Uuid::encode_buffer();
                String::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
            }
        };
        ctx.trace = self.runtime.tracing.begin(&req.headers);
        ctx.client.host = host_of(req);
        ctx.client.port = session.server_addr().and_then(|a| a.as_inet()).map(|a| a.port());
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        ctx.client.proto = if tls.is_some() { Proto::Https } else { Proto::Http };
        ctx.client.cert =
            tls.and_then(|t| t.extension.get::<crate::tls::certs::ClientCert>()).map(|c| Arc::new(c.clone()));
        if let Some(peer) = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) {
            // every X-Forwarded-For line, in order, as one list (request::header)
            let xff = crate::request::header(&req.headers, &forwarded::X_FORWARDED_FOR);
            let f = forwarded::forwarded(peer, xff.as_deref(), &ctx.snap.settings.trusted_proxies);
            if f.trusted_peer {
                // one value each; a list (several lines or commas) is not believed
                let keep = |n: &http::HeaderName| {
                    crate::request::header(&req.headers, n).filter(|v| !v.contains(',')).map(|v| v.trim().to_string())
                };
                ctx.client.forwarded_proto = keep(&forwarded::X_FORWARDED_PROTO).and_then(|p| Proto::parse(&p));
                ctx.client.forwarded_host = keep(&forwarded::X_FORWARDED_HOST);
            }
            ctx.client.trusted_peer = f.trusted_peer;
            ctx.client.ip = f.client_ip;
            ctx.client.xff = f.xff;
        }
    }

    /// Finds API, stage and route; `Err` is the gateway response to send.
    pub(super) fn route(&self, session: &Session, ctx: &mut RequestCtx) -> std::result::Result<(), Refusal> {
        let req = session.req_header();
        let path = routing::normalize(req.uri.path()).map_err(|_| Refusal::new(ResponseType::Default4xx))?;
        let snap = ctx.snap.clone();
        let Some((mount, rest)) = snap.resolve(&ctx.client.host, &path, self.private) else {
            return Err(Refusal::new(ResponseType::NotFound));
        };
        let api = &snap.apis[mount.api];
        let stage = &api.stages[mount.stage];
        // admission step 1, the resource policy: before routes are matched, so a refused
        // client learns nothing of them
        if let Some(policy) = &api.policy {
            let t = ctx.trace.as_ref().filter(|t| t.recording()).map(|_| std::time::Instant::now());
            let checked = crate::admission::policy(policy, &ctx.view(req));
            if let Some((t, trace)) = t.zip(ctx.trace.as_mut()) {
                trace.span("policy", t, Vec::new(), checked.is_err());
            }
            if let Err(refusal) = checked {
                ctx.route = Some(RouteMatch {
                    path: String::new(),
                    api: mount.api,
                    stage: mount.stage,
                    route: None,
                    params: vec![],
                    variables: stage.view.variables.clone(),
                    integration: None,
                    canary: false,
                });
                return Err(refusal);
            }
        }
        let view = match &stage.canary {
            Some((share, canary)) if fastrand::f64() < *share => canary,
            _ => &stage.view,
        };
        if let Some(ws) = &api.websocket {
            // every request of a WebSocket API is a handshake ($connect) or a management call
            ctx.route = Some(RouteMatch {
                path: rest.to_string(),
                api: mount.api,
                stage: mount.stage,
                route: ws.connect,
                params: vec![],
                variables: view.variables.clone(),
                integration: ws.connect.map(|i| view.integrations[i].clone()),
                canary: view.is_canary,
            });
            return Ok(());
        }
        let m = api.router.find(&req.method, rest);
        let mut rm = RouteMatch {
            path: rest.to_string(),
            api: mount.api,
            stage: mount.stage,
            route: m.as_ref().map(|m| m.route),
            params: m
                .as_ref()
                .map(|m| m.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
                .unwrap_or_default(),
            variables: view.variables.clone(),
            integration: None,
            canary: view.is_canary,
        };
        let Some(m) = m else {
            ctx.route = Some(rm);
            return Err(Refusal::new(ResponseType::NotFound));
        };
        let integration = view.integrations[m.route].clone();
        if let Some(t) = integration.forward() {
            ctx.upstream.uri = if t.via.is_some() {
                crate::integrations::edge::forward_uri(&path, req.uri.query())
            } else {
                t.request_uri(rest, &rm.params, req.uri.query())
            };
            ctx.upstream.retries_left = t.retries;
        }
        rm.integration = Some(integration);
        ctx.route = Some(rm);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(valid_request_id(b"abc-123_x.y:z"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id(b"<script>"));
        assert!(!valid_request_id(&[b'a'; 129]));
    }

    #[test]
    fn host_strips_port_and_case() {
        let mut r = RequestHeader::build("GET", b"/", None).expect("req");
        r.insert_header("host", "API.Example.com:8443").expect("h");
        assert_eq!(host_of(&r), "api.example.com");
        r.insert_header("host", "[::1]:80").expect("h");
        assert_eq!(host_of(&r), "[::1]");
    }
}
