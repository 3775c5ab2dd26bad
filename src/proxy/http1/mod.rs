//! HTTP/1.1 proxying of one client connection, request after request.
//!
//! `serve` reads a request head, routes it (the listener's most specific route
//! names a cluster), picks a backend, sends the rewritten head and the body
//! upstream, reads the response head and streams the body back, then keeps the
//! connection for the next request or closes it; after a WebSocket `101` it hands
//! the connection to the tunnel relay. Bodies stream through fixed-size
//! buffers, so memory does not grow with their size. Every failure becomes a status
//! (or a silent close when the client is gone), a counter and a debug log line.
//! Forwarding one request lives in [`forward`], bodies in [`body`], responses in
//! [`response`], and the socket helpers in [`socket`].

mod body;
mod forward;
mod response;
mod socket;
mod upstream_h2;

pub use socket::ClientIo;

use std::future::Future;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::Canceller;

use crate::cluster::backend::Backend;
use crate::log_debug;
use crate::observe::access_log::LogNames;
use crate::observe::stats::{RequestRecord, ShardStats};
use crate::observe::tunnels::{TunnelEnd, TunnelRecord};
use crate::protocol::h1::{self, Forwarding, Request};
use crate::proxy::error::{error_response, ProxyError, Side};
use crate::proxy::proxied::Accepted;
use crate::proxy::tunnel::{self, Ends};
use crate::proxy::PARK_AFTER;
use crate::route::{RequestView, Route};
use crate::shard::{ConnectionGuard, Shard, ShardListener};
use crate::stream::{Cancelable, Stream, TlsLogged};

pub(in crate::proxy) use forward::Done;
use forward::{proxy_request, Upgraded};

/// Initial capacity of a client connection's read buffer.
const CLIENT_BUFFER: usize = 4 * 1024;
/// Read size for a response head (and whatever body comes with it): most
/// responses fit, and a burst of requests in flight holds one each.
pub(super) const RESPONSE_BUFFER: usize = 16 * 1024;
/// Read size while streaming bodies longer than that.
pub(super) const BODY_BUFFER: usize = 64 * 1024;
/// A client buffer larger than this is shrunk back after a request.
const CLIENT_BUFFER_KEEP: usize = 64 * 1024;
/// Initial capacity of the per-connection head and scratch buffers.
const HEAD_BUFFER: usize = 1024;
// A keep-alive connection with nothing to read for `PARK_AFTER` is parked: its
// buffers go back to the allocator and it waits for readability with no buffer in
// the kernel, so thousands of idle clients cost about 0.5 KB each (PERF.md). Busy
// connections never reach it, so they pay no extra operation per request.

/// One client connection's reading state.
pub(in crate::proxy) struct Downstream<S = Stream> {
    /// The socket (plain or TLS), or an HTTP/2 stream.
    pub(in crate::proxy) stream: S,
    /// The client's address (from the PROXY header, when the listener takes one).
    pub(in crate::proxy) peer: SocketAddr,
    /// The address the client connected to, when a PROXY header named it (else
    /// the socket's own, asked for only when a backend is sent a PROXY header).
    pub(in crate::proxy) destination: Option<SocketAddr>,
    /// The listener it came in on (its routes; whether a reload removed it).
    pub(in crate::proxy) listener: Rc<ShardListener>,
    /// Bytes read; `buf[pos..]` are not consumed yet (pipelined requests included).
    pub(in crate::proxy) buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    pub(in crate::proxy) pos: usize,
    /// Longest a write to the client may block (`timeouts.idle`): a client that
    /// stops reading must not hold a task, a connection slot and a backend forever.
    pub(in crate::proxy) write_timeout: Duration,
    /// Bytes read from the client so far (for statistics).
    pub(in crate::proxy) read_total: u64,
    /// Bytes written to the client so far (for statistics).
    pub(in crate::proxy) written_total: u64,
}

/// A connection's reusable buffers besides its read buffer, given back while it is
/// parked.
#[derive(Default)]
pub(in crate::proxy) struct Scratch {
    /// The rewritten request head.
    pub(in crate::proxy) head: Vec<u8>,
    /// The bytes of each attempt, then the response head.
    work: Vec<u8>,
    /// The request line, for the access log.
    request_line: String,
}

impl Scratch {
    pub(in crate::proxy) fn new() -> Self {
        Scratch {
            head: Vec::with_capacity(HEAD_BUFFER),
            work: Vec::with_capacity(HEAD_BUFFER),
            request_line: String::new(),
        }
    }
}

