//! `origin`: the small, fast origin server behind `ringlb origin`, the demo, the
//! tests and the benchmarks.
//!
//! Owns a single-threaded monoio server that answers with its name and can be told
//! to be slow, to fail, or to misbehave (see `ROUTES`). It parses requests with the
//! same `h1` rules as the proxy. Test tooling, never used on the proxy's request path.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use crate::config::parse_duration;
use crate::protocol::h1::{self, BodyKind, ChunkEvent, ChunkedDecoder, Forwarding, Method};
use crate::shard::{run_on, Driver};
use crate::sys;

use super::websocket;

/// What the origin answers, for `ringlb origin --help` and the README.
pub const ROUTES: &str = "\
  /                 200, body: the origin's name
  /health           200 ok
  /status/NNN       that status
  /delay/DUR        wait DUR (e.g. 50ms, 2s), then 200
  /bytes/N          N bytes with Content-Length
  /chunked/N        N bytes, chunked, with a trailer
  /close/N          N bytes delimited by closing the connection
  /echo             the request body back
  /sink             reads the body; answers its length and FNV-1a hash
  /headers          the request head as received
  /conns            how many connections this origin accepted
  /interim          a 103 interim response, then 200
  /hang             never answers
  /reset            closes the connection without answering
  /fail-reused      closes without answering on a connection that already served
  /bad/cl-te        a response with Content-Length and Transfer-Encoding
  /bad/garbage      bytes that are not HTTP
  /bad/bare-lf      a response head with a line ended by a bare LF
  /bad/interim-reset  a 103 interim response, then a close
  /early/413        reads 1 KiB of the body, answers 413 and closes
  /fault/partial-head   a response head cut off, then a close
  /fault/reset-after/N  N bytes of a 2N-byte body, then a reset
  /fault/stall-body/N   N bytes of a 2N-byte body, then silence
  /fault/slow/N     a whole response with an N-byte body, a byte per millisecond
  /bad/switch       a 101 Switching Protocols whatever was asked
  /ws               a WebSocket echo (on an upgrade request; else 200)";

/// Largest body `/echo` holds.
const MAX_ECHO: usize = 16 * 1024 * 1024;
/// Write size for generated bodies.
const PIECE: usize = 64 * 1024;

/// Shared with the thread that owns the origin.
#[derive(Debug)]
pub(super) struct OriginState {
    pub(super) name: String,
    pub(super) connections: AtomicU64,
    pub(super) open: AtomicU64,
    /// Requests whose head was read.
    pub(super) requests: AtomicU64,
    /// Added before every response (a uniformly slow backend).
    pub(super) delay: Duration,
}

impl OriginState {
    pub(super) fn new(name: &str, delay: Duration) -> Arc<OriginState> {
        Arc::new(OriginState {
            name: name.to_string(),
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            delay,
        })
    }
}

/// A running origin on its own thread.
#[derive(Debug)]
pub struct OriginHandle {
    address: SocketAddr,
    listener_fd: RawFd,
    state: Arc<OriginState>,
    thread: Option<JoinHandle<()>>,
}

impl OriginHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.address
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests received (whose head was read), over all connections.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Stops it: the listener and every open connection close.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The listener is owned by the origin thread, alive until that thread's
            // accept loop sees this shutdown and returns.
            let _ = sys::shutdown(self.listener_fd, sys::Shutdown::Both);
            let _ = thread.join();
        }
    }
}

impl Drop for OriginHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Starts an origin on `address` in a thread of its own.
pub fn spawn(address: SocketAddr, name: &str, driver: Driver) -> io::Result<OriginHandle> {
    spawn_with_delay(address, name, driver, Duration::ZERO)
}

/// Starts an origin that waits `delay` before every response.
pub fn spawn_with_delay(
    address: SocketAddr,
    name: &str,
    driver: Driver,
    delay: Duration,
) -> io::Result<OriginHandle> {
    spawn_serving(address, name, driver, delay, serve)
}

/// Starts an origin served by `serve` on `address`, in a thread of its own.
pub(super) fn spawn_serving<F, Fut>(
    address: SocketAddr,
    name: &str,
    driver: Driver,
    delay: Duration,
    serve: F,
) -> io::Result<OriginHandle>
where
    F: FnOnce(std::net::TcpListener, Arc<OriginState>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let listener_fd = listener.as_raw_fd();
    let state = OriginState::new(name, delay);
    let thread_state = Arc::clone(&state);
    let thread = std::thread::Builder::new()
        .name(format!("origin-{name}"))
        .spawn(move || {
            let _ = run_on(driver, serve(listener, thread_state));
        })?;
    Ok(OriginHandle {
        address,
        listener_fd,
        state,
        thread: Some(thread),
    })
}

