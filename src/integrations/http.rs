//! HTTP integrations: the compiled target of an `http` integration for one stage
//! (stage variables already substituted, host resolved), and the upstream request
//! path built from it per request.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How the upstream path is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriPath {
    /// Proxy mode: this prefix + the matched route path (query string kept).
    Prefix(String),
    /// Explicit mode: the uri's own path with `{param}` / `{param+}` replaced.
    Template(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Param(String),
}

/// One `http` integration as a stage sees it.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub name: String,
    pub addr: SocketAddr,
    pub tls: bool,
    pub tls_verify: bool,
    /// Host header and SNI: the uri's host (with its port when not the scheme's default).
    pub host: String,
    pub sni: String,
    pub path: UriPath,
    /// The uri's own query string, put before the client's.
    pub query: Option<String>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retries: u32,
    /// A VPC link: the target is chosen per request from the link's group (`addr` unused).
    pub link: Option<std::sync::Arc<crate::integrations::vpc_link::Link>>,
    /// Forwarding (the edge role): the client's whole normalised path and query go to the
    /// target unchanged, with the client's own `Host`, and `Via` names this hop.
    pub via: Option<http::HeaderValue>,
}

/// Why an http integration's URI does not compile.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("unclosed ${{stageVariables.…}} in {0:?}")]
    UnclosedVariable(String),
    #[error("stage variable {0:?} is not defined")]
    UndefinedVariable(String),
    #[error("invalid uri {uri:?}: {why}")]
    InvalidUri { uri: String, why: String },
    #[error("uri {0:?} must start with http:// or https://")]
    Scheme(String),
    #[error("uri {0:?} has no host")]
    NoHost(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("unclosed {{ in uri path {0:?}")]
    UnclosedParam(String),
    #[error("empty {{}} in uri path {0:?}")]
    EmptyParam(String),
}

/// A `vpc_link` integration: proxy mode (the route path appended) to a target of `link`.
pub fn link_target(
    name: &str,
    link: std::sync::Arc<crate::integrations::vpc_link::Link>,
    timeout: Duration,
    retries: u32,
) -> HttpTarget {
    HttpTarget {
        name: name.to_string(),
        addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        tls: link.tls,
        tls_verify: true,
        host: if link.sni.is_empty() { link.name.clone() } else { link.sni.clone() },
        sni: link.sni.clone(),
        path: UriPath::Prefix(String::new()),
        query: None,
        timeout,
        connect_timeout: timeout.min(Duration::from_secs(10)),
        retries,
        link: Some(link),
        via: None,
    }
}

