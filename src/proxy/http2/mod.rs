//! `proxy::http2`: HTTP/2 client connections (`h2c`), stream after stream, to
//! HTTP/1.1 backends.
//!
//! Owns the connection task and the stream tasks. The `h2` crate does the framing,
//! HPACK and flow control over the socket lent to it (`pollio`); each stream
//! enters the forwarding core HTTP/1.1 requests go through (`http1::exchange`) as
//! the HTTP/1.1 request it would have been (`protocol::h2::convert`), re-parsed by
//! `h1::parse_request`, so it meets the same limits, smuggling rules, routing,
//! retries and records. [`client`] is a stream as the core's client. The
//! connection sends GOAWAY when the shard drains, its listener is removed, or it
//! has had no stream for `timeouts.idle`. Never blocks, never shares a stream
//! with another shard.

mod client;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::Request;

use crate::log_debug;
use crate::observe::h2::ResetWay;
use crate::observe::stats::{RequestRecord, ShardStats};
use crate::pollio::PollStream;
use crate::protocol::h1::{self, Forwarding, Method};
use crate::protocol::h2::convert;
use crate::protocol::h2::meter::{Caps, Flood, FrameMeter};
use crate::proxy::error::{error_response, ProxyError};
use crate::proxy::http1::{count_failure, exchange, ClientIo, Done, Downstream, Scratch};
use crate::proxy::proxied::Accepted;
use crate::shard::{ConnectionGuard, Shard, ShardListener};
use crate::stream::TlsLogged;

use client::StreamEnd;

/// Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
const MAX_STREAMS: u32 = 100;
/// The window a stream starts with for its request body: what one stream may
/// send ahead of ringlb reading it (nginx's default too).
const STREAM_WINDOW: u32 = 64 * 1024;
/// The connection's receive window: room for every stream's whole window, so
/// that uploads stalled on a slow backend never block the other streams (as
/// nginx, which opens the connection window fully). At most 6.25 MiB of request
/// body waits in h2's buffers per connection.
const CONNECTION_WINDOW: u32 = MAX_STREAMS * STREAM_WINDOW;
/// Response bytes h2 may queue per stream before the client's window lets them go.
const SEND_BUFFER: usize = 64 * 1024;
/// How often a connection with nothing to do looks at the shard (drain, removed
/// listener) and at its idle deadline.
const TICK: Duration = Duration::from_millis(250);
/// How long a flooding client's connection is given to take its GOAWAY.
const LINGER_AFTER_FLOOD: Duration = Duration::from_secs(1);
/// How long a connection with no stream left may stay open after its GOAWAY
/// (the client's PING answer brings the final one), and then how long the final
/// one gets to go out.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// Serves one HTTP/2 connection (prior knowledge: it starts with the preface)
/// until it closes, fails, idles out, or the shard drains.
pub async fn serve(
    shard: Rc<Shard>,
    listener: Rc<ShardListener>,
    guard: ConnectionGuard,
    accepted: Accepted,
) {
    let Accepted {
        stream,
        client: peer,
        destination,
        early,
    } = accepted;
    // The socket's own address, asked once for all the streams (a PROXY header
    // to a backend names it when the client's PROXY header did not).
    let local = stream.tcp().local_addr().ok();
    // What the streams' requests and log lines say of the connection.
    let tls = stream.tls_logged().map(Rc::new);
    let proto = if tls.is_some() { "https" } else { "http" };
    let tripped = Rc::new(Cell::new(None));
    let io = match stream.into_poll(early) {
        Ok(io) => io.metered(FrameMeter::new(Caps::default()), Rc::clone(&tripped)),
        Err(e) => {
            log_debug!("shard {}: client {peer}: HTTP/2: {e}", shard.index);
            return;
        }
    };
    let settings = shard.settings();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(settings.limits.max_header_bytes as u32)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(SEND_BUFFER);
    // The preface and SETTINGS come within `timeouts.header_read`, as a first
    // HTTP/1.1 head must.
    // Boxed, like the closing waits below: what only the start or the end of a
    // connection needs must not stay in its task for its whole life.
    let handshake = Box::pin(monoio::time::timeout(
        settings.header_read_timeout,
        builder.handshake::<_, Bytes>(io),
    ));
    let mut connection = match handshake.await {
        Ok(Ok(connection)) => {
            shard.stats.h2.connection();
            connection
        }
        Ok(Err(e)) => {
            shard.stats.h2.preface_failed();
            log_debug!(
                "shard {}: client {peer}: HTTP/2 handshake: {e}",
                shard.index
            );
            return;
        }
        Err(_) => {
            shard.stats.h2.preface_failed();
            log_debug!(
                "shard {}: client {peer}: HTTP/2 preface timed out",
                shard.index
            );
            return;
        }
    };
    drop(settings);
    let streams = Rc::new(Streams::default());
    let mut idle_since = Instant::now();
    let mut going_away: Option<Instant> = None;
    loop {
        let next = std::future::poll_fn(|cx| {
            if let Some(flood) = tripped.get() {
                return Poll::Ready(Next::Flood(flood));
            }
            if streams.live.get() >= MAX_STREAMS as usize {
                // As many stream tasks as streams allowed (a reset stream frees
                // h2's slot before its task ends): drive the connection, accept
                // nothing, until a task ends.
                streams.room.set(Some(cx.waker().clone()));
                return connection.poll_closed(cx).map(|end| match end {
                    Ok(()) => Next::Closed,
                    Err(e) => Next::Failed(e),
                });
            }
            // Accepting drives the connection's I/O for every stream too.
            connection.poll_accept(cx).map(|accepted| match accepted {
                Some(Ok((request, respond))) => Next::Stream(request, respond),
                Some(Err(e)) => Next::Failed(e),
                None => Next::Closed,
            })
        });
        match monoio::time::timeout(TICK, next).await {
            Ok(Next::Stream(request, respond)) => {
                shard.stats.h2.stream();
                streams.live.set(streams.live.get() + 1);
                let shard = Rc::clone(&shard);
                let listener = Rc::clone(&listener);
                let streams = Rc::clone(&streams);
                let conn = Conn {
                    peer,
                    destination,
                    local,
                    proto,
                    tls: tls.clone(),
                };
                monoio::spawn(async move {
                    serve_stream(&shard, listener, conn, request, respond).await;
                    streams.ended();
                });
            }
            Ok(Next::Flood(flood)) => {
                shard.stats.h2.flood(flood);
                log_debug!(
                    "shard {}: client {peer}: HTTP/2 {} flood: GOAWAY",
                    shard.index,
                    flood.as_str()
                );
                connection.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                // Flush the GOAWAY and close.
                Box::pin(closed_within(&mut connection, LINGER_AFTER_FLOOD)).await;
                break;
            }
            Ok(Next::Failed(e)) => {
                log_debug!("shard {}: client {peer}: HTTP/2: {e}", shard.index);
                if e.is_io() || e.is_go_away() {
                    break;
                }
            }
            Ok(Next::Closed) => break,
            Err(_) => {}
        }
        let now = Instant::now();
        if streams.live.get() > 0 {
            idle_since = now;
        }
        match going_away {
            None => {
                let idle = now - idle_since >= shard.settings().idle_timeout;
                if idle || shard.draining() || listener.closing() {
                    // GOAWAY (and a PING, whose answer brings the final GOAWAY);
                    // the streams already open finish. h2 closes the connection
                    // once the client has answered and the last stream is done.
                    connection.graceful_shutdown();
                    going_away = Some(now);
                }
            }
            // A client that neither answers nor closes, with no stream left,
            // does not keep the connection: it has had its GOAWAY.
            Some(since) if streams.live.get() == 0 && now - since >= GOAWAY_GRACE => {
                connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                Box::pin(closed_within(&mut connection, GOAWAY_GRACE)).await;
                break;
            }
            Some(_) => {}
        }
    }
    // Dropping the connection closes the socket and wakes every stream left
    // (h2 ends them all), whose tasks then stop their exchanges; the connection
    // counts against `server.max_connections` until the last has.
    drop(connection);
    std::future::poll_fn(|cx| {
        if streams.live.get() == 0 {
            return Poll::Ready(());
        }
        streams.room.set(Some(cx.waker().clone()));
        Poll::Pending
    })
    .await;
    drop(guard);
}

