//! Response caching: which requests may be answered from the stage's store, under which key,
//! and which responses may be stored. The proxy's cache phases call these; `store` holds the
//! entries.
//!
//! Poisoning is closed off by construction: the key always holds API, stage, method, the
//! scheme and host the integration is told, and the normalised path, plus the route's `key` parameters; a request that carries a query
//! parameter outside the key bypasses the cache (its answer is neither served from nor stored
//! in an entry it might differ from), and a response that `Vary`s on a header outside the key
//! is not stored.

pub mod store;

use http::{HeaderMap, HeaderName, Method};
use pingora::cache::cache_control::CacheControl;
use pingora::http::ResponseHeader;
use std::time::{Duration, SystemTime};
pub use store::{Store, Stores};

/// `Surrogate-Control`: read by the cache (it may shorten the TTL or forbid storing), never
/// passed to clients.
pub static SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// `x-edgegate-cache`: what the stage cache did for an answer (`hit`, `miss`, ...).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("x-edgegate-cache");

/// Default TTL when a stage has a cache and neither it nor the route says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Largest TTL accepted (AWS API Gateway's limit).
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Default stage store size.
pub const DEFAULT_CAPACITY: u64 = 128 << 20;

/// When a client's `Cache-Control: max-age=0` / `no-cache` refreshes an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidate {
    Never,
    /// Only on routes with an authorizer (which has admitted the caller by then).
    Authorized,
    Any,
}

/// A request input that is part of the key.
#[derive(Debug, Clone)]
pub enum KeyPart {
    /// `path.NAME`: already in the key through the path; kept for the check that it exists.
    Path(String),
    Query(String),
    Header(HeaderName),
    /// The whole query string as sent (the edge cache: every parameter is keyed).
    AllQuery,
}

/// What the cache did for a request (the `cache` access-log field, the metric label and
/// `x-edgegate-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    /// Not looked up (a body, an uncacheable request) or not storable.
    Bypass,
    Stale,
    /// Found, but no longer fresh: refetched.
    Expired,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypass => "bypass",
            CacheResult::Stale => "stale",
            CacheResult::Expired => "expired",
        }
    }

    /// The `x-edgegate-cache` word: a refetched entry is a miss to the client.
    pub fn header(self) -> &'static str {
        match self {
            CacheResult::Expired => "miss",
            r => r.as_str(),
        }
    }
}

/// The compiled cache settings of one route in one stage.
pub struct RouteCache {
    pub store: &'static Store,
    pub ttl: Duration,
    pub key: Vec<KeyPart>,
    pub invalidate: Invalidate,
    /// The route has an authorizer (for `invalidate = "authorized"`).
    pub authorized: bool,
    /// `origin_cache_control = "honor"` (default): the origin's `Cache-Control`, `Expires`,
    /// `Age` and `Surrogate-Control` may shorten the TTL or forbid storing; `"ignore"`: AWS's
    /// behaviour, the TTL alone decides.
    pub honor_origin: bool,
}

/// Why a request is not looked up in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    Method,
    /// A query parameter that is not in the key.
    UnkeyedQuery,
}

/// Everything of a request the key is built from: a borrowed projection of the request view
/// ([`KeyInput::of`]), so the key rules can be tested without a request.
pub struct KeyInput<'a> {
    pub api: &'a str,
    pub stage: &'a str,
    pub method: &'a Method,
    /// The scheme and host the integration is told (`x-forwarded-proto`, `x-forwarded-host`).
    pub proto: &'a str,
    pub host: &'a str,
    /// The normalised path below the stage and base path.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl<'a> KeyInput<'a> {
    /// What a request view offers the key: the scheme and host the integration is told,
    /// the normalised path below the stage, the query and header fields as received.
    pub fn of(view: &crate::request::RequestView<'a>) -> KeyInput<'a> {
        KeyInput {
            api: view.api(),
            stage: view.stage(),
            method: &view.head.method,
            proto: view.client.told_proto().as_str(),
            host: view.client.told_host(),
            path: view.route.path,
            query: view.query(),
            headers: view.headers(),
        }
    }
}

