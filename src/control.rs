//! `control`: the control thread, and starting and stopping the whole server.
//!
//! Owns every global decision: the backend table (ids by name, changes broadcast to
//! every shard), shutdown, signals and reloads. Talks to shards only through their
//! crossbeam channels: typed commands out, compact events in. Never on the request
//! path; never blocks a shard (commands go through bounded channels with room).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};
use socket2::{Domain, Protocol, Socket, Type};

use crate::access_log;
use crate::admin::{self, AdminServer};
use crate::backend::Availability;
use crate::backend::BackendId;
use crate::breaker::{Breaker, BreakerSettings, BreakerState};
use crate::config::{BackendConfig, CheckType, Config, HealthCheckConfig};
use crate::health::{self, CheckKind, CheckResult, Checker, Health, Transition};
use crate::shard::{
    self, BackendSpec, Driver, ShardCommand, ShardError, ShardEvent, ShardSettings, ShardStart,
};
use crate::stats::{Aggregate, BackendCounters, Counters, LatencySummary};
use crate::{log_error, log_info, log_warn};

/// How often slow start raises the weights of ramping backends.
const SLOW_START_STEP: Duration = Duration::from_millis(100);

/// Listen backlog for every shard's listener.
const BACKLOG: i32 = 4096;
/// Room in each shard's command channel.
const COMMAND_QUEUE: usize = 256;
/// How long `start` waits for every shard to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration breaks a rule.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
    /// A shard could not be started.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// A thread could not be spawned.
    #[error("cannot spawn thread: {0}")]
    Spawn(io::Error),
    /// A shard did not report in time.
    #[error("shard {0} did not start")]
    ShardStart(usize),
}

/// Messages to the control thread.
#[derive(Debug)]
enum ControlMessage {
    Shutdown,
    Abort,
    SetBackends(Vec<BackendConfig>),
    Stats(Sender<Counters>),
    Report {
        shard: Option<usize>,
        wait: Duration,
        reply: Sender<Option<Report>>,
    },
    Backends(Sender<Vec<BackendStatus>>),
    SetAdminState {
        name: String,
        state: AdminState,
        reply: Sender<Option<BackendStatus>>,
    },
}

/// What an operator asked for a backend through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// In rotation (when healthy and its breaker allows).
    Enabled,
    /// No new requests; requests in flight finish. Kept until `enable`.
    Draining,
    /// Out of rotation until `enable`.
    Disabled,
}

impl AdminState {
    /// The name used in the admin API.
    pub fn as_str(&self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        }
    }
}

/// One backend as the control thread sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    /// The configured name.
    pub name: String,
    /// Where it is.
    pub address: SocketAddr,
    /// Its weight.
    pub weight: u32,
    /// Whether its health checks say it is up.
    pub healthy: bool,
    /// Its circuit breaker's state.
    pub breaker: BreakerState,
    /// What an operator set through the admin API.
    pub state: AdminState,
    /// The weight shards select by now (lower while slow start ramps it up).
    pub effective_weight: u32,
}

/// A cheap, cloneable handle that talks to the control thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    tx: Sender<ControlMessage>,
}

impl ServerHandle {
    /// Graceful shutdown: stop accepting, finish in-flight requests within
    /// `timeouts.shutdown_grace`, close idle connections.
    pub fn shutdown(&self) {
        let _ = self.tx.send(ControlMessage::Shutdown);
    }

    /// Immediate stop: close every connection now.
    pub fn abort(&self) {
        let _ = self.tx.send(ControlMessage::Abort);
    }

    /// Replaces the backend table on every shard.
    pub fn set_backends(&self, backends: Vec<BackendConfig>) {
        let _ = self.tx.send(ControlMessage::SetBackends(backends));
    }

