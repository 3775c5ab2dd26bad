//! `stream`: one connection's socket, plain or TLS, read and written with owned
//! buffers.
//!
//! Owns [`Stream`] (a plain socket, or a socket with its TLS session) and the
//! discipline every connection's I/O keeps: reads into the spare room of the
//! caller's buffer, writes of a range in full within a timeout, a cancelable
//! read for the idle wait, and lingering on close so the peer sees the last
//! response. Over TLS, ciphertext goes through two buffers of the stream's own,
//! and every decrypted byte goes straight to the caller ([`TlsSession::feed`]), so
//! nothing waits inside rustls and a parked connection holds no buffer here
//! ([`Stream::release`]). Knows nothing of HTTP, shards or statistics.

use std::cell::RefCell;
use std::io;
use std::mem;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
    OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use crate::observe::access_log::LogTls;
use crate::protocol::tls::{Fed, TlsError, TlsInfo, TlsSession};

/// How long a closing connection is drained so the peer sees our last response.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and discarded while lingering.
pub(crate) const LINGER_BYTES: usize = 256 * 1024;
/// Least ciphertext read at once: one whole record (16 KiB of data, its header,
/// and the most padding and tag a suite adds), so a record costs one read.
const TLS_READ: usize = 16 * 1024 + 5 + 256;
/// How long an alert (or a `close_notify`) may take to go out before closing.
const ALERT_TIMEOUT: Duration = Duration::from_secs(1);
/// A handshake's read size: a whole hello or flight usually fits.
const HELLO_READ: usize = 4 * 1024;
/// A tunnel's ciphertext buffer larger than this is not kept between writes.
const TLS_KEEP: usize = 80 * 1024;

/// A connection's socket.
#[derive(Debug)]
pub enum Stream {
    /// Bytes as they are.
    Plain(TcpStream),
    /// A TLS session over the socket (boxed: plain connections stay small).
    Tls(Box<TlsStream>),
}

/// A socket with its TLS session, once the handshake is over.
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    session: TlsSession,
    /// Ciphertext read and not fed yet (empty between reads).
    incoming: Vec<u8>,
    /// Ciphertext sealed and not written yet (empty between writes).
    outgoing: Vec<u8>,
    info: Option<TlsInfo>,
}

/// Feeds the ciphertext read (`incoming`, emptied) into `plain`: `Some(n)`
/// plaintext bytes (0 after the peer's `close_notify`), `None` when there are
/// none yet.
fn absorb(
    session: &mut TlsSession,
    incoming: &mut Vec<u8>,
    plain: &mut Vec<u8>,
) -> Result<Option<usize>, TlsError> {
    let before = plain.len();
    let fed = session.feed(incoming, plain);
    incoming.clear();
    let n = plain.len() - before;
    match fed? {
        Fed::PeerClosed => Ok(Some(n)),
        Fed::Open if n > 0 => Ok(Some(n)),
        Fed::Open => Ok(None),
    }
}

/// What the access log says of a TLS connection, kept after it closed.
#[derive(Debug, Clone)]
pub struct TlsLogged {
    info: TlsInfo,
    sni: Option<String>,
}

impl TlsLogged {
    /// As the access log takes it.
    pub fn as_log(&self) -> LogTls<'_> {
        LogTls {
            version: self.info.version,
            cipher: self.info.cipher,
            sni: self.sni.as_deref(),
        }
    }
}

/// What a cancelable read came to.
#[derive(Debug)]
pub enum Cancelable {
    /// Plaintext bytes (0: the end), or an error (`ECANCELED` when cancelled).
    Read(io::Result<usize>),
    /// Ciphertext came but no plaintext yet: part of a record, or a record with
    /// none (a key update). The peer has started sending.
    Progress,
}

impl TlsStream {
    /// A session whose handshake is over, over its socket.
    pub fn new(tcp: TcpStream, session: TlsSession) -> Self {
        let info = session.info();
        TlsStream {
            tcp,
            session,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            info,
        }
    }

