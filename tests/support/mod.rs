//! Shared test support: real origins and a real proxy on 127.0.0.1:0, and clients
//! that talk raw bytes or plain HTTP to them. Every wait here is bounded.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringlb::config::{BackendConfig, Config, IoMode};
use ringlb::shard::Driver;
use ringlb::testkit::origin::{self, OriginHandle};

pub mod h2client;
pub mod process;
pub mod tls;
use ringlb::Server;

/// Longest any single network wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// `work`, failing the test if it takes longer than `WAIT`.
pub async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    monoio::time::timeout(WAIT, work)
        .await
        .expect("finished within the test's wait")
}

/// Defines `mod $name { fn io_uring(); fn epoll(); }`, one test per io driver.
#[macro_export]
macro_rules! both_drivers {
    ($(fn $name:ident($driver:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                fn run($driver: ringlb::shard::Driver) $body
                #[test]
                fn io_uring() { run(ringlb::shard::Driver::IoUring) }
                #[test]
                fn epoll() { run(ringlb::shard::Driver::Epoll) }
            }
        )*
    };
}

/// Warnings only; RINGLB_TEST_LOG=debug shows the proxy's debug lines when a test
/// fails.
fn test_logging() {
    let level = match std::env::var("RINGLB_TEST_LOG").as_deref() {
        Ok("debug") => ringlb::observe::logging::Level::Debug,
        _ => ringlb::observe::logging::Level::Warn,
    };
    ringlb::observe::logging::init(level, ringlb::observe::logging::Format::Text);
}

/// Origins and a proxy in front of them.
pub struct Harness {
    pub server: Option<Server>,
    pub origins: Vec<OriginHandle>,
    pub addr: SocketAddr,
    /// The configuration it started with (reloads start from it).
    pub config: Config,
}

impl Harness {
    /// `n` origins named app1..appN and a one-shard proxy on `driver`; `tune` edits
    /// the configuration before start.
    pub fn start(driver: Driver, n: usize, tune: impl FnOnce(&mut Config)) -> Harness {
        test_logging();
        let origins: Vec<OriginHandle> = (1..=n)
            .map(|i| spawn_origin(driver, &format!("app{i}")))
            .collect();
        Harness::in_front(base_config(driver), origins, tune)
    }

    /// `n` HTTP/2 origins (h2c, `testkit::h2_origin`) named app1..appN behind
    /// a one-shard proxy whose cluster speaks HTTP/2 to them; `tune` edits the
    /// configuration before start.
    pub fn start_h2(driver: Driver, n: usize, tune: impl FnOnce(&mut Config)) -> Harness {
        test_logging();
        let origins: Vec<OriginHandle> = (1..=n)
            .map(|i| {
                ringlb::testkit::h2_origin::spawn(
                    "127.0.0.1:0".parse().unwrap(),
                    &format!("app{i}"),
                    driver,
                )
                .expect("h2 origin starts")
            })
            .collect();
        let mut config = base_config(driver);
        config.clusters[0].upstream.protocol = ringlb::config::UpstreamProtocol::H2;
        Harness::in_front(config, origins, tune)
    }

    /// The proxy on `config`, its first cluster's backends `origins` (app1..appN),
    /// tuned by `tune`.
    fn in_front(
        mut config: Config,
        origins: Vec<OriginHandle>,
        tune: impl FnOnce(&mut Config),
    ) -> Harness {
        for (i, o) in origins.iter().enumerate() {
            config.clusters[0].backends.push(BackendConfig {
                name: format!("app{}", i + 1),
                address: o.addr(),
                weight: 1,
            });
        }
        tune(&mut config);
        Harness::launch(config, origins)
    }

    /// Starts the proxy on `config` in front of `origins`.
    fn launch(config: Config, origins: Vec<OriginHandle>) -> Harness {
        let server = ringlb::start(config.clone()).expect("proxy starts");
        let addr = server.local_addr();
        Harness {
            server: Some(server),
            origins,
            addr,
            config,
        }
    }

