//! The proxy's side of admission (`crate::admission`): the request as a Pingora session
//! offers it ([`Reading`]), the route's compiled rules from the snapshot, and where the
//! admitted caller goes in the request's state.

use super::{body, Gateway};
use crate::admission::{self, Incoming, KeyRules, Rules};
use crate::proxy::ctx::{RequestCtx, Timing};
use crate::request::{BodyError, RequestView};
use crate::responses::Refusal;
use crate::snapshot::Snapshot;
use async_trait::async_trait;
use opentelemetry::KeyValue;
use pingora::prelude::*;

/// A request being admitted: its session (the body handle) and its state (the view).
pub(super) struct Reading<'s> {
    pub session: &'s mut Session,
    pub ctx: &'s mut RequestCtx,
}

#[async_trait]
impl Incoming for Reading<'_> {
    fn view(&self) -> RequestView<'_> {
        self.ctx.view(self.session.req_header())
    }

    fn has_body(&mut self) -> bool {
        body::has_body(self.session, self.ctx)
    }

    async fn read_body(&mut self, max: u64) -> Result<(), BodyError> {
        body::read(self.session, self.ctx, max).await.map(|_| ())
    }

    fn clock(&self) -> Option<std::time::Instant> {
        self.ctx.trace.as_ref().filter(|t| t.recording()).map(|_| std::time::Instant::now())
    }

    fn ran(&mut self, step: &'static str, started: std::time::Instant, refused: bool, attributes: Vec<KeyValue>) {
        if let Some(t) = &mut self.ctx.trace {
            t.span(step, started, attributes, refused);
        }
    }
}

/// The admission rules the snapshot compiled for route `at` = (api, stage, route), for a
/// request that arrived at `timing`.
pub fn rules<'s>(snap: &'s Snapshot, (ai, si, ri): (usize, usize, usize), timing: &Timing) -> Rules<'s> {
    let (api, stage) = (&snap.apis[ai], &snap.apis[ai].stages[si]);
    let route = &api.routes[ri];
    Rules {
        account: &snap.account,
        stage: stage.throttle.as_deref(),
        route: stage.route_throttles.get(ri).and_then(|b| b.as_deref()),
        authorizer: route.authorizer.as_ref().map(|(name, a)| (&**name, a)),
        scopes: &route.scopes,
        api_key: route.api_key_required.then_some(KeyRules {
            keys: snap.api_keys.as_ref(),
            plans: &snap.plans,
            at: (ai, si, ri),
            cluster: snap.cluster.as_ref(),
        }),
        validate: route.validate.as_deref(),
        max_body: snap.settings.max_body,
        now: crate::clock::unix_secs(timing.received_at),
        now_ns: crate::throttle::bucket::ns_at(timing.start),
    }
}

impl Gateway {
    /// Runs the admission pipeline for a routed request (its policy step ran in `route`);
    /// on success the caller and the applied limit are the request's.
    pub(super) async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let snap = ctx.snap.clone();
        let Some((ai, si, Some(ri))) = ctx.route.as_ref().map(|m| (m.api, m.stage, m.route)) else {
            return Ok(());
        };
        let rules = rules(&snap, (ai, si, ri), &ctx.timing);
        let admitted = admission::admit(&mut Reading { session, ctx }, &rules).await?;
        ctx.caller = admitted.caller;
        ctx.ratelimit = admitted.ratelimit;
        Ok(())
    }
}
