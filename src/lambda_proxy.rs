//! Lambda proxy integrations (`type = "lambda"`): the AWS event, payload format 1.0 or 2.0,
//! built from the canonical request, and the function's answer mapped back to HTTP, field for
//! field as API Gateway does. Pure functions: the proxy reads the request once and invokes the
//! function through `aws::lambda`.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
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
    pub function: crate::aws::lambda::Function,
    pub format: Format,
    pub timeout: std::time::Duration,
}

/// Everything of a request an event holds.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as the client sent it (`rawPath`, v1 `path`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// `GET /pets/{id}`.
    pub route_key: &'a str,
    pub path_parameters: &'a [(String, String)],
    pub stage_variables: &'a std::collections::BTreeMap<String, String>,
    pub api_id: &'a str,
    pub stage: &'a str,
    pub request_id: &'a str,
    pub domain_name: &'a str,
    pub source_ip: &'a str,
    pub protocol: &'a str,
    pub received_at: SystemTime,
    pub authorizer: Option<&'a crate::auth::Principal>,
    /// The authorizer was a JWT one (v2: `authorizer.jwt`) rather than Lambda-style.
    pub jwt: bool,
    pub client_cert: Option<&'a crate::tls::ClientCert>,
    pub body: &'a [u8],
    /// The body goes base64-encoded (binary media type, or not UTF-8).
    pub binary: bool,
}

/// AWS's `requestTime`: `09/Apr/2015:12:34:56 +0000`.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let rfc = humantime::format_rfc3339_seconds(t).to_string(); // 2015-04-09T12:34:56Z
    let (y, m, d) = (&rfc[0..4], &rfc[5..7], &rfc[8..10]);
    let month = m.parse::<usize>().ok().and_then(|m| MONTHS.get(m.wrapping_sub(1))).copied().unwrap_or("Jan");
    format!("{d}/{month}/{y}:{} +0000", &rfc[11..19])
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn body_field(r: &Request<'_>) -> (Value, bool) {
    if r.body.is_empty() {
        return (Value::Null, false);
    }
    match (r.binary, std::str::from_utf8(r.body)) {
        (false, Ok(s)) => (Value::String(s.to_string()), false),
        _ => (Value::String(base64::engine::general_purpose::STANDARD.encode(r.body)), true),
    }
}

fn params(list: &[(String, String)]) -> Value {
    if list.is_empty() {
        return Value::Null;
    }
    Value::Object(list.iter().map(|(k, v)| (k.clone(), Value::String(crate::request::decode_component(v).into_owned()))).collect())
}

fn vars(v: &std::collections::BTreeMap<String, String>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    Value::Object(v.iter().map(|(k, x)| (k.clone(), Value::String(x.clone()))).collect())
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (crate::request::decode_component(k).into_owned(), crate::request::decode_component(v).into_owned())
        })
        .collect()
}

fn identity(r: &Request<'_>) -> Value {
    let mut id = json!({
        "sourceIp": r.source_ip,
        "userAgent": crate::request::header(r.headers, http::header::USER_AGENT),
    });
    if let Some(c) = r.client_cert {
        id["clientCert"] = json!({"subjectDN": c.subject, "issuerDN": c.issuer, "serialNumber": c.serial});
    }
    id
}

/// The event for `r` in `format`.
pub fn event(r: &Request<'_>, format: Format) -> Value {
    match format {
        Format::V1 => event_v1(r),
        Format::V2 => event_v2(r),
    }
}

