//! `admin`: the admin listener, on its own port and its own thread.
//!
//! Owns the HTTP endpoints for operators: `GET /healthz`, `/stats` (JSON),
//! `/metrics` (Prometheus), `/backends`, `/clusters`, the live page `GET /`
//! ([`PAGE`], polling `/stats`); the runtime API that changes
//! backends (add, remove, weight, drain, enable, disable) and `POST /reload`, all
//! answered by the control thread through a `ServerHandle`. Guards them with an
//! optional bearer token and, for changes, against what a web page could send
//! ([`access`]). Served off the request path with blocking std sockets and short
//! timeouts, one connection at a time; only `GET /debug/profile` ([`profile`],
//! off unless `admin.profiling`) is answered from a thread of its own, as it
//! takes seconds.

pub mod access;
pub mod profile;

pub use access::AdminAccess;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::{self, BackendConfig};
use crate::control::handle::{
    AdminState, ApiError, BackendStatus, ClusterStatus, ReloadError, ServerHandle,
};
use crate::observe::exposition;
use crate::observe::logging::escape_json;
use crate::{log_debug, log_info, log_warn};
use access::{authorize, check_change, check_read, ChangeRequest, Refusal};

/// Longest admin request head we read.
const MAX_HEAD: usize = 8 * 1024;
/// Longest admin request body we read.
const MAX_BODY: usize = 64 * 1024;
/// How long an admin client may take to send its whole request (one connection
/// is served at a time, so a slow one must not hold the others for longer).
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
pub fn spawn(
    listener: TcpListener,
    server: ServerHandle,
    access: Arc<Mutex<AdminAccess>>,
) -> io::Result<AdminServer> {
    let mut address = listener.local_addr()?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let bound = listener.local_addr()?;
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
                        // A poisoned lock still holds the last token: never fail open.
                        let access = match access.lock() {
                            Ok(a) => a.clone(),
                            Err(poisoned) => poisoned.into_inner().clone(),
                        };
                        let context = Context {
                            server: &server,
                            access: &access,
                            address: bound,
                        };
                        if let Err(e) = handle(stream, &context) {
                            log_debug!("admin: {e}");
                        }
                    }
                    Err(e) => {
                        log_debug!("admin accept: {e}");
                        // Out of descriptors, the pending connection stays in the
                        // backlog and accept fails at once: do not spin on it.
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })?;
    Ok(AdminServer {
        address,
        stopping,
        thread: Some(thread),
    })
}

/// What one admin request is answered with.
struct Context<'a> {
    server: &'a ServerHandle,
    access: &'a AdminAccess,
    /// The address the admin listener is bound to (for the `Host` check).
    address: SocketAddr,
}

/// One admin request, read in full.
struct AdminRequest {
    method: String,
    /// The target as sent (with its query).
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl AdminRequest {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The live statistics page `GET /` serves: HTML, CSS and JS in one file, which
/// polls `/stats`; no external requests, no build step.
const PAGE: &str = include_str!("page.html");

/// The page's extra headers: a Content-Security-Policy that lets run only the
/// page's own script and style (by their SHA-256, so nothing injected would run),
/// loads nothing from elsewhere, and forbids framing it (its buttons change
/// backends).
fn page_headers() -> &'static str {
    static HEADERS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HEADERS.get_or_init(|| {
        format!(
            "Content-Security-Policy: default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\nX-Frame-Options: DENY\r\nCache-Control: no-cache\r\n",
            inline_hash(PAGE, "script"),
            inline_hash(PAGE, "style"),
        )
    })
}

/// `sha256-BASE64` of the first inline `<tag>` element's content in `page`.
fn inline_hash(page: &str, tag: &str) -> String {
    use base64::Engine;
    let open = format!("<{tag}>");
    let start = page.find(&open).map_or(0, |i| i + open.len());
    let end = page[start..]
        .find(&format!("</{tag}>"))
        .map_or(page.len(), |i| start + i);
    let digest = ring::digest::digest(&ring::digest::SHA256, &page.as_bytes()[start..end]);
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

/// An answer: status, content type, body, and extra header lines.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    extra: String,
}

impl Answer {
    fn json(status: u16, body: String) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body,
            extra: String::new(),
        }
    }

    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain",
            body: body.to_string(),
            extra: String::new(),
        }
    }

    fn error(status: u16, message: &str) -> Answer {
        let mut body = String::from("{\"error\":\"");
        escape_json(message, &mut body);
        body.push_str("\"}\n");
        Answer::json(status, body)
    }
}

