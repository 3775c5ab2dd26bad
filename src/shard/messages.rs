//! `shard::messages`: what the control thread and a shard tell each other.
//!
//! Owns the typed commands a shard receives (a whole configuration to apply, or a
//! change to one backend) and the compact events it sends, over crossbeam
//! channels. Plain data: no behaviour, no shard state.

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::cluster::backend::{Availability, BackendId};
use crate::cluster::{BackendSpec, ClusterSettings};
use crate::config::{Cidr, ListenerProtocol, RouteConfig};
use crate::observe::stats::ShardReport;
use crate::shard::ShardSettings;
use crate::tls::material::{ClusterMaterial, ListenerMaterial};

/// Everything a shard serves: the same plan goes to every shard.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    /// Settings every connection shares.
    pub settings: ShardSettings,
    /// The clusters, in configuration order.
    pub clusters: Vec<ClusterPlan>,
    /// The listeners, in configuration order.
    pub listeners: Vec<ListenerPlan>,
    /// The access log writer, when `logging.access_log` is on.
    pub access_log: Option<Sender<Vec<u8>>>,
}

/// One cluster in a plan.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub settings: ClusterSettings,
    /// Its backends, with the availability the control thread decided.
    pub backends: Vec<BackendSpec>,
    /// Its TLS to backends, when it speaks TLS to them (loaded at start and on
    /// every reload, like a listener's).
    pub tls: Option<Arc<ClusterMaterial>>,
}

/// One listener in a plan.
#[derive(Debug, Clone)]
pub struct ListenerPlan {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// What is spoken on it.
    pub protocol: ListenerProtocol,
    /// Its routes, in file order (HTTP listeners).
    pub routes: Vec<RouteConfig>,
    /// The cluster its connections are relayed to (TCP listeners).
    pub cluster: Option<String>,
    /// With `accept_proxy`: who may send a PROXY header (`None`: nobody sends one).
    pub proxy_trusted: Option<Vec<Cidr>>,
    /// Its certificates, when it speaks TLS (loaded by the control thread at
    /// start and on every reload: a new `Arc` means the files were read again).
    pub tls: Option<Arc<ListenerMaterial>>,
}

/// What the control thread tells a shard.
#[derive(Debug)]
pub enum ShardCommand {
    /// Serve this plan. Unchanged clusters keep their backends, pools and
    /// counters; unchanged listeners keep their sockets; `sockets` holds this
    /// shard's socket for each listener new in the plan, already bound.
    Configure {
        plan: Arc<ShardPlan>,
        sockets: Vec<(String, std::net::TcpListener)>,
    },
    /// Take a backend out of rotation, put it back, drain it, or let probes through.
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
    /// The shard's runtime is up and its listeners registered.
    Started { shard: usize },
    /// The outcome of a real request to a backend, for its circuit breaker. Every
    /// failure is reported; a success only when it ends a reported streak.
    Outcome { id: BackendId, ok: bool },
    /// Counters and latency: every second, and in answer to `ReportStats`.
    Report(Box<ShardReport>),
    /// The shard finished; `unfinished` connections were still open at the deadline.
    Stopped { shard: usize, unfinished: usize },
}
