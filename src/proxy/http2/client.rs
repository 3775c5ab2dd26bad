//! `proxy::http2::client`: one HTTP/2 stream as the client end of the
//! forwarding core.
//!
//! Owns [`StreamEnd`], the [`ClientIo`] of an HTTP/2 stream: it hands the core the
//! request body as HTTP/1.1 bytes (DATA frames as they are, or as chunks ending
//! with the trailers when the client gave no length), and turns the HTTP/1.1
//! response bytes the core writes (a head ringlb itself rewrote, then the body
//! framed as that head says) into HEADERS, DATA and trailers, within the stream's
//! flow-control window. Interim responses go out as HTTP/2 informational ones. It
//! never parses a backend's bytes: the core did, and what reaches it is ringlb's
//! own serialization. The response side ([`Reply`]) is shared with the stream's
//! task, which watches it for a reset while the core waits on a backend; it is
//! only ever borrowed within one poll, never across an await.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use crate::observe::access_log::LogTls;
use crate::protocol::h1::{self, ChunkEvent, ChunkedDecoder};
use crate::protocol::h2::convert::{self, RequestBody};
use crate::proxy::http1::ClientIo;
use crate::stream::TlsLogged;

/// Where the response stands.
pub enum Reply {
    /// Nothing final sent yet: the next bytes are a head.
    Head(SendResponse<Bytes>),
    /// The head went out; the body follows with this framing.
    Body(SendStream<Bytes>, Framing),
    /// The stream ended (or was reset).
    Ended,
}

/// How the response body the core writes is framed.
pub enum Framing {
    /// This many bytes more.
    Length(u64),
    /// Chunked: decoded here, its trailers sent as HTTP/2 trailers.
    Chunked(Box<ChunkedDecoder>),
    /// Until the core is done (the backend closed its connection).
    UntilFinish,
}

impl Reply {
    /// Ready once the client reset the stream or the connection is gone (h2
    /// wakes every stream then). Pending while the stream lives, or ended.
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Option<u32>> {
        let polled = match self {
            Reply::Head(respond) => respond.poll_reset(cx),
            Reply::Body(send, _) => send.poll_reset(cx),
            Reply::Ended => return Poll::Pending,
        };
        // The client's error code; `None` when the connection ended instead.
        polled.map(|reset| reset.ok().map(u32::from))
    }
}

/// One HTTP/2 stream, as the forwarding core's client (see the module's comment).
pub struct StreamEnd {
    /// The request body; `None` once handed over whole ([`ClientIo::take_h2_body`]).
    recv: Option<RecvStream>,
    /// ringlb reset the stream (a response cut short).
    reset_sent: bool,
    /// Some of the request body was read (as HTTP/1.1 bytes).
    body_read: bool,
    /// How the request body is handed on.
    body: RequestBody,
    /// The request body ended (and, chunked, its last chunk was handed on).
    body_ended: bool,
    reply: Rc<RefCell<Reply>>,
    /// The request was a HEAD: no body follows any response head.
    head_request: bool,
    /// Bytes of a response head not complete yet.
    partial: Vec<u8>,
    /// Most chunk-size and trailer bytes a chunked response may carry.
    max_head: usize,
    /// The address the client connected to.
    local: Option<SocketAddr>,
    /// The backend's response head could not be carried over HTTP/2.
    unfit_head: bool,
    /// The connection's TLS figures, for the access log.
    tls: Option<Rc<TlsLogged>>,
}

/// What the next bytes of the response become.
enum Piece {
    /// DATA, ending the stream or not.
    Data(Bytes, bool),
    /// Nothing to send for these bytes.
    Nothing,
}

impl StreamEnd {
    pub fn new(
        recv: RecvStream,
        respond: SendResponse<Bytes>,
        body: RequestBody,
        head_request: bool,
        max_head: usize,
        local: Option<SocketAddr>,
        tls: Option<Rc<TlsLogged>>,
    ) -> Self {
        StreamEnd {
            recv: Some(recv),
            reset_sent: false,
            body_read: false,
            body,
            body_ended: body == RequestBody::None,
            reply: Rc::new(RefCell::new(Reply::Head(respond))),
            head_request,
            partial: Vec::new(),
            max_head,
            local,
            unfit_head: false,
            tls,
        }
    }

    /// The response side, for the stream's task to watch for a reset.
    pub fn reply(&self) -> Rc<RefCell<Reply>> {
        Rc::clone(&self.reply)
    }

    /// Whether ringlb reset the stream (`RST_STREAM INTERNAL_ERROR`).
    pub fn reset_sent(&self) -> bool {
        self.reset_sent
    }

    /// Whether any part of a final response went out.
    pub fn response_started(&self) -> bool {
        !matches!(*self.reply.borrow(), Reply::Head(_))
    }