/// Reads one request (head and body) within the read timeout; `None` when the
/// client closed first.
fn read_request(stream: &mut TcpStream) -> Result<Option<AdminRequest>, Answer> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let deadline = Instant::now() + READ_TIMEOUT;
    // Each read may wait only what is left of the deadline (and is tried again
    // when a signal, such as a profile's, interrupts it).
    let read = |stream: &mut TcpStream, into: &mut [u8]| -> Result<usize, Answer> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Answer::error(408, "the request took too long"));
            }
            match stream
                .set_read_timeout(Some(left))
                .and_then(|()| stream.read(into))
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                read => return read.map_err(|_| Answer::error(400, "could not read the request")),
            }
        }
    };
    let (request, head_len) = loop {
        let n = read(stream, &mut buf[len..])?;
        if n == 0 {
            return Ok(None);
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(head_len)) => {
                let request = AdminRequest {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), h.value.to_vec()))
                        .collect(),
                    body: Vec::new(),
                };
                break (request, head_len);
            }
            Ok(httparse::Status::Partial) if len < MAX_HEAD => {}
            _ => return Err(Answer::error(400, "bad request")),
        }
    };
    let mut request = request;
    if request.header("transfer-encoding").is_some() {
        return Err(Answer::error(411, "send the body with a Content-Length"));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| Answer::error(400, "invalid Content-Length"))?,
    };
    if length > MAX_BODY {
        return Err(Answer::error(413, "body larger than 64 KiB"));
    }
    let mut body = buf[head_len..len].to_vec();
    body.truncate(length);
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = read(stream, &mut chunk)?;
        if n == 0 {
            return Err(Answer::error(400, "body shorter than its Content-Length"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    request.body = body;
    Ok(Some(request))
}

fn handle(mut stream: TcpStream, context: &Context<'_>) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let reply = match read_request(&mut stream) {
        Ok(Some(request)) => answer(&request, context),
        Ok(None) => return Ok(()),
        Err(answer) => answer.into(),
    };
    match reply {
        Reply::Now(answer) => respond(&mut stream, &answer),
        Reply::Profile(asked, held) => profile_later(stream, asked, held),
    }
}

/// What a request gets: an answer now, or a profile taken first.
enum Reply {
    Now(Answer),
    Profile(profile::Asked, profile::Held),
}

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Reply {
        Reply::Now(answer)
    }
}

/// Takes the profile on a thread of its own, so that the admin listener keeps
/// answering (the stats page, scrapes) meanwhile, and answers with it.
fn profile_later(
    mut stream: TcpStream,
    asked: profile::Asked,
    held: profile::Held,
) -> io::Result<()> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    // To answer on should the thread not start.
    let mut fallback = stream.try_clone()?;
    let spawned = std::thread::Builder::new()
        .name("ringlb-profile".into())
        .spawn(move || {
            let seconds = asked.duration.as_secs();
            log_info!(
                "profiling every thread for {seconds} s at {} Hz, asked from {peer}",
                profile::FREQUENCY
            );
            let answer = match profile::take(asked, &held) {
                Ok(taken) => {
                    log_info!("profile taken: {} samples in {seconds} s", taken.samples);
                    Answer {
                        status: 200,
                        content_type: asked.format.content_type(),
                        body: String::from_utf8_lossy(&taken.body).into_owned(),
                        extra: "Cache-Control: no-store\r\n".to_string(),
                    }
                }
                Err(e) => {
                    log_warn!("no profile: {e}");
                    Answer::error(e.status(), &e.to_string())
                }
            };
            drop(held);
            if let Err(e) = respond(&mut stream, &answer) {
                log_debug!("admin: profile to {peer}: {e}");
            }
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => respond(
            &mut fallback,
            &Answer::error(500, &format!("could not start the profile: {e}")),
        ),
    }
}

