//! `proxy::http1::forward`: one request, from its backend's choice to its last byte.
//!
//! Owns the attempts of one request: the choice of backend (sticky cookie, then the
//! cluster's strategy), the pooled or fresh upstream connection, sending the head and
//! body, and the retry rules (idempotent, body held, nothing sent to the client yet,
//! within the retry budget), and whether the upstream connection may be pooled (not
//! after a PROXY header or an upgrade request). A WebSocket `101` ends the request
//! with the upstream connection for a tunnel (`Done::Upgraded`). Called once per
//! request by the connection task.

use std::io::Write as _;
use std::mem;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cluster::backend::{Backend, BackendId, InFlight};
use crate::cluster::balancer::{hash_bytes, hash_ip, RequestContext};
use crate::cluster::{Cluster, ClusterSettings};
use crate::config::{BalancerConfig, HashKey, Strategy, UpstreamProtocol};
use crate::log_debug;
use crate::observe::stats::{RequestRecord, ShardStats};
use crate::protocol::h1::{self, BodyKind, ChunkedDecoder, ClientSide, Request};
use crate::protocol::proxy_header;
use crate::proxy::error::{ProxyError, Side};
use crate::proxy::proxied;
use crate::proxy::MAX_TRIED;
use crate::shard::{Shard, ShardSettings};
use crate::upstream::{self, UpstreamTls};

use super::body::{read_client_body, send_body};
use super::response::{read_response, send_response, ResponseError};
use super::socket::{write_all_client, write_client, ClientIo};
use super::{Downstream, Failure, Scratch, RESPONSE_BUFFER};
use crate::stream::Stream;

pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How a proxied request left the client connection.
pub(in crate::proxy) enum Done {
    /// The response went out; `keep_alive` tells whether the connection can carry
    /// another request, and `body_unread` whether the client may still be
    /// sending a body the backend answered before it had (an early response):
    /// closing then must linger, or a reset could erase the response.
    Next { keep_alive: bool, body_unread: bool },
    /// The backend switched protocols (WebSocket): the connection is a tunnel now.
    Upgraded(Upgraded),
}

/// A WebSocket connection the backend accepted, ready to become a tunnel.
pub(in crate::proxy) struct Upgraded {
    /// The upstream connection (never pooled again).
    pub(super) upstream: Stream,
    /// Counts the tunnel as in flight to its backend (least-conn) while it lives.
    pub(super) in_flight: InFlight,
    /// Bytes the backend sent after its 101 head, for the client first.
    pub(super) to_client: Vec<u8>,
}

