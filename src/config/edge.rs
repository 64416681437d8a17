//! The edge role's compile step: an `endpoint = "edge"` API on an edge node becomes one
//! `$default` route whose integration forwards to `[edge].origins` (`edge`), keeping the
//! API's resource policy, binary types and gateway responses, and which of its own routes
//! need a credential (for the edge cache).

use crate::integrations::edge::{Edge, Protected, LINK};
use crate::routing::{RouteKey, Router};
use crate::snapshot::{self, Integration, StageView};
use std::sync::Arc;

/// An `endpoint = "edge"` API as this node serves it: forwarded to the origins.
pub fn forwarding(target: &Arc<Integration>, edge: &Edge, api: snapshot::Api) -> snapshot::Api {
    let protected = api.routes.iter().map(|r| r.authorizer.is_some() || r.api_key_required).collect();
    let router = Router::build([(0, &RouteKey::Default)]).unwrap_or_default();
    let routes = vec![snapshot::Route {
        key: Arc::from("$default"),
        integration: Arc::from(LINK),
        api_key_required: false,
        authorizer: None,
        scopes: vec![],
        validate: None,
        request_transform: None,
        response_transform: None,
    }];
    let stages = api
        .stages
        .into_iter()
        .map(|s| snapshot::Stage {
            access_log: s.access_log,
            view: StageView { variables: s.view.variables, integrations: vec![target.clone()], is_canary: false },
            canary: None,
            throttle: None,
            route_throttles: vec![None],
            route_caches: vec![edge.cache.clone()],
            metrics: snapshot::route_metrics(&api.name, &s.name, &routes),
            name: s.name,
        })
        .collect();
    snapshot::Api {
        name: api.name,
        private: false,
        router,
        routes,
        stages,
        responses: api.responses,
        policy: api.policy,
        cors: None,
        binary: api.binary,
        edge: Some(Protected { router: api.router, protected }),
        websocket: None,
    }
}
