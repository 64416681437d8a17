//! Admission: the ordered steps every routed request passes before its integration (and
//! that a WebSocket `$connect` will pass the same way). Each step lives in its concern's
//! module and returns the one `responses::Refusal` shape:
//!
//! 1. resource policy (`policy`, in `route`, before routes are matched)
//! 2. account, stage and route throttles (`throttle::admit::shared`): before authorizers,
//!    so floods of unauthenticated requests cost no authorizer call or signature check
//! 3. the route's authorizer (`auth::{jwt, lambda, sigv4}`; SigV4 reads the body once
//!    through `proxy::body`)
//! 4. the API key (`api_keys::check`)
//! 5. the key's usage plan: its buckets and quota (`throttle::admit::keyed`)

use super::{body, Gateway};
use crate::proxy::ctx::RequestCtx;
use crate::responses::{Refusal, ResponseType};
use crate::snapshot::Authorizer;

use crate::throttle;
use pingora::prelude::*;

impl Gateway {
    /// Steps 2–5 for a routed request (step 1 runs in `route`). The first refusal wins.
    pub(super) async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let snap = ctx.snap.clone();
        let Some((ai, si, Some(ri))) = ctx.route.as_ref().map(|m| (m.api, m.stage, m.route)) else {
            return Ok(());
        };
        let stage = &snap.apis[ai].stages[si];
        let route_bucket = stage.route_throttles.get(ri).and_then(|b| b.as_deref());
        ctx.ratelimit = throttle::admit::shared(&snap.account, stage.throttle.as_deref(), route_bucket)?;
        self.authorize(session, ctx).await?;
        if snap.apis[ai].routes[ri].api_key_required {
            let (id, plan) =
                crate::api_keys::check(snap.api_keys.as_ref(), &snap.plans, &session.req_header().headers, (ai, si))?;
            ctx.caller.api_key_id = Some(id.clone());
            if let Some(d) = throttle::admit::keyed(snap.cluster.as_ref(), plan, &id, (ai, si, ri)).await? {
                ctx.ratelimit = Some(d);
            }
        }
        Ok(())
    }

    /// The route's authorizer; on success `ctx.caller.principal` is the caller.
    async fn authorize(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let snap = ctx.snap.clone();
        let Some((ai, si, Some(ri))) = ctx.route.as_ref().map(|m| (m.api, m.stage, m.route)) else {
            return Ok(());
        };
        let api = &snap.apis[ai];
        let stage = &api.stages[si];
        let route = &api.routes[ri];
        let Some((name, authorizer)) = &route.authorizer else { return Ok(()) };
        let principal = match authorizer {
            Authorizer::Jwt(jwt) => jwt
                .authorize_async(&session.req_header().headers, &route.scopes)
                .await
                .map_err(|r| Refusal::auth(name, r.reason(), r.response_type()))?,
            Authorizer::Lambda(authz) => {
                let req = session.req_header();
                let m = ctx.route.as_ref().ok_or(Refusal::new(ResponseType::Default5xx))?;
                // the authorizer is told what integrations are told (forwarded::to_integration)
                let mut headers = req.headers.clone();
                super::forwarded::to_integration(&mut headers, &ctx.hop());
                let call = crate::auth::lambda::Call {
                    method_arn: method_arn(&api.name, &stage.name, req.method.as_str(), &m.path),
                    resource: route.key.split_once(' ').map(|(_, p)| p).unwrap_or(&route.key),
                    path: &m.path,
                    method: req.method.as_str(),
                    headers: &headers,
                    query: crate::request::query_map(req.uri.query()),
                    path_params: &m.params,
                    stage_variables: &m.variables,
                    api: &api.name,
                    stage: &stage.name,
                    request_id: &ctx.request_id,
                    source_ip: ctx.client.source_ip(),
                };
                let (result, hit) = authz.authorize(&call).await;
                crate::observability::metrics::AUTHORIZER_CACHE
                    .with_label_values(&[&**name, if hit { "hit" } else { "miss" }])
                    .inc();
                result.map_err(|r| Refusal::auth(name, r.reason(), r.response_type()))?
            }
            Authorizer::SigV4(authz) => {
                let refuse = |r: crate::auth::sigv4::Refused| Refusal::auth(name, r.reason(), r.response_type());
                // a body that cannot be read whole is refused as such (413, 411, 400)
                let body_sha256 = signed_body_hash(session, ctx).await.map_err(body::BodyError::refusal)?;
                let req = session.req_header();
                let path = ctx.route.as_ref().map(|m| m.path.as_str()).unwrap_or("/");
                let arn = method_arn(&api.name, &stage.name, req.method.as_str(), path);
                authz.authorize(&signed(req, body_sha256, &arn, "execute-api:Invoke")).map_err(refuse)?
            }
        };
        ctx.caller.principal = Some(principal);
        Ok(())
    }
}

/// What a SigV4 authorizer checks of a request: its method, path, query and headers as
/// received, the body's digest, and the ARN and action the policy must allow.
pub(super) fn signed<'a>(
    req: &'a pingora::http::RequestHeader,
    body_sha256: Option<String>,
    arn: &'a str,
    action: &'a str,
) -> crate::auth::sigv4::Signed<'a> {
    crate::auth::sigv4::Signed {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query().unwrap_or(""),
        headers: &req.headers,
        host: req.uri.authority().map(|a| a.as_str()).unwrap_or(""),
        body_sha256,
        method_arn: arn,
        action,
        now: super::unix_now(),
    }
}

/// `arn:edgegate:execute-api:{api}/{stage}/{METHOD}/{path}`: what IAM-like policies name.
pub(super) fn method_arn(api: &str, stage: &str, method: &str, path: &str) -> String {
    format!("arn:edgegate:execute-api:{api}/{stage}/{method}/{}", path.trim_start_matches('/'))
}

/// The SHA-256 of the body the integration will receive, read once through `proxy::body`
/// whatever its framing (HTTP/1 length or chunked, HTTP/2 with or without
/// `content-length`) up to `server.max_body`; `None` when the request declares
/// `UNSIGNED-PAYLOAD`.
async fn signed_body_hash(session: &mut Session, ctx: &mut RequestCtx) -> Result<Option<String>, body::BodyError> {
    let req = session.req_header();
    if req.headers.get("x-amz-content-sha256").is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD") {
        return Ok(None);
    }
    let max = ctx.snap.settings.max_body;
    let whole = body::read(session, ctx, max).await?;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(whole);
    Ok(Some(hex::encode(digest)))
}
