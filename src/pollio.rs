//! `pollio`: a connection lent to poll-style code, the `h2` crate, which reads
//! and writes through tokio's `AsyncRead`/`AsyncWrite` instead of ringlb's owned
//! buffers.
//!
//! Owns [`PollStream`]: the socket converted by monoio's `poll-io` (under io_uring
//! the socket leaves the ring for an epoll set that the ring watches, and reads
//! and writes become plain system calls on readiness; under epoll nothing
//! changes), with the bytes read before the conversion served first, an
//! optional frame meter fed every byte read (`protocol::h2::meter`), and a
//! lingering close. Plain TCP only so far (TLS under HTTP/2 is
//! `docs/plans/http2.md` step 5). Parses nothing itself, and is never used for
//! HTTP/1.1, whose sockets stay on the ring.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use monoio::io::poll_io::{AsyncRead, AsyncWrite, ReadBuf};
use monoio::io::IntoPollIo;
use monoio::net::tcp::stream_poll::TcpStreamPoll;

use crate::protocol::h2::meter::{Flood, FrameMeter};
use crate::stream::{Stream, LINGER, LINGER_BYTES};

/// A connection read and written by polling (see the module's comment).
#[derive(Debug)]
pub struct PollStream {
    tcp: TcpStreamPoll,
    /// Bytes read from the socket before it was converted, served first.
    early: Vec<u8>,
    /// How many of `early` have been served.
    served: usize,
    /// Once shut down for writing: until when, and how much, the peer's last
    /// bytes are read and discarded (see `poll_shutdown`).
    linger: Option<Linger>,
    /// Counts the frames read, when metered.
    meter: Option<Metered>,
}

/// A frame meter over every byte read, and where a flood is reported.
#[derive(Debug)]
struct Metered {
    meter: FrameMeter,
    since: Instant,
    tripped: Rc<Cell<Option<Flood>>>,
}

/// A closing connection's drain.
#[derive(Debug)]
struct Linger {
    until: Pin<Box<monoio::time::Sleep>>,
    discarded: usize,
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
                linger: None,
                meter: None,
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

    /// Feeds every byte read from here on (and the early ones) to `meter`. Once
    /// it trips, the flood is put in `tripped`, the reader is woken, and no byte
    /// is delivered any more: the owner closes the connection.
    pub fn metered(mut self, meter: FrameMeter, tripped: Rc<Cell<Option<Flood>>>) -> Self {
        self.meter = Some(Metered {
            meter,
            since: Instant::now(),
            tripped,
        });
        self
    }
}

impl AsyncRead for PollStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(metered) = &this.meter {
            if metered.tripped.get().is_some() {
                return Poll::Pending;
            }
        }
        let before = buf.filled().len();
        let read = this.poll_read_unmetered(cx, buf);
        let Some(metered) = &mut this.meter else {
            return read;
        };
        if !matches!(read, Poll::Ready(Ok(()))) {
            return read;
        }
        let now = metered.since.elapsed().as_secs();
        match metered.meter.feed(&buf.filled()[before..], now) {
            Ok(()) => read,
            Err(flood) => {
                // Nothing more reaches h2: the owner, woken, closes the
                // connection (ReadBuf's bytes are not taken on `Pending`).
                metered.tripped.set(Some(flood));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

impl PollStream {
    fn poll_read_unmetered(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self;
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

    /// Sends FIN, then reads and discards what the peer still sends until it
    /// closes too, for at most `LINGER` and `LINGER_BYTES`: closing a socket with
    /// unread bytes resets it, and a reset can destroy our last frames (a
    /// GOAWAY, a response's end) in the peer's receive buffer before it reads
    /// them. HTTP/1.1 connections linger the same way (`Stream::linger_close`).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.tcp).poll_shutdown(cx))?;
            this.linger = Some(Linger {
                until: Box::pin(monoio::time::sleep(LINGER)),
                discarded: 0,
            });
        }
        let Some(linger) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 4096];
        while linger.discarded < LINGER_BYTES {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.tcp).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => linger.discarded += buf.filled().len(),
                // Reset or failed: nothing left to protect.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match linger.until.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}