    /// The socket and the session, to be driven some other way (`pollio`).
    /// Nothing is buffered between calls, so nothing is lost.
    pub fn into_parts(self: Box<Self>) -> (TcpStream, TlsSession) {
        (self.tcp, self.session)
    }

    fn absorb(&mut self, plain: &mut Vec<u8>) -> Result<Option<usize>, TlsError> {
        absorb(&mut self.session, &mut self.incoming, plain)
    }

    /// After a session error: sends the alert rustls queued, best effort, and
    /// turns the error into an I/O one.
    async fn failed(&mut self, error: TlsError) -> io::Error {
        self.session.drain_output(&mut self.outgoing);
        let _ = self.flush(ALERT_TIMEOUT).await;
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    /// Writes every sealed byte within `timeout`.
    async fn flush(&mut self, timeout: Duration) -> io::Result<()> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let len = self.outgoing.len();
        let result = write_range(&mut self.tcp, &mut self.outgoing, 0..len, timeout).await;
        self.outgoing.clear();
        result
    }

    async fn read_more(&mut self, buf: &mut Vec<u8>, min_spare: usize) -> io::Result<usize> {
        let want = min_spare.max(TLS_READ);
        // After a body's large reads, a head's read goes back to one record's
        // worth: what a read brings is all appended to the caller's buffer.
        if self.incoming.capacity() > 2 * want {
            self.incoming = Vec::new();
        }
        loop {
            // Data and `close_notify` may come in one read: the end is then here,
            // whatever the socket still does.
            if self.session.peer_closed() {
                return Ok(0);
            }
            if read_more(&mut self.tcp, &mut self.incoming, want).await? == 0 {
                return Ok(0);
            }
            match self.absorb(buf) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(e) => return Err(self.failed(e).await),
            }
        }
    }
}

/// Why a handshake did not finish.
#[derive(Debug)]
pub enum HandshakeError {
    /// The peer refused ours or broke the protocol (our alert went out, best
    /// effort).
    Tls(TlsError),
    /// The connection ended first.
    Closed,
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// Not over by the deadline.
    TimedOut,
}

