//! Resource policies, API keys, usage plans, throttles and quotas.

use super::*;

impl Compiler {
    pub(super) fn check_throttle(&mut self, p: &KeyPath, t: &Throttle) {
        if !(t.rate > 0.0 && t.rate.is_finite()) {
            self.err(p.key("rate"), "rate must be a positive number of requests per second");
        }
        if t.burst == 0 {
            self.err(p.key("burst"), "burst must be at least 1");
        }
    }

    pub(super) fn api_keys(&mut self, p: &KeyPath, k: &ApiKeys) -> LoadedKeys {
        let header = k.header.as_deref().unwrap_or("x-api-key");
        let header = http::HeaderName::from_bytes(header.as_bytes()).unwrap_or_else(|_| {
            self.err(p.key("header"), format!("{header:?} is not a header name"));
            http::HeaderName::from_static("x-api-key")
        });
        let mut out =
            LoadedKeys { header, store: Default::default(), plans_used: vec![], file: self.dir.join(&k.file) };
        let Some((parsed, side)) = self.side_file::<crate::api_keys::KeyFile>(p.key("file"), &k.file) else {
            return out;
        };
        let fail = |this: &mut Self, kp: &KeyPath, m: String| this.side_error(&side, kp, m);
        let mut ids = HashSet::new();
        for (i, r) in parsed.keys.iter().enumerate() {
            let kp = KeyPath::root().key("keys").idx(i);
            if !ids.insert(r.id.as_str()) || r.id.is_empty() {
                fail(self, &kp.key("id"), format!("key id {:?} is empty or used twice", r.id));
            }
            match crate::api_keys::parse_hash(&r.hash) {
                Ok(h) => {
                    if !out.store.insert(&r.id, h, &r.plan, r.enabled) {
                        fail(self, &kp.key("hash"), "this hash is listed twice".into());
                    }
                }
                Err(m) => fail(self, &kp.key("hash"), m),
            }
            out.plans_used.push((r.plan.clone(), side.locator.locate(&kp.key("plan")).0));
        }
        out
    }

    pub(super) fn plans(&mut self, root: &KeyPath, cfg: &Config) -> HashMap<String, snapshot::Plan> {
        let rt = self.rt.clone();
        let reg = &rt.limiters;
        let mut plans = HashMap::new();
        // (api, stage) and (api, stage, route) by their names in the contract's syntax
        let find_stage = |s: &str| -> Option<(usize, usize)> {
            let (api, stage) = s.split_once(':')?;
            let ai = cfg.apis.iter().position(|a| a.name == api)?;
            let si = cfg.apis[ai].stages.keys().position(|n| n == stage)?;
            Some((ai, si))
        };
        for (i, u) in cfg.usage_plans.iter().enumerate() {
            let p = root.key("usage_plans").idx(i);
            if !good_name(&u.name) || plans.contains_key(&u.name) {
                self.err(
                    p.key("name"),
                    format!("plan name {:?} is empty, has odd characters or is used twice", u.name),
                );
            }
            let mut stages = HashSet::new();
            for (j, s) in u.stages.iter().enumerate() {
                match find_stage(s) {
                    Some(x) => {
                        stages.insert(x);
                    }
                    None => self
                        .err(p.key("stages").idx(j), format!("{s:?} is not \"API:STAGE\" of a configured API stage")),
                }
            }
            if let Some(t) = &u.throttle {
                self.check_throttle(&p.key("throttle"), t);
            }
            let throttle = u.throttle.map(|t| reg.keyed(&format!("plan:{}", u.name), t.rate, t.burst));
            let throttle_spec = u.throttle.map(|t| crate::throttle::cluster::BucketSpec::new(t.rate, t.burst));
            let mut route_specs = HashMap::new();
            let mut route_throttle = HashMap::new();
            for (k, t) in u.route_throttle.iter().flatten() {
                let rp = p.key("route_throttle").key(k);
                self.check_throttle(&rp, t);
                let found = k.rsplit_once(':').and_then(|(stage, route)| {
                    let (ai, si) = find_stage(stage)?;
                    let ri = cfg.apis[ai].routes.iter().position(|r| r.route == route)?;
                    Some((ai, si, ri))
                });
                match found {
                    Some(x) => {
                        route_throttle.insert(x, reg.keyed(&format!("plan:{}:{k}", u.name), t.rate, t.burst));
                        let spec = crate::throttle::cluster::BucketSpec::new(t.rate, t.burst);
                        route_specs.insert(x, (format!("{}:{k}", u.name), spec));
                    }
                    None => self.err(rp, format!("{k:?} is not \"API:STAGE:ROUTE KEY\" of a configured route")),
                }
            }
            let quota = u.quota.as_ref().and_then(|q| {
                let qp = p.key("quota");
                let Some(period) = crate::throttle::quota::Period::parse(&q.period) else {
                    self.err(qp.key("period"), format!("period {:?} must be day, week or month", q.period));
                    return None;
                };
                if q.limit == 0 {
                    self.err(qp.key("limit"), "limit must be at least 1");
                }
                if q.offset >= q.limit {
                    self.err(qp.key("offset"), "offset must be below the limit");
                }
                Some(reg.quota(&format!("plan:{}", u.name), q.limit, period, q.offset))
            });
            plans.insert(
                u.name.clone(),
                snapshot::Plan {
                    name: u.name.clone(),
                    throttle_spec,
                    route_specs,
                    stages,
                    throttle,
                    route_throttle,
                    quota,
                    usage: reg.usage(&u.name),
                },
            );
        }
        plans
    }

    pub(super) fn policy(&mut self, p: &KeyPath, pol: &Policy) -> crate::policy::Policy {
        let mut cidrs = |key: &str, list: &[String]| -> Vec<ipnet::IpNet> {
            let mut out = vec![];
            for (i, c) in list.iter().enumerate() {
                match parse_cidr(c) {
                    Ok(n) => out.push(n),
                    Err(m) => self.err(p.key(key).idx(i), m),
                }
            }
            out
        };
        let allow = cidrs("allow_cidrs", &pol.allow_cidrs);
        let deny = cidrs("deny_cidrs", &pol.deny_cidrs);
        let require_headers = self.headers(&p.key("require_headers"), &pol.require_headers);
        crate::policy::Policy { allow, deny, require_headers }
    }
}