    /// Sends the message `make` builds around a reply channel and waits up to
    /// `wait` for the control thread's answer.
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> ControlMessage, wait: Duration) -> Option<T> {
        let (tx, rx) = bounded(1);
        self.tx.send(make(tx)).ok()?;
        rx.recv_timeout(wait).ok()
    }

    /// Sets a backend's operator state (drain, enable, disable); returns its new
    /// status, or `None` when no backend has that name.
    pub fn set_admin_state(&self, name: &str, state: AdminState) -> Option<BackendStatus> {
        let name = name.to_string();
        self.ask(
            |reply| ControlMessage::SetAdminState { name, state, reply },
            Duration::from_secs(2),
        )?
    }

    /// Every backend's state as the control thread sees it.
    pub fn backends(&self) -> Option<Vec<BackendStatus>> {
        self.ask(ControlMessage::Backends, Duration::from_secs(2))
    }

    /// Per-backend counters merged over all shards, by backend name (fresh: waits
    /// up to a second for every shard).
    pub fn backend_counters(&self) -> Option<std::collections::HashMap<String, BackendCounters>> {
        let report = self.report(None, Duration::from_secs(1))?;
        Some(
            report
                .backends
                .into_iter()
                .map(|b| (b.status.name, b.counters))
                .collect(),
        )
    }

    /// Counters merged over all shards (fresh: waits up to a second for every shard).
    pub fn stats(&self) -> Option<Counters> {
        self.ask(ControlMessage::Stats, Duration::from_secs(3))
    }

    /// Everything known about traffic, over all shards or for one (`None` if the
    /// shard does not exist). Shards are asked for fresh figures and waited for
    /// up to `wait`; a shard that has not answered by then is reported as of its
    /// last report (at most a second old).
    pub fn report(&self, shard: Option<usize>, wait: Duration) -> Option<Report> {
        self.ask(
            |reply| ControlMessage::Report { shard, wait, reply },
            wait + Duration::from_secs(2),
        )?
    }
}

/// Traffic figures for the admin endpoints.
#[derive(Debug, Clone)]
pub struct Report {
    /// Time since start.
    pub uptime: Duration,
    /// The io driver in use.
    pub io_driver: &'static str,
    /// How many shards run.
    pub shards: usize,
    /// The balancing strategy.
    pub strategy: &'static str,
    /// The shard this report is about, or `None` for all of them.
    pub shard: Option<usize>,
    /// The length of the sliding window.
    pub window: Duration,
    /// Counters (one shard's, or summed over shards).
    pub totals: Counters,
    /// Latency over the window, and since start.
    pub latency: (LatencySummary, LatencySummary),
    /// Per backend.
    pub backends: Vec<BackendView>,
}

/// One backend in a `Report`.
#[derive(Debug, Clone)]
pub struct BackendView {
    /// Its state as the control thread sees it.
    pub status: BackendStatus,
    /// Its counters.
    pub counters: BackendCounters,
    /// Latency over the window and since start (over all shards only).
    pub latency: Option<(LatencySummary, LatencySummary)>,
}

/// How the shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Client connections still open when the grace period ended.
    pub unfinished_connections: usize,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    driver: Driver,
    shards: usize,
    handle: ServerHandle,
    control: JoinHandle<ShutdownReport>,
}

impl Server {
    /// The address the shards listen on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The io driver in use.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// How many shards run.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// A handle for shutdown and backend changes.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Waits until the server has stopped.
    pub fn wait(self) -> ShutdownReport {
        self.control.join().unwrap_or(ShutdownReport {
            unfinished_connections: 0,
        })
    }

    /// Graceful shutdown, then waits for it.
    pub fn shutdown(self) -> ShutdownReport {
        self.handle.shutdown();
        self.wait()
    }
}

/// Binds a listener with SO_REUSEPORT, so every shard can have its own on one port.
fn bind_reuseport(address: SocketAddr) -> Result<TcpListener, StartError> {
    let bind = || -> io::Result<TcpListener> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        // Accepted sockets inherit TCP_NODELAY from the listener, which spares the
        // shards a system call per connection.
        socket.set_nodelay(true)?;
        socket.bind(&address.into())?;
        socket.listen(BACKLOG)?;
        Ok(socket.into())
    };
    bind().map_err(|source| StartError::Bind { address, source })
}

