//! Lambda proxy integrations (`type = "lambda"`): the AWS event, payload format 1.0 or 2.0,
//! built from the canonical request, and the function's answer mapped back to HTTP, field for
//! field as API Gateway does. Pure functions: the proxy reads the request once and invokes the
//! function through `aws::invoke`.

use crate::request::{text, RequestView};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::time::SystemTime;

/// `payload_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    V1,
    V2,
}

/// A compiled `type = "lambda"` integration.
#[derive(Debug, Clone)]
pub struct Target {
    pub function: crate::aws::invoke::Function,
    pub format: Format,
    pub timeout: std::time::Duration,
    /// `proxy = false` (a Lambda custom integration): the function gets the request
    /// template's output, and its answer goes through the integration responses, selected
    /// by its `errorMessage` when it fails.
    pub custom: Option<super::mapping::Mapping>,
}

/// Everything of a request an event holds: the request view, and the header fields as
/// integrations are told them (`forwarded::to_integration`).
pub struct Request<'a> {
    pub view: RequestView<'a>,
    pub headers: &'a HeaderMap,
    /// The body goes base64-encoded (binary media type, or not UTF-8).
    pub binary: bool,
}

impl<'a> Request<'a> {
    fn body(&self) -> &'a [u8] {
        self.view.body.unwrap_or_default()
    }
}

/// AWS's `requestTime`: `09/Apr/2015:12:34:56 +0000`.
/// `requestContext.requestTime`: `06/Dec/2026:12:00:00 +0000`, formatted once a second per
/// thread.
pub(super) fn clf_time(t: SystemTime) -> String {
    thread_local! {
        static LAST: crate::clock::SecondSlot = const { crate::clock::second_slot() };
    }
    let secs = crate::clock::unix_secs(t);
    crate::clock::once_a_second(&LAST, secs, crate::clock::clf_time)
}

pub(super) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The body as the event carries it, and whether it is base64.
fn body_field<'a>(r: &Request<'a>) -> (Option<Cow<'a, str>>, bool) {
    if r.body().is_empty() {
        return (None, false);
    }
    let (b, b64) = super::mapping::encode_body(r.body(), r.binary);
    (Some(b), b64)
}

/// `headers` of 1.0 and WebSocket events: the last value of each name.
pub(super) fn last_values(h: &HeaderMap) -> impl Serialize + '_ {
    MapOf(move || h.keys().filter_map(move |k| h.get_all(k).iter().next_back().map(|v| (k.as_str(), text(v)))))
}

/// `multiValueHeaders`: every value of each name, in order.
pub(super) fn all_values(h: &HeaderMap) -> impl Serialize + '_ {
    MapOf(move || h.keys().map(move |k| (k.as_str(), h.get_all(k).iter().map(text).collect::<Vec<_>>())))
}

/// The query's parameters by name, in first-seen order (each name's values in order).
pub(super) fn query_groups(q: Option<&str>) -> Vec<(Cow<'_, str>, Vec<Cow<'_, str>>)> {
    let mut groups: Vec<(Cow<'_, str>, Vec<Cow<'_, str>>)> = Vec::new();
    for (k, v) in query_pairs(q) {
        match groups.iter_mut().find(|(x, _)| *x == k) {
            Some((_, vs)) => vs.push(v),
            None => groups.push((k, vec![v])),
        }
    }
    groups
}

fn query_pairs(q: Option<&str>) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (crate::request::decode_component(k), crate::request::decode_component(v))
        })
        .collect()
}

/// Serializes a map from an iterator of pairs, without building one.
pub(super) struct MapOf<F>(pub(super) F);

impl<K: Serialize, V: Serialize, I: Iterator<Item = (K, V)>, F: Fn() -> I> Serialize for MapOf<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map((self.0)())
    }
}

/// Query parameters by name, in first-seen order: the last value of each (`multi: false`) or
/// all of them.
pub(super) struct Query<'a> {
    pub(super) groups: Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)>,
    pub(super) multi: bool,
}

impl Serialize for Query<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.groups.len()))?;
        for (k, vs) in &self.groups {
            if self.multi {
                m.serialize_entry(k, vs)?;
            } else {
                m.serialize_entry(k, &vs.last())?;
            }
        }
        m.end()
    }
}

/// `None` when empty, so that AWS's `null` (1.0) or an absent field (2.0) results.
fn non_empty<T>(empty: bool, v: T) -> Option<T> {
    (!empty).then_some(v)
}

/// `requestContext.identity` of REST and WebSocket events.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Identity<'a> {
    pub(super) source_ip: String,
    pub(super) user_agent: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) client_cert: Option<CertInfo<'a>>,
    /// The key's id; the key itself never leaves the gateway (`apiKey` stays null). REST
    /// events always have it (null without a key); WebSocket events only with a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) api_key_id: Option<Option<&'a str>>,
    /// `Some(null)` in REST events; WebSocket events have no `apiKey`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) api_key: Option<Null>,
    // AWS's IAM and Cognito fields, null for requests they do not apply to
    pub(super) access_key: Null,
    pub(super) account_id: Null,
    pub(super) caller: Null,
    pub(super) cognito_authentication_provider: Null,
    pub(super) cognito_authentication_type: Null,
    pub(super) cognito_identity_id: Null,
    pub(super) cognito_identity_pool_id: Null,
    pub(super) principal_org_id: Null,
    pub(super) user: Null,
    pub(super) user_arn: Null,
}

