//! WebSocket APIs: route keys, `route_selection`, limits, the management authorizer.

use super::*;

impl Compiler {
    /// A WebSocket route: `$connect`, `$disconnect`, `$default` or a selection value; only
    /// `$connect` is authorized (as in AWS), and HTTP-only route settings are refused.
    pub(super) fn ws_route(&mut self, rp: &KeyPath, r: &model::Route) {
        let k = r.route.as_str();
        if k.is_empty() || k.len() > 128 || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.err(rp.key("route"), format!("WebSocket route key {k:?} must be $connect, $disconnect, $default or a selection value (no spaces)"));
        }
        if k.starts_with('$') && !matches!(k, "$connect" | "$disconnect" | "$default") {
            self.err(
                rp.key("route"),
                format!(
                    "unknown WebSocket route key {k:?} (use $connect, $disconnect, $default, or a value without '$')"
                ),
            );
        }
        if k != "$connect" && (r.authorizer.is_some() || r.api_key_required.is_some()) {
            let at = if r.authorizer.is_some() { "authorizer" } else { "api_key_required" };
            self.err(
                rp.key(at),
                "only the $connect route of a WebSocket API is authorized (later messages carry its result)",
            );
        }
        if k == "$disconnect" && r.route_response == Some(true) {
            self.err(rp.key("route_response"), "$disconnect has no client to answer (the connection is gone)");
        }
        for (key, present) in [
            ("cache", r.cache.is_some()),
            ("validate", r.validate.is_some()),
            ("request_transform", r.request_transform.is_some()),
            ("response_transform", r.response_transform.is_some()),
        ] {
            if present {
                self.err(rp.key(key), format!("`{key}` is not for WebSocket routes"));
            }
        }
    }

    /// The API's WebSocket settings, once its routes and stages compiled.
    pub(super) fn ws_api(
        &mut self,
        p: &KeyPath,
        a: &Api,
        authorizers: &HashMap<String, snapshot::Authorizer>,
        stages: &[snapshot::Stage],
    ) -> Option<crate::websocket::WsApi> {
        let expr = a.route_selection.as_deref().unwrap_or("$request.body.action");
        let selection = match crate::websocket::parse_selection(expr) {
            Ok(s) => s,
            Err(m) => {
                self.err(p.key("route_selection"), m);
                return None;
            }
        };
        let mut routes = HashMap::new();
        let (mut connect, mut disconnect, mut default) = (None, None, None);
        for (ri, r) in a.routes.iter().enumerate() {
            match r.route.as_str() {
                "$connect" => connect = Some(ri),
                "$disconnect" => disconnect = Some(ri),
                "$default" => default = Some(ri),
                k => {
                    routes.insert(k.to_string(), ri);
                }
            }
        }
        // each event is POSTed to an http integration, or is AWS's WebSocket event to a Lambda
        // (proxy) function
        for s in stages {
            let views = std::iter::once(&s.view).chain(s.canary.as_ref().map(|c| &c.1));
            for v in views {
                for (ri, i) in v.integrations.iter().enumerate() {
                    let ok = match &**i {
                        snapshot::Integration::Http(t) => t.link.is_none(),
                        snapshot::Integration::Lambda(t) => t.custom.is_none(),
                        _ => false,
                    };
                    if !ok {
                        self.err(
                            route_at(p, a, ri).key("integration"),
                            "a WebSocket route's integration must be type = \"http\" (each event is POSTed to it) \
                             or type = \"lambda\" with proxy (the function gets AWS's WebSocket event)",
                        );
                        return None;
                    }
                }
            }
        }
        let max_message = a.max_message_size.map(|s| s.0 as usize).unwrap_or(crate::websocket::DEFAULT_MAX_MESSAGE);
        if !(1..=(16 << 20)).contains(&max_message) {
            self.err(p.key("max_message_size"), "max_message_size must be 1B to 16MiB");
        }
        let management = match &a.management {
            None => None,
            Some(m) => match authorizers.get(&m.authorizer) {
                Some(auth @ snapshot::Authorizer::SigV4(_)) => Some((Arc::from(m.authorizer.as_str()), auth.clone())),
                Some(_) => {
                    self.err(
                        p.key("management").key("authorizer"),
                        "the management API's authorizer must be a sigv4 one (AWS SDKs sign their calls)",
                    );
                    None
                }
                None => {
                    self.err(p.key("management").key("authorizer"), format!("no authorizer named {:?}", m.authorizer));
                    None
                }
            },
        };
        for (k, d) in [("idle_timeout", a.idle_timeout), ("max_connection_duration", a.max_connection_duration)] {
            if d.is_some_and(|d| d.0.is_zero()) {
                self.err(p.key(k), format!("{k} must be above 0 (leave it out for no limit)"));
            }
        }
        let rt = self.rt.clone();
        let reg = &rt.limiters;
        let rate = crate::websocket::CONNECTION_RATE;
        let connection_rate =
            stages.iter().map(|s| reg.bucket(&format!("wsconn:{}:{}", a.name, s.name), rate, rate as u64)).collect();
        Some(crate::websocket::WsApi {
            connection_rate,
            route_response: a.routes.iter().map(|r| r.route_response == Some(true)).collect(),
            selection,
            idle_timeout: a.idle_timeout.map(|d| d.0),
            max_duration: a.max_connection_duration.map(|d| d.0),
            max_message,
            routes,
            connect,
            disconnect,
            default,
            management,
        })
    }
}