/// The 128-bit hash an entry is stored under: SHA-256 of its key (from [`build_key`]),
/// truncated. A cryptographic hash, as the key is made of what clients send (two requests
/// must not be made to share an entry). SHA-256 (the `sha2` crate the gateway hashes with
/// elsewhere) runs on the CPU's SHA extensions where it has them, against Pingora's default
/// BLAKE2b in software (`cargo bench --bench content -- "cache key hash"`).
pub fn key_hash(key: &str) -> [u8; 16] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Builds the primary key into `out`. Every part is length-prefixed, so no value can spill
/// into the next one.
pub fn build_key(out: &mut String, rc: &RouteCache, k: &KeyInput) -> Result<(), Bypass> {
    if !matches!(*k.method, Method::GET | Method::HEAD) {
        return Err(Bypass::Method);
    }
    let pairs =
        || k.query.unwrap_or("").split('&').filter(|s| !s.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")));
    let all = rc.key.iter().any(|p| matches!(p, KeyPart::AllQuery));
    for (name, _) in pairs().filter(|_| !all) {
        let name = crate::request::decode_component(name);
        if !rc.key.iter().any(|p| matches!(p, KeyPart::Query(q) if *q == name)) {
            return Err(Bypass::UnkeyedQuery);
        }
    }
    out.clear();
    // room for the usual key at once (its length prefixes, the fixed parts, the query)
    out.reserve(48 + k.api.len() + k.stage.len() + k.host.len() + k.path.len() + k.query.map_or(0, str::len));
    let mut len = itoa::Buffer::new();
    let mut part = |s: &str| {
        out.push_str(len.format(s.len()));
        out.push(':');
        out.push_str(s);
    };
    part(k.api);
    part(k.stage);
    part(k.method.as_str());
    part(k.proto);
    part(k.host);
    part(k.path);
    for p in &rc.key {
        match p {
            KeyPart::Path(_) => {}
            KeyPart::Query(q) => {
                part("q");
                for (name, value) in pairs() {
                    if crate::request::decode_component(name) == q.as_str() {
                        part(&crate::request::decode_component(value));
                    }
                }
            }
            KeyPart::AllQuery => {
                part("Q");
                part(k.query.unwrap_or(""));
            }
            KeyPart::Header(h) => {
                part("h");
                // all lines of the field, under the one rule (request::header)
                part(crate::request::header(k.headers, h).as_deref().unwrap_or(""));
            }
        }
    }
    Ok(())
}

/// A client's request to refresh the entry (`Cache-Control: max-age=0` or `no-cache`,
/// `Pragma: no-cache`), honoured only as the route's `invalidate` allows.
pub fn refresh_requested(rc: &RouteCache, headers: &HeaderMap) -> bool {
    let allowed = match rc.invalidate {
        Invalidate::Never => false,
        Invalidate::Authorized => rc.authorized,
        Invalidate::Any => true,
    };
    allowed
        && (headers.get_all(http::header::CACHE_CONTROL).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',').map(str::trim).any(|d| d.eq_ignore_ascii_case("no-cache") || d == "max-age=0")
            })
        }) || headers.get(http::header::PRAGMA).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache")))
}

