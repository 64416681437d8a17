//! The request body, read once for every concern that needs it whole (the SigV4 payload
//! hash, validation, body templates; Lambda events next), whatever the framing: HTTP/1
//! `Content-Length` or chunked, HTTP/2 with or without `content-length`.
//!
//! Whether a request has a body is asked of the connection (`is_body_empty`: the HTTP/1
//! framing headers, or HTTP/2 `END_STREAM` on HEADERS), never guessed from the headers
//! alone, so an HTTP/2 body without `content-length` is a body like any other.
//!
//! A body read here is kept in Pingora's retry buffer (64 KiB, [`PREREAD_LIMIT`]), which the
//! proxy replays to the integration: the bytes the concerns checked are the bytes the origin
//! receives. A body that may be larger is never read here; concerns that can work on a
//! stream (validation, templates) collect it in `request_body_filter` instead, and a SigV4
//! signed payload larger than the limit is refused with 413.

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

/// Why the body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than [`PREREAD_LIMIT`] (declared, or found while reading).
    TooLarge,
    /// The client stopped sending, or sent a malformed body.
    Broken,
}

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

/// Whether the body can be read whole here: it is already, or it is declared small enough.
/// A body of unknown length is not: reading it might pass the limit with part of it gone.
pub fn can_read_ahead(session: &mut Session, ctx: &RequestCtx) -> bool {
    ctx.body.is_some()
        || match framing(session) {
            Framing::Empty => true,
            Framing::Length(n) => n <= PREREAD_LIMIT as u64,
            Framing::Unknown => false,
        }
}

/// The whole request body, read on first use and kept in `ctx.body` for every later
/// concern. A body of unknown length is read up to [`PREREAD_LIMIT`]; past it the request
/// is refused (`TooLarge`) and its connection must not be reused.
pub async fn read<'c>(session: &mut Session, ctx: &'c mut RequestCtx) -> Result<&'c Bytes, BodyError> {
    if ctx.body.is_none() {
        let whole = match framing(session) {
            Framing::Empty => Bytes::new(),
            Framing::Length(n) if n > PREREAD_LIMIT as u64 => return Err(BodyError::TooLarge),
            Framing::Length(_) | Framing::Unknown => read_limited(session).await?,
        };
        ctx.body = Some(whole);
    }
    ctx.body.as_ref().ok_or(BodyError::Broken)
}

async fn read_limited(session: &mut Session) -> Result<Bytes, BodyError> {
    session.enable_retry_buffering();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = session.read_request_body().await.map_err(|_| BodyError::Broken)? {
        if buf.len() + chunk.len() > PREREAD_LIMIT {
            session.set_keepalive(None);
            return Err(BodyError::TooLarge);
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
