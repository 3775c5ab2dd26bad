//! `health`: whether a backend is up, decided from active check results.
//!
//! Owns the rise/fall state machine (HAProxy-style consecutive thresholds) and
//! the probe itself (`probe`: a TCP connect, `GET path` with a status range, or
//! a gRPC health call (`grpc_probe`), each after a PROXY header when
//! `health_check.send_proxy` asks, and over TLS when the cluster speaks TLS to
//! its backends).
//! The state machine is sans-io and takes `now`, so its tests never sleep. Called
//! by the control thread (decisions) and the health checker thread (probes);
//! never on the request path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::config::ProxyVersion;
use crate::protocol::proxy_header;

/// How a backend is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path`; up when the status is in the range.
    Http {
        /// The path requested.
        path: String,
        /// Statuses that count as healthy.
        expect: RangeInclusive<u16>,
    },
    /// Up when a TCP connection can be made.
    Tcp,
    /// `grpc.health.v1.Health/Check` over HTTP/2; up when `service` is SERVING.
    Grpc {
        /// The service asked about (`""`: the whole server).
        service: String,
    },
}

/// A check, and whether its connection starts with a PROXY header or speaks TLS.
#[derive(Debug, Clone)]
pub struct Probe {
    /// What is checked.
    pub kind: CheckKind,
    /// `health_check.send_proxy`: the version of `upstream.send_proxy`.
    pub send_proxy: Option<ProxyVersion>,
    /// The cluster's TLS to its backends: a check is a handshake too, so a
    /// backend whose certificate does not verify is down.
    pub tls: Option<ProbeTls>,
}

/// TLS for a check: the cluster's client configuration and the name verified.
#[derive(Debug, Clone)]
pub struct ProbeTls {
    pub config: Arc<ClientConfig>,
    /// `None`: the backend's address.
    pub server_name: Option<ServerName<'static>>,
}

/// Why a check failed, for the log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    /// The connection was refused or failed.
    #[error("connect failed: {0}")]
    Connect(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The TLS handshake failed (the certificate did not verify, say).
    #[error("tls: {0}")]
    Tls(String),
    /// The answer was not a valid HTTP response.
    #[error("invalid response")]
    InvalidResponse,
    /// A status outside the expected range.
    #[error("status {0}")]
    Status(u16),
    /// A gRPC check's call failed with this `grpc-status`.
    #[error("grpc status {0}")]
    GrpcStatus(u32),
    /// A gRPC check's answer: the service is not SERVING (1) but this.
    #[error("grpc health: serving status {0}")]
    NotServing(u64),
    /// This process could not open the check's connection (no descriptors or
    /// memory left): the check says nothing about the backend and is not counted.
    #[error("out of local resources: {0}")]
    OutOfResources(String),
}

/// Runs one check against `address`, bounded by `timeout` overall. Blocking: the
/// health checker runs each backend's checks on a thread of its own.
pub fn probe(address: SocketAddr, probe: &Probe, timeout: Duration) -> Result<(), CheckFailure> {
    if let CheckKind::Grpc { service } = &probe.kind {
        return super::grpc_probe::check(address, probe, service, timeout);
    }
    let deadline = Instant::now() + timeout;
    let stream = TcpStream::connect_timeout(&address, timeout).map_err(|e| {
        if crate::sys::out_of_resources(&e) {
            CheckFailure::OutOfResources(e.to_string())
        } else if e.kind() == std::io::ErrorKind::TimedOut {
            CheckFailure::Timeout
        } else {
            CheckFailure::Connect(e.kind().to_string())
        }
    })?;
    let mut socket = Bounded {
        tcp: stream,
        deadline,
    };
    let mut request = Vec::new();
    if let Some(version) = probe.send_proxy {
        // The check's own connection, as a backend behind send_proxy expects.
        let local = socket.tcp.local_addr().map_err(io_error)?;
        proxy_header::write(&mut request, version, local, address);
    }
    let Some(tls) = &probe.tls else {
        return converse(&mut socket, request, address, probe);
    };
    // The PROXY header goes first, in the clear.
    if !request.is_empty() {
        socket.write_all(&request).map_err(io_error)?;
    }
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
    let mut conn = ClientConnection::new(Arc::clone(&tls.config), name)
        .map_err(|e| CheckFailure::Tls(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => CheckFailure::Tls(e.to_string()),
            _ => io_error(e),
        })?;
    }
    converse(
        &mut rustls::Stream::new(&mut conn, &mut socket),
        Vec::new(),
        address,
        probe,
    )
}