/// Why a response must not be stored, if it must not. Always: non-2xx, `Set-Cookie`,
/// `Vary: *`, and an unkeyed credential without `public`/`s-maxage`. When the route honours the
/// origin (`origin_cache_control = "honor"`): `Cache-Control: no-store` or `private`, and
/// `Surrogate-Control: no-store`.
pub fn not_storable(credential: bool, resp: &ResponseHeader, honor_origin: bool) -> Option<&'static str> {
    if !resp.status.is_success() {
        return Some("status");
    }
    let h = &resp.headers;
    if h.contains_key(http::header::SET_COOKIE) {
        return Some("set-cookie");
    }
    let mut shared = false;
    let surrogate = if honor_origin { CacheControl::from_headers_named("surrogate-control", h) } else { None };
    if surrogate.as_ref().is_some_and(|sc| sc.no_store()) {
        return Some("surrogate-control");
    }
    // Surrogate-Control speaks to gateways and, when it sets a lifetime, overrides
    // Cache-Control (which speaks to every cache)
    let surrogate_lifetime = surrogate.as_ref().is_some_and(|sc| sc.has_key("max-age"));
    for v in h.get_all(http::header::CACHE_CONTROL) {
        let Ok(s) = v.to_str() else { return Some("cache-control") };
        for d in s.split(',').map(|d| d.trim().split('=').next().unwrap_or("").trim()) {
            if honor_origin && !surrogate_lifetime && ["private", "no-store"].iter().any(|x| d.eq_ignore_ascii_case(x))
            {
                return Some("cache-control");
            }
            shared |= d.eq_ignore_ascii_case("public") || d.eq_ignore_ascii_case("s-maxage");
        }
    }
    if credential && !shared {
        return Some("credentials");
    }
    // every other Vary is honoured: each variant is a separate entry (`variance`)
    for v in h.get_all(http::header::VARY) {
        let Ok(s) = v.to_str() else { return Some("vary") };
        if s.split(',').any(|n| n.trim() == "*") {
            return Some("vary");
        }
    }
    None
}

/// When a stored response stops being fresh, and when it was created (its `Age` back-dated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub fresh_until: SystemTime,
    pub created: SystemTime,
}

/// The freshness of a storable response (RFC 9111 §4.2 inside AWS's model): the route's TTL
/// is the default and the upper bound. Honouring the origin, its `Surrogate-Control: max-age`,
/// else `Cache-Control: s-maxage`/`max-age`, else `Expires` − `Date`, may shorten it, and the
/// response's current age (`Age`, or how old `Date` says it is) is spent already. A response
/// that is stale on arrival, or `no-cache`, is stored only with a validator (`ETag`,
/// `Last-Modified`), to be revalidated on its next use; `None`: do not store.
pub fn freshness(resp: &ResponseHeader, ttl: Duration, honor_origin: bool, now: SystemTime) -> Option<Freshness> {
    if !honor_origin {
        return Some(Freshness { fresh_until: now + ttl, created: now });
    }
    let h = &resp.headers;
    let secs = |n: u32| Duration::from_secs(n as u64);
    // a lifetime directive that is present but not a valid delta-seconds means "stale"
    let directive = |c: &CacheControl, name: &str| -> Option<Duration> {
        if !c.has_key(name) {
            return None;
        }
        let v = if name == "s-maxage" { c.s_maxage() } else { c.max_age() };
        Some(v.ok().flatten().map_or(Duration::ZERO, secs))
    };
    let cc = CacheControl::from_resp_headers(resp);
    let sc = CacheControl::from_headers_named("surrogate-control", h);
    let date = h.get(http::header::DATE).and_then(|v| v.to_str().ok()).and_then(|v| httpdate::parse_http_date(v).ok());
    let explicit = sc
        .as_ref()
        .and_then(|c| directive(c, "max-age"))
        .or_else(|| cc.as_ref().and_then(|c| directive(c, "s-maxage").or_else(|| directive(c, "max-age"))))
        .or_else(|| {
            let mut all = h.get_all(http::header::EXPIRES).iter();
            let (Some(e), None) = (all.next(), all.next()) else {
                // absent: no lifetime from Expires; repeated: invalid, i.e. already expired
                return h.contains_key(http::header::EXPIRES).then_some(Duration::ZERO);
            };
            // an invalid date means "already expired" (RFC 9111 5.3)
            let Some(expires) = e.to_str().ok().and_then(|v| httpdate::parse_http_date(v).ok()) else {
                return Some(Duration::ZERO);
            };
            Some(expires.duration_since(date.unwrap_or(now)).unwrap_or(Duration::ZERO))
        });
    // the TTL stands in for a heuristic lifetime, which only these statuses may have
    // (RFC 9110 15.1, within the 2xx the gateway stores)
    if explicit.is_none() && !matches!(resp.status.as_u16(), 200 | 203 | 204 | 206) {
        return None;
    }
    let lifetime = explicit.map_or(ttl, |l| l.min(ttl));
    // Age: one non-negative integer; anything else makes the response stale
    let mut ages = h.get_all(http::header::AGE).iter();
    let age_header = match (ages.next(), ages.next()) {
        (None, _) => Duration::ZERO,
        (Some(v), None) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(MAX_TTL * 24, Duration::from_secs),
        _ => MAX_TTL * 24,
    };
    let apparent = date.and_then(|d| now.duration_since(d).ok()).unwrap_or(Duration::ZERO);
    let age = age_header.max(apparent).min(MAX_TTL * 24);
    let created = now.checked_sub(age).unwrap_or(now);
    let must_revalidate = cc.as_ref().is_some_and(|c| c.no_cache());
    if lifetime > age && !must_revalidate {
        return Some(Freshness { fresh_until: created + lifetime, created });
    }
    let validator = h.contains_key(http::header::ETAG) || h.contains_key(http::header::LAST_MODIFIED);
    // stale from the start: kept only to be revalidated (its fresh_until is in the past)
    validator.then(|| Freshness { fresh_until: now.checked_sub(Duration::from_secs(1)).unwrap_or(now), created })
}