fn event_v1(r: &Request<'_>) -> Value {
    let mut headers = Map::new();
    let mut multi = Map::new();
    for name in r.headers.keys() {
        let all: Vec<Value> =
            r.headers.get_all(name).iter().map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
        if let Some(last) = all.last() {
            headers.insert(name.as_str().to_string(), last.clone());
        }
        multi.insert(name.as_str().to_string(), Value::Array(all));
    }
    let pairs = query_pairs(r.query);
    let (mut q, mut mq) = (Map::new(), Map::new());
    for (k, v) in &pairs {
        q.insert(k.clone(), Value::String(v.clone()));
        if let Value::Array(a) = mq.entry(k.clone()).or_insert_with(|| Value::Array(vec![])) {
            a.push(Value::String(v.clone()));
        }
    }
    let resource = r.route_key.split_once(' ').map_or(r.route_key, |(_, p)| p);
    let (body, b64) = body_field(r);
    let mut authorizer = Value::Null;
    if let Some(p) = r.authorizer {
        let mut a = Map::new();
        a.insert("principalId".into(), Value::String(p.principal_id.clone()));
        if r.jwt {
            a.insert("claims".into(), Value::Object(p.claims.clone()));
            a.insert("scopes".into(), json!(p.scopes));
        } else {
            for (k, v) in p.claims.iter().chain(p.context.iter()) {
                a.insert(k.clone(), v.clone());
            }
        }
        authorizer = Value::Object(a);
    }
    json!({
        "resource": resource,
        "path": r.path,
        "httpMethod": r.method,
        "headers": if headers.is_empty() { Value::Null } else { Value::Object(headers) },
        "multiValueHeaders": if multi.is_empty() { Value::Null } else { Value::Object(multi) },
        "queryStringParameters": if q.is_empty() { Value::Null } else { Value::Object(q) },
        "multiValueQueryStringParameters": if mq.is_empty() { Value::Null } else { Value::Object(mq) },
        "pathParameters": params(r.path_parameters),
        "stageVariables": vars(r.stage_variables),
        "requestContext": {
            "accountId": "000000000000",
            "apiId": r.api_id,
            "authorizer": authorizer,
            "domainName": r.domain_name,
            "domainPrefix": r.domain_name.split('.').next().unwrap_or(""),
            "extendedRequestId": r.request_id,
            "httpMethod": r.method,
            "identity": identity(r),
            "path": r.path,
            "protocol": r.protocol,
            "requestId": r.request_id,
            "requestTime": clf_time(r.received_at),
            "requestTimeEpoch": epoch_ms(r.received_at),
            "resourceId": r.route_key,
            "resourcePath": resource,
            "stage": r.stage,
        },
        "body": body,
        "isBase64Encoded": b64,
    })
}

