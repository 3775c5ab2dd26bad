//! `server`: starting and stopping the whole server.
//!
//! Owns start-up (validate, choose the io driver, bind every listener once per
//! shard, spawn the shards, the admin listener and the control thread), the
//! `Server` a caller waits on or stops, and signal handling. Runs once, off the
//! request path; every later decision belongs to the control thread.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::admin::{self, AdminAccess};
use crate::config::Config;
use crate::control::handle::{ReloadError, ServerHandle, ShutdownReport};
use crate::control::members::Membership;
use crate::control::{shard_plan, ControlStart, ControlThread, ShardLink};
use crate::listener::bind_group;
use crate::observe::access_log;
use crate::shard::{self, Driver, ShardError, ShardEvent, ShardStart};
use crate::tls::material::{self, TlsMaterial};
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
    /// Every listener's name and the address it was bound to (the real port
    /// when 0 was asked).
    listeners: Vec<(String, SocketAddr)>,
    admin_addr: SocketAddr,
    driver: Driver,
    shards: usize,
    handle: ServerHandle,
    control: JoinHandle<ShutdownReport>,
}

impl Server {
    /// The first listener's address (the short form's only one).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0].1
    }

    /// The address listener `name` was bound to at start.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, address)| *address)
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

    /// A handle for shutdown, reloads and backend changes.
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

/// Starts shards, the admin listener and the control thread from a configuration
/// built in code (`reload_file` has nothing to re-read). Returns once every shard
/// accepts connections.
pub fn start(config: Config) -> Result<Server, StartError> {
    start_with_file(config, None)
}

/// Starts the server from `config`, read from `path` (which `SIGHUP` and
/// `POST /reload` re-read). Returns once every shard accepts connections.
pub fn start_with_file(mut config: Config, path: Option<PathBuf>) -> Result<Server, StartError> {
    config.validate()?;
    let origin = path
        .as_ref()
        .map_or_else(|| "configuration".to_string(), |p| p.display().to_string());
    let tls = TlsMaterial::load(&config, &origin, material::unix_now())?;
    for warning in &tls.warnings {
        log_warn!("{warning}");
    }
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

    // Bind every listener once per shard here, so the ports are known (even when
    // 0 was asked) and a bind error stops start-up with a clear message.
    let mut sockets: Vec<Vec<(String, TcpListener)>> =
        (0..shard_count).map(|_| Vec::new()).collect();
    for listener in &mut config.listeners {
        let group =
            bind_group(listener.address, shard_count).map_err(|source| StartError::Bind {
                address: listener.address,
                source,
            })?;
        listener.address = group.address;
        for (shard, socket) in sockets.iter_mut().zip(group.sockets) {
            shard.push((listener.name.clone(), socket));
        }
    }
    let admin_listener =
        TcpListener::bind(config.admin.listen).map_err(|source| StartError::Bind {
            address: config.admin.listen,
            source,
        })?;

    let (health_tx, health_rx) = bounded(1024);
    let mut members = Membership::new(health_tx);
    members.apply(&config, &tls, Instant::now());
    let access_log = if config.logging.access_log {
        Some(access_log::Writer::spawn().map_err(StartError::Spawn)?)
    } else {
        None
    };
    let plan = Arc::new(shard_plan(
        &config,
        shard_count,
        &members,
        access_log.as_ref().map(|(tx, _)| tx),
        &tls,
    ));
    let (event_tx, event_rx) = bounded::<ShardEvent>(shard_count * 64 + 64);
    let mut shards = Vec::with_capacity(shard_count);
    for (index, sockets) in sockets.into_iter().enumerate() {
        let (command_tx, command_rx) = bounded(COMMAND_QUEUE);
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let thread = shard::spawn(ShardStart {
            index,
            core,
            driver,
            plan: Arc::clone(&plan),
            sockets,
            commands: command_rx,
            events: event_tx.clone(),
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
    let admin_access = Arc::new(Mutex::new(AdminAccess {
        token: config.admin.token.clone(),
        hosts: config.admin.hosts.clone(),
        profiling: config.admin.profiling,
    }));
    let admin_server = admin::spawn(admin_listener, handle.clone(), Arc::clone(&admin_access))
        .map_err(StartError::Spawn)?;
    let admin_addr = admin_server.local_addr();
    let listeners: Vec<(String, SocketAddr)> = config
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.address))
        .collect();
    let described: Vec<String> = listeners
        .iter()
        .map(|(name, address)| format!("{address} ({name})"))
        .collect();
    log_info!(
        "ringlb {} listening on {} with {shard_count} shard(s) ({}), admin on {admin_addr}, {} route(s), {} cluster(s), {} backend(s)",
        env!("CARGO_PKG_VERSION"),
        described.join(", "),
        driver.as_str(),
        config.routes.len(),
        config.clusters.len(),
        config.clusters.iter().map(|c| c.backends.len()).sum::<usize>(),
    );
    for warning in &config.warnings {
        log_warn!("{warning}");
    }

    let control = ControlThread::new(ControlStart {
        shards,
        events: event_rx,
        messages: control_rx,
        config,
        config_path: path,
        tls,
        members,
        health: health_rx,
        access_log,
        io_driver: driver.as_str(),
        admin: admin_server,
        admin_access,
        handle: handle.clone(),
    });
    let thread = std::thread::Builder::new()
        .name("ringlb-control".into())
        .spawn(move || control.run())
        .map_err(StartError::Spawn)?;
    Ok(Server {
        listeners,
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
    /// shutdown (a second one stops at once); SIGHUP re-reads the configuration
    /// file and applies it.
    pub fn forward(self, handle: ServerHandle) -> io::Result<()> {
        use signal_hook::consts::SIGHUP;
        let mut signals = self.signals;
        std::thread::Builder::new()
            .name("ringlb-signals".into())
            .spawn(move || {
                let mut stopping = false;
                for signal in signals.forever() {
                    match signal {
                        SIGHUP => {
                            log_info!("SIGHUP: reloading the configuration file");
                            crate::notify::reloading();
                            // The control thread logs what it applied or refused.
                            if let Err(ReloadError::Unavailable) = handle.reload_file() {
                                log_error!("SIGHUP: the control thread did not answer");
                            }
                            crate::notify::ready();
                        }
                        _ if stopping => handle.abort(),
                        _ => {
                            stopping = true;
                            crate::notify::stopping();
                            handle.shutdown();
                        }
                    }
                }
            })?;
        Ok(())
    }
}
