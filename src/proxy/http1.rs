//! HTTP/1.1 proxying of one client connection, request after request.
//!
//! `serve` reads a request head, picks a backend, sends the rewritten head and the
//! body upstream, reads the response head and streams the body back, then keeps the
//! connection for the next request or closes it. Bodies stream through fixed-size
//! buffers, so memory does not grow with their size. Every failure becomes a status
//! (or a silent close when the client is gone), a counter and a debug log line.

use std::io::{self, Write as _};
use std::mem;
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller,
};
use monoio::net::TcpStream;

use crate::cluster::backend::{Backend, BackendId, InFlight};
use crate::cluster::balancer::{hash_bytes, hash_ip, RequestContext};
use crate::config::{BalancerConfig, HashKey, Strategy};
use crate::log_debug;
use crate::observe::stats::{RequestRecord, ShardStats};
use crate::protocol::h1::{
    self, BodyKind, ChunkEvent, ChunkedDecoder, ClientSide, Forwarding, Request,
};
use crate::proxy::error::{error_response, ProxyError, Side};
use crate::shard::{ConnectionGuard, Shard};
use crate::upstream;

/// Initial capacity of a client connection's read buffer.
const CLIENT_BUFFER: usize = 4 * 1024;
/// Read size for a response head (and whatever body comes with it): most
/// responses fit, and a burst of requests in flight holds one each.
const RESPONSE_BUFFER: usize = 16 * 1024;
/// Read size while streaming bodies longer than that.
const BODY_BUFFER: usize = 64 * 1024;
/// A client buffer larger than this is shrunk back after a request.
const CLIENT_BUFFER_KEEP: usize = 64 * 1024;
/// Initial capacity of the per-connection head and scratch buffers.
const HEAD_BUFFER: usize = 1024;
/// A keep-alive connection with nothing to read for this long is parked: its
/// buffers go back to the allocator and it waits for readability with no buffer
/// in the kernel, so thousands of idle clients cost about 0.8 KB each (PERF.md). Busy
/// connections never reach it, so they pay no extra operation per request.
const PARK_AFTER: Duration = Duration::from_millis(100);
/// How long a closing connection is drained so the client sees our last response.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and discarded while lingering.
const LINGER_BYTES: usize = 256 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One client connection's reading state.
struct Downstream {
    /// The socket.
    stream: TcpStream,
    /// The client's address.
    peer: SocketAddr,
    /// Bytes read; `buf[pos..]` are not consumed yet (pipelined requests included).
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    pos: usize,
    /// Longest a write to the client may block (`timeouts.idle`): a client that
    /// stops reading must not hold a task, a connection slot and a backend forever.
    write_timeout: Duration,
    /// Bytes read from the client so far (for statistics).
    read_total: u64,
    /// Bytes written to the client so far (for statistics).
    written_total: u64,
}

/// A connection's reusable buffers besides its read buffer, given back while it is
/// parked.
#[derive(Default)]
struct Scratch {
    /// The rewritten request head.
    head: Vec<u8>,
    /// The bytes of each attempt, then the response head.
    work: Vec<u8>,
    /// The request line, for the access log.
    request_line: String,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            head: Vec::with_capacity(HEAD_BUFFER),
            work: Vec::with_capacity(HEAD_BUFFER),
            request_line: String::new(),
        }
    }

    /// Gives the memory back while the connection is parked.
    fn release(&mut self) {
        *self = Scratch::default();
    }

    /// Takes room again when a parked connection wakes.
    fn restore(&mut self) {
        self.head.reserve(HEAD_BUFFER);
        self.work.reserve(HEAD_BUFFER);
    }
}

