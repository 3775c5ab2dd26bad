//! `stats`: what shards count about their own traffic, and how the control thread
//! merges it.
//!
//! A shard records each request into plain `Cell` counters and local HDR
//! histograms (no atomics, nothing shared). Every second, and on demand, it sends
//! a `ShardReport`: absolute counters plus the histograms recorded since the last
//! report. The control thread's `Aggregate` merges those into since-start and
//! sliding-window figures. Nothing here blocks or touches another thread's data.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::h2::{H2Totals, ShardH2Stats};
use super::tls::{ShardTlsStats, TlsTotals};
use super::tunnels::{ShardTunnelStats, TunnelCounters, TunnelRecord, TunnelStats, TunnelTotals};

/// Latency range recorded: 1 µs to 60 s, three significant digits.
const LATENCY_LOW_US: u64 = 1;
const LATENCY_HIGH_US: u64 = 60_000_000;
const LATENCY_SIGFIG: u8 = 3;

/// A fresh latency histogram (microseconds).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; this cannot fail.
    Histogram::new_with_bounds(LATENCY_LOW_US, LATENCY_HIGH_US, LATENCY_SIGFIG)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"))
}

/// The latency recorded since the last report, or `None` when nothing was: an
/// idle shard then allocates no fresh histogram (each is about 140 KB) per report.
fn take_recorded(latency: &RefCell<Histogram<u64>>) -> Option<Histogram<u64>> {
    if latency.borrow().is_empty() {
        None
    } else {
        Some(latency.replace(latency_histogram()))
    }
}

/// Status codes are counted in an array indexed by `code - 100`.
const STATUS_SLOTS: usize = 500;

/// The kinds of failure counted, in `ProxyError::kind` spelling.
pub const ERROR_KINDS: [&str; 14] = [
    "bad_request",
    "no_route",
    "header_read_timeout",
    "body_read_timeout",
    "client_io",
    "no_backend",
    "connect",
    "connect_timeout",
    "upstream_io",
    "invalid_response",
    "response_timeout",
    "out_of_resources",
    "upstream_tls",
    "upstream_refused",
];

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

fn add(counter: &Cell<u64>, n: u64) {
    counter.set(counter.get() + n);
}

fn status_cells() -> Box<[Cell<u64>]> {
    (0..STATUS_SLOTS).map(|_| Cell::new(0)).collect()
}

fn copy_cells(cells: &[Cell<u64>]) -> Vec<u64> {
    cells.iter().map(Cell::get).collect()
}

/// What one finished request looked like, for counters and the access log.
#[derive(Debug)]
pub struct RequestRecord {
    /// When the first byte of its head was read.
    pub started: Instant,
    /// The status the client got; 0 when it got none.
    pub status: u16,
    /// Attempts made (retries included).
    pub attempts: u32,
    /// Bytes read from the client for it.
    pub bytes_in: u64,
    /// Bytes written to the client for it.
    pub bytes_out: u64,
    /// The failure, if it failed.
    pub error: Option<&'static str>,
}

