//! Request addressing: path normalisation, stage/base-path/custom-domain resolution and
//! route matching ("METHOD /path/{param}/{greedy+}", `ANY`, `$default`).
//!
//! # Normalisation rules (applied once, before anything matches)
//! 1. The path must start with `/`; a raw `\`, a NUL or a control byte is refused (400).
//! 2. Percent-escapes must be well formed (`%` + two hex digits), else 400. Escapes of
//!    unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other escape is kept
//!    with upper-case hex. So `%2e%2e` becomes `..` (and is resolved below) while `%2F`
//!    stays an escaped byte inside one segment: it never acts as a separator.
//! 3. Runs of `/` collapse to one.
//! 4. `.` segments are dropped and `..` removes the previous segment (RFC 3986 5.2.4);
//!    a `..` that would climb above the root is refused (400).
//!
//! The integration receives the normalised path, so the origin sees exactly the path that
//! was routed: there is no second interpretation to slip a request past a route.
//!
//! # Precedence
//! Within an API, a route without a greedy `{name+}` beats one with it; among each kind a
//! literal segment beats a `{param}` (matchit's rules); a route with the request's method
//! beats `ANY` for the same path. Nothing matched: the API's `$default` route, else 404 `NOT_FOUND`.

use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadEscape,
    ForbiddenByte,
    AboveRoot,
    /// A segment an origin may read as a dot-segment: `..;x` (path parameters, as Tomcat
    /// reads it) or `..%2F…` (an encoded slash next to dots, for origins that decode it).
    AmbiguousSegment,
    /// Escapes that decode to invalid UTF-8 (overlong forms such as `%C0%AE` for `.`).
    BadEncoding,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path must start with '/'",
            PathError::BadEscape => "malformed percent-encoding in path",
            PathError::AmbiguousSegment => "a path segment that reads as a dot-segment",
            PathError::BadEncoding => "percent-escapes that are not UTF-8",
            PathError::ForbiddenByte => "forbidden character in path",
            PathError::AboveRoot => "path climbs above the root",
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalises a request path (without its query) by the rules in the module docs.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Fast path: nothing to decode, collapse or resolve.
    let simple = !bytes.windows(2).any(|w| w == b"//" || w == b"/.")
        && !bytes.iter().any(|&b| b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f);
    if simple {
        return Ok(raw.to_string());
    }
    // 1-2: decode unreserved escapes, refuse bad bytes.
    let mut dec = Vec::with_capacity(bytes.len());
    let mut non_ascii_escapes = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(PathError::ForbiddenByte);
        }
        if b == b'%' {
            let (h, l) = match (bytes.get(i + 1).and_then(|&x| hex(x)), bytes.get(i + 2).and_then(|&x| hex(x))) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadEscape),
            };
            let v = h * 16 + l;
            non_ascii_escapes |= v >= 0x80;
            if unreserved(v) {
                dec.push(v);
            } else {
                if v == b'\\' || v == 0 {
                    return Err(PathError::ForbiddenByte);
                }
                dec.push(b'%');
                dec.extend_from_slice(format!("{v:02X}").as_bytes());
            }
            i += 3;
        } else {
            dec.push(b);
            i += 1;
        }
    }
    // escapes of non-ASCII bytes must form UTF-8 (no overlong `.` or `/`)
    if non_ascii_escapes && !escapes_are_utf8(&dec) {
        return Err(PathError::BadEncoding);
    }
    // 3-4: segments.
    let trailing = dec.last() == Some(&b'/') && dec.len() > 1;
    let mut out: Vec<&[u8]> = Vec::new();
    for seg in dec.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => {
                if reads_as_dot_segment(s) {
                    return Err(PathError::AmbiguousSegment);
                }
                out.push(s)
            }
        }
    }
    let mut s = String::with_capacity(dec.len());
    for seg in &out {
        s.push('/');
        // Only ASCII bytes remain un-escaped, or raw UTF-8 the client sent; keep it lossless.
        s.push_str(&String::from_utf8_lossy(seg));
    }
    if s.is_empty() || (trailing && !out.is_empty()) {
        s.push('/');
    }
    Ok(s)
}

/// `..;x`, `.;x`, or a segment whose `%2F`-separated pieces include `.` or `..`.
fn reads_as_dot_segment(seg: &[u8]) -> bool {
    let before_params = seg.split(|&b| b == b';').next().unwrap_or(seg);
    if seg.contains(&b';') && (before_params == b"." || before_params == b"..") {
        return true;
    }
    if !seg.windows(3).any(|w| w.eq_ignore_ascii_case(b"%2F")) {
        return false;
    }
    let text = String::from_utf8_lossy(seg).replace("%2f", "%2F");
    text.split("%2F").any(|p| p == "." || p == "..")
}

