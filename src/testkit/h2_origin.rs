//! `h2_origin`: an HTTP/2 origin (h2c, prior knowledge) for the tests, the
//! benchmarks and `ringlb origin --h2c`, with a gRPC echo service.
//!
//! Owns a single-threaded monoio server speaking HTTP/2 with the `h2` crate:
//! plain HTTP routes (see `H2_ROUTES`) that can stream, echo, reset, refuse or
//! say GOAWAY, and gRPC methods under `/ringlb.test.Echo/` (unary, server,
//! client and bidirectional streaming, a trailers-only error) and
//! `grpc.health.v1.Health/Check`. Messages are raw bytes in gRPC's framing (a
//! flag byte and a 4-byte length), so no protobuf code is needed. Test tooling,
//! never used on the proxy's request path.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Request, Response};
use monoio::io::IntoPollIo;
use monoio::net::TcpStream;

use crate::config::parse_duration;
use crate::shard::Driver;

use super::origin::{accept_loop, pattern, spawn_serving, Fnv, OriginHandle, OriginState};

/// What the HTTP/2 origin answers, for `ringlb origin --help` and the README.
pub const H2_ROUTES: &str = "\
  /                 200, body: the origin's name
  /health           200 ok
  /status/NNN       that status
  /delay/DUR        wait DUR, then 200
  /bytes/N          N bytes with content-length
  /stream/N         N bytes without a length, then a trailer x-fnv (FNV-1a of them)
  /echo             the request body back, and its trailers as trailers
  /sink             reads the body; answers its length and FNV-1a hash
  /headers          the request head as received (pseudo-fields first)
  /reset            resets the stream (INTERNAL_ERROR) without answering
  /reset-after/N    a 2N-byte content-length, N bytes, then a reset
  /refuse-once      the first such stream is refused (REFUSED_STREAM), later ones served
  /goaway           200, then GOAWAY on its connection
  gRPC /ringlb.test.Echo/{Unary,ServerStream,ClientStream,Bidi,Fail}
       /grpc.health.v1.Health/Check (SERVING; NOT_SERVING for \"down\", NOT_FOUND for \"missing\")";

/// Starts an HTTP/2 origin on `address` in a thread of its own.
pub fn spawn(address: SocketAddr, name: &str, driver: Driver) -> io::Result<OriginHandle> {
    spawn_serving(address, name, driver, Duration::ZERO, serve)
}

/// Runs an HTTP/2 origin on the current thread until the process ends.
pub fn run(address: SocketAddr, name: &str, driver: Driver) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let state = OriginState::new(name, Duration::ZERO);
    crate::shard::run_on(driver, serve(listener, state))
}

async fn serve(listener: std::net::TcpListener, state: Arc<OriginState>) {
    // Streams `/refuse-once` asked for so far, over all connections.
    let refuse_once = Rc::new(Cell::new(0u64));
    accept_loop(listener, state, move |stream, state| {
        connection(stream, state, Rc::clone(&refuse_once))
    })
    .await;
}

/// One gRPC message in its framing: not compressed, 4-byte big-endian length.
pub fn grpc_message(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Takes the whole gRPC messages off the front of `buf`, leaving a partial one.
pub fn grpc_messages(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= 5 {
        let len =
            u32::from_be_bytes([buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4]]) as usize;
        if buf.len() - pos - 5 < len {
            break;
        }
        messages.push(buf[pos + 5..pos + 5 + len].to_vec());
        pos += 5 + len;
    }
    buf.drain(..pos);
    messages
}