impl Downstream {
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
struct Failure {
    error: ProxyError,
    response_started: bool,
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
/// for `PARK_AFTER`. Parked, the connection holds no buffers and this small future
/// only waits for readability, so an idle client costs about 0.8 KB (PERF.md).
pub async fn serve(shard: Rc<Shard>, guard: ConnectionGuard, stream: TcpStream, peer: SocketAddr) {
    let mut client = Downstream {
        stream,
        peer,
        buf: Vec::with_capacity(CLIENT_BUFFER),
        pos: 0,
        write_timeout: shard.settings.idle_timeout,
        read_total: 0,
        written_total: 0,
    };
    let mut scratch = Scratch::new();
    let mut first = true;
    loop {
        let wait = match Box::pin(serve_active(
            &shard,
            &guard,
            &mut client,
            &mut scratch,
            &mut first,
        ))
        .await
        {
            Active::Parked { wait } => wait,
            Active::Ended => return,
        };
        client.buf = Vec::new();
        scratch.release();
        // No timer here (a monoio `Sleep` alone is 640 bytes): the shard's
        // sweep shuts the socket down at the deadline, which ends the wait.
        shard.set_parked(&guard, Some(Instant::now() + wait));
        let ready = client.stream.readable(false).await;
        shard.set_parked(&guard, None);
        if ready.is_err() || shard.draining() {
            return;
        }
        client.buf.reserve(CLIENT_BUFFER);
        scratch.restore();
    }
}

/// How an active phase of a connection ended.
enum Active {
    /// Idle for `PARK_AFTER`: park, and give up after `wait` more.
    Parked { wait: Duration },
    /// The connection is done (closed, failed, timed out, or draining).
    Ended,
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
        proto: "http",
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
            Ok(Next::End) => return Active::Ended,
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
        ShardStats::bump(&shard.stats.requests);
        if shard.access_log.is_some() {
            let head = &client.buf[client.pos - request.head_len..client.pos];
            let (method, target) = h1::method_and_target(head);
            let line = &mut scratch.request_line;
            line.clear();
            line.push_str(&String::from_utf8_lossy(method));
            line.push(' ');
            line.push_str(&String::from_utf8_lossy(target));
        }
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
        let result = proxy_request(
            shard,
            client,
            &request,
            &scratch.head,
            &mut scratch.work,
            &mut record,
            &mut backend,
        )
        .await;
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
            if let Some(log) = &shard.access_log {
                let name = backend.as_ref().map(|b| &*b.name);
                log.write(client.peer, &scratch.request_line, &record, name, now);
            }
        }
        match result {
            Ok(true) => {
                if client.buf.capacity() > CLIENT_BUFFER_KEEP && client.unconsumed() == 0 {
                    client.buf = Vec::with_capacity(CLIENT_BUFFER);
                    client.pos = 0;
                }
            }
            Ok(false) => {
                linger_close(&mut client.stream).await;
                return Active::Ended;
            }
            Err(failure) => {
                fail(shard, client, failure).await;
                return Active::Ended;
            }
        }
    }
}

