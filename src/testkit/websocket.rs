//! `testkit::websocket`: the origin's WebSocket echo (RFC 6455), for the demo,
//! the tests and the benchmarks.
//!
//! Owns the server side of the opening handshake (`Sec-WebSocket-Accept`) and an
//! echo loop: data frames come back as they were sent (fragments included, without
//! the client's mask), a ping gets its pong, a close is answered with a close, and
//! the text `close-me` makes it close first.
//! Test tooling: never on the proxy's request path, which relays WebSocket bytes
//! without reading them.

use std::io;

use base64::Engine as _;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// A text message that makes the echo close the connection itself.
pub const CLOSE_ME: &[u8] = b"close-me";
/// Largest frame payload the echo accepts.
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// The 101 that accepts an upgrade with `key`, naming the origin.
pub fn accept_response(key: &[u8], name: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nX-Origin: {name}\r\n\r\n",
        accept_key(key)
    )
    .into_bytes()
}

/// One frame read from the client, unmasked.
struct Frame {
    /// The first byte: FIN, reserved bits and opcode.
    first: u8,
    payload: Vec<u8>,
}

/// Parses a client frame at the start of `buf`: `Ok(None)` until it is whole;
/// `Ok(Some((frame, length)))`; an error for an unmasked or oversized frame.
fn parse_frame(buf: &[u8]) -> io::Result<Option<(Frame, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (first, second) = (buf[0], buf[1]);
    if second & 0x80 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "client frames must be masked",
        ));
    }
    let (len, mut at) = match second & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(bytes), 10)
        }
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((Frame { first, payload }, at + len)))
}

/// Appends an unmasked server frame.
fn write_frame(out: &mut Vec<u8>, first: u8, payload: &[u8]) {
    out.push(first);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Echoes frames until the client closes; `buf` holds bytes read after the
/// upgrade request.
pub async fn echo(stream: &mut TcpStream, mut buf: Vec<u8>) -> io::Result<()> {
    let mut out = Vec::new();
    loop {
        let mut used = 0;
        let mut closing = false;
        while let Some((frame, len)) = parse_frame(&buf[used..])? {
            used += len;
            let fin = frame.first & 0x80;
            match frame.first & 0x0f {
                // Ping: pong with its payload.
                0x9 => write_frame(&mut out, 0x80 | 0xA, &frame.payload),
                // Pong: nothing to do.
                0xA => {}
                // Close: answer with the same code, then stop.
                0x8 => {
                    write_frame(&mut out, 0x88, &frame.payload);
                    closing = true;
                    break;
                }
                // Asked to close: a close frame (1000), then stop.
                0x1 if frame.payload == CLOSE_ME => {
                    write_frame(&mut out, 0x88, &1000u16.to_be_bytes());
                    closing = true;
                    break;
                }
                opcode => write_frame(&mut out, fin | opcode, &frame.payload),
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            let (result, written) = stream.write_all(std::mem::take(&mut out)).await;
            result?;
            out = written;
            out.clear();
        }
        if closing {
            return Ok(());
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(64 * 1024);
        }
        let len = buf.len();
        let (result, slice) = stream
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..))
            .await;
        buf = slice.into_inner();
        if result? == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn masked_frames_parse_whole_or_not_at_all() {
        // RFC 6455 §5.7: a masked "Hello".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        for cut in 0..frame.len() {
            assert!(parse_frame(&frame[..cut]).unwrap().is_none());
        }
        let (parsed, len) = parse_frame(&frame).unwrap().unwrap();
        assert_eq!(
            (parsed.first, &parsed.payload[..], len),
            (0x81, &b"Hello"[..], 11)
        );
        // Unmasked: refused.
        assert!(parse_frame(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']).is_err());
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        for (len, header) in [(125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            write_frame(&mut out, 0x82, &vec![0; len]);
            assert_eq!(out.len(), header + len, "{len}");
        }
    }
}