async fn connection(stream: TcpStream, state: Arc<OriginState>, refuse_once: Rc<Cell<u64>>) {
    let Ok(io) = stream.into_poll_io() else {
        return;
    };
    let Ok(mut conn) = h2::server::Builder::new()
        .max_concurrent_streams(1000)
        .handshake::<_, Bytes>(io)
        .await
    else {
        return;
    };
    let goaway = Rc::new(GoAway::default());
    let mut said_goaway = false;
    loop {
        let next = poll_fn(|cx| {
            if goaway.asked.get() && !said_goaway {
                said_goaway = true;
                conn.graceful_shutdown();
            }
            *goaway.waker.borrow_mut() = Some(cx.waker().clone());
            conn.poll_accept(cx)
        })
        .await;
        let Some(Ok((request, respond))) = next else {
            break;
        };
        state.requests.fetch_add(1, Ordering::SeqCst);
        let name = state.name.clone();
        let shared = Shared {
            goaway: Rc::clone(&goaway),
            refuse_once: Rc::clone(&refuse_once),
        };
        monoio::spawn(async move {
            let _ = handle(request, respond, &name, &shared).await;
        });
    }
}

/// A stream's request that its connection say GOAWAY.
#[derive(Default)]
struct GoAway {
    asked: Cell<bool>,
    /// The connection's task, woken to say it.
    waker: RefCell<Option<Waker>>,
}

