//! `observe::h2`: what shards count about HTTP/2 connections.
//!
//! Owns the counters a shard keeps (`ShardH2Stats`, plain `Cell`s: client
//! connections that began, prefaces that failed, streams, connections closed for
//! a frame flood by kind; and to HTTP/2 backends, connections opened and streams
//! sent; stream resets by way and reason) and their absolute values in reports
//! ([`H2Totals`]). The
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

/// HTTP/2 error codes (RFC 9113 §7), by code; any other is `unknown`.
pub const H2_REASONS: [&str; 15] = [
    "no_error",
    "protocol_error",
    "internal_error",
    "flow_control_error",
    "settings_timeout",
    "stream_closed",
    "frame_size_error",
    "refused_stream",
    "cancel",
    "compression_error",
    "connect_error",
    "enhance_your_calm",
    "inadequate_security",
    "http_1_1_required",
    "unknown",
];

/// Which way a stream reset went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetWay {
    /// A client reset its stream (it went away, or gave up).
    FromClient = 0,
    /// ringlb reset a client's stream (a response cut short).
    ToClient = 1,
    /// An HTTP/2 backend reset the stream of a request.
    FromBackend = 2,
}

/// The ways, in `ResetWay` order, as counted.
pub const RESET_WAYS: [&str; 3] = ["from_client", "to_client", "from_backend"];

/// Resets by way and reason (`RESET_WAYS` x `H2_REASONS`).
pub type ResetCounts = [[u64; H2_REASONS.len()]; RESET_WAYS.len()];

/// One shard's HTTP/2 counters.
#[derive(Debug, Default)]
pub struct ShardH2Stats {
    connections: Cell<u64>,
    preface_failures: Cell<u64>,
    streams: Cell<u64>,
    floods: [Cell<u64>; H2_FLOODS.len()],
    upstream_connections: Cell<u64>,
    upstream_streams: Cell<u64>,
    resets: [[Cell<u64>; H2_REASONS.len()]; RESET_WAYS.len()],
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

    /// A stream was reset, one `way`, with error code `code`.
    pub fn reset(&self, way: ResetWay, code: u32) {
        let reason = usize::try_from(code)
            .ok()
            .filter(|&i| i < H2_REASONS.len() - 1)
            .unwrap_or(H2_REASONS.len() - 1);
        bump(&self.resets[way as usize][reason]);
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
            resets: self
                .resets
                .each_ref()
                .map(|way| way.each_ref().map(Cell::get)),
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
    /// Stream resets by way and reason.
    pub resets: ResetCounts,
}

impl H2Totals {
    /// Adds another shard's counters.
    pub fn merge(&mut self, o: &H2Totals) {
        self.connections += o.connections;
        self.preface_failures += o.preface_failures;
        self.streams += o.streams;
        self.upstream_connections += o.upstream_connections;
        self.upstream_streams += o.upstream_streams;
        for (ways, other) in self.resets.iter_mut().zip(o.resets) {
            for (a, b) in ways.iter_mut().zip(other) {
                *a += b;
            }
        }
        for (a, b) in self.floods.iter_mut().zip(o.floods) {
            *a += b;
        }
    }
}
