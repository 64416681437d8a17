//! Admission: the ordered steps every routed request passes before its integration, the
//! same for HTTP requests and WebSocket handshakes. Each step is a free function over the
//! request view ([`RequestView`]) and the route's compiled [`Rules`]; the first refusal
//! wins and is the one [`Refusal`] shape the proxy answers with.
//!
//! 1. resource policy ([`policy`]): runs as soon as the API is known, before its routes are
//!    matched, so a refused client learns nothing of them (`proxy::identify::route`)
//! 2. account, stage and route throttles ([`throttles`]): before authorizers, so floods of
//!    unauthenticated requests cost no authorizer call and no signature check
//! 3. the route's authorizer ([`authorize`]): JWT, Lambda-style or SigV4 (a signed payload
//!    is hashed from the whole body, read once through the [`Incoming`] handle)
//! 4. the API key ([`api_key`])
//! 5. the key's usage plan: its buckets and quota ([`keyed_throttles`])
//! 6. request validation ([`validate`]): parameters, media type, then the body read whole
//!
//! The pipeline reads the request only through [`Incoming`]: the proxy implements it over
//! a Pingora session, and the in-process tests over plain values.

use crate::auth::{Authorizer, Principal};
use crate::request::{BodyError, Caller, RequestView};
use crate::responses::{Refusal, ResponseType};
use crate::throttle::bucket::{Bucket, Decision};
use crate::throttle::cluster::{Cluster, OnError};
use crate::validation::Validator;
use async_trait::async_trait;
use opentelemetry::KeyValue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The request as admission reads it.
#[async_trait]
pub trait Incoming: Send {
    /// The request view as it stands (with the body once [`Incoming::read_body`] read it).
    fn view(&self) -> RequestView<'_>;
    /// Whether the request has a body, asked of the connection (not guessed from headers).
    fn has_body(&mut self) -> bool;
    /// Reads the whole body once, whatever its framing, up to `max` bytes.
    async fn read_body(&mut self, max: u64) -> Result<(), BodyError>;
    /// When the request's trace records spans: now, the start of a step (otherwise `None`,
    /// and nothing is measured).
    fn clock(&self) -> Option<Instant> {
        None
    }
    /// A step that ran (started at `clock()`'s time), for the request's trace.
    fn ran(&mut self, _step: &'static str, _started: Instant, _refused: bool, _attributes: Vec<KeyValue>) {}
}

/// Reports a step that ran to the request's trace, when it records one.
fn ran<T>(req: &mut dyn Incoming, step: &'static str, started: Option<Instant>, r: &Result<T, Refusal>) {
    ran_with(req, step, started, r, Vec::new());
}

/// As [`ran`], with the step's own attributes.
fn ran_with<T>(
    req: &mut dyn Incoming,
    step: &'static str,
    started: Option<Instant>,
    r: &Result<T, Refusal>,
    mut attributes: Vec<KeyValue>,
) {
    if let Some(t) = started {
        if let Err(refusal) = r {
            attributes.push(KeyValue::new("edgegate.refusal", refusal.response.name()));
        }
        req.ran(step, t, r.is_err(), attributes);
    }
}

/// What the snapshot compiled for one route in one stage, as admission needs it.
pub struct Rules<'a> {
    pub account: &'a Bucket,
    pub stage: Option<&'a Bucket>,
    pub route: Option<&'a Bucket>,
    /// The route's authorizer and its name (the auth-failure metric label).
    pub authorizer: Option<(&'a str, &'a Authorizer)>,
    /// Scopes a JWT must carry.
    pub scopes: &'a [String],
    /// The route requires an API key: the stage's keys and plans.
    pub api_key: Option<KeyRules<'a>>,
    pub validate: Option<&'a Validator>,
    /// `server.max_body`: the most any step reads.
    pub max_body: u64,
    /// The request's arrival in Unix seconds (SigV4 signing times are checked against it,
    /// quotas counted in its period).
    pub now: u64,
    /// The request's arrival on the limiter clock (`throttle::bucket::ns_at`): every bucket
    /// is taken at it, so admission reads no clock of its own.
    pub now_ns: u64,
}

/// The API key rules of a route that requires a key.
pub struct KeyRules<'a> {
    pub keys: Option<&'a crate::api_keys::ApiKeys>,
    pub plans: &'a HashMap<String, crate::throttle::Plan>,
    /// (api, stage, route) indexes: where plans are attached and route throttles keyed.
    pub at: (usize, usize, usize),
    pub cluster: Option<&'a (Arc<Cluster>, OnError)>,
}

/// A request admitted: who the caller is, and the limit that applied.
#[derive(Default)]
pub struct Admitted {
    pub caller: Caller,
    /// The most specific key or route limit applied (the `ratelimit-*` fields).
    pub ratelimit: Option<Decision>,
}