/// Counters one shard keeps about its own traffic.
#[derive(Debug)]
pub struct ShardStats {
    /// Client connections accepted.
    pub connections_accepted: Cell<u64>,
    /// Client connections closed at once because `server.max_connections` was reached.
    pub connections_refused: Cell<u64>,
    /// Connections closed because `accept_proxy` is on and the peer is not in
    /// `proxy_trusted`.
    pub proxy_untrusted: Cell<u64>,
    /// Connections closed because their PROXY header was malformed or late.
    pub proxy_invalid: Cell<u64>,
    /// Accepts that failed for want of descriptors or memory (EMFILE, ENFILE,
    /// ENOBUFS, ENOMEM); the listener pauses 10 ms after each.
    pub accept_errors: Cell<u64>,
    /// Requests whose head was read.
    pub requests: Cell<u64>,
    /// Upstream connections opened.
    pub upstream_connects: Cell<u64>,
    /// Requests sent on a pooled upstream connection.
    pub upstream_reuses: Cell<u64>,
    /// Attempts repeated after a failure (a fresh connection, or another backend).
    pub upstream_retries: Cell<u64>,
    /// Retries refused because the shard's retry budget was spent.
    pub retries_over_budget: Cell<u64>,
    /// Responses a backend sent before the request body was in (then the client
    /// connection closes).
    pub early_responses: Cell<u64>,
    /// Outcome reports dropped because the channel to the control thread was full.
    pub reports_dropped: Cell<u64>,
    /// Failed requests caused by the client.
    pub client_errors: Cell<u64>,
    /// Failed requests caused by a backend.
    pub upstream_errors: Cell<u64>,
    /// Failed requests caused by ringlb (no backend available).
    pub internal_errors: Cell<u64>,
    /// Failures by kind, indexed like `ERROR_KINDS`.
    errors: [Cell<u64>; ERROR_KINDS.len()],
    /// Responses by status code (`code - 100`).
    status: Box<[Cell<u64>]>,
    /// Bytes read from clients.
    bytes_in: Cell<u64>,
    /// Bytes written to clients.
    bytes_out: Cell<u64>,
    /// Latency of requests since the last report, in microseconds.
    latency: RefCell<Histogram<u64>>,
    /// Tunnels: TCP listeners' connections and upgraded ones.
    pub tunnels: ShardTunnelStats,
    /// TLS handshakes on the shard's listeners.
    pub tls: ShardTlsStats,
    /// HTTP/2 connections and streams.
    pub h2: ShardH2Stats,
}

impl Default for ShardStats {
    fn default() -> Self {
        ShardStats {
            connections_accepted: Cell::new(0),
            connections_refused: Cell::new(0),
            proxy_untrusted: Cell::new(0),
            proxy_invalid: Cell::new(0),
            accept_errors: Cell::new(0),
            requests: Cell::new(0),
            upstream_connects: Cell::new(0),
            upstream_reuses: Cell::new(0),
            upstream_retries: Cell::new(0),
            retries_over_budget: Cell::new(0),
            early_responses: Cell::new(0),
            reports_dropped: Cell::new(0),
            client_errors: Cell::new(0),
            upstream_errors: Cell::new(0),
            internal_errors: Cell::new(0),
            errors: std::array::from_fn(|_| Cell::new(0)),
            status: status_cells(),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            latency: RefCell::new(latency_histogram()),
            tunnels: ShardTunnelStats::default(),
            tls: ShardTlsStats::default(),
            h2: ShardH2Stats::default(),
        }
    }
}

impl ShardStats {
    /// Adds one to a counter.
    #[inline]
    pub fn bump(counter: &Cell<u64>) {
        bump(counter);
    }