impl GoAway {
    fn ask(&self) {
        self.asked.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// What a stream's handler shares with its connection and origin.
struct Shared {
    goaway: Rc<GoAway>,
    /// `/refuse-once` streams so far.
    refuse_once: Rc<Cell<u64>>,
}

fn response(status: u16) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    response
}

fn h2_io(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

/// Sends `data` as the window allows.
async fn send(body: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> io::Result<()> {
    if data.is_empty() {
        return body.send_data(data, end).map_err(h2_io);
    }
    while !data.is_empty() {
        body.reserve_capacity(data.len());
        let room = match poll_fn(|cx| body.poll_capacity(cx)).await {
            Some(room) => room.map_err(h2_io)?,
            None => return Err(io::ErrorKind::BrokenPipe.into()),
        };
        let piece = data.split_to(room.min(data.len()));
        body.send_data(piece, end && data.is_empty())
            .map_err(h2_io)?;
    }
    Ok(())
}

/// Reads the whole request body (and trailers).
async fn read_body(recv: &mut RecvStream) -> io::Result<(Vec<u8>, Option<HeaderMap>)> {
    let mut body = Vec::new();
    while let Some(data) = recv.data().await {
        let data = data.map_err(h2_io)?;
        let _ = recv.flow_control().release_capacity(data.len());
        body.extend_from_slice(&data);
    }
    let trailers = recv.trailers().await.map_err(h2_io)?;
    Ok((body, trailers))
}

/// A response with a length; `head_only` (HEAD): without its body. A 204 or
/// 304 has neither.
async fn answer(
    respond: &mut SendResponse<Bytes>,
    head_only: bool,
    status: u16,
    body: &[u8],
) -> io::Result<()> {
    let mut head = response(status);
    let bodiless = status == 204 || status == 304;
    if !bodiless {
        head.headers_mut()
            .insert("content-length", HeaderValue::from(body.len()));
    }
    let end = body.is_empty() || head_only || bodiless;
    let mut stream = respond.send_response(head, end).map_err(h2_io)?;
    if !end {
        send(&mut stream, Bytes::copy_from_slice(body), true).await?;
    }
    Ok(())
}

async fn handle(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    name: &str,
    shared: &Shared,
) -> io::Result<()> {
    let (parts, mut recv) = request.into_parts();
    let path = parts.uri.path().to_string();
    let head_only = parts.method == http::Method::HEAD;
    if let Some(method) = path.strip_prefix("/ringlb.test.Echo/") {
        return grpc_echo(method, recv, respond).await;
    }
    if path == "/grpc.health.v1.Health/Check" {
        // The service named in the request (field 1): "down" is NOT_SERVING,
        // "missing" unknown (NOT_FOUND, trailers only), any other SERVING.
        let (mut body, _) = read_body(&mut recv).await?;
        let message = grpc_messages(&mut body).pop().unwrap_or_default();
        let service = match message.as_slice() {
            [0x0a, len, name @ ..] if name.len() == usize::from(*len) => name,
            _ => &[][..],
        };
        return match service {
            b"down" => grpc_reply(&mut respond, &[vec![0x08, 0x02]], 0).await,
            b"missing" => grpc_trailers_only(&mut respond, 5, "unknown service").await,
            _ => grpc_reply(&mut respond, &[vec![0x08, 0x01]], 0).await,
        };
    }
    match path.as_str() {
        "/" => answer(&mut respond, head_only, 200, name.as_bytes()).await,
        "/health" => answer(&mut respond, head_only, 200, b"ok").await,
        "/headers" => {
            let mut text = format!(
                ":method {}\n:scheme {}\n:authority {}\n:path {}\n",
                parts.method,
                parts.uri.scheme_str().unwrap_or(""),
                parts.uri.authority().map_or("", |a| a.as_str()),
                parts.uri.path_and_query().map_or("", |p| p.as_str()),
            );
            for (field, value) in &parts.headers {
                text.push_str(&format!(
                    "{field}: {}\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            answer(&mut respond, head_only, 200, text.as_bytes()).await
        }
        "/echo" => {
            let (body, trailers) = read_body(&mut recv).await?;
            let mut stream = respond.send_response(response(200), false).map_err(h2_io)?;
            send(&mut stream, Bytes::from(body), trailers.is_none()).await?;
            if let Some(trailers) = trailers {
                stream.send_trailers(trailers).map_err(h2_io)?;
            }
            Ok(())
        }
        "/sink" => {
            let mut len = 0u64;
            let mut hash = Fnv::new();
            while let Some(data) = recv.data().await {
                let data = data.map_err(h2_io)?;
                let _ = recv.flow_control().release_capacity(data.len());
                len += data.len() as u64;
                hash.update(&data);
            }
            let text = format!("{len} {:016x}", hash.finish());
            answer(&mut respond, head_only, 200, text.as_bytes()).await
        }
        "/reset" => {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            Ok(())
        }
        "/refuse-once" => {
            let earlier = shared.refuse_once.replace(shared.refuse_once.get() + 1);
            if earlier == 0 {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                Ok(())
            } else {
                answer(&mut respond, head_only, 200, b"served").await
            }
        }
        "/goaway" => {
            let _ = read_body(&mut recv).await?;
            answer(&mut respond, head_only, 200, name.as_bytes()).await?;
            shared.goaway.ask();
            Ok(())
        }
        _ => {
            if let Some(code) = path.strip_prefix("/status/") {
                let status = code.parse().unwrap_or(400);
                return answer(&mut respond, head_only, status, code.as_bytes()).await;
            }
            if let Some(text) = path.strip_prefix("/delay/") {
                let delay = parse_duration(text).unwrap_or(Duration::ZERO);
                monoio::time::sleep(delay).await;
                return answer(&mut respond, head_only, 200, name.as_bytes()).await;
            }
            if let Some(n) = path.strip_prefix("/bytes/") {
                let n: usize = n.parse().unwrap_or(0);
                return answer(&mut respond, head_only, 200, &pattern(0, n)).await;
            }
            if let Some(n) = path.strip_prefix("/reset-after/") {
                let n: usize = n.parse().unwrap_or(0);
                let mut head = response(200);
                head.headers_mut()
                    .insert("content-length", HeaderValue::from(2 * n));
                let mut stream = respond.send_response(head, false).map_err(h2_io)?;
                send(&mut stream, Bytes::from(pattern(0, n)), false).await?;
                // Let the bytes go out before the reset.
                monoio::time::sleep(Duration::from_millis(20)).await;
                stream.send_reset(h2::Reason::INTERNAL_ERROR);
                return Ok(());
            }
            if let Some(n) = path.strip_prefix("/stream/") {
                let n: usize = n.parse().unwrap_or(0);
                let mut stream = respond
                    .send_response(response(200), head_only)
                    .map_err(h2_io)?;
                if head_only {
                    return Ok(());
                }
                let mut hash = Fnv::new();
                let mut sent = 0;
                while sent < n {
                    let piece = pattern(sent as u64, (n - sent).min(16 * 1024));
                    hash.update(&piece);
                    sent += piece.len();
                    send(&mut stream, Bytes::from(piece), false).await?;
                }
                let mut trailers = HeaderMap::new();
                trailers.insert(
                    "x-fnv",
                    HeaderValue::from_str(&format!("{:016x}", hash.finish()))
                        .map_err(io::Error::other)?,
                );
                return stream.send_trailers(trailers).map_err(h2_io);
            }
            answer(&mut respond, head_only, 404, b"not found").await
        }
    }
}

/// A gRPC response: headers, `messages`, then trailers with `status`.
async fn grpc_reply(
    respond: &mut SendResponse<Bytes>,
    messages: &[Vec<u8>],
    status: u32,
) -> io::Result<()> {
    let mut head = response(200);
    head.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    let mut stream = respond.send_response(head, false).map_err(h2_io)?;
    for message in messages {
        send(&mut stream, Bytes::from(grpc_message(message)), false).await?;
    }
    stream
        .send_trailers(grpc_trailers(status, None))
        .map_err(h2_io)
}

/// A gRPC answer in one HEADERS that ends the stream, its status in it.
async fn grpc_trailers_only(
    respond: &mut SendResponse<Bytes>,
    status: u32,
    message: &'static str,
) -> io::Result<()> {
    let mut head = response(200);
    let fields = head.headers_mut();
    fields.insert("content-type", HeaderValue::from_static("application/grpc"));
    fields.extend(grpc_trailers(status, Some(message)));
    respond.send_response(head, true).map_err(h2_io)?;
    Ok(())
}

fn grpc_trailers(status: u32, message: Option<&'static str>) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status));
    if let Some(message) = message {
        trailers.insert("grpc-message", HeaderValue::from_static(message));
    }
    trailers
}

/// The gRPC echo service's methods. `ServerStream` takes `N:SIZE` and sends N
/// messages of SIZE pattern bytes; `ClientStream` answers `COUNT:BYTES` of
/// what it got; `Bidi` echoes each message as it comes; `Fail` answers with
/// trailers only, status 13 (INTERNAL).
async fn grpc_echo(
    method: &str,
    mut recv: RecvStream,
    mut respond: SendResponse<Bytes>,
) -> io::Result<()> {
    match method {
        "Unary" => {
            let (mut body, _) = read_body(&mut recv).await?;
            let messages = grpc_messages(&mut body);
            grpc_reply(&mut respond, &messages, 0).await
        }
        "ServerStream" => {
            let (mut body, _) = read_body(&mut recv).await?;
            let ask = grpc_messages(&mut body).pop().unwrap_or_default();
            let ask = String::from_utf8_lossy(&ask).into_owned();
            let (count, size) = ask.split_once(':').unwrap_or(("0", "0"));
            let (count, size): (usize, usize) =
                (count.parse().unwrap_or(0), size.parse().unwrap_or(0));
            let messages: Vec<Vec<u8>> = (0..count).map(|i| pattern(i as u64, size)).collect();
            grpc_reply(&mut respond, &messages, 0).await
        }
        "ClientStream" => {
            let (mut body, _) = read_body(&mut recv).await?;
            let messages = grpc_messages(&mut body);
            let total: usize = messages.iter().map(Vec::len).sum();
            let answer = format!("{}:{total}", messages.len()).into_bytes();
            grpc_reply(&mut respond, &[answer], 0).await
        }
        "Bidi" => {
            let mut head = response(200);
            head.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            let mut stream = respond.send_response(head, false).map_err(h2_io)?;
            let mut pending = Vec::new();
            while let Some(data) = recv.data().await {
                let data = data.map_err(h2_io)?;
                let _ = recv.flow_control().release_capacity(data.len());
                pending.extend_from_slice(&data);
                for message in grpc_messages(&mut pending) {
                    send(&mut stream, Bytes::from(grpc_message(&message)), false).await?;
                }
            }
            stream.send_trailers(grpc_trailers(0, None)).map_err(h2_io)
        }
        // "Fail", and any method it does not know: trailers only.
        "Fail" => grpc_trailers_only(&mut respond, 13, "boom").await,
        _ => grpc_trailers_only(&mut respond, 12, "unknown method").await,
    }
}
