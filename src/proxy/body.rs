//! The request body, read once for every concern that needs it whole (the SigV4 payload
//! hash, validation, body templates; Lambda events next), whatever the framing: HTTP/1
//! `Content-Length` or chunked, HTTP/2 with or without `content-length`.
//!
//! Whether a request has a body is asked of the connection (`is_body_empty`: the HTTP/1
//! framing headers, or HTTP/2 `END_STREAM` on HEADERS), never guessed from the headers
//! alone, so an HTTP/2 body without `content-length` is a body like any other.
//!
//! A body that a concern must see whole before the integration is contacted (validation,
//! body templates, a SigV4 signed payload) is read here up to `server.max_body`, before any
//! byte of the request reaches the integration: a refused request sends nothing upstream.
//! The proxy then forwards the bytes that were checked (`ctx.upstream.new_body`).
//!
//! Forwarding a body that was read ahead goes through Pingora's retry buffer: it replays
//! that buffer when it is not truncated (64 KiB, [`PREREAD_LIMIT`]) and never reads the
//! client again. So the buffer is switched on for the last 64 KiB of a body of declared
//! length, and `request_body_filter` puts the whole body in its place. A body of unknown
//! length (HTTP/1 chunked, HTTP/2 without `content-length`) can be buffered only whole, so
//! on such routes it is limited to 64 KiB and a longer one is refused with 411 (send a
//! `Content-Length`). Routes that need no decision on the body stream it unread.

use crate::proxy::ctx::RequestCtx;
use bytes::Bytes;
use pingora::proxy::Session;

/// Bodies up to this size are read ahead and replayed from Pingora's retry buffer (its
/// fixed size); larger ones stream.
pub const PREREAD_LIMIT: usize = 64 * 1024;

/// What the request declared about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: no content, or `END_STREAM` on the HTTP/2 HEADERS frame.
    Empty,
    /// A declared length (HTTP/1 `Content-Length`, or HTTP/2 `content-length`).
    Length(u64),
    /// A body of unknown length: HTTP/1 chunked, HTTP/2 DATA frames without `content-length`.
    Unknown,
}

pub use crate::request::BodyError;

/// The body's framing, from the connection.
pub fn framing(session: &mut Session) -> Framing {
    if session.as_mut().is_body_empty() {
        return Framing::Empty;
    }
    let req = session.req_header();
    if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return Framing::Unknown;
    }
    match req.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(|v| v.trim().parse::<u64>()) {
        Some(Ok(0)) => Framing::Empty,
        Some(Ok(n)) => Framing::Length(n),
        _ => Framing::Unknown,
    }
}

/// Whether the request carries a body (of any framing).
pub fn has_body(session: &mut Session, ctx: &RequestCtx) -> bool {
    match &ctx.body {
        Some(b) => !b.is_empty(),
        None => framing(session) != Framing::Empty,
    }
}

/// The whole request body, up to `limit` bytes, read on first use (before the integration
/// is contacted) and kept in `ctx.body` for every later concern; the proxy forwards these
/// bytes (`ctx.upstream.new_body`). Past `limit` the request is refused (`TooLarge`) and
/// its connection must not be reused.
pub async fn read<'c>(session: &mut Session, ctx: &'c mut RequestCtx, limit: u64) -> Result<&'c Bytes, BodyError> {
    if ctx.body.is_none() {
        let whole = match framing(session) {
            Framing::Empty => Bytes::new(),
            Framing::Length(n) if n > limit => return Err(BodyError::TooLarge),
            Framing::Length(n) => read_declared(session, n).await?,
            Framing::Unknown => read_unknown(session, limit.min(PREREAD_LIMIT as u64)).await?,
        };
        if ctx.upstream.new_body.is_none() && !whole.is_empty() {
            ctx.upstream.new_body = Some(whole.clone());
        }
        ctx.body = Some(whole);
    }
    ctx.body.as_ref().ok_or(BodyError::Broken)
}

/// A body of declared length `n`, with the retry buffer on for its last [`PREREAD_LIMIT`]
/// bytes so that Pingora has something to replay (`request_body_filter` swaps in the whole).
async fn read_declared(session: &mut Session, n: u64) -> Result<Bytes, BodyError> {
    let mut buf = bytes::BytesMut::with_capacity(n as usize);
    loop {
        if n - buf.len() as u64 <= PREREAD_LIMIT as u64 {
            session.enable_retry_buffering();
        }
        let Some(chunk) = session.read_request_body().await.map_err(|_| BodyError::Broken)? else { break };
        if (buf.len() + chunk.len()) as u64 > n {
            return Err(BodyError::Broken);
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.len() as u64 != n {
        return Err(BodyError::Broken);
    }
    if !buf.is_empty() && session.as_ref().get_retry_buffer().is_none() {
        // one read carried more than the last 64 KiB to the end: nothing to replay
        session.set_keepalive(None);
        return Err(BodyError::Unreplayable);
    }
    Ok(buf.freeze())
}

/// A body of unknown length, buffered whole for the replay: at most `limit` bytes.
async fn read_unknown(session: &mut Session, limit: u64) -> Result<Bytes, BodyError> {
    session.enable_retry_buffering();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = session.read_request_body().await.map_err(|_| BodyError::Broken)? {
        if (buf.len() + chunk.len()) as u64 > limit {
            session.set_keepalive(None);
            return Err(if limit < PREREAD_LIMIT as u64 { BodyError::TooLarge } else { BodyError::LengthRequired });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads the rest of the body and drops it, for answers the gateway gives itself (mocks):
/// the body is still checked against its framing (an HTTP/2 `content-length` that the DATA
/// frames do not match is `Broken`) and against `limit` (`TooLarge`).
pub async fn drain(session: &mut Session, limit: u64) -> Result<(), BodyError> {
    let mut n = 0u64;
    while let Some(chunk) = session.read_request_body().await.map_err(|_| BodyError::Broken)? {
        n += chunk.len() as u64;
        if n > limit {
            session.set_keepalive(None);
            return Err(BodyError::TooLarge);
        }
    }
    Ok(())
}

/// The whole body, up to `limit` bytes, read once into `ctx.body` for a concern that needs
/// all of it and sends something else in its place (a Lambda event): no retry buffer.
pub async fn read_all<'c>(session: &mut Session, ctx: &'c mut RequestCtx, limit: u64) -> Result<&'c Bytes, BodyError> {
    if ctx.body.is_none() {
        let mut buf = bytes::BytesMut::new();
        if framing(session) != Framing::Empty {
            while let Some(chunk) = session.read_request_body().await.map_err(|_| BodyError::Broken)? {
                if (buf.len() + chunk.len()) as u64 > limit {
                    session.set_keepalive(None);
                    return Err(BodyError::TooLarge);
                }
                buf.extend_from_slice(&chunk);
            }
        }
        ctx.body = Some(buf.freeze());
    }
    ctx.body.as_ref().ok_or(BodyError::Broken)
}