/// Runs an origin on the current thread until the process ends; every response
/// waits `delay` first.
pub fn run(address: SocketAddr, name: &str, driver: Driver, delay: Duration) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let state = OriginState::new(name, delay);
    run_on(driver, serve(listener, state))
}

/// Open connections' descriptors: stopping shuts them down so their tasks end and
/// close them (a dropped monoio runtime does not close parked tasks' sockets).
type OpenFds = Rc<RefCell<HashSet<RawFd>>>;

async fn serve(listener: std::net::TcpListener, state: Arc<OriginState>) {
    accept_loop(listener, state, connection).await;
}

/// Accepts connections until the listener is shut down, each served by
/// `connection` in a task of its own; then shuts the open ones down.
pub(super) async fn accept_loop<F, Fut>(
    listener: std::net::TcpListener,
    state: Arc<OriginState>,
    connection: F,
) where
    F: Fn(TcpStream, Arc<OriginState>) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let open: OpenFds = Rc::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                state.connections.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let fd = stream.as_raw_fd();
                open.borrow_mut().insert(fd);
                let open = Rc::clone(&open);
                let state = Arc::clone(&state);
                state.open.fetch_add(1, Ordering::SeqCst);
                let served = connection(stream, Arc::clone(&state));
                monoio::spawn(async move {
                    served.await;
                    open.borrow_mut().remove(&fd);
                    state.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(_) => monoio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    for fd in open.borrow().iter() {
        // Each descriptor belongs to a live connection task, which removes it from
        // the set before its socket closes.
        let _ = sys::shutdown(*fd, sys::Shutdown::Both);
    }
    for _ in 0..500 {
        if open.borrow().is_empty() {
            break;
        }
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads into spare capacity; returns bytes read (0 is EOF).
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    use monoio::buf::IoBufMut;
    if buf.capacity() - buf.len() < PIECE {
        buf.reserve(PIECE);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (result, slice) = stream.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    result
}

async fn send(stream: &mut TcpStream, bytes: Vec<u8>) -> io::Result<()> {
    let (result, _) = stream.write_all(bytes).await;
    result.map(|_| ())
}

async fn connection(mut stream: TcpStream, state: Arc<OriginState>) {
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE);
    let mut scratch = Vec::new();
    let forwarding = Forwarding {
        client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        proto: "http",
    };
    let limits = h1::Limits::default();
    let mut served = 0u64;
    loop {
        let request = loop {
            match h1::parse_request(&buf, &limits, &forwarding, &mut scratch) {
                Ok(Some(request)) => break request,
                Ok(None) => {}
                Err(_) => {
                    let _ = send(&mut stream, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()).await;
                    return;
                }
            }
            match fill(&mut stream, &mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        };
        let head = buf[..request.head_len].to_vec();
        buf.drain(..request.head_len);
        let target = head_target(&head);
        let path = target.split('?').next().unwrap_or("/").to_string();
        if path == "/fail-reused" && served > 0 {
            return;
        }
        if path == "/ws" && request.upgrade {
            state.requests.fetch_add(1, Ordering::SeqCst);
            let key = h1::header_value(&head, "sec-websocket-key").unwrap_or(b"");
            let accept = websocket::accept_response(key, &state.name);
            if send(&mut stream, accept).await.is_ok() {
                let _ = websocket::echo(&mut stream, std::mem::take(&mut buf)).await;
            }
            return;
        }
        if path == "/early/413" {
            // An upload limit: answer after the first KiB of the body, and close
            // without reading the rest.
            while buf.len() < 1024 {
                match fill(&mut stream, &mut buf).await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
            }
            state.requests.fetch_add(1, Ordering::SeqCst);
            let _ = send(
                &mut stream,
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 10\r\nConnection: close\r\n\r\ntoo large\n".to_vec(),
            )
            .await;
            return;
        }
        if path == "/bad/switch" {
            // A protocol switch nobody asked for.
            let _ = send(
                &mut stream,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(),
            )
            .await;
            return;
        }

        // Read the body: echoed, hashed, or discarded.
        let mut body = Vec::new();
        let mut hash = Fnv::new();
        let mut received = 0u64;
        let keep = path == "/echo";
        match read_body(&mut stream, &mut buf, request.body, |data| {
            hash.update(data);
            received += data.len() as u64;
            if keep && body.len() + data.len() <= MAX_ECHO {
                body.extend_from_slice(data);
            }
        })
        .await
        {
            Ok(()) => {}
            Err(_) => return,
        }
        let ok = respond(
            &mut stream,
            &state,
            &path,
            &head,
            request.method == Method::Head,
            request.keep_alive,
            body,
            (received, hash),
        )
        .await;
        if !ok || !request.keep_alive {
            return;
        }
        served += 1;
    }
}

fn head_target(head: &[u8]) -> String {
    let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let _method = parts.next();
    String::from_utf8_lossy(parts.next().unwrap_or(b"/")).into_owned()
}

async fn read_body<F: FnMut(&[u8])>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    kind: BodyKind,
    mut sink: F,
) -> io::Result<()> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad body");
    match kind {
        BodyKind::None | BodyKind::CloseDelimited => Ok(()),
        BodyKind::Length(mut remaining) => loop {
            let n = (buf.len() as u64).min(remaining) as usize;
            sink(&buf[..n]);
            buf.drain(..n);
            remaining -= n as u64;
            if remaining == 0 {
                return Ok(());
            }
            if fill(stream, buf).await? == 0 {
                return Err(bad());
            }
        },
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new(16 * 1024);
            loop {
                let mut pos = 0;
                while pos < buf.len() && !decoder.is_done() {
                    let (used, event) = decoder.decode(&buf[pos..]).map_err(|_| bad())?;
                    if let Some(ChunkEvent::Data(data)) = event {
                        sink(data);
                    }
                    pos += used;
                    if used == 0 {
                        break;
                    }
                }
                buf.drain(..pos);
                if decoder.is_done() {
                    return Ok(());
                }
                if fill(stream, buf).await? == 0 {
                    return Err(bad());
                }
            }
        }
    }
}