/// Whether the path, every escape decoded, is UTF-8.
fn escapes_are_utf8(dec: &[u8]) -> bool {
    let mut all = Vec::with_capacity(dec.len());
    let mut i = 0;
    while i < dec.len() {
        if dec[i] == b'%' && i + 2 < dec.len() {
            if let (Some(h), Some(l)) = (hex(dec[i + 1]), hex(dec[i + 2])) {
                all.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        all.push(dec[i]);
        i += 1;
    }
    std::str::from_utf8(&all).is_ok()
}

/// Splits `path` after `prefix` on a segment boundary: ("/v1/pets", "/v1") -> "/pets".
pub fn strip_base<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() || prefix == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// A parsed route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    /// `METHOD /path`; method `ANY` matches every method.
    Http { method: String, path: String },
    /// `$default`.
    Default,
}

impl RouteKey {
    /// The path parameter names, `{proxy+}` as "proxy".
    pub fn params(&self) -> Vec<String> {
        match self {
            RouteKey::Http { path, .. } => path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|s| s.trim_end_matches('+').to_string())
                .collect(),
            RouteKey::Default => vec![],
        }
    }
}

const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "ANY"];

/// Parses "GET /pets/{id}", "ANY /internal/{proxy+}" or "$default".
pub fn parse_route_key(key: &str) -> Result<RouteKey, String> {
    if key == "$default" {
        return Ok(RouteKey::Default);
    }
    let (method, path) =
        key.split_once(' ').ok_or_else(|| format!("route {key:?} must be \"METHOD /path\" or \"$default\""))?;
    if !METHODS.contains(&method) {
        return Err(format!("route {key:?}: unknown method {method:?} (use one of {})", METHODS.join(", ")));
    }
    if !path.starts_with('/') {
        return Err(format!("route {key:?}: path must start with '/'"));
    }
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let mut names = std::collections::HashSet::new();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if seg.is_empty() {
            if last && segs.len() == 1 {
                continue; // "/"
            }
            return Err(format!("route {key:?}: empty path segment"));
        }
        if seg.starts_with('{') || seg.ends_with('}') || seg.contains(['{', '}']) {
            let inner = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or_else(|| format!("route {key:?}: a parameter must be a whole segment, as {{name}}"))?;
            let (name, greedy) = match inner.strip_suffix('+') {
                Some(n) => (n, true),
                None => (inner, false),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("route {key:?}: bad parameter name {name:?}"));
            }
            if greedy && !last {
                return Err(format!("route {key:?}: a greedy {{{name}+}} must be the last segment"));
            }
            if !names.insert(name.to_string()) {
                return Err(format!("route {key:?}: parameter {name:?} appears twice"));
            }
        } else if seg.contains(['*', '%', '?', '#']) {
            return Err(format!("route {key:?}: segment {seg:?} has a reserved character"));
        }
    }
    Ok(RouteKey::Http { method: method.to_string(), path: path.to_string() })
}

/// Converts a route path to matchit syntax: `{proxy+}` -> `{*proxy}`.
fn to_matchit(path: &str) -> String {
    path.split('/')
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
            Some(name) => format!("{{*{name}}}"),
            None => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Paths without a greedy parameter, and paths with one, in separate matchit trees: a
/// `{proxy+}` never competes with a `{param}` at the same position (matchit would refuse
/// the pair), and a route without a greedy parameter is always more specific.
#[derive(Default)]
struct Table {
    exact: matchit::Router<usize>,
    greedy: matchit::Router<usize>,
}

impl Table {
    fn insert(&mut self, i: usize, path: &str) -> Result<(), (usize, String)> {
        let tree = if path.contains("+}") { &mut self.greedy } else { &mut self.exact };
        tree.insert(to_matchit(path), i).map_err(|e| (i, format!("route conflicts with another: {e}")))
    }

    fn at<'p>(&'p self, path: &'p str) -> Option<matchit::Match<'p, 'p, &'p usize>> {
        self.exact.at(path).or_else(|_| self.greedy.at(path)).ok()
    }
}

/// The compiled route table of one API: per method that has routes of its own, a table
/// holding those and the `ANY` routes; one table of `ANY` routes for the other methods.
#[derive(Default)]
pub struct Router {
    by_method: Vec<(http::Method, Table)>,
    any: Table,
    default: Option<usize>,
}

/// A route match: the route's index and its path parameters (still percent-encoded).
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'p> {
    pub route: usize,
    pub params: Vec<(&'p str, &'p str)>,
}

