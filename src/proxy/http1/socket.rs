//! `proxy::http1::socket`: reads and writes with owned buffers and timeouts.
//!
//! Owns the small helpers every part of the connection uses: reading into a
//! buffer's spare room, writing a range in full within a timeout, and lingering
//! on close so the client sees our last response.

use std::io;
use std::mem;
use std::ops::Range;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::proxy::error::ProxyError;

use super::Downstream;

/// How long a closing connection is drained so the client sees our last response.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and discarded while lingering.
const LINGER_BYTES: usize = 256 * 1024;

pub(super) async fn write_client(
    client: &mut Downstream,
    bytes: &'static [u8],
) -> Result<(), ProxyError> {
    write_static(&mut client.stream, bytes, client.write_timeout)
        .await
        .map_err(|e| ProxyError::ClientIo(e.kind()))?;
    client.written_total += bytes.len() as u64;
    Ok(())
}

/// Writes all of `out` to the client and clears it, keeping its capacity.
pub(super) async fn write_all_client(
    client: &mut Downstream,
    out: &mut Vec<u8>,
) -> Result<(), ProxyError> {
    if out.is_empty() {
        return Ok(());
    }
    let len = out.len();
    let result = write_range(&mut client.stream, out, 0..len, client.write_timeout).await;
    out.clear();
    result.map_err(|e| ProxyError::ClientIo(e.kind()))?;
    client.written_total += len as u64;
    Ok(())
}

/// Writes static bytes in full within `timeout`.
pub(super) async fn write_static(
    stream: &mut TcpStream,
    bytes: &'static [u8],
    timeout: Duration,
) -> io::Result<()> {
    match monoio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok((result, _)) => result.map(|_| ()),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Reads into the spare capacity of `buf`, growing it to at least `min_spare` free
/// bytes (and never to zero). Returns the bytes read; 0 is EOF.
pub(super) async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<usize> {
    let (result, slice) = stream.read(spare_room(buf, min_spare)).await;
    *buf = slice.into_inner();
    result
}

/// Takes `buf` for a read into its spare capacity (at least `min_spare` bytes, and
/// never under 1 KiB). The read hands the buffer back with `SliceMut::into_inner`.
pub(super) fn spare_room(buf: &mut Vec<u8>, min_spare: usize) -> SliceMut<Vec<u8>> {
    let want = min_spare.max(1024);
    if buf.capacity() - buf.len() < want {
        buf.reserve(want);
    }
    let owned = mem::take(buf);
    let len = owned.len();
    owned.slice_mut(len..)
}

/// Writes `buf[range]` in full within `timeout`. On a timeout the write is
/// cancelled and `buf` comes back empty (the connection is closed anyway).
pub(super) async fn write_range(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    range: Range<usize>,
    timeout: Duration,
) -> io::Result<()> {
    let owned = mem::take(buf);
    match monoio::time::timeout(timeout, stream.write_all(owned.slice(range))).await {
        Ok((result, slice)) => {
            *buf = slice.into_inner();
            result.map(|_| ())
        }
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Half-closes, then reads and discards what the client still sends for a moment,
/// so a close right after our response does not reset it away.
pub(super) async fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    let mut buf = Vec::with_capacity(16 * 1024);
    while discarded < LINGER_BYTES {
        let wait = deadline.saturating_duration_since(Instant::now());
        buf.clear();
        match monoio::time::timeout(wait, stream.read(buf)).await {
            Ok((Ok(n), returned)) if n > 0 => {
                discarded += n;
                buf = returned;
            }
            _ => return,
        }
    }
}