impl<'a> Identity<'a> {
    pub(super) fn new(source_ip: String, user_agent: Option<Cow<'a, str>>, api_key_id: Option<&'a str>) -> Self {
        Identity {
            source_ip,
            user_agent,
            client_cert: None,
            api_key_id: Some(api_key_id),
            api_key: Some(Null::default()),
            access_key: Null::default(),
            account_id: Null::default(),
            caller: Null::default(),
            cognito_authentication_provider: Null::default(),
            cognito_authentication_type: Null::default(),
            cognito_identity_id: Null::default(),
            cognito_identity_pool_id: Null::default(),
            principal_org_id: Null::default(),
            user: Null::default(),
            user_arn: Null::default(),
        }
    }
}

/// A field AWS sends as `null`.
#[derive(Serialize, Default)]
pub(super) struct Null(Option<()>);

#[derive(Serialize)]
pub(super) struct CertInfo<'a> {
    #[serde(rename = "subjectDN")]
    subject: &'a str,
    #[serde(rename = "issuerDN")]
    issuer: &'a str,
    #[serde(rename = "serialNumber")]
    serial: &'a str,
}

fn cert<'a>(r: &Request<'a>) -> Option<CertInfo<'a>> {
    r.view.client.cert.as_deref().map(|c| CertInfo { subject: &c.subject, issuer: &c.issuer, serial: &c.serial })
}

/// The event for `r` in `format`, serialized.
pub fn event(r: &Request<'_>, format: Format) -> Vec<u8> {
    // room for the fixed fields, the header fields and the body, so that writing it does
    // not grow the buffer several times over
    let mut out = Vec::with_capacity(1024 + 64 * r.headers.len() + r.body().len() * 4 / 3);
    let written = match format {
        Format::V1 => serde_json::to_writer(&mut out, &v1(r)),
        Format::V2 => {
            v2_write(r, &mut out);
            Ok(())
        }
    };
    if written.is_err() {
        out.clear();
    }
    out
}

