//! Response caching: stage and route cache settings, keys, stores.

use super::*;

impl Compiler {
    /// Stage caches set the store size and default TTL; route caches set TTL, key and
    /// invalidation. Errors name the key that is wrong.
    pub(super) fn check_cache(&mut self, p: &KeyPath, c: &model::Cache, stage: bool, route: Option<&str>) {
        if let Some(o) = &c.origin_cache_control {
            if !matches!(o.as_str(), "honor" | "ignore") {
                self.err(p.key("origin_cache_control"), format!("origin_cache_control {o:?} must be honor or ignore"));
            }
        }
        if let Some(t) = c.ttl {
            if t.0 > crate::cache::MAX_TTL {
                self.err(p.key("ttl"), format!("ttl must be at most {}s", crate::cache::MAX_TTL.as_secs()));
            }
        }
        if stage {
            if c.key.is_some() {
                self.err(p.key("key"), "`key` is a route setting (routes' cache = { key = [...] })");
            }
            if c.invalidate.is_some() {
                self.err(p.key("invalidate"), "`invalidate` is a route setting");
            }
            if c.capacity.is_some_and(|s| s.0 < 64 * 1024) {
                self.err(p.key("capacity"), "capacity must be at least 64KiB");
            }
            return;
        }
        if c.capacity.is_some() {
            self.err(p.key("capacity"), "`capacity` is a stage setting ([apis.stages.NAME] cache)");
        }
        if let Some(i) = &c.invalidate {
            if !matches!(i.as_str(), "never" | "authorized" | "any") {
                self.err(p.key("invalidate"), format!("invalidate {i:?} must be never, authorized or any"));
            }
        }
        let params = route.and_then(|r| parse_route_key(r).ok()).map(|k| k.params()).unwrap_or_default();
        for (i, k) in c.key.iter().flatten().enumerate() {
            let kp = p.key("key").idx(i);
            match cache_key_part(k) {
                Ok(crate::cache::KeyPart::Path(n)) if !params.contains(&n) => {
                    self.err(kp, format!("{k:?}: the route has no path parameter {n:?}"))
                }
                Ok(_) => {}
                Err(m) => self.err(kp, m),
            }
        }
    }

    /// Each route's cache settings under one stage: the stage's cache turns caching on for
    /// every GET/HEAD route (AWS's stage cache); a route's own `cache` adjusts it, `ttl = 0`
    /// turns it off for that route. Without a stage cache nothing is cached.
    pub(super) fn route_caches(
        &self,
        a: &Api,
        sname: &str,
        s: &model::Stage,
    ) -> Vec<Option<Arc<crate::cache::RouteCache>>> {
        let Some(sc) = s.cache.as_ref() else {
            return a.routes.iter().map(|_| None).collect();
        };
        let stage_ttl = sc.ttl.map(|d| d.0).unwrap_or(crate::cache::DEFAULT_TTL);
        if stage_ttl.is_zero() {
            return a.routes.iter().map(|_| None).collect();
        }
        let capacity = sc.capacity.map(|c| c.0).unwrap_or(crate::cache::DEFAULT_CAPACITY);
        let store = self.rt.caches.for_stage(&a.name, sname, capacity);
        a.routes
            .iter()
            .map(|r| {
                let rc = r.cache.as_ref();
                let ttl = rc.and_then(|c| c.ttl).map(|d| d.0).unwrap_or(stage_ttl);
                if ttl.is_zero() {
                    return None;
                }
                let invalidate = match rc.and_then(|c| c.invalidate.as_deref()) {
                    Some("any") => crate::cache::Invalidate::Any,
                    Some("authorized") => crate::cache::Invalidate::Authorized,
                    _ => crate::cache::Invalidate::Never,
                };
                let key = rc.and_then(|c| c.key.as_ref()).into_iter().flatten().filter_map(|k| cache_key_part(k).ok());
                // the route's word, else the stage's, else "honor"
                let origin = rc.and_then(|c| c.origin_cache_control.as_deref()).or(sc.origin_cache_control.as_deref());
                Some(Arc::new(crate::cache::RouteCache {
                    store,
                    ttl,
                    key: key.collect(),
                    invalidate,
                    authorized: r.authorizer.is_some(),
                    honor_origin: origin != Some("ignore"),
                }))
            })
            .collect()
    }
}