/// Starts shards, the admin listener and the control thread. Returns once every
/// shard accepts connections.
pub fn start(config: Config) -> Result<Server, StartError> {
    config.validate()?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let shard_count = match config.server.shards {
        0 => cores.len().max(1),
        n => n,
    };
    if !config.server.transparent_huge_pages {
        if let Err(error) = crate::memory::disable_transparent_huge_pages() {
            log_warn!("could not turn transparent huge pages off ({error}); idle connections will cost more memory");
        }
    }
    let (driver, fallback) = shard::choose_driver(config.server.io)?;
    match fallback {
        Some(reason) => log_warn!("io_uring unavailable ({reason}); using epoll"),
        None => log_info!("io driver: {}", driver.as_str()),
    }

    // Bind every shard's listener here, so the port is known (even when 0 was
    // asked) and a bind error stops start-up with a clear message.
    let first = bind_reuseport(config.server.listen)?;
    let local_addr = first.local_addr().map_err(|source| StartError::Bind {
        address: config.server.listen,
        source,
    })?;
    let mut listeners = vec![first];
    for _ in 1..shard_count {
        listeners.push(bind_reuseport(local_addr)?);
    }
    let admin_listener =
        TcpListener::bind(config.admin.listen).map_err(|source| StartError::Bind {
            address: config.admin.listen,
            source,
        })?;

    let mut ids = BackendIds::default();
    let (health_tx, health_rx) = bounded(1024);
    let mut members = Members {
        list: Vec::new(),
        check: config.health_check.clone(),
        breaker: BreakerSettings {
            failure_threshold: config.circuit_breaker.failure_threshold,
            open_for: config.circuit_breaker.open_for,
            half_open_probes: config.circuit_breaker.half_open_probes,
        },
        results: health_tx,
    };
    members.update(ids.specs(&config.backends), Instant::now());
    let specs = members.specs();
    let settings = ShardSettings::from_config(&config, shard_count);
    let (event_tx, event_rx) = bounded::<ShardEvent>(shard_count * 64 + 64);
    let (access_log, access_writer) = if config.logging.access_log {
        let (tx, writer) = access_log::Writer::spawn().map_err(StartError::Spawn)?;
        (Some(tx), Some(writer))
    } else {
        (None, None)
    };
    let mut shards = Vec::with_capacity(shard_count);
    for (index, listener) in listeners.into_iter().enumerate() {
        let (command_tx, command_rx) = bounded(COMMAND_QUEUE);
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let thread = shard::spawn(ShardStart {
            index,
            core,
            driver,
            listener,
            settings: settings.clone(),
            backends: Arc::clone(&specs),
            commands: command_rx,
            events: event_tx.clone(),
            access_log: access_log.clone(),
        })?;
        shards.push(ShardLink {
            commands: command_tx,
            thread: Some(thread),
        });
    }
    drop(event_tx);
    let mut started = 0;
    let deadline = Instant::now() + START_TIMEOUT;
    while started < shard_count {
        match event_rx.recv_deadline(deadline) {
            Ok(ShardEvent::Started { .. }) => started += 1,
            Ok(ShardEvent::Stopped { shard, .. }) => return Err(StartError::ShardStart(shard)),
            Ok(_) => {}
            Err(_) => return Err(StartError::ShardStart(started)),
        }
    }
    let (control_tx, control_rx) = bounded(64);
    let handle = ServerHandle { tx: control_tx };
    let admin_server = admin::spawn(admin_listener, handle.clone()).map_err(StartError::Spawn)?;
    let admin_addr = admin_server.local_addr();
    log_info!(
        "ringlb {} listening on {local_addr} with {shard_count} shard(s) ({}), admin on {admin_addr}, {} backend(s), {}",
        env!("CARGO_PKG_VERSION"),
        driver.as_str(),
        config.backends.len(),
        config.balancer.strategy.as_str()
    );

    let control = ControlThread {
        shards,
        events: event_rx,
        messages: control_rx,
        ids,
        members,
        health: health_rx,
        next_probe_shard: 0,
        aggregate: Aggregate::new(shard_count, Instant::now()),
        access_writer,
        report_seq: 0,
        io_driver: driver.as_str(),
        strategy: config.balancer.strategy.as_str(),
        grace: config.timeouts.shutdown_grace,
        admin: Some(admin_server),
    };
    let thread = std::thread::Builder::new()
        .name("ringlb-control".into())
        .spawn(move || control.run())
        .map_err(StartError::Spawn)?;
    Ok(Server {
        local_addr,
        admin_addr,
        driver,
        shards: shard_count,
        handle,
        control: thread,
    })
}

/// Stable ids for backend names, kept across table changes.
#[derive(Debug, Default)]
struct BackendIds {
    by_name: HashMap<String, BackendId>,
    next: BackendId,
}

