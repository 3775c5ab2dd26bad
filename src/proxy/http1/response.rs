//! `proxy::http1::response`: a backend's response on its way to the client.
//!
//! Owns reading the response head (forwarding interim 1xx responses to HTTP/1.1
//! clients), and streaming the body back framed as the client needs it. Decides
//! whether the upstream connection ended cleanly and may go back to the pool.

use std::io;
use std::mem;
use std::time::{Duration, Instant};

use crate::protocol::h1::{self, BodyKind, ChunkEvent, ChunkedDecoder, ClientSide};
use crate::proxy::error::ProxyError;

use super::body::encode_chunk_event;
use super::forward::Outbound;
use super::socket::{write_all_client, ClientIo};
use super::{Downstream, BODY_BUFFER, RESPONSE_BUFFER};
use crate::stream::Stream;

pub(super) enum ResponseError {
    /// Nothing came back on the connection: safe to retry if the request is held.
    BeforeAnyByte(ProxyError),
    /// An interim (1xx) response already reached the client.
    Interim(ProxyError),
    /// Anything else.
    Other(ProxyError),
}

/// Reads the final response head, waiting at most `response_timeout` from
/// `request_sent`; forwards interim (1xx) responses to HTTP/1.1 clients on the
/// way. On success `head` holds the rewritten head and `upbuf[..]` starts with
/// the head, followed by any body bytes already read.
#[allow(clippy::too_many_arguments)]
pub(super) async fn read_response(
    outbound: &Outbound<'_>,
    client: &mut Downstream<impl ClientIo>,
    upstream: &mut Stream,
    upbuf: &mut Vec<u8>,
    client_side: &ClientSide,
    head: &mut Vec<u8>,
    request_sent: Instant,
    response_timeout: Duration,
) -> Result<h1::Response, ResponseError> {
    let settings = outbound.settings;
    let deadline = request_sent + response_timeout;
    // The first read waits the whole timeout without reading the clock again.
    let mut first_read = true;
    let mut interim_sent = false;
    let wrap = |e: ProxyError, got_bytes: bool, interim: bool| {
        if interim {
            ResponseError::Interim(e)
        } else if got_bytes {
            ResponseError::Other(e)
        } else {
            ResponseError::BeforeAnyByte(e)
        }
    };
    loop {
        if !upbuf.is_empty() {
            // Decided now, not when the request went out: a drain (or the removal of
            // the listener) that began while the backend worked still closes this
            // connection after the response.
            let side = ClientSide {
                keep_alive: client_side.keep_alive && !client.stopping(outbound.shard),
                ..*client_side
            };
            match h1::parse_response(upbuf, &settings.limits, &side, head) {
                Ok(Some(response)) if response.interim => {
                    upbuf.drain(..response.head_len);
                    if !client_side.http10 {
                        interim_sent = true;
                        write_all_client(client, head)
                            .await
                            .map_err(ResponseError::Interim)?;
                    }
                    continue;
                }
                Ok(Some(response)) => return Ok(response),
                Ok(None) => {}
                Err(e) => {
                    return Err(wrap(ProxyError::BadResponse(e), true, interim_sent));
                }
            }
        }
        let wait = if first_read {
            response_timeout
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        first_read = false;
        let got_bytes = !upbuf.is_empty();
        match monoio::time::timeout(wait, upstream.read_more(upbuf, RESPONSE_BUFFER)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => {
                return Err(wrap(
                    ProxyError::UpstreamIo(io::ErrorKind::UnexpectedEof),
                    got_bytes,
                    interim_sent,
                ))
            }
            Ok(Err(e)) => {
                return Err(wrap(
                    ProxyError::UpstreamIo(e.kind()),
                    got_bytes,
                    interim_sent,
                ))
            }
            Err(_) => return Err(wrap(ProxyError::ResponseTimeout, got_bytes, interim_sent)),
        }
    }
}

/// Writes the response head and streams the body to the client. Returns whether
/// the upstream connection ended the response cleanly (and may be pooled).
pub(super) async fn send_response(
    outbound: &Outbound<'_>,
    client: &mut Downstream<impl ClientIo>,
    upstream: &mut Stream,
    upbuf: &mut Vec<u8>,
    head: &mut Vec<u8>,
    response: &h1::Response,
) -> Result<bool, ProxyError> {
    let settings = outbound.settings;
    let read_timeout = outbound.cluster.settings.backend_response_timeout;
    let mut out = mem::take(head);
    // The head goes out with the body read along with it, in one write. With a
    // length-framed body, the rewritten head is put in place in front of that
    // body when it fits where the backend's head was (it usually does), so
    // neither is copied: bytes to write start at `start`, body bytes at `body`.
    // Otherwise the body is moved to the front and copied after the head.
    let head_len = response.head_len;
    let (mut start, mut body) = match response.upstream_body {
        BodyKind::Length(_) if out.len() <= head_len && upbuf.len() > head_len => {
            let start = head_len - out.len();
            upbuf[start..head_len].copy_from_slice(&out);
            out.clear();
            (start, head_len)
        }
        _ => {
            upbuf.drain(..head_len);
            (0, 0)
        }
    };
    let clean = match response.upstream_body {
        BodyKind::None => {
            write_all_client(client, &mut out).await?;
            upbuf.is_empty()
        }
        BodyKind::Length(mut remaining) => {
            loop {
                let available = upbuf.len() - body;
                let n = (available as u64).min(remaining) as usize;
                let extra = available > n;
                let end = body + n;
                if out.is_empty() && end > start {
                    // Nothing else to send: write straight from the read buffer.
                    client
                        .stream
                        .write_range(upbuf, start..end, client.write_timeout)
                        .await
                        .map_err(|e| ProxyError::ClientIo(e.kind()))?;
                    client.written_total += (end - start) as u64;
                } else {
                    out.extend_from_slice(&upbuf[body..end]);
                    write_all_client(client, &mut out).await?;
                }
                remaining -= n as u64;
                upbuf.clear();
                (start, body) = (0, 0);
                if extra {
                    break false;
                }
                if remaining == 0 {
                    break true;
                }
                read_upstream(upstream, upbuf, read_timeout).await?;
            }
        }
        BodyKind::Chunked => {
            let reframe = response.client_body == BodyKind::Chunked;
            let mut decoder = ChunkedDecoder::new(settings.limits.max_header_bytes);
            loop {
                let mut pos = 0;
                while pos < upbuf.len() && !decoder.is_done() {
                    let (used, event) = decoder
                        .decode(&upbuf[pos..])
                        .map_err(ProxyError::BadResponse)?;
                    if reframe {
                        encode_chunk_event(event, &mut out);
                    } else if let Some(ChunkEvent::Data(data)) = event {
                        out.extend_from_slice(data);
                    }
                    pos += used;
                    if used == 0 {
                        break;
                    }
                }
                let extra = pos < upbuf.len();
                upbuf.clear();
                write_all_client(client, &mut out).await?;
                if decoder.is_done() {
                    break !extra;
                }
                read_upstream(upstream, upbuf, read_timeout).await?;
            }
        }
        BodyKind::CloseDelimited => {
            out.extend_from_slice(upbuf);
            upbuf.clear();
            write_all_client(client, &mut out).await?;
            loop {
                match read_upstream(upstream, upbuf, read_timeout).await {
                    Ok(()) => {}
                    // The end of the body is the end of the connection; over TLS
                    // it must be a `close_notify`.
                    Err(ProxyError::UpstreamIo(io::ErrorKind::UnexpectedEof))
                        if upstream.ended_cleanly() =>
                    {
                        break false
                    }
                    // Cut short (a reset, a timeout, a TLS EOF without
                    // `close_notify`): the client must not take the body for
                    // whole, so it gets a reset, not a FIN.
                    Err(e) => {
                        client.stream.cut();
                        return Err(e);
                    }
                }
                let len = upbuf.len();
                client
                    .stream
                    .write_range(upbuf, 0..len, client.write_timeout)
                    .await
                    .map_err(|e| ProxyError::ClientIo(e.kind()))?;
                client.written_total += len as u64;
                upbuf.clear();
            }
        }
    };
    out.clear();
    *head = out;
    Ok(clean)
}

/// Reads more of a response body; EOF is an error because the framing said more.
async fn read_upstream(
    upstream: &mut Stream,
    upbuf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), ProxyError> {
    match monoio::time::timeout(timeout, upstream.read_more(upbuf, BODY_BUFFER)).await {
        Ok(Ok(0)) => Err(ProxyError::UpstreamIo(io::ErrorKind::UnexpectedEof)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ProxyError::UpstreamIo(e.kind())),
        Err(_) => Err(ProxyError::ResponseTimeout),
    }
}
