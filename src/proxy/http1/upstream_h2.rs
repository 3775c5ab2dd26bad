//! `proxy::http1::upstream_h2`: one attempt over an HTTP/2 backend connection.
//!
//! Owns what changes when a cluster speaks HTTP/2 to its backends
//! (`upstream.protocol = "h2"`): the request head, parsed and rewritten as for
//! any backend, goes out as HEADERS (`convert::request_from_h1`), its body as
//! DATA within the stream's window (a chunked body's framing removed, its
//! trailers sent as HTTP/2 trailers); the response comes back as the HTTP/1.1
//! head it would have been (`convert::response_to_h1`), checked and rewritten by
//! `h1::parse_response`, so the client's framing, keep-alive and HEAD rules are
//! those of any backend, and its DATA is re-framed for the client. Choosing the
//! backend and retrying stay in `forward`; the connections are `upstream::h2`'s.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::mem;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};

use crate::cluster::backend::InFlight;
use crate::config::Strategy;
use crate::observe::h2::{ResetWay, ShardH2Stats};
use crate::observe::stats::{RequestRecord, ShardStats};
use crate::protocol::h1::{self, BodyKind, ChunkEvent, ChunkedDecoder, ClientSide, H1Error};
use crate::protocol::h2::convert;
use crate::proxy::error::{ProxyError, Side};
use crate::upstream::h2::{H2Lease, Target};

use super::body::{length_piece, read_client_body};
use super::forward::{AttemptFailure, Done, Outbound, Pick, CONTINUE, EARLY_GRACE};
use super::socket::{write_all_client, write_client, ClientIo};
use super::{Downstream, Failure, BODY_BUFFER};

/// One attempt: one backend, one stream on one of its HTTP/2 connections.
pub(super) async fn attempt(
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
    let backend = pick.backend;
    let _in_flight = InFlight::start(backend);
    let tls = cluster.tls();
    // A request HTTP/2 cannot carry fails before any connection is made.
    let authority = request.missing_host.then(|| backend.address.to_string());
    let message = convert::request_from_h1(head, tls.is_some(), authority.as_deref())
        .map_err(|e| AttemptFailure::before(ProxyError::BadHttp2Request(e), false))?;

    let target = Target {
        address: backend.address,
        timeout: settings.connect_timeout,
        tls: tls.as_deref(),
        max_header_list: u32::try_from(outbound.settings.limits.max_header_bytes)
            .unwrap_or(u32::MAX),
        max_streams: settings.h2_max_streams,
    };
    let (lease, reused, opened) = Box::pin(backend.pool.multiplexed.lease(target, pick.fresh_only))
        .await
        .map_err(|e| AttemptFailure::before(e, false))?;
    if opened {
        ShardStats::bump(&shard.stats.upstream_connects);
        shard.stats.h2.upstream_connection();
    } else {
        ShardStats::bump(&shard.stats.upstream_reuses);
    }
    // Fails here only when the connection can take no stream (it failed, or
    // said GOAWAY): nothing was sent.
    let refused = |e: h2::Error| {
        crate::log_debug!("h2 stream to {} not opened: {e}", backend.name);
        lease.retire();
        let mut failure = AttemptFailure::before(ProxyError::UpstreamRefused, reused);
        failure.report = false;
        failure
    };
    let sender = monoio::time::timeout(settings.backend_response_timeout, lease.sender().ready())
        .await
        .map_err(|_| {
            // A connection that cannot take a stream for that long is no use.
            lease.retire();
            AttemptFailure::before(ProxyError::ResponseTimeout, reused)
        })?
        .map_err(refused)?;
    let mut sender = sender;
    let (response, mut body) = sender
        .send_request(message, held_body == Some(0))
        .map_err(refused)?;
    shard.stats.h2.upstream_stream();
    let sent_at = Instant::now();

    let mut early = false;
    let mut duplex = None;
    match held_body {
        Some(0) => {}
        Some(n) => {
            let data = Bytes::copy_from_slice(&client.buf[client.pos..client.pos + n]);
            body.send_data(data, true)
                .map_err(|e| AttemptFailure::before(stream_error(&e), reused))?;
        }
        None => {
            if request.expect_continue && !request.http10 {
                write_client(client, CONTINUE)
                    .await
                    .map_err(|e| AttemptFailure::before(e, reused))?;
            }
            if let Some(from) = client.stream.take_h2_body() {
                // HTTP/2 both sides: the body flows while the response does.
                duplex = Some(from);
            } else {
                let sent = Box::pin(send_body(outbound, client, &mut body, request.body)).await;
                if let Err(failure) = sent {
                    // A backend may answer before the body is in (an error, a
                    // gRPC status) and reset the stream: its answer is the
                    // response.
                    if failure.error.side() != Side::Upstream {
                        return Err(AttemptFailure {
                            error: failure.error,
                            before_response: !failure.response_started,
                            final_started: failure.response_started,
                            reused,
                            report: true,
                        });
                    }
                    early = true;
                }
            }
        }
    }
    let started = Cell::new(false);
    let answer = Answer {
        response,
        lease: &lease,
        reused,
        early,
        sent_at,
        duplex: duplex.is_some(),
        started: &started,
    };
    let Some(from) = duplex else {
        return answer
            .forward(outbound, pick, client, scratch, upbuf, record)
            .await;
    };
    let read = Cell::new(0);
    let pumped = pump(from, body, outbound, &read);
    // The exchange is over when the response is. The pump ends it early only
    // when the client failed (gone, silent, over a limit); when the backend
    // stopped taking the body, the response says how it ends.
    let pump_failed = async {
        match pumped.await {
            Err(error) if error.side() != Side::Upstream => error,
            _ => std::future::pending::<ProxyError>().await,
        }
    };
    let forwarded = answer.forward(outbound, pick, client, scratch, upbuf, record);
    let result = monoio::select! {
        done = forwarded => done,
        error = pump_failed => Err(AttemptFailure {
            error,
            before_response: !started.get(),
            final_started: started.get(),
            reused,
            report: true,
        }),
    };
    client.read_total += read.get();
    if result.is_err() && started.get() {
        // The response is cut short: the client must not take it whole.
        client.stream.cut();
    }
    result
}