/// A check's socket: every read and write may take only what is left until the
/// check's deadline, however many a TLS handshake or a slow answer needs.
struct Bounded {
    tcp: TcpStream,
    deadline: Instant,
}

impl Bounded {
    fn left(&self) -> std::io::Result<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::ErrorKind::TimedOut.into())
    }
}

// A signal (a profile's `SIGPROF`) interrupts a socket call that has a timeout
// even with `SA_RESTART`: such a call is tried again within what is left.
impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            self.tcp.set_read_timeout(Some(self.left()?))?;
            match self.tcp.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                done => return done,
            }
        }
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            self.tcp.set_write_timeout(Some(self.left()?))?;
            match self.tcp.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                done => return done,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

fn io_error(e: std::io::Error) -> CheckFailure {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => CheckFailure::Timeout,
        kind => CheckFailure::Connect(kind.to_string()),
    }
}

/// The check's exchange over an open connection: `request` (a PROXY header, or
/// nothing), then for an HTTP check the `GET` and its status.
fn converse(
    stream: &mut (impl Read + Write),
    mut request: Vec<u8>,
    address: SocketAddr,
    probe: &Probe,
) -> Result<(), CheckFailure> {
    let CheckKind::Http { path, expect } = &probe.kind else {
        if !request.is_empty() {
            stream.write_all(&request).map_err(io_error)?;
            stream.flush().map_err(io_error)?;
        }
        return Ok(());
    };
    request.extend_from_slice(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: ringlb-health\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    stream.write_all(&request).map_err(io_error)?;
    stream.flush().map_err(io_error)?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).map_err(io_error)?;
        if n == 0 {
            return Err(CheckFailure::InvalidResponse);
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf[..len]) {
            // The status line is all we need; headers may not fit the buffer.
            Ok(_) | Err(httparse::Error::TooManyHeaders) if response.code.is_some() => {
                let code = response.code.unwrap_or(0);
                return if expect.contains(&code) {
                    Ok(())
                } else {
                    Err(CheckFailure::Status(code))
                };
            }
            Ok(httparse::Status::Partial) if len < buf.len() => {}
            _ => return Err(CheckFailure::InvalidResponse),
        }
    }
}

/// A change of a backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// It failed `unhealthy_threshold` checks in a row.
    WentDown,
    /// It passed `healthy_threshold` checks in a row.
    CameUp,
}

/// One backend's health, as the control thread tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether it is up now.
    up: bool,
    /// Consecutive passed checks (while down) or failed checks (while up).
    streak: u32,
    /// When it last came up, for slow start.
    up_since: Option<Instant>,
}

impl Health {
    /// A backend that starts up (the default: a restart must not drop traffic) or
    /// down (`health_check.start = "down"`). Starting up is not coming back up, so
    /// no slow start applies.
    pub fn new(up: bool, _now: Instant) -> Self {
        Health {
            up,
            streak: 0,
            up_since: None,
        }
    }

