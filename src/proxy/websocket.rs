//! WebSocket APIs in the proxy: the handshake (admission, `$connect`, then the connection,
//! then `$disconnect`) and the AWS-style management API on the public listener.

use super::{body, Gateway, RequestCtx};
use crate::observability::access_log;
use crate::responses::{Refusal, ResponseType};
use crate::websocket::{self, conn, manage, WsApi};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use std::sync::Arc;

impl Gateway {
    /// Serves a request routed to a WebSocket API; always answers (returns `true`).
    pub(super) async fn websocket(&self, session: &mut Session, ctx: &mut RequestCtx, ws: Arc<WsApi>) -> Result<bool> {
        let Some(m) = ctx.route.as_ref() else { return Ok(false) };
        if let Some(raw_id) = manage::connections_path(&m.path).filter(|id| !id.is_empty()) {
            let raw_id = raw_id.to_string();
            self.manage_public(session, ctx, &ws, &raw_id).await?;
            return Ok(true);
        }
        let key = match websocket::check_handshake(session.req_header()) {
            Ok(k) => k,
            Err(why) => {
                let r = Refusal::new(ResponseType::Default4xx).with_status(426).with_message(why);
                let r = Refusal { headers: vec![("upgrade", "websocket".into())], ..r };
                self.refuse(session, ctx, r).await?;
                return Ok(true);
            }
        };
        let stage_index = ctx.route.as_ref().map_or(0, |m| m.stage);
        let rate = ws.connection_rate.get(stage_index).map(|b| b.take(crate::throttle::bucket::now_ns()));
        if rate.is_some_and(|d| !d.allowed) {
            let r = Refusal {
                counted: crate::responses::Counted::Throttled("connections"),
                ..Refusal::new(ResponseType::Throttled)
            };
            self.refuse(session, ctx, r).await?;
            return Ok(true);
        }
        if let Err(refusal) = self.admit(session, ctx).await {
            self.refuse(session, ctx, refusal).await?;
            return Ok(true);
        }
        let snap = ctx.snap.clone();
        let Some(m) = ctx.route.as_ref() else { return Ok(false) };
        let api = &snap.apis[m.api];
        let stage = &api.stages[m.stage];
        let view = match (&stage.canary, m.canary) {
            (Some((_, c)), true) => c,
            _ => &stage.view,
        };
        let req = session.req_header();
        let id = websocket::new_id();
        let info = Arc::new(conn::Info::new(conn::Handshake {
            view: ctx.view(req),
            conn_id: id.clone(),
            ws: ws.clone(),
            integrations: view.integrations.clone(),
            route_keys: api.routes.iter().map(|r| r.key.clone()).collect(),
            log: stage.access_log && snap.settings.access_log != crate::snapshot::AccessLogTarget::Off,
            tracing: self.runtime.tracing.clone(),
        }));

        if let Some(ci) = ws.connect {
            let context = ctx.trace.as_ref().map(|t| t.outgoing().collect::<Vec<_>>()).unwrap_or_default();
            let started = std::time::Instant::now();
            let view = ctx.view(req);
            let e = conn::EventIn {
                kind: crate::integrations::ws_lambda::EventType::Connect,
                request_id: view.request_id,
                message_id: None,
                body: Bytes::new(),
                binary: false,
                handshake: Some(&view),
                ended: None,
                trace: &context,
            };
            // boxed: the call's state is not kept in this future for the connection's life
            let answer = Box::pin(conn::call(&info, ci, e)).await;
            ctx.upstream.latency_ms = Some(started.elapsed().as_millis() as u64);
            if let Some(t) = ctx.trace.as_mut().filter(|t| t.recording()) {
                let status = answer.as_ref().ok().map(|a| a.status);
                let mut attributes = vec![opentelemetry::KeyValue::new("edgegate.websocket.route", "$connect")];
                attributes.extend(status.map(|s| opentelemetry::KeyValue::new("http.response.status_code", s as i64)));
                t.client_span("integration", started, attributes, answer.is_err() || status.is_some_and(|s| s >= 500));
            }
            match answer {
                Ok(a) if (200..300).contains(&a.status) => ctx.upstream.status = Some(a.status),
                Ok(a) => {
                    // the handshake is refused with the integration's status
                    ctx.upstream.status = Some(a.status);
                    let status = if (400..600).contains(&a.status) { a.status } else { 502 };
                    let mut h = ResponseHeader::build(status, Some(2))?;
                    h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
                    session.set_keepalive(None);
                    let body = Bytes::from(crate::responses::message_body("the $connect route refused the connection"));
                    self.send(session, ctx, h, body).await?;
                    return Ok(true);
                }
                Err(e) => {
                    log::warn!("websocket $connect of {}: {e}", api.name);
                    session.set_keepalive(None);
                    let r =
                        Refusal::new(ResponseType::IntegrationFailure).with_message("the $connect integration failed");
                    self.refuse(session, ctx, r).await?;
                    return Ok(true);
                }
            }
        }
        let (c, rx) = self.runtime.connections.register(
            id.clone(),
            info.api.clone(),
            info.stage.clone(),
            info.source_ip.clone(),
            info.user_agent.clone(),
            ws.max_message,
        );
        let cluster = snap.cluster.as_ref().map(|(c, _)| c.clone());
        if let Some(cl) = &cluster {
            websocket::cluster::announce(cl, &id).await;
        }
        let stream = match conn::accept(session, &key).await {
            Ok(s) => s,
            Err(e) => {
                self.runtime.connections.unregister(&c);
                if let Some(cl) = &cluster {
                    websocket::cluster::retire(cl, &id);
                }
                return Err(e);
            }
        };
        ctx.outcome.status = 101;
        // the connection's own access-log line (CONNECTION) is written when it ends
        let line = info.log.then(|| {
            let entry = access_log::Entry {
                status: 101,
                integration_latency: ctx.upstream.latency_ms,
                integration_status: ctx.upstream.status,
                connection_id: Some(&id),
                event_type: Some("CONNECTION"),
                trace_id: ctx.trace.as_ref().map(|t| t.id()),
                ..access_log::Entry::of(&ctx.view(session.req_header()))
            };
            serde_json::to_value(&entry).unwrap_or_default()
        });
        ctx.websocket_detached = true;
        let runtime = self.runtime.clone();
        let started = std::time::Instant::now();
        // the relay is its own task: Pingora's request (and this future) end here; the
        // connection counts as in flight until its $disconnect is done, so a drain waits for it
        let in_flight = crate::lifecycle::InFlight::start();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let ended = conn::relay(stream, info.clone(), c.clone(), rx).await;
            runtime.connections.unregister(&c);
            if let Some(cl) = &cluster {
                websocket::cluster::retire(cl, &id);
            }
            // boxed: its state (an outbound call) is not part of the idle connection's task
            Box::pin(conn::disconnect(&info, &ended)).await;
            if let Some(mut line) = line {
                line["latency"] = (started.elapsed().as_millis() as u64).into();
                line["messagesIn"] = ended.messages_in.into();
                line["messagesOut"] = ended.messages_out.into();
                access_log::write(&line);
            }
        });
        Ok(true)
    }

    /// `POST|GET|DELETE /{stage}{base_path}/@connections/{id}`, SigV4-authorized by the
    /// API's `management.authorizer` for `execute-api:ManageConnections`.
    async fn manage_public(&self, session: &mut Session, ctx: &mut RequestCtx, ws: &WsApi, raw_id: &str) -> Result<()> {
        let answer = |status: u16, kind: &'static str, message: &str| manage::Answer {
            status,
            error_type: Some(kind),
            body: serde_json::json!({"message": message}).to_string().into_bytes(),
        };
        let a = 'a: {
            let Some((auth_name, crate::snapshot::Authorizer::SigV4(authz))) = &ws.management else {
                break 'a answer(403, "ForbiddenException", "this API has no management authorizer");
            };
            let Some(id) = manage::decode_id(raw_id) else {
                break 'a answer(400, "BadRequestException", "bad connection id");
            };
            let body = match body::read_all(session, ctx, 1 << 20).await {
                Ok(b) => b.clone(),
                Err(body::BodyError::TooLarge) => {
                    break 'a answer(413, "PayloadTooLargeException", "the message is too large")
                }
                Err(_) => break 'a answer(400, "BadRequestException", "the body was not received"),
            };
            let snap = ctx.snap.clone();
            let Some(m) = ctx.route.as_ref() else { break 'a answer(404, "NotFoundException", "no such API") };
            let (api, stage) = (&snap.apis[m.api].name, &snap.apis[m.api].stages[m.stage].name);
            let req = session.req_header();
            let arn = format!("arn:edgegate:execute-api:{api}/{stage}/{}/@connections/{id}", req.method);
            let digest = crate::aws::sigv4::sha256_hex(&body);
            let view = ctx.view(req);
            let action = "execute-api:ManageConnections";
            let signed = crate::auth::sigv4::Signed::of(&view, Some(digest), &arn, action, super::unix_now());
            match authz.authorize(&signed) {
                Ok(p) => ctx.caller.principal = Some(p),
                Err(r) => {
                    let (_, stage_name, _) = ctx.labels();
                    let labels = [&**api, stage_name, &**auth_name, r.reason()];
                    crate::observability::metrics::AUTH_FAILURES.with_label_values(&labels).inc();
                    break 'a answer(403, "ForbiddenException", "Forbidden");
                }
            }
            let method = req.method.clone();
            let cluster = snap.cluster.as_ref().map(|(c, _)| c);
            let reg = &self.runtime.connections;
            crate::websocket::reach::handle_any(reg, &method, &id, body, Some((api, stage)), cluster).await
        };
        let mut h = ResponseHeader::build(a.status, Some(3))?;
        h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        if let Some(t) = a.error_type {
            h.insert_header("x-amzn-errortype", t)?;
        }
        self.send(session, ctx, h, Bytes::from(a.body)).await
    }
}
