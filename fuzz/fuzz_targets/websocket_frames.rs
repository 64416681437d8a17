//! A client's WebSocket byte stream (untrusted frames, in arbitrary pieces) through the
//! gateway's sans-IO socket: never panics or loops; every message read is within the API's
//! `max_message_size`; after an error the socket only closes.
#![no_main]
use edgegate::websocket::frames::Socket;
use libfuzzer_sys::fuzz_target;
use tungstenite::Message;

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let mut sock = Socket::new(MAX);
    // the first byte chooses the piece size, as a network would split the stream
    let Some((&split, rest)) = data.split_first() else { return };
    let piece = usize::from(split % 64) + 1;
    let mut reads = 0usize;
    'feed: for chunk in rest.chunks(piece) {
        sock.feed(chunk);
        loop {
            reads += 1;
            assert!(reads < 1_000_000, "read loop does not end");
            match sock.ws.read() {
                Ok(Message::Text(t)) => assert!(t.len() <= MAX),
                Ok(Message::Binary(b)) => assert!(b.len() <= MAX),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    let _ = sock.ws.close(None);
                    let _ = sock.take_output();
                    break 'feed;
                }
            }
        }
        let _ = sock.take_output();
    }
});