/// Proxies one request. `head` holds the rewritten request head; `scratch` is a
/// reusable buffer (the bytes of each attempt, then the response head).
///
/// An attempt that fails before any response byte reached the client is tried
/// again when the method is idempotent and ringlb holds the whole body: once on a
/// fresh connection to the same backend if a pooled connection broke, and on other
/// backends up to `retry.max_retries`, within the cluster's retry budget.
pub(super) async fn proxy_request(
    shard: &Shard,
    cluster: &Cluster,
    client: &mut Downstream<impl ClientIo>,
    request: &Request,
    scratch: &mut Scratch,
    record: &mut RequestRecord,
    chosen: &mut Option<Rc<Backend>>,
) -> Result<Done, Failure> {
    let Scratch { head, work, .. } = scratch;
    let (head, scratch) = (&head[..], work);
    let shard_settings = shard.settings();
    let settings = &cluster.settings;
    cluster.earn_retry_budget();
    // The head is still in the buffer: read the routing key and the sticky
    // cookie (which names the backend the client stays with) now.
    let head_bytes = &client.buf[client.pos - request.head_len..client.pos];
    let context = RequestContext {
        client_ip: client.peer.ip(),
        key_hash: key_hash(
            &settings.balancer,
            head_bytes,
            request.routing_path(head_bytes),
            client.peer.ip(),
        ),
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
                read_client_body(client, shard_settings.idle_timeout).await?;
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
        let mut probe = ChunkedDecoder::new(shard_settings.limits.max_header_bytes);
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
    let outbound = Outbound {
        shard,
        settings: &shard_settings,
        cluster,
        request,
        head,
        held_body,
        sticky_cookie: sticky_cookie.as_deref(),
    };
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
        let sticky = || cluster.sticky_backend(sticky_cookie.as_deref()?, &tried[..tried_len]);
        let backend = match same_backend_fresh.take().or_else(sticky) {
            Some(backend) => backend,
            None => match cluster
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
        let pick = Pick {
            backend: &backend,
            fresh_only,
        };
        let failed = match attempt(client, &outbound, pick, scratch, &mut upbuf, record).await {
            Ok(done) => return Ok(done),
            Err(failed) => failed,
        };
        let AttemptFailure {
            error,
            before_response,
            final_started,
            reused,
            report,
        } = failed;
        // A refused stream was not acted on: no failure of the backend's.
        if error.side() == Side::Upstream && !matches!(error, ProxyError::UpstreamRefused) {
            ShardStats::bump(&backend.stats.failures);
            if report {
                shard.report_outcome(cluster, &backend, false);
            }
        }
        // A connection that could not be opened carried nothing: any request
        // may go elsewhere, whatever its method, its body still unread or held.
        let never_sent = matches!(
            error,
            ProxyError::Connect(_)
                | ProxyError::ConnectTimeout
                | ProxyError::OutOfResources(_)
                | ProxyError::UpstreamRefused
        );
        if !((retry_allowed || never_sent) && before_response && error.retryable()) {
            return Err(Failure {
                error,
                response_started: final_started,
            });
        }
        log_debug!(
            "shard {}: attempt on {} failed ({error}); retrying",
            shard.index,
            backend.name
        );
        let stale = reused && matches!(error, ProxyError::UpstreamIo(_));
        if !fresh_only && (stale || matches!(error, ProxyError::UpstreamRefused)) {
            // A pooled connection broke, or an HTTP/2 backend refused a stream
            // (it was going away, or busy): the backend itself may be fine.
            // Once, on a new connection.
            ShardStats::bump(&shard.stats.upstream_retries);
            same_backend_fresh = Some(backend);
            continue;
        }
        if retries >= settings.max_retries || tried_len == MAX_TRIED {
            return Err(error.into());
        }
        if !cluster.spend_retry_budget() {
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
fn key_hash(config: &BalancerConfig, head: &[u8], path: &[u8], client: std::net::IpAddr) -> u64 {
    if config.strategy != Strategy::ConsistentHash {
        return 0;
    }
    let key = match &config.hash_key {
        HashKey::ClientIp => None,
        // The path as routed: an absolute-form target hashes like its origin form.
        HashKey::Path => Some(path),
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

/// What every attempt of one request sends, and the settings it runs under.
#[derive(Clone, Copy)]
pub(super) struct Outbound<'r> {
    /// The shard serving it.
    pub(super) shard: &'r Shard,
    /// The shard's settings when the request was read.
    pub(super) settings: &'r ShardSettings,
    /// The cluster its route chose.
    pub(super) cluster: &'r Cluster,
    /// The parsed request.
    pub(super) request: &'r Request,
    /// Its rewritten head.
    pub(super) head: &'r [u8],
    /// Bytes of body held in full: sent with the head, and again on a retry.
    pub(super) held_body: Option<usize>,
    /// The sticky cookie the client sent, if any.
    pub(super) sticky_cookie: Option<&'r str>,
}

/// One attempt's backend, and whether it must use a fresh connection (after a
/// pooled one broke).
#[derive(Clone, Copy)]
pub(super) struct Pick<'b> {
    pub(super) backend: &'b Rc<Backend>,
    pub(super) fresh_only: bool,
}

/// Why an attempt failed, and whether the client saw anything of a response.
pub(super) struct AttemptFailure {
    pub(super) error: ProxyError,
    /// No byte of a response (not even an interim one) reached the client.
    pub(super) before_response: bool,
    /// Part of the final response reached the client: it can get no error status.
    /// (After an interim response alone it still can.)
    pub(super) final_started: bool,
    /// The attempt used a pooled (or, over HTTP/2, shared) connection.
    pub(super) reused: bool,
    /// Whether an upstream failure is reported to the breaker: not when another
    /// stream already reported the failure of the HTTP/2 connection they shared.
    pub(super) report: bool,
}

impl AttemptFailure {
    /// A failure before any response reached the client.
    pub(super) fn before(error: ProxyError, reused: bool) -> AttemptFailure {
        AttemptFailure {
            error,
            before_response: true,
            final_started: false,
            reused,
            report: true,
        }
    }
}

/// One attempt: one backend, one upstream connection.
async fn attempt(
    client: &mut Downstream<impl ClientIo>,
    outbound: &Outbound<'_>,
    pick: Pick<'_>,
    scratch: &mut Vec<u8>,
    upbuf: &mut Vec<u8>,
    record: &mut RequestRecord,
) -> Result<Done, AttemptFailure> {
    let Outbound {
        shard,
        cluster,
        request,
        head,
        held_body,
        ..
    } = *outbound;
    let settings = &cluster.settings;
    if settings.upstream_protocol == UpstreamProtocol::H2 {
        // Boxed: the HTTP/1.1 attempt's future stays its own size.
        return Box::pin(super::upstream_h2::attempt(
            client, outbound, pick, scratch, upbuf, record,
        ))
        .await;
    }
    let Pick {
        backend,
        fresh_only,
    } = pick;
    let before = |reused: bool| {
        move |error: ProxyError| AttemptFailure {
            error,
            before_response: true,
            final_started: false,
            reused,
            report: true,
        }
    };
    let in_flight = InFlight::start(backend);
    // A connection that carried a client's PROXY header is that client's: never
    // taken from the pool, nor given back to it. One that carried an upgrade
    // request never goes back either, whatever the answer: the backend may treat
    // it as switched.
    let private = settings.send_proxy.is_some();
    scratch.clear();
    if let Some(version) = settings.send_proxy {
        let destination = proxied::destination(
            client.destination,
            || client.stream.local_addr(),
            client.listener.address,
        );
        proxy_header::write(scratch, version, client.peer, destination);
    }
    // Over TLS the PROXY header goes before the handshake, in the clear; else
    // with the head.
    let tls = cluster.tls();
    let connect_tls = tls.as_deref().map(|tls| (tls, &scratch[..]));
    let (mut upstream, reused) =
        checkout(shard, settings, backend, fresh_only || private, connect_tls)
            .await
            .map_err(before(false))?;
    if tls.is_some() {
        scratch.clear();
    }

    // Send the head (and a held body) in one write.
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
    if let Err(e) = upstream
        .write_range(scratch, 0..len, settings.backend_response_timeout)
        .await
    {
        abandon(&upstream);
        return Err(before(reused)(ProxyError::UpstreamIo(e.kind())));
    }
    let sent_at = Instant::now();
    if held_body.is_none() {
        if request.expect_continue && !request.http10 {
            write_client(client, CONTINUE)
                .await
                .map_err(before(reused))?;
        }
        // A streamed body is never retried, so `before_response` no longer matters
        // for retries.
        let sent = Box::pin(send_body(outbound, client, &mut upstream, request.body)).await;
        if let Err(mut failure) = sent {
            // A backend may answer before the body is in (a 413 from an upload
            // limit, a 401) and close, or stop reading: its answer is the response.
            if let ProxyError::UpstreamIo(kind) = failure.error {
                // A backend that stopped reading for a whole `backend_response`
                // has had that long to answer: what it said is already here.
                let stalled = kind == std::io::ErrorKind::TimedOut;
                let wait = if stalled {
                    EARLY_GRACE
                } else {
                    outbound.cluster.settings.backend_response_timeout
                };
                // Boxed, as are the body and a new connection: rare or slow
                // paths whose state would otherwise make every request's future
                // (and every HTTP/2 stream's task) kilobytes larger.
                let early = Box::pin(early_response(
                    outbound,
                    pick,
                    client,
                    &mut upstream,
                    upbuf,
                    scratch,
                    record,
                    wait,
                ));
                if let Some(done) = early.await {
                    return Ok(done);
                }
                if stalled {
                    failure.error = ProxyError::ResponseTimeout;
                }
            }
            abandon(&upstream);
            return Err(AttemptFailure {
                error: failure.error,
                before_response: !failure.response_started,
                final_started: failure.response_started,
                reused,
                report: true,
            });
        }
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
        upgrade: request.upgrade,
    };
    upbuf.clear();
    let response = read_response(
        outbound,
        client,
        &mut upstream,
        upbuf,
        &client_side,
        scratch,
        request_sent,
        outbound.cluster.settings.backend_response_timeout,
    )
    .await
    .map_err(|e| match e {
        // An interim response reached the client: no retry, but a final error
        // status can still follow it.
        ResponseError::Interim(error) => AttemptFailure {
            error,
            before_response: false,
            final_started: false,
            reused,
            report: true,
        },
        ResponseError::BeforeAnyByte(error) => before(reused)(error),
        // Bytes came back, but none reached the client: still no response.
        ResponseError::Other(error) => AttemptFailure {
            error,
            before_response: true,
            final_started: false,
            reused: false,
            report: true,
        },
    })?;
    if let Some(n) = held_body {
        client.pos += n;
    }
    if settings.balancer.strategy == Strategy::LeastResponse {
        let now = Instant::now();
        backend.observe_latency(now - sent_at, now, settings.balancer.ewma_decay);
    }
    shard.report_outcome(
        cluster,
        backend,
        !(settings.count_5xx && response.status >= 500),
    );
    record.status = response.status;
    add_sticky_cookie(outbound, backend, scratch);
    // From here the final response is on its way to the client.
    let after_final = |error: ProxyError| AttemptFailure {
        error,
        before_response: false,
        final_started: true,
        reused,
        report: true,
    };
    if response.upgraded {
        // The 101 (with the sticky cookie, if due) goes out, and the connection is a
        // tunnel from here: never pooled.
        write_all_client(client, scratch)
            .await
            .map_err(after_final)?;
        let to_client = upbuf[response.head_len..].to_vec();
        return Ok(Done::Upgraded(Upgraded {
            upstream,
            in_flight,
            to_client,
        }));
    }
    let upstream_clean = send_response(outbound, client, &mut upstream, upbuf, scratch, &response)
        .await
        .map_err(after_final)?;
    let backend = in_flight.backend();
    if upstream_clean
        && response.upstream_reusable
        && !private
        && !request.upgrade
        && !shard.draining()
        && backend.is_available()
        && made_with_current_tls(cluster, tls.as_ref())
    {
        backend.pool.checkin(upstream, Instant::now());
    }
    Ok(Done::Next {
        keep_alive: response.client_keep_alive,
        body_unread: false,
    })
}

/// Adds the sticky cookie naming `backend` to the response head in `head`, when
/// the cluster has sticky sessions and the client did not send that cookie.
pub(super) fn add_sticky_cookie(outbound: &Outbound<'_>, backend: &Backend, head: &mut Vec<u8>) {
    let settings = &outbound.cluster.settings;
    if let (Some(sticky), Some(token)) = (&settings.balancer.sticky, backend.sticky_token()) {
        if outbound.sticky_cookie != Some(&*token) {
            // The head ends with the blank line: add the field before it.
            head.truncate(head.len() - 2);
            let _ = write!(
                head,
                "Set-Cookie: {}={token}; Path=/; Max-Age={}; HttpOnly\r\n\r\n",
                sticky.cookie,
                sticky.ttl.as_secs()
            );
        }
    }
}

/// How long a backend that stopped reading a request body is given to show an
/// early response already on its way.
pub(super) const EARLY_GRACE: Duration = Duration::from_millis(100);

/// After sending the body failed: the backend's response, if it answered early
/// (within `wait`),
/// forwarded to the client, which is then closed (the rest of its body was not
/// read). `None` when there is no response to forward.
#[allow(clippy::too_many_arguments)]
async fn early_response(
    outbound: &Outbound<'_>,
    pick: Pick<'_>,
    client: &mut Downstream<impl ClientIo>,
    upstream: &mut Stream,
    upbuf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    record: &mut RequestRecord,
    wait: Duration,
) -> Option<Done> {
    let request = outbound.request;
    let client_side = ClientSide {
        method: request.method,
        http10: request.http10,
        keep_alive: false,
        upgrade: false,
    };
    upbuf.clear();
    let sent = Instant::now();
    let response = read_response(
        outbound,
        client,
        upstream,
        upbuf,
        &client_side,
        scratch,
        sent,
        wait,
    )
    .await
    .ok()?;
    ShardStats::bump(&outbound.shard.stats.early_responses);
    log_debug!(
        "shard {}: {} answered {} before the request body was in",
        outbound.shard.index,
        pick.backend.name,
        response.status
    );
    record.status = response.status;
    outbound
        .shard
        .report_outcome(outbound.cluster, pick.backend, true);
    // Whatever happens now, the client connection closes; a failure here is the
    // client's or a cut-off response, and either way nothing more can be sent.
    let _ = send_response(outbound, client, upstream, upbuf, scratch, &response).await;
    // What the backend did not read of the body stays unsent.
    abandon(upstream);
    Some(Done::Next {
        keep_alive: false,
        body_unread: true,
    })
}

/// Whether a connection made with `tls` may go back to the pool: a reload may
/// have given the cluster new TLS material meanwhile (and emptied its pools).
fn made_with_current_tls(cluster: &Cluster, tls: Option<&Rc<UpstreamTls>>) -> bool {
    match (tls, cluster.tls()) {
        (None, None) => true,
        (Some(used), Some(now)) => Rc::ptr_eq(used, &now),
        _ => false,
    }
}

/// Makes the close of a backend connection given up mid-request a reset: unsent
/// bytes would otherwise keep the closed socket alive, orphaned, until the backend
/// reads them or the kernel gives up.
fn abandon(upstream: &Stream) {
    let _ = crate::sys::set_linger_zero(upstream.tcp().as_raw_fd());
}

/// A pooled connection to `backend`, or a new one.
async fn checkout(
    shard: &Shard,
    settings: &ClusterSettings,
    backend: &Rc<Backend>,
    fresh_only: bool,
    tls: Option<(&UpstreamTls, &[u8])>,
) -> Result<(Stream, bool), ProxyError> {
    if !fresh_only {
        // The clock now, not the request's start: a retry may come many seconds
        // later, and the pool must expire what has idled too long by then.
        if let Some(stream) = backend.pool.checkout(Instant::now()) {
            ShardStats::bump(&shard.stats.upstream_reuses);
            return Ok((stream, true));
        }
    }
    let stream = Box::pin(upstream::connect(
        backend.address,
        settings.connect_timeout,
        tls,
    ))
    .await?;
    ShardStats::bump(&shard.stats.upstream_connects);
    Ok((stream, false))
}