    /// Reloads the starting configuration with another backend table for its
    /// first cluster; returns once every shard has been sent it.
    pub fn set_backends(&self, backends: Vec<BackendConfig>) {
        let mut config = self.config.clone();
        config.clusters[0].backends = backends;
        self.server()
            .handle()
            .reload(config)
            .expect("the reload is taken");
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    pub fn stats(&self) -> ringlb::observe::stats::Counters {
        self.server().handle().stats().expect("stats")
    }

    /// The origins as a backend table (app1..appN), every one with `weight`.
    pub fn backend_table(&self, weight: u32) -> Vec<BackendConfig> {
        self.origins
            .iter()
            .enumerate()
            .map(|(i, o)| BackendConfig {
                name: format!("app{}", i + 1),
                address: o.addr(),
                weight,
            })
            .collect()
    }

    /// A backend's state as the control thread sees it.
    pub fn backend(&self, name: &str) -> ringlb::control::handle::BackendStatus {
        self.server()
            .handle()
            .backends()
            .expect("backends")
            .into_iter()
            .find(|b| b.name == name)
            .expect("backend")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.handle().abort();
            server.wait();
        }
    }
}

pub fn io_mode(driver: Driver) -> IoMode {
    match driver {
        Driver::IoUring => IoMode::IoUring,
        Driver::Epoll => IoMode::Epoll,
    }
}

/// A configuration for tests: loopback, port 0, one shard, quiet.
pub fn base_config(driver: Driver) -> Config {
    let mut config = Config::default();
    config.listeners[0].address = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shards = 1;
    config.server.io = io_mode(driver);
    // Reloads apply the configuration's log level: keep tests quiet unless asked.
    if std::env::var("RINGLB_TEST_LOG").as_deref() != Ok("debug") {
        config.logging.level = ringlb::config::LogLevel::Warn;
    }
    // Tests that count origin connections must not see health checks; the tests
    // of health checks turn them on.
    config.clusters[0].health_check.kind = ringlb::config::CheckType::None;
    config.clusters[0].circuit_breaker.enabled = false;
    config
}

pub fn spawn_origin(driver: Driver, name: &str) -> OriginHandle {
    origin::spawn("127.0.0.1:0".parse().unwrap(), name, driver).expect("origin starts")
}

/// A backend that accepts connections and never answers.
pub struct SilentBackend {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    listener: std::net::TcpListener,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentBackend {
    pub fn start() -> SilentBackend {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&accepted);
        let accepting = listener.try_clone().unwrap();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in accepting.incoming() {
                match stream {
                    Ok(s) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        held.push(s);
                    }
                    Err(_) => return,
                }
            }
        });
        SilentBackend {
            addr,
            accepted,
            listener,
            thread: Some(thread),
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops listening and closes every connection it held.
    pub fn stop(mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: shutdown() on a listener this struct owns; it wakes the accept
        // loop (EINVAL) without closing the descriptor under it.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A port free now, for something the test itself is about to bind there.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An address where nothing listens, and nothing will: a socket stays bound to
/// it, never listening, for the rest of the test process, so a connect is
/// refused. (A port merely freed could be taken at once by a listener that
/// another test binds to port 0, which then answers instead.)
pub fn closed_port() -> SocketAddr {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    static HELD: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());
    HELD.lock().unwrap().push(socket);
    address
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `request` and reads until the proxy closes the connection.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    read_to_close(&mut s)
}

/// Sends the head of a POST to `path` with a `total`-byte body, then streams the
/// body from another thread until it is all sent or the proxy stops taking it.
/// The thread returns how many body bytes went.
pub fn start_upload(s: &mut TcpStream, path: &str, total: usize) -> std::thread::JoinHandle<usize> {
    s.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < total && writer.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    })
}

/// Reads until EOF (or a reset, which also ends the conversation).
pub fn read_to_close(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "no EOF within {WAIT:?}; got {:?}",
                    String::from_utf8_lossy(&out)
                )
            }
            Err(_) => return out,
        }
    }
}