    /// Records one finished request: counters, status, bytes and latency, for
    /// the shard and for the backend of its last attempt (if one was made). Called
    /// once per request on the request path: increments and two histogram records,
    /// no allocation.
    pub fn record(&self, record: &RequestRecord, backend: Option<&BackendStats>, now: Instant) {
        let micros = record_micros(record, now);
        add(&self.bytes_in, record.bytes_in);
        add(&self.bytes_out, record.bytes_out);
        if let Some(slot) = status_slot(record.status) {
            bump(&self.status[slot]);
        }
        if let Some(kind) = record.error {
            if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
                bump(&self.errors[i]);
            }
        }
        self.latency.borrow_mut().saturating_record(micros);
        if let Some(backend) = backend {
            backend.record(record, micros);
        }
    }

    /// Records one finished tunnel: its ending and duration, and a failure to
    /// connect by kind, for the shard and for the backend it went to (if any).
    pub fn record_tunnel(
        &self,
        record: &TunnelRecord,
        backend: Option<&BackendStats>,
        now: Instant,
    ) {
        self.tunnels.record(record, now);
        if let Some(i) = record
            .error
            .and_then(|kind| ERROR_KINDS.iter().position(|k| *k == kind))
        {
            bump(&self.errors[i]);
            if let Some(backend) = backend {
                bump(&backend.errors[i]);
            }
        }
    }

    /// The report for the control thread: absolute counters, and the histograms
    /// recorded since the last report (which start over).
    pub fn report(&self, shard: usize, gauges: ShardGauges<'_>) -> ShardReport {
        let ShardGauges {
            active_connections,
            parked_connections,
            access_log_dropped,
            backends,
            clusters,
            routes,
        } = gauges;
        let counters = Counters {
            connections_accepted: self.connections_accepted.get(),
            connections_refused: self.connections_refused.get(),
            proxy_untrusted: self.proxy_untrusted.get(),
            proxy_invalid: self.proxy_invalid.get(),
            accept_errors: self.accept_errors.get(),
            active_connections: active_connections as u64,
            parked_connections: parked_connections as u64,
            requests: self.requests.get(),
            upstream_connects: self.upstream_connects.get(),
            upstream_reuses: self.upstream_reuses.get(),
            upstream_retries: self.upstream_retries.get(),
            retries_over_budget: self.retries_over_budget.get(),
            early_responses: self.early_responses.get(),
            reports_dropped: self.reports_dropped.get(),
            client_errors: self.client_errors.get(),
            upstream_errors: self.upstream_errors.get(),
            internal_errors: self.internal_errors.get(),
            errors: self.errors.each_ref().map(Cell::get),
            status: copy_cells(&self.status),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            active_upstream_requests: backends.iter().map(|b| u64::from(b.in_flight)).sum(),
            pooled_idle_connections: backends.iter().map(|b| b.idle as u64).sum(),
            access_log_dropped,
            tunnels: self.tunnels.totals(),
            tls: self.tls.totals(),
            h2: self.h2.totals(),
        };
        ShardReport {
            shard,
            answer_to: 0,
            counters,
            latency: take_recorded(&self.latency),
            backends: backends.iter().map(|b| b.stats.report(b)).collect(),
            clusters,
            routes,
        }
    }
}

/// A request's latency in microseconds (at least 1).
fn record_micros(record: &RequestRecord, now: Instant) -> u64 {
    let micros = now.saturating_duration_since(record.started).as_micros();
    u64::try_from(micros).unwrap_or(u64::MAX).max(1)
}

fn status_slot(status: u16) -> Option<usize> {
    (100..600)
        .contains(&status)
        .then(|| usize::from(status - 100))
}

/// What one shard counts about one cluster: the requests its routes sent there.
/// Its latency is not recorded here: the control thread merges its backends'
/// histograms, which costs the request path nothing more (and a shard no more
/// histograms).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Requests routed to it.
    requests: Cell<u64>,
    /// Of those, requests that failed (no response, or an error status from ringlb).
    failures: Cell<u64>,
}

impl ClusterStats {
    /// Records one finished request routed to this cluster.
    #[inline]
    pub fn record(&self, record: &RequestRecord) {
        bump(&self.requests);
        if record.error.is_some() {
            bump(&self.failures);
        }
    }

    /// Its part of a report.
    pub fn report(&self, name: &str) -> ClusterReport {
        ClusterReport {
            name: name.to_string(),
            requests: self.requests.get(),
            failures: self.failures.get(),
        }
    }
}

/// What one shard counts about one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Requests it matched.
    requests: Cell<u64>,
}

impl RouteStats {
    /// Counts one request it matched.
    #[inline]
    pub fn record(&self) {
        bump(&self.requests);
    }

    /// Requests it matched so far.
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }
}

/// A shard's figures for a report besides its own counters: gauges now, and its
/// backends', clusters' and routes' parts.
#[derive(Debug)]
pub struct ShardGauges<'a> {
    /// Open client connections.
    pub active_connections: usize,
    /// Of those, parked ones.
    pub parked_connections: usize,
    /// Access log chunks dropped so far.
    pub access_log_dropped: u64,
    /// Every backend's counters and gauges.
    pub backends: &'a [BackendGauges<'a>],
    /// Every cluster's part.
    pub clusters: Vec<ClusterReport>,
    /// Every route's (name, requests).
    pub routes: Vec<(String, u64)>,
}

