//! ringlb: a thread-per-core io_uring HTTP/1.1 load balancer.
//!
//! # Layout
//! Start-up and the process:
//! - [`server`]: [`server::start`] validates, binds, spawns the shards, the admin
//!   listener and the control thread, and returns a [`Server`] to wait on or stop.
//! - [`config`]: the TOML file, validated into a [`config::Config`]. Depends on
//!   nothing else in the crate.
//!
//! The data plane, in the order a request flows:
//! - [`shard`]: one pinned thread per core with its own monoio runtime and its own
//!   copy of everything a request needs; its messages to and from the control thread.
//! - [`listener`]: binding (`SO_REUSEPORT`) and each shard's accept loop.
//! - [`protocol`]: codecs without I/O ([`protocol::h1`]).
//! - [`proxy`]: what a shard does with a client connection ([`proxy::http1`]) and
//!   what can go wrong ([`proxy::error`]).
//! - [`route`]: which requests go to which cluster, compiled per listener per shard.
//! - [`cluster`]: backends as a shard sees them, and the strategies that pick them.
//! - [`upstream`]: connecting to backends, and the pool of idle connections.
//! - [`stream`]: a connection's socket, plain or TLS, and its reads and writes.
//! - [`pollio`]: a connection lent to poll-style code (the `h2` crate).
//! - [`tls`]: certificates and SNI, for the TLS sessions of [`protocol::tls`].
//!
//! The control plane:
//! - [`control`]: the control thread: backend membership, health checks, circuit
//!   breakers, reloads, merged statistics; [`control::handle`] is its client API.
//! - [`admin`]: the admin listener (`/stats`, `/metrics`, the backend API).
//!
//! Observability: [`observe`]: counters and histograms, their exposition, the access
//! log and log lines.
//!
//! Platform: [`sys`] (every `unsafe` system call), [`memory`] (the memory policy),
//! [`notify`] (telling systemd what the process is doing).
//! Tooling: [`testkit`] (the origin server of the demo, tests and benchmarks).

pub mod server;

pub mod config;

pub mod cluster;
pub mod listener;
pub mod pollio;
pub mod protocol;
pub mod proxy;
pub mod route;
pub mod shard;
pub mod stream;
pub mod tls;
pub mod upstream;

pub mod admin;
pub mod control;

pub mod observe;

pub mod memory;
pub mod notify;
pub mod sys;

pub mod testkit;

pub use control::handle::{ServerHandle, ShutdownReport};
pub use server::{start, Server};
