//! `shard`: one OS thread pinned to one core, running its own monoio runtime.
//!
//! Owns the per-shard context every connection task shares through `Rc` (settings,
//! the backend table, counters, client descriptors, lent buffers, the retry budget)
//! and the graceful drain. Its thread ([`worker`]), io driver ([`runtime`]) and
//! messages to and from the control thread ([`messages`]) live beside it. Shares
//! nothing with other shards on the request path: `Rc` and `Cell`, no locks.

mod clients;
pub mod messages;
pub mod runtime;
mod worker;

pub use messages::{BackendSpec, ShardCommand, ShardEvent};
pub use runtime::{choose_driver, run_on, Driver, RingSetup, ShardError};
pub use worker::{spawn, ShardStart};

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::cluster::backend::{Availability, Backend};
use crate::cluster::balancer::Balancer;
use crate::config::{BalancerConfig, Config};
use crate::observe::access_log::AccessLog;
use crate::observe::stats::{BackendGauges, ShardStats};
use crate::protocol::h1;
use crate::sys;
use clients::{ClientFds, ClientSlot, ClientState};

/// Most idle upstream read buffers a shard keeps for reuse.
const POOLED_BUFFERS: usize = 256;

/// How often a shard looks for commands from the control thread.
pub const COMMAND_POLL: Duration = Duration::from_millis(2);

/// Everything a shard needs to know from the configuration (sent to its thread).
#[derive(Debug, Clone)]
pub struct ShardSettings {
    /// Parsing limits.
    pub limits: h1::Limits,
    /// `timeouts.connect`.
    pub connect_timeout: Duration,
    /// `timeouts.header_read`.
    pub header_read_timeout: Duration,
    /// `timeouts.idle`.
    pub idle_timeout: Duration,
    /// `timeouts.backend_response`.
    pub backend_response_timeout: Duration,
    /// `timeouts.shutdown_grace`.
    pub shutdown_grace: Duration,
    /// This shard's share of `server.max_connections`.
    pub max_connections: usize,
    /// `upstream.max_idle_per_backend`.
    pub max_idle_per_backend: usize,
    /// `upstream.idle_timeout`.
    pub upstream_idle_timeout: Duration,
    /// `[balancer]`.
    pub balancer: BalancerConfig,
    /// The key sticky tokens are made with (the same for every shard).
    pub sticky_key: Option<(u64, u64)>,
    /// `retry.max_retries`.
    pub max_retries: u32,
    /// `retry.max_buffered_body`.
    pub max_buffered_body: usize,
    /// `retry.budget_percent`, as tokens earned per request.
    pub retry_tokens_per_request: f64,
    /// `circuit_breaker.enabled`: whether outcomes are reported.
    pub report_outcomes: bool,
    /// `circuit_breaker.count_5xx`.
    pub count_5xx: bool,
}

impl ShardSettings {
    /// The settings for one of `shards` shards.
    pub fn from_config(config: &Config, shards: usize) -> Self {
        ShardSettings {
            limits: config.limits,
            connect_timeout: config.timeouts.connect,
            header_read_timeout: config.timeouts.header_read,
            idle_timeout: config.timeouts.idle,
            backend_response_timeout: config.timeouts.backend_response,
            shutdown_grace: config.timeouts.shutdown_grace,
            max_connections: config.server.max_connections.div_ceil(shards.max(1)),
            max_idle_per_backend: config.upstream.max_idle_per_backend,
            upstream_idle_timeout: config.upstream.idle_timeout,
            balancer: config.balancer.clone(),
            sticky_key: config.balancer.sticky.as_ref().map(|s| match &s.secret {
                Some(secret) => crate::cluster::sticky::key_from_secret(secret),
                None => crate::cluster::sticky::random_key(),
            }),
            max_retries: config.retry.max_retries,
            max_buffered_body: config.retry.max_buffered_body,
            retry_tokens_per_request: f64::from(config.retry.budget_percent) / 100.0,
            report_outcomes: config.circuit_breaker.enabled,
            count_5xx: config.circuit_breaker.count_5xx,
        }
    }
}