impl Router {
    /// Builds the table from `(index, key)` pairs; errors name the conflicting key.
    pub fn build<'a>(routes: impl IntoIterator<Item = (usize, &'a RouteKey)>) -> Result<Router, (usize, String)> {
        let mut r = Router::default();
        let mut specific: HashMap<String, Vec<(usize, String)>> = HashMap::new();
        let mut any: Vec<(usize, String)> = vec![];
        for (i, key) in routes {
            match key {
                RouteKey::Default => {
                    if r.default.replace(i).is_some() {
                        return Err((i, "$default is defined twice".into()));
                    }
                }
                RouteKey::Http { method, path } if method == "ANY" => any.push((i, path.clone())),
                RouteKey::Http { method, path } => specific.entry(method.clone()).or_default().push((i, path.clone())),
            }
        }
        for (i, p) in &any {
            r.any.insert(*i, p)?;
        }
        // HEAD is GET without the body (RFC 9110 §9.3.2): a path with a GET route and no HEAD
        // route of its own is served, and guarded, by that GET route, never by an ANY route
        let gets = specific.get("GET").cloned().unwrap_or_default();
        if !gets.is_empty() {
            specific.entry("HEAD".to_string()).or_default();
        }
        let mut methods: Vec<_> = specific.into_iter().collect();
        methods.sort_by(|a, b| a.0.cmp(&b.0));
        for (m, list) in methods {
            let mut table = Table::default();
            for (i, p) in &list {
                table.insert(*i, p)?;
            }
            if m == "HEAD" {
                for (i, p) in &gets {
                    // a HEAD route of the same shape wins; a conflicting shape keeps HEAD's own
                    if !list.iter().any(|(_, q)| q == p) {
                        let _ = table.insert(*i, p);
                    }
                }
            }
            for (i, p) in &any {
                let own = list.iter().any(|(_, q)| q == p) || (m == "HEAD" && gets.iter().any(|(_, q)| q == p));
                if !own {
                    table.insert(*i, p)?;
                }
            }
            let method = http::Method::from_bytes(m.as_bytes()).map_err(|e| (0, e.to_string()))?;
            r.by_method.push((method, table));
        }
        Ok(r)
    }

    /// Finds the route for a method and a normalised path.
    pub fn find<'p>(&'p self, method: &http::Method, path: &'p str) -> Option<Matched<'p>> {
        let table = self.by_method.iter().find(|(m, _)| m == method).map(|(_, t)| t).unwrap_or(&self.any);
        match table.at(path) {
            Some(m) => Some(Matched { route: *m.value, params: m.params.iter().collect() }),
            None => self.default.map(|route| Matched { route, params: vec![] }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        assert_eq!(normalize("/a/b").as_deref(), Ok("/a/b"));
        assert_eq!(normalize("//a///b").as_deref(), Ok("/a/b"));
        assert_eq!(normalize("/a/./b/../c").as_deref(), Ok("/a/c"));
        assert_eq!(normalize("/a/%2e%2e/c").as_deref(), Ok("/c"));
        assert_eq!(normalize("/a/%2E/c").as_deref(), Ok("/a/c"));
        assert_eq!(normalize("/%70ets").as_deref(), Ok("/pets"));
        assert_eq!(normalize("/a%2fb").as_deref(), Ok("/a%2Fb"));
        assert_eq!(normalize("/a/b/").as_deref(), Ok("/a/b/"));
        assert_eq!(normalize("/").as_deref(), Ok("/"));
        assert_eq!(normalize("/.."), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a/../../etc"), Err(PathError::AboveRoot));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape));
        assert_eq!(normalize("/a\\b"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize("/a%5cb"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize("/a%00b"), Err(PathError::ForbiddenByte));
        assert_eq!(normalize("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("/a/..;/b"), Err(PathError::AmbiguousSegment));
        assert_eq!(normalize("/a/.;x/b"), Err(PathError::AmbiguousSegment));
        assert_eq!(normalize("/a/..%2fadmin"), Err(PathError::AmbiguousSegment));
        assert_eq!(normalize("/a/%2e%2e%2Fadmin"), Err(PathError::AmbiguousSegment));
        assert_eq!(normalize("/a/x%2F..%2Fy"), Err(PathError::AmbiguousSegment));
        assert_eq!(normalize("/a/%C0%AE%C0%AE/b"), Err(PathError::BadEncoding));
        assert_eq!(normalize("/a/%E2%82%AC").as_deref(), Ok("/a/%E2%82%AC"));
        assert_eq!(normalize("/a/b%2Fc;v=1").as_deref(), Ok("/a/b%2Fc;v=1"));
        assert_eq!(normalize("/a/...%2Fb").as_deref(), Ok("/a/...%2Fb"));
    }

    #[test]
    fn strips_base_paths_on_segment_boundaries() {
        assert_eq!(strip_base("/v1/pets", "/v1"), Some("/pets"));
        assert_eq!(strip_base("/v1", "/v1"), Some("/"));
        assert_eq!(strip_base("/v10/pets", "/v1"), None);
        assert_eq!(strip_base("/pets", ""), Some("/pets"));
    }

    #[test]
    fn route_keys() {
        assert!(parse_route_key("GET /pets/{id}").is_ok());
        assert!(parse_route_key("ANY /internal/{proxy+}").is_ok());
        assert_eq!(parse_route_key("$default"), Ok(RouteKey::Default));
        assert!(parse_route_key("FETCH /x").is_err());
        assert!(parse_route_key("GET pets").is_err());
        assert!(parse_route_key("GET /a/{p+}/b").is_err());
        assert!(parse_route_key("GET /a/x{p}").is_err());
        assert!(parse_route_key("GET /a/{p}/{p}").is_err());
        assert!(parse_route_key("GET /a//b").is_err());
        assert!(parse_route_key("GET /").is_ok());
    }

    fn router(keys: &[&str]) -> Router {
        let parsed: Vec<RouteKey> = keys.iter().map(|k| parse_route_key(k).expect("key")).collect();
        Router::build(parsed.iter().enumerate()).expect("router")
    }

    #[test]
    fn most_specific_route_wins() {
        let r =
            router(&["GET /pets/{id}", "GET /pets/mine", "ANY /pets/{id}", "ANY /{proxy+}", "POST /pets", "$default"]);
        let get = http::Method::GET;
        assert_eq!(r.find(&get, "/pets/mine").map(|m| m.route), Some(1));
        let m = r.find(&get, "/pets/7").expect("match");
        assert_eq!((m.route, m.params), (0, vec![("id", "7")]));
        assert_eq!(r.find(&http::Method::DELETE, "/pets/7").map(|m| m.route), Some(2));
        assert_eq!(r.find(&http::Method::POST, "/pets").map(|m| m.route), Some(4));
        assert_eq!(r.find(&get, "/a/b/c").map(|m| m.route), Some(3));
        assert_eq!(r.find(&get, "/").map(|m| m.route), Some(5));
        let r = router(&["GET /orders/{id}", "ANY /orders/{proxy+}", "GET /orders/{id}/raw"]);
        assert_eq!(r.find(&get, "/orders/7").map(|m| m.route), Some(0));
        assert_eq!(r.find(&get, "/orders/7/raw").map(|m| m.route), Some(2));
        assert_eq!(r.find(&get, "/orders/7/x/y").map(|m| m.route), Some(1));
        assert_eq!(r.find(&http::Method::PUT, "/orders/7").map(|m| m.route), Some(1));
        let r = router(&["GET /pets"]);
        assert_eq!(r.find(&http::Method::POST, "/pets"), None);
        assert_eq!(r.find(&get, "/pets/"), None);
    }

    /// Property: normalising is idempotent, and a normalised path routes as itself (what
    /// is routed is what is forwarded), over random paths made of the tricky pieces.
    #[test]
    fn normalize_is_idempotent_on_random_paths() {
        const PIECES: [&str; 16] =
            ["/", "a", "b", ".", "..", "%2e", "%2E%2e", "%2f", "%25", "%41", "//", "~", "%7e", "x y", "%", "-"];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let mut p = String::from("/");
            for _ in 0..rng.usize(0..10) {
                p.push_str(PIECES[rng.usize(0..PIECES.len())]);
            }
            if let Ok(n) = normalize(&p) {
                assert_eq!(normalize(&n).as_deref(), Ok(n.as_str()), "not idempotent on {p:?}");
                assert!(n.starts_with('/') && !n.contains("//"), "{p:?} -> {n:?}");
            }
        }
    }

    #[test]
    fn head_follows_get_before_any() {
        let r = router(&["GET /secret", "ANY /{proxy+}", "HEAD /own", "GET /own", "ANY /secret2", "GET /secret2"]);
        let head = http::Method::HEAD;
        assert_eq!(r.find(&head, "/secret").map(|m| m.route), Some(0), "HEAD uses the GET route");
        assert_eq!(r.find(&head, "/own").map(|m| m.route), Some(2), "a HEAD route of its own wins");
        assert_eq!(r.find(&head, "/secret2").map(|m| m.route), Some(5), "GET before ANY for the same path");
        assert_eq!(r.find(&head, "/other").map(|m| m.route), Some(1));
        assert_eq!(r.find(&http::Method::POST, "/secret").map(|m| m.route), Some(1));
    }

    #[test]
    fn conflicting_routes_are_refused() {
        let parsed: Vec<RouteKey> =
            ["GET /a/{x}", "GET /a/{y}"].iter().map(|k| parse_route_key(k).expect("key")).collect();
        assert!(Router::build(parsed.iter().enumerate()).is_err());
    }
}