/// What an endpoint does, once its path is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Page,
    Healthz,
    Stats,
    Metrics,
    Backends,
    Backend,
    BackendAction,
    Clusters,
    Cluster,
    ClusterBackends,
    Reload,
    Profile,
}

impl Endpoint {
    /// The methods it takes, for 405's `Allow`.
    fn allow(self) -> &'static str {
        match self {
            Endpoint::Healthz | Endpoint::Page => "GET, HEAD",
            Endpoint::Backend => "GET, PUT, DELETE",
            Endpoint::BackendAction | Endpoint::ClusterBackends | Endpoint::Reload => "POST",
            _ => "GET",
        }
    }

    fn allows(self, method: &str) -> bool {
        self.allow().split(", ").any(|m| m == method)
    }
}

fn answer(request: &AdminRequest, context: &Context<'_>) -> Reply {
    let path = request.target.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let endpoint = match segments.as_slice() {
        [""] => Endpoint::Page,
        ["healthz"] => Endpoint::Healthz,
        ["stats"] => Endpoint::Stats,
        ["metrics"] => Endpoint::Metrics,
        ["backends"] => Endpoint::Backends,
        ["backends", _] => Endpoint::Backend,
        ["backends", _, "drain" | "enable" | "disable"] => Endpoint::BackendAction,
        ["clusters"] => Endpoint::Clusters,
        ["clusters", _] => Endpoint::Cluster,
        ["clusters", _, "backends"] => Endpoint::ClusterBackends,
        ["reload"] => Endpoint::Reload,
        ["debug", "profile"] => Endpoint::Profile,
        _ => return Answer::error(404, "not found").into(),
    };
    let method = request.method.as_str();
    // The page holds no figures (it fetches them, with the token the operator
    // types in): a browser can load it without one.
    let open =
        matches!(endpoint, Endpoint::Healthz | Endpoint::Page) && matches!(method, "GET" | "HEAD");
    if !open {
        if let Err(refusal) = authorize(context.access, request.header("authorization"))
            .and_then(|()| check_read(context.access, context.address, request.header("host")))
        {
            return refused(refusal).into();
        }
    }
    if !endpoint.allows(method) {
        let mut answer = Answer::error(405, "method not allowed");
        answer.extra = format!("Allow: {}\r\n", endpoint.allow());
        return answer.into();
    }
    if matches!(method, "POST" | "PUT" | "DELETE") {
        let change = ChangeRequest {
            host: request.header("host"),
            origin: request.header("origin"),
            fetch_site: request.header("sec-fetch-site"),
            content_type: request.header("content-type"),
            has_body: !request.body.is_empty(),
        };
        if let Err(refusal) = check_change(context.access, context.address, &change) {
            return refused(refusal).into();
        }
    }
    if endpoint == Endpoint::Profile {
        return profile_reply(request, context.access);
    }
    let server = context.server;
    Reply::Now(match (endpoint, method, segments.as_slice()) {
        (Endpoint::Healthz, _, _) => Answer::text(200, "ok\n"),
        (Endpoint::Page, _, _) => Answer {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: PAGE.to_string(),
            extra: page_headers().to_string(),
        },
        (Endpoint::Stats, _, _) => {
            let shard = match query_param(&request.target, "shard").map(str::parse::<usize>) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => return Answer::error(400, "shard must be a number").into(),
            };
            match server.report(shard, REPORT_WAIT) {
                Some(report) => Answer::json(200, exposition::stats_json(&report)),
                None => Answer::error(404, "no such shard"),
            }
        }
        (Endpoint::Metrics, _, _) => match server.report(None, REPORT_WAIT) {
            Some(report) => Answer {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: exposition::metrics_text(&report),
                extra: String::new(),
            },
            None => unavailable(),
        },
        (Endpoint::Backends, _, _) => match server.backends() {
            Some(list) => Answer::json(200, json_list(list.iter().map(backend_json))),
            None => unavailable(),
        },
        (Endpoint::Backend, "GET", [_, name]) => match server.backends() {
            Some(list) => match list.iter().find(|b| b.name == *name) {
                Some(b) => Answer::json(200, format!("{}\n", backend_json(b))),
                None => api_error(&ApiError::NoBackend(name.to_string())),
            },
            None => unavailable(),
        },
        (Endpoint::Backend, "DELETE", [_, name]) => backend_answer(server.remove_backend(name)),
        (Endpoint::Backend, "PUT", [_, name]) => update_backend(server, name, &request.body),
        (Endpoint::BackendAction, _, [_, name, action]) => {
            let state = AdminState::parse(action).unwrap_or(AdminState::Enabled);
            match server.set_admin_state(name, state) {
                Some(status) => Answer::json(200, format!("{}\n", backend_json(&status))),
                None => api_error(&ApiError::NoBackend(name.to_string())),
            }
        }
        (Endpoint::Clusters, _, _) => match server.clusters() {
            Some(list) => Answer::json(200, json_list(list.iter().map(cluster_json))),
            None => unavailable(),
        },
        (Endpoint::Cluster, _, [_, name]) => match server.clusters() {
            Some(list) => match list.iter().find(|c| c.name == *name) {
                Some(c) => Answer::json(200, format!("{}\n", cluster_json(c))),
                None => api_error(&ApiError::NoCluster(name.to_string())),
            },
            None => unavailable(),
        },
        (Endpoint::ClusterBackends, _, [_, cluster, _]) => {
            add_backend(server, cluster, &request.body)
        }
        (Endpoint::Reload, _, _) => reload(server),
        _ => Answer::error(404, "not found"),
    })
}

