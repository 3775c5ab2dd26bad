//! `upstream::h2`: multiplexed HTTP/2 connections from one shard to one backend.
//!
//! Owns opening one (TCP, then TLS with ALPN `h2` when the cluster speaks TLS,
//! then the HTTP/2 preface, all within `timeouts.connect`), the task that drives
//! it, and which connection a new stream goes on: the first open one with room
//! under `upstream.h2_max_streams` and the backend's own limit, else a new one.
//! Connections without streams close after `upstream.idle_timeout`. Held by the
//! backend's [`UpstreamPool`](super::UpstreamPool); never shared across shards.
//! Knows nothing of requests: the proxy sends them.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use crate::log_debug;
use crate::proxy::error::ProxyError;

use super::UpstreamTls;

/// Flow-control window per stream, as for HTTP/2 clients (`proxy::http2`): a
/// stream whose client reads slowly holds at most this much here.
const STREAM_WINDOW: u32 = 64 * 1024;
/// Largest frame payload accepted.
const MAX_FRAME: u32 = 16 * 1024;
/// Most bytes h2 buffers for one stream's sending.
const SEND_BUFFER: usize = 64 * 1024;

/// One HTTP/2 connection to a backend.
#[derive(Debug)]
pub struct H2Conn {
    send: SendRequest<Bytes>,
    /// Streams open on it now (leases out).
    streams: Cell<usize>,
    /// The connection ended (its driver returned), or refused a stream: no new
    /// stream goes on it.
    closed: Rc<Cell<bool>>,
    /// When its last stream ended.
    idle_since: Cell<Instant>,
    /// A failure of the connection itself was already reported (to the
    /// breaker): the other streams it took down are not reported again.
    failure_reported: Cell<bool>,
}

/// One stream's share of a connection: counted open until dropped.
#[derive(Debug)]
pub struct H2Lease {
    conn: Rc<H2Conn>,
}

impl H2Lease {
    fn new(conn: Rc<H2Conn>) -> H2Lease {
        conn.streams.set(conn.streams.get() + 1);
        H2Lease { conn }
    }

    /// A handle to open the stream with.
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.conn.send.clone()
    }

    /// Takes the connection out of use: it refused a stream, or failed.
    pub fn retire(&self) {
        self.conn.closed.set(true);
    }

    /// Whether this is the first stream to report the connection's failure.
    pub fn first_to_report(&self) -> bool {
        !self.conn.failure_reported.replace(true)
    }
}

impl Drop for H2Lease {
    fn drop(&mut self) {
        let left = self.conn.streams.get() - 1;
        self.conn.streams.set(left);
        if left == 0 {
            self.conn.idle_since.set(Instant::now());
        }
    }
}

/// Where and how a new connection is opened.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The backend's address.
    pub address: SocketAddr,
    /// `timeouts.connect`, for TCP, TLS and the preface together.
    pub timeout: Duration,
    /// The cluster's TLS, when it speaks TLS to its backends.
    pub tls: Option<&'a UpstreamTls>,
    /// The largest response head taken (`limits.max_header_bytes`).
    pub max_header_list: u32,
    /// `upstream.h2_max_streams`.
    pub max_streams: usize,
}

/// A backend's HTTP/2 connections on one shard.
#[derive(Debug, Default)]
pub struct Multiplexed {
    conns: RefCell<Vec<Rc<H2Conn>>>,
    /// Connections being opened now: a burst of requests waits for them
    /// rather than each opening its own.
    connecting: Cell<usize>,
    /// Requests waiting for those connections.
    waiting: Cell<usize>,
    /// Openings that ended so far.
    ended: Cell<u64>,
    /// The waiting requests' tasks, woken when an opening ends.
    wakers: RefCell<Vec<Waker>>,
    /// Changed by `clear`: a connection whose opening began before is used by
    /// its request only, never kept (it may be of TLS material now replaced).
    generation: Cell<u64>,
}

/// Counts a connection being opened while it lives; wakes the requests
/// waiting when it ends (opened, failed, or given up).
struct Opening<'a>(&'a Multiplexed);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.connecting.set(self.0.connecting.get() - 1);
        self.0.ended.set(self.0.ended.get() + 1);
        for waker in self.0.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// Counts a request waiting for an opening while it lives.
struct Waiting<'a>(&'a Multiplexed);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.set(self.0.waiting.get() - 1);
    }
}