/// Runs `session`'s handshake over `tcp` until it is over or `deadline` passes;
/// `incoming` is ciphertext already read. Returns the stream, and the plaintext
/// the peer sent right behind its last flight (in the same read).
pub async fn handshake(
    mut tcp: TcpStream,
    mut session: TlsSession,
    mut incoming: Vec<u8>,
    deadline: Instant,
) -> Result<(TlsStream, Vec<u8>), HandshakeError> {
    let mut outgoing = Vec::new();
    let mut plain = Vec::new();
    loop {
        if !incoming.is_empty() {
            let fed = session.feed(&incoming, &mut plain);
            incoming.clear();
            match fed {
                // A peer may finish its handshake, send its data and close in
                // one go: the data is served, then the close read.
                Ok(Fed::PeerClosed) if session.is_handshaking() => {
                    return Err(HandshakeError::Closed)
                }
                Ok(_) => {}
                Err(e) => {
                    session.drain_output(&mut outgoing);
                    let len = outgoing.len();
                    let _ = write_range(&mut tcp, &mut outgoing, 0..len, ALERT_TIMEOUT).await;
                    return Err(HandshakeError::Tls(e));
                }
            }
        }
        session.drain_output(&mut outgoing);
        let wait = deadline.saturating_duration_since(Instant::now());
        if !outgoing.is_empty() {
            let len = outgoing.len();
            match write_range(&mut tcp, &mut outgoing, 0..len, wait).await {
                Ok(()) => outgoing.clear(),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(HandshakeError::TimedOut)
                }
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
        if !session.is_handshaking() {
            return Ok((TlsStream::new(tcp, session), plain));
        }
        match monoio::time::timeout(wait, read_more(&mut tcp, &mut incoming, HELLO_READ)).await {
            Ok(Ok(0)) => return Err(HandshakeError::Closed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(HandshakeError::Io(e)),
            Err(_) => return Err(HandshakeError::TimedOut),
        }
    }
}

impl Stream {
    /// The socket under it.
    #[inline]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.tcp,
        }
    }

    /// What was agreed, on a TLS connection.
    #[inline]
    pub fn tls_info(&self) -> Option<TlsInfo> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls.info,
        }
    }

    /// After the end was read: whether it was a proper one. Over TLS, only a
    /// `close_notify` is (a bare TCP EOF may be someone cutting the data short).
    pub fn ended_cleanly(&self) -> bool {
        match self {
            Stream::Plain(_) => true,
            Stream::Tls(tls) => tls.session.peer_closed(),
        }
    }

    /// The name a TLS client asked for (SNI).
    pub fn server_name(&self) -> Option<&str> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls.session.server_name(),
        }
    }

    /// The protocol ALPN agreed on (`h2`, `http/1.1`), if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls.session.alpn(),
        }
    }

    /// Reads into the spare capacity of `buf`, growing it to at least `min_spare`
    /// free bytes. Returns the bytes read; 0 is the end (a TCP EOF, or a TLS
    /// `close_notify`). Over TLS it reads until a record yields plaintext.
    pub async fn read_more(&mut self, buf: &mut Vec<u8>, min_spare: usize) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => read_more(tcp, buf, min_spare).await,
            Stream::Tls(tls) => tls.read_more(buf, min_spare).await,
        }
    }

    /// One read that `handle` can cancel. Always awaited to its end (a read
    /// dropped in flight could lose bytes).
    pub async fn read_cancelable(&mut self, buf: &mut Vec<u8>, handle: CancelHandle) -> Cancelable {
        match self {
            Stream::Plain(tcp) => {
                let (result, slice) = tcp.cancelable_read(spare_room(buf, 0), handle).await;
                *buf = slice.into_inner();
                Cancelable::Read(result)
            }
            Stream::Tls(tls) if tls.session.peer_closed() => Cancelable::Read(Ok(0)),
            Stream::Tls(tls) => {
                let spare = spare_room(&mut tls.incoming, TLS_READ);
                let (result, slice) = tls.tcp.cancelable_read(spare, handle).await;
                tls.incoming = slice.into_inner();
                match result {
                    Ok(0) => Cancelable::Read(Ok(0)),
                    Ok(_) => match tls.absorb(buf) {
                        Ok(Some(n)) => Cancelable::Read(Ok(n)),
                        Ok(None) => Cancelable::Progress,
                        Err(e) => Cancelable::Read(Err(tls.failed(e).await)),
                    },
                    Err(e) => Cancelable::Read(Err(e)),
                }
            }
        }
    }

    /// Writes `buf[range]` in full within `timeout`. On a timeout the write is
    /// cancelled and `buf` may come back empty (the connection is closed anyway).
    pub async fn write_range(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
        timeout: Duration,
    ) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => write_range(tcp, buf, range, timeout).await,
            Stream::Tls(tls) => {
                // All of it, once the handshake is over, unless the session
                // failed: then nothing must look sent.
                if tls.session.seal(&buf[range.clone()], &mut tls.outgoing) < range.len() {
                    return Err(session_failed());
                }
                tls.flush(timeout).await
            }
        }
    }

    /// Writes static bytes in full within `timeout`.
    pub async fn write_static(
        &mut self,
        bytes: &'static [u8],
        timeout: Duration,
    ) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => write_static(tcp, bytes, timeout).await,
            Stream::Tls(tls) => {
                if tls.session.seal(bytes, &mut tls.outgoing) < bytes.len() {
                    return Err(session_failed());
                }
                tls.flush(timeout).await
            }
        }
    }

    /// Says goodbye over TLS (`close_notify`); dropping the stream then closes
    /// the socket, which sends the FIN. For a peer that has sent all it will
    /// (it asked to close): with bytes still unread, the kernel would answer
    /// them with a reset.
    pub async fn close_now(&mut self) {
        if let Stream::Tls(tls) = self {
            tls.session.close(&mut tls.outgoing);
            let _ = tls.flush(ALERT_TIMEOUT).await;
        }
    }

    /// Says goodbye (`close_notify` over TLS), half-closes, then reads and
    /// discards what the peer still sends for a moment, so a close right after
    /// our response does not reset it away.
    pub async fn linger_close(&mut self) {
        if let Stream::Tls(tls) = self {
            tls.session.close(&mut tls.outgoing);
            if tls.flush(ALERT_TIMEOUT).await.is_err() {
                return;
            }
        }
        let tcp = match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &mut tls.tcp,
        };
        linger_close(tcp).await;
    }

    /// Over TLS, the peer sent `close_notify`: it is closing.
    pub fn closed_by_peer(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.session.peer_closed(),
        }
    }

    /// The handshake's version and cipher and the client's SNI, for the access
    /// log (`None` for a plain connection).
    pub fn log_tls(&self) -> Option<LogTls<'_>> {
        let info = self.tls_info()?;
        Some(LogTls {
            version: info.version,
            cipher: info.cipher,
            sni: self.server_name(),
        })
    }

    /// The same, kept past the stream (a tunnel logs after its sockets are gone).
    pub fn tls_logged(&self) -> Option<TlsLogged> {
        Some(TlsLogged {
            info: self.tls_info()?,
            sni: self.server_name().map(str::to_owned),
        })
    }

    /// Part of a TLS record has come, and the rest has not.
    pub fn mid_record(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.session.mid_record(),
        }
    }

    /// Over TLS, after the peer's `close_notify`: sends ours (best effort, no
    /// lingering), so that a peer that waits for a two-way close sees one.
    pub async fn answer_close_notify(&mut self) {
        if let Stream::Tls(tls) = self {
            if tls.session.peer_closed() {
                tls.session.close(&mut tls.outgoing);
                let _ = tls.flush(ALERT_TIMEOUT).await;
            }
        }
    }

    /// Gives back the buffers an idle connection does not need.
    pub fn release(&mut self) {
        if let Stream::Tls(tls) = self {
            tls.incoming = Vec::new();
            tls.outgoing = Vec::new();
        }
    }
}