/// A stream whose request went out: its response to wait for and forward.
struct Answer<'a> {
    response: ResponseFuture,
    lease: &'a H2Lease,
    /// The connection was shared already.
    reused: bool,
    /// Sending the body failed on the backend's side: only a response already
    /// on its way is waited for, and the client connection closes after it.
    early: bool,
    /// When the head (and any held body) went out.
    sent_at: Instant,
    /// The client's body is pumped beside it (HTTP/2 both ways).
    duplex: bool,
    /// Set once part of the final response went to the client.
    started: &'a Cell<bool>,
}

impl Answer<'_> {
    /// Waits for the response head, and forwards the response.
    async fn forward(
        self,
        outbound: &Outbound<'_>,
        pick: Pick<'_>,
        client: &mut Downstream<impl ClientIo>,
        scratch: &mut Vec<u8>,
        upbuf: &mut Vec<u8>,
        record: &mut RequestRecord,
    ) -> Result<Done, AttemptFailure> {
        let Outbound {
            shard,
            cluster,
            request,
            held_body,
            ..
        } = *outbound;
        let settings = &cluster.settings;
        let backend = pick.backend;
        let (reused, early) = (self.reused, self.early);
        let wait = if early {
            EARLY_GRACE
        } else if held_body.is_some() {
            settings
                .backend_response_timeout
                .saturating_sub(self.sent_at.elapsed())
        } else {
            // A streamed body took time of its own (or, both ways HTTP/2, is
            // still flowing: the backend answers when it will).
            settings.backend_response_timeout
        };
        let answer = match monoio::time::timeout(wait, self.response).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                count_reset(&shard.stats.h2, &e);
                let mut failure = failed_stream(&e, self.lease, reused);
                if held_body.is_none() && matches!(failure.error, ProxyError::UpstreamRefused) {
                    // Part of a streamed body is gone from ringlb: whatever the
                    // backend says, the request cannot go again.
                    failure.error = ProxyError::UpstreamIo(io::ErrorKind::ConnectionReset);
                }
                return Err(failure);
            }
            Err(_) => {
                // The backend, or the connection, may be gone without a word (no
                // RST over a dead path): new streams go on another connection.
                self.lease.retire();
                return Err(AttemptFailure::before(ProxyError::ResponseTimeout, reused));
            }
        };
        if early {
            ShardStats::bump(&shard.stats.early_responses);
        }
        let (parts, recv) = answer.into_parts();
        upbuf.clear();
        let head_request = request.method == h1::Method::Head;
        convert::response_to_h1(&parts, recv.is_end_stream(), head_request, upbuf);
        let side = ClientSide {
            method: request.method,
            http10: request.http10,
            keep_alive: request.keep_alive && !early && !client.stopping(shard),
            upgrade: false,
        };
        let response = h1::parse_response(upbuf, &outbound.settings.limits, &side, scratch)
            .map_err(|e| AttemptFailure {
                error: ProxyError::BadResponse(e),
                before_response: true,
                final_started: false,
                reused: false,
                report: true,
            })?
            .ok_or_else(|| {
                AttemptFailure::before(ProxyError::BadResponse(H1Error::HeadTooLarge), false)
            })?;
        if let Some(n) = held_body {
            client.pos += n;
        }
        if settings.balancer.strategy == Strategy::LeastResponse {
            let now = Instant::now();
            backend.observe_latency(now - self.sent_at, now, settings.balancer.ewma_decay);
        }
        shard.report_outcome(
            cluster,
            backend,
            !(settings.count_5xx && response.status >= 500),
        );
        record.status = response.status;
        super::forward::add_sticky_cookie(outbound, backend, scratch);
        self.started.set(true);
        // Both ways HTTP/2, a stream may stay quiet as long as a tunnel (a gRPC
        // watch); else each piece of body must come within `backend_response`.
        let quiet_for = if self.duplex {
            outbound.settings.tunnel_idle
        } else {
            settings.backend_response_timeout
        };
        relay(client, recv, scratch, &response, quiet_for, &shard.stats.h2)
            .await
            .map_err(|error| AttemptFailure {
                error,
                before_response: false,
                final_started: true,
                reused,
                report: true,
            })?;
        Ok(Done::Next {
            keep_alive: response.client_keep_alive && !early,
            body_unread: early,
        })
    }
}

