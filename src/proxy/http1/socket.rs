//! `proxy::http1::socket`: the client end of an exchange, and writes to it,
//! counted, within its timeout.
//!
//! Owns [`ClientIo`], what the forwarding core needs of a client: read request
//! bytes and write response bytes, both in HTTP/1.1 framing, and cut a response
//! short. An HTTP/1.1 connection's [`Stream`] is one; an HTTP/2 stream
//! (`proxy::http2`) is another, translating those bytes to and from frames. The
//! reads and writes of a socket themselves are [`crate::stream`]'s.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::observe::access_log::LogTls;
use crate::proxy::error::ProxyError;
use crate::stream::Stream;

use super::Downstream;

/// The client side of the forwarding core (see the module's comment). Static
/// dispatch only: the core is generic over it, so HTTP/1.1 pays nothing for it.
#[allow(async_fn_in_trait)]
pub trait ClientIo {
    /// Reads request bytes into the spare capacity of `buf` (at least
    /// `min_spare` of it); 0 is the end of the client's side.
    async fn read_more(&mut self, buf: &mut Vec<u8>, min_spare: usize) -> io::Result<usize>;

    /// Writes `buf[range]`, response bytes in HTTP/1.1 framing, in full within
    /// `timeout`.
    async fn write_range(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
        timeout: Duration,
    ) -> io::Result<()>;

    /// Writes static bytes (an interim `100 Continue`) within `timeout`.
    async fn write_static(&mut self, bytes: &'static [u8], timeout: Duration) -> io::Result<()>;

    /// Makes the client see the response as cut short, not complete: a reset.
    fn cut(&mut self);

    /// The local address the client reached, for a PROXY header to a backend.
    fn local_addr(&self) -> Option<SocketAddr>;

    /// The TLS fields of the access log, `None` without TLS.
    fn log_tls(&self) -> Option<LogTls<'_>>;

    /// The request body as HTTP/2 DATA, handed over whole, for an HTTP/2
    /// backend that takes it while the response flows back (gRPC's
    /// bidirectional streams). `None` unless the client is an HTTP/2 stream
    /// whose body has more to come and none of it was read; reads return
    /// nothing after.
    fn take_h2_body(&mut self) -> Option<h2::RecvStream> {
        None
    }

    /// Whether the client is an HTTP/2 stream (for the access log).
    fn http2(&self) -> bool {
        false
    }
}

impl ClientIo for Stream {
    #[inline]
    async fn read_more(&mut self, buf: &mut Vec<u8>, min_spare: usize) -> io::Result<usize> {
        Stream::read_more(self, buf, min_spare).await
    }

    #[inline]
    async fn write_range(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
        timeout: Duration,
    ) -> io::Result<()> {
        Stream::write_range(self, buf, range, timeout).await
    }

    #[inline]
    async fn write_static(&mut self, bytes: &'static [u8], timeout: Duration) -> io::Result<()> {
        Stream::write_static(self, bytes, timeout).await
    }

    fn cut(&mut self) {
        let _ = crate::sys::set_linger_zero(self.tcp().as_raw_fd());
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp().local_addr().ok()
    }

    fn log_tls(&self) -> Option<LogTls<'_>> {
        Stream::log_tls(self)
    }
}

pub(super) async fn write_client(
    client: &mut Downstream<impl ClientIo>,
    bytes: &'static [u8],
) -> Result<(), ProxyError> {
    client
        .stream
        .write_static(bytes, client.write_timeout)
        .await
        .map_err(|e| ProxyError::ClientIo(e.kind()))?;
    client.written_total += bytes.len() as u64;
    Ok(())
}

/// Writes all of `out` to the client and clears it, keeping its capacity.
pub(super) async fn write_all_client(
    client: &mut Downstream<impl ClientIo>,
    out: &mut Vec<u8>,
) -> Result<(), ProxyError> {
    if out.is_empty() {
        return Ok(());
    }
    let len = out.len();
    let result = client
        .stream
        .write_range(out, 0..len, client.write_timeout)
        .await;
    out.clear();
    result.map_err(|e| ProxyError::ClientIo(e.kind()))?;
    client.written_total += len as u64;
    Ok(())
}