impl BackendIds {
    fn specs(&mut self, backends: &[BackendConfig]) -> Vec<BackendSpec> {
        backends
            .iter()
            .map(|b| {
                let id = *self.by_name.entry(b.name.clone()).or_insert_with(|| {
                    self.next += 1;
                    self.next - 1
                });
                BackendSpec {
                    id,
                    name: b.name.clone(),
                    address: b.address,
                    weight: b.weight,
                    available: true,
                }
            })
            .collect()
    }
}

/// Sends a command, waiting a little for room: a shard empties its queue every
/// 2 ms, so a full queue means the shard is stuck, and the command is dropped with
/// a warning rather than blocking the control thread.
fn send_command(link: &ShardLink, command: ShardCommand) {
    if link
        .commands
        .send_timeout(command, Duration::from_millis(500))
        .is_err()
    {
        log_warn!("a shard's command queue stayed full; a command was dropped");
    }
}

/// The control thread's end of one shard.
struct ShardLink {
    commands: Sender<ShardCommand>,
    thread: Option<JoinHandle<()>>,
}

/// One backend's global state, owned by the control thread.
struct Member {
    spec: BackendSpec,
    health: Health,
    breaker: Breaker,
    /// Drained or disabled by an operator.
    admin: AdminState,
    /// The weight last sent to shards (below `spec.weight` during slow start).
    effective_weight: u32,
    /// Its checker thread; `None` when checks are off.
    _checker: Option<Checker>,
}

impl Member {
    /// Whether shards may pick it normally (half-open is decided per shard).
    fn available(&self) -> bool {
        self.admin == AdminState::Enabled
            && self.health.is_up()
            && self.breaker.state() == BreakerState::Closed
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            name: self.spec.name.clone(),
            address: self.spec.address,
            weight: self.spec.weight,
            healthy: self.health.is_up(),
            breaker: self.breaker.state(),
            state: self.admin,
            effective_weight: self.effective_weight,
        }
    }
}

/// The backends, their health and their breakers; every decision about them is
/// taken here.
struct Members {
    list: Vec<Member>,
    check: HealthCheckConfig,
    breaker: BreakerSettings,
    results: Sender<CheckResult>,
}

impl Members {
    /// Adopts a new table: unchanged backends (same name and address) keep their
    /// health, breaker and checker; new ones start as `health_check.start` says.
    fn update(&mut self, specs: Vec<BackendSpec>, now: Instant) {
        let mut old = std::mem::take(&mut self.list);
        for spec in specs {
            let member = match old
                .iter()
                .position(|m| m.spec.id == spec.id && m.spec.address == spec.address)
            {
                Some(i) => {
                    let mut m = old.swap_remove(i);
                    m.spec = spec;
                    // Shards build a changed backend at its configured weight.
                    m.effective_weight = m.spec.weight;
                    m
                }
                None => {
                    let up = self.check.start_up || self.check.kind == CheckType::None;
                    let checker = self.spawn_checker(&spec);
                    let weight = spec.weight;
                    Member {
                        spec,
                        health: Health::new(up, now),
                        breaker: Breaker::default(),
                        admin: AdminState::Enabled,
                        effective_weight: weight,
                        _checker: checker,
                    }
                }
            };
            self.list.push(member);
        }
    }

    fn spawn_checker(&self, spec: &BackendSpec) -> Option<Checker> {
        let kind = match self.check.kind {
            CheckType::None => return None,
            CheckType::Tcp => CheckKind::Tcp,
            CheckType::Http => CheckKind::Http {
                path: self.check.path.clone(),
                expect: self.check.expect_status.clone(),
            },
        };
        match health::spawn_checker(
            spec.id,
            &spec.name,
            spec.address,
            kind,
            self.check.interval,
            self.check.timeout,
            self.results.clone(),
        ) {
            Ok(checker) => Some(checker),
            Err(e) => {
                log_error!("backend {}: cannot start health checks: {e}", spec.name);
                None
            }
        }
    }

    /// The table for shards, each backend's availability derived from its state.
    fn specs(&self) -> Arc<[BackendSpec]> {
        self.list
            .iter()
            .map(|m| BackendSpec {
                available: m.available(),
                ..m.spec.clone()
            })
            .collect()
    }

