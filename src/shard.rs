//! `shard`: one OS thread pinned to one core, running its own monoio runtime.
//!
//! Owns the thread, the io driver choice, the shard's listener and accept loop, its
//! copy of the backend table, its counters, and the graceful drain on shutdown. Talks
//! to the control thread only through crossbeam channels (commands in, events out),
//! polled from a task of its own. Shares nothing with other shards on the request path.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use monoio::net::TcpListener;

use crate::access_log::AccessLog;
use crate::backend::{Availability, Backend, BackendId};
use crate::balancer::Balancer;
use crate::config::{BalancerConfig, Config, IoMode};
use crate::h1;
use crate::stats::{ShardReport, ShardStats};
use crate::{log_debug, log_warn};

/// Most idle upstream read buffers a shard keeps for reuse.
const POOLED_BUFFERS: usize = 256;

/// How often a shard looks for commands from the control thread.
pub const COMMAND_POLL: Duration = Duration::from_millis(2);

/// The io driver every shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// io_uring, the default.
    IoUring,
    /// epoll, for kernels or containers that refuse io_uring.
    Epoll,
}

impl Driver {
    /// The name used in logs and statistics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Error from starting shards.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// `server.io = "io_uring"` was forced but the kernel refused it.
    #[error("io_uring is not available ({0}); set server.io = \"epoll\" or \"auto\"")]
    IoUringUnavailable(io::Error),
    /// The thread could not be spawned.
    #[error("cannot spawn shard thread: {0}")]
    Spawn(io::Error),
}

/// Chooses the driver: io_uring when the kernel allows it (and `mode` permits),
/// else epoll. Builds a throwaway ring to find out, because monoio's fusion builder
/// does not fall back by itself when the ring cannot be created.
pub fn choose_driver(mode: IoMode) -> Result<(Driver, Option<io::Error>), ShardError> {
    match mode {
        IoMode::Epoll => Ok((Driver::Epoll, None)),
        IoMode::IoUring => match probe_io_uring() {
            Ok(()) => Ok((Driver::IoUring, None)),
            Err(e) => Err(ShardError::IoUringUnavailable(e)),
        },
        IoMode::Auto => match probe_io_uring() {
            Ok(()) => Ok((Driver::IoUring, None)),
            Err(e) => Ok((Driver::Epoll, Some(e))),
        },
    }
}

/// Builds a throwaway ring on a throwaway thread: a thread that creates a ring keeps
/// io_uring task state, and the caller's thread should not.
fn probe_io_uring() -> io::Result<()> {
    std::thread::Builder::new()
        .name("ringlb-probe".into())
        .spawn(|| {
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .build()
                .map(drop)
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")))
}

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
                Some(secret) => crate::sticky::key_from_secret(secret),
                None => crate::sticky::random_key(),
            }),
            max_retries: config.retry.max_retries,
            max_buffered_body: config.retry.max_buffered_body,
            retry_tokens_per_request: f64::from(config.retry.budget_percent) / 100.0,
            report_outcomes: config.circuit_breaker.enabled,
            count_5xx: config.circuit_breaker.count_5xx,
        }
    }
}

/// A backend as the control thread describes it to shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// Stable identity, assigned by the control thread.
    pub id: BackendId,
    /// The configured name.
    pub name: String,
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of traffic.
    pub weight: u32,
    /// Whether shards may pick it (health, and later breaker and admin state).
    pub available: bool,
}

/// What the control thread tells a shard.
#[derive(Debug, Clone)]
pub enum ShardCommand {
    /// Replace the backend table. Unchanged backends keep their pools and counts.
    SetBackends(Arc<[BackendSpec]>),
    /// Take a backend out of rotation, put it back, or let probes through.
    SetAvailability {
        id: BackendId,
        availability: Availability,
    },
    /// Set the weight a backend is selected by (slow start).
    SetWeight { id: BackendId, weight: u32 },
    /// Send a report now, tagged with this number.
    ReportStats(u64),
    /// Stop accepting, finish in-flight requests within the grace period, exit.
    Shutdown,
    /// Stop at once: close every connection.
    Abort,
}

