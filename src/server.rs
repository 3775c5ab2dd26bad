//! `server`: starting and stopping the whole server.
//!
//! Owns start-up (validate, choose the io driver, bind every shard's listener, spawn
//! the shards, the admin listener and the control thread), the `Server` a caller
//! waits on or stops, and signal handling. Runs once, off the request path; every
//! later decision belongs to the control thread.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::admin;
use crate::config::Config;
use crate::control::breaker::BreakerSettings;
use crate::control::handle::{ServerHandle, ShutdownReport};
use crate::control::members::{BackendIds, Members};
use crate::control::{ControlThread, ShardLink};
use crate::listener::bind_reuseport;
use crate::observe::access_log;
use crate::observe::stats::Aggregate;
use crate::shard::{self, Driver, ShardError, ShardEvent, ShardSettings, ShardStart};
use crate::{log_error, log_info, log_warn};

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
    let bind_error = |address| move |source| StartError::Bind { address, source };
    let first = bind_reuseport(config.server.listen).map_err(bind_error(config.server.listen))?;
    let local_addr = first.local_addr().map_err(|source| StartError::Bind {
        address: config.server.listen,
        source,
    })?;
    let mut listeners = vec![first];
    for _ in 1..shard_count {
        listeners.push(bind_reuseport(local_addr).map_err(bind_error(local_addr))?);
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