    /// Whether the backend's head could not be carried over HTTP/2 (its fault:
    /// a 502, though the core saw the client's write fail).
    pub fn unfit_head(&self) -> bool {
        self.unfit_head
    }

    /// Ends a response whose body ran until the core was done (a backend that
    /// closed its connection to end it). Anything else already ended itself.
    pub fn finish(&mut self) -> io::Result<()> {
        let mut reply = self.reply.borrow_mut();
        if let Reply::Body(send, Framing::UntilFinish) = &mut *reply {
            send.send_data(Bytes::new(), true).map_err(h2_error)?;
            *reply = Reply::Ended;
        }
        Ok(())
    }

    /// Sends what the core wrote, from a response head on, within `timeout` in
    /// all (as an HTTP/1.1 write of the same bytes must finish within it).
    async fn send(&mut self, mut bytes: &[u8], timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while !bytes.is_empty() {
            let (used, piece) = self.next_piece(bytes)?;
            bytes = &bytes[used..];
            if let Piece::Data(data, end) = piece {
                self.send_data(data, end, deadline).await?;
            }
        }
        Ok(())
    }

    /// Takes what it can from the start of `bytes`: how many it used and what
    /// they become. Synchronous: the reply is borrowed only here.
    fn next_piece(&mut self, bytes: &[u8]) -> io::Result<(usize, Piece)> {
        let reply = Rc::clone(&self.reply);
        let mut reply = reply.borrow_mut();
        let piece = match &mut *reply {
            Reply::Head(_) => {
                drop(reply);
                return Ok((self.send_head(bytes)?, Piece::Nothing));
            }
            Reply::Body(_, Framing::Length(left)) => {
                let n = (bytes.len() as u64).min(*left) as usize;
                *left -= n as u64;
                (
                    n,
                    Piece::Data(Bytes::copy_from_slice(&bytes[..n]), *left == 0),
                )
            }
            Reply::Body(_, Framing::UntilFinish) => (
                bytes.len(),
                Piece::Data(Bytes::copy_from_slice(bytes), false),
            ),
            Reply::Body(send, Framing::Chunked(decoder)) => {
                let (used, event) = decoder
                    .decode(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                match event {
                    Some(ChunkEvent::Data(data)) => {
                        (used, Piece::Data(Bytes::copy_from_slice(data), false))
                    }
                    Some(ChunkEvent::End([])) => (used, Piece::Data(Bytes::new(), true)),
                    Some(ChunkEvent::End(trailers)) => {
                        send.send_trailers(
                            convert::trailer_section(trailers)
                                .ok_or_else(|| invalid("a trailer section HTTP/2 cannot carry"))?,
                        )
                        .map_err(h2_error)?;
                        *reply = Reply::Ended;
                        (used, Piece::Nothing)
                    }
                    // The core writes whole chunks: a piece of one is a bug.
                    None if used == 0 => return Err(invalid("a chunk cut short")),
                    None => (used, Piece::Nothing),
                }
            }
            // Nothing more belongs to this response.
            Reply::Ended => (bytes.len(), Piece::Nothing),
        };
        Ok(piece)
    }

    /// Sends `data` within the stream's window, waiting for the client's window
    /// until `deadline` at the latest.
    async fn send_data(&mut self, mut data: Bytes, end: bool, deadline: Instant) -> io::Result<()> {
        loop {
            {
                let mut reply = self.reply.borrow_mut();
                let Reply::Body(send, _) = &mut *reply else {
                    return Err(io::ErrorKind::ConnectionReset.into());
                };
                if data.is_empty() {
                    if end {
                        send.send_data(data, true).map_err(h2_error)?;
                        *reply = Reply::Ended;
                    }
                    return Ok(());
                }
                send.reserve_capacity(data.len());
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            let reply = &self.reply;
            let granted = monoio::time::timeout(
                wait,
                std::future::poll_fn(|cx| match &mut *reply.borrow_mut() {
                    Reply::Body(send, _) => send.poll_capacity(cx),
                    _ => Poll::Ready(None),
                }),
            )
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?;
            let n = match granted {
                Some(Ok(n)) => n.min(data.len()),
                Some(Err(e)) => return Err(h2_error(e)),
                None => return Err(io::ErrorKind::ConnectionReset.into()),
            };
            let piece = data.split_to(n);
            let last = end && data.is_empty();
            let mut reply = self.reply.borrow_mut();
            let Reply::Body(send, _) = &mut *reply else {
                return Err(io::ErrorKind::ConnectionReset.into());
            };
            send.send_data(piece, last).map_err(h2_error)?;
            if last {
                *reply = Reply::Ended;
                return Ok(());
            }
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    /// Takes a response head from the start of `bytes` (completing one begun
    /// earlier): sends an interim one as informational, a final one as HEADERS.
    /// Returns how many of `bytes` it used.
    fn send_head(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let earlier = self.partial.len();
        self.partial.extend_from_slice(bytes);
        let mut fields = [httparse::EMPTY_HEADER; h1::MAX_HEADERS_CAP];
        let mut response = httparse::Response::new(&mut fields);
        let len = match response.parse(&self.partial).map_err(invalid)? {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return Ok(bytes.len()),
        };
        let status = response.code.unwrap_or(500);
        let pairs = response
            .headers
            .iter()
            .map(|h| (h.name.as_bytes(), h.value));
        let mut reply = self.reply.borrow_mut();
        let Reply::Head(respond) = &mut *reply else {
            return Ok(bytes.len());
        };
        if status < 200 {
            // 101 cannot happen (no upgrade crosses HTTP/2); 100, 102, 103 can.
            let mut interim = http::Response::new(());
            *interim.status_mut() = http::StatusCode::from_u16(status).map_err(invalid)?;
            for (name, value) in pairs {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name),
                    http::HeaderValue::from_bytes(value),
                ) {
                    interim.headers_mut().append(name, value);
                }
            }
            respond.send_informational(interim).map_err(h2_error)?;
        } else {
            let framing = if self.head_request || status == 204 || status == 304 {
                None
            } else if response.headers.iter().any(|h| {
                // ringlb wrote this head: `chunked` is the only coding it sends.
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    && h.value.eq_ignore_ascii_case(b"chunked")
            }) {
                Some(Framing::Chunked(Box::new(ChunkedDecoder::new(
                    self.max_head,
                ))))
            } else {
                match response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<u64>().ok())
                {
                    Some(0) => None,
                    Some(n) => Some(Framing::Length(n)),
                    None => Some(Framing::UntilFinish),
                }
            };
            let head = match convert::response_head(status, pairs) {
                Ok(head) => head,
                Err(e) => {
                    self.unfit_head = true;
                    return Err(invalid(e));
                }
            };
            let send = respond
                .send_response(head, framing.is_none())
                .map_err(h2_error)?;
            *reply = match framing {
                Some(framing) => Reply::Body(send, framing),
                None => Reply::Ended,
            };
        }
        drop(reply);
        self.partial.clear();
        Ok(len - earlier)
    }
}

impl ClientIo for StreamEnd {
    async fn read_more(&mut self, buf: &mut Vec<u8>, _min_spare: usize) -> io::Result<usize> {
        while !self.body_ended {
            let Some(recv) = self.recv.as_mut() else {
                break;
            };
            match recv.data().await {
                Some(Ok(data)) if data.is_empty() => continue,
                Some(Ok(data)) => {
                    // Taken into ringlb's buffer, which the core bounds: the
                    // client may send more.
                    let _ = recv.flow_control().release_capacity(data.len());
                    self.body_read = true;
                    let before = buf.len();
                    if self.body == RequestBody::Chunked {
                        h1::write_chunk_header(buf, data.len());
                        buf.extend_from_slice(&data);
                        buf.extend_from_slice(b"\r\n");
                    } else {
                        buf.extend_from_slice(&data);
                    }
                    return Ok(buf.len() - before);
                }
                Some(Err(e)) => return Err(h2_error(e)),
                None => {
                    self.body_ended = true;
                    if self.body == RequestBody::Chunked {
                        let trailers = recv.trailers().await.map_err(h2_error)?;
                        let before = buf.len();
                        convert::trailers_to_h1(trailers.as_ref(), buf).map_err(invalid)?;
                        return Ok(buf.len() - before);
                    }
                }
            }
        }
        Ok(0)
    }

    async fn write_range(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
        timeout: Duration,
    ) -> io::Result<()> {
        self.send(&buf[range], timeout).await
    }

    async fn write_static(&mut self, bytes: &'static [u8], timeout: Duration) -> io::Result<()> {
        self.send(bytes, timeout).await
    }

    fn cut(&mut self) {
        let mut reply = self.reply.borrow_mut();
        match &mut *reply {
            Reply::Head(respond) => respond.send_reset(Reason::INTERNAL_ERROR),
            Reply::Body(send, _) => send.send_reset(Reason::INTERNAL_ERROR),
            Reply::Ended => return,
        }
        self.reset_sent = true;
        *reply = Reply::Ended;
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    fn http2(&self) -> bool {
        true
    }

    fn take_h2_body(&mut self) -> Option<RecvStream> {
        if self.body_ended || self.body_read {
            return None;
        }
        self.body_ended = true;
        self.recv.take()
    }

    fn log_tls(&self) -> Option<LogTls<'_>> {
        self.tls.as_deref().map(TlsLogged::as_log)
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// h2's error as an I/O error: a reset stream or a closed connection is the
/// client's going away.
fn h2_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::ErrorKind::BrokenPipe.into());
    }
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}