/// What a shard tells the control thread.
#[derive(Debug, Clone)]
pub enum ShardEvent {
    /// The shard's runtime is up and its listener registered.
    Started { shard: usize },
    /// The outcome of a real request to a backend, for its circuit breaker. Every
    /// failure is reported; a success only when it ends a reported streak.
    Outcome { id: BackendId, ok: bool },
    /// Counters and latency: every second, and in answer to `ReportStats`.
    Report(Box<ShardReport>),
    /// The shard finished; `unfinished` connections were still open at the deadline.
    Stopped { shard: usize, unfinished: usize },
}

/// File descriptors of this shard's client connections, and which of them wait
/// for their next request, so that a drain can wake the idle ones and the end of
/// the grace period can cut the rest. (A dropped monoio runtime does not close the
/// sockets of tasks still parked in it.)
#[derive(Debug, Default)]
pub struct ClientFds {
    /// One per open connection; `None` marks a free slot.
    slots: Vec<Option<ClientSlot>>,
    /// Free slots to reuse.
    free: Vec<usize>,
}

/// One open client connection, as the shard's bookkeeping sees it.
#[derive(Debug, Clone, Copy)]
struct ClientSlot {
    fd: RawFd,
    state: ClientState,
}

/// What a client connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Reading or proxying a request.
    Busy,
    /// Waiting for its next request (a drain may close it).
    Idle,
    /// Idle and parked, with no timer of its own, until this idle deadline.
    Parked { until: Instant },
}

impl ClientSlot {
    fn idle(&self) -> bool {
        self.state != ClientState::Busy
    }
}

impl ClientFds {
    fn register(&mut self, fd: RawFd) -> usize {
        let slot = Some(ClientSlot {
            fd,
            state: ClientState::Busy,
        });
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    fn unregister(&mut self, token: usize) {
        if let Some(slot) = self.slots.get_mut(token) {
            if slot.take().is_some() {
                self.free.push(token);
            }
        }
    }

    fn set_state(&mut self, token: usize, state: ClientState) {
        if let Some(Some(slot)) = self.slots.get_mut(token) {
            slot.state = state;
        }
    }

    /// Connections parked now.
    fn parked(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|slot| matches!(slot.state, ClientState::Parked { .. }))
            .count()
    }

    /// Shuts down the connections `pick` chooses: their pending reads (or
    /// readiness waits) return, and their tasks end and close them.
    fn shutdown(&self, pick: impl Fn(&ClientSlot) -> bool) {
        for slot in self.slots.iter().flatten() {
            if pick(slot) {
                // SAFETY: registered descriptors belong to live connection tasks,
                // which unregister before their socket closes. shutdown() does not
                // close the descriptor.
                unsafe { libc::shutdown(slot.fd, libc::SHUT_RDWR) };
            }
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
            self.balancer.borrow().backends(),
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
            // SAFETY: `fd` is the listener owned by this shard's accept loop, which
            // is still alive (the loop exits only after this wakes it). shutdown()
            // does not close the descriptor; a pending accept returns EINVAL, so no
            // accept op is dropped in flight (the fd leak of monoio #318).
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
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
                    backend.set_sticky_token(crate::sticky::token(key, &spec.name));
                }
                Rc::new(backend)
            })
        })
        .collect()
}

/// Everything a shard thread starts with.
pub struct ShardStart {
    /// Index of the shard.
    pub index: usize,
    /// Core to pin to, if pinning is possible.
    pub core: Option<core_affinity::CoreId>,
    /// The io driver.
    pub driver: Driver,
    /// This shard's own SO_REUSEPORT listener, already bound.
    pub listener: std::net::TcpListener,
    /// Settings.
    pub settings: ShardSettings,
    /// The initial backend table.
    pub backends: Arc<[BackendSpec]>,
    /// Commands from the control thread.
    pub commands: Receiver<ShardCommand>,
    /// Events to the control thread.
    pub events: Sender<ShardEvent>,
    /// The access log writer, when `logging.access_log` is on.
    pub access_log: Option<Sender<Vec<u8>>>,
}

/// Spawns a shard thread.
pub fn spawn(start: ShardStart) -> Result<JoinHandle<()>, ShardError> {
    std::thread::Builder::new()
        .name(format!("ringlb-shard-{}", start.index))
        .spawn(move || {
            if let Some(core) = start.core {
                if !core_affinity::set_for_current(core) {
                    log_warn!("shard {}: could not pin to core {}", start.index, core.id);
                }
            }
            let index = start.index;
            let events = start.events.clone();
            if let Err(e) = run_on(start.driver, shard_main(start)) {
                crate::log_error!("shard {index}: runtime failed: {e}");
                let _ = events.send(ShardEvent::Stopped {
                    shard: index,
                    unfinished: 0,
                });
            }
        })
        .map_err(ShardError::Spawn)
}