/// Drives a connection told to shut down until it has closed, for at most `wait`.
async fn closed_within(connection: &mut h2::server::Connection<PollStream, Bytes>, wait: Duration) {
    let _ =
        monoio::time::timeout(wait, std::future::poll_fn(|cx| connection.poll_closed(cx))).await;
}

/// What a stream's task knows of its connection.
struct Conn {
    peer: SocketAddr,
    /// The address a PROXY header from the client named, if one did.
    destination: Option<SocketAddr>,
    /// The socket's own address.
    local: Option<SocketAddr>,
    /// `X-Forwarded-Proto`: `http` or `https`.
    proto: &'static str,
    /// The TLS handshake's figures, for the access log.
    tls: Option<Rc<TlsLogged>>,
}

/// What the connection task woke for.
// One at a time, moved out at once: boxing the stream would cost an allocation
// per stream for nothing.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A new stream.
    Stream(Request<RecvStream>, SendResponse<Bytes>),
    /// The client went past a frame cap.
    Flood(Flood),
    /// h2 reported an error (of the connection or of one stream).
    Failed(h2::Error),
    /// The connection ended.
    Closed,
}

/// The stream tasks of one connection.
#[derive(Default)]
struct Streams {
    /// Stream tasks running.
    live: Cell<usize>,
    /// The connection task, waiting for a stream task to end.
    room: Cell<Option<Waker>>,
}

impl Streams {
    fn ended(&self) {
        self.live.set(self.live.get() - 1);
        if let Some(waker) = self.room.take() {
            waker.wake();
        }
    }
}

/// Serves one stream: converts its request, runs the exchange, and answers an
/// error the exchange could not (or resets the stream if a response began).
/// Kept small: its future is every stream task's size, moved in at the spawn.
async fn serve_stream(
    shard: &Shard,
    listener: Rc<ShardListener>,
    conn: Conn,
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let started = Instant::now();
    let peer = conn.peer;
    let (mut client, request, mut scratch) =
        match prepare(shard, listener, conn, request, respond, started) {
            Ok(prepared) => prepared,
            Err(refused) => {
                let (mut end, status, timeout) = *refused;
                let _ = Box::pin(end.write_static(error_response(status), timeout)).await;
                return;
            }
        };
    let reply = client.stream.reply();
    let exchanged = {
        // Boxed: the exchange's state (about 4 KB) lives on the heap while it
        // runs, not in every stream task from its spawn.
        let exchange = Box::pin(exchange(
            shard,
            &mut client,
            request,
            started,
            &mut scratch,
            (0, 0),
        ));
        // The client may reset the stream, or the connection may end, while the
        // exchange waits on a backend: stop it then (its upstream connection is
        // dropped, never pooled) instead of waiting for its timeouts.
        let reset = std::future::poll_fn(|cx| reply.borrow_mut().poll_reset(cx));
        monoio::select! {
            (result, _route) = exchange => Ok(result),
            code = reset => Err(code),
        }
    };
    let result = match exchanged {
        Ok(result) => result,
        Err(code) => {
            if let Some(code) = code {
                shard.stats.h2.reset(ResetWay::FromClient, code);
            }
            let error = ProxyError::ClientIo(std::io::ErrorKind::ConnectionReset);
            count_failure(shard, peer, &error);
            record_alone(shard, started, &error, 0);
            return;
        }
    };
    let failure = match result {
        Ok(Done::Next { .. }) => {
            if let Err(e) = client.stream.finish() {
                log_debug!("shard {}: client {peer}: HTTP/2 stream: {e}", shard.index);
            }
            return;
        }
        // No upgrade crosses HTTP/2: the request cannot have asked for one.
        Ok(Done::Upgraded(_)) => {
            client.stream.cut();
            shard.stats.h2.reset(ResetWay::ToClient, INTERNAL_ERROR);
            return;
        }
        Err(failure) => failure,
    };
    let error = if client.stream.unfit_head() {
        // The backend's head, not the client: a 502 if nothing went out.
        ProxyError::BadResponse(h1::H1Error::Malformed(
            "a response field HTTP/2 cannot carry",
        ))
    } else {
        failure.error
    };
    count_failure(shard, peer, &error);
    match error.status() {
        Some(status) if !client.stream.response_started() => {
            let timeout = client.write_timeout;
            let _ = Box::pin(client.stream.write_static(error_response(status), timeout)).await;
        }
        _ => client.stream.cut(),
    }
    if client.stream.reset_sent() {
        shard.stats.h2.reset(ResetWay::ToClient, INTERNAL_ERROR);
    }
}

