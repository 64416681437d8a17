//! The body reader (`edgegate::proxy::body`) over a real Pingora HTTP/1 session: a body is
//! read whole whatever its framing, kept for replay, and refused as the framing requires.

use edgegate::proxy::body::{self, BodyError, Framing, PREREAD_LIMIT};
use edgegate::proxy::ctx::RequestCtx;
use pingora::proxy::Session;
use tokio::io::AsyncWriteExt;

/// A session whose request head has been read from `head`, with `body` written after it
/// (in a task, so a large body does not fill the in-memory pipe).
async fn session(head: String, body: Vec<u8>, close: bool) -> Session {
    let (client, server) = tokio::io::duplex(16 * 1024);
    tokio::spawn(async move {
        let mut client = client;
        let _ = client.write_all(head.as_bytes()).await;
        let _ = client.write_all(&body).await;
        if close {
            let _ = client.shutdown().await;
        } else {
            // hold the connection open until the reader is done
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    });
    let mut s = Session::new_h1(Box::new(server));
    assert!(s.read_request().await.expect("request head"));
    s
}

fn ctx() -> (tempfile::TempDir, RequestCtx) {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!("{}\n[[apis]]\nname = \"b\"\n[apis.stages.prod]\n", super::SERVER);
    let snap = super::snapshot(dir.path(), &toml);
    (dir, RequestCtx::new(snap))
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(7000) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_declared_body_is_read_whole_and_kept_for_replay() {
    let (_d, mut ctx) = ctx();
    let data = pattern(300 * 1024 - 5);
    let head = format!("POST /b HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n", data.len());
    let mut s = session(head, data.clone(), false).await;
    assert_eq!(body::framing(&mut s), Framing::Length(data.len() as u64));
    let got = body::read(&mut s, &mut ctx, 1 << 20).await.expect("read").clone();
    assert_eq!(got.as_ref(), &data[..], "every byte, in order");
    assert_eq!(ctx.upstream.new_body.as_deref(), Some(&data[..]), "the checked bytes are the forwarded bytes");
    assert!(s.as_ref().get_retry_buffer().is_some(), "something for Pingora to replay");
    // a second concern gets the same bytes without reading again
    let again = body::read(&mut s, &mut ctx, 1 << 20).await.expect("read").clone();
    assert_eq!(again, got);
}

#[tokio::test]
async fn a_chunked_body_up_to_the_replay_buffer_is_read_whole() {
    let (_d, mut ctx) = ctx();
    let data = pattern(PREREAD_LIMIT - 100);
    let head = "POST /b HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_string();
    let mut s = session(head, chunked(&data), false).await;
    assert_eq!(body::framing(&mut s), Framing::Unknown);
    let got = body::read(&mut s, &mut ctx, 1 << 20).await.expect("read");
    assert_eq!(got.as_ref(), &data[..]);
}

#[tokio::test]
async fn a_longer_chunked_body_needs_a_length() {
    let (_d, mut ctx) = ctx();
    let data = pattern(PREREAD_LIMIT + 1000);
    let head = "POST /b HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_string();
    let mut s = session(head, chunked(&data), false).await;
    let e = body::read(&mut s, &mut ctx, 1 << 20).await.expect_err("refused");
    assert_eq!(e, BodyError::LengthRequired);
    assert_eq!(e.refusal().status, Some(411));
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_unread() {
    let (_d, mut ctx) = ctx();
    let head = "POST /b HTTP/1.1\r\nhost: t\r\ncontent-length: 5000\r\n\r\n".to_string();
    let mut s = session(head, pattern(5000), false).await;
    assert_eq!(body::read(&mut s, &mut ctx, 4999).await.expect_err("refused"), BodyError::TooLarge);
    assert!(ctx.body.is_none() && ctx.upstream.new_body.is_none());
}

#[tokio::test]
async fn a_body_cut_short_is_broken() {
    let (_d, mut ctx) = ctx();
    let head = "POST /b HTTP/1.1\r\nhost: t\r\ncontent-length: 5000\r\n\r\n".to_string();
    let mut s = session(head, pattern(1200), true).await;
    assert_eq!(body::read(&mut s, &mut ctx, 1 << 20).await.expect_err("refused"), BodyError::Broken);
    assert!(ctx.upstream.new_body.is_none(), "nothing half-read is forwarded");
}

#[tokio::test]
async fn no_body_is_an_empty_body() {
    let (_d, mut ctx) = ctx();
    let mut s = session("GET /b HTTP/1.1\r\nhost: t\r\n\r\n".to_string(), vec![], false).await;
    assert_eq!(body::framing(&mut s), Framing::Empty);
    assert!(!body::has_body(&mut s, &ctx));
    assert!(body::read(&mut s, &mut ctx, 10).await.expect("read").is_empty());
}