/// How a shard's ring runs completion work, best first. Completions for sockets
/// (a read that found data, say) are finished by "task work" on the ring's thread.
/// By default the kernel interrupts the thread for it at once, which costs an IPI
/// and socket-lock contention per completion; these setups let the thread run it in
/// batches when it next enters the kernel, which at saturation cut the proxy's CPU
/// per request by about a third (PERF.md). Older kernels refuse the newer flags with
/// `EINVAL`, so the shard walks down the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSetup {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1+): task work runs only when the
    /// thread waits for completions, which monoio does each time it parks.
    DeferTaskrun,
    /// `COOP_TASKRUN | TASKRUN_FLAG` (Linux 5.19+): no interrupt; task work runs
    /// on the thread's next system call.
    CoopTaskrun,
    /// The kernel's default.
    Plain,
}

impl RingSetup {
    /// Every setup, best first.
    pub const LADDER: [RingSetup; 3] = [
        RingSetup::DeferTaskrun,
        RingSetup::CoopTaskrun,
        RingSetup::Plain,
    ];

    fn builder(self) -> io_uring::Builder {
        let mut builder = io_uring::IoUring::builder();
        match self {
            RingSetup::DeferTaskrun => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            RingSetup::CoopTaskrun => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            RingSetup::Plain => {}
        }
        builder
    }

    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RingSetup::DeferTaskrun => "defer-taskrun",
            RingSetup::CoopTaskrun => "coop-taskrun",
            RingSetup::Plain => "plain",
        }
    }
}

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// Builds an io_uring runtime with the first of `setups` the kernel accepts. Must
/// be called on the thread that will run it (the ring may be single-issuer).
fn uring_runtime(setups: &[RingSetup]) -> io::Result<(UringRuntime, RingSetup)> {
    let mut refused = None;
    for &setup in setups {
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(4096)
            .uring_builder(setup.builder())
            .enable_timer()
            .build()
        {
            Ok(runtime) => return Ok((runtime, setup)),
            // EINVAL: this kernel does not know the flags; try the next setup.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => refused = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(refused.unwrap_or_else(|| io::Error::other("no io_uring setup to try")))
}

/// Runs `future` to completion on a fresh runtime of the given driver, with timers.
pub fn run_on<F: std::future::Future>(driver: Driver, future: F) -> io::Result<F::Output> {
    match driver {
        Driver::IoUring => {
            let (mut runtime, setup) = uring_runtime(&RingSetup::LADDER)?;
            log_debug!("io_uring ring setup: {}", setup.as_str());
            Ok(runtime.block_on(future))
        }
        Driver::Epoll => Ok(monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?
            .block_on(future)),
    }
}

async fn shard_main(start: ShardStart) {
    let ShardStart {
        index,
        listener,
        settings,
        backends,
        commands,
        events,
        access_log,
        ..
    } = start;
    let shard = Rc::new(Shard::new(
        index,
        settings,
        &backends,
        events.clone(),
        access_log,
    ));
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            crate::log_error!("shard {index}: cannot register listener: {e}");
            let _ = events.send(ShardEvent::Stopped {
                shard: index,
                unfinished: 0,
            });
            return;
        }
    };
    shard.listener_fd.set(listener.as_raw_fd());
    let aborted = Rc::new(Cell::new(false));
    monoio::spawn(poll_commands(
        Rc::clone(&shard),
        commands,
        events.clone(),
        Rc::clone(&aborted),
    ));
    let _ = events.send(ShardEvent::Started { shard: index });

    accept_loop(&shard, &listener).await;
    shard.listener_fd.set(-1);
    drop(listener);

    // Drain: wait for open connections to finish, up to the grace period.
    let deadline = Instant::now() + shard.settings.shutdown_grace;
    while shard.active_connections() > 0 && !aborted.get() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    // A last report and access log flush, so that what this shard served is not lost.
    shard.send_report(&events, 0);
    if let Some(log) = &shard.access_log {
        log.flush(Instant::now());
    }
    let unfinished = shard.active_connections();
    if unfinished > 0 {
        // Cut what is left, and give the tasks a moment to close their sockets
        // (upstream ones included) before the runtime goes away.
        shard.cut_connections();
        let cut_deadline = Instant::now() + Duration::from_millis(200);
        while shard.active_connections() > 0 && Instant::now() < cut_deadline {
            monoio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let _ = events.send(ShardEvent::Stopped {
        shard: index,
        unfinished,
    });
}

async fn accept_loop(shard: &Rc<Shard>, listener: &TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if shard.draining() {
                    break;
                }
                ShardStats::bump(&shard.stats.connections_accepted);
                if shard.active_connections() >= shard.settings.max_connections {
                    ShardStats::bump(&shard.stats.connections_refused);
                    log_debug!("shard {}: refused {peer}: max_connections", shard.index);
                    drop(stream);
                    continue;
                }
                // TCP_NODELAY is inherited from the listener (set in `control`), so
                // no system call per accepted connection.
                let guard = shard.connection_opened(stream.as_raw_fd());
                monoio::spawn(crate::proxy::http::serve(
                    Rc::clone(shard),
                    guard,
                    stream,
                    peer,
                ));
            }
            Err(e) => {
                if shard.draining() {
                    break;
                }
                match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        log_warn!("shard {}: accept: {e}; pausing 10ms", shard.index);
                        monoio::time::sleep(Duration::from_millis(10)).await;
                    }
                    _ => log_debug!("shard {}: accept: {e}", shard.index),
                }
            }
        }
    }
}