/// One backend's figures for a report: its counters and its gauges now.
#[derive(Debug)]
pub struct BackendGauges<'a> {
    /// The backend's name, which the control thread merges shards' reports by.
    pub name: &'a str,
    /// Its cluster's name.
    pub cluster: &'a str,
    /// Its counters on this shard.
    pub stats: &'a BackendStats,
    /// Requests this shard has in flight to it.
    pub in_flight: u32,
    /// Idle pooled connections this shard holds to it.
    pub idle: usize,
}

/// Counters one shard keeps about one backend.
#[derive(Debug)]
pub struct BackendStats {
    /// Attempts sent to it (first tries and retries): its selections.
    pub attempts: Cell<u64>,
    /// Of those, attempts that were retries.
    pub retries: Cell<u64>,
    /// Attempts that failed on its side (connect, reset, timeout, invalid response).
    pub failures: Cell<u64>,
    /// Requests it answered last (whatever the status).
    requests: Cell<u64>,
    /// Failed requests whose last attempt went to it, by kind (`ERROR_KINDS`).
    errors: [Cell<u64>; ERROR_KINDS.len()],
    /// Their statuses (`code - 100`).
    status: Box<[Cell<u64>]>,
    /// Bytes read from clients for requests it answered.
    bytes_in: Cell<u64>,
    /// Bytes written to clients for requests it answered.
    bytes_out: Cell<u64>,
    /// Latency since the last report, in microseconds.
    latency: RefCell<Histogram<u64>>,
    /// Tunnels to it.
    pub tunnels: TunnelStats,
}

impl Default for BackendStats {
    fn default() -> Self {
        BackendStats {
            attempts: Cell::new(0),
            retries: Cell::new(0),
            failures: Cell::new(0),
            requests: Cell::new(0),
            errors: std::array::from_fn(|_| Cell::new(0)),
            status: status_cells(),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            latency: RefCell::new(latency_histogram()),
            tunnels: TunnelStats::default(),
        }
    }
}

impl BackendStats {
    fn record(&self, record: &RequestRecord, micros: u64) {
        bump(&self.requests);
        if let Some(i) = record
            .error
            .and_then(|kind| ERROR_KINDS.iter().position(|k| *k == kind))
        {
            bump(&self.errors[i]);
        }
        add(&self.bytes_in, record.bytes_in);
        add(&self.bytes_out, record.bytes_out);
        if let Some(slot) = status_slot(record.status) {
            bump(&self.status[slot]);
        }
        self.latency.borrow_mut().saturating_record(micros);
    }

    fn report(&self, gauges: &BackendGauges<'_>) -> BackendReport {
        BackendReport {
            name: gauges.name.to_string(),
            cluster: gauges.cluster.to_string(),
            counters: BackendCounters {
                attempts: self.attempts.get(),
                retries: self.retries.get(),
                failures: self.failures.get(),
                requests: self.requests.get(),
                errors: self.errors.each_ref().map(Cell::get),
                status: copy_cells(&self.status),
                bytes_in: self.bytes_in.get(),
                bytes_out: self.bytes_out.get(),
                active_requests: u64::from(gauges.in_flight),
                pooled_idle_connections: gauges.idle as u64,
                tunnels: self.tunnels.counters(),
            },
            latency: take_recorded(&self.latency),
        }
    }
}

/// A shard's counters, as absolute values (gauges are current values).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub connections_accepted: u64,
    pub connections_refused: u64,
    /// Connections closed for a PROXY header from a peer not in `proxy_trusted`.
    pub proxy_untrusted: u64,
    /// Connections closed for a malformed or late PROXY header.
    pub proxy_invalid: u64,
    /// Accepts that failed for want of descriptors or memory.
    pub accept_errors: u64,
    pub active_connections: u64,
    /// Idle client connections holding no buffers (a gauge).
    pub parked_connections: u64,
    pub requests: u64,
    pub upstream_connects: u64,
    pub upstream_reuses: u64,
    pub upstream_retries: u64,
    pub retries_over_budget: u64,
    /// Responses a backend sent before the request body was in.
    pub early_responses: u64,
    pub reports_dropped: u64,
    pub client_errors: u64,
    pub upstream_errors: u64,
    pub internal_errors: u64,
    /// Failures by kind, indexed like `ERROR_KINDS`.
    pub errors: [u64; ERROR_KINDS.len()],
    /// Responses by status (`code - 100`); empty means none yet.
    pub status: Vec<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub active_upstream_requests: u64,
    pub pooled_idle_connections: u64,
    /// Access log chunks dropped because the writer fell behind.
    pub access_log_dropped: u64,
    /// Tunnels: TCP listeners' connections and upgraded ones.
    pub tunnels: TunnelTotals,
    /// TLS handshakes on listeners.
    pub tls: TlsTotals,
    /// HTTP/2 connections and streams.
    pub h2: H2Totals,
}

