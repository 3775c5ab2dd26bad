//! `pollio`: a connection lent to poll-style code, the `h2` crate, which reads
//! and writes through tokio's `AsyncRead`/`AsyncWrite` instead of ringlb's owned
//! buffers.
//!
//! Owns [`PollStream`]: the socket converted by monoio's `poll-io` (under io_uring
//! the socket leaves the ring for an epoll set that the ring watches, and reads
//! and writes become plain system calls on readiness; under epoll nothing
//! changes), with the bytes read before the conversion served first, an
//! optional frame meter fed every byte read (`protocol::h2::meter`), and a
//! lingering close. Over TLS it drives the connection's `TlsSession` itself:
//! ciphertext is read into a buffer on the stack and fed, the plaintext served
//! from a buffer freed once served, writes sealed into an output buffer that
//! `poll_flush` writes out (and frees when it grew large), `close_notify` before
//! the FIN. Parses nothing itself, and is never used for HTTP/1.1, whose
//! sockets stay on the ring.

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
use crate::protocol::tls::TlsSession;
use crate::stream::{Stream, LINGER, LINGER_BYTES};

/// Ciphertext read at once: one whole record (16 KiB of data, its header, and
/// the most a suite adds).
const TLS_READ: usize = 16 * 1024 + 5 + 256;
/// Sealed output waiting beyond this is written out before more is taken.
const TLS_OUT_HIGH: usize = 64 * 1024;
/// An output buffer larger than this is freed once written out: an idle
/// connection keeps at most one record's worth.
const TLS_OUT_KEEP: usize = TLS_READ;

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
    /// The TLS session, for a TLS connection.
    tls: Option<Box<TlsPoll>>,
}

/// A TLS connection's session and buffers, driven by polling.
#[derive(Debug)]
struct TlsPoll {
    session: TlsSession,
    /// Plaintext decrypted and not served yet: `plain[served..]`.
    plain: Vec<u8>,
    served: usize,
    /// Ciphertext sealed and not written yet: `out[written..]`.
    out: Vec<u8>,
    written: usize,
    /// `close_notify` was sealed.
    closed: bool,
}

impl TlsPoll {
    /// Writes the sealed output out; `Pending` until all of it is.
    fn poll_write_out(
        &mut self,
        tcp: &mut TcpStreamPoll,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match Pin::new(&mut *tcp).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.out.capacity() > TLS_OUT_KEEP {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        self.written = 0;
        Poll::Ready(Ok(()))
    }
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
    /// read from it (plaintext, over TLS) that the new reader must see first.
    pub fn into_poll(self, early: Vec<u8>) -> io::Result<PollStream> {
        let (tcp, tls) = match self {
            Stream::Plain(tcp) => (tcp, None),
            Stream::Tls(tls) => {
                let (tcp, session) = tls.into_parts();
                let tls = TlsPoll {
                    session,
                    plain: Vec::new(),
                    served: 0,
                    out: Vec::new(),
                    written: 0,
                    closed: false,
                };
                (tcp, Some(Box::new(tls)))
            }
        };
        Ok(PollStream {
            tcp: tcp.into_poll_io()?,
            early,
            served: 0,
            linger: None,
            meter: None,
            tls,
        })
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
        let Some(tls) = this.tls.as_mut() else {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        };
        loop {
            if tls.served < tls.plain.len() {
                let rest = &tls.plain[tls.served..];
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                tls.served += n;
                if tls.served == tls.plain.len() {
                    tls.plain = Vec::new();
                    tls.served = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if tls.session.peer_closed() {
                // `close_notify`: the end, whatever the socket still does.
                return Poll::Ready(Ok(()));
            }
            // What reading made rustls owe the peer (a key update's answer, an
            // alert) goes out when it can; `poll_flush` sees to the rest. A peer
            // that makes us owe it more than `TLS_OUT_HIGH` without reading it
            // (key update after key update) is not read until it does.
            if tls.out.len() - tls.written > TLS_OUT_HIGH {
                std::task::ready!(tls.poll_write_out(&mut this.tcp, cx))?;
            } else if let Poll::Ready(Err(e)) = tls.poll_write_out(&mut this.tcp, cx) {
                return Poll::Ready(Err(e));
            }
            let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); TLS_READ];
            let mut cipher = ReadBuf::uninit(&mut storage);
            match Pin::new(&mut this.tcp).poll_read(cx, &mut cipher) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if cipher.filled().is_empty() {
                // A TCP end without `close_notify`: what came may be cut short.
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            let fed = tls.session.feed(cipher.filled(), &mut tls.plain);
            tls.session.drain_output(&mut tls.out);
            if let Err(e) = fed {
                // The alert goes out if the socket takes it now.
                let _ = tls.poll_write_out(&mut this.tcp, cx);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }

    /// Seals `bufs` into the TLS output, after writing out what waits beyond
    /// `TLS_OUT_HIGH`. Returns how many plaintext bytes were taken.
    fn poll_seal(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(tls) = self.tls.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if tls.out.len() - tls.written > TLS_OUT_HIGH {
            std::task::ready!(tls.poll_write_out(&mut self.tcp, cx))?;
        }
        // One call for all the slices: h2 hands a DATA frame's header and its
        // payload as two, which sealed apart would make two records.
        let taken = tls.session.seal_vectored(bufs, &mut tls.out);
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS session took nothing (it failed)",
            )));
        }
        Poll::Ready(Ok(taken))
    }
}

impl AsyncWrite for PollStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.tls.is_some() {
            return self.poll_seal(cx, &[io::IoSlice::new(buf)]);
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.tls.is_some() {
            return self.poll_seal(cx, bufs);
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_some() || self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(tls) = this.tls.as_mut() {
            std::task::ready!(tls.poll_write_out(&mut this.tcp, cx))?;
        }
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    /// Sends FIN, then reads and discards what the peer still sends until it
    /// closes too, for at most `LINGER` and `LINGER_BYTES`: closing a socket with
    /// unread bytes resets it, and a reset can destroy our last frames (a
    /// GOAWAY, a response's end) in the peer's receive buffer before it reads
    /// them. HTTP/1.1 connections linger the same way (`Stream::linger_close`).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(tls) = this.tls.as_mut() {
            // `close_notify` first: over TLS a FIN alone may be a cut.
            if !tls.closed {
                tls.session.close(&mut tls.out);
                tls.closed = true;
            }
            if this.linger.is_none() {
                std::task::ready!(tls.poll_write_out(&mut this.tcp, cx))?;
            }
        }
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
