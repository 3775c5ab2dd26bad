//! `observe::h2`: what shards count about HTTP/2 connections.
//!
//! Owns the counters a shard keeps (`ShardH2Stats`, plain `Cell`s: client
//! connections that began, prefaces that failed, streams, connections closed for
//! a frame flood by kind; and to HTTP/2 backends, connections opened and streams
//! sent) and their absolute values in reports ([`H2Totals`]). The
//! requests themselves are counted with HTTP/1.1's. Nothing here blocks or
//! touches another thread's data.

use std::cell::Cell;

use crate::protocol::h2::meter::Flood;

/// The floods counted, in this order (`Flood::as_str`).
pub const H2_FLOODS: [Flood; 7] = [
    Flood::Ping,
    Flood::Settings,
    Flood::Reset,
    Flood::Priority,
    Flood::Empty,
    Flood::WindowUpdate,
    Flood::Unknown,
];

/// One shard's HTTP/2 counters.
#[derive(Debug, Default)]
pub struct ShardH2Stats {
    connections: Cell<u64>,
    preface_failures: Cell<u64>,
    streams: Cell<u64>,
    floods: [Cell<u64>; H2_FLOODS.len()],
    upstream_connections: Cell<u64>,
    upstream_streams: Cell<u64>,
}

impl ShardH2Stats {
    /// A connection's preface and SETTINGS came: it speaks HTTP/2.
    pub fn connection(&self) {
        bump(&self.connections);
    }

    /// A connection's preface was wrong, or did not come in time.
    pub fn preface_failed(&self) {
        bump(&self.preface_failures);
    }

    /// A client opened a stream.
    pub fn stream(&self) {
        bump(&self.streams);
    }

    /// A connection was closed for going past a frame cap.
    pub fn flood(&self, flood: Flood) {
        if let Some(i) = H2_FLOODS.iter().position(|f| *f == flood) {
            bump(&self.floods[i]);
        }
    }

    /// A connection to an HTTP/2 backend was opened.
    pub fn upstream_connection(&self) {
        bump(&self.upstream_connections);
    }

    /// A request went to an HTTP/2 backend on a stream.
    pub fn upstream_stream(&self) {
        bump(&self.upstream_streams);
    }

    /// The absolute values, for a report.
    pub fn totals(&self) -> H2Totals {
        H2Totals {
            connections: self.connections.get(),
            preface_failures: self.preface_failures.get(),
            streams: self.streams.get(),
            floods: self.floods.each_ref().map(Cell::get),
            upstream_connections: self.upstream_connections.get(),
            upstream_streams: self.upstream_streams.get(),
        }
    }
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}

/// HTTP/2 counters as absolute values, one shard's or all merged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct H2Totals {
    /// Connections that sent the preface and SETTINGS.
    pub connections: u64,
    /// Connections whose preface was wrong or late.
    pub preface_failures: u64,
    /// Streams clients opened.
    pub streams: u64,
    /// Connections closed with `GOAWAY(ENHANCE_YOUR_CALM)` for a frame flood,
    /// indexed like `H2_FLOODS`.
    pub floods: [u64; H2_FLOODS.len()],
    /// Connections opened to HTTP/2 backends.
    pub upstream_connections: u64,
    /// Streams sent to HTTP/2 backends (requests, retries included).
    pub upstream_streams: u64,
}

impl H2Totals {
    /// Adds another shard's counters.
    pub fn merge(&mut self, o: &H2Totals) {
        self.connections += o.connections;
        self.preface_failures += o.preface_failures;
        self.streams += o.streams;
        self.upstream_connections += o.upstream_connections;
        self.upstream_streams += o.upstream_streams;
        for (a, b) in self.floods.iter_mut().zip(o.floods) {
            *a += b;
        }
    }
}