/// What a write on a failed session gets: rustls took nothing.
fn session_failed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "tls session failed")
}

/// Writes static bytes in full within `timeout`.
pub async fn write_static(
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
pub async fn read_more(
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
pub fn spare_room(buf: &mut Vec<u8>, min_spare: usize) -> SliceMut<Vec<u8>> {
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
pub async fn write_range(
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

/// Half-closes, then reads and discards what the peer still sends for a moment,
/// so a close right after our response does not reset it away.
pub async fn linger_close(stream: &mut TcpStream) {
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

/// The reading half of a split stream (a tunnel's pump reads it).
#[derive(Debug)]
pub enum ReadHalf {
    Plain(OwnedReadHalf<TcpStream>),
    /// The session is shared with the writing half, borrowed only between awaits.
    Tls {
        half: OwnedReadHalf<TcpStream>,
        session: Rc<RefCell<TlsSession>>,
        incoming: Vec<u8>,
    },
}

/// The writing half of a split stream.
#[derive(Debug)]
pub enum WriteHalf {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls {
        half: OwnedWriteHalf<TcpStream>,
        session: Rc<RefCell<TlsSession>>,
        outgoing: Vec<u8>,
    },
}

impl Stream {
    /// Splits the stream for two pumps, one each way. Over TLS both halves share
    /// the session: the reading half feeds it, the writing half seals with it.
    pub fn into_halves(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Stream::Tls(tls) => {
                let TlsStream {
                    tcp,
                    session,
                    incoming,
                    outgoing,
                    ..
                } = *tls;
                let (read, write) = tcp.into_split();
                let session = Rc::new(RefCell::new(session));
                (
                    ReadHalf::Tls {
                        half: read,
                        session: Rc::clone(&session),
                        incoming,
                    },
                    WriteHalf::Tls {
                        half: write,
                        session,
                        outgoing,
                    },
                )
            }
        }
    }

    /// Puts split halves back together, so that the socket closes whole (a write
    /// half dropped alone would shut down writing, sending a FIN ahead of a reset).
    pub fn reunite(read: ReadHalf, write: WriteHalf) {
        let halves = match (read, write) {
            (ReadHalf::Plain(read), WriteHalf::Plain(write)) => (read, write),
            (ReadHalf::Tls { half: read, .. }, WriteHalf::Tls { half: write, .. }) => (read, write),
            // Halves of two streams: each closes on its own.
            _ => return,
        };
        drop(halves.0.reunite(halves.1));
    }
}

impl ReadHalf {
    /// Reads into `buf`'s spare room (at least `min_spare` bytes of it), in one
    /// read that `handle` can cancel.
    pub async fn read_cancelable(
        &mut self,
        buf: &mut Vec<u8>,
        min_spare: usize,
        handle: CancelHandle,
    ) -> Cancelable {
        match self {
            ReadHalf::Plain(half) => {
                // Exactly the room asked for: an idle pump waits on one byte.
                if buf.capacity() - buf.len() < min_spare {
                    buf.reserve(min_spare);
                }
                let len = buf.len();
                let spare = mem::take(buf).slice_mut(len..);
                let (result, slice) = half.cancelable_read(spare, handle).await;
                *buf = slice.into_inner();
                Cancelable::Read(result)
            }
            ReadHalf::Tls { session, .. } if session.borrow().peer_closed() => {
                Cancelable::Read(Ok(0))
            }
            ReadHalf::Tls {
                half,
                session,
                incoming,
            } => {
                let spare = spare_room(incoming, min_spare.min(TLS_READ));
                let (result, slice) = half.cancelable_read(spare, handle).await;
                *incoming = slice.into_inner();
                match result {
                    Ok(0) => Cancelable::Read(Ok(0)),
                    Ok(_) => match absorb(&mut session.borrow_mut(), incoming, buf) {
                        Ok(Some(n)) => Cancelable::Read(Ok(n)),
                        Ok(None) => Cancelable::Progress,
                        Err(e) => {
                            Cancelable::Read(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                        }
                    },
                    Err(e) => Cancelable::Read(Err(e)),
                }
            }
        }
    }

    /// Gives back the buffer an idle half does not need.
    pub fn release(&mut self) {
        if let ReadHalf::Tls { incoming, .. } = self {
            *incoming = Vec::new();
        }
    }
}

impl WriteHalf {
    /// Writes all of `buf` and hands it back.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match self {
            WriteHalf::Plain(half) => {
                let (result, buf) = half.write_all(buf).await;
                (result.map(|_| ()), buf)
            }
            WriteHalf::Tls {
                half,
                session,
                outgoing,
            } => {
                if session.borrow_mut().seal(&buf, outgoing) < buf.len() {
                    return (Err(session_failed()), buf);
                }
                let (result, written) = half.write_all(mem::take(outgoing)).await;
                *outgoing = written;
                outgoing.clear();
                if outgoing.capacity() > TLS_KEEP {
                    *outgoing = Vec::new();
                }
                (result.map(|_| ()), buf)
            }
        }
    }

    /// Passes an end on: `close_notify` over TLS, then a half-close.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(half) => half.shutdown().await,
            WriteHalf::Tls {
                half,
                session,
                outgoing,
            } => {
                session.borrow_mut().close(outgoing);
                let (result, _) = half.write_all(mem::take(outgoing)).await;
                result?;
                half.shutdown().await
            }
        }
    }
}