/// A JSON string, escaped as serde_json escapes it. Most strings of an event need no
/// escape: they are checked 16 bytes at a time and copied, instead of going byte by byte
/// through serde_json's escaper.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // writing into a Vec cannot fail
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether a JSON string needs an escape: a control character, `"` or `\`.
fn needs_escape(s: &[u8]) -> bool {
    crate::scan::any_byte(s, b'a', |b| (b < 0x20) | (b == b'"') | (b == b'\\'))
}

/// `"key":"value"` pairs of an object, from an iterator.
fn json_pairs<K: AsRef<str>, V: AsRef<str>>(out: &mut Vec<u8>, pairs: impl Iterator<Item = (K, V)>) {
    out.push(b'{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, k.as_ref());
        out.push(b':');
        json_str(out, v.as_ref());
    }
    out.push(b'}');
}

/// A 2.0 event's `cookies`: every `Cookie` line split at `;`, trimmed, empty ones left out.
fn cookie_list(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// A 2.0 event's `queryStringParameters`: each name once, in first-seen order, its values
/// joined with commas.
fn joined_query(q: Option<&str>) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    query_groups(q)
        .into_iter()
        .map(|(k, vs)| {
            let v = if vs.len() == 1 { vs.into_iter().next().unwrap_or_default() } else { Cow::Owned(vs.join(",")) };
            (k, v)
        })
        .collect()
}

/// The payload 2.0 event, written field by field in AWS's order: the same bytes as the
/// serde form of [`V2`] (the tests hold them equal), without its per-field machinery.
fn v2_write(r: &Request<'_>, out: &mut Vec<u8>) {
    let headers = r.headers;
    let view = &r.view;
    out.extend_from_slice(b"{\"version\":\"2.0\",\"routeKey\":");
    json_str(out, view.route());
    out.extend_from_slice(b",\"rawPath\":");
    json_str(out, view.raw_path());
    out.extend_from_slice(b",\"rawQueryString\":");
    json_str(out, view.query().unwrap_or(""));
    let mut cookies = cookie_list(headers).peekable();
    if cookies.peek().is_some() {
        out.extend_from_slice(b",\"cookies\":[");
        for (i, c) in cookies.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, c);
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"headers\":");
    json_pairs(out, Joined { fields: headers.iter().peekable() });
    let q = joined_query(view.query());
    if !q.is_empty() {
        out.extend_from_slice(b",\"queryStringParameters\":");
        json_pairs(out, q.iter().map(|(k, v)| (k, v)));
    }
    let params = view.route.params;
    if !params.is_empty() {
        out.extend_from_slice(b",\"pathParameters\":");
        json_pairs(out, params.iter().map(|(k, v)| (k, crate::request::decode_component(v))));
    }
    if !view.route.variables.is_empty() {
        out.extend_from_slice(b",\"stageVariables\":");
        json_pairs(out, view.route.variables.iter());
    }
    out.extend_from_slice(b",\"requestContext\":{\"accountId\":\"000000000000\",\"apiId\":");
    json_str(out, view.api());
    if let Some(c) = cert(r) {
        out.extend_from_slice(b",\"authentication\":");
        let _ = serde_json::to_writer(
            &mut *out,
            &json!({"clientCert": {"subjectDN": c.subject, "issuerDN": c.issuer, "serialNumber": c.serial}}),
        );
    }
    if let Some(a) = v2_authorizer(r) {
        out.extend_from_slice(b",\"authorizer\":");
        let _ = serde_json::to_writer(&mut *out, &a);
    }
    let host = view.client.host.as_str();
    out.extend_from_slice(b",\"domainName\":");
    json_str(out, host);
    out.extend_from_slice(b",\"domainPrefix\":");
    json_str(out, host.split('.').next().unwrap_or(""));
    out.extend_from_slice(b",\"http\":{\"method\":");
    json_str(out, view.method());
    out.extend_from_slice(b",\"path\":");
    json_str(out, view.raw_path());
    out.extend_from_slice(b",\"protocol\":");
    json_str(out, view.protocol());
    out.extend_from_slice(b",\"sourceIp\":");
    json_str(out, &view.client.source_ip());
    out.extend_from_slice(b",\"userAgent\":");
    json_str(out, &crate::request::header(headers, http::header::USER_AGENT).unwrap_or_default());
    out.extend_from_slice(b"},\"requestId\":");
    json_str(out, view.request_id);
    out.extend_from_slice(b",\"routeKey\":");
    json_str(out, view.route());
    out.extend_from_slice(b",\"stage\":");
    json_str(out, view.stage());
    out.extend_from_slice(b",\"time\":");
    json_str(out, &clf_time(view.received_at));
    out.extend_from_slice(b",\"timeEpoch\":");
    out.extend_from_slice(itoa::Buffer::new().format(epoch_ms(view.received_at)).as_bytes());
    out.push(b'}');
    let (body, b64) = body_field(r);
    if let Some(b) = body {
        out.extend_from_slice(b",\"body\":");
        json_str(out, &b);
    }
    out.extend_from_slice(if b64 { b",\"isBase64Encoded\":true}" } else { b",\"isBase64Encoded\":false}" });
}

/// `requestContext.authorizer` of a 2.0 event: the JWT's claims and scopes, or a Lambda
/// authorizer's context.
fn v2_authorizer(r: &Request<'_>) -> Option<Value> {
    r.view.caller.principal.as_deref().map(|p| {
        if r.view.caller.jwt {
            json!({"jwt": {"claims": p.claims, "scopes": if p.scopes.is_empty() { Value::Null } else { json!(p.scopes) }}})
        } else {
            let mut ctx = p.claims.clone();
            ctx.extend(p.context.clone());
            json!({"lambda": ctx})
        }
    })
}

/// The header fields of a map, each name once, its repeated values joined with commas
/// (HeaderMap yields a name's values one after another), without `cookie` (2.0 events carry
/// it as `cookies`).
struct Joined<'a> {
    fields: std::iter::Peekable<http::header::Iter<'a, HeaderValue>>,
}

impl<'a> Iterator for Joined<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (name, first) = self.fields.next()?;
            let mut joined = text(first);
            while let Some((_, more)) = self.fields.next_if(|(n, _)| *n == name) {
                let s = joined.to_mut();
                s.push(',');
                s.push_str(&text(more));
            }
            if name != http::header::COOKIE {
                return Some((name.as_str(), joined));
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V1<'a, H, MH, Q, MQ, P, SV> {
    resource: &'a str,
    path: &'a str,
    http_method: &'a str,
    headers: Option<H>,
    multi_value_headers: Option<MH>,
    query_string_parameters: Option<Q>,
    multi_value_query_string_parameters: Option<MQ>,
    path_parameters: Option<P>,
    stage_variables: Option<SV>,
    request_context: Ctx1<'a>,
    body: Option<Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ctx1<'a> {
    account_id: &'static str,
    api_id: &'a str,
    authorizer: Option<Map<String, Value>>,
    domain_name: &'a str,
    domain_prefix: &'a str,
    extended_request_id: &'a str,
    http_method: &'a str,
    identity: Identity<'a>,
    path: &'a str,
    protocol: &'a str,
    request_id: &'a str,
    request_time: String,
    request_time_epoch: u64,
    resource_id: &'a str,
    resource_path: &'a str,
    stage: &'a str,
}

fn v1<'a>(r: &'a Request<'a>) -> impl Serialize + 'a {
    let resource = r.view.route().split_once(' ').map_or(r.view.route(), |(_, p)| p);
    let (body, b64) = body_field(r);
    let authorizer = r.view.caller.principal.as_deref().map(|p| {
        let mut a = Map::new();
        a.insert("principalId".into(), Value::String(p.principal_id.clone()));
        if r.view.caller.jwt {
            a.insert("claims".into(), Value::Object(p.claims.clone()));
            a.insert("scopes".into(), json!(p.scopes));
        } else {
            for (k, v) in p.claims.iter().chain(p.context.iter()) {
                a.insert(k.clone(), v.clone());
            }
        }
        a
    });
    let headers = r.headers;
    let (single, multi) = (last_values(headers), all_values(headers));
    let groups = query_groups(r.view.query());
    let no_query = groups.is_empty();
    let q = Query { groups: groups.clone(), multi: false };
    let mq = Query { groups, multi: true };
    let params = r.view.route.params;
    let vars = r.view.route.variables;
    V1 {
        resource,
        path: r.view.raw_path(),
        http_method: r.view.method(),
        headers: non_empty(headers.is_empty(), single),
        multi_value_headers: non_empty(headers.is_empty(), multi),
        query_string_parameters: non_empty(no_query, q),
        multi_value_query_string_parameters: non_empty(no_query, mq),
        path_parameters: non_empty(
            params.is_empty(),
            MapOf(move || params.iter().map(|(k, v)| (k.as_str(), crate::request::decode_component(v)))),
        ),
        stage_variables: non_empty(vars.is_empty(), vars),
        request_context: Ctx1 {
            account_id: "000000000000",
            api_id: r.view.api(),
            authorizer,
            domain_name: r.view.client.host.as_str(),
            domain_prefix: r.view.client.host.as_str().split('.').next().unwrap_or(""),
            extended_request_id: r.view.request_id,
            http_method: r.view.method(),
            identity: Identity {
                client_cert: cert(r),
                ..Identity::new(
                    r.view.client.source_ip(),
                    crate::request::header(r.headers, http::header::USER_AGENT),
                    r.view.caller.api_key_id.as_deref(),
                )
            },
            path: r.view.raw_path(),
            protocol: r.view.protocol(),
            request_id: r.view.request_id,
            request_time: clf_time(r.view.received_at),
            request_time_epoch: epoch_ms(r.view.received_at),
            resource_id: r.view.route(),
            resource_path: resource,
            stage: r.view.stage(),
        },
        body,
        is_base64_encoded: b64,
    }
}

#[cfg(test)]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V2<'a, H, Q, P> {
    version: &'static str,
    route_key: &'a str,
    raw_path: &'a str,
    raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cookies: Vec<&'a str>,
    headers: H,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<Q>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_parameters: Option<P>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage_variables: Option<&'a std::collections::BTreeMap<String, String>>,
    request_context: Ctx2<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[cfg(test)]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ctx2<'a> {
    account_id: &'static str,
    api_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<Value>,
    domain_name: &'a str,
    domain_prefix: &'a str,
    http: Http2<'a>,
    request_id: &'a str,
    route_key: &'a str,
    stage: &'a str,
    time: String,
    time_epoch: u64,
}

#[cfg(test)]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Http2<'a> {
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    source_ip: String,
    user_agent: Cow<'a, str>,
}

/// The 2.0 event as serde writes it: the reference [`v2_write`] is tested against.
#[cfg(test)]
fn v2<'a>(r: &'a Request<'a>) -> impl Serialize + 'a {
    let headers = r.headers;
    let cookies: Vec<&'a str> = cookie_list(headers).collect();
    // lower-cased names (HeaderMap's own), repeated fields joined with commas
    let joined = MapOf(move || Joined { fields: headers.iter().peekable() });
    let q = std::sync::Arc::new(joined_query(r.view.query()));
    let q2 = q.clone();
    let params = r.view.route.params;
    let (body, b64) = body_field(r);
    let authorizer = v2_authorizer(r);
    V2 {
        version: "2.0",
        route_key: r.view.route(),
        raw_path: r.view.raw_path(),
        raw_query_string: r.view.query().unwrap_or(""),
        cookies,
        headers: joined,
        query_string_parameters: non_empty(
            q.is_empty(),
            MapOf(move || q2.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()),
        ),
        path_parameters: non_empty(
            params.is_empty(),
            MapOf(move || params.iter().map(|(k, v)| (k.as_str(), crate::request::decode_component(v)))),
        ),
        stage_variables: non_empty(r.view.route.variables.is_empty(), r.view.route.variables),
        request_context: Ctx2 {
            account_id: "000000000000",
            api_id: r.view.api(),
            authentication: cert(r).map(
                |c| json!({"clientCert": {"subjectDN": c.subject, "issuerDN": c.issuer, "serialNumber": c.serial}}),
            ),
            authorizer,
            domain_name: r.view.client.host.as_str(),
            domain_prefix: r.view.client.host.as_str().split('.').next().unwrap_or(""),
            http: Http2 {
                method: r.view.method(),
                path: r.view.raw_path(),
                protocol: r.view.protocol(),
                source_ip: r.view.client.source_ip(),
                user_agent: crate::request::header(r.headers, http::header::USER_AGENT).unwrap_or_default(),
            },
            request_id: r.view.request_id,
            route_key: r.view.route(),
            stage: r.view.stage(),
            time: clf_time(r.view.received_at),
            time_epoch: epoch_ms(r.view.received_at),
        },
        body,
        is_base64_encoded: b64,
    }
}

/// An HTTP answer made from a function's result.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Maps the function's result to HTTP (API Gateway's proxy response rules); `Err` says why the
/// result is malformed (the gateway answers 502).
/// Fields that frame a message or belong to one hop: the gateway sets its own.
fn framing_field(n: &HeaderName) -> bool {
    use http::header::*;
    [CONNECTION, TRANSFER_ENCODING, CONTENT_LENGTH, UPGRADE, TE, TRAILER, PROXY_AUTHENTICATE].iter().any(|h| h == n)
        || n == "keep-alive"
        || n == "proxy-connection"
}

/// The fields a `Connection` header names (hop-by-hop by that naming).
fn connection_named(headers: &[(HeaderName, HeaderValue)]) -> Vec<HeaderName> {
    headers
        .iter()
        .filter(|(n, _)| *n == http::header::CONNECTION)
        .filter_map(|(_, v)| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Fields that carry one value: sent once even when the function gives several.
fn single_valued(n: &HeaderName) -> bool {
    use http::header::*;
    [
        CONTENT_TYPE,
        CONTENT_LOCATION,
        CONTENT_RANGE,
        CONTENT_DISPOSITION,
        LOCATION,
        ETAG,
        LAST_MODIFIED,
        EXPIRES,
        DATE,
        AGE,
        RETRY_AFTER,
        SERVER,
        STRICT_TRANSPORT_SECURITY,
        ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        ACCESS_CONTROL_MAX_AGE,
    ]
    .iter()
    .any(|h| h == n)
}

/// Maps a function's result to the answer: a final status (200–599), the merged headers
/// without framing or hop-by-hop fields, and the body (none for 204 and 304).
/// Why a function's result makes no HTTP answer (a 502).
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("the result is not JSON: {0}")]
    NotJson(String),
    #[error("the result is not an object")]
    NotObject,
    #[error("statusCode is missing or not an HTTP status")]
    NoStatus,
    #[error("statusCode {0} is not a final HTTP status (200-599)")]
    NotFinal(u16),
    #[error("a header value is not a string")]
    HeaderNotString,
    #[error("header value {0:?} is not valid")]
    HeaderValue(String),
    #[error("header name {0:?} is not valid")]
    HeaderName(String),
    #[error("body is not base64: {0}")]
    NotBase64(String),
    #[error("body must be a string")]
    BodyNotString,
    #[error("multiValueHeaders values must be arrays")]
    MultiValueNotArray,
}

/// A payload 2.0 result: 200 `application/json`, the result itself as the body.
fn bare(body: Bytes) -> Answer {
    Answer {
        status: StatusCode::OK,
        headers: vec![(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    }
}

/// A result that is a JSON object without `statusCode` (the usual bare payload 2.0
/// result), as its bytes: read through once, without building its value, and passed on as
/// the function wrote it. `None` for anything else (the value is read for it), and at once
/// when `"statusCode"` is written out anywhere in it: a structured answer is read once.
fn bare_object(result: &[u8]) -> Option<Bytes> {
    /// Whether the object names `statusCode` (with any value, `null` too).
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "statusCode", default, deserialize_with = "present")]
        status_code: bool,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        <serde::de::IgnoredAny as serde::Deserialize>::deserialize(d).map(|_| true)
    }
    static STATUS_CODE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(br#""statusCode""#));
    let json = result.trim_ascii();
    if json.first() != Some(&b'{') || STATUS_CODE.find(json).is_some() {
        return None;
    }
    // a repeated statusCode (refused by the probe) is left to the value's reading too
    let probe: Probe = serde_json::from_slice(json).ok()?;
    (!probe.status_code).then(|| Bytes::copy_from_slice(json))
}

pub fn answer(result: &[u8], format: Format) -> Result<Answer, Malformed> {
    if format == Format::V2 {
        if let Some(body) = bare_object(result) {
            return Ok(bare(body));
        }
    }
    let v: Value = serde_json::from_slice(result).map_err(|e| Malformed::NotJson(e.to_string()))?;
    let structured = v.as_object().is_some_and(|o| o.contains_key("statusCode"));
    if format == Format::V2 && !structured {
        // a bare result: 200, the JSON itself as the function wrote it (a string: its text)
        let body = match &v {
            Value::String(s) => Bytes::from(s.clone()),
            _ => Bytes::copy_from_slice(result.trim_ascii()),
        };
        return Ok(bare(body));
    }
    let o = v.as_object().ok_or(Malformed::NotObject)?;
    let status = o
        .get("statusCode")
        .and_then(|s| s.as_u64().or_else(|| s.as_str().and_then(|x| x.parse().ok())))
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or(Malformed::NoStatus)?;
    // a final answer: never an interim 1xx (a client would wait for the real one) nor a
    // 101 with no tunnel behind it
    if !(200..=599).contains(&status.as_u16()) {
        return Err(Malformed::NotFinal(status.as_u16()));
    }
    let value = |v: &Value| -> Result<HeaderValue, Malformed> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => return Err(Malformed::HeaderNotString),
        };
        HeaderValue::from_str(&s).map_err(|_| Malformed::HeaderValue(s))
    };
    let name = |k: &str| HeaderName::from_bytes(k.as_bytes()).map_err(|_| Malformed::HeaderName(k.to_string()));
    // AWS merges `headers` and `multiValueHeaders`: a pair given in both appears once
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Some(Value::Object(m)) = o.get("multiValueHeaders") {
        for (k, vs) in m {
            let n = name(k)?;
            for v in vs.as_array().ok_or(Malformed::MultiValueNotArray)? {
                headers.push((n.clone(), value(v)?));
            }
        }
    }
    if let Some(Value::Object(h)) = o.get("headers") {
        for (k, v) in h {
            let (n, v) = (name(k)?, value(v)?);
            let given = headers.iter().any(|(x, y)| *x == n && (*y == v || single_valued(&n)));
            if !given {
                headers.push((n, v));
            }
        }
    }
    // one value for a single-valued field (the first given), and the gateway frames the
    // answer itself: the function's hop-by-hop and framing fields never reach the client
    let mut kept: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(headers.len());
    let named = connection_named(&headers);
    for (n, v) in headers {
        if framing_field(&n) || named.contains(&n) {
            continue;
        }
        if single_valued(&n) && kept.iter().any(|(x, _)| *x == n) {
            continue;
        }
        kept.push((n, v));
    }
    let mut headers = kept;
    if format == Format::V2 {
        if let Some(Value::Array(cs)) = o.get("cookies") {
            for c in cs {
                headers.push((http::header::SET_COOKIE, value(c)?));
            }
        }
    }
    let body = match o.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) => {
            if o.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
                Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|e| Malformed::NotBase64(e.to_string()))?,
                )
            } else {
                Bytes::from(s.clone())
            }
        }
        Some(other) if format == Format::V2 => Bytes::from(other.to_string()),
        Some(_) => return Err(Malformed::BodyNotString),
    };
    let body = if matches!(status.as_u16(), 204 | 304) { Bytes::new() } else { body };
    Ok(Answer { status, headers, body })
}

/// A Lambda proxy integration answers with its function's result, mapped as API Gateway
/// maps it.
#[async_trait::async_trait]
impl super::Answer for Target {
    fn body_use(&self) -> super::BodyUse {
        // the event carries the whole body (Lambda's payload limit)
        super::BodyUse::Whole(crate::aws::invoke::MAX_PAYLOAD as u64)
    }

    async fn answer(
        &self,
        view: &RequestView<'_>,
        env: &super::Env<'_>,
    ) -> Result<super::Made, super::IntegrationError> {
        use super::IntegrationError;
        use crate::aws::invoke::Invoked;
        let scope = self.custom.as_ref().map(|_| super::mapping::Scope::of(view));
        let payload = match self.custom.as_ref().zip(scope.as_ref()) {
            Some((m, scope)) => match m.request(view, scope, env.binary)? {
                super::mapping::Request::Rendered(b) | super::mapping::Request::Passthrough(b) => b,
            },
            None => {
                // the function is told what every integration is told (forwarded::to_integration)
                let told = crate::forwarded::to_integration(view.headers(), &crate::forwarded::Hop::of(view.client));
                Bytes::from(event(&Request { view: *view, headers: &told, binary: env.binary }, self.format))
            }
        };
        let name = &self.function.name;
        let failed = |kind, why, status| IntegrationError::Failed { target: name.clone(), kind, why, status };
        // a custom integration's request parameters: header fields of the Invoke call
        let params = self.custom.as_ref().zip(scope.as_ref()).map(|(m, s)| m.parameters(s)).unwrap_or_default();
        let mut extra: Vec<(&str, &str)> = params.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        extra.extend(env.trace_fields());
        let invoked = self.function.invoke_with(payload, self.timeout, view.request_id, &extra).await;
        if let Some((m, scope)) = self.custom.as_ref().zip(scope.as_ref()) {
            // a custom integration: a success selects the default response, a function error
            // the first whose pattern matches its errorMessage
            let json = http::HeaderMap::from_iter([(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )]);
            match invoked {
                Ok(Invoked::Answer(b)) => return m.response(view, scope, None, 200, &json, b),
                Ok(Invoked::FunctionError { message, body, .. }) => {
                    return m.response(view, scope, Some(&message), 200, &json, body)
                }
                _ => {}
            }
        }
        let result = match invoked {
            Ok(Invoked::Answer(b)) => b,
            Ok(Invoked::FunctionError { kind, message, .. }) => {
                return Err(failed("function_error", format!("function {name} failed ({kind}): {message}"), Some(200)))
            }
            Ok(Invoked::Service { status: 429, message }) => {
                return Err(IntegrationError::Throttled { target: name.clone(), why: message, status: 429 })
            }
            Ok(Invoked::Service { status, message }) => {
                return Err(failed("lambda", format!("Lambda answered {status} for {name}: {message}"), Some(status)))
            }
            Err(source) => return Err(IntegrationError::Unreachable { target: name.clone(), source }),
        };
        let a = answer(&result, self.format)
            .map_err(|why| failed("malformed", format!("function {name} gave a malformed answer: {why}"), Some(200)))?;
        Ok(super::Made {
            status: a.status.as_u16(),
            headers: a.headers,
            body: a.body,
            integration_status: Some(200),
            cacheable: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        head: http::request::Parts,
        client: crate::request::Client,
        caller: crate::request::Caller,
    }

    fn fixture() -> Fixture {
        let head = http::Request::builder()
            .method("POST")
            .uri("/prod/pets/7?a=1&a=2&b=x%20y")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        let client = crate::request::Client {
            ip: Some("192.0.2.1".parse().expect("ip")),
            host: "api.example.com".into(),
            ..Default::default()
        };
        Fixture { head, client, caller: Default::default() }
    }

    fn req<'a>(
        f: &'a Fixture,
        h: &'a HeaderMap,
        vars: &'a std::collections::BTreeMap<String, String>,
        pp: &'a [(String, String)],
        body: &'a [u8],
    ) -> Request<'a> {
        let view = RequestView {
            head: &f.head,
            route: crate::request::Matched {
                api: "pets",
                stage: "prod",
                route_key: "POST /pets/{id}",
                path: "/pets/7",
                params: pp,
                variables: vars,
            },
            client: &f.client,
            caller: &f.caller,
            request_id: "rid",
            received_at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1428582896),
            body: Some(body),
        };
        Request { view, headers: h, binary: false }
    }

    /// A header map with these fields appended in order (repeats kept).
    fn fields(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).expect("value"));
        }
        h
    }

    #[test]
    fn v2_events_are_the_bytes_serde_writes() {
        let h = fields(&[
            ("x-m", b"1"),
            ("cookie", b"a=1; b=\"q\""),
            ("x-m", b"tab\tand \\ \"quote\""),
            ("user-agent", b"caf\xc3\xa9 \xff"),
            ("x-z", b"z"),
        ]);
        let vars = [("b".to_string(), "\u{1}\n".to_string()), ("a".to_string(), "é".to_string())].into_iter().collect();
        let pp = vec![("id".to_string(), "7%2F8+9".to_string()), ("x".to_string(), String::new())];
        let mut f = fixture();
        let none: std::collections::BTreeMap<String, String> = Default::default();
        let same = |r: &Request<'_>| {
            let want = serde_json::to_vec(&v2(r)).expect("json");
            let got = event(r, Format::V2);
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
        };
        same(&req(&f, &h, &vars, &pp, "{\"x\":\"line\nbreak \\u0000 \u{7f} \u{2028} \u{1}\"}".as_bytes()));
        same(&req(&f, &HeaderMap::new(), &none, &[], b""));
        same(&Request { binary: true, ..req(&f, &h, &none, &pp, &[0xff, 0x00, b'"']) });
        // no query; a JWT caller; a client certificate
        f.head.uri = "/prod/pets/7".parse().expect("uri");
        f.client.cert = Some(std::sync::Arc::new(crate::tls::ClientCert {
            subject: "CN=c\"1".into(),
            issuer: "CN=ca".into(),
            serial: "01".into(),
            sans: vec![],
            fingerprint: String::new(),
        }));
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), json!("u\"1"));
        claims.insert("n".into(), json!(3));
        let principal = crate::request::Principal {
            principal_id: "u".into(),
            claims,
            scopes: vec!["read".into()],
            context: Default::default(),
        };
        f.caller =
            crate::request::Caller { principal: Some(std::sync::Arc::new(principal)), jwt: true, api_key_id: None };
        same(&req(&f, &h, &vars, &pp, b"x"));
        f.caller.jwt = false;
        same(&req(&f, &h, &none, &[], b""));
    }

    #[test]
    fn events_follow_aws_field_for_field() {
        let h = fields(&[
            ("x-m", b"1"),
            ("x-m", b"2"),
            ("cookie", b"a=1; b=2"),
            ("x-m", b"3"),
            ("cookie", b"c=3"),
            ("x-z", b"z"),
        ]);
        let vars = [("v".to_string(), "1".to_string())].into_iter().collect();
        let pp = vec![("id".to_string(), "7".to_string())];
        let f = fixture();
        let r = req(&f, &h, &vars, &pp, b"{\"x\":1}");
        let e1: Value = serde_json::from_slice(&event(&r, Format::V1)).expect("json");
        assert_eq!(e1["resource"], "/pets/{id}");
        assert_eq!(e1["headers"]["x-m"], "3");
        assert_eq!(e1["multiValueHeaders"]["x-m"], json!(["1", "2", "3"]));
        assert_eq!(e1["queryStringParameters"], json!({"a": "2", "b": "x y"}));
        assert_eq!(e1["multiValueQueryStringParameters"]["a"], json!(["1", "2"]));
        assert_eq!(e1["pathParameters"], json!({"id": "7"}));
        assert_eq!(e1["requestContext"]["requestTime"], "09/Apr/2015:12:34:56 +0000");
        assert_eq!(e1["requestContext"]["requestTimeEpoch"], 1428582896000u64);
        assert_eq!((e1["body"].as_str(), e1["isBase64Encoded"].as_bool()), (Some("{\"x\":1}"), Some(false)));
        let e2: Value = serde_json::from_slice(&event(&r, Format::V2)).expect("json");
        assert_eq!(e2["version"], "2.0");
        assert_eq!(e2["routeKey"], "POST /pets/{id}");
        assert_eq!(e2["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(e2["cookies"], json!(["a=1", "b=2", "c=3"]));
        // each name once, its values joined in order; no cookie field
        assert_eq!(e2["headers"], json!({"x-m": "1,2,3", "x-z": "z"}));
        assert_eq!(e2["queryStringParameters"], json!({"a": "1,2", "b": "x y"}));
        assert_eq!(e2["requestContext"]["http"]["method"], "POST");
        assert_eq!(e2["requestContext"]["time"], "09/Apr/2015:12:34:56 +0000");
        let bin = Request { binary: true, ..req(&f, &h, &vars, &pp, &[0xff, 0x00]) };
        let eb: Value = serde_json::from_slice(&event(&bin, Format::V2)).expect("json");
        assert_eq!((eb["body"].as_str(), eb["isBase64Encoded"].as_bool()), (Some("/wA="), Some(true)));
    }

    #[test]
    fn answers_map_like_api_gateway() {
        let a = answer(
            br#"{"statusCode":201,"headers":{"x-a":"1"},"multiValueHeaders":{"x-b":["1","2"]},"body":"hi"}"#,
            Format::V1,
        )
        .expect("v1");
        assert_eq!(a.status, 201);
        assert_eq!(a.headers.iter().filter(|(k, _)| k == "x-b").count(), 2);
        assert_eq!(a.body, "hi");
        let a =
            answer(br#"{"statusCode":200,"cookies":["s=1","t=2"],"body":"aGk=","isBase64Encoded":true}"#, Format::V2)
                .expect("v2");
        assert_eq!(a.headers.iter().filter(|(k, _)| k == "set-cookie").count(), 2);
        assert_eq!(a.body, "hi");
        let bare = answer(br#"{"hello":"world"}"#, Format::V2).expect("bare");
        assert_eq!((bare.status, bare.body.as_ref()), (StatusCode::OK, &br#"{"hello":"world"}"#[..]));
        // an object without statusCode passes as the function wrote it (key order, spacing)
        let raw = " {\"z\": [1, {\"statusCode\": 500}], \"a\":\"\\u00e9\"}\n";
        let bare = answer(raw.as_bytes(), Format::V2).expect("bare");
        assert_eq!(bare.body.as_ref(), raw.trim().as_bytes());
        assert_eq!(bare.headers[0].1, "application/json");
        // statusCode with any value (null too) makes it a structured answer, read as one
        assert!(matches!(answer(br#"{"statusCode":null,"body":"x"}"#, Format::V2), Err(Malformed::NoStatus)));
        let s = answer(br#"{"body":"x","statusCode":201}"#, Format::V2).expect("structured");
        assert_eq!((s.status.as_u16(), s.body.as_ref()), (201, &b"x"[..]));
        // a key spelled with an escape is the same key
        let s = answer(br#"{"body":"x","statusCode":202}"#, Format::V2).expect("escaped key");
        assert_eq!((s.status.as_u16(), s.body.as_ref()), (202, &b"x"[..]));
        // not JSON, or cut short: still refused
        assert!(matches!(answer(br#"{"a":1"#, Format::V2), Err(Malformed::NotJson(_))));
        assert!(matches!(answer(br#"{"a":1} x"#, Format::V2), Err(Malformed::NotJson(_))));
        // a bare string is its text
        assert_eq!(answer(br#""hi \"you\"""#, Format::V2).expect("string").body.as_ref(), br#"hi "you""#);
        assert!(answer(br#"{"hello":"world"}"#, Format::V1).is_err(), "v1 needs statusCode");
        assert!(answer(b"not json", Format::V2).is_err());
        assert!(answer(br#"{"statusCode":99999}"#, Format::V1).is_err());
        assert!(answer(br#"{"statusCode":200,"headers":{"x":"a\r\nb"}}"#, Format::V1).is_err(), "no header injection");
    }
}