impl<S> Downstream<S> {
    /// Whether the connection should end once its current request is done: the
    /// shard drains, or a reload removed its listener.
    fn stopping(&self, shard: &Shard) -> bool {
        shard.draining() || self.listener.closing()
    }

    fn unconsumed(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Moves unconsumed bytes to the front so reads have room.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// A request that failed, and whether the client already saw part of a response.
pub(in crate::proxy) struct Failure {
    pub(in crate::proxy) error: ProxyError,
    pub(in crate::proxy) response_started: bool,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Failure {
            error,
            response_started: false,
        }
    }
}

/// Serves one client connection until it closes, fails, or the shard drains.
///
/// The connection alternates between two phases. While active, a boxed future
/// reads and proxies requests; it ends when the connection has had nothing to read
/// for `PARK_AFTER`. Parked, the connection keeps only its [`Parked`] part and
/// the wait for readability, so an idle client costs about 0.5 KB (PERF.md).
///
/// Not an `async fn`: its arguments would stay in the task's state for its whole
/// life beside what it makes of them. This returns a block that captures only
/// what a parked connection needs; the shard is reached through `guard`.
pub fn serve(
    shard: Rc<Shard>,
    listener: Rc<ShardListener>,
    guard: ConnectionGuard,
    accepted: Accepted,
) -> impl Future<Output = ()> {
    drop(shard);
    let Accepted {
        stream,
        client: peer,
        destination,
        early,
    } = accepted;
    let mut parked = Parked {
        stream,
        peer,
        destination: destination.map(Box::new),
        listener,
    };
    // Bytes the client sent with its PROXY header or TLS handshake: boxed, and
    // only when there are some, so that the task does not carry an empty `Vec`.
    let mut early = (!early.is_empty()).then(|| Box::new(early));
    // The blocks below end what each step made before the next wait, so the
    // parked state holds only `parked`, `guard` and the wait itself.
    async move {
        let mut first = true;
        loop {
            let client = {
                let mut buf = early.take().map_or_else(Vec::new, |early| *early);
                buf.reserve(CLIENT_BUFFER);
                parked.wake(buf, guard.shard())
            };
            let phase = Box::pin(serve_phase(&guard, client, &mut first));
            let Some((wait, client)) = phase.await else {
                return;
            };
            parked = Parked::from(client);
            // No timer here (a monoio `Sleep` alone is 640 bytes): the shard's
            // sweep shuts the socket down at the deadline, which ends the wait.
            guard
                .shard()
                .set_parked(&guard, Some(Instant::now() + wait));
            let ready = parked.stream.tcp().readable(false).await;
            let shard = guard.shard();
            shard.set_parked(&guard, None);
            if ready.is_err() || shard.draining() || parked.listener.closing() {
                return;
            }
        }
    }
}

/// What a keep-alive connection keeps while parked: its socket and whose it is,
/// no buffers. Every byte here is paid by every idle client.
struct Parked {
    stream: Stream,
    peer: SocketAddr,
    /// Boxed: only connections that came with a PROXY header have one.
    destination: Option<Box<SocketAddr>>,
    listener: Rc<ShardListener>,
}

impl Parked {
    /// The connection, active again, reading into `buf`.
    fn wake(self, buf: Vec<u8>, shard: &Shard) -> Downstream {
        Downstream {
            stream: self.stream,
            peer: self.peer,
            destination: self.destination.map(|d| *d),
            listener: self.listener,
            buf,
            pos: 0,
            write_timeout: shard.settings().idle_timeout,
            read_total: 0,
            written_total: 0,
        }
    }
}

impl From<Downstream> for Parked {
    /// Gives the connection's buffers back (its TLS session's too).
    fn from(client: Downstream) -> Self {
        let Downstream {
            mut stream,
            peer,
            destination,
            listener,
            ..
        } = client;
        stream.release();
        Parked {
            stream,
            peer,
            destination: destination.map(Box::new),
            listener,
        }
    }
}

/// One active phase: reads and proxies requests with buffers of its own until
/// the connection parks (it is handed back, with how much longer it may stay
/// idle) or ends. A WebSocket upgrade ends it here, after the tunnel.
async fn serve_phase(
    guard: &ConnectionGuard,
    mut client: Downstream,
    first: &mut bool,
) -> Option<(Duration, Downstream)> {
    let mut scratch = Scratch::new();
    let shard = guard.shard();
    match serve_active(shard, guard, &mut client, &mut scratch, first).await {
        Active::Parked { wait } => Some((wait, client)),
        Active::Ended => None,
        Active::Upgraded(upgrade) => {
            drop(scratch);
            // Boxed: inline, the tunnel's state would make every active
            // phase bigger (and, before phases were boxed, every idle
            // connection: 6.4 KB each from the WebSocket commit 9a4e745).
            Box::pin(tunnel_upgraded(shard, guard, client, *upgrade)).await;
            None
        }
    }
}

/// Relays an upgraded connection to its end: bytes the client sent after its
/// request go first, then both ways, as for a TCP listener's connection.
async fn tunnel_upgraded(
    shard: &Shard,
    guard: &ConnectionGuard,
    client: Downstream,
    upgrade: Upgrade,
) {
    let Downstream {
        stream,
        peer,
        listener,
        buf,
        pos,
        ..
    } = client;
    let tls = stream.tls_logged();
    let Upgrade { upgraded, route } = upgrade;
    let Upgraded {
        upstream,
        in_flight,
        to_client,
    } = upgraded;
    ShardStats::bump(&shard.stats.tunnels.upgraded);
    let mut record = TunnelRecord {
        started: Instant::now(),
        attempts: 1,
        bytes_up: 0,
        bytes_down: 0,
        error: None,
        end: TunnelEnd::Closed,
    };
    let ends = Ends {
        client: stream,
        upstream,
        header: Vec::new(),
        to_backend: buf[pos..].to_vec(),
        to_client,
    };
    drop(buf);
    let backend = in_flight.backend();
    tunnel::run(shard, guard, ends, backend, &mut record).await;
    let names = LogNames {
        listener: &listener.name,
        route: Some(&route.name),
        cluster: Some(&route.cluster.name),
        backend: Some(&backend.name),
        tls: tls.as_ref().map(TlsLogged::as_log),
        http2: false,
    };
    tunnel::finish(shard, peer, &record, Some(backend), &names);
}

/// How an active phase of a connection ended.
enum Active {
    /// Idle for `PARK_AFTER`: park, and give up after `wait` more.
    Parked { wait: Duration },
    /// The connection is done (closed, failed, timed out, or draining).
    Ended,
    /// The backend accepted a WebSocket upgrade: the connection is a tunnel now.
    Upgraded(Box<Upgrade>),
}

/// An accepted upgrade, and the route that chose its backend.
struct Upgrade {
    upgraded: Upgraded,
    route: Rc<Route>,
}

/// Reads and proxies requests until the connection parks or ends.
async fn serve_active(
    shard: &Shard,
    guard: &ConnectionGuard,
    client: &mut Downstream,
    scratch: &mut Scratch,
    first: &mut bool,
) -> Active {
    let forwarding = Forwarding {
        client_ip: client.peer.ip(),
        proto: match client.stream {
            Stream::Plain(_) => "http",
            Stream::Tls(_) => "https",
        },
    };
    // Cancels an idle read safely when the connection parks (a read cancelled by
    // dropping it could lose bytes that arrived at that moment). Lives only while
    // the connection is active.
    let mut canceller = Canceller::new();
    loop {
        let (read_before, written_before) = (client.read_total, client.written_total);
        let read = read_request(
            shard,
            guard,
            client,
            &mut canceller,
            &forwarding,
            scratch,
            *first,
        )
        .await;
        let (request, started) = match read {
            Ok(Next::Request(request, started)) => (request, started),
            Ok(Next::Park { wait }) => return Active::Parked { wait },
            Ok(Next::End) => {
                // A client that said goodbye over TLS gets ours.
                client.stream.answer_close_notify().await;
                return Active::Ended;
            }
            Err(error) => {
                let record = RequestRecord {
                    started: Instant::now(),
                    status: error.status().unwrap_or(0),
                    attempts: 0,
                    bytes_in: client.read_total - read_before,
                    bytes_out: 0,
                    error: Some(error.kind()),
                };
                shard.stats.record(&record, None, Instant::now());
                fail(shard, client, Failure::from(error)).await;
                return Active::Ended;
            }
        };
        *first = false;
        // The client's own `Connection: close` (or HTTP/1.0 without keep-alive).
        let client_closes = !request.keep_alive;
        let (result, route) = exchange(
            shard,
            client,
            request,
            started,
            scratch,
            (read_before, written_before),
        )
        .await;
        match result {
            Ok(Done::Upgraded(upgraded)) => {
                if let Some(route) = route {
                    return Active::Upgraded(Box::new(Upgrade { upgraded, route }));
                }
                return Active::Ended;
            }
            Ok(Done::Next {
                keep_alive: true, ..
            }) => {
                if client.buf.capacity() > CLIENT_BUFFER_KEEP && client.unconsumed() == 0 {
                    client.buf = Vec::with_capacity(CLIENT_BUFFER);
                    client.pos = 0;
                }
            }
            Ok(Done::Next {
                keep_alive: false,
                body_unread,
            }) => {
                // A client that asked to close may send nothing more (RFC 9112
                // 9.6): with all it sent read, here and in the kernel, it is
                // closed at once, as HAProxy and nginx do. Lingering (a read for
                // its FIN, and a timer) is for closes it did not ask for, and
                // for bytes still coming: closing with some unread, the kernel
                // would send a reset, which can erase the response.
                if client_closes
                    && !body_unread
                    && client.unconsumed() == 0
                    && crate::sys::nothing_to_read(client.stream.tcp().as_raw_fd())
                {
                    client.stream.close_now().await;
                } else {
                    client.stream.linger_close().await;
                }
                return Active::Ended;
            }
            Err(failure) => {
                fail(shard, client, failure).await;
                return Active::Ended;
            }
        }
    }
}

/// One request, from its parsed head (the bytes before `client.pos`, rewritten in
/// `scratch.head`) to its record: routes it, applies the route's rewrite, proxies
/// it, and records it (statistics, access log). The forwarding core HTTP/1.1
/// connections and HTTP/2 streams share; what then happens to the connection is
/// the caller's. `before` holds the client's byte totals before the request.
pub(in crate::proxy) async fn exchange<S: ClientIo>(
    shard: &Shard,
    client: &mut Downstream<S>,
    request: Request,
    started: Instant,
    scratch: &mut Scratch,
    before: (u64, u64),
) -> (Result<Done, Failure>, Option<Rc<Route>>) {
    let (read_before, written_before) = before;
    ShardStats::bump(&shard.stats.requests);
    let head = &client.buf[client.pos - request.head_len..client.pos];
    if shard.access_log.borrow().is_some() {
        let (method, target) = h1::method_and_target(head);
        let line = &mut scratch.request_line;
        line.clear();
        line.push_str(&String::from_utf8_lossy(method));
        line.push(' ');
        line.push_str(&String::from_utf8_lossy(target));
    }
    let view = RequestView {
        method: request.method_token.of(head),
        host: request.host.map(|host| host.of(head)),
        path: request.routing_path(head),
        header: |name: &str| h1::header_value(head, name),
    };
    let route = client.listener.route(&view);
    // The backend of the last attempt, if one was made.
    let mut backend: Option<Rc<Backend>> = None;
    let mut record = RequestRecord {
        started,
        status: 0,
        attempts: 0,
        bytes_in: 0,
        bytes_out: 0,
        error: None,
    };
    let result = match &route {
        Some(route) => {
            route.stats.record();
            let missing_host = request.missing_host;
            let request = match &route.rewrite {
                Some(rewrite) => {
                    rewrite.apply(&scratch.head, &mut scratch.work);
                    mem::swap(&mut scratch.head, &mut scratch.work);
                    Request {
                        missing_host: missing_host && !rewrite.sets_host(),
                        ..request
                    }
                }
                None => request,
            };
            proxy_request(
                shard,
                &route.cluster,
                client,
                &request,
                scratch,
                &mut record,
                &mut backend,
            )
            .await
        }
        None => Err(Failure::from(ProxyError::NoRoute)),
    };
    if let Err(failure) = &result {
        record.error = Some(failure.error.kind());
        if !failure.response_started {
            record.status = failure.error.status().unwrap_or(0);
        }
    }
    record.bytes_in = client.read_total - read_before;
    record.bytes_out = client.written_total - written_before;
    #[cfg(not(feature = "no-request-stats"))]
    {
        let now = Instant::now();
        shard
            .stats
            .record(&record, backend.as_ref().map(|b| &b.stats), now);
        if let Some(route) = &route {
            route.cluster.stats.record(&record);
        }
        if let Some(log) = shard.access_log.borrow().as_ref() {
            let names = LogNames {
                listener: &client.listener.name,
                route: route.as_ref().map(|r| &*r.name),
                cluster: route.as_ref().map(|r| &*r.cluster.name),
                backend: backend.as_ref().map(|b| &*b.name),
                tls: client.stream.log_tls(),
                http2: client.stream.http2(),
            };
            log.write(client.peer, &scratch.request_line, &record, &names, now);
        }
    }
    (result, route)
}

/// Counts and logs a failure, answers with its status if nothing was sent yet, and
/// closes the connection.
async fn fail(shard: &Shard, client: &mut Downstream, failure: Failure) {
    count_failure(shard, client.peer, &failure.error);
    let error = &failure.error;
    if failure.response_started {
        return;
    }
    if let Some(status) = error.status() {
        let written = client
            .stream
            .write_static(error_response(status), client.write_timeout);
        if written.await.is_ok() {
            client.stream.linger_close().await;
        }
    }
}

/// Counts a failed request by whose fault it was, and logs it at debug.
pub(in crate::proxy) fn count_failure(shard: &Shard, peer: SocketAddr, error: &ProxyError) {
    let stats = &shard.stats;
    match error.side() {
        Side::Downstream => ShardStats::bump(&stats.client_errors),
        Side::Upstream => ShardStats::bump(&stats.upstream_errors),
        Side::Internal => ShardStats::bump(&stats.internal_errors),
    }
    log_debug!(
        "shard {}: client {}: {} ({})",
        shard.index,
        peer,
        error,
        error.kind()
    );
}

/// What `read_request` found.
enum Next {
    /// A request head, and when its first byte was seen.
    Request(Request, Instant),
    /// Nothing to read for `PARK_AFTER`: park for at most `wait` more.
    Park { wait: Duration },
    /// A clean end: the client closed or went idle too long between requests, or
    /// the shard is draining.
    End,
}

/// Reads the next request head.
async fn read_request(
    shard: &Shard,
    guard: &ConnectionGuard,
    client: &mut Downstream,
    canceller: &mut Canceller,
    forwarding: &Forwarding,
    scratch: &mut Scratch,
    first: bool,
) -> Result<Next, ProxyError> {
    let settings = shard.settings();
    let mut deadline: Option<Instant> = None;
    let mut started: Option<Instant> = None;
    loop {
        if client.unconsumed() > 0 {
            let started = *started.get_or_insert_with(Instant::now);
            match h1::parse_request(
                &client.buf[client.pos..],
                &settings.limits,
                forwarding,
                &mut scratch.head,
            ) {
                Ok(Some(request)) => {
                    client.pos += request.head_len;
                    return Ok(Next::Request(request, started));
                }
                Ok(None) => {}
                Err(e) => return Err(ProxyError::BadRequest(e)),
            }
            if deadline.is_none() {
                deadline = Some(Instant::now() + settings.header_read_timeout);
            }
        }
        client.compact();
        // Over TLS, part of a record begins a request as a byte of a head would:
        // the rest must come within `timeouts.header_read`.
        if deadline.is_none() && client.stream.mid_record() {
            started.get_or_insert_with(Instant::now);
            deadline = Some(Instant::now() + settings.header_read_timeout);
        }
        // Nothing buffered and no request begun.
        let idle = client.buf.is_empty() && deadline.is_none();
        if idle && client.stopping(shard) {
            return Ok(Next::End);
        }
        let wait = match deadline {
            None if first => settings.header_read_timeout,
            None => settings.idle_timeout,
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        let read = if idle {
            shard.set_idle(guard, true);
            let read = read_idle(client, canceller, wait).await;
            shard.set_idle(guard, false);
            match read {
                IdleRead::Read(read) => Some(read),
                // Ciphertext without plaintext: part of a record (above), or a
                // whole one without data (a key update): wait on.
                IdleRead::Progress => continue,
                IdleRead::Park { wait } => return Ok(Next::Park { wait }),
                IdleRead::TimedOut => None,
            }
        } else {
            grow_for_head(&mut client.buf, settings.limits.max_header_bytes);
            monoio::time::timeout(wait, client.stream.read_more(&mut client.buf, 0))
                .await
                .ok()
        };
        match read {
            Some(Ok(n)) if n > 0 => client.read_total += n as u64,
            // EOF, error or timeout with nothing read: a clean end of the connection.
            _ if idle => return Ok(Next::End),
            Some(Ok(_)) => return Err(ProxyError::ClientIo(io::ErrorKind::UnexpectedEof)),
            Some(Err(e)) => return Err(ProxyError::ClientIo(e.kind())),
            None => return Err(ProxyError::HeaderReadTimeout),
        }
    }
}

/// Makes room for the next read of a head that is still coming in. With the
/// usual limits (up to 32 KiB), once the first buffer is full it goes straight to
/// the longest head allowed plus 1 KiB of what may follow it: doubling would let
/// every slow client hold twice `limits.max_header_bytes`, and the smaller buffers
/// it leaves behind, freed in step by many slow clients at once, stay resident a
/// while too. With a larger limit it doubles up to that bound, so that a client
/// is never given far more room than it has sent.
fn grow_for_head(buf: &mut Vec<u8>, max_head: usize) {
    const READ_ROOM: usize = 1024;
    const JUMP_UP_TO: usize = 32 * 1024;
    if buf.capacity() - buf.len() >= READ_ROOM {
        return;
    }
    let bound = max_head + READ_ROOM;
    let target = if max_head <= JUMP_UP_TO {
        bound
    } else {
        (buf.capacity() * 2).min(bound)
    };
    buf.reserve_exact(target.max(buf.len() + READ_ROOM) - buf.len());
}

/// What a read on a connection with nothing buffered came to.
enum IdleRead {
    /// The read finished (bytes, EOF or an error).
    Read(io::Result<usize>),
    /// Over TLS, ciphertext came that held no request bytes (yet).
    Progress,
    /// Nothing for `PARK_AFTER`, and the read was cancelled: park for `wait` more.
    Park { wait: Duration },
    /// Nothing within the whole wait.
    TimedOut,
}

/// Reads from a connection with nothing buffered, for at most `wait`. A read that
/// finds nothing for `PARK_AFTER` is cancelled, and its result still taken in case
/// bytes won the race: a read dropped instead could lose them.
async fn read_idle(client: &mut Downstream, canceller: &mut Canceller, wait: Duration) -> IdleRead {
    let hot = wait.min(PARK_AFTER);
    let result = {
        let read = client
            .stream
            .read_cancelable(&mut client.buf, canceller.handle());
        let mut read = std::pin::pin!(read);
        monoio::select! {
            done = &mut read => done,
            _ = monoio::time::sleep(hot) => {
                *canceller = mem::take(canceller).cancel();
                read.await
            }
        }
    };
    let result = match result {
        Cancelable::Read(result) => result,
        Cancelable::Progress => return IdleRead::Progress,
    };
    match result {
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
            if hot < wait {
                IdleRead::Park { wait: wait - hot }
            } else {
                IdleRead::TimedOut
            }
        }
        // Bytes (or an EOF, or an error) arrived, perhaps just before the cancel.
        other => IdleRead::Read(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_buffer_grows_no_further_than_the_head_limit() {
        let mut buf = Vec::with_capacity(CLIENT_BUFFER);
        let mut sizes = vec![buf.capacity()];
        // A head arriving 100 bytes at a time up to the 16 KiB limit.
        while buf.len() < 16 * 1024 {
            grow_for_head(&mut buf, 16 * 1024);
            assert!(buf.capacity() - buf.len() >= 1024);
            buf.extend_from_slice(&[b'a'; 100]);
            if sizes.last() != Some(&buf.capacity()) {
                sizes.push(buf.capacity());
            }
        }
        assert_eq!(sizes, [CLIENT_BUFFER, 17 * 1024]);

        // A 1 MiB limit: room grows with what was sent, not to the limit at once.
        let mut buf = Vec::with_capacity(CLIENT_BUFFER);
        buf.extend_from_slice(&[b'a'; CLIENT_BUFFER - 100]);
        grow_for_head(&mut buf, 1024 * 1024);
        assert_eq!(buf.capacity(), 2 * CLIENT_BUFFER);
    }

    /// The size of what `f` returns, without calling it.
    fn returned_size<A, B, C, D, R>(_f: impl FnOnce(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every idle keep-alive connection holds this future, plus monoio's
    /// 48-byte task header. At 264 bytes the task is in mimalloc's 320-byte size
    /// class; as an `async fn`, which kept its arguments beside what it made of
    /// them, it was 664 (the 768-byte class): 952 bytes per idle connection
    /// against 501 now (PERF.md, "Speed, second round").
    #[test]
    fn a_parked_connection_task_stays_small() {
        let size = returned_size(serve);
        eprintln!("serve's future: {size} bytes");
        // The layout is the compiler's: a new toolchain can move this with no
        // change here. Look at `-Zprint-type-sizes` (PERF.md) before raising it.
        assert!(size <= 272, "serve's future is {size} bytes");
    }
}