    /// Applies one check result; returns the member whose availability changed.
    fn record_check(&mut self, result: CheckResult, now: Instant) -> Option<usize> {
        let check = &self.check;
        let index = self
            .list
            .iter()
            .position(|m| m.spec.id == result.id && m.spec.address == result.address)?;
        let member = &mut self.list[index];
        let transition = member.health.record(
            result.outcome.is_ok(),
            now,
            check.healthy_threshold,
            check.unhealthy_threshold,
        )?;
        let name = &member.spec.name;
        match (transition, &result.outcome) {
            (Transition::WentDown, Err(why)) => log_warn!(
                "backend {name} down: {why} ({n}/{n})",
                n = check.unhealthy_threshold
            ),
            _ => log_info!("backend {name} up ({n}/{n})", n = check.healthy_threshold),
        }
        Some(index)
    }

    /// Applies one request outcome to a breaker; returns the member whose
    /// availability changed.
    fn record_outcome(&mut self, id: BackendId, ok: bool, now: Instant) -> Option<usize> {
        let index = self.list.iter().position(|m| m.spec.id == id)?;
        let member = &mut self.list[index];
        let state = member.breaker.record(ok, now, &self.breaker)?;
        self.log_breaker(index, state);
        Some(index)
    }

    /// Moves open breakers whose time is up to half-open; returns those members.
    fn poll_breakers(&mut self, now: Instant) -> Vec<usize> {
        let mut changed = Vec::new();
        for index in 0..self.list.len() {
            if let Some(state) = self.list[index].breaker.poll(now, &self.breaker) {
                self.log_breaker(index, state);
                changed.push(index);
            }
        }
        changed
    }

    fn log_breaker(&self, index: usize, state: BreakerState) {
        let name = &self.list[index].spec.name;
        match state {
            BreakerState::Open => log_warn!(
                "backend {name} breaker open for {:?} after {} consecutive failures",
                self.breaker.open_for,
                self.breaker.failure_threshold
            ),
            BreakerState::HalfOpen => log_info!(
                "backend {name} breaker half-open: letting {} probe request(s) through",
                self.breaker.half_open_probes
            ),
            BreakerState::Closed => log_info!("backend {name} breaker closed"),
        }
    }

    /// The earliest breaker deadline, or the next slow-start step.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let breakers = self.list.iter().filter_map(|m| m.breaker.deadline()).min();
        let ramping = self
            .list
            .iter()
            .any(|m| m.health.ramping(now, self.check.slow_start));
        let ramp_step = ramping.then(|| now + SLOW_START_STEP);
        breakers.into_iter().chain(ramp_step).min()
    }

    /// The weight member `index` should be selected by `now`.
    fn weight_now(&self, index: usize, now: Instant) -> u32 {
        let m = &self.list[index];
        let per_mille = m.health.weight_per_mille(now, self.check.slow_start);
        (u64::from(m.spec.weight) * u64::from(per_mille) / 1000).max(1) as u32
    }

    fn statuses(&self) -> Vec<BackendStatus> {
        self.list.iter().map(Member::status).collect()
    }
}

struct ControlThread {
    shards: Vec<ShardLink>,
    events: Receiver<ShardEvent>,
    messages: Receiver<ControlMessage>,
    ids: BackendIds,
    members: Members,
    health: Receiver<CheckResult>,
    /// The shard that gets the next half-open probes (rotates).
    next_probe_shard: usize,
    /// Traffic figures merged from shard reports.
    aggregate: Aggregate,
    /// The access log writer, stopped after the shards.
    access_writer: Option<access_log::Writer>,
    /// Number of the last on-demand report request.
    report_seq: u64,
    /// For reports.
    io_driver: &'static str,
    strategy: &'static str,
    grace: Duration,
    admin: Option<AdminServer>,
}