impl Counters {
    /// Adds another shard's counters to these.
    pub fn merge(&mut self, o: &Counters) {
        self.connections_accepted += o.connections_accepted;
        self.connections_refused += o.connections_refused;
        self.proxy_untrusted += o.proxy_untrusted;
        self.proxy_invalid += o.proxy_invalid;
        self.accept_errors += o.accept_errors;
        self.active_connections += o.active_connections;
        self.parked_connections += o.parked_connections;
        self.requests += o.requests;
        self.upstream_connects += o.upstream_connects;
        self.upstream_reuses += o.upstream_reuses;
        self.upstream_retries += o.upstream_retries;
        self.retries_over_budget += o.retries_over_budget;
        self.early_responses += o.early_responses;
        self.reports_dropped += o.reports_dropped;
        self.client_errors += o.client_errors;
        self.upstream_errors += o.upstream_errors;
        self.internal_errors += o.internal_errors;
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        merge_status(&mut self.status, &o.status);
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.active_upstream_requests += o.active_upstream_requests;
        self.pooled_idle_connections += o.pooled_idle_connections;
        self.access_log_dropped += o.access_log_dropped;
        self.tunnels.merge(&o.tunnels);
        self.tls.merge(&o.tls);
        self.h2.merge(&o.h2);
    }

    /// Responses by status code, only the codes seen.
    pub fn status_codes(&self) -> Vec<(u16, u64)> {
        status_codes(&self.status)
    }

    /// Responses by class (1xx..5xx).
    pub fn responses_by_class(&self) -> [u64; 5] {
        let mut classes = [0; 5];
        for (code, n) in self.status_codes() {
            classes[usize::from(code / 100) - 1] += n;
        }
        classes
    }
}

fn merge_status(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

fn status_codes(status: &[u64]) -> Vec<(u16, u64)> {
    status
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &n)| (i as u16 + 100, n))
        .collect()
}

/// One backend's counters on one shard (or merged), as absolute values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackendCounters {
    /// Attempts sent to it (its selections).
    pub attempts: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Attempts that failed on its side.
    pub failures: u64,
    /// Requests it answered last.
    pub requests: u64,
    /// Failed requests whose last attempt went to it, by kind (`ERROR_KINDS`).
    pub errors: [u64; ERROR_KINDS.len()],
    /// Their statuses (`code - 100`).
    pub status: Vec<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Requests in flight to it now.
    pub active_requests: u64,
    /// Idle pooled connections to it now.
    pub pooled_idle_connections: u64,
    /// Tunnels to it.
    pub tunnels: TunnelCounters,
}

impl BackendCounters {
    /// Adds another shard's counters for the same backend.
    pub fn merge(&mut self, o: &BackendCounters) {
        self.attempts += o.attempts;
        self.retries += o.retries;
        self.failures += o.failures;
        self.requests += o.requests;
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        merge_status(&mut self.status, &o.status);
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.active_requests += o.active_requests;
        self.pooled_idle_connections += o.pooled_idle_connections;
        self.tunnels.merge(&o.tunnels);
    }

    /// Responses by status code, only the codes seen.
    pub fn status_codes(&self) -> Vec<(u16, u64)> {
        status_codes(&self.status)
    }
}