    /// Whether it is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The current run of results against the current state, for log lines.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Records one check result; returns the change of state it caused, if any.
    pub fn record(
        &mut self,
        passed: bool,
        now: Instant,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<Transition> {
        if passed == self.up {
            // A result that agrees with the state resets the opposite run.
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let threshold = if self.up {
            unhealthy_threshold
        } else {
            healthy_threshold
        };
        if self.streak < threshold.max(1) {
            return None;
        }
        self.up = passed;
        self.streak = 0;
        self.up_since = passed.then_some(now);
        Some(if passed {
            Transition::CameUp
        } else {
            Transition::WentDown
        })
    }

    /// Whether slow start still holds its weight down at `now`.
    pub fn ramping(&self, now: Instant, slow_start: Option<Duration>) -> bool {
        self.weight_per_mille(now, slow_start) < 1000
    }

    /// The share of its weight a backend gets `now` under slow start: from 10%
    /// when it comes back up to 100% after `slow_start`. Per mille, so it stays an
    /// integer: 100..=1000.
    pub fn weight_per_mille(&self, now: Instant, slow_start: Option<Duration>) -> u32 {
        let (true, Some(since), Some(ramp)) = (self.up, self.up_since, slow_start) else {
            return 1000;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= ramp || ramp.is_zero() {
            return 1000;
        }
        let fraction = elapsed.as_secs_f64() / ramp.as_secs_f64();
        100 + (900.0 * fraction) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_down_after_consecutive_failures_and_up_after_consecutive_passes() {
        let t0 = Instant::now();
        let mut h = Health::new(true, t0);
        assert_eq!(h.record(false, t0, 2, 3), None);
        assert_eq!(h.record(false, t0, 2, 3), None);
        assert_eq!(h.record(false, t0, 2, 3), Some(Transition::WentDown));
        assert!(!h.is_up());
        assert_eq!(h.record(true, t0, 2, 3), None);
        assert_eq!(h.record(true, t0, 2, 3), Some(Transition::CameUp));
        assert!(h.is_up());
    }

    #[test]
    fn an_agreeing_result_breaks_the_streak() {
        let t0 = Instant::now();
        let mut h = Health::new(true, t0);
        h.record(false, t0, 2, 3);
        h.record(false, t0, 2, 3);
        assert_eq!(h.record(true, t0, 2, 3), None);
        assert_eq!(h.record(false, t0, 2, 3), None);
        assert_eq!(h.record(false, t0, 2, 3), None);
        assert!(
            h.is_up(),
            "two failures after a pass are not three in a row"
        );
    }

    #[test]
    fn starting_down_needs_healthy_threshold_passes() {
        let t0 = Instant::now();
        let mut h = Health::new(false, t0);
        assert!(!h.is_up());
        assert_eq!(h.record(true, t0, 2, 3), None);
        assert_eq!(h.record(true, t0, 2, 3), Some(Transition::CameUp));
    }

    #[test]
    fn slow_start_ramps_from_ten_percent() {
        let t0 = Instant::now();
        let mut h = Health::new(false, t0);
        h.record(true, t0, 1, 1);
        let ramp = Some(Duration::from_secs(30));
        assert_eq!(h.weight_per_mille(t0, ramp), 100);
        assert_eq!(h.weight_per_mille(t0 + Duration::from_secs(15), ramp), 550);
        assert_eq!(h.weight_per_mille(t0 + Duration::from_secs(30), ramp), 1000);
        assert_eq!(h.weight_per_mille(t0, None), 1000);
        assert!(h.ramping(t0, ramp) && !h.ramping(t0 + Duration::from_secs(30), ramp));
        // Starting up at launch is not coming back: no ramp.
        assert_eq!(Health::new(true, t0).weight_per_mille(t0, ramp), 1000);
    }
}

/// One check's outcome, sent from a checker thread to the control thread.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The backend checked.
    pub id: crate::cluster::backend::BackendId,
    /// The address checked (a result for an address since replaced is ignored).
    pub address: SocketAddr,
    /// Pass, or why not.
    pub outcome: Result<(), CheckFailure>,
}

/// Stops its checker thread when dropped.
#[derive(Debug)]
pub struct Checker {
    _stop: crossbeam_channel::Sender<()>,
}

/// Checks `address` every `interval` on a thread of its own, so that one slow
/// backend cannot delay another's checks, and sends each result to `results`.
pub fn spawn_checker(
    id: crate::cluster::backend::BackendId,
    name: &str,
    address: SocketAddr,
    probe: Probe,
    interval: Duration,
    timeout: Duration,
    results: crossbeam_channel::Sender<CheckResult>,
) -> std::io::Result<Checker> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    // A gRPC check runs a runtime, TLS and h2 on this thread: more room.
    let stack = match probe.kind {
        CheckKind::Grpc { .. } => 1024 * 1024,
        _ => 128 * 1024,
    };
    std::thread::Builder::new()
        .name(format!("ringlb-health-{name}"))
        .stack_size(stack)
        .spawn(move || loop {
            let outcome = self::probe(address, &probe, timeout);
            if let Err(CheckFailure::OutOfResources(why)) = &outcome {
                crate::log_debug!("health check of {address} not run: {why}");
            } else if results
                .send(CheckResult {
                    id,
                    address,
                    outcome,
                })
                .is_err()
            {
                return;
            }
            // Sleeps `interval`, or returns as soon as the handle is dropped.
            if !matches!(
                stop_rx.recv_timeout(interval),
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
            ) {
                return;
            }
        })?;
    Ok(Checker { _stop: stop_tx })
}
