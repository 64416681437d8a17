//! The Forward shape's Pingora phases: which peer a route's target is, what its request
//! head says, and what is checked of its answer head. The target itself is
//! `integrations::http` (with `vpc_link` and `edge`).

use crate::observability::errors;
use crate::proxy::ctx::RequestCtx;
use crate::responses::{Refusal, ResponseType};
use opentelemetry::KeyValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::ErrorType;
use std::time::Duration;

/// `upstream_peer`: the peer of the route's target.
pub(super) fn peer(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let Some(t) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()) else {
        return Error::e_explain(ErrorType::InternalError, "no forwarding integration for this route");
    };
    let mut sni = if t.tls { t.sni.clone() } else { String::new() };
    let mut peer = match &t.link {
        None => HttpPeer::new(t.addr, t.tls, sni),
        Some(link) => {
            // consistent hashing keys on the client address
            let key = match ctx.client.ip {
                Some(std::net::IpAddr::V4(a)) => a.octets().to_vec(),
                Some(std::net::IpAddr::V6(a)) => a.octets().to_vec(),
                None => Vec::new(),
            };
            let Some((target, backend)) = link.select(&key, &ctx.upstream.tried) else {
                let why = if link.any_healthy() { "every healthy target failed" } else { "no healthy target" };
                let message = format!("VPC link {}: {why}", link.name);
                ctx.pending = Some(Refusal::new(ResponseType::IntegrationFailure).with_message(message));
                return Error::e_explain(ErrorType::HTTPStatus(503), format!("vpc link {}: {why}", link.name));
            };
            if t.tls {
                sni = link.sni_of(&target).to_string();
            }
            ctx.upstream.tried.push(target);
            match backend.addr {
                pingora::protocols::l4::socket::SocketAddr::Inet(sa) => HttpPeer::new(sa, t.tls, sni),
                pingora::protocols::l4::socket::SocketAddr::Unix(ref ua) => {
                    let path = ua.as_pathname().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                    HttpPeer::new_uds(&path, t.tls, sni)
                        .map_err(|e| Error::because(ErrorType::InternalError, "unix target", e))?
                }
            }
        }
    };
    peer.options.connection_timeout = Some(t.connect_timeout);
    peer.options.total_connection_timeout = Some(t.connect_timeout);
    peer.options.read_timeout = Some(t.timeout);
    peer.options.write_timeout = Some(t.timeout);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    if t.tls {
        peer.options.verify_cert = t.tls_verify;
        peer.options.verify_hostname = t.tls_verify;
    }
    ctx.upstream.started.get_or_insert_with(std::time::Instant::now);
    Ok(Box::new(peer))
}

/// `upstream_request_filter`: the request head the peer receives.
pub(super) fn request_head(up: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    let Some(t) = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()) else {
        return Ok(());
    };
    let uri: http::Uri =
        ctx.upstream.uri.parse().map_err(|e| Error::because(ErrorType::InternalError, "upstream uri", e))?;
    up.set_uri(uri);
    // Host, x-request-id, four forwarding fields, and trace context where it applies
    up.reserve(8);
    match &t.via {
        None => up.insert_header(http::header::HOST, t.host.as_str())?,
        // forwarding: the client's Host stays (the origin routes on it)
        Some(via) => {
            let mut v = crate::request::header(&up.headers, "via").map(|v| v.into_owned()).unwrap_or_default();
            if !v.is_empty() {
                v.push_str(", ");
            }
            v.push_str(via.to_str().unwrap_or_default());
            up.insert_header(http::header::VIA, v)?;
        }
    }
    up.insert_header(&crate::request::X_REQUEST_ID, ctx.request_id.as_str())?;
    // what the client may not say to the integration goes, and the gateway's forwarding
    // fields are set (forwarded::to_integration, the one rule for every integration)
    let hop = ctx.hop();
    let dropped: Vec<http::HeaderName> = up.headers.keys().filter(|k| hop.drops(k.as_str())).cloned().collect();
    for k in dropped {
        up.remove_header(&k);
    }
    let keep_port = up.headers.contains_key(&crate::forwarded::X_FORWARDED_PORT);
    for (name, v) in hop.fields(keep_port) {
        let v = v.map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "forwarding field", e))?;
        up.insert_header(name, v)?;
    }
    // the trace goes on with the integration call's span as parent (what the client sent
    // of it was read as this request's parent)
    if let Some(t) = &ctx.trace {
        up.remove_header(&crate::observability::trace::TRACESTATE);
        for (name, v) in t.outgoing() {
            up.insert_header(name, v)?;
        }
    }
    Ok(())
}