/// The stored header updated with a 304's fields (RFC 9111 4.3.4): each field the 304 carries
/// replaces the stored one, except those that describe the stored body itself (its framing,
/// encoding, digest and validator) and `Date` (the stored response's own).
pub fn apply_304(stored: &ResponseHeader, fields: &HeaderMap) -> ResponseHeader {
    const KEEP: &[&str] =
        &["content-length", "transfer-encoding", "content-range", "content-encoding", "content-md5", "etag", "date"];
    let mut h = stored.clone();
    for name in fields.keys() {
        if KEEP.contains(&name.as_str()) {
            continue;
        }
        h.remove_header(name);
        for v in fields.get_all(name) {
            let _ = h.append_header(name.clone(), v.clone());
        }
    }
    h
}

/// Response headers that are meant for this hop only (RFC 9110 7.6.1): `Connection`, the
/// fields it names, and `Keep-Alive`, `Proxy-Connection`; they are neither stored nor
/// forwarded.
pub fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    // a 101's `Connection: Upgrade` and `Upgrade` are the switch itself: they reach the client
    let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    // one pass over the names first: each removal hashes (and for a non-standard name,
    // parses) its name, and most answers carry `Connection: keep-alive` at most
    let (mut connection, mut others) = (false, false);
    for name in resp.headers.keys() {
        connection |= name == http::header::CONNECTION;
        others |= matches!(name.as_str(), "keep-alive" | "proxy-connection");
    }
    if connection {
        // compared without case before anything is allocated: the usual `keep-alive` costs nothing
        let named: Vec<String> = resp
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                let kept = t.is_empty()
                    || t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("keep-alive")
                    || (switching && t.eq_ignore_ascii_case("upgrade"));
                !kept
            })
            .map(str::to_ascii_lowercase)
            .collect();
        for n in &named {
            resp.remove_header(n.as_str());
        }
        resp.remove_header(&http::header::CONNECTION);
    }
    if others {
        for n in ["keep-alive", "proxy-connection"] {
            resp.remove_header(n);
        }
    }
    if switching && resp.headers.contains_key(http::header::UPGRADE) {
        let _ = resp.insert_header(http::header::CONNECTION, "Upgrade");
    }
}

/// Whether the request carries a credential that the key does not cover, so the answer
/// may be meant for this caller alone (RFC 9111 §3.5 for `Authorization`): one of
/// `Authorization`, `Cookie` or the route authorizer's identity headers (`candidates`).
pub fn carries_unkeyed_credential<'a>(
    rc: &RouteCache,
    req: &HeaderMap,
    candidates: impl IntoIterator<Item = &'a HeaderName>,
) -> bool {
    let keyed = |name: &HeaderName| rc.key.iter().any(|p| matches!(p, KeyPart::Header(k) if k == name));
    [&http::header::AUTHORIZATION, &http::header::COOKIE]
        .into_iter()
        .chain(candidates)
        .any(|name| req.contains_key(name) && !keyed(name))
}

