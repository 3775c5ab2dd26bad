//! `control`: the control thread.
//!
//! Owns every global decision: the running configuration and its reloads (diffed
//! into one plan for every shard, new listeners bound first), every cluster's
//! backends with their health and breakers ([`members`]), the runtime API's
//! changes, merged statistics and shutdown. Talks to shards only through their
//! crossbeam channels: typed commands out, compact events in. Its client API is
//! [`handle`]. Never on the request path; never blocks a shard (commands go through
//! bounded channels with room).

pub mod breaker;
pub mod grpc_probe;
pub mod handle;
pub mod health;
pub mod members;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::admin::{self, AdminAccess, AdminServer};
use crate::cluster::backend::Availability;
use crate::config::{self, BackendConfig, Config, ListenerConfig};
use crate::control::handle::{
    AdminState, ApiError, BackendStatus, BackendView, CertificateView, ClusterView, ControlMessage,
    ListenerView, ReloadError, ReloadOutcome, Report, RouteView, ServerHandle, ShutdownReport,
};
use crate::control::health::CheckResult;
use crate::control::members::{At, Membership};
use crate::listener::bind_group;
use crate::observe::access_log;
use crate::observe::logging;
use crate::observe::stats::Aggregate;
use crate::shard::{ClusterPlan, ListenerPlan, ShardCommand, ShardEvent, ShardPlan, ShardSettings};
use crate::tls::material::{self, TlsMaterial};
use crate::{log_error, log_info, log_warn};

/// Sends a command, waiting a little for room: a shard empties its queue every
/// 2 ms, so a full queue means the shard is stuck, and the command is dropped with
/// an error rather than blocking the control thread.
fn send_command(link: &ShardLink, command: ShardCommand) -> bool {
    let sent = link
        .commands
        .send_timeout(command, Duration::from_millis(500))
        .is_ok();
    if !sent {
        log_error!("a shard's command queue stayed full; a command was dropped");
    }
    sent
}

/// The control thread's end of one shard.
pub(crate) struct ShardLink {
    pub(crate) commands: Sender<ShardCommand>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

/// Sets the process-wide log level and format from the configuration.
pub fn apply_logging(config: &config::LoggingConfig) {
    let level = match config.level {
        config::LogLevel::Error => logging::Level::Error,
        config::LogLevel::Warn => logging::Level::Warn,
        config::LogLevel::Info => logging::Level::Info,
        config::LogLevel::Debug => logging::Level::Debug,
    };
    let format = match config.format {
        config::LogFormat::Text => logging::Format::Text,
        config::LogFormat::Json => logging::Format::Json,
    };
    logging::init(level, format);
}

/// The plan every shard serves, from a configuration and the members now.
pub(crate) fn shard_plan(
    config: &Config,
    shards: usize,
    members: &Membership,
    access_log: Option<&Sender<Vec<u8>>>,
    tls: &TlsMaterial,
) -> ShardPlan {
    ShardPlan {
        settings: ShardSettings::from_config(config, shards),
        clusters: members
            .plans()
            .into_iter()
            .map(|c| ClusterPlan {
                tls: tls.cluster(&c.name).cloned(),
                ..c
            })
            .collect(),
        listeners: config
            .listeners
            .iter()
            .map(|l| ListenerPlan {
                name: l.name.clone(),
                address: l.address,
                protocol: l.protocol,
                cluster: l.cluster.clone(),
                proxy_trusted: l.accept_proxy.then(|| l.proxy_trusted.clone()),
                tls: tls.listener(&l.name).cloned(),
                routes: config
                    .routes
                    .iter()
                    .filter(|r| r.listener == l.name)
                    .cloned()
                    .collect(),
            })
            .collect(),
        access_log: access_log.cloned(),
    }
}

/// Whether a configured listener is the one running: the same name, and the same
/// address (a configured port 0 keeps whatever port was bound).
fn same_listener(configured: &ListenerConfig, running: &ListenerConfig) -> bool {
    configured.name == running.name
        && configured.protocol == running.protocol
        && (configured.address == running.address
            || (configured.address.port() == 0 && configured.address.ip() == running.address.ip()))
}

/// What the control thread starts with.
pub(crate) struct ControlStart {
    pub(crate) shards: Vec<ShardLink>,
    pub(crate) events: Receiver<ShardEvent>,
    pub(crate) messages: Receiver<ControlMessage>,
    pub(crate) config: Config,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) tls: TlsMaterial,
    pub(crate) members: Membership,
    pub(crate) health: Receiver<CheckResult>,
    pub(crate) access_log: Option<(Sender<Vec<u8>>, access_log::Writer)>,
    pub(crate) io_driver: &'static str,
    pub(crate) admin: AdminServer,
    pub(crate) admin_access: Arc<std::sync::Mutex<AdminAccess>>,
    pub(crate) handle: ServerHandle,
}