/// What a shard sends the control thread every second and on demand.
#[derive(Debug, Clone)]
pub struct ShardReport {
    /// Which shard.
    pub shard: usize,
    /// The `ReportStats` request it answers; 0 for a periodic report.
    pub answer_to: u64,
    /// Absolute counters.
    pub counters: Counters,
    /// Latency recorded since its previous report (`None`: no request).
    pub latency: Option<Histogram<u64>>,
    /// Per backend: absolute counters and latency since the previous report.
    pub backends: Vec<BackendReport>,
    /// Per cluster: absolute counters and latency since the previous report.
    pub clusters: Vec<ClusterReport>,
    /// Per route: (name, requests matched), absolute.
    pub routes: Vec<(String, u64)>,
}

/// One cluster's part of a `ShardReport`.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    pub name: String,
    /// Requests routed to it.
    pub requests: u64,
    /// Of those, requests that failed.
    pub failures: u64,
}

/// One backend's part of a `ShardReport`.
#[derive(Debug, Clone)]
pub struct BackendReport {
    pub name: String,
    /// The cluster it belongs to (its latency is also the cluster's).
    pub cluster: String,
    pub counters: BackendCounters,
    /// Latency since the previous report (`None`: no request).
    pub latency: Option<Histogram<u64>>,
}

/// Latency figures in milliseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    /// Sum of all latencies, in milliseconds (for Prometheus summaries).
    pub sum: f64,
}

impl LatencySummary {
    /// Summarises a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
            sum: h.mean() * h.len() as f64 / 1000.0,
        }
    }
}

/// A sliding window of latency: `slots` histograms of `slot` each; the window
/// is the merge of the slots still inside it.
#[derive(Debug)]
pub struct Window {
    slot: Duration,
    /// (slot number since `origin`, histogram)
    slots: Vec<(u64, Histogram<u64>)>,
    origin: Instant,
}

impl Window {
    /// A window of `slots × slot`.
    pub fn new(slots: usize, slot: Duration, origin: Instant) -> Self {
        Window {
            slot,
            slots: (0..slots.max(1))
                .map(|_| (u64::MAX, latency_histogram()))
                .collect(),
            origin,
        }
    }

    /// The window's length.
    pub fn length(&self) -> Duration {
        self.slot * self.slots.len() as u32
    }

    fn slot_number(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        (nanos / self.slot.as_nanos().max(1)) as u64
    }

    /// Adds latency recorded at `now`.
    pub fn add(&mut self, h: &Histogram<u64>, now: Instant) {
        let n = self.slot_number(now);
        let len = self.slots.len() as u64;
        let (number, slot) = &mut self.slots[(n % len) as usize];
        if *number != n {
            slot.reset();
            *number = n;
        }
        let _ = slot.add(h);
    }

    /// The merged latency of the slots within the window at `now`.
    pub fn merged(&self, now: Instant) -> Histogram<u64> {
        let n = self.slot_number(now);
        let len = self.slots.len() as u64;
        let mut out = latency_histogram();
        for (number, h) in &self.slots {
            if *number != u64::MAX && *number + len > n {
                let _ = out.add(h);
            }
        }
        out
    }
}

/// Latency since start and over the window.
#[derive(Debug)]
pub struct Latency {
    pub since_start: Histogram<u64>,
    pub window: Window,
}

impl Latency {
    fn new(origin: Instant) -> Self {
        Latency {
            since_start: latency_histogram(),
            window: Window::new(WINDOW_SLOTS, WINDOW_SLOT, origin),
        }
    }

    fn add(&mut self, h: &Histogram<u64>, now: Instant) {
        if h.is_empty() {
            return;
        }
        let _ = self.since_start.add(h);
        self.window.add(h, now);
    }

    /// (window, since start) summaries at `now`.
    pub fn summaries(&self, now: Instant) -> (LatencySummary, LatencySummary) {
        (
            LatencySummary::of(&self.window.merged(now)),
            LatencySummary::of(&self.since_start),
        )
    }
}

/// The sliding window: 5 slots of 2 s = the last 10 s.
pub const WINDOW_SLOTS: usize = 5;
pub const WINDOW_SLOT: Duration = Duration::from_secs(2);