/// Counts and logs a failure, answers with its status if nothing was sent yet, and
/// closes the connection.
async fn fail(shard: &Shard, client: &mut Downstream, failure: Failure) {
    let error = &failure.error;
    let stats = &shard.stats;
    match error.side() {
        Side::Downstream => ShardStats::bump(&stats.client_errors),
        Side::Upstream => ShardStats::bump(&stats.upstream_errors),
        Side::Internal => ShardStats::bump(&stats.internal_errors),
    }
    log_debug!(
        "shard {}: client {}: {} ({})",
        shard.index,
        client.peer,
        error,
        error.kind()
    );
    if failure.response_started {
        return;
    }
    if let Some(status) = error.status() {
        let written = write_static(
            &mut client.stream,
            error_response(status),
            client.write_timeout,
        );
        if written.await.is_ok() {
            linger_close(&mut client.stream).await;
        }
    }
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
    let settings = &shard.settings;
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
        let idle = client.buf.is_empty();
        if idle && shard.draining() {
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
                IdleRead::Park { wait } => return Ok(Next::Park { wait }),
                IdleRead::TimedOut => None,
            }
        } else {
            monoio::time::timeout(wait, read_more(&mut client.stream, &mut client.buf, 0))
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

/// What a read on a connection with nothing buffered came to.
enum IdleRead {
    /// The read finished (bytes, EOF or an error).
    Read(io::Result<usize>),
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
    let spare = spare_room(&mut client.buf, 0);
    let (result, slice) = {
        let read = client.stream.cancelable_read(spare, canceller.handle());
        let mut read = std::pin::pin!(read);
        monoio::select! {
            done = &mut read => done,
            _ = monoio::time::sleep(hot) => {
                *canceller = mem::take(canceller).cancel();
                read.await
            }
        }
    };
    client.buf = slice.into_inner();
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

/// Most backends one request may try (the first, plus `retry.max_retries` ≤ 7).
const MAX_TRIED: usize = 8;

/// Proxies one request. `head` holds the rewritten request head; `scratch` is a
/// reusable buffer (the bytes of each attempt, then the response head).
/// `Ok(keep_alive)` tells whether the client connection can carry another request.
///
/// An attempt that fails before any response byte reached the client is tried
/// again when the method is idempotent and ringlb holds the whole body: once on a
/// fresh connection to the same backend if a pooled connection broke, and on other
/// backends up to `retry.max_retries`, within the shard's retry budget.
async fn proxy_request(
    shard: &Shard,
    client: &mut Downstream,
    request: &Request,
    head: &[u8],
    scratch: &mut Vec<u8>,
    record: &mut RequestRecord,
    chosen: &mut Option<Rc<Backend>>,
) -> Result<bool, Failure> {
    let settings = &shard.settings;
    shard.earn_retry_budget();
    // The head is still in the buffer: read the routing key and the sticky
    // cookie (which names the backend the client stays with) now.
    let head_bytes = &client.buf[client.pos - request.head_len..client.pos];
    let context = RequestContext {
        client_ip: client.peer.ip(),
        key_hash: key_hash(&settings.balancer, head_bytes, client.peer.ip()),
        // When the head was complete: one clock read fewer per request.
        now: record.started,
    };
    let sticky_cookie: Option<String> = settings.balancer.sticky.as_ref().and_then(|sticky| {
        h1::cookie_value(head_bytes, &sticky.cookie)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    });
    // Small bodies of idempotent requests are read in full first, so that the
    // request can be retried.
    if let BodyKind::Length(n) = request.body {
        let short = n > client.unconsumed() as u64;
        if short
            && n <= settings.max_buffered_body as u64
            && request.method.is_idempotent()
            && !request.expect_continue
        {
            while (client.unconsumed() as u64) < n {
                read_client_body(client, settings.idle_timeout).await?;
            }
        }
    }
    // A body already held in full goes with the head, and again on a retry.
    let held_body = match request.body {
        BodyKind::None => Some(0),
        BodyKind::Length(n) if n <= client.unconsumed() as u64 => Some(n as usize),
        _ => None,
    };
    if request.body == BodyKind::Chunked {
        // Refuse a malformed chunk that already arrived before any backend sees
        // the request (the rest is checked as it streams).
        let mut probe = ChunkedDecoder::new(settings.limits.max_header_bytes);
        let mut pos = client.pos;
        while pos < client.buf.len() && !probe.is_done() {
            let (used, _) = probe
                .decode(&client.buf[pos..])
                .map_err(ProxyError::BadRequest)?;
            if used == 0 {
                break;
            }
            pos += used;
        }
    }
    let retry_allowed = request.method.is_idempotent() && held_body.is_some();
    let mut tried = [0 as BackendId; MAX_TRIED];
    let mut tried_len = 0;
    let mut retries = 0;
    let mut same_backend_fresh: Option<Rc<Backend>> = None;
    let mut last_error = None;
    let mut upbuf = BufferLoan::new(shard, RESPONSE_BUFFER);
    loop {
        let fresh_only = same_backend_fresh.is_some();
        // After a broken pooled connection, the same backend; else a sticky cookie
        // naming an available backend not tried yet; else the strategy.
        let sticky = || {
            let token = sticky_cookie.as_deref()?;
            let balancer = shard.balancer.borrow();
            balancer
                .backends()
                .iter()
                .find(|b| {
                    b.sticky_token() == Some(token)
                        && b.is_available()
                        && !tried[..tried_len].contains(&b.id)
                })
                .cloned()
        };
        let backend = match same_backend_fresh.take().or_else(sticky) {
            Some(backend) => backend,
            None => match shard
                .balancer
                .borrow()
                .select(&context, &tried[..tried_len])
            {
                Some(backend) => backend,
                None => return Err(last_error.unwrap_or(ProxyError::NoBackend).into()),
            },
        };
        backend.note_selected();
        ShardStats::bump(&backend.stats.attempts);
        if retries > 0 || fresh_only {
            ShardStats::bump(&backend.stats.retries);
        }
        *chosen = Some(Rc::clone(&backend));
        record.attempts += 1;
        let failed = match attempt(
            shard,
            client,
            request,
            head,
            scratch,
            &mut upbuf,
            &backend,
            fresh_only,
            held_body,
            record,
            sticky_cookie.as_deref(),
        )
        .await
        {
            Ok(keep_alive) => return Ok(keep_alive),
            Err(failed) => failed,
        };
        let AttemptFailure {
            error,
            before_response,
            reused,
        } = failed;
        if error.side() == Side::Upstream {
            ShardStats::bump(&backend.stats.failures);
            shard.report_outcome(&backend, false);
        }
        if !(retry_allowed && before_response && error.retryable()) {
            return Err(Failure {
                error,
                response_started: !before_response,
            });
        }
        log_debug!(
            "shard {}: attempt on {} failed ({error}); retrying",
            shard.index,
            backend.name
        );
        if reused && matches!(error, ProxyError::UpstreamIo(_)) {
            // A pooled connection broke: the backend itself may be fine.
            ShardStats::bump(&shard.stats.upstream_retries);
            same_backend_fresh = Some(backend);
            continue;
        }
        if retries >= settings.max_retries || tried_len == MAX_TRIED {
            return Err(error.into());
        }
        if !shard.spend_retry_budget() {
            ShardStats::bump(&shard.stats.retries_over_budget);
            return Err(error.into());
        }
        ShardStats::bump(&shard.stats.upstream_retries);
        tried[tried_len] = backend.id;
        tried_len += 1;
        retries += 1;
        last_error = Some(error);
    }
}

/// The hash consistent hashing routes by: `balancer.hash_key` from the request
/// head; a request without that header or cookie is routed by its client address.
fn key_hash(config: &BalancerConfig, head: &[u8], client: std::net::IpAddr) -> u64 {
    if config.strategy != Strategy::ConsistentHash {
        return 0;
    }
    let key = match &config.hash_key {
        HashKey::ClientIp => None,
        HashKey::Path => Some(h1::target_path(head)),
        HashKey::Header(name) => h1::header_value(head, name),
        HashKey::Cookie(name) => h1::cookie_value(head, name),
    };
    key.map_or_else(|| hash_ip(client), hash_bytes)
}

/// A buffer lent by the shard's pool, returned when dropped (whatever way the
/// request ends).
struct BufferLoan<'s> {
    shard: &'s Shard,
    buffer: Vec<u8>,
}

impl<'s> BufferLoan<'s> {
    fn new(shard: &'s Shard, capacity: usize) -> Self {
        BufferLoan {
            shard,
            buffer: shard.take_buffer(capacity),
        }
    }
}

impl std::ops::Deref for BufferLoan<'_> {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buffer
    }
}