/// Relays an HTTP/2 client's request body to an HTTP/2 backend as it comes,
/// DATA for DATA, then its trailers; each piece taken from the client only once
/// the backend had room for the one before (the client's window is ringlb's
/// backpressure). A backend that answered in full and said it wants no more
/// (`NO_ERROR`) ends it quietly. Bytes read are added to `read`.
async fn pump(
    mut from: RecvStream,
    mut to: SendStream<Bytes>,
    outbound: &Outbound<'_>,
    read: &Cell<u64>,
) -> Result<(), ProxyError> {
    // A stream both ways may stay quiet as long as a tunnel (a gRPC watch).
    let idle = outbound.settings.tunnel_idle;
    let room_wait = outbound.cluster.settings.backend_response_timeout;
    let max = outbound.settings.limits.max_body_bytes;
    let client_error = |e: h2::Error| {
        ProxyError::ClientIo(
            e.get_io()
                .map_or(io::ErrorKind::ConnectionReset, io::Error::kind),
        )
    };
    loop {
        let data = match monoio::time::timeout(idle, from.data()).await {
            Err(_) => return Err(ProxyError::BodyReadTimeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(client_error(e)),
            Ok(Some(Ok(data))) => data,
        };
        let n = data.len();
        read.set(read.get() + n as u64);
        if max.is_some_and(|max| read.get() > max) {
            return Err(ProxyError::BadRequest(H1Error::BodyTooLarge));
        }
        if let Err(error) = push(&mut to, data, false, room_wait).await {
            return quiet(&mut to, error).await;
        }
        let _ = from.flow_control().release_capacity(n);
    }
    let trailers = match monoio::time::timeout(idle, from.trailers()).await {
        Err(_) => return Err(ProxyError::BodyReadTimeout),
        Ok(Err(e)) => return Err(client_error(e)),
        Ok(Ok(trailers)) => trailers,
    };
    let sent = match trailers {
        Some(trailers) => to.send_trailers(trailers),
        None => to.send_data(Bytes::new(), true),
    };
    match sent {
        Ok(()) => Ok(()),
        Err(e) => quiet(&mut to, stream_error(&e)).await,
    }
}

/// `error` from sending, unless the backend reset the stream with `NO_ERROR`:
/// it answered in full and wants no more of the body (RFC 9113 §8.1).
async fn quiet(to: &mut SendStream<Bytes>, error: ProxyError) -> Result<(), ProxyError> {
    match poll_fn(|cx| Poll::Ready(to.poll_reset(cx))).await {
        Poll::Ready(Ok(h2::Reason::NO_ERROR)) => Ok(()),
        _ => Err(error),
    }
}

/// A stream that failed before its response head: what the request's retry
/// rules and the breaker make of it. A refused stream was not acted on (any
/// method may go again, and the backend is not failing, only busy or going
/// away); the failure of the connection (I/O, GOAWAY) retires it, is reported
/// once for all the streams it took down, and the request may go again on a
/// new one; a stream reset alone says nothing of the connection.
fn failed_stream(e: &h2::Error, lease: &H2Lease, reused: bool) -> AttemptFailure {
    let error = stream_error(e);
    let connection = e.is_io() || e.is_go_away();
    if connection {
        lease.retire();
    }
    let mut failure = AttemptFailure::before(error, reused && (connection || error_refused(e)));
    failure.report = if error_refused(e) {
        false
    } else if connection {
        lease.first_to_report()
    } else {
        true
    };
    failure
}

fn error_refused(e: &h2::Error) -> bool {
    matches!(stream_error(e), ProxyError::UpstreamRefused)
}

/// Counts a reset the backend sent (not one ringlb or h2 made).
fn count_reset(stats: &ShardH2Stats, e: &h2::Error) {
    if let (true, true, Some(reason)) = (e.is_reset(), e.is_remote(), e.reason()) {
        stats.reset(ResetWay::FromBackend, u32::from(reason));
    }
}

/// What a failed stream means for the request.
fn stream_error(e: &h2::Error) -> ProxyError {
    if e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_go_away() && e.is_remote()) {
        // REFUSED_STREAM, or a GOAWAY whose last stream is below this one: the
        // backend did not act on it (RFC 9113 §8.7).
        return ProxyError::UpstreamRefused;
    }
    match e.get_io() {
        Some(io) => ProxyError::UpstreamIo(io.kind()),
        None => ProxyError::UpstreamIo(io::ErrorKind::ConnectionReset),
    }
}