/// Replaces `${stageVariables.NAME}` with the stage's value; unknown names are an error.
pub fn substitute_stage_vars(s: &str, vars: &BTreeMap<String, String>) -> Result<String, TargetError> {
    const OPEN: &str = "${stageVariables.";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        let after = &rest[i + OPEN.len()..];
        let end = after.find('}').ok_or_else(|| TargetError::UnclosedVariable(s.to_string()))?;
        let name = &after[..end];
        let v = vars.get(name).ok_or_else(|| TargetError::UndefinedVariable(name.to_string()))?;
        out.push_str(v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses an integration uri (after substitution) into a target.
pub fn parse_target(
    name: &str,
    uri: &str,
    timeout: Duration,
    retries: u32,
    tls_verify: bool,
) -> Result<HttpTarget, TargetError> {
    let u: http::Uri = uri
        .parse()
        .map_err(|e: http::uri::InvalidUri| TargetError::InvalidUri { uri: uri.to_string(), why: e.to_string() })?;
    let tls = match u.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(TargetError::Scheme(uri.to_string())),
    };
    let host = u.host().ok_or_else(|| TargetError::NoHost(uri.to_string()))?;
    let default_port = if tls { 443 } else { 80 };
    let port = u.port_u16().unwrap_or(default_port);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (bare, port)
        .to_socket_addrs()
        .map_err(|e| TargetError::Resolve(format!("{host}:{port}"), e.to_string()))?
        .next()
        .ok_or_else(|| TargetError::NoAddress(format!("{host}:{port}")))?;
    let host_header = if port == default_port { host.to_string() } else { format!("{host}:{port}") };
    let raw_path = u.path();
    let path = if raw_path.contains('{') {
        UriPath::Template(parse_template(raw_path)?)
    } else {
        UriPath::Prefix(raw_path.trim_end_matches('/').to_string())
    };
    Ok(HttpTarget {
        name: name.to_string(),
        addr,
        tls,
        tls_verify,
        host: host_header,
        sni: bare.to_string(),
        path,
        query: u.query().map(str::to_string),
        timeout,
        connect_timeout: timeout.min(Duration::from_secs(10)),
        retries,
        link: None,
        via: None,
    })
}

fn parse_template(p: &str) -> Result<Vec<Part>, TargetError> {
    let mut parts = vec![];
    let mut rest = p;
    while let Some(i) = rest.find('{') {
        if i > 0 {
            parts.push(Part::Lit(rest[..i].to_string()));
        }
        let end = rest[i..].find('}').ok_or_else(|| TargetError::UnclosedParam(p.to_string()))? + i;
        let name = rest[i + 1..end].trim_end_matches('+');
        if name.is_empty() {
            return Err(TargetError::EmptyParam(p.to_string()));
        }
        parts.push(Part::Param(name.to_string()));
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(parts)
}

impl HttpTarget {
    /// The target as an outbound call's endpoint (the uri's path and fixed query; the client's
    /// `query` after them), for calls the gateway makes itself (WebSocket events).
    pub fn endpoint(&self, query: Option<&str>) -> crate::outbound::Endpoint {
        let scheme = if self.tls { "https" } else { "http" };
        crate::outbound::Endpoint::new(
            self.addr,
            self.tls,
            self.host.clone(),
            self.sni.clone(),
            self.request_uri("", &[], query),
            format!("{scheme}://{}{}", self.host, self.request_uri("", &[], None)),
        )
    }

    /// Parameters the uri path needs that the route does not provide.
    pub fn missing_params<'a>(&'a self, route_params: &[String]) -> Vec<&'a str> {
        match &self.path {
            UriPath::Prefix(_) => vec![],
            UriPath::Template(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Param(n) if !route_params.iter().any(|r| r == n) => Some(n.as_str()),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The upstream path and query for a request.
    pub fn request_uri(&self, route_path: &str, params: &[(String, String)], client_query: Option<&str>) -> String {
        let mut s = String::with_capacity(64);
        match &self.path {
            UriPath::Prefix(p) => {
                s.push_str(p);
                s.push_str(route_path);
            }
            UriPath::Template(parts) => {
                for part in parts {
                    match part {
                        Part::Lit(l) => s.push_str(l),
                        Part::Param(n) => {
                            if let Some((_, v)) = params.iter().find(|(k, _)| k == n) {
                                s.push_str(v);
                            }
                        }
                    }
                }
            }
        }
        if s.is_empty() {
            s.push('/');
        }
        match (self.query.as_deref(), client_query.filter(|q| !q.is_empty())) {
            (Some(a), Some(b)) => {
                // the uri's fixed parameters win: a client's parameter of the same name is
                // dropped, never appended after them (`?role=user&role=admin`)
                let name = |p: &str| crate::request::decode_component(p.split('=').next().unwrap_or("")).into_owned();
                let fixed: Vec<String> = a.split('&').filter(|p| !p.is_empty()).map(name).collect();
                s.push('?');
                s.push_str(a);
                for p in b.split('&').filter(|p| !p.is_empty()) {
                    if !fixed.contains(&name(p)) {
                        s.push('&');
                        s.push_str(p);
                    }
                }
            }
            (Some(q), None) | (None, Some(q)) => {
                s.push('?');
                s.push_str(q);
            }
            (None, None) => {}
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([("backend".to_string(), "http://127.0.0.1:9000".to_string())])
    }

    #[test]
    fn substitutes_stage_variables() {
        assert_eq!(
            substitute_stage_vars("${stageVariables.backend}/x", &vars()).ok().as_deref(),
            Some("http://127.0.0.1:9000/x")
        );
        assert!(substitute_stage_vars("${stageVariables.nope}", &vars()).is_err());
        assert!(substitute_stage_vars("${stageVariables.backend", &vars()).is_err());
    }

    #[test]
    fn proxy_mode_appends_the_route_path_and_keeps_the_query() {
        let t = parse_target("b", "http://127.0.0.1:9000/base/", Duration::from_secs(29), 0, true).expect("target");
        assert_eq!(t.host, "127.0.0.1:9000");
        assert_eq!(t.request_uri("/pets/7", &[], Some("a=1")), "/base/pets/7?a=1");
        let t = parse_target("b", "http://127.0.0.1:80?k=v", Duration::from_secs(1), 0, true).expect("target");
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.request_uri("/x", &[], Some("a=1")), "/x?k=v&a=1");
        let t = parse_target("b", "http://127.0.0.1:80/?role=user", Duration::from_secs(1), 0, true).expect("target");
        assert_eq!(t.request_uri("/x", &[], Some("role=admin&a=1&r%6Fle=admin")), "/x?role=user&a=1");
    }

    /// Property: in proxy mode the integration receives exactly the path that was routed
    /// (normalised once), for random paths of tricky pieces.
    #[test]
    fn the_routed_path_is_the_forwarded_path() {
        const PIECES: [&str; 14] =
            ["/", "a", ".", "..", "%2e", "%2F", "%41", "~", "%7E", "//", "b;c", "%25", "%E2%82%AC", "-"];
        let t = parse_target("b", "http://127.0.0.1:9000", Duration::from_secs(1), 0, true).expect("target");
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let mut p = String::from("/");
            for _ in 0..rng.usize(0..8) {
                p.push_str(PIECES[rng.usize(0..PIECES.len())]);
            }
            let Ok(routed) = crate::routing::normalize(&p) else { continue };
            let forwarded = t.request_uri(&routed, &[], None);
            assert_eq!(forwarded, routed, "{p:?}");
            assert_eq!(crate::routing::normalize(&forwarded).as_deref(), Ok(routed.as_str()), "{p:?}");
        }
    }

    #[test]
    fn explicit_mode_substitutes_params() {
        let t = parse_target("b", "http://127.0.0.1:9000/items/{id}/raw/{rest+}", Duration::from_secs(29), 0, true)
            .expect("target");
        let p = vec![("id".to_string(), "7".to_string()), ("rest".to_string(), "a/b".to_string())];
        assert_eq!(t.request_uri("/ignored", &p, None), "/items/7/raw/a/b");
        assert_eq!(t.missing_params(&["id".to_string()]), vec!["rest"]);
        assert!(parse_target("b", "ftp://x", Duration::from_secs(1), 0, true).is_err());
    }
}