/// Steps 2–6, in order; step 1 ran before the route was matched.
/// Each step that ran is reported to the request's trace (`Incoming::ran`).
pub async fn admit(req: &mut dyn Incoming, rules: &Rules<'_>) -> Result<Admitted, Refusal> {
    let t = req.clock();
    let limited = throttles(rules);
    ran(req, "throttle", t, &limited);
    let mut admitted = Admitted { ratelimit: limited?, ..Admitted::default() };
    if let Some(a) = rules.authorizer {
        let t = req.clock();
        let r = authorize(req, a, rules).await;
        if t.is_some() {
            let mut attributes = vec![KeyValue::new("edgegate.authorizer", a.0.to_string())];
            if let Ok((_, _, Some(hit))) = &r {
                attributes.push(KeyValue::new("edgegate.authorizer.cache", if *hit { "hit" } else { "miss" }));
            }
            ran_with(req, "authorizer", t, &r, attributes);
        }
        let (principal, jwt, _) = r?;
        admitted.caller.principal = Some(principal);
        admitted.caller.jwt = jwt;
    }
    if let Some(k) = &rules.api_key {
        let t = req.clock();
        let key = api_key(&req.view(), k);
        ran(req, "api key", t, &key);
        let (id, plan) = key?;
        let t = req.clock();
        let limited = keyed_throttles(k, plan, &id, rules).await;
        ran(req, "usage plan", t, &limited);
        if let Some(d) = limited? {
            admitted.ratelimit = Some(d);
        }
        admitted.caller.api_key_id = Some(id);
    }
    if let Some(v) = rules.validate {
        let t = req.clock();
        let r = validate(req, v, rules.max_body).await;
        ran(req, "validation", t, &r);
        r?;
    }
    Ok(admitted)
}

/// Step 1: the API's resource policy.
pub fn policy(p: &crate::policy::Policy, view: &RequestView<'_>) -> Result<(), Refusal> {
    p.check(view.client.ip, view.headers())
        .map_err(|denied| Refusal::auth("policy", denied.reason(), ResponseType::AccessDenied))
}

/// Step 2: account, stage and route buckets.
pub fn throttles(rules: &Rules<'_>) -> Result<Option<Decision>, Refusal> {
    crate::throttle::admit::shared(rules.account, rules.stage, rules.route, rules.now_ns)
}

/// Step 3: the route's authorizer; the caller, whether it was a JWT one, and for a
/// Lambda-style authorizer whether its answer came from its cache.
pub async fn authorize(
    req: &mut dyn Incoming,
    (name, authorizer): (&str, &Authorizer),
    rules: &Rules<'_>,
) -> Result<(Arc<Principal>, bool, Option<bool>), Refusal> {
    match authorizer {
        Authorizer::Jwt(jwt) => {
            let view = req.view();
            let p = jwt.authorize_async(view.headers(), rules.scopes).await;
            Ok((p.map_err(|r| Refusal::auth(name, r.reason(), r.response_type()))?, true, None))
        }
        Authorizer::Lambda(authz) => {
            let view = req.view();
            // the authorizer is told what integrations are told (forwarded::to_integration)
            let headers = crate::forwarded::to_integration(view.headers(), &crate::forwarded::Hop::of(view.client));
            let call = crate::auth::external::Call { view, method_arn: method_arn(&view), headers: &headers };
            let (result, hit) = authz.authorize(&call).await;
            crate::observability::metrics::AUTHORIZER_CACHE
                .with_label_values(&[name, if hit { "hit" } else { "miss" }])
                .inc();
            Ok((result.map_err(|r| Refusal::auth(name, r.reason(), r.response_type()))?, false, Some(hit)))
        }
        Authorizer::SigV4(authz) => {
            // the SHA-256 of the body the integration will receive, read once whatever its
            // framing; a body that cannot be read whole is refused as such (413, 411, 400)
            let unsigned =
                req.view().headers().get("x-amz-content-sha256").is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD");
            if !unsigned {
                req.read_body(rules.max_body).await.map_err(BodyError::refusal)?;
            }
            let view = req.view();
            let digest = view.body.filter(|_| !unsigned).map(crate::aws::sigv4::sha256_hex);
            let arn = method_arn(&view);
            let signed = crate::auth::sigv4::Signed::of(&view, digest, &arn, "execute-api:Invoke", rules.now);
            let p = authz.authorize(&signed).map_err(|r| Refusal::auth(name, r.reason(), r.response_type()))?;
            Ok((p, false, None))
        }
    }
}

/// Step 4: the API key the request presents, valid for this stage; its id and plan.
pub fn api_key<'s>(view: &RequestView<'_>, k: &KeyRules<'s>) -> Result<(Arc<str>, &'s crate::throttle::Plan), Refusal> {
    crate::api_keys::check(k.keys, k.plans, view.headers(), (k.at.0, k.at.1))
}

/// Step 5: the key's plan bucket, plan-per-route bucket and quota.
pub async fn keyed_throttles(
    k: &KeyRules<'_>,
    plan: &crate::throttle::Plan,
    id: &Arc<str>,
    rules: &Rules<'_>,
) -> Result<Option<Decision>, Refusal> {
    crate::throttle::admit::keyed(k.cluster, plan, id, k.at, (rules.now_ns, rules.now)).await
}

/// Step 6: required parameters, the body's media type, then the body itself (read whole,
/// up to `max`, before any byte of it reaches the integration).
pub async fn validate(req: &mut dyn Incoming, v: &Validator, max: u64) -> Result<(), Refusal> {
    v.check_params(req.view().head)?;
    if req.has_body() {
        v.check_media_type(req.view().content_type())?;
    }
    if v.body.is_none() {
        return Ok(());
    }
    req.read_body(max).await.map_err(BodyError::refusal)?;
    let view = req.view();
    v.check_body(view.content_type(), view.body.unwrap_or_default())?;
    Ok(())
}

/// `arn:edgegate:execute-api:{api}/{stage}/{METHOD}/{path}`: what IAM-like policies name.
pub fn method_arn(view: &RequestView<'_>) -> String {
    let path = view.route.path.trim_start_matches('/');
    format!("arn:edgegate:execute-api:{}/{}/{}/{path}", view.api(), view.stage(), view.method())
}
