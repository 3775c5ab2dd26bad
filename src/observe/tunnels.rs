//! `observe::tunnels`: what shards count about tunnels (TCP listeners' connections
//! and upgraded WebSocket connections).
//!
//! Owns the tunnel counters a shard keeps for itself and for each backend
//! (`TunnelStats`, plain `Cell`s), how a finished tunnel is recorded (how it
//! ended, how long it lasted: a fixed-bucket histogram, cheap to merge), and their
//! absolute values in reports (`TunnelCounters`, `TunnelTotals`). Bytes are counted
//! as they flow, so a long tunnel shows its traffic before it ends. Nothing here
//! blocks or touches another thread's data.

use std::cell::Cell;
use std::time::Instant;

/// How a tunnel ended, in the spelling of counters and the access log.
pub const TUNNEL_ENDS: [&str; 6] = [
    // Both sides closed (FIN each way), or one closed and the other was gone.
    "closed",
    // The client reset or failed: the backend side was reset too.
    "client_reset",
    // The backend reset or failed: the client side was reset too.
    "backend_reset",
    // No byte either way for `timeouts.tunnel_idle`.
    "idle_timeout",
    // Cut at the end of a shutdown's or a removed listener's grace period.
    "cut",
    // No backend could be reached: the tunnel never opened.
    "failed",
];

/// Upper bounds, in seconds, of the tunnel duration histogram's buckets (a last
/// bucket, `+Inf`, holds the rest).
pub const DURATION_BUCKETS: [f64; 8] = [0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0];

/// A tunnel's ending, as an index into `TUNNEL_ENDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    Closed = 0,
    ClientReset = 1,
    BackendReset = 2,
    IdleTimeout = 3,
    Cut = 4,
    Failed = 5,
}

impl TunnelEnd {
    /// Its name in counters and logs.
    pub fn as_str(self) -> &'static str {
        TUNNEL_ENDS[self as usize]
    }
}

/// One finished tunnel, for counters and the access log.
#[derive(Debug)]
pub struct TunnelRecord {
    /// When its client connection was accepted (or its upgrade was answered).
    pub started: Instant,
    /// Backends tried (1 when the first connect succeeded).
    pub attempts: u32,
    /// Bytes relayed from the client to the backend.
    pub bytes_up: u64,
    /// Bytes relayed from the backend to the client.
    pub bytes_down: u64,
    /// The failure kind (`ProxyError::kind`), if connecting failed.
    pub error: Option<&'static str>,
    /// How it ended.
    pub end: TunnelEnd,
}

/// Tunnel counters of one shard, for itself or for one backend.
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Tunnels opened (a backend connection was made).
    opened: Cell<u64>,
    /// Tunnels open now.
    active: Cell<u64>,
    /// Bytes relayed from clients to backends.
    bytes_up: Cell<u64>,
    /// Bytes relayed from backends to clients.
    bytes_down: Cell<u64>,
}

impl TunnelStats {
    /// Counts a tunnel that opened; `closed` must follow.
    pub fn open(&self) {
        self.opened.set(self.opened.get() + 1);
        self.active.set(self.active.get() + 1);
    }

    /// Counts a tunnel that ended.
    pub fn close(&self) {
        self.active.set(self.active.get().saturating_sub(1));
    }

    /// Counts bytes relayed: `up` from client to backend, else the other way.
    #[inline]
    pub fn relayed(&self, up: bool, n: u64) {
        let cell = if up { &self.bytes_up } else { &self.bytes_down };
        cell.set(cell.get() + n);
    }

    /// Their values now.
    pub fn counters(&self) -> TunnelCounters {
        TunnelCounters {
            opened: self.opened.get(),
            active: self.active.get(),
            bytes_up: self.bytes_up.get(),
            bytes_down: self.bytes_down.get(),
        }
    }
}

/// `TunnelStats` as absolute values (`active` is a gauge).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TunnelCounters {
    pub opened: u64,
    pub active: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl TunnelCounters {
    /// Adds another shard's counters.
    pub fn merge(&mut self, o: &TunnelCounters) {
        self.opened += o.opened;
        self.active += o.active;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
    }
}