/// Everything the control thread knows about traffic, merged from shard reports.
#[derive(Debug)]
pub struct Aggregate {
    /// When the server started.
    pub started: Instant,
    /// The latest counters of each shard.
    pub shards: Vec<Counters>,
    /// The latest per-backend counters of each shard, by name.
    pub shard_backends: Vec<HashMap<String, BackendCounters>>,
    /// All requests' latency.
    pub latency: Latency,
    /// Each shard's latency.
    pub shard_latency: Vec<Latency>,
    /// Each backend's latency, by name.
    pub backend_latency: HashMap<String, Latency>,
    /// The latest per-cluster (requests, failures) of each shard, by name.
    pub shard_clusters: Vec<HashMap<String, (u64, u64)>>,
    /// Each cluster's latency (its backends' merged), by name.
    pub cluster_latency: HashMap<String, Latency>,
    /// The latest per-route request counts of each shard, by name.
    pub shard_routes: Vec<HashMap<String, u64>>,
}

impl Aggregate {
    /// An empty aggregate for `shards` shards.
    pub fn new(shards: usize, started: Instant) -> Self {
        Aggregate {
            started,
            shards: vec![Counters::default(); shards],
            shard_backends: vec![HashMap::new(); shards],
            latency: Latency::new(started),
            shard_latency: (0..shards).map(|_| Latency::new(started)).collect(),
            backend_latency: HashMap::new(),
            shard_clusters: vec![HashMap::new(); shards],
            cluster_latency: HashMap::new(),
            shard_routes: vec![HashMap::new(); shards],
        }
    }

    /// Merges one shard's report received at `now`.
    pub fn add(&mut self, report: ShardReport, now: Instant) {
        let Some(counters) = self.shards.get_mut(report.shard) else {
            return;
        };
        *counters = report.counters;
        if let Some(latency) = &report.latency {
            self.latency.add(latency, now);
            self.shard_latency[report.shard].add(latency, now);
        }
        let backends = &mut self.shard_backends[report.shard];
        backends.clear();
        for b in report.backends {
            let started = self.started;
            let latency = self
                .backend_latency
                .entry(b.name.clone())
                .or_insert_with(|| Latency::new(started));
            if let Some(recorded) = &b.latency {
                latency.add(recorded, now);
                self.cluster_latency
                    .entry(b.cluster.clone())
                    .or_insert_with(|| Latency::new(started))
                    .add(recorded, now);
            }
            backends.insert(b.name, b.counters);
        }
        let clusters = &mut self.shard_clusters[report.shard];
        clusters.clear();
        for c in report.clusters {
            clusters.insert(c.name, (c.requests, c.failures));
        }
        self.shard_routes[report.shard] = report.routes.into_iter().collect();
    }

    /// One cluster's (requests, failures) over all shards, or one shard's.
    pub fn cluster_counters(&self, name: &str, shard: Option<usize>) -> (u64, u64) {
        let mut total = (0, 0);
        for (i, clusters) in self.shard_clusters.iter().enumerate() {
            if shard.is_none_or(|s| s == i) {
                if let Some((requests, failures)) = clusters.get(name) {
                    total.0 += requests;
                    total.1 += failures;
                }
            }
        }
        total
    }

    /// One route's requests over all shards, or one shard's.
    pub fn route_requests(&self, name: &str, shard: Option<usize>) -> u64 {
        self.shard_routes
            .iter()
            .enumerate()
            .filter(|(i, _)| shard.is_none_or(|s| s == *i))
            .filter_map(|(_, routes)| routes.get(name))
            .sum()
    }

    /// Counters over all shards, or one shard's.
    pub fn counters(&self, shard: Option<usize>) -> Counters {
        let mut total = Counters::default();
        for (i, c) in self.shards.iter().enumerate() {
            if shard.is_none_or(|s| s == i) {
                total.merge(c);
            }
        }
        total
    }