/// `upstream_response_filter`: the peer's answer head, before the cache stores it.
pub(super) fn response_head(session: &Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    ctx.upstream.status = Some(resp.status.as_u16());
    if resp.status == http::StatusCode::SWITCHING_PROTOCOLS
        && !crate::websocket::origin_accepts(&session.req_header().headers, &resp.headers)
    {
        // a tunnel opens only on a real WebSocket handshake answer for this client's key
        let why = "the integration answered 101 without a valid Sec-WebSocket-Accept";
        errors::upstream(&ctx.upstream.uri, "malformed", &why);
        ctx.upstream.retries_left = 0;
        ctx.pending = Some(Refusal::new(ResponseType::IntegrationFailure));
        return Error::e_explain(ErrorType::HTTPStatus(502), why);
    }
    // before the cache stores it: this hop's headers go, and an HTTP/1.0 origin's answer
    // is an HTTP/1.1 answer to our clients
    crate::cache::strip_hop_by_hop(resp);
    resp.set_version(http::Version::HTTP_11);
    if let Some(c) = ctx.cache.as_mut().filter(|_| resp.status == http::StatusCode::NOT_MODIFIED) {
        c.revalidation = Some(resp.headers.clone());
    }
    if let Some(s) = ctx.upstream.started {
        ctx.upstream.latency_ms = Some(s.elapsed().as_millis() as u64);
        if let Some(t) = ctx.trace.as_mut().filter(|t| t.recording()) {
            let host = ctx.route.as_ref().and_then(|r| r.integration.as_deref()?.forward()).map(|f| f.host.clone());
            let attributes = vec![
                KeyValue::new("http.request.method", session.req_header().method.to_string()),
                KeyValue::new("server.address", host.unwrap_or_default()),
                KeyValue::new("url.path", ctx.upstream.uri.clone()),
                KeyValue::new("http.response.status_code", resp.status.as_u16() as i64),
            ];
            t.client_span("integration", s, attributes, resp.status.is_server_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendored pingora-http inserts a header named by a `HeaderName` or a static
    /// lower-case name without parsing it again; every other name takes the parse. Either
    /// way the name's case and the value reach the wire as given.
    #[test]
    fn inserted_headers_keep_their_names_on_the_wire() {
        let mut up = RequestHeader::build("GET", b"/", None).expect("head");
        up.insert_header("x-lower", "1").expect("static lower-case");
        up.insert_header("X-Upper", "2").expect("static with capitals");
        up.insert_header(http::header::HOST, "h").expect("standard HeaderName");
        up.insert_header(http::HeaderName::from_static("x-custom"), "3").expect("custom HeaderName");
        up.insert_header(String::from("X-Owned"), "4").expect("owned");
        up.insert_header("x-lower", "5").expect("replaces");
        assert!(up.insert_header("bad name", "6").is_err(), "an invalid name is still refused");
        let mut wire = Vec::new();
        up.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).expect("utf8");
        for line in ["x-lower: 5\r\n", "X-Upper: 2\r\n", "Host: h\r\n", "x-custom: 3\r\n", "X-Owned: 4\r\n"] {
            assert!(wire.contains(line), "{line:?} in {wire:?}");
        }
        assert_eq!(up.headers.get("x-upper").map(|v| v.as_bytes()), Some(&b"2"[..]));
        assert_eq!(up.headers.len(), 5);
    }
}
