//! ringlb: a thread-per-core io_uring HTTP/1.1 load balancer.
//!
//! # Layout
//! - [`config`]: the TOML file, validated into a [`config::Config`].
//! - [`control`]: the control thread; [`control::start`] binds, spawns the shards and
//!   returns a [`control::Server`] to wait on or stop.
//! - [`shard`]: one pinned thread per core with its own monoio runtime, listener
//!   (SO_REUSEPORT), backend table and counters.
//! - [`proxy`]: what a shard does with a client connection ([`proxy::http`]).
//! - [`h1`]: HTTP/1.1 parsing and framing rules, sans-io.
//! - [`balancer`], [`backend`], [`upstream`]: selection, per-shard backend state, and
//!   upstream connections with their idle pool. [`load_index`]: least-conn's winner
//!   tree. [`sticky`]: sticky-session tokens.
//! - [`health`]: active health checks (probes and the rise/fall state machine).
//! - [`breaker`]: the circuit breaker state machine (passive health).
//! - [`admin`]: the admin listener. [`stats`]: per-shard counters and histograms,
//!   and their merge on the control thread.
//! - [`error`]: what failed and whose fault it was. [`logging`]: log lines.
//! - [`exposition`]: `/stats` JSON and `/metrics` Prometheus text.
//! - [`access_log`]: per-request lines, buffered per shard, written off-shard.
//! - [`memory`]: the process's memory policy (huge pages, returning freed memory).
//! - [`origin`]: the origin server used by the demo, tests and benchmarks.

pub mod logging;

pub mod access_log;
pub mod admin;
pub mod backend;
pub mod balancer;
pub mod breaker;
pub mod config;
pub mod control;
pub mod error;
pub mod exposition;
pub mod h1;
pub mod health;
pub mod load_index;
pub mod memory;
pub mod origin;
pub mod proxy;
pub mod shard;
pub mod stats;
pub mod sticky;
pub mod upstream;

pub use control::{start, Server, ServerHandle, ShutdownReport};