/// A parsed response read from a stream.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from `s` (whose unread bytes so far are `pending`), framed
/// by its headers as RFC 9112 says; `head_request` marks a reply to HEAD.
pub fn read_reply(s: &mut impl Read, pending: &mut Vec<u8>, head_request: bool) -> Reply {
    let (status, headers, head_len) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(n) = r.parse(pending).expect("valid response head") {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (r.code.unwrap(), headers, n);
        }
        fill(s, pending);
    };
    pending.drain(..head_len);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    if head_request || status < 200 || status == 204 || status == 304 {
        // no body
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size_line = read_line(s, pending);
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                .expect("chunk size");
            if size == 0 {
                // Trailer fields until an empty line.
                loop {
                    let line = read_line(s, pending);
                    if line.is_empty() {
                        break;
                    }
                    let (n, v) = line.split_once(':').expect("trailer field");
                    trailers.push((n.trim().to_string(), v.trim().to_string()));
                }
                break;
            }
            while pending.len() < size + 2 {
                fill(s, pending);
            }
            body.extend_from_slice(&pending[..size]);
            assert_eq!(
                &pending[size..size + 2],
                b"\r\n",
                "chunk data ends with CRLF"
            );
            pending.drain(..size + 2);
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().expect("content-length");
        while pending.len() < len {
            fill(s, pending);
        }
        body = pending.drain(..len).collect();
    } else {
        body = std::mem::take(pending);
        body.extend(read_to_close(s));
    }
    Reply {
        status,
        headers,
        body,
        trailers,
    }
}

/// Reads more bytes into `pending`; EOF here is a test failure.
fn fill(s: &mut impl Read, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 64 * 1024];
    let n = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => break other.expect("read"),
        }
    };
    assert!(
        n > 0,
        "EOF in the middle of a response: {:?}",
        String::from_utf8_lossy(pending)
    );
    pending.extend_from_slice(&buf[..n]);
}

/// Takes one CRLF-terminated line from `pending`, reading more as needed.
fn read_line(s: &mut impl Read, pending: &mut Vec<u8>) -> String {
    loop {
        if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&pending[..i]).into_owned();
            pending.drain(..i + 2);
            return line;
        }
        fill(s, pending);
    }
}

/// Sends one request on a new connection and reads one response.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let mut pending = Vec::new();
    read_reply(&mut s, &mut pending, raw.starts_with(b"HEAD "))
}

/// `GET path`, naming `addr` in `Host` as any HTTP client does.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Polls `check` until it returns true, for at most `WAIT`. For state that changes
/// on another thread with no event to wait on from here.
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A listener on 127.0.0.1:0.
pub fn listener(name: &str) -> ringlb::config::ListenerConfig {
    ringlb::config::ListenerConfig {
        name: name.into(),
        address: "127.0.0.1:0".parse().unwrap(),
        protocol: ringlb::config::ListenerProtocol::Http,
        cluster: None,
        accept_proxy: false,
        proxy_trusted: Vec::new(),
        tls: None,
    }
}

/// A TCP listener on 127.0.0.1:0 relaying to `cluster`.
pub fn tcp_listener(name: &str, cluster: &str) -> ringlb::config::ListenerConfig {
    ringlb::config::ListenerConfig {
        name: name.into(),
        address: "127.0.0.1:0".parse().unwrap(),
        protocol: ringlb::config::ListenerProtocol::Tcp,
        cluster: Some(cluster.into()),
        accept_proxy: false,
        proxy_trusted: Vec::new(),
        tls: None,
    }
}

/// How a `TcpOrigin` connection ended, seen from the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginEnd {
    /// The client sent FIN (and the origin answered `bye N`).
    Fin,
    /// The connection was reset or failed.
    Reset,
}