/// `GET /debug/profile`: refused at once when profiling is off, the query is bad
/// or another profile is running; otherwise the profile to take.
fn profile_reply(request: &AdminRequest, access: &AdminAccess) -> Reply {
    let asked = if !cfg!(feature = "profiling") {
        Err(profile::ProfileError::NotBuilt)
    } else if access.profiling {
        profile::Asked::parse(
            query_param(&request.target, "seconds"),
            query_param(&request.target, "format"),
        )
    } else {
        Err(profile::ProfileError::Off)
    };
    match asked.and_then(|asked| Ok((asked, profile::claim()?))) {
        Ok((asked, held)) => Reply::Profile(asked, held),
        Err(e) => Answer::error(e.status(), &e.to_string()).into(),
    }
}

fn refused(refusal: Refusal) -> Answer {
    let mut answer = Answer::error(refusal.status(), refusal.reason());
    if refusal == Refusal::Unauthorized {
        answer.extra = "WWW-Authenticate: Bearer realm=\"ringlb admin\"\r\n".into();
    }
    answer
}

fn unavailable() -> Answer {
    Answer::error(503, "control thread unavailable")
}

fn api_error(error: &ApiError) -> Answer {
    Answer::error(error.status(), &error.to_string())
}

fn backend_answer(result: Result<BackendStatus, ApiError>) -> Answer {
    match result {
        Ok(status) => Answer::json(200, format!("{}\n", backend_json(&status))),
        Err(e) => api_error(&e),
    }
}

/// `POST /clusters/NAME/backends`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBackend {
    name: String,
    address: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

/// `PUT /backends/NAME`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendChange {
    weight: Option<u32>,
    state: Option<String>,
}

/// Parses a JSON body, or says what is wrong with it.
fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Answer> {
    serde_json::from_slice(body).map_err(|e| Answer::error(400, &format!("invalid JSON body: {e}")))
}

