//! `control::handle`: the control thread's client API.
//!
//! Owns `ServerHandle`, the cheap cloneable handle through which the admin listener,
//! the signal thread and tests ask the control thread for figures and changes
//! (reloads, and the runtime API's backend changes), and the types those answers
//! come in. Every call is a message and a bounded wait: nothing here touches shard
//! state or blocks longer than its timeout.

use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};

use crate::config::{BackendConfig, Config, ConfigErrors};
use crate::control::breaker::BreakerState;
use crate::observe::stats::{BackendCounters, Counters, LatencySummary};

/// Messages to the control thread.
#[derive(Debug)]
pub(crate) enum ControlMessage {
    Shutdown,
    Abort,
    Reload {
        config: Box<Config>,
        reply: Sender<Result<ReloadOutcome, ReloadError>>,
    },
    ReloadFile {
        reply: Sender<Result<ReloadOutcome, ReloadError>>,
    },
    Stats(Sender<Counters>),
    Report {
        shard: Option<usize>,
        wait: Duration,
        reply: Sender<Option<Report>>,
    },
    Backends(Sender<Vec<BackendStatus>>),
    Clusters(Sender<Vec<ClusterStatus>>),
    SetAdminState {
        name: String,
        state: AdminState,
        reply: Sender<Option<BackendStatus>>,
    },
    AddBackend {
        cluster: String,
        backend: BackendConfig,
        reply: Sender<Result<BackendStatus, ApiError>>,
    },
    RemoveBackend {
        name: String,
        reply: Sender<Result<BackendStatus, ApiError>>,
    },
    UpdateBackend {
        name: String,
        weight: Option<u32>,
        state: Option<AdminState>,
        reply: Sender<Result<BackendStatus, ApiError>>,
    },
}

/// What an operator asked for a backend through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// In rotation (when healthy and its breaker allows).
    Enabled,
    /// Only clients stuck to it by a sticky cookie send it new requests; requests
    /// in flight finish. Kept until `enable` (or a reload that drops it).
    Draining,
    /// Nothing new at all; requests in flight finish. Kept until `enable`.
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

    /// Parses the admin API's spelling (`drain` is accepted for `draining`).
    pub fn parse(s: &str) -> Option<AdminState> {
        match s {
            "enabled" | "enable" => Some(AdminState::Enabled),
            "draining" | "drain" => Some(AdminState::Draining),
            "disabled" | "disable" => Some(AdminState::Disabled),
            _ => None,
        }
    }
}

/// One backend as the control thread sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    /// The configured name (unique across clusters).
    pub name: String,
    /// The cluster it belongs to.
    pub cluster: String,
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

/// One cluster as the control thread sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Its name.
    pub name: String,
    /// Its balancing strategy.
    pub strategy: &'static str,
    /// Its backends, in order.
    pub backends: Vec<BackendStatus>,
}

/// Why a runtime change through the admin API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No cluster has that name (404).
    #[error("no cluster named {0:?}")]
    NoCluster(String),
    /// No backend has that name (404).
    #[error("no backend named {0:?}")]
    NoBackend(String),
    /// The change contradicts what exists, like a name already taken (409).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The control thread did not answer in time (503).
    #[error("the control thread did not answer")]
    Unavailable,
}

impl ApiError {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NoCluster(_) | ApiError::NoBackend(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::Invalid(_) => 400,
            ApiError::Unavailable => 503,
        }
    }
}

/// What a reload applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Settings that changed but only take effect after a restart
    /// (`server.shards`, `server.io`); the running values stay.
    pub restart_needed: Vec<String>,
    /// Listeners added (and bound on every shard), with the address bound.
    pub listeners_added: Vec<(String, SocketAddr)>,
    /// Listeners removed (their connections finish within the grace period).
    pub listeners_removed: Vec<(String, SocketAddr)>,
    /// The new configuration's warnings.
    pub warnings: Vec<String>,
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The configuration breaks a rule (every broken rule is listed).
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// A new listener's address could not be bound.
    #[error("listener {listener}: cannot listen on {address}: {error}")]
    Bind {
        listener: String,
        address: SocketAddr,
        error: String,
    },
    /// There is no file to re-read (the server was started from a configuration
    /// built in code).
    #[error("no configuration file to reload")]
    NoFile,
    /// The control thread did not answer in time.
    #[error("the control thread did not answer")]
    Unavailable,
}

/// A cheap, cloneable handle that talks to the control thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    pub(crate) tx: Sender<ControlMessage>,
}