fn event_v2(r: &Request<'_>) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for name in r.headers.keys() {
        if name == http::header::COOKIE {
            for v in r.headers.get_all(name) {
                for c in String::from_utf8_lossy(v.as_bytes()).split(';') {
                    let c = c.trim();
                    if !c.is_empty() {
                        cookies.push(Value::String(c.to_string()));
                    }
                }
            }
            continue;
        }
        // lower-cased names; repeated fields joined with commas
        let joined: Vec<String> =
            r.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        headers.insert(name.as_str().to_string(), Value::String(joined.join(",")));
    }
    let mut q: Map<String, Value> = Map::new();
    for (k, v) in query_pairs(r.query) {
        match q.get_mut(&k) {
            Some(Value::String(s)) => {
                s.push(',');
                s.push_str(&v);
            }
            _ => {
                q.insert(k, Value::String(v));
            }
        }
    }
    let (body, b64) = body_field(r);
    let authorizer = r.authorizer.map(|p| {
        if r.jwt {
            json!({"jwt": {"claims": p.claims, "scopes": if p.scopes.is_empty() { Value::Null } else { json!(p.scopes) }}})
        } else {
            let mut ctx = p.claims.clone();
            ctx.extend(p.context.clone());
            json!({"lambda": ctx})
        }
    });
    let mut e = json!({
        "version": "2.0",
        "routeKey": r.route_key,
        "rawPath": r.path,
        "rawQueryString": r.query.unwrap_or(""),
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": r.api_id,
            "domainName": r.domain_name,
            "domainPrefix": r.domain_name.split('.').next().unwrap_or(""),
            "http": {
                "method": r.method,
                "path": r.path,
                "protocol": r.protocol,
                "sourceIp": r.source_ip,
                "userAgent": crate::request::header(r.headers, http::header::USER_AGENT).unwrap_or_default(),
            },
            "requestId": r.request_id,
            "routeKey": r.route_key,
            "stage": r.stage,
            "time": clf_time(r.received_at),
            "timeEpoch": epoch_ms(r.received_at),
        },
        "isBase64Encoded": b64,
    });
    if !cookies.is_empty() {
        e["cookies"] = Value::Array(cookies);
    }
    if !q.is_empty() {
        e["queryStringParameters"] = Value::Object(q);
    }
    if !r.path_parameters.is_empty() {
        e["pathParameters"] = params(r.path_parameters);
    }
    if !r.stage_variables.is_empty() {
        e["stageVariables"] = vars(r.stage_variables);
    }
    if let Some(a) = authorizer {
        e["requestContext"]["authorizer"] = a;
    }
    if let Some(c) = r.client_cert {
        e["requestContext"]["authentication"] =
            json!({"clientCert": {"subjectDN": c.subject, "issuerDN": c.issuer, "serialNumber": c.serial}});
    }
    if !body.is_null() {
        e["body"] = body;
    }
    e
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
pub fn answer(result: &[u8], format: Format) -> Result<Answer, String> {
    let v: Value = serde_json::from_slice(result).map_err(|e| format!("the result is not JSON: {e}"))?;
    let structured = v.as_object().is_some_and(|o| o.contains_key("statusCode"));
    if format == Format::V2 && !structured {
        // a bare result: 200, the JSON itself
        let body = match &v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Ok(Answer {
            status: StatusCode::OK,
            headers: vec![(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: Bytes::from(body),
        });
    }
    let o = v.as_object().ok_or("the result is not an object")?;
    let status = o
        .get("statusCode")
        .and_then(|s| s.as_u64().or_else(|| s.as_str().and_then(|x| x.parse().ok())))
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or("statusCode is missing or not an HTTP status")?;
    let mut headers = Vec::new();
    let value = |v: &Value| -> Result<HeaderValue, String> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => return Err("a header value is not a string".into()),
        };
        HeaderValue::from_str(&s).map_err(|_| format!("header value {s:?} is not valid"))
    };
    let name = |k: &str| HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header name {k:?} is not valid"));
    let mut single = Vec::new();
    if let Some(Value::Object(h)) = o.get("headers") {
        for (k, v) in h {
            single.push((name(k)?, value(v)?));
        }
    }
    if let Some(Value::Object(m)) = o.get("multiValueHeaders") {
        for (k, vs) in m {
            let n = name(k)?;
            // multiValueHeaders win over headers of the same name
            single.retain(|(x, _)| *x != n);
            for v in vs.as_array().ok_or("multiValueHeaders values must be arrays")? {
                headers.push((n.clone(), value(v)?));
            }
        }
    }
    headers.extend(single);
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
                    base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| format!("body is not base64: {e}"))?,
                )
            } else {
                Bytes::from(s.clone())
            }
        }
        Some(other) if format == Format::V2 => Bytes::from(other.to_string()),
        Some(_) => return Err("body must be a string".into()),
    };
    Ok(Answer { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(h: &'a HeaderMap, vars: &'a std::collections::BTreeMap<String, String>, pp: &'a [(String, String)], body: &'a [u8]) -> Request<'a> {
        Request {
            method: "POST",
            path: "/prod/pets/7",
            query: Some("a=1&a=2&b=x%20y"),
            headers: h,
            route_key: "POST /pets/{id}",
            path_parameters: pp,
            stage_variables: vars,
            api_id: "pets",
            stage: "prod",
            request_id: "rid",
            domain_name: "api.example.com",
            source_ip: "192.0.2.1",
            protocol: "HTTP/1.1",
            received_at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1428582896),
            authorizer: None,
            jwt: false,
            client_cert: None,
            body,
            binary: false,
        }
    }

    #[test]
    fn events_follow_aws_field_for_field() {
        let mut h = HeaderMap::new();
        h.append("x-m", "1".parse().expect("v"));
        h.append("x-m", "2".parse().expect("v"));
        h.append("cookie", "a=1; b=2".parse().expect("v"));
        let vars = [("v".to_string(), "1".to_string())].into_iter().collect();
        let pp = vec![("id".to_string(), "7".to_string())];
        let r = req(&h, &vars, &pp, b"{\"x\":1}");
        let e1 = event(&r, Format::V1);
        assert_eq!(e1["resource"], "/pets/{id}");
        assert_eq!(e1["headers"]["x-m"], "2");
        assert_eq!(e1["multiValueHeaders"]["x-m"], json!(["1", "2"]));
        assert_eq!(e1["queryStringParameters"], json!({"a": "2", "b": "x y"}));
        assert_eq!(e1["multiValueQueryStringParameters"]["a"], json!(["1", "2"]));
        assert_eq!(e1["pathParameters"], json!({"id": "7"}));
        assert_eq!(e1["requestContext"]["requestTime"], "09/Apr/2015:12:34:56 +0000");
        assert_eq!(e1["requestContext"]["requestTimeEpoch"], 1428582896000u64);
        assert_eq!((e1["body"].as_str(), e1["isBase64Encoded"].as_bool()), (Some("{\"x\":1}"), Some(false)));
        let e2 = event(&r, Format::V2);
        assert_eq!(e2["version"], "2.0");
        assert_eq!(e2["routeKey"], "POST /pets/{id}");
        assert_eq!(e2["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(e2["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(e2["headers"]["x-m"], "1,2");
        assert!(e2["headers"].get("cookie").is_none());
        assert_eq!(e2["queryStringParameters"], json!({"a": "1,2", "b": "x y"}));
        assert_eq!(e2["requestContext"]["http"]["method"], "POST");
        assert_eq!(e2["requestContext"]["time"], "09/Apr/2015:12:34:56 +0000");
        let bin = Request { binary: true, ..req(&h, &vars, &pp, &[0xff, 0x00]) };
        let eb = event(&bin, Format::V2);
        assert_eq!((eb["body"].as_str(), eb["isBase64Encoded"].as_bool()), (Some("/wA="), Some(true)));
    }

    #[test]
    fn answers_map_like_api_gateway() {
        let a = answer(br#"{"statusCode":201,"headers":{"x-a":"1"},"multiValueHeaders":{"x-b":["1","2"]},"body":"hi"}"#, Format::V1)
            .expect("v1");
        assert_eq!(a.status, 201);
        assert_eq!(a.headers.iter().filter(|(k, _)| k == "x-b").count(), 2);
        assert_eq!(a.body, "hi");
        let a = answer(br#"{"statusCode":200,"cookies":["s=1","t=2"],"body":"aGk=","isBase64Encoded":true}"#, Format::V2).expect("v2");
        assert_eq!(a.headers.iter().filter(|(k, _)| k == "set-cookie").count(), 2);
        assert_eq!(a.body, "hi");
        let bare = answer(br#"{"hello":"world"}"#, Format::V2).expect("bare");
        assert_eq!((bare.status, bare.body.as_ref()), (StatusCode::OK, &br#"{"hello":"world"}"#[..]));
        assert!(answer(br#"{"hello":"world"}"#, Format::V1).is_err(), "v1 needs statusCode");
        assert!(answer(b"not json", Format::V2).is_err());
        assert!(answer(br#"{"statusCode":99999}"#, Format::V1).is_err());
        assert!(answer(br#"{"statusCode":200,"headers":{"x":"a\r\nb"}}"#, Format::V1).is_err(), "no header injection");
    }
}