impl ControlThread {
    fn run(mut self) -> ShutdownReport {
        loop {
            let wait = self
                .members
                .next_deadline(Instant::now())
                .map_or(Duration::from_secs(3600), |d| {
                    d.saturating_duration_since(Instant::now())
                });
            select! {
                recv(self.messages) -> message => match message {
                    Ok(ControlMessage::Shutdown) | Err(_) => return self.stop(false),
                    Ok(ControlMessage::Abort) => return self.stop(true),
                    Ok(ControlMessage::SetBackends(backends)) => {
                        let specs = self.ids.specs(&backends);
                        log_info!("backend table changed: {} backend(s)", specs.len());
                        self.members.update(specs, Instant::now());
                        self.broadcast(ShardCommand::SetBackends(self.members.specs()));
                        // Half-open probes are per shard: hand them out again.
                        for index in 0..self.members.list.len() {
                            if self.members.list[index].breaker.state() == BreakerState::HalfOpen {
                                self.publish(index);
                            }
                        }
                    }
                    Ok(ControlMessage::Stats(reply)) => {
                        self.refresh(Duration::from_secs(1));
                        let _ = reply.send(self.aggregate.counters(None));
                    }
                    Ok(ControlMessage::Report { shard, wait, reply }) => {
                        self.refresh(wait);
                        let _ = reply.send(self.report(shard));
                    }
                    Ok(ControlMessage::Backends(reply)) => {
                        let _ = reply.send(self.members.statuses());
                    }
                    Ok(ControlMessage::SetAdminState { name, state, reply }) => {
                        let index = self.members.list.iter().position(|m| m.spec.name == name);
                        if let Some(index) = index {
                            self.members.list[index].admin = state;
                            log_info!("backend {name} {} by the admin API", state.as_str());
                            self.publish(index);
                        }
                        let _ = reply.send(index.map(|i| self.members.list[i].status()));
                    }
                },
                recv(self.health) -> result => {
                    if let Ok(result) = result {
                        if let Some(index) = self.members.record_check(result, Instant::now()) {
                            self.publish(index);
                        }
                    }
                },
                recv(self.events) -> event => match event {
                    Ok(ShardEvent::Outcome { id, ok }) => {
                        if let Some(index) = self.members.record_outcome(id, ok, Instant::now()) {
                            self.publish(index);
                        }
                    }
                    Ok(ShardEvent::Report(report)) => {
                        self.aggregate.add(*report, Instant::now());
                    }
                    Ok(ShardEvent::Stopped { shard, .. }) => {
                        log_error!("shard {shard} stopped unexpectedly");
                    }
                    _ => {}
                },
                default(wait) => {}
            }
            for index in self.members.poll_breakers(Instant::now()) {
                self.publish(index);
            }
            self.publish_weights();
        }
    }

    /// Sends every backend whose effective weight changed (slow start) to shards.
    fn publish_weights(&mut self) {
        let now = Instant::now();
        for index in 0..self.members.list.len() {
            let weight = self.members.weight_now(index, now);
            let member = &mut self.members.list[index];
            if weight != member.effective_weight {
                member.effective_weight = weight;
                let id = member.spec.id;
                self.broadcast(ShardCommand::SetWeight { id, weight });
            }
        }
    }

    /// Tells every shard whether it may pick member `index` now. A half-open
    /// breaker's probes go to one shard (rotating); the others keep it out.
    fn publish(&mut self, index: usize) {
        // A backend coming back under slow start gets its low weight first.
        self.publish_weights();
        let member = &self.members.list[index];
        let available = member.available();
        let id = member.spec.id;
        let probing = member.health.is_up() && member.breaker.state() == BreakerState::HalfOpen;
        let probe_shard = self.next_probe_shard % self.shards.len().max(1);
        if probing {
            self.next_probe_shard += 1;
        }
        for (i, link) in self.shards.iter().enumerate() {
            let availability = if available {
                Availability::Available
            } else if probing && i == probe_shard {
                Availability::Probing(self.members.breaker.half_open_probes)
            } else {
                Availability::Unavailable
            };
            send_command(link, ShardCommand::SetAvailability { id, availability });
        }
    }

    fn broadcast(&self, command: ShardCommand) {
        for link in &self.shards {
            send_command(link, command.clone());
        }
    }