/// A plain TCP backend, one thread per connection. Each connection: it writes
/// `NAME\n`, then echoes what it reads; a read of `reset\n` makes it reset the
/// connection; on the client's FIN it writes `bye N\n` (N bytes read in all)
/// and closes. It records how each connection ended.
pub struct TcpOrigin {
    pub addr: SocketAddr,
    pub name: String,
    ends: std::sync::Arc<std::sync::Mutex<Vec<OriginEnd>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TcpOrigin {
    pub fn start(name: &str) -> TcpOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ends = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (e, a, n) = (ends.clone(), accepted.clone(), name.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (e, n) = (e.clone(), n.clone());
                std::thread::spawn(move || {
                    let end = tcp_origin_connection(stream, &n);
                    e.lock().unwrap().push(end);
                });
            }
        });
        TcpOrigin {
            addr,
            name: name.into(),
            ends,
            accepted,
        }
    }

    /// How its connections ended so far.
    pub fn ends(&self) -> Vec<OriginEnd> {
        self.ends.lock().unwrap().clone()
    }

    /// Connections it accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn tcp_origin_connection(mut stream: TcpStream, name: &str) -> OriginEnd {
    stream.set_read_timeout(Some(WAIT * 4)).unwrap();
    if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
        return OriginEnd::Reset;
    }
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = stream.write_all(format!("bye {total}\n").as_bytes());
                return OriginEnd::Fin;
            }
            Ok(n) => {
                total += n;
                if &buf[..n] == b"reset\n" {
                    socket2::SockRef::from(&stream)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                    return OriginEnd::Reset;
                }
                if stream.write_all(&buf[..n]).is_err() {
                    return OriginEnd::Reset;
                }
            }
            Err(_) => return OriginEnd::Reset,
        }
    }
}

/// Reads one `\n`-terminated line (without it), byte by byte.
pub fn read_text_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            other => panic!(
                "reading a line: {other:?} after {:?}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
    String::from_utf8(line).unwrap()
}

/// A route named `name` on `listener` to `cluster`, matching everything until
/// its fields are set.
pub fn route(name: &str, listener: &str, cluster: &str) -> ringlb::config::RouteConfig {
    ringlb::config::RouteConfig::catch_all(name, listener, cluster)
}

/// A cluster of `backends` (name, address), without health checks or breakers.
pub fn cluster(name: &str, backends: &[(&str, SocketAddr)]) -> ringlb::config::ClusterConfig {
    let mut c = ringlb::config::ClusterConfig::new(name);
    c.health_check.kind = ringlb::config::CheckType::None;
    c.circuit_breaker.enabled = false;
    c.backends = backends
        .iter()
        .map(|(name, address)| BackendConfig {
            name: name.to_string(),
            address: *address,
            weight: 1,
        })
        .collect();
    c
}

impl Harness {
    /// Origins named `names` and a one-shard proxy whose listeners, routes and
    /// clusters `build` sets, given the origins (in `names` order).
    pub fn start_full(
        driver: Driver,
        names: &[&str],
        build: impl FnOnce(&mut Config, &[OriginHandle]),
    ) -> Harness {
        test_logging();
        let origins: Vec<OriginHandle> = names.iter().map(|n| spawn_origin(driver, n)).collect();
        let mut config = base_config(driver);
        config.form = ringlb::config::Form::Full;
        config.listeners.clear();
        config.routes.clear();
        config.clusters.clear();
        build(&mut config, &origins);
        Harness::launch(config, origins)
    }

    /// The address listener `name` was bound to.
    pub fn listener_addr(&self, name: &str) -> SocketAddr {
        self.server()
            .listener_addr(name)
            .expect("a listener of that name")
    }
}

/// Sends `GET path` with `Host: host` (and `extra` header lines) on a new
/// connection and reads the reply.
pub fn get_host(addr: SocketAddr, host: &str, path: &str, extra: &str) -> Reply {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// Which origin answered (its `X-Origin` header), or `-` when none did.
pub fn served_by(reply: &Reply) -> String {
    reply.header("x-origin").unwrap_or("-").to_string()
}
