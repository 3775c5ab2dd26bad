//! `proxy::http1::body`: request bodies on their way upstream.
//!
//! Owns streaming a body that ringlb does not hold in full: as it is for a length,
//! re-framed chunk by chunk (and checked) for chunked, through fixed-size buffers.

use std::io;
use std::time::Duration;

use crate::protocol::h1::{self, BodyKind, ChunkEvent, ChunkedDecoder};
use crate::proxy::error::ProxyError;

use super::forward::Outbound;
use super::socket::ClientIo;
use super::{Downstream, Failure, BODY_BUFFER};
use crate::stream::Stream;

/// Streams a request body that is not held in full from the client to upstream.
pub(super) async fn send_body(
    outbound: &Outbound<'_>,
    client: &mut Downstream<impl ClientIo>,
    upstream: &mut Stream,
    body: BodyKind,
) -> Result<(), Failure> {
    let settings = outbound.settings;
    let response_timeout = outbound.cluster.settings.backend_response_timeout;
    match body {
        BodyKind::None | BodyKind::CloseDelimited => Ok(()),
        BodyKind::Length(mut remaining) => {
            while remaining > 0 {
                let n = length_piece(client, remaining, settings.idle_timeout).await?;
                let range = client.pos..client.pos + n;
                upstream
                    .write_range(&mut client.buf, range, response_timeout)
                    .await
                    .map_err(|e| ProxyError::UpstreamIo(e.kind()))?;
                client.pos += n;
                remaining -= n as u64;
            }
            Ok(())
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new(settings.limits.max_header_bytes);
            let mut out = Vec::with_capacity(BODY_BUFFER + 64);
            loop {
                // Re-frame everything buffered, then send it.
                while client.unconsumed() > 0 && !decoder.is_done() {
                    let (used, event) = decoder
                        .decode(&client.buf[client.pos..])
                        .map_err(ProxyError::BadRequest)?;
                    encode_chunk_event(event, &mut out);
                    client.pos += used;
                    if used == 0 {
                        break;
                    }
                }
                if let Some(max) = settings.limits.max_body_bytes {
                    if decoder.decoded_len() > max {
                        return Err(ProxyError::BadRequest(h1::H1Error::BodyTooLarge).into());
                    }
                }
                if !out.is_empty() {
                    let len = out.len();
                    let sent = upstream
                        .write_range(&mut out, 0..len, response_timeout)
                        .await;
                    out.clear();
                    sent.map_err(|e| ProxyError::UpstreamIo(e.kind()))?;
                }
                if decoder.is_done() {
                    return Ok(());
                }
                client.compact();
                read_client_body(client, settings.idle_timeout).await?;
            }
        }
    }
}

/// How many bytes of a length-delimited body with `remaining` bytes to come are
/// in the client buffer at `client.pos`, reading more first when none are.
pub(super) async fn length_piece(
    client: &mut Downstream<impl ClientIo>,
    remaining: u64,
    timeout: Duration,
) -> Result<usize, ProxyError> {
    if client.unconsumed() == 0 {
        client.compact();
        read_client_body(client, timeout).await?;
    }
    Ok((client.unconsumed() as u64).min(remaining) as usize)
}

/// Appends one decoded event re-framed as chunked.
pub(super) fn encode_chunk_event(event: Option<ChunkEvent<'_>>, out: &mut Vec<u8>) {
    match event {
        Some(ChunkEvent::Data(data)) => {
            h1::write_chunk_header(out, data.len());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        Some(ChunkEvent::End(trailers)) => {
            out.extend_from_slice(b"0\r\n");
            out.extend_from_slice(trailers);
            out.extend_from_slice(b"\r\n");
        }
        None => {}
    }
}

/// Reads more of a request body from the client.
pub(super) async fn read_client_body(
    client: &mut Downstream<impl ClientIo>,
    timeout: Duration,
) -> Result<(), ProxyError> {
    match monoio::time::timeout(
        timeout,
        client.stream.read_more(&mut client.buf, BODY_BUFFER),
    )
    .await
    {
        Ok(Ok(0)) => Err(ProxyError::ClientIo(io::ErrorKind::UnexpectedEof)),
        Ok(Ok(n)) => {
            client.read_total += n as u64;
            Ok(())
        }
        Ok(Err(e)) => Err(ProxyError::ClientIo(e.kind())),
        Err(_) => Err(ProxyError::BodyReadTimeout),
    }
}