/// How often certificates are looked at for expiry.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(3600);

pub(crate) struct ControlThread {
    shards: Vec<ShardLink>,
    events: Receiver<ShardEvent>,
    messages: Receiver<ControlMessage>,
    /// The running configuration: the file's, with the addresses listeners were
    /// bound to, and the restart-only settings it started with.
    config: Config,
    /// The file `reload_file` re-reads, if there is one.
    config_path: Option<PathBuf>,
    /// Every TLS listener's certificates, read again by each reload.
    tls: TlsMaterial,
    /// What was last said about certificates close to expiring.
    expiry: material::ExpiryWatch,
    /// When certificates are next looked at for expiry.
    next_expiry_check: Instant,
    members: Membership,
    health: Receiver<CheckResult>,
    /// The shard that gets the next half-open probes (rotates).
    next_probe_shard: usize,
    /// Traffic figures merged from shard reports.
    aggregate: Aggregate,
    /// The access log writer, started when a configuration first asks for it and
    /// stopped after the shards.
    access_log: Option<(Sender<Vec<u8>>, access_log::Writer)>,
    /// Number of the last on-demand report request.
    report_seq: u64,
    /// For reports.
    io_driver: &'static str,
    admin: Option<AdminServer>,
    /// What the admin listener checks, updated by reloads.
    admin_access: Arc<std::sync::Mutex<AdminAccess>>,
    /// For an admin listener a reload moves to another address.
    handle: ServerHandle,
}

impl ControlThread {
    pub(crate) fn new(start: ControlStart) -> Self {
        let shard_count = start.shards.len();
        // What loading said already (start's warnings) is not said again.
        let mut expiry = material::ExpiryWatch::default();
        expiry.due(&start.tls, material::unix_now());
        ControlThread {
            shards: start.shards,
            events: start.events,
            messages: start.messages,
            config: start.config,
            config_path: start.config_path,
            tls: start.tls,
            expiry,
            next_expiry_check: Instant::now() + EXPIRY_CHECK_EVERY,
            members: start.members,
            health: start.health,
            next_probe_shard: 0,
            aggregate: Aggregate::new(shard_count, Instant::now()),
            access_log: start.access_log,
            report_seq: 0,
            io_driver: start.io_driver,
            admin: Some(start.admin),
            admin_access: start.admin_access,
            handle: start.handle,
        }
    }