/// 64-bit FNV-1a, to check large bodies end to end without holding them.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    /// The offset basis.
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes more bytes.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

/// The generated body byte at `offset` (so clients can check what they got).
pub fn pattern_byte(offset: u64) -> u8 {
    b'a' + (offset % 26) as u8
}

pub(super) fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(offset + i)).collect()
}

fn simple(status: u16, name: &str, body: &[u8], head_only: bool, keep_alive: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let no_body = status < 200 || status == 204 || status == 304;
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nX-Origin: {name}\r\n").into_bytes();
    if !no_body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !no_body && !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The chaos endpoints, `/fault/KIND[/N]`: a response that goes wrong in one way.
/// The connection closes after each.
async fn fault(stream: &mut TcpStream, what: &str) {
    let (kind, n) = match what.split_once('/') {
        Some((kind, n)) => (kind, n.parse::<usize>().unwrap_or(0)),
        None => (what, 0),
    };
    let declared = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 2 * n);
    match kind {
        // A head cut off in the middle.
        "partial-head" => {
            let _ = send(stream, b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()).await;
        }
        // N bytes of a 2N-byte body, then a reset.
        "reset-after" => {
            let mut out = declared.into_bytes();
            out.extend_from_slice(&pattern(0, n));
            let _ = send(stream, out).await;
            let _ = sys::set_linger_zero(stream.as_raw_fd());
        }
        // N bytes of a 2N-byte body, then nothing until the peer goes.
        "stall-body" => {
            let mut out = declared.into_bytes();
            out.extend_from_slice(&pattern(0, n));
            if send(stream, out).await.is_ok() {
                let mut buf = Vec::with_capacity(1024);
                while let Ok(n) = fill(stream, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                    buf.clear();
                }
            }
        }
        // A whole response with an N-byte body, one byte every millisecond.
        "slow" => {
            let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
            out.extend_from_slice(&pattern(0, n));
            for byte in out {
                if send(stream, vec![byte]).await.is_err() {
                    return;
                }
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        _ => {
            let _ = send(
                stream,
                simple(404, "fault", b"no such fault\n", false, false),
            )
            .await;
        }
    }
}

/// Writes the response for `path`. Returns false when the connection must close.
#[allow(clippy::too_many_arguments)]
async fn respond(
    stream: &mut TcpStream,
    state: &OriginState,
    path: &str,
    head: &[u8],
    head_only: bool,
    keep_alive: bool,
    body: Vec<u8>,
    (received, hash): (u64, Fnv),
) -> bool {
    let name = state.name.as_str();
    state.requests.fetch_add(1, Ordering::SeqCst);
    if !state.delay.is_zero() {
        monoio::time::sleep(state.delay).await;
    }
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or("");
    let arg = segments.next().unwrap_or("");
    let number = arg.parse::<u64>().ok();
    let reply = |status: u16, body: &[u8]| simple(status, name, body, head_only, keep_alive);
    let result = match (first, number) {
        ("health", _) => send(stream, reply(200, b"ok\n")).await,
        ("status", Some(code)) if (100..=599).contains(&code) && code != 101 => {
            send(stream, reply(code as u16, format!("{code}\n").as_bytes())).await
        }
        ("delay", _) => match parse_duration(arg) {
            Ok(d) => {
                monoio::time::sleep(d).await;
                send(stream, reply(200, format!("{name}\n").as_bytes())).await
            }
            Err(_) => send(stream, reply(404, b"bad duration\n")).await,
        },
        ("bytes", Some(n)) => {
            let mut out =
                format!("HTTP/1.1 200 OK\r\nX-Origin: {name}\r\nContent-Length: {n}\r\n\r\n")
                    .into_bytes();
            let mut sent = 0u64;
            let mut result = Ok(());
            while result.is_ok() && (sent < n || !out.is_empty()) && !head_only {
                let take = (n - sent).min((PIECE - out.len().min(PIECE)) as u64) as usize;
                out.extend_from_slice(&pattern(sent, take));
                sent += take as u64;
                result = send(stream, std::mem::take(&mut out)).await;
            }
            if head_only {
                result = send(stream, out).await;
            }
            result
        }
        ("chunked", Some(n)) => {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nX-Origin: {name}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Origin-Trailer\r\n\r\n"
            )
            .into_bytes();
            let mut sent = 0u64;
            let mut result = Ok(());
            while result.is_ok() && sent < n && !head_only {
                let take = (n - sent).min(16 * 1024) as usize;
                out.extend_from_slice(format!("{take:x}\r\n").as_bytes());
                out.extend_from_slice(&pattern(sent, take));
                out.extend_from_slice(b"\r\n");
                sent += take as u64;
                if out.len() >= PIECE {
                    result = send(stream, std::mem::take(&mut out)).await;
                }
            }
            if !head_only {
                out.extend_from_slice(b"0\r\nX-Origin-Trailer: done\r\n\r\n");
            }
            match result {
                Ok(()) => send(stream, out).await,
                e => e,
            }
        }
        ("close", Some(n)) => {
            let mut out =
                format!("HTTP/1.1 200 OK\r\nX-Origin: {name}\r\nConnection: close\r\n\r\n")
                    .into_bytes();
            out.extend_from_slice(&pattern(0, n.min(MAX_ECHO as u64) as usize));
            let _ = send(stream, out).await;
            return false;
        }
        ("echo", _) => send(stream, reply(200, &body)).await,
        ("sink", _) => {
            let summary = format!("{received} {:016x}\n", hash.finish());
            send(stream, reply(200, summary.as_bytes())).await
        }
        ("headers", _) => send(stream, reply(200, head)).await,
        ("conns", _) => {
            let n = state.connections.load(Ordering::SeqCst);
            send(stream, reply(200, format!("{n}\n").as_bytes())).await
        }
        ("interim", _) => {
            let mut out =
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".to_vec();
            out.extend_from_slice(&reply(200, format!("{name}\n").as_bytes()));
            send(stream, out).await
        }
        ("hang", _) => {
            let mut buf = Vec::with_capacity(1024);
            while let Ok(n) = fill(stream, &mut buf).await {
                if n == 0 {
                    break;
                }
                buf.clear();
            }
            return false;
        }
        ("reset", _) => {
            let _ = sys::set_linger_zero(stream.as_raw_fd());
            return false;
        }
        ("bad", _) if arg == "cl-te" => {
            let _ = send(stream, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n".to_vec()).await;
            return false;
        }
        ("fault", _) => {
            fault(stream, arg).await;
            return false;
        }
        ("bad", _) if arg == "interim-reset" => {
            // An interim response, then the connection goes away.
            let _ = send(
                stream,
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n".to_vec(),
            )
            .await;
            return false;
        }
        ("bad", _) if arg == "bare-lf" => {
            // A field line ended by a bare LF: a CRLF-only reader sees one field.
            let _ = send(
                stream,
                b"HTTP/1.1 200 OK\r\nX-Foo: a\nContent-Length: 5\r\n\r\nhello".to_vec(),
            )
            .await;
            return false;
        }
        ("bad", _) if arg == "garbage" => {
            let _ = send(stream, b"this is not http\r\n\r\n".to_vec()).await;
            return false;
        }
        _ => send(stream, reply(200, format!("{name}\n").as_bytes())).await,
    };
    result.is_ok()
}