impl std::ops::DerefMut for BufferLoan<'_> {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }
}

impl Drop for BufferLoan<'_> {
    fn drop(&mut self) {
        self.shard.give_buffer(mem::take(&mut self.buffer));
    }
}

/// Why an attempt failed, and whether the client saw anything of a response.
struct AttemptFailure {
    error: ProxyError,
    /// No byte of a response (not even an interim one) reached the client.
    before_response: bool,
    /// The attempt used a pooled connection.
    reused: bool,
}

/// One attempt: one backend, one upstream connection. `Ok(keep_alive)` as for
/// `proxy_request`.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    shard: &Shard,
    client: &mut Downstream,
    request: &Request,
    head: &[u8],
    scratch: &mut Vec<u8>,
    upbuf: &mut Vec<u8>,
    backend: &Rc<Backend>,
    fresh_only: bool,
    held_body: Option<usize>,
    record: &mut RequestRecord,
    sticky_cookie: Option<&str>,
) -> Result<bool, AttemptFailure> {
    let before = |reused: bool| {
        move |error: ProxyError| AttemptFailure {
            error,
            before_response: true,
            reused,
        }
    };
    let in_flight = InFlight::start(backend);
    let (mut upstream, reused) = checkout(shard, backend, fresh_only)
        .await
        .map_err(before(false))?;

    // Send the head (and a held body) in one write.
    scratch.clear();
    if request.missing_host {
        scratch.extend_from_slice(&head[..head.len() - 2]);
        let _ = write!(scratch, "Host: {}\r\n\r\n", backend.address);
    } else {
        scratch.extend_from_slice(head);
    }
    if let Some(n) = held_body {
        scratch.extend_from_slice(&client.buf[client.pos..client.pos + n]);
    }
    let len = scratch.len();
    write_range(
        &mut upstream,
        scratch,
        0..len,
        shard.settings.backend_response_timeout,
    )
    .await
    .map_err(|e| before(reused)(ProxyError::UpstreamIo(e.kind())))?;
    let sent_at = Instant::now();
    if held_body.is_none() {
        if request.expect_continue && !request.http10 {
            write_client(client, CONTINUE)
                .await
                .map_err(before(reused))?;
        }
        // A streamed body is never retried, so `before_response` no longer matters
        // for retries; it still decides whether the client gets an error status.
        send_body(shard, client, &mut upstream, request.body)
            .await
            .map_err(|f| AttemptFailure {
                error: f.error,
                before_response: !f.response_started,
                reused,
            })?;
    }

    // The response timeout runs from the end of the request: a streamed body took
    // time of its own; a held one went out with the head.
    let request_sent = if held_body.is_none() {
        Instant::now()
    } else {
        sent_at
    };
    let client_side = ClientSide {
        method: request.method,
        http10: request.http10,
        keep_alive: request.keep_alive,
    };
    upbuf.clear();
    let response = read_response(
        shard,
        client,
        &mut upstream,
        upbuf,
        &client_side,
        scratch,
        request_sent,
    )
    .await
    .map_err(|e| match e {
        ResponseError::Interim(error) => AttemptFailure {
            error,
            before_response: false,
            reused,
        },
        ResponseError::BeforeAnyByte(error) => before(reused)(error),
        // Bytes came back, but none reached the client: still no response.
        ResponseError::Other(error) => AttemptFailure {
            error,
            before_response: true,
            reused: false,
        },
    })?;
    if let Some(n) = held_body {
        client.pos += n;
    }
    if shard.settings.balancer.strategy == Strategy::LeastResponse {
        let now = Instant::now();
        backend.observe_latency(now - sent_at, now, shard.settings.balancer.ewma_decay);
    }
    shard.report_outcome(
        backend,
        !(shard.settings.count_5xx && response.status >= 500),
    );
    record.status = response.status;
    if let (Some(sticky), Some(token)) = (&shard.settings.balancer.sticky, backend.sticky_token()) {
        if sticky_cookie != Some(token) {
            // The head ends with the blank line: add the field before it.
            scratch.truncate(scratch.len() - 2);
            let _ = write!(
                scratch,
                "Set-Cookie: {}={token}; Path=/; Max-Age={}; HttpOnly\r\n\r\n",
                sticky.cookie,
                sticky.ttl.as_secs()
            );
        }
    }
    let upstream_clean = send_response(shard, client, &mut upstream, upbuf, scratch, &response)
        .await
        .map_err(|error| AttemptFailure {
            error,
            before_response: false,
            reused,
        })?;
    let backend = in_flight.backend();
    if upstream_clean && response.upstream_reusable && !shard.draining() && backend.is_available() {
        backend.pool.checkin(upstream, Instant::now());
    }
    Ok(response.client_keep_alive)
}