    /// One backend's counters over all shards, or one shard's.
    pub fn backend_counters(&self, name: &str, shard: Option<usize>) -> BackendCounters {
        let mut total = BackendCounters::default();
        for (i, backends) in self.shard_backends.iter().enumerate() {
            if shard.is_none_or(|s| s == i) {
                if let Some(c) = backends.get(name) {
                    total.merge(c);
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values_us: &[u64]) -> Histogram<u64> {
        let mut h = latency_histogram();
        for &v in values_us {
            h.saturating_record(v);
        }
        h
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let s = LatencySummary::of(&histogram(&[1000, 2000, 3000, 4000]));
        assert_eq!(s.count, 4);
        assert!((s.p50 - 2.0).abs() < 0.01, "{s:?}");
        assert!((s.max - 4.0).abs() < 0.01, "{s:?}");
        assert!((s.mean - 2.5).abs() < 0.01, "{s:?}");
        assert!((s.sum - 10.0).abs() < 0.05, "{s:?}");
        assert_eq!(
            LatencySummary::of(&latency_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn the_window_forgets_old_slots() {
        let t0 = Instant::now();
        let mut w = Window::new(5, Duration::from_secs(2), t0);
        w.add(&histogram(&[1000]), t0);
        w.add(&histogram(&[2000, 2000]), t0 + Duration::from_secs(3));
        assert_eq!(w.merged(t0 + Duration::from_secs(3)).len(), 3);
        // 10 s after the first slot it has left the window; the second has not.
        assert_eq!(w.merged(t0 + Duration::from_secs(10)).len(), 2);
        assert_eq!(w.merged(t0 + Duration::from_secs(13)).len(), 0);
        // A slot reused after a full turn starts empty.
        w.add(&histogram(&[5000]), t0 + Duration::from_secs(20));
        assert_eq!(w.merged(t0 + Duration::from_secs(20)).len(), 1);
    }

    #[test]
    fn aggregate_keeps_latest_counters_and_merges_latency() {
        let t0 = Instant::now();
        let mut agg = Aggregate::new(2, t0);
        let report = |shard, requests, values: &[u64]| ShardReport {
            shard,
            answer_to: 0,
            counters: Counters {
                requests,
                ..Counters::default()
            },
            latency: Some(histogram(values)),
            backends: vec![BackendReport {
                name: "a".into(),
                cluster: "c".into(),
                counters: BackendCounters {
                    attempts: requests,
                    ..BackendCounters::default()
                },
                latency: Some(histogram(values)),
            }],
            clusters: vec![ClusterReport {
                name: "c".into(),
                requests,
                failures: 1,
            }],
            routes: vec![("r".into(), requests)],
        };
        agg.add(report(0, 5, &[1000; 5]), t0);
        agg.add(report(1, 3, &[2000; 3]), t0);
        agg.add(report(0, 7, &[1000; 2]), t0);
        assert_eq!(
            agg.counters(None).requests,
            10,
            "latest of each shard, summed"
        );
        assert_eq!(agg.counters(Some(1)).requests, 3);
        assert_eq!(agg.backend_counters("a", None).attempts, 10);
        assert_eq!(agg.latency.since_start.len(), 10, "deltas add up");
        assert_eq!(agg.shard_latency[0].since_start.len(), 7);
        assert_eq!(agg.backend_latency["a"].since_start.len(), 10);
        assert_eq!(agg.cluster_counters("c", None), (10, 2));
        assert_eq!(agg.cluster_counters("c", Some(0)), (7, 1));
        assert_eq!(agg.cluster_latency["c"].since_start.len(), 10);
        assert_eq!(agg.route_requests("r", None), 10);
        assert_eq!(agg.route_requests("r", Some(1)), 3);
    }

    #[test]
    fn status_codes_merge_and_group() {
        let mut a = Counters::default();
        let mut b = Counters {
            status: vec![0; STATUS_SLOTS],
            ..Counters::default()
        };
        b.status[100] = 2; // 200
        b.status[403] = 1; // 503
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.status_codes(), vec![(200, 4), (503, 2)]);
        assert_eq!(a.responses_by_class(), [0, 4, 0, 0, 2]);
    }
}
