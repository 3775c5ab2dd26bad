//! `observe`: what ringlb tells operators about itself.
//!
//! Owns the shards' counters and histograms and their merge ([`stats`], tunnels in [`tunnels`]), the wire
//! formats of `/stats` and `/metrics` ([`exposition`]), the access log
//! ([`access_log`]) and log lines ([`logging`]). Fed plain values by the data and
//! control planes; depends on nothing in the data plane, and never blocks a shard.

pub mod access_log;
pub mod exposition;
pub mod h2;
pub mod logging;
pub mod stats;
pub mod tls;
pub mod tunnels;
