//! `shard::messages`: what the control thread and a shard tell each other.
//!
//! Owns the typed commands a shard receives and the compact events it sends, over
//! crossbeam channels. Plain data: no behaviour, no shard state.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::cluster::backend::{Availability, BackendId};
use crate::observe::stats::ShardReport;

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