/// The variance of a stored answer: the request's values of every header its `Vary` names
/// (under the one header rule), so a client never gets a variant made for other values.
pub fn variance(resp: &ResponseHeader, req: &HeaderMap) -> Option<pingora::cache::key::HashBinary> {
    let mut names: Vec<String> = resp
        .headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    let mut b = pingora::cache::VarianceBuilder::new();
    for n in &names {
        let v = crate::request::header(req, n.as_str()).map(|v| v.into_owned().into_bytes()).unwrap_or_default();
        b.add_owned_name_value(n.clone(), v);
    }
    b.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_stored_under_sha256_of_their_key() {
        // the first 16 bytes of SHA-256("abc") (FIPS 180-2, appendix B.1)
        assert_eq!(key_hash("abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(key_hash("abc")[12..], [0x5d, 0xae, 0x22, 0x23]);
        assert_ne!(key_hash("3:api4:prod3:GET"), key_hash("3:api4:prod4:HEAD"));
    }

    fn rc(key: Vec<KeyPart>) -> RouteCache {
        RouteCache {
            store: store::Stores::default().for_stage("unit-key", "s", 1 << 20),
            ttl: DEFAULT_TTL,
            key,
            invalidate: Invalidate::Never,
            authorized: false,
            honor_origin: true,
        }
    }

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).expect("h");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("h");
        }
        r
    }

    #[test]
    fn freshness_follows_the_origin_within_the_ttl() {
        let now = SystemTime::now();
        let ttl = Duration::from_secs(300);
        let f = |h: &[(&str, &str)]| {
            freshness(&resp(h), ttl, true, now)
                .map(|f| f.fresh_until.duration_since(f.created).unwrap_or_default().as_secs())
        };
        assert_eq!(f(&[]), Some(300), "no origin word: the TTL");
        assert_eq!(f(&[("cache-control", "max-age=60")]), Some(60), "shorter wins");
        assert_eq!(f(&[("cache-control", "max-age=9000")]), Some(300), "the TTL is the bound");
        assert_eq!(f(&[("cache-control", "max-age=60, s-maxage=30")]), Some(30), "s-maxage first");
        assert_eq!(f(&[("surrogate-control", "max-age=10"), ("cache-control", "max-age=60")]), Some(10));
        // stale on arrival without a validator: not stored; with one: stored to revalidate
        assert_eq!(freshness(&resp(&[("cache-control", "max-age=0")]), ttl, true, now), None);
        let past = httpdate::fmt_http_date(now - Duration::from_secs(83 * 60));
        assert_eq!(freshness(&resp(&[("expires", &past)]), ttl, true, now), None);
        assert_eq!(freshness(&resp(&[("expires", "not a date")]), ttl, true, now), None);
        let stale =
            freshness(&resp(&[("cache-control", "max-age=0"), ("etag", "\"a\"")]), ttl, true, now).expect("kept");
        assert!(stale.fresh_until < now);
        let nc =
            freshness(&resp(&[("cache-control", "no-cache"), ("last-modified", &past)]), ttl, true, now).expect("kept");
        assert!(nc.fresh_until < now, "no-cache: revalidate every time");
        // Age is spent already and back-dates the entry
        let aged = freshness(&resp(&[("cache-control", "max-age=100"), ("age", "40")]), ttl, true, now).expect("fresh");
        assert_eq!(aged.fresh_until.duration_since(now).map(|d| d.as_secs()).unwrap_or(0), 60);
        assert_eq!(now.duration_since(aged.created).map(|d| d.as_secs()).unwrap_or(0), 40);
        assert_eq!(freshness(&resp(&[("cache-control", "max-age=100"), ("age", "200")]), ttl, true, now), None);
        // Expires relative to Date
        let date = httpdate::fmt_http_date(now);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(f(&[("date", &date), ("expires", &later)]), Some(120));
        // ignore: AWS's model, the TTL alone
        let ign = freshness(&resp(&[("cache-control", "max-age=0")]), ttl, false, now).expect("stored");
        assert_eq!(ign.fresh_until, now + ttl);
        assert_eq!(not_storable(false, &resp(&[("cache-control", "no-store")]), false), None);
        assert_eq!(not_storable(false, &resp(&[("cache-control", "no-store")]), true), Some("cache-control"));
        assert_eq!(not_storable(false, &resp(&[("surrogate-control", "no-store")]), true), Some("surrogate-control"));
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut r =
            resp(&[("connection", "x-hop, close"), ("x-hop", "1"), ("keep-alive", "timeout=5"), ("x-end", "2")]);
        strip_hop_by_hop(&mut r);
        assert!(r.headers.get("x-hop").is_none() && r.headers.get("keep-alive").is_none());
        assert!(r.headers.get("connection").is_none());
        assert_eq!(r.headers.get("x-end").map(|v| v.as_bytes()), Some(&b"2"[..]));
        // a 101 keeps what makes it a switch, and loses the rest
        let mut r = ResponseHeader::build(101, None).expect("head");
        for (k, v) in [("connection", "Upgrade, x-hop"), ("upgrade", "websocket"), ("x-hop", "1"), ("keep-alive", "5")]
        {
            r.append_header(k, v).expect("header");
        }
        strip_hop_by_hop(&mut r);
        assert_eq!(r.headers.get("connection").map(|v| v.as_bytes()), Some(&b"Upgrade"[..]));
        assert_eq!(r.headers.get("upgrade").map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        assert!(r.headers.get("x-hop").is_none() && r.headers.get("keep-alive").is_none());
    }

    fn key(
        rc: &RouteCache,
        method: &Method,
        host: &str,
        path: &str,
        query: Option<&str>,
        h: &HeaderMap,
    ) -> Result<String, Bypass> {
        let mut out = String::new();
        let input = KeyInput { api: "a", stage: "s", method, proto: "http", host, path, query, headers: h };
        build_key(&mut out, rc, &input).map(|_| out)
    }

    #[test]
    fn keys_hold_the_keyed_inputs_only() {
        let r = rc(vec![KeyPart::Query("lang".into()), KeyPart::Header(HeaderName::from_static("accept-language"))]);
        let mut h = HeaderMap::new();
        let get = Method::GET;
        let base = key(&r, &get, "h", "/p/1", None, &h).expect("key");
        assert_ne!(base, key(&r, &get, "h", "/p/2", None, &h).expect("key"));
        assert_ne!(base, key(&r, &get, "other", "/p/1", None, &h).expect("key"));
        assert_ne!(base, key(&r, &Method::HEAD, "h", "/p/1", None, &h).expect("key"));
        let en = key(&r, &get, "h", "/p/1", Some("lang=en"), &h).expect("key");
        assert_ne!(base, en);
        assert_eq!(en, key(&r, &get, "h", "/p/1", Some("l%61ng=en"), &h).expect("key"));
        assert_eq!(key(&r, &get, "h", "/p/1", Some("evil=1"), &h), Err(Bypass::UnkeyedQuery));
        assert_eq!(key(&r, &Method::POST, "h", "/p/1", None, &h), Err(Bypass::Method));
        h.insert("x-unkeyed", "1".parse().expect("v"));
        assert_eq!(base, key(&r, &get, "h", "/p/1", None, &h).expect("key"));
        h.insert("accept-language", "fr".parse().expect("v"));
        assert_ne!(base, key(&r, &get, "h", "/p/1", None, &h).expect("key"));
        // the scheme the integration is told is part of the key
        let mut https = String::new();
        let input = KeyInput {
            api: "a",
            stage: "s",
            method: &get,
            proto: "https",
            host: "h",
            path: "/p/1",
            query: None,
            headers: &h,
        };
        build_key(&mut https, &r, &input).expect("key");
        assert_ne!(https, key(&r, &get, "h", "/p/1", None, &h).expect("key"));
        // length prefixes: a value cannot imitate the next part
        assert_ne!(
            key(&r, &get, "h:1", "/p", None, &HeaderMap::new()),
            key(&r, &get, "h", "1:/p", None, &HeaderMap::new())
        );
    }

    #[test]
    fn storability() {
        let r = rc(vec![KeyPart::Header(HeaderName::from_static("accept-language"))]);
        let mut resp = ResponseHeader::build(200, None).expect("h");
        assert_eq!(not_storable(false, &resp, true), None);
        let mut authz = HeaderMap::new();
        authz.insert("authorization", "Bearer a".parse().expect("v"));
        assert!(carries_unkeyed_credential(&r, &authz, []));
        assert_eq!(not_storable(true, &resp, true), Some("credentials"));
        resp.insert_header("cache-control", "public, max-age=60").expect("h");
        assert_eq!(not_storable(true, &resp, true), None);
        let per_user = rc(vec![KeyPart::Header(http::header::AUTHORIZATION)]);
        assert!(!carries_unkeyed_credential(&per_user, &authz, []));
        let mut cookie = HeaderMap::new();
        cookie.insert("cookie", "s=1".parse().expect("v"));
        assert!(carries_unkeyed_credential(&per_user, &cookie, []));
        let token = HeaderName::from_static("x-token");
        let mut custom = HeaderMap::new();
        custom.insert("x-token", "t".parse().expect("v"));
        assert!(carries_unkeyed_credential(&per_user, &custom, [&token]));
        assert!(!carries_unkeyed_credential(&per_user, &custom, []));
        resp.remove_header("cache-control");
        resp.insert_header("vary", "Accept-Language, Accept-Encoding").expect("h");
        assert_eq!(not_storable(false, &resp, true), None);
        resp.insert_header("vary", "*").expect("h");
        assert_eq!(not_storable(false, &resp, true), Some("vary"));
        resp.remove_header("vary");
        resp.insert_header("cache-control", "public, Private").expect("h");
        assert_eq!(not_storable(false, &resp, true), Some("cache-control"));
        resp.remove_header("cache-control");
        resp.insert_header("set-cookie", "a=b").expect("h");
        assert_eq!(not_storable(false, &resp, true), Some("set-cookie"));
        let err = ResponseHeader::build(404, None).expect("h");
        assert_eq!(not_storable(false, &err, true), Some("status"));
    }

    #[test]
    fn variants_differ_by_the_varied_values() {
        let mut resp = ResponseHeader::build(200, None).expect("h");
        resp.insert_header("vary", "Accept-Encoding").expect("h");
        let mut gzip = HeaderMap::new();
        gzip.insert("accept-encoding", "gzip".parse().expect("v"));
        let mut identity = HeaderMap::new();
        identity.insert("accept-encoding", "identity".parse().expect("v"));
        let a = variance(&resp, &gzip);
        assert!(a.is_some());
        assert_ne!(a, variance(&resp, &identity));
        assert_ne!(a, variance(&resp, &HeaderMap::new()));
        assert_eq!(a, variance(&resp, &gzip));
        assert_eq!(variance(&ResponseHeader::build(200, None).expect("h"), &gzip), None);
    }

    #[test]
    fn refresh_follows_invalidate() {
        let mut h = HeaderMap::new();
        h.insert("cache-control", "max-age=0".parse().expect("v"));
        let mut r = rc(vec![]);
        assert!(!refresh_requested(&r, &h));
        r.invalidate = Invalidate::Authorized;
        assert!(!refresh_requested(&r, &h));
        r.authorized = true;
        assert!(refresh_requested(&r, &h));
        r.invalidate = Invalidate::Any;
        assert!(!refresh_requested(&r, &HeaderMap::new()));
    }
}
