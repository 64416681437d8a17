//! `[authorizers.*]`: JWT, request/token (Lambda-style) and SigV4 authorizers.

use super::*;

impl Compiler {
    pub(super) fn authorizers(&mut self, root: &KeyPath, cfg: &Config) -> HashMap<String, snapshot::Authorizer> {
        let mut out = HashMap::new();
        for (name, a) in &cfg.authorizers {
            self.known_authorizers.insert(name.clone());
            let p = root.key("authorizers").key(name);
            match a.kind.as_str() {
                "jwt" => {}
                "request" | "token" => {
                    if let Some(l) = self.lambda_authorizer(&p, a, &cfg.server) {
                        out.insert(name.clone(), snapshot::Authorizer::Lambda(Arc::new(l)));
                    }
                    continue;
                }
                "sigv4" => {
                    if let Some(a) = self.sigv4_authorizer(&p, a) {
                        out.insert(name.clone(), snapshot::Authorizer::SigV4(Arc::new(a)));
                    }
                    continue;
                }
                other => {
                    self.err(p.key("type"), format!("unknown authorizer type {other:?} (jwt, request, token, sigv4)"));
                    continue;
                }
            }
            let spec: JwtSpec = match toml::Value::Table(a.rest.clone()).try_into() {
                Ok(s) => s,
                Err(e) => {
                    self.err(p.clone(), e.message().trim().to_string());
                    continue;
                }
            };
            let src = spec.identity_source.as_deref().unwrap_or("$request.header.Authorization");
            let identity_header =
                match src.strip_prefix("$request.header.").map(|h| http::HeaderName::from_bytes(h.as_bytes())) {
                    Some(Ok(h)) => h,
                    _ => {
                        self.err(p.key("identity_source"), format!("{src:?} must be \"$request.header.NAME\""));
                        continue;
                    }
                };
            let mut jwks_url = None;
            let jwks = match spec.jwks.as_deref() {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                    let ep = match crate::outbound::Endpoint::parse(u) {
                        Ok(ep) => ep,
                        Err(m) => {
                            self.err(p.key("jwks"), m.to_string());
                            continue;
                        }
                    };
                    if !ep.tls && !ep.is_loopback() {
                        self.err(p.key("jwks"), "a JWKS URL must be https:// (http:// only on loopback)");
                        continue;
                    }
                    match crate::auth::jwt::fetch_jwks(&ep) {
                        Ok(bytes) => {
                            jwks_url = Some(ep);
                            Some(bytes)
                        }
                        Err(m) => {
                            self.err(p.key("jwks"), format!("cannot fetch the JWKS: {m}"));
                            continue;
                        }
                    }
                }
                Some(f) => match self.file(p.key("jwks"), f) {
                    Some((_, bytes)) => Some(bytes),
                    None => continue,
                },
                None => None,
            };
            let settings = crate::auth::jwt::JwtSettings {
                issuer: spec.issuer.as_deref(),
                audience: &spec.audience,
                algorithms: &spec.algorithms,
                leeway: spec.leeway.map(|d| d.0).unwrap_or_default(),
                identity_header,
                jwks: jwks.as_deref(),
                jwks_url,
                refresh: spec
                    .jwks_refresh
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(600))
                    .max(Duration::from_secs(10)),
                secret: spec.secret.as_deref(),
            };
            match crate::auth::jwt::JwtAuthorizer::new(settings) {
                Ok(j) => {
                    out.insert(name.clone(), snapshot::Authorizer::Jwt(Arc::new(j)));
                }
                Err(m) => self.err(p.key("type"), m),
            }
        }
        out
    }

    pub(super) fn sigv4_authorizer(
        &mut self,
        p: &KeyPath,
        a: &Authorizer,
    ) -> Option<crate::auth::sigv4::SigV4Authorizer> {
        let spec: SigV4Spec = match toml::Value::Table(a.rest.clone()).try_into() {
            Ok(s) => s,
            Err(e) => {
                self.err(p.clone(), e.message().trim().to_string());
                return None;
            }
        };
        let (file, side): (CredentialsFile, _) = self.side_file(p.key("credentials"), &spec.credentials)?;
        let fail = |this: &mut Self, kp: &KeyPath, m: String| this.side_error(&side, kp, m);
        let mut credentials = HashMap::new();
        for (i, c) in file.credentials.iter().enumerate() {
            let kp = KeyPath::root().key("credentials").idx(i);
            let secret = match (&c.secret, &c.secret_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => v,
                    _ => {
                        fail(self, &kp.key("secret_env"), format!("environment variable {var} is not set"));
                        continue;
                    }
                },
                _ => {
                    fail(self, &kp.key("access_key_id"), "give exactly one of secret and secret_env".into());
                    continue;
                }
            };
            let mut policy = crate::auth::iam::Policy::default();
            for (j, pol) in c.policies.iter().enumerate() {
                let doc: Result<serde_json::Value, String> = match pol {
                    toml::Value::String(js) => serde_json::from_str(js).map_err(|e| e.to_string()),
                    other => serde_json::to_value(other).map_err(|e| e.to_string()),
                };
                match doc.ok().and_then(|d| crate::auth::iam::Policy::parse(&d)) {
                    Some(p) => policy.extend(p),
                    None => fail(
                        self,
                        &kp.key("policies").idx(j),
                        "not an IAM-like policy document (Statement with Effect, Action, Resource)".into(),
                    ),
                }
            }
            let principal = Arc::new(crate::auth::Principal {
                principal_id: if c.principal.is_empty() { c.access_key_id.clone() } else { c.principal.clone() },
                claims: Default::default(),
                scopes: vec![],
                context: Default::default(),
            });
            if credentials
                .insert(c.access_key_id.clone(), crate::auth::sigv4::Credential { secret, principal, policy })
                .is_some()
            {
                fail(self, &kp.key("access_key_id"), format!("access key {:?} is listed twice", c.access_key_id));
            }
        }
        Some(crate::auth::sigv4::SigV4Authorizer {
            service: spec.service.unwrap_or_else(|| "execute-api".into()),
            region: spec.region,
            clock_skew: spec.clock_skew.map(|d| d.0.as_secs()).unwrap_or(300),
            credentials,
        })
    }

    pub(super) fn lambda_authorizer(
        &mut self,
        p: &KeyPath,
        a: &Authorizer,
        server: &Server,
    ) -> Option<crate::auth::external::LambdaAuthorizer> {
        use crate::auth::external::{Format, Kind, Settings, Source};
        let spec: LambdaSpec = match toml::Value::Table(a.rest.clone()).try_into() {
            Ok(s) => s,
            Err(e) => {
                self.err(p.clone(), e.message().trim().to_string());
                return None;
            }
        };
        let target = match (spec.uri.as_deref(), &spec.lambda) {
            (Some(_), Some(_)) => {
                self.err(p.key("lambda"), "give uri or lambda, not both");
                return None;
            }
            (None, None) => {
                self.err(
                    p.key("type"),
                    "a request/token authorizer needs uri or lambda = { function, endpoint, region }",
                );
                return None;
            }
            (Some(uri), None) => match crate::outbound::Endpoint::parse(uri) {
                Ok(e) => crate::auth::external::Target::Http(e),
                Err(m) => {
                    self.err(p.key("uri"), m.to_string());
                    return None;
                }
            },
            (None, Some(t)) => {
                let lp = p.key("lambda");
                if let Some(k) = t.keys().find(|k| !["function", "endpoint", "region"].contains(&k.as_str())) {
                    self.err(lp.key(k), format!("unknown key `{k}` (function, endpoint, region)"));
                    return None;
                }
                let get = |k: &str| t.get(k).and_then(|v| v.as_str());
                let Some(function) = get("function") else {
                    self.err(lp.key("function"), "lambda needs function = \"NAME\" (a name, ARN or name:alias)");
                    return None;
                };
                let region = get("region").unwrap_or("us-east-1");
                match crate::aws::invoke::Function::new(function, get("endpoint"), region) {
                    Ok(f) => crate::auth::external::Target::Lambda(f),
                    Err(m) => {
                        self.err(lp.clone(), m);
                        return None;
                    }
                }
            }
        };
        let kind = if a.kind == "token" { Kind::Token } else { Kind::Request };
        let raw_sources = match (kind, &spec.identity_sources, &spec.identity_source) {
            (Kind::Token, None, Some(one)) => vec![one.clone()],
            (Kind::Token, Some(_), _) => {
                self.err(p.key("identity_sources"), "a token authorizer takes one identity_source");
                return None;
            }
            (_, Some(list), None) if list.is_empty() => {
                // an empty identity would make one cached decision answer every caller
                self.err(p.key("identity_sources"), "identity_sources must name at least one source");
                return None;
            }
            (_, Some(list), None) => list.clone(),
            (Kind::Request, None, Some(_)) => {
                self.err(p.key("identity_source"), "a request authorizer takes identity_sources = [...]");
                return None;
            }
            (_, Some(_), Some(_)) => {
                self.err(p.key("identity_source"), "give identity_sources or identity_source, not both");
                return None;
            }
            (_, None, None) => vec!["$request.header.Authorization".to_string()],
        };
        let mut sources = vec![];
        for (i, s) in raw_sources.iter().enumerate() {
            match Source::parse(s) {
                Ok(src) => sources.push(src),
                Err(m) => self.err(p.key("identity_sources").idx(i), m),
            }
        }
        let ttl = spec.result_ttl.map(|d| d.0).unwrap_or(Duration::from_secs(300));
        if ttl > Duration::from_secs(3600) {
            self.err(p.key("result_ttl"), "result_ttl must be at most 3600s (0 disables the cache)");
        }
        let format = match spec.response.as_deref().unwrap_or("iam") {
            "iam" => Format::Iam,
            "simple" => Format::Simple,
            other => {
                self.err(p.key("response"), format!("response {other:?} must be \"iam\" or \"simple\""));
                return None;
            }
        };
        let timeout = spec.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10));
        if timeout.is_zero() || timeout > server.max_integration_timeout.0 {
            self.err(p.key("timeout"), "timeout must be above 0 and at most server.max_integration_timeout");
        }
        let validation = match (&spec.identity_validation, kind) {
            (None, _) => None,
            (Some(_), Kind::Request) => {
                self.err(p.key("identity_validation"), "identity_validation is for token authorizers");
                None
            }
            (Some(re), Kind::Token) => {
                match regex::RegexBuilder::new(&format!("^(?:{re})$")).size_limit(1 << 20).build() {
                    Ok(r) => Some(r),
                    Err(e) => {
                        self.err(p.key("identity_validation"), format!("not a regular expression: {e}"));
                        None
                    }
                }
            }
        };
        Some(crate::auth::external::LambdaAuthorizer::new(Settings {
            kind,
            target,
            sources,
            ttl,
            format,
            timeout,
            validation,
        }))
    }
}
