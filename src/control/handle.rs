//! `control::handle`: the control thread's client API.
//!
//! Owns `ServerHandle`, the cheap cloneable handle through which the admin listener,
//! the signal thread and tests ask the control thread for figures and changes, and
//! the types those answers come in. Every call is a message and a bounded wait:
//! nothing here touches shard state or blocks longer than its timeout.

use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};

use crate::config::BackendConfig;
use crate::control::breaker::BreakerState;
use crate::observe::stats::{BackendCounters, Counters, LatencySummary};

/// Messages to the control thread.
#[derive(Debug)]
pub(crate) enum ControlMessage {
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
    pub(crate) tx: Sender<ControlMessage>,
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
