//! A deadline for request heads (`server.header_timeout`, default 10 s), against clients that
//! hold connections by sending a head a byte at a time (slowloris).
//!
//! Pingora 0.9 reads the request head before any `ProxyHttp` hook runs and only bounds each
//! read (60 s), not the head. So the deadline sits one layer down: [`HeadDeadline`] wraps the
//! proxy's server app and gives it every accepted connection (after TLS) through
//! [`DeadlineStream`], which:
//! - arms when the connection opens, and again when a read after a response starts with the
//!   first byte of a request line (an upper-case method letter) — the next request of a
//!   keep-alive connection;
//! - disarms when the bytes read contain the blank line that ends the head (`\r\n\r\n`),
//!   so bodies and HTTP/2 frames (whose preface ends with a blank line) are never timed;
//! - when the deadline passes while armed, answers `408 Request Timeout` (if nothing was
//!   written for this request yet) and fails the read, so the connection closes.

use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const TIMEOUT_ANSWER: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// The server app of a proxy service, with the head deadline on every connection.
pub struct HeadDeadline<A> {
    pub inner: Arc<A>,
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeadDeadline<A> {
    async fn process_new(self: &Arc<Self>, session: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let wrapped: Stream = Box::new(DeadlineStream::new(session, self.timeout));
        self.inner.process_new(wrapped, shutdown).await
    }

    /// Runs when the service stops accepting. While the process drains, keep-alive
    /// connections stay open until draining is over (`lifecycle::drained`): a request on
    /// them is still answered (with `Connection: close`) instead of being cut off.
    async fn cleanup(&self) {
        crate::lifecycle::drained().await;
        self.inner.cleanup().await
    }
}

/// A connection whose request heads must arrive within `timeout`.
#[derive(Debug)]
pub struct DeadlineStream {
    inner: Stream,
    timeout: Duration,
    /// `Some` while a head is being read.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The last bytes read, to find a `\r\n\r\n` split across reads.
    tail: [u8; 3],
    /// A response was written since the last head ended: the next request may start.
    wrote: bool,
    /// Bytes of the 408 answer already written.
    answered: usize,
    /// Bytes of the current head arrived (a connection that sent nothing gets no 408).
    started: bool,
}

impl DeadlineStream {
    pub fn new(inner: Stream, timeout: Duration) -> DeadlineStream {
        DeadlineStream {
            inner,
            timeout,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            tail: [0; 3],
            wrote: false,
            answered: 0,
            started: false,
        }
    }

    /// Looks at freshly read bytes: arms on a new request line, disarms at the head's end.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.deadline.is_none() && self.wrote && bytes[0].is_ascii_uppercase() {
            // the next request of a keep-alive connection: timed only if its head did not
            // arrive whole in this read (the usual case costs no timer)
            self.tail = [0; 3];
            self.answered = 0;
            if !ends_head(&self.tail, bytes) {
                self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
            }
        } else if self.deadline.is_some() && ends_head(&self.tail, bytes) {
            self.deadline = None;
        }
        self.started = true;
        self.wrote = false;
        let n = bytes.len();
        if n >= 3 {
            self.tail.copy_from_slice(&bytes[n - 3..]);
        } else {
            let mut t = [0u8; 6];
            t[..3].copy_from_slice(&self.tail);
            t[3..3 + n].copy_from_slice(bytes);
            self.tail.copy_from_slice(&t[n..n + 3]);
        }
    }
}

/// Whether `\r\n\r\n` occurs in `tail ++ bytes`. A read usually ends with the head's end,
/// so that is looked at first; otherwise the read is searched with `memchr`'s SIMD search
/// (a byte-by-byte scan cost four instructions a byte, on heads of a kilobyte or more
/// when a JWT comes along).
fn ends_head(tail: &[u8; 3], bytes: &[u8]) -> bool {
    const END: &[u8] = b"\r\n\r\n";
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(END));
    if bytes.ends_with(END) {
        return true;
    }
    let head = bytes.len().min(3);
    let mut joined = [0u8; 6];
    joined[..3].copy_from_slice(tail);
    joined[3..3 + head].copy_from_slice(&bytes[..head]);
    joined[..3 + head].windows(4).any(|w| w == END) || FINDER.find(bytes).is_some()
}

impl AsyncRead for DeadlineStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                // best effort: the answer goes out only if the socket takes it now
                while this.started && this.answered < TIMEOUT_ANSWER.len() {
                    match Pin::new(&mut *this.inner).poll_write(cx, &TIMEOUT_ANSWER[this.answered..]) {
                        Poll::Ready(Ok(n)) if n > 0 => this.answered += n,
                        _ => break,
                    }
                }
                let _ = Pin::new(&mut *this.inner).poll_flush(cx);
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request head deadline")));
            }
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.saw(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut *this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
            this.answered = TIMEOUT_ANSWER.len(); // a response began: no 408 after it
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut *this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
            this.answered = TIMEOUT_ANSWER.len();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait::async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait::async_trait]
impl Peek for DeadlineStream {
    /// The h2c preface peek (Pingora waits for 24 bytes) is a head read too.
    /// A connection that starts like the HTTP/2 preface (`PRI `) but is not it gets a GOAWAY
    /// (PROTOCOL_ERROR, RFC 9113 3.4) and is closed, instead of an HTTP/1 400.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let r = self.peek_within_deadline(buf).await;
        if matches!(r, Ok(true)) && buf.len() == H2_PREFACE.len() && buf.starts_with(b"PRI ") && buf != H2_PREFACE {
            use tokio::io::AsyncWriteExt;
            const GOAWAY_PROTOCOL_ERROR: &[u8] = &[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let _ = tokio::time::timeout(Duration::from_millis(100), self.inner.write_all(GOAWAY_PROTOCOL_ERROR)).await;
            crate::observability::errors::downstream("h2_preface", &"invalid HTTP/2 connection preface");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid HTTP/2 connection preface"));
        }
        r
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl DeadlineStream {
    async fn peek_within_deadline(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let Some(deadline) = self.deadline.as_mut() else { return self.inner.try_peek(buf).await };
        tokio::select! {
            r = self.inner.try_peek(buf) => r,
            _ = deadline => {
                use tokio::io::AsyncWriteExt;
                let _ = tokio::time::timeout(Duration::from_millis(100), self.inner.write_all(TIMEOUT_ANSWER)).await;
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request head deadline"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_head_across_reads() {
        assert!(ends_head(&[0; 3], b"GET / HTTP/1.1\r\n\r\n"));
        assert!(ends_head(b"x\r\n", b"\r\nbody"));
        assert!(ends_head(b"\r\n\r", b"\n"));
        assert!(!ends_head(b"abc", b"\r\n"));
        assert!(!ends_head(&[0; 3], b"GET / HTTP/1.1\r\nHost: a\r\n"));
        // the end anywhere in a long read (a body or a pipelined request after it), and
        // none at all, against the plain definition
        for at in [0, 1, 15, 16, 31, 32, 63, 500, 2043] {
            let mut read = vec![b'a'; 2048];
            read[at..at + 4].copy_from_slice(b"\r\n\r\n");
            assert!(ends_head(&[0; 3], &read), "end at {at}");
            read[at + 1] = b'x';
            assert!(!ends_head(&[0; 3], &read), "no end, {at}");
        }
        assert!(ends_head(b"a\r\n", &[b"\r\n".as_slice(), &[b'b'; 1000]].concat()));
    }
}