    /// Asks every shard for a report and merges the answers, waiting at most `wait`.
    fn refresh(&mut self, wait: Duration) {
        self.report_seq += 1;
        let seq = self.report_seq;
        self.broadcast(ShardCommand::ReportStats(seq));
        let mut answered = vec![false; self.shards.len()];
        let mut changed = Vec::new();
        let deadline = Instant::now() + wait;
        while answered.iter().any(|a| !a) {
            match self.events.recv_deadline(deadline) {
                Ok(ShardEvent::Report(report)) => {
                    if report.answer_to == seq {
                        if let Some(a) = answered.get_mut(report.shard) {
                            *a = true;
                        }
                    }
                    self.aggregate.add(*report, Instant::now());
                }
                // Outcomes keep flowing meanwhile; none may be lost.
                Ok(ShardEvent::Outcome { id, ok }) => {
                    changed.extend(self.members.record_outcome(id, ok, Instant::now()));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        for index in changed {
            self.publish(index);
        }
    }

    fn report(&self, shard: Option<usize>) -> Option<Report> {
        if shard.is_some_and(|s| s >= self.shards.len()) {
            return None;
        }
        let now = Instant::now();
        let agg = &self.aggregate;
        let latency = match shard {
            Some(s) => agg.shard_latency[s].summaries(now),
            None => agg.latency.summaries(now),
        };
        let backends = self
            .members
            .list
            .iter()
            .map(|m| BackendView {
                status: m.status(),
                counters: agg.backend_counters(&m.spec.name, shard),
                latency: match shard {
                    Some(_) => None,
                    None => Some(
                        agg.backend_latency
                            .get(&m.spec.name)
                            .map_or_else(Default::default, |l| l.summaries(now)),
                    ),
                },
            })
            .collect();
        Some(Report {
            uptime: now.saturating_duration_since(agg.started),
            io_driver: self.io_driver,
            shards: self.shards.len(),
            strategy: self.strategy,
            shard,
            window: agg.latency.window.length(),
            totals: agg.counters(shard),
            latency,
            backends,
        })
    }

    /// Tells every shard to stop and waits for them (grace period plus a margin).
    fn stop(&mut self, abort: bool) -> ShutdownReport {
        log_info!(
            "{}",
            if abort {
                "stopping now"
            } else {
                "shutting down gracefully"
            }
        );
        self.broadcast(if abort {
            ShardCommand::Abort
        } else {
            ShardCommand::Shutdown
        });
        let mut unfinished = 0;
        let mut stopped = vec![false; self.shards.len()];
        let deadline = Instant::now() + self.grace + Duration::from_secs(2);
        while stopped.iter().any(|s| !s) {
            select! {
                recv(self.events) -> event => match event {
                    Ok(ShardEvent::Stopped { shard, unfinished: n }) => {
                        if let Some(flag) = stopped.get_mut(shard) {
                            *flag = true;
                        }
                        unfinished += n;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
                recv(self.messages) -> message => {
                    if let Ok(ControlMessage::Abort) = message {
                        self.broadcast(ShardCommand::Abort);
                    }
                },
                default(deadline.saturating_duration_since(Instant::now())) => break,
            }
        }
        for (link, stopped) in self.shards.iter_mut().zip(&stopped) {
            match link.thread.take() {
                // A shard that reported is about to return: joining is quick.
                Some(thread) if *stopped => {
                    let _ = thread.join();
                }
                Some(_) => log_error!("a shard did not stop in time; leaving it"),
                None => {}
            }
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        if let Some(writer) = self.access_writer.take() {
            writer.stop();
        }
        if unfinished > 0 {
            log_warn!("{unfinished} connection(s) were cut at the end of the grace period");
        }
        log_info!("stopped");
        ShutdownReport {
            unfinished_connections: unfinished,
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment `install` returns (so a
/// signal sent while the server starts is not lost or fatal) and forwarded to a
/// server once it runs.
pub struct SignalForwarder {
    signals: signal_hook::iterator::Signals,
}

impl SignalForwarder {
    /// Installs the handlers. Call before starting the server.
    pub fn install() -> io::Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        Ok(SignalForwarder {
            signals: signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?,
        })
    }

    /// Forwards, on a thread of its own: SIGTERM and SIGINT start a graceful
    /// shutdown (a second one stops at once); SIGHUP re-reads `config_path` and
    /// applies its backend table.
    pub fn forward(self, handle: ServerHandle, config_path: Option<PathBuf>) -> io::Result<()> {
        use signal_hook::consts::SIGHUP;
        let mut signals = self.signals;
        std::thread::Builder::new()
            .name("ringlb-signals".into())
            .spawn(move || {
                let mut stopping = false;
                for signal in signals.forever() {
                    match signal {
                        SIGHUP => reload(&handle, config_path.as_deref()),
                        _ if stopping => handle.abort(),
                        _ => {
                            stopping = true;
                            handle.shutdown();
                        }
                    }
                }
            })?;
        Ok(())
    }
}

fn reload(handle: &ServerHandle, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        log_warn!("SIGHUP ignored: no configuration file to reload");
        return;
    };
    match crate::config::load(path) {
        Ok(config) => {
            log_info!("reloading backends from {}", path.display());
            handle.set_backends(config.backends);
        }
        Err(errors) => {
            log_error!("reload refused, keeping the running configuration:\n{errors}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
