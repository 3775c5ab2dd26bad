//! `pollio`: a connection lent to poll-style code, the `h2` crate, which reads
//! and writes through tokio's `AsyncRead`/`AsyncWrite` instead of ringlb's owned
//! buffers.
//!
//! Owns [`PollStream`]: the socket converted by monoio's `poll-io` (under io_uring
//! the socket leaves the ring for an epoll set that the ring watches, and reads
//! and writes become plain system calls on readiness; under epoll nothing
//! changes), with the bytes read before the conversion served first. Plain TCP
//! only so far (TLS under HTTP/2 is `docs/plans/http2.md` step 5). Knows nothing
//! of HTTP/2 itself, and is never used for HTTP/1.1, whose sockets stay on the
//! ring.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};
use monoio::io::IntoPollIo;
use monoio::net::tcp::stream_poll::TcpStreamPoll;

use crate::stream::Stream;

/// A connection read and written by polling (see the module's comment).
#[derive(Debug)]
pub struct PollStream {
    tcp: TcpStreamPoll,
    /// Bytes read from the socket before it was converted, served first.
    early: Vec<u8>,
    /// How many of `early` have been served.
    served: usize,
}

impl Stream {
    /// Lends the connection to poll-style code; `early` holds the bytes already
    /// read from it that the new reader must see first. A TLS connection cannot
    /// be lent yet (`Unsupported`).
    pub fn into_poll(self, early: Vec<u8>) -> io::Result<PollStream> {
        match self {
            Stream::Plain(tcp) => Ok(PollStream {
                tcp: tcp.into_poll_io()?,
                early,
                served: 0,
            }),
            Stream::Tls(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS connections cannot be lent to poll-style code yet",
            )),
        }
    }
}

impl PollStream {
    /// The socket, for its addresses and options.
    pub fn tcp(&self) -> &TcpStreamPoll {
        &self.tcp
    }
}

impl AsyncRead for PollStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.served < this.early.len() {
            let rest = &this.early[this.served..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.served += n;
            if this.served == this.early.len() {
                // Served in full: give the memory back.
                this.early = Vec::new();
                this.served = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PollStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