/// How long a change waits for the control thread.
const CHANGE_WAIT: Duration = Duration::from_secs(5);

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

    /// Applies a whole new configuration: listeners, routes, clusters, settings.
    /// An invalid one (or one whose new listener cannot be bound) is refused and
    /// the running configuration stays. Returns once every shard has been sent it.
    pub fn reload(&self, config: Config) -> Result<ReloadOutcome, ReloadError> {
        let config = Box::new(config);
        self.ask(
            |reply| ControlMessage::Reload { config, reply },
            CHANGE_WAIT,
        )
        .unwrap_or(Err(ReloadError::Unavailable))
    }

    /// Re-reads the configuration file the server started from and applies it, as
    /// `reload` does.
    pub fn reload_file(&self) -> Result<ReloadOutcome, ReloadError> {
        self.ask(|reply| ControlMessage::ReloadFile { reply }, CHANGE_WAIT)
            .unwrap_or(Err(ReloadError::Unavailable))
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
            CHANGE_WAIT,
        )?
    }

    /// Adds a backend to a cluster until the next reload.
    pub fn add_backend(
        &self,
        cluster: &str,
        backend: BackendConfig,
    ) -> Result<BackendStatus, ApiError> {
        let cluster = cluster.to_string();
        self.ask(
            |reply| ControlMessage::AddBackend {
                cluster,
                backend,
                reply,
            },
            CHANGE_WAIT,
        )
        .unwrap_or(Err(ApiError::Unavailable))
    }

    /// Removes a backend until the next reload: it takes nothing new, and what it
    /// has in flight finishes.
    pub fn remove_backend(&self, name: &str) -> Result<BackendStatus, ApiError> {
        let name = name.to_string();
        self.ask(
            |reply| ControlMessage::RemoveBackend { name, reply },
            CHANGE_WAIT,
        )
        .unwrap_or(Err(ApiError::Unavailable))
    }

    /// Sets a backend's weight and/or operator state until the next reload.
    pub fn update_backend(
        &self,
        name: &str,
        weight: Option<u32>,
        state: Option<AdminState>,
    ) -> Result<BackendStatus, ApiError> {
        let name = name.to_string();
        self.ask(
            |reply| ControlMessage::UpdateBackend {
                name,
                weight,
                state,
                reply,
            },
            CHANGE_WAIT,
        )
        .unwrap_or(Err(ApiError::Unavailable))
    }

    /// Every backend's state as the control thread sees it.
    pub fn backends(&self) -> Option<Vec<BackendStatus>> {
        self.ask(ControlMessage::Backends, Duration::from_secs(2))
    }

    /// Every cluster with its backends.
    pub fn clusters(&self) -> Option<Vec<ClusterStatus>> {
        self.ask(ControlMessage::Clusters, Duration::from_secs(2))
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
    /// The first cluster's balancing strategy (each cluster's is in `clusters`).
    pub strategy: &'static str,
    /// The shard this report is about, or `None` for all of them.
    pub shard: Option<usize>,
    /// The length of the sliding window.
    pub window: Duration,
    /// Counters (one shard's, or summed over shards).
    pub totals: Counters,
    /// Latency over the window, and since start.
    pub latency: (LatencySummary, LatencySummary),
    /// Per listener.
    pub listeners: Vec<ListenerView>,
    /// Per route.
    pub routes: Vec<RouteView>,
    /// Per cluster.
    pub clusters: Vec<ClusterView>,
    /// Per backend.
    pub backends: Vec<BackendView>,
    /// Every TLS listener's certificates.
    pub certificates: Vec<CertificateView>,
}

/// One certificate a TLS listener serves, in a `Report`.
#[derive(Debug, Clone)]
pub struct CertificateView {
    /// The listener's name.
    pub listener: String,
    /// The chain's file.
    pub file: String,
    /// Its DNS names.
    pub names: Vec<String>,
    /// When it expires, in seconds since the Unix epoch.
    pub not_after: i64,
    /// Whole days until then (negative once expired).
    pub days_left: i64,
}

/// One listener in a `Report`.
#[derive(Debug, Clone)]
pub struct ListenerView {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its protocol.
    pub protocol: &'static str,
}

/// One route in a `Report`.
#[derive(Debug, Clone)]
pub struct RouteView {
    /// Its name.
    pub name: String,
    /// Its listener.
    pub listener: String,
    /// Its cluster.
    pub cluster: String,
    /// Requests it matched.
    pub requests: u64,
}

/// One cluster in a `Report`.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Its name.
    pub name: String,
    /// Its balancing strategy.
    pub strategy: &'static str,
    /// Requests routed to it.
    pub requests: u64,
    /// Of those, requests that failed.
    pub failures: u64,
    /// Latency over the window and since start (over all shards only).
    pub latency: Option<(LatencySummary, LatencySummary)>,
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