/// How often a shard ends parked connections past their idle timeout (so
/// `timeouts.idle` is kept to within this much for them).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// How often a shard reports its counters and latency unasked.
const REPORT_EVERY: Duration = Duration::from_secs(1);

async fn poll_commands(
    shard: Rc<Shard>,
    commands: Receiver<ShardCommand>,
    events: Sender<ShardEvent>,
    aborted: Rc<Cell<bool>>,
) {
    let mut next_report = Instant::now() + REPORT_EVERY;
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    loop {
        monoio::time::sleep(COMMAND_POLL).await;
        let now = Instant::now();
        if now >= next_report {
            shard.send_report(&events, 0);
            next_report = now + REPORT_EVERY;
            crate::memory::release_freed();
        }
        if now >= next_sweep {
            shard.sweep_parked(now);
            next_sweep = now + SWEEP_EVERY;
        }
        if let Some(log) = &shard.access_log {
            log.flush_if_due(now);
        }
        loop {
            match commands.try_recv() {
                Ok(ShardCommand::Abort) => {
                    aborted.set(true);
                    shard.apply(ShardCommand::Abort, &events);
                }
                Ok(command) => shard.apply(command, &events),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The control thread is gone: nobody can stop us later.
                    shard.apply(ShardCommand::Shutdown, &events);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

    /// Every ring setup this kernel accepts must carry a TCP round trip: a setup
    /// whose completions were never reaped would hang here until the timeout.
    #[test]
    fn every_accepted_ring_setup_carries_a_round_trip() {
        let mut accepted = 0;
        for setup in RingSetup::LADDER {
            let Ok((mut runtime, chosen)) = uring_runtime(&[setup]) else {
                continue;
            };
            assert_eq!(chosen, setup);
            accepted += 1;
            let echoed = runtime.block_on(async {
                let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let address = listener.local_addr().unwrap();
                let server = monoio::spawn(async move {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let (n, buf) = stream.read(vec![0u8; 16]).await;
                    let n = n.unwrap();
                    let (result, _) = stream.write_all(buf[..n].to_vec()).await;
                    result.unwrap();
                });
                let mut client = monoio::net::TcpStream::connect_addr(address).await.unwrap();
                let (result, _) = client.write_all(b"ping".to_vec()).await;
                result.unwrap();
                let read =
                    monoio::time::timeout(Duration::from_secs(5), client.read(vec![0u8; 16]));
                let (n, buf) = read.await.expect("a completion was never reaped");
                server.await;
                buf[..n.unwrap()].to_vec()
            });
            assert_eq!(echoed, b"ping", "{}", setup.as_str());
        }
        assert!(accepted > 0, "the kernel refused every io_uring setup");
    }
}