/// A pooled connection to `backend`, or a new one.
async fn checkout(
    shard: &Shard,
    backend: &Rc<Backend>,
    fresh_only: bool,
) -> Result<(TcpStream, bool), ProxyError> {
    if !fresh_only {
        // The clock now, not the request's start: a retry may come many seconds
        // later, and the pool must expire what has idled too long by then.
        if let Some(stream) = backend.pool.checkout(Instant::now()) {
            ShardStats::bump(&shard.stats.upstream_reuses);
            return Ok((stream, true));
        }
    }
    let stream = upstream::connect(backend.address, shard.settings.connect_timeout).await?;
    ShardStats::bump(&shard.stats.upstream_connects);
    Ok((stream, false))
}

/// Streams a request body that is not held in full from the client to upstream.
async fn send_body(
    shard: &Shard,
    client: &mut Downstream,
    upstream: &mut TcpStream,
    body: BodyKind,
) -> Result<(), Failure> {
    let settings = &shard.settings;
    match body {
        BodyKind::None | BodyKind::CloseDelimited => Ok(()),
        BodyKind::Length(mut remaining) => {
            while remaining > 0 {
                if client.unconsumed() == 0 {
                    client.compact();
                    read_client_body(client, settings.idle_timeout).await?;
                }
                let n = (client.unconsumed() as u64).min(remaining) as usize;
                let range = client.pos..client.pos + n;
                write_range(
                    upstream,
                    &mut client.buf,
                    range,
                    settings.backend_response_timeout,
                )
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
                    let sent = write_range(
                        upstream,
                        &mut out,
                        0..len,
                        settings.backend_response_timeout,
                    )
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

/// Appends one decoded event re-framed as chunked.
fn encode_chunk_event(event: Option<ChunkEvent<'_>>, out: &mut Vec<u8>) {
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
async fn read_client_body(client: &mut Downstream, timeout: Duration) -> Result<(), ProxyError> {
    match monoio::time::timeout(
        timeout,
        read_more(&mut client.stream, &mut client.buf, BODY_BUFFER),
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

enum ResponseError {
    /// Nothing came back on the connection: safe to retry if the request is held.
    BeforeAnyByte(ProxyError),
    /// An interim (1xx) response already reached the client.
    Interim(ProxyError),
    /// Anything else.
    Other(ProxyError),
}

/// Reads the final response head; forwards interim (1xx) responses to HTTP/1.1
/// clients on the way. On success `head` holds the rewritten head and `upbuf[..]`
/// starts with the head, followed by any body bytes already read.
async fn read_response(
    shard: &Shard,
    client: &mut Downstream,
    upstream: &mut TcpStream,
    upbuf: &mut Vec<u8>,
    client_side: &ClientSide,
    head: &mut Vec<u8>,
    request_sent: Instant,
) -> Result<h1::Response, ResponseError> {
    let settings = &shard.settings;
    let deadline = request_sent + settings.backend_response_timeout;
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
            // Decided now, not when the request went out: a drain that began while
            // the backend worked still closes this connection after the response.
            let side = ClientSide {
                keep_alive: client_side.keep_alive && !shard.draining(),
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
            settings.backend_response_timeout
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        first_read = false;
        let got_bytes = !upbuf.is_empty();
        match monoio::time::timeout(wait, read_more(upstream, upbuf, RESPONSE_BUFFER)).await {
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
async fn send_response(
    shard: &Shard,
    client: &mut Downstream,
    upstream: &mut TcpStream,
    upbuf: &mut Vec<u8>,
    head: &mut Vec<u8>,
    response: &h1::Response,
) -> Result<bool, ProxyError> {
    let settings = &shard.settings;
    let read_timeout = settings.backend_response_timeout;
    upbuf.drain(..response.head_len);
    let mut out = mem::take(head);
    let clean = match response.upstream_body {
        BodyKind::None => {
            write_all_client(client, &mut out).await?;
            upbuf.is_empty()
        }
        BodyKind::Length(mut remaining) => {
            loop {
                let n = (upbuf.len() as u64).min(remaining) as usize;
                let extra = upbuf.len() > n;
                if out.is_empty() && n == upbuf.len() && n > 0 {
                    // Nothing else to send: write straight from the read buffer.
                    write_range(&mut client.stream, upbuf, 0..n, client.write_timeout)
                        .await
                        .map_err(|e| ProxyError::ClientIo(e.kind()))?;
                    client.written_total += n as u64;
                } else {
                    out.extend_from_slice(&upbuf[..n]);
                    write_all_client(client, &mut out).await?;
                }
                remaining -= n as u64;
                upbuf.clear();
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
                    Err(ProxyError::UpstreamIo(io::ErrorKind::UnexpectedEof)) => break false,
                    Err(e) => return Err(e),
                }
                let len = upbuf.len();
                write_range(&mut client.stream, upbuf, 0..len, client.write_timeout)
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
    upstream: &mut TcpStream,
    upbuf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), ProxyError> {
    match monoio::time::timeout(timeout, read_more(upstream, upbuf, BODY_BUFFER)).await {
        Ok(Ok(0)) => Err(ProxyError::UpstreamIo(io::ErrorKind::UnexpectedEof)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ProxyError::UpstreamIo(e.kind())),
        Err(_) => Err(ProxyError::ResponseTimeout),
    }
}

async fn write_client(client: &mut Downstream, bytes: &'static [u8]) -> Result<(), ProxyError> {
    write_static(&mut client.stream, bytes, client.write_timeout)
        .await
        .map_err(|e| ProxyError::ClientIo(e.kind()))?;
    client.written_total += bytes.len() as u64;
    Ok(())
}

/// Writes all of `out` to the client and clears it, keeping its capacity.
async fn write_all_client(client: &mut Downstream, out: &mut Vec<u8>) -> Result<(), ProxyError> {
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
async fn write_static(
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
async fn read_more(
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
fn spare_room(buf: &mut Vec<u8>, min_spare: usize) -> SliceMut<Vec<u8>> {
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
async fn write_range(
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
async fn linger_close(stream: &mut TcpStream) {
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