fn add_backend(server: &ServerHandle, cluster: &str, body: &[u8]) -> Answer {
    let new: NewBackend = match parse_body(body) {
        Ok(new) => new,
        Err(answer) => return answer,
    };
    let address = match config::parse_address(&new.address) {
        Ok(address) => address,
        Err(message) => return Answer::error(400, &format!("address: {message}")),
    };
    let backend = BackendConfig {
        name: new.name,
        address,
        weight: new.weight,
    };
    match server.add_backend(cluster, backend) {
        Ok(status) => Answer::json(201, format!("{}\n", backend_json(&status))),
        Err(e) => api_error(&e),
    }
}

fn update_backend(server: &ServerHandle, name: &str, body: &[u8]) -> Answer {
    let change: BackendChange = match parse_body(body) {
        Ok(change) => change,
        Err(answer) => return answer,
    };
    let state = match change.state.as_deref().map(AdminState::parse) {
        None => None,
        Some(Some(state)) => Some(state),
        Some(None) => {
            return Answer::error(
                400,
                "state: expected \"enabled\", \"drain\" or \"disabled\"",
            )
        }
    };
    if change.weight.is_none() && state.is_none() {
        return Answer::error(400, "nothing to change: give weight and/or state");
    }
    backend_answer(server.update_backend(name, change.weight, state))
}

fn reload(server: &ServerHandle) -> Answer {
    match server.reload_file() {
        Ok(outcome) => {
            let list = |items: &[String]| json_list(items.iter().map(|s| json_string(s)));
            let listeners = |items: &[(String, std::net::SocketAddr)]| {
                json_list(items.iter().map(|(name, address)| {
                    format!(
                        "{{\"name\":{},\"address\":\"{address}\"}}",
                        json_string(name)
                    )
                }))
            };
            Answer::json(
                200,
                format!(
                    "{{\"reloaded\":true,\"restart_needed\":{},\"listeners_added\":{},\"listeners_removed\":{},\"warnings\":{}}}\n",
                    list(&outcome.restart_needed).trim_end(),
                    listeners(&outcome.listeners_added).trim_end(),
                    listeners(&outcome.listeners_removed).trim_end(),
                    list(&outcome.warnings).trim_end(),
                ),
            )
        }
        Err(ReloadError::Invalid(errors)) => {
            let items: Vec<String> = errors
                .0
                .iter()
                .map(|e| json_string(&e.to_string()))
                .collect();
            Answer::json(
                400,
                format!(
                    "{{\"error\":\"the configuration was refused; the running one stays\",\"errors\":[{}]}}\n",
                    items.join(",")
                ),
            )
        }
        Err(ReloadError::Unavailable) => unavailable(),
        Err(e) => Answer::error(409, &e.to_string()),
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

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    escape_json(s, &mut out);
    out.push('"');
    out
}

fn json_list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    format!("[{}]\n", items.join(","))
}

/// One backend as a JSON object.
fn backend_json(b: &BackendStatus) -> String {
    format!(
        "{{\"name\":{},\"cluster\":{},\"address\":\"{}\",\"weight\":{},\"effective_weight\":{},\"state\":\"{}\",\"healthy\":{},\"breaker\":\"{}\"}}",
        json_string(&b.name),
        json_string(&b.cluster),
        b.address,
        b.weight,
        b.effective_weight,
        b.state.as_str(),
        b.healthy,
        b.breaker.as_str()
    )
}

/// One cluster as a JSON object.
fn cluster_json(c: &ClusterStatus) -> String {
    let backends: Vec<String> = c.backends.iter().map(backend_json).collect();
    format!(
        "{{\"name\":{},\"strategy\":\"{}\",\"backends\":[{}]}}",
        json_string(&c.name),
        c.strategy,
        backends.join(",")
    )
}

fn respond(stream: &mut TcpStream, answer: &Answer) -> io::Result<()> {
    let status = answer.status;
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: ringlb\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{}",
        answer.content_type,
        answer.body.len(),
        answer.extra,
        answer.body
    );
    stream.write_all(response.as_bytes())?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}