    pub(crate) fn run(mut self) -> ShutdownReport {
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
                    Ok(message) => self.answer(message),
                },
                recv(self.health) -> result => {
                    if let Ok(result) = result {
                        if let Some(at) = self.members.record_check(result, Instant::now()) {
                            self.publish(at);
                        }
                    }
                },
                recv(self.events) -> event => match event {
                    Ok(ShardEvent::Outcome { id, ok }) => {
                        if let Some(at) = self.members.record_outcome(id, ok, Instant::now()) {
                            self.publish(at);
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
            for at in self.members.poll_breakers(Instant::now()) {
                self.publish(at);
            }
            self.publish_weights();
            self.check_expiry(Instant::now());
        }
    }

    /// Every hour, warns about certificates close to expiring (once per day of
    /// difference, see `ExpiryWatch`).
    fn check_expiry(&mut self, now: Instant) {
        if now < self.next_expiry_check {
            return;
        }
        self.next_expiry_check = now + EXPIRY_CHECK_EVERY;
        for line in self.expiry.due(&self.tls, material::unix_now()) {
            log_warn!("{line}");
        }
    }

    /// Answers every message but shutdown and abort.
    fn answer(&mut self, message: ControlMessage) {
        match message {
            ControlMessage::Shutdown | ControlMessage::Abort => {}
            ControlMessage::Reload { config, reply } => {
                let _ = reply.send(self.reload(*config));
            }
            ControlMessage::ReloadFile { reply } => {
                let result = match &self.config_path {
                    Some(path) => config::load(path)
                        .map_err(ReloadError::Invalid)
                        .and_then(|config| self.reload(config)),
                    None => Err(ReloadError::NoFile),
                };
                if let Err(e) = &result {
                    log_error!("reload refused, keeping the running configuration:\n{e}");
                }
                let _ = reply.send(result);
            }
            ControlMessage::Stats(reply) => {
                self.refresh(Duration::from_secs(1));
                let _ = reply.send(self.aggregate.counters(None));
            }
            ControlMessage::Report { shard, wait, reply } => {
                self.refresh(wait);
                let _ = reply.send(self.report(shard));
            }
            ControlMessage::Backends(reply) => {
                let _ = reply.send(self.members.statuses());
            }
            ControlMessage::Clusters(reply) => {
                let _ = reply.send(self.members.clusters());
            }
            ControlMessage::SetAdminState { name, state, reply } => {
                let at = self.members.named(&name);
                if let Some(at) = at {
                    self.members.set_admin_state(at, state);
                    self.publish(at);
                }
                let _ = reply.send(at.map(|at| self.members.status(at)));
            }
            ControlMessage::AddBackend {
                cluster,
                backend,
                reply,
            } => {
                let _ = reply.send(self.add_backend(&cluster, backend));
            }
            ControlMessage::RemoveBackend { name, reply } => {
                let result = self.members.remove_backend(&name);
                if result.is_ok() {
                    self.configure_shards(Vec::new());
                }
                let _ = reply.send(result);
            }
            ControlMessage::UpdateBackend {
                name,
                weight,
                state,
                reply,
            } => {
                let _ = reply.send(self.update_backend(&name, weight, state));
            }
        }
    }

    fn add_backend(
        &mut self,
        cluster: &str,
        backend: BackendConfig,
    ) -> Result<BackendStatus, ApiError> {
        let at = self.members.add_backend(cluster, backend, Instant::now())?;
        self.configure_shards(Vec::new());
        Ok(self.members.status(at))
    }

    fn update_backend(
        &mut self,
        name: &str,
        weight: Option<u32>,
        state: Option<AdminState>,
    ) -> Result<BackendStatus, ApiError> {
        let at = self
            .members
            .named(name)
            .ok_or_else(|| ApiError::NoBackend(name.to_string()))?;
        if let Some(weight) = weight {
            self.members.set_weight(at, weight)?;
        }
        if let Some(state) = state {
            self.members.set_admin_state(at, state);
        }
        if weight.is_some() {
            // Strategies build their tables from weights: shards rebuild.
            self.configure_shards(Vec::new());
        } else {
            self.publish(at);
        }
        Ok(self.members.status(at))
    }

    /// What errors about the configuration name as its origin.
    fn origin(&self) -> String {
        self.config_path
            .as_ref()
            .map_or_else(|| "configuration".to_string(), |p| p.display().to_string())
    }

    /// Applies a new configuration, or refuses it whole. New listeners are bound
    /// on every shard first, so that a bind error changes nothing.
    fn reload(&mut self, mut config: Config) -> Result<ReloadOutcome, ReloadError> {
        config.validate().map_err(ReloadError::Invalid)?;
        // Certificates are read again whether or not the file changed, so new
        // ones are picked up by a reload alone; a bad one refuses the reload.
        let origin = self.origin();
        let mut tls = TlsMaterial::load(&config, &origin, material::unix_now())
            .map_err(ReloadError::Invalid)?;
        tls.keep_tickets(&self.tls);
        let mut outcome = ReloadOutcome::default();
        outcome
            .warnings
            .extend(tls.warnings.iter().map(ToString::to_string));
        let running = &self.config;
        for (key, changed) in [
            (
                "server.shards",
                config.server.shards != running.server.shards,
            ),
            ("server.io", config.server.io != running.server.io),
        ] {
            if changed {
                outcome.restart_needed.push(key.to_string());
            }
        }
        config.server.shards = running.server.shards;
        config.server.io = running.server.io;

        // A moved admin listener is bound first too, so that a bind error changes
        // nothing.
        let admin_listener = if config.admin.listen == running.admin.listen {
            None
        } else {
            Some(
                TcpListener::bind(config.admin.listen).map_err(|error| ReloadError::Bind {
                    listener: "admin".into(),
                    address: config.admin.listen,
                    error: error.to_string(),
                })?,
            )
        };
        let running_admin = running.admin.listen;
        let shard_count = self.shards.len();
        let mut sockets: Vec<Vec<(String, TcpListener)>> =
            (0..shard_count).map(|_| Vec::new()).collect();
        for listener in &mut config.listeners {
            if let Some(same) = running
                .listeners
                .iter()
                .find(|r| same_listener(listener, r))
            {
                listener.address = same.address;
                continue;
            }
            let group =
                bind_group(listener.address, shard_count).map_err(|error| ReloadError::Bind {
                    listener: listener.name.clone(),
                    address: listener.address,
                    error: error.to_string(),
                })?;
            listener.address = group.address;
            for (shard, socket) in sockets.iter_mut().zip(group.sockets) {
                shard.push((listener.name.clone(), socket));
            }
            outcome
                .listeners_added
                .push((listener.name.clone(), listener.address));
        }
        for old in &running.listeners {
            if !config.listeners.iter().any(|l| same_listener(l, old)) {
                outcome
                    .listeners_removed
                    .push((old.name.clone(), old.address));
            }
        }

        apply_logging(&config.logging);
        if config.server.transparent_huge_pages != running.server.transparent_huge_pages {
            let applied = if config.server.transparent_huge_pages {
                crate::sys::enable_transparent_huge_pages()
            } else {
                crate::sys::disable_transparent_huge_pages()
            };
            if let Err(e) = applied {
                log_warn!("could not change server.transparent_huge_pages: {e}");
            }
        }
        if config.logging.access_log && self.access_log.is_none() {
            match access_log::Writer::spawn() {
                Ok(writer) => self.access_log = Some(writer),
                Err(e) => log_error!("cannot start the access log writer: {e}"),
            }
        }
        if let Ok(mut access) = self.admin_access.lock() {
            access.token = config.admin.token.clone();
            access.hosts = config.admin.hosts.clone();
            access.profiling = config.admin.profiling;
        }
        if let Some(listener) = admin_listener {
            match admin::spawn(
                listener,
                self.handle.clone(),
                Arc::clone(&self.admin_access),
            ) {
                Ok(server) => {
                    log_info!("admin listener moved to {}", server.local_addr());
                    if let Some(old) = self.admin.replace(server) {
                        // Not here: the old one may be waiting for this very reload
                        // to answer its `POST /reload`.
                        std::thread::spawn(move || old.stop());
                    }
                }
                Err(e) => {
                    log_error!("cannot start the admin listener: {e}; it stays where it was");
                    outcome
                        .warnings
                        .push(format!("admin.listen: the admin listener could not start there ({e}); it stays on {running_admin}"));
                    config.admin.listen = running_admin;
                }
            }
        }
        self.members.apply(&config, &tls, Instant::now());
        outcome
            .warnings
            .extend(config.warnings.iter().map(ToString::to_string));
        self.config = config;
        self.tls = tls;
        // The reload's warnings said it already.
        self.expiry.due(&self.tls, material::unix_now());
        let missed = self.configure_shards(sockets);
        if missed > 0 {
            outcome.warnings.push(format!(
                "{missed} shard(s) did not take the new configuration (their command queue stayed full)"
            ));
        }

        log_info!(
            "configuration reloaded: {} listener(s), {} route(s), {} cluster(s)",
            self.config.listeners.len(),
            self.config.routes.len(),
            self.config.clusters.len()
        );
        for (name, address) in &outcome.listeners_added {
            log_info!("listener {name} on {address} added");
        }
        for w in &outcome.warnings {
            log_warn!("{w}");
        }
        for key in &outcome.restart_needed {
            log_warn!("{key} changed in the file but needs a restart; the running value stays");
        }
        Ok(outcome)
    }

    /// Sends every shard the current plan (with its sockets for new listeners),
    /// then hands out half-open breakers' probes again: a plan's availability keeps
    /// them out everywhere. Returns how many shards could not be sent it.
    fn configure_shards(&mut self, sockets: Vec<Vec<(String, TcpListener)>>) -> usize {
        let writer = self
            .access_log
            .as_ref()
            .filter(|_| self.config.logging.access_log)
            .map(|(tx, _)| tx);
        let plan = Arc::new(shard_plan(
            &self.config,
            self.shards.len(),
            &self.members,
            writer,
            &self.tls,
        ));
        let mut sockets = sockets.into_iter();
        let mut missed = 0;
        for link in &self.shards {
            let command = ShardCommand::Configure {
                plan: Arc::clone(&plan),
                sockets: sockets.next().unwrap_or_default(),
            };
            if !send_command(link, command) {
                missed += 1;
            }
        }
        for at in self.members.all() {
            if self.members.member(at).probing() {
                self.publish(at);
            }
        }
        missed
    }

    /// Sends every backend whose effective weight changed (slow start) to shards.
    fn publish_weights(&mut self) {
        for (id, weight) in self.members.update_weights(Instant::now()) {
            self.broadcast(|| ShardCommand::SetWeight { id, weight });
        }
    }

    /// Tells every shard what it may do with member `at` now. A half-open
    /// breaker's probes go to one shard (rotating); the others keep it out.
    fn publish(&mut self, at: At) {
        // A backend coming back under slow start gets its low weight first.
        self.publish_weights();
        let member = self.members.member(at);
        let availability = member.availability();
        let id = member.spec.id;
        let probing = member.probing();
        let probes = self.members.clusters[at.0].breaker.half_open_probes;
        let probe_shard = self.next_probe_shard % self.shards.len().max(1);
        if probing {
            self.next_probe_shard += 1;
        }
        for (i, link) in self.shards.iter().enumerate() {
            let availability = if probing && i == probe_shard {
                Availability::Probing(probes)
            } else {
                availability
            };
            send_command(link, ShardCommand::SetAvailability { id, availability });
        }
    }

    fn broadcast(&self, command: impl Fn() -> ShardCommand) {
        for link in &self.shards {
            send_command(link, command());
        }
    }

    /// Asks every shard for a report and merges the answers, waiting at most `wait`.
    fn refresh(&mut self, wait: Duration) {
        self.report_seq += 1;
        let seq = self.report_seq;
        self.broadcast(|| ShardCommand::ReportStats(seq));
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
        for at in changed {
            self.publish(at);
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
        let overall = |latency: Option<&crate::observe::stats::Latency>| match shard {
            Some(_) => None,
            None => Some(latency.map_or_else(Default::default, |l| l.summaries(now))),
        };
        let backends = self
            .members
            .statuses()
            .into_iter()
            .map(|status| BackendView {
                counters: agg.backend_counters(&status.name, shard),
                latency: overall(agg.backend_latency.get(&status.name)),
                status,
            })
            .collect();
        let clusters = self
            .members
            .clusters
            .iter()
            .map(|c| {
                let (requests, failures) = agg.cluster_counters(&c.name, shard);
                ClusterView {
                    name: c.name.clone(),
                    strategy: c.settings.balancer.strategy.as_str(),
                    requests,
                    failures,
                    latency: overall(agg.cluster_latency.get(&c.name)),
                }
            })
            .collect();
        let routes = self
            .config
            .routes
            .iter()
            .map(|r| RouteView {
                name: r.name.clone(),
                listener: r.listener.clone(),
                cluster: r.cluster.clone(),
                requests: agg.route_requests(&r.name, shard),
            })
            .collect();
        let listeners = self
            .config
            .listeners
            .iter()
            .map(|l| ListenerView {
                name: l.name.clone(),
                address: l.address,
                protocol: l.protocol.as_str(),
            })
            .collect();
        let unix_now = material::unix_now();
        let certificates = self
            .tls
            .listeners
            .iter()
            .flat_map(|l| {
                l.store.certificates().iter().map(|c| CertificateView {
                    listener: l.listener.clone(),
                    file: c.cert_path.display().to_string(),
                    names: c.names.clone(),
                    not_after: c.not_after,
                    days_left: c.days_left(unix_now),
                })
            })
            .collect();
        Some(Report {
            uptime: now.saturating_duration_since(agg.started),
            io_driver: self.io_driver,
            shards: self.shards.len(),
            strategy: self
                .members
                .clusters
                .first()
                .map_or("round-robin", |c| c.settings.balancer.strategy.as_str()),
            shard,
            window: agg.latency.window.length(),
            totals: agg.counters(shard),
            latency,
            listeners,
            routes,
            clusters,
            backends,
            certificates,
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
        self.broadcast(|| {
            if abort {
                ShardCommand::Abort
            } else {
                ShardCommand::Shutdown
            }
        });
        let mut unfinished = 0;
        let mut stopped = vec![false; self.shards.len()];
        let deadline =
            Instant::now() + self.config.timeouts.shutdown_grace + Duration::from_secs(2);
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
                        self.broadcast(|| ShardCommand::Abort);
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
        if let Some((tx, writer)) = self.access_log.take() {
            drop(tx);
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