/// The code of the resets ringlb sends clients (RFC 9113 §7).
const INTERNAL_ERROR: u32 = 0x2;

/// A stream ready for the exchange: its client end, the request as HTTP/1.1
/// parsed it, and the scratch buffers with the rewritten head.
type Prepared = (Downstream<StreamEnd>, h1::Request, Scratch);

/// Converts a stream's request to HTTP/1.1 and parses it. A request that has no
/// HTTP/1.1 form, or breaks its rules, is counted and recorded here, and comes
/// back as the end to answer, with its status and write timeout.
fn prepare(
    shard: &Shard,
    listener: Rc<ShardListener>,
    conn: Conn,
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    started: Instant,
) -> Result<Prepared, Box<(StreamEnd, u16, Duration)>> {
    let Conn {
        peer,
        destination,
        local,
        proto,
        tls,
    } = conn;
    let settings = shard.settings();
    let (parts, recv) = request.into_parts();
    let mut head = Vec::with_capacity(512);
    let converted = convert::request_head(&parts, recv.is_end_stream(), &mut head)
        .map_err(|e| (ProxyError::BadHttp2Request(e), e.status()))
        .and_then(|body| {
            let forwarding = Forwarding {
                client_ip: peer.ip(),
                proto,
            };
            let mut scratch = Scratch::new();
            match h1::parse_request(&head, &settings.limits, &forwarding, &mut scratch.head) {
                Ok(Some(request)) => Ok((body, request, scratch)),
                // The whole head is there: a partial one is a malformed one.
                Ok(None) => Err((
                    ProxyError::BadRequest(h1::H1Error::Malformed("incomplete head")),
                    400,
                )),
                Err(e) => {
                    let error = ProxyError::BadRequest(e);
                    let status = error.status().unwrap_or(400);
                    Err((error, status))
                }
            }
        });
    let (body, request, scratch) = match converted {
        Ok(converted) => converted,
        Err((error, status)) => {
            ShardStats::bump(&shard.stats.requests);
            record_alone(shard, started, &error, status);
            count_failure(shard, peer, &error);
            let end = StreamEnd::new(
                recv,
                respond,
                convert::RequestBody::None,
                parts.method == http::Method::HEAD,
                settings.limits.max_header_bytes,
                local,
                tls,
            );
            return Err(Box::new((end, status, settings.idle_timeout)));
        }
    };
    let head_len = request.head_len;
    let client = Downstream {
        stream: StreamEnd::new(
            recv,
            respond,
            body,
            request.method == Method::Head,
            settings.limits.max_header_bytes,
            local,
            tls,
        ),
        peer,
        destination,
        listener,
        buf: head,
        pos: head_len,
        write_timeout: settings.idle_timeout,
        read_total: head_len as u64,
        written_total: 0,
    };
    Ok((client, request, scratch))
}

/// Records a request that never reached the exchange's own record (refused before
/// it, or reset during it): its status (0 for none) and error kind.
fn record_alone(shard: &Shard, started: Instant, error: &ProxyError, status: u16) {
    #[cfg(not(feature = "no-request-stats"))]
    {
        let record = RequestRecord {
            started,
            status,
            attempts: 0,
            bytes_in: 0,
            bytes_out: 0,
            error: Some(error.kind()),
        };
        shard.stats.record(&record, None, Instant::now());
    }
    #[cfg(feature = "no-request-stats")]
    let _ = (shard, started, error, status);
}
