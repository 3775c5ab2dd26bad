//! `admin`: the admin listener, on its own port and its own thread.
//!
//! Owns the HTTP endpoints for operators: `GET /healthz`, `GET /stats` (JSON),
//! `GET /metrics` (Prometheus), `GET /backends`, and
//! `POST /backends/NAME/drain|enable|disable`, answered from the control thread
//! through a `ServerHandle`. Served off the request path with blocking std sockets
//! and short timeouts, one connection at a time. Binds to loopback by default; it
//! has no authentication and must not be exposed to untrusted networks.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::control::handle::{AdminState, BackendStatus, ServerHandle};
use crate::log_debug;
use crate::observe::exposition;
use crate::observe::logging::escape_json;

/// Longest admin request head we read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long an admin client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A running admin listener.
#[derive(Debug)]
pub struct AdminServer {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Stops the listener thread.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts serving `listener` on a thread of its own.
pub fn spawn(listener: TcpListener, server: ServerHandle) -> io::Result<AdminServer> {
    let mut address = listener.local_addr()?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopping);
    let thread = std::thread::Builder::new()
        .name("ringlb-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                match stream {
                    Ok(stream) => {
                        if let Err(e) = handle(stream, &server) {
                            log_debug!("admin: {e}");
                        }
                    }
                    Err(e) => log_debug!("admin accept: {e}"),
                }
            }
        })?;
    Ok(AdminServer {
        address,
        stopping,
        thread: Some(thread),
    })
}

fn handle(mut stream: TcpStream, server: &ServerHandle) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let (method, path) = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                );
            }
            Ok(httparse::Status::Partial) if len < MAX_REQUEST => {}
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n"),
        }
    };
    let raw_path = path.clone();
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET" | "HEAD", ["healthz"]) => respond(&mut stream, 200, "text/plain", "ok\n"),
        ("GET", ["stats"]) => {
            let shard = match query_param(&raw_path, "shard").map(str::parse::<usize>) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    return respond(&mut stream, 400, "text/plain", "shard must be a number\n")
                }
            };
            match server.report(shard, REPORT_WAIT) {
                Some(report) => {
                    let body = exposition::stats_json(&report);
                    respond(&mut stream, 200, "application/json", &body)
                }
                None => respond(&mut stream, 404, "text/plain", "no such shard\n"),
            }
        }
        ("GET", ["metrics"]) => match server.report(None, REPORT_WAIT) {
            Some(report) => {
                let body = exposition::metrics_text(&report);
                respond(&mut stream, 200, "text/plain; version=0.0.4", &body)
            }
            None => respond(
                &mut stream,
                503,
                "text/plain",
                "control thread unavailable\n",
            ),
        },
        ("GET", ["backends"]) => match server.backends() {
            Some(list) => {
                let items: Vec<String> = list.iter().map(backend_json).collect();
                let body = format!("[{}]\n", items.join(","));
                respond(&mut stream, 200, "application/json", &body)
            }
            None => respond(
                &mut stream,
                503,
                "text/plain",
                "control thread unavailable\n",
            ),
        },
        ("POST", ["backends", name, action]) => {
            let state = match *action {
                "drain" => AdminState::Draining,
                "enable" => AdminState::Enabled,
                "disable" => AdminState::Disabled,
                _ => return respond(&mut stream, 404, "text/plain", "not found\n"),
            };
            match server.set_admin_state(name, state) {
                Some(status) => {
                    let body = format!("{}\n", backend_json(&status));
                    respond(&mut stream, 200, "application/json", &body)
                }
                None => {
                    let mut body = String::from("{\"error\":\"no backend named ");
                    escape_json(name, &mut body);
                    body.push_str("\"}\n");
                    respond(&mut stream, 404, "application/json", &body)
                }
            }
        }
        (_, ["healthz"] | ["backends"] | ["backends", _, _] | ["stats"] | ["metrics"]) => {
            respond(&mut stream, 405, "text/plain", "method not allowed\n")
        }
        _ => respond(&mut stream, 404, "text/plain", "not found\n"),
    }
}

/// How long `/stats` and `/metrics` wait for shards' fresh figures before using
/// their last periodic report: keeps the endpoints fast when shards are busy.
const REPORT_WAIT: Duration = Duration::from_millis(20);

/// The value of `name` in the query string of `path`.
fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let query = path.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// One backend as a JSON object.
fn backend_json(b: &BackendStatus) -> String {
    let mut name = String::new();
    escape_json(&b.name, &mut name);
    format!(
        "{{\"name\":\"{name}\",\"address\":\"{}\",\"weight\":{},\"effective_weight\":{},\"state\":\"{}\",\"healthy\":{},\"breaker\":\"{}\"}}",
        b.address,
        b.weight,
        b.effective_weight,
        b.state.as_str(),
        b.healthy,
        b.breaker.as_str()
    )
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        503 => "Service Unavailable",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: ringlb\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}
