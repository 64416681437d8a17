//! `tungstenite` driven sans-IO: the bytes read from the client are fed in, the bytes it
//! writes (messages, pongs, close frames) are taken out and written by the caller. RFC 6455
//! framing, masking, fragmentation, UTF-8 checks, control frames, the close handshake and the
//! size limits are tungstenite's.

use bytes::{Buf, BytesMut};
use std::io::{ErrorKind, Read, Write};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

/// The in-memory stream tungstenite reads and writes.
#[derive(Default)]
pub struct Pipe {
    input: BytesMut,
    output: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.input.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.advance(n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A server-side WebSocket over a [`Pipe`].
pub struct Socket {
    pub ws: WebSocket<Pipe>,
}

impl Socket {
    pub fn new(max_message: usize) -> Socket {
        let mut config = WebSocketConfig::default();
        // small buffers: most connections are idle most of the time
        // (tungstenite reads from the in-memory pipe, so a small chunk costs only copies;
        // a frame's payload gets room for its whole length when its header arrives)
        config.read_buffer_size = 256;
        config.write_buffer_size = 0;
        config.max_message_size = Some(max_message);
        config.max_frame_size = Some(max_message);
        Socket { ws: WebSocket::from_raw_socket(Pipe::default(), Role::Server, Some(config)) }
    }

    /// Bytes from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.ws.get_mut().input.extend_from_slice(bytes);
    }

    /// Everything fed is consumed: the input's memory goes back, so an idle connection
    /// keeps no buffer.
    pub fn release(&mut self) {
        let input = &mut self.ws.get_mut().input;
        if input.is_empty() && input.capacity() > 0 {
            *input = BytesMut::new();
        }
    }

    /// What is to be written to the client.
    pub fn take_output(&mut self) -> Option<bytes::Bytes> {
        let _ = self.ws.flush();
        let out = &mut self.ws.get_mut().output;
        (!out.is_empty()).then(|| bytes::Bytes::from(std::mem::take(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::Message;

    /// A client frame: FIN, `opcode`, masked with `mask`.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn fragments_ping_and_limits() {
        let mut s = Socket::new(16);
        // a text message in two fragments, a ping between them
        s.feed(&frame(false, 1, b"hel"));
        s.feed(&frame(true, 9, b"p"));
        s.feed(&frame(true, 0, b"lo"));
        assert_eq!(s.ws.read().expect("pong handled"), Message::Ping("p".into()));
        assert_eq!(s.ws.read().expect("message"), Message::Text("hello".into()));
        let out = s.take_output().expect("the pong");
        assert_eq!(&out[..], &[0x8A, 1, b'p']);
        assert!(matches!(s.ws.read(), Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock));
        // too large: tungstenite's capacity error (the caller closes with 1009)
        s.feed(&frame(true, 2, &[0u8; 17]));
        assert!(matches!(s.ws.read(), Err(tungstenite::Error::Capacity(_))));
    }

    #[test]
    fn unmasked_client_frames_are_refused() {
        let mut s = Socket::new(1024);
        s.feed(&[0x81, 0x02, b'h', b'i']);
        assert!(matches!(s.ws.read(), Err(tungstenite::Error::Protocol(_))));
    }
}