/// What a shard counts about all its tunnels besides `TunnelStats`.
#[derive(Debug, Default)]
pub struct ShardTunnelStats {
    /// Opened, open, bytes.
    pub counts: TunnelStats,
    /// HTTP connections upgraded to a tunnel (WebSocket).
    pub upgraded: Cell<u64>,
    /// Finished tunnels by how they ended (`TUNNEL_ENDS`).
    ends: [Cell<u64>; TUNNEL_ENDS.len()],
    /// Finished tunnels by duration (`DURATION_BUCKETS`, then `+Inf`).
    durations: [Cell<u64>; DURATION_BUCKETS.len() + 1],
    /// Their durations summed, in microseconds.
    duration_sum_micros: Cell<u64>,
}

impl ShardTunnelStats {
    /// Records one finished tunnel (opened or not).
    pub fn record(&self, record: &TunnelRecord, now: Instant) {
        let end = &self.ends[record.end as usize];
        end.set(end.get() + 1);
        if record.end == TunnelEnd::Failed {
            return;
        }
        let elapsed = now.saturating_duration_since(record.started);
        let seconds = elapsed.as_secs_f64();
        let slot = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.durations[slot].set(self.durations[slot].get() + 1);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .set(self.duration_sum_micros.get().saturating_add(micros));
    }

    /// Their values now.
    pub fn totals(&self) -> TunnelTotals {
        TunnelTotals {
            counts: self.counts.counters(),
            upgraded: self.upgraded.get(),
            ends: self.ends.each_ref().map(Cell::get),
            durations: self.durations.each_ref().map(Cell::get),
            duration_sum_micros: self.duration_sum_micros.get(),
        }
    }
}

/// `ShardTunnelStats` as absolute values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TunnelTotals {
    pub counts: TunnelCounters,
    pub upgraded: u64,
    pub ends: [u64; TUNNEL_ENDS.len()],
    /// Per bucket, not cumulative.
    pub durations: [u64; DURATION_BUCKETS.len() + 1],
    pub duration_sum_micros: u64,
}

impl TunnelTotals {
    /// Adds another shard's totals.
    pub fn merge(&mut self, o: &TunnelTotals) {
        self.counts.merge(&o.counts);
        self.upgraded += o.upgraded;
        for (a, b) in self.ends.iter_mut().zip(o.ends) {
            *a += b;
        }
        for (a, b) in self.durations.iter_mut().zip(o.durations) {
            *a += b;
        }
        self.duration_sum_micros += o.duration_sum_micros;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_finished_tunnel_lands_in_its_duration_bucket_and_ending() {
        let stats = ShardTunnelStats::default();
        let started = Instant::now();
        let record = TunnelRecord {
            started,
            attempts: 1,
            bytes_up: 0,
            bytes_down: 0,
            error: None,
            end: TunnelEnd::IdleTimeout,
        };
        stats.record(&record, started + Duration::from_secs(5));
        let failed = TunnelRecord {
            end: TunnelEnd::Failed,
            ..record
        };
        stats.record(&failed, started + Duration::from_secs(5000));
        let totals = stats.totals();
        assert_eq!(totals.ends[TunnelEnd::IdleTimeout as usize], 1);
        assert_eq!(totals.ends[TunnelEnd::Failed as usize], 1);
        // 5 s is in the `le=10` bucket; a tunnel that never opened has no duration.
        assert_eq!(totals.durations[3], 1);
        assert_eq!(totals.durations.iter().sum::<u64>(), 1);
        assert_eq!(totals.duration_sum_micros, 5_000_000);
    }

    #[test]
    fn counters_merge_across_shards() {
        let a = TunnelStats::default();
        a.open();
        a.relayed(true, 10);
        a.relayed(false, 7);
        let b = TunnelStats::default();
        b.open();
        b.close();
        let mut merged = a.counters();
        merged.merge(&b.counters());
        assert_eq!(
            merged,
            TunnelCounters {
                opened: 2,
                active: 1,
                bytes_up: 10,
                bytes_down: 7
            }
        );
    }
}