impl Multiplexed {
    /// A stream for a request: on an open connection with room (`reused` is
    /// then true), else on a new one. While connections being opened have room
    /// for it too, it waits for them instead of opening one more; the wait and
    /// its own opening share one `timeouts.connect`. `fresh_only`: a new
    /// connection whatever there is (after a shared one failed). Returns the
    /// lease, whether the connection was open already, and whether it was
    /// opened for this request.
    pub async fn lease(
        &self,
        target: Target<'_>,
        fresh_only: bool,
    ) -> Result<(H2Lease, bool, bool), ProxyError> {
        let deadline = Instant::now() + target.timeout;
        if !fresh_only {
            loop {
                if let Some(lease) = self.checkout(target.max_streams) {
                    return Ok((lease, true, false));
                }
                // Each opening's first stream is its opener's.
                let room = self
                    .connecting
                    .get()
                    .saturating_mul(target.max_streams.saturating_sub(1));
                let now = Instant::now();
                if room <= self.waiting.get() || now >= deadline {
                    break;
                }
                self.waiting.set(self.waiting.get() + 1);
                let _waiting = Waiting(self);
                let ended = self.ended.get();
                let opened = poll_fn(|cx| {
                    if self.ended.get() != ended {
                        Poll::Ready(())
                    } else {
                        self.wakers.borrow_mut().push(cx.waker().clone());
                        Poll::Pending
                    }
                });
                let _ = monoio::time::timeout(deadline - now, opened).await;
            }
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(ProxyError::ConnectTimeout);
        }
        self.connecting.set(self.connecting.get() + 1);
        let _opening = Opening(self);
        let generation = self.generation.get();
        let conn = Rc::new(connect(Target { timeout, ..target }).await?);
        if generation == self.generation.get() {
            self.conns.borrow_mut().push(Rc::clone(&conn));
        }
        Ok((H2Lease::new(conn), false, true))
    }

    /// A stream on the first open connection with room for one more under
    /// `max_streams` and the backend's own `SETTINGS_MAX_CONCURRENT_STREAMS`.
    fn checkout(&self, max_streams: usize) -> Option<H2Lease> {
        let mut conns = self.conns.borrow_mut();
        conns.retain(|c| !c.closed.get());
        conns
            .iter()
            .find(|c| c.streams.get() < max_streams.min(c.send.current_max_send_streams()))
            .map(|c| H2Lease::new(Rc::clone(c)))
    }

    /// Lets go of the connections without streams for `idle_timeout` or more
    /// (they close once nothing holds them), and of those that ended.
    pub fn expire(&self, now: Instant, idle_timeout: Duration) {
        self.conns.borrow_mut().retain(|c| {
            !c.closed.get()
                && (c.streams.get() > 0
                    || now.saturating_duration_since(c.idle_since.get()) < idle_timeout)
        });
    }

    /// Lets go of every connection, and of those being opened: each closes
    /// when its last stream ends.
    pub fn clear(&self) {
        self.generation.set(self.generation.get() + 1);
        self.conns.borrow_mut().clear();
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.conns.borrow().is_empty()
    }
}

/// Opens an HTTP/2 connection to the target within its timeout (TCP, TLS with
/// ALPN `h2` when the cluster speaks TLS, the preface and SETTINGS) and spawns
/// the task that drives it until it ends.
async fn connect(target: Target<'_>) -> Result<H2Conn, ProxyError> {
    let Target {
        address,
        timeout,
        tls,
        max_header_list,
        max_streams,
    } = target;
    let deadline = Instant::now() + timeout;
    let stream = super::connect(address, timeout, tls.map(|t| (t, &[][..]))).await?;
    let io = stream
        .into_poll(Vec::new())
        .map_err(|e| ProxyError::UpstreamIo(e.kind()))?;
    let window = STREAM_WINDOW.saturating_mul(max_streams as u32);
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(window.max(STREAM_WINDOW))
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(max_header_list)
        .max_send_buffer_size(SEND_BUFFER)
        .enable_push(false)
        .handshake::<_, Bytes>(io);
    let wait = deadline.saturating_duration_since(Instant::now());
    let (send, connection) = match monoio::time::timeout(wait, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            log_debug!("h2 handshake with {address}: {e}");
            return Err(ProxyError::UpstreamIo(
                std::io::ErrorKind::ConnectionAborted,
            ));
        }
        Err(_) => return Err(ProxyError::ConnectTimeout),
    };
    let closed = Rc::new(Cell::new(false));
    let ended = Rc::clone(&closed);
    monoio::spawn(async move {
        // Ends when the backend closes it, fails, or nothing holds it any more
        // (h2 then says GOAWAY and closes).
        if let Err(e) = connection.await {
            log_debug!("h2 connection to {address} ended: {e}");
        }
        ended.set(true);
    });
    Ok(H2Conn {
        send,
        streams: Cell::new(0),
        closed,
        idle_since: Cell::new(Instant::now()),
        failure_reported: Cell::new(false),
    })
}