/// One shard's state, shared by its tasks through `Rc`.
#[derive(Debug)]
pub struct Shard {
    /// Index of this shard (0-based).
    pub index: usize,
    /// Settings from the configuration.
    pub settings: ShardSettings,
    /// The backend table and the strategy.
    pub balancer: RefCell<Balancer>,
    /// Counters.
    pub stats: ShardStats,
    /// Set once shutdown begins: no new requests on idle connections.
    draining: Cell<bool>,
    /// Open client connections.
    active_connections: Cell<usize>,
    /// Open client connections' descriptors, for drain and abort.
    clients: RefCell<ClientFds>,
    /// The listener's descriptor, shut down to end the accept loop.
    listener_fd: Cell<RawFd>,
    /// Events to the control thread (outcomes are sent from connection tasks).
    events: Sender<ShardEvent>,
    /// The access log buffer, when `logging.access_log` is on.
    pub access_log: Option<AccessLog>,
    /// Upstream read buffers, lent to requests for their duration, so a request
    /// allocates none and an idle connection holds none.
    buffers: RefCell<Vec<Vec<u8>>>,
    /// Retry budget: each request earns `retry_tokens_per_request`, each retry on
    /// another backend spends one, so retries add at most that share of requests.
    retry_tokens: Cell<f64>,
}

/// Retries a shard starts with (and the least it may save up), so that a quiet
/// shard can retry, and a burst of failures before a breaker opens is covered.
pub const RETRY_TOKENS_RESERVE: f64 = 50.0;

impl Shard {
    /// A shard with `backends` and no connections.
    pub fn new(
        index: usize,
        settings: ShardSettings,
        backends: &[BackendSpec],
        events: Sender<ShardEvent>,
        access_log: Option<Sender<Vec<u8>>>,
    ) -> Self {
        let table = build_table(&settings, backends, &[]);
        Shard {
            index,
            balancer: RefCell::new(Balancer::with_config(&settings.balancer, table, index)),
            settings,
            stats: ShardStats::default(),
            draining: Cell::new(false),
            active_connections: Cell::new(0),
            clients: RefCell::new(ClientFds::default()),
            listener_fd: Cell::new(-1),
            retry_tokens: Cell::new(RETRY_TOKENS_RESERVE),
            events,
            access_log: access_log.map(AccessLog::new),
            buffers: RefCell::new(Vec::new()),
        }
    }