/// Sends `data` on `body` as the stream's window allows, each wait for room
/// bounded by `timeout` (a backend that stops reading is a stalled one).
async fn push(
    body: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    timeout: Duration,
) -> Result<(), ProxyError> {
    if data.is_empty() {
        return body.send_data(data, end).map_err(|e| stream_error(&e));
    }
    while !data.is_empty() {
        body.reserve_capacity(data.len());
        let mut room = body.capacity();
        if room == 0 {
            room = match monoio::time::timeout(timeout, poll_fn(|cx| body.poll_capacity(cx))).await
            {
                Ok(Some(Ok(n))) => n,
                Ok(Some(Err(e))) => return Err(stream_error(&e)),
                Ok(None) => return Err(ProxyError::UpstreamIo(io::ErrorKind::BrokenPipe)),
                Err(_) => return Err(ProxyError::UpstreamIo(io::ErrorKind::TimedOut)),
            };
        }
        if room == 0 {
            continue;
        }
        let piece = data.split_to(room.min(data.len()));
        body.send_data(piece, end && data.is_empty())
            .map_err(|e| stream_error(&e))?;
    }
    Ok(())
}

/// Streams a request body that is not held in full from the client to the
/// backend as DATA frames; a chunked one's trailers as HTTP/2 trailers.
async fn send_body(
    outbound: &Outbound<'_>,
    client: &mut Downstream<impl ClientIo>,
    body: &mut SendStream<Bytes>,
    kind: BodyKind,
) -> Result<(), Failure> {
    let settings = outbound.settings;
    let timeout = outbound.cluster.settings.backend_response_timeout;
    match kind {
        BodyKind::None | BodyKind::CloseDelimited => {
            Ok(push(body, Bytes::new(), true, timeout).await?)
        }
        BodyKind::Length(mut remaining) => {
            while remaining > 0 {
                let n = length_piece(client, remaining, settings.idle_timeout).await?;
                let data = Bytes::copy_from_slice(&client.buf[client.pos..client.pos + n]);
                client.pos += n;
                remaining -= n as u64;
                push(body, data, remaining == 0, timeout).await?;
            }
            Ok(())
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new(settings.limits.max_header_bytes);
            let mut data = Vec::with_capacity(BODY_BUFFER);
            loop {
                let mut trailers = None;
                while client.unconsumed() > 0 && !decoder.is_done() {
                    let (used, event) = decoder
                        .decode(&client.buf[client.pos..])
                        .map_err(ProxyError::BadRequest)?;
                    match event {
                        Some(ChunkEvent::Data(piece)) => data.extend_from_slice(piece),
                        Some(ChunkEvent::End(lines)) if !lines.is_empty() => {
                            trailers = Some(convert::trailer_section(lines).ok_or(
                                ProxyError::BadRequest(H1Error::Malformed(
                                    "a trailer section HTTP/2 cannot carry",
                                )),
                            )?);
                        }
                        _ => {}
                    }
                    client.pos += used;
                    if used == 0 {
                        break;
                    }
                }
                if let Some(max) = settings.limits.max_body_bytes {
                    if decoder.decoded_len() > max {
                        return Err(ProxyError::BadRequest(H1Error::BodyTooLarge).into());
                    }
                }
                let done = decoder.is_done();
                if !data.is_empty() || (done && trailers.is_none()) {
                    let piece = Bytes::copy_from_slice(&data);
                    data.clear();
                    push(body, piece, done && trailers.is_none(), timeout).await?;
                }
                if let Some(trailers) = trailers {
                    body.send_trailers(trailers).map_err(|e| stream_error(&e))?;
                }
                if done {
                    return Ok(());
                }
                client.compact();
                read_client_body(client, settings.idle_timeout).await?;
            }
        }
    }
}

