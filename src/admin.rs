//! The admin listener (`server.admin_listen`, never a public one): `/metrics`, `/healthz`,
//! `/readyz`, `/config`, and response-cache flushes (`DELETE /cache/{api}/{stage}`).

use crate::observability::metrics;
use crate::snapshot::Shared;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub struct Admin {
    pub shared: Shared,
    /// The state that outlives reloads (the WebSocket registry is read here).
    pub runtime: std::sync::Arc<crate::runtime::Runtime>,
}

fn reply(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn json(status: u16, v: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", v.to_string())
}

impl Admin {
    /// `DELETE /cache/{api}/{stage}` flushes the stage's store; `?key=/path` marks the entries
    /// of one path (below the stage and base path; every method, host and key parameter) stale.
    fn flush_cache(&self, rest: &str, query: Option<&str>) -> Response<Vec<u8>> {
        let snap = self.shared.load();
        let Some((api, stage)) = rest.split_once('/') else {
            return json(404, serde_json::json!({"message": "use /cache/{api}/{stage}"}));
        };
        let Some(st) =
            snap.apis.iter().find(|a| &*a.name == api).and_then(|a| a.stages.iter().find(|s| &*s.name == stage))
        else {
            return json(404, serde_json::json!({"message": format!("no API stage {api}/{stage}")}));
        };
        let Some(store) = st.route_caches.iter().flatten().next().map(|c| c.store) else {
            return json(404, serde_json::json!({"message": format!("{api}/{stage} has no cache")}));
        };
        let key = crate::request::query_map(query).remove("key");
        match key {
            Some(k) => match crate::routing::normalize(&k) {
                Ok(path) => {
                    store.purge_path(&path);
                    json(200, serde_json::json!({"purged": path}))
                }
                Err(_) => json(400, serde_json::json!({"message": "key must be a path such as /pets/1"})),
            },
            None => {
                store.flush();
                json(200, serde_json::json!({"flushed": format!("{api}/{stage}")}))
            }
        }
    }
}

impl Admin {
    /// `GET /usage/{plan}?startDate=YYYY-MM-DD&endDate=YYYY-MM-DD[&keyId=ID]`: AWS GetUsage's
    /// shape, from Redis when `[cluster] redis` is set.
    async fn usage(&self, plan: &str, query: &str) -> Response<Vec<u8>> {
        let bad = |m: String| json(400, serde_json::json!({"message": m}));
        let snap = self.shared.load_full();
        let plan = percent_encoding::percent_decode_str(plan).decode_utf8_lossy();
        let Some(p) = snap.plans.get(&*plan) else {
            return json(404, serde_json::json!({"message": format!("usage plan {plan:?} not found")}));
        };
        let params = crate::request::query_map(Some(query));
        let param = |name: &str| params.get(name).map(String::as_str);
        let day = |name: &str| -> Result<(u64, String), String> {
            let v = param(name).ok_or_else(|| format!("{name} (YYYY-MM-DD) is required"))?;
            parse_date(v).map(|d| (d, v.to_string())).ok_or_else(|| format!("{name} {v:?} is not a date YYYY-MM-DD"))
        };
        let ((from, start), (to, end)) = match (day("startDate"), day("endDate")) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(m), _) | (_, Err(m)) => return bad(m),
        };
        if to < from {
            return bad("endDate is before startDate".into());
        }
        if to - from >= crate::throttle::usage::KEEP_DAYS {
            return bad(format!("the range is {} days; at most {}", to - from + 1, crate::throttle::usage::KEEP_DAYS));
        }
        let mut keys: Vec<std::sync::Arc<str>> = snap
            .api_keys
            .iter()
            .flat_map(|k| k.store.keys())
            .filter(|k| k.plan == p.name)
            .map(|k| k.id.clone())
            .collect();
        keys.sort();
        if let Some(id) = param("keyId") {
            keys.retain(|k| &**k == id);
            if keys.is_empty() {
                return json(404, serde_json::json!({"message": format!("key {id:?} is not in usage plan {plan:?}")}));
            }
        }
        let cluster = snap.cluster.as_ref().map(|(c, _)| &**c);
        let quota = p.quota.as_deref();
        match crate::throttle::usage::report(&p.usage, quota, &p.name, &keys, (from, to), cluster).await {
            Ok(items) => {
                let items: serde_json::Map<String, serde_json::Value> = items
                    .into_iter()
                    .map(|(k, days)| {
                        (
                            k.to_string(),
                            serde_json::json!(days.iter().map(|(u, r)| serde_json::json!([u, r])).collect::<Vec<_>>()),
                        )
                    })
                    .collect();
                json(
                    200,
                    serde_json::json!({"usagePlanId": p.name, "startDate": start, "endDate": end, "items": items}),
                )
            }
            Err(e) => json(503, serde_json::json!({"message": e.to_string()})),
        }
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn parse_date(s: &str) -> Option<u64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let days = crate::clock::days_from_civil(y, m, d);
    // a real date: it comes back the same (no 2026-02-30)
    (crate::clock::civil_from_days(days) == (y, m, d) && days >= 0).then_some(days as u64)
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let get = req.method == http::Method::GET || req.method == http::Method::HEAD;
        match (get, req.uri.path()) {
            (true, "/metrics") => reply(200, "text/plain; version=0.0.4", metrics::render()),
            (true, "/healthz") => json(200, serde_json::json!({"status": "ok"})),
            (true, "/readyz") => {
                if crate::lifecycle::draining() {
                    json(503, serde_json::json!({"status": "draining"}))
                } else if crate::lifecycle::ready() {
                    json(200, serde_json::json!({"status": "ready"}))
                } else {
                    json(503, serde_json::json!({"status": "starting"}))
                }
            }
            (true, "/config") => {
                let s = self.shared.load();
                json(
                    200,
                    serde_json::json!({
                        "version": s.version,
                        "loadedAt": humantime::format_rfc3339_seconds(s.loaded_at).to_string(),
                        "files": s.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                        "apis": s.apis.iter().map(|a| serde_json::json!({
                            "name": &*a.name,
                            "stages": a.stages.iter().map(|st| &*st.name).collect::<Vec<_>>(),
                            "routes": a.routes.iter().map(|r| &*r.key).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    }),
                )
            }
            (_, p) if crate::websocket::manage::connections_path(p).is_some() => {
                let raw = crate::websocket::manage::connections_path(p).unwrap_or_default();
                let broadcast = raw.is_empty();
                let id = if broadcast { Some(String::new()) } else { crate::websocket::manage::decode_id(raw) };
                let Some(id) = id else {
                    return json(400, serde_json::json!({"message": "bad connection id"}));
                };
                let method = req.method.clone();
                if broadcast && method != http::Method::POST {
                    return json(
                        405,
                        serde_json::json!({"message": "POST /@connections broadcasts; one connection is /@connections/{id}"}),
                    );
                }
                let mut body = Vec::new();
                loop {
                    match session.read_request_body().await {
                        Ok(Some(b)) if body.len() + b.len() <= 16 << 20 => body.extend_from_slice(&b),
                        Ok(Some(_)) => return json(413, serde_json::json!({"message": "the message is too large"})),
                        Ok(None) => break,
                        Err(_) => return json(400, serde_json::json!({"message": "the body was not received"})),
                    }
                }
                let snap = self.shared.load_full();
                let cluster = snap.cluster.as_ref().map(|(c, _)| c);
                let a = if broadcast {
                    crate::websocket::reach::broadcast(&self.runtime.connections, &body, None, cluster).await
                } else {
                    let reg = &self.runtime.connections;
                    crate::websocket::reach::handle_any(reg, &method, &id, bytes::Bytes::from(body), None, cluster)
                        .await
                };
                let mut r = Response::builder()
                    .status(a.status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::CONTENT_LENGTH, a.body.len());
                if let Some(t) = a.error_type {
                    r = r.header("x-amzn-errortype", t);
                }
                r.body(a.body).unwrap_or_default()
            }
            (true, p) if p.starts_with("/usage/") => {
                let plan = p["/usage/".len()..].to_string();
                let query = req.uri.query().unwrap_or("").to_string();
                self.usage(&plan, &query).await
            }
            (_, p) if p.starts_with("/cache/") => {
                if req.method != http::Method::DELETE {
                    return json(405, serde_json::json!({"message": "Method Not Allowed"}));
                }
                self.flush_cache(&p["/cache/".len()..], req.uri.query())
            }
            (false, "/metrics" | "/healthz" | "/readyz" | "/config") => {
                json(405, serde_json::json!({"message": "Method Not Allowed"}))
            }
            _ => json(404, serde_json::json!({"message": "Not Found"})),
        }
    }
}