    /// Lends an empty buffer of at least `capacity` bytes.
    pub fn take_buffer(&self, capacity: usize) -> Vec<u8> {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Takes a lent buffer back (at most `POOLED_BUFFERS` are kept).
    pub fn give_buffer(&self, mut buffer: Vec<u8>) {
        let mut buffers = self.buffers.borrow_mut();
        if buffers.len() < POOLED_BUFFERS && buffer.capacity() > 0 {
            buffer.clear();
            buffers.push(buffer);
        }
    }

    /// Reports the outcome of a request to `backend` for its circuit breaker,
    /// without ever blocking: a full channel drops the report and counts it.
    pub fn report_outcome(&self, backend: &Backend, ok: bool) {
        if !self.settings.report_outcomes || !backend.should_report(ok) {
            return;
        }
        let event = ShardEvent::Outcome { id: backend.id, ok };
        if self.events.try_send(event).is_err() {
            ShardStats::bump(&self.stats.reports_dropped);
        }
    }

    /// Earns this request's share of the retry budget.
    pub fn earn_retry_budget(&self) {
        let earned = self.retry_tokens.get() + self.settings.retry_tokens_per_request;
        self.retry_tokens.set(
            earned.min(RETRY_TOKENS_RESERVE.max(self.settings.retry_tokens_per_request * 100.0)),
        );
    }

    /// Spends one retry from the budget; false when it is exhausted.
    pub fn spend_retry_budget(&self) -> bool {
        let tokens = self.retry_tokens.get();
        if tokens >= 1.0 {
            self.retry_tokens.set(tokens - 1.0);
            true
        } else {
            false
        }
    }

    /// Whether shutdown has begun.
    #[inline]
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Open client connections.
    pub fn active_connections(&self) -> usize {
        self.active_connections.get()
    }

    /// Marks a client connection as waiting for its next request (or not).
    pub fn set_idle(&self, guard: &ConnectionGuard, idle: bool) {
        let state = if idle {
            ClientState::Idle
        } else {
            ClientState::Busy
        };
        self.clients.borrow_mut().set_state(guard.token, state);
    }

    /// Marks a client connection as parked: idle, with no timer of its own. The
    /// shard's sweep shuts it down once `until` passes, which ends its wait.
    pub fn set_parked(&self, guard: &ConnectionGuard, until: Option<Instant>) {
        let state = until.map_or(ClientState::Busy, |until| ClientState::Parked { until });
        self.clients.borrow_mut().set_state(guard.token, state);
    }

    /// Ends parked connections whose idle deadline has passed.
    fn sweep_parked(&self, now: Instant) {
        self.clients
            .borrow()
            .shutdown(|slot| matches!(slot.state, ClientState::Parked { until } if until <= now));
    }

    /// Counts an open client connection (and tracks its descriptor) for as long as
    /// the guard lives.
    pub fn connection_opened(self: &Rc<Self>, fd: RawFd) -> ConnectionGuard {
        self.active_connections
            .set(self.active_connections.get() + 1);
        let token = self.clients.borrow_mut().register(fd);
        ConnectionGuard {
            shard: Rc::clone(self),
            token,
        }
    }

    /// Cuts every open client connection (end of the grace period, or abort).
    fn cut_connections(&self) {
        self.clients.borrow().shutdown(|_| true);
    }

    fn apply(&self, command: ShardCommand, events: &Sender<ShardEvent>) {
        match command {
            ShardCommand::SetBackends(specs) => {
                let mut balancer = self.balancer.borrow_mut();
                let table = build_table(&self.settings, &specs, balancer.backends());
                balancer.replace(table);
            }
            ShardCommand::SetAvailability { id, availability } => {
                for b in self.balancer.borrow().backends() {
                    if b.id == id {
                        b.set_availability(availability);
                    }
                }
            }
            ShardCommand::SetWeight { id, weight } => {
                for b in self.balancer.borrow().backends() {
                    if b.id == id {
                        b.set_effective_weight(weight);
                    }
                }
            }
            ShardCommand::ReportStats(answer_to) => self.send_report(events, answer_to),
            ShardCommand::Shutdown | ShardCommand::Abort => self.begin_drain(),
        }
    }

    /// Sends counters and the latency recorded since the last report. If the
    /// channel is full the report is dropped, and its latency with it: the
    /// control thread is far behind, and the next report carries fresh counters.
    fn send_report(&self, events: &Sender<ShardEvent>, answer_to: u64) {
        let mut report = self.stats.report(
            self.index,
            self.active_connections(),
            self.clients.borrow().parked(),
            self.access_log.as_ref().map_or(0, AccessLog::dropped),
            &self
                .balancer
                .borrow()
                .backends()
                .iter()
                .map(|b| BackendGauges {
                    name: &b.name,
                    stats: &b.stats,
                    in_flight: b.in_flight(),
                    idle: b.pool.idle_count(),
                })
                .collect::<Vec<_>>(),
        );
        report.answer_to = answer_to;
        if events
            .try_send(ShardEvent::Report(Box::new(report)))
            .is_err()
        {
            ShardStats::bump(&self.stats.reports_dropped);
        }
    }

    /// Stops accepting and wakes idle connections so they close.
    fn begin_drain(&self) {
        if self.draining.replace(true) {
            return;
        }
        let fd = self.listener_fd.get();
        if fd >= 0 {
            // `fd` is the listener owned by this shard's accept loop, which is
            // still alive (the loop exits only after this wakes it). A pending
            // accept returns EINVAL, so no accept op is dropped in flight (the fd
            // leak of monoio #318).
            let _ = sys::shutdown(fd, sys::Shutdown::Read);
        }
        self.clients.borrow().shutdown(ClientSlot::idle);
        for backend in self.balancer.borrow().backends() {
            backend.pool.clear();
        }
    }
}

/// Keeps `Shard::active_connections` right, whatever way a connection task ends.
#[derive(Debug)]
pub struct ConnectionGuard {
    shard: Rc<Shard>,
    token: usize,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let n = &self.shard.active_connections;
        n.set(n.get().saturating_sub(1));
        self.shard.clients.borrow_mut().unregister(self.token);
    }
}

/// Builds a table from specs, keeping the existing `Backend` (pool, in-flight
/// count, availability) for every backend whose id, address and weight are unchanged.
fn build_table(
    settings: &ShardSettings,
    specs: &[BackendSpec],
    existing: &[Rc<Backend>],
) -> Vec<Rc<Backend>> {
    specs
        .iter()
        .map(|spec| {
            let kept = existing
                .iter()
                .find(|b| b.id == spec.id && b.address == spec.address && b.weight == spec.weight);
            if let Some(b) = kept {
                let wanted = if spec.available {
                    Availability::Available
                } else {
                    Availability::Unavailable
                };
                if b.availability() != wanted {
                    b.set_availability(wanted);
                }
            }
            kept.cloned().unwrap_or_else(|| {
                let backend = Backend::new(
                    spec.id,
                    spec.name.as_str().into(),
                    spec.address,
                    spec.weight,
                    settings.max_idle_per_backend,
                    settings.upstream_idle_timeout,
                );
                backend.set_available(spec.available);
                if let Some(key) = settings.sticky_key {
                    backend.set_sticky_token(crate::cluster::sticky::token(key, &spec.name));
                }
                Rc::new(backend)
            })
        })
        .collect()
}