/// Writes the response head (in `head`) and streams the body to the client,
/// framed as the client needs it, each piece within `read_timeout` of the last;
/// the backend's trailers end a chunked body.
async fn relay(
    client: &mut Downstream<impl ClientIo>,
    mut recv: RecvStream,
    head: &mut Vec<u8>,
    response: &h1::Response,
    read_timeout: Duration,
    stats: &ShardH2Stats,
) -> Result<(), ProxyError> {
    let chunked = response.client_body == BodyKind::Chunked;
    let forward_body = response.client_body != BodyKind::None;
    let mut out = mem::take(head);
    if !forward_body {
        // HEAD, 204, 304: the head is all there is (a body the backend sent
        // anyway is left unread; dropping the stream cancels it).
        let result = write_all_client(client, &mut out).await;
        *head = out;
        return result;
    }
    let result = async {
        loop {
            // Whatever is here already goes with what is waiting to be written;
            // else that is written before waiting (a head, a gRPC message).
            let ready = poll_fn(|cx| Poll::Ready(recv.poll_data(cx))).await;
            let next = match ready {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    write_all_client(client, &mut out).await?;
                    match monoio::time::timeout(read_timeout, recv.data()).await {
                        Ok(next) => next,
                        Err(_) => return Err(ProxyError::ResponseTimeout),
                    }
                }
            };
            match next {
                Some(Ok(data)) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    if !data.is_empty() {
                        if chunked {
                            h1::write_chunk_header(&mut out, data.len());
                            out.extend_from_slice(&data);
                            out.extend_from_slice(b"\r\n");
                        } else {
                            out.extend_from_slice(&data);
                        }
                    }
                    if out.len() >= BODY_BUFFER {
                        write_all_client(client, &mut out).await?;
                    }
                }
                Some(Err(e)) => {
                    count_reset(stats, &e);
                    return Err(stream_error(&e));
                }
                None => break,
            }
        }
        if chunked {
            let trailers = match monoio::time::timeout(read_timeout, recv.trailers()).await {
                Ok(Ok(trailers)) => trailers,
                Ok(Err(e)) => {
                    count_reset(stats, &e);
                    return Err(stream_error(&e));
                }
                Err(_) => return Err(ProxyError::ResponseTimeout),
            };
            convert::trailers_to_h1(trailers.as_ref(), &mut out)
                .map_err(|_| ProxyError::BadResponse(H1Error::Malformed("trailer field")))?;
        }
        write_all_client(client, &mut out).await
    }
    .await;
    if let Err(e) = &result {
        if e.side() == Side::Upstream {
            // Cut short: the client must not take the body for whole.
            client.stream.cut();
        }
    }
    out.clear();
    *head = out;
    result
}
