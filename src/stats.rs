//! `stats`: counters one shard keeps about its own traffic.
//!
//! Owns plain `Cell` counters, written by the shard's own tasks only (no atomics,
//! nothing shared on the request path). The control thread receives copies; the
//! admin endpoints that merge them arrive with the observability work.

use std::cell::Cell;
use std::rc::Rc;

use crate::backend::Backend;

/// Counters for one shard.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Client connections accepted.
    pub connections_accepted: Cell<u64>,
    /// Client connections closed at once because `server.max_connections` was reached.
    pub connections_refused: Cell<u64>,
    /// Requests whose head was read.
    pub requests: Cell<u64>,
    /// Responses sent, by class: 1xx (index 0) to 5xx (index 4).
    pub responses: [Cell<u64>; 5],
    /// Upstream connections opened.
    pub upstream_connects: Cell<u64>,
    /// Requests sent on a pooled upstream connection.
    pub upstream_reuses: Cell<u64>,
    /// Attempts repeated after a failure (a fresh connection, or another backend).
    pub upstream_retries: Cell<u64>,
    /// Retries refused because the shard's retry budget was spent.
    pub retries_over_budget: Cell<u64>,
    /// Outcome reports dropped because the channel to the control thread was full.
    pub reports_dropped: Cell<u64>,
    /// Failed requests, by side.
    pub client_errors: Cell<u64>,
    /// Failed requests caused by a backend.
    pub upstream_errors: Cell<u64>,
    /// Failed requests caused by ringlb (no backend available).
    pub internal_errors: Cell<u64>,
}

impl ShardStats {
    /// Adds one to a counter.
    #[inline]
    pub fn bump(counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }

    /// Counts a response with `status`.
    #[inline]
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        Self::bump(&self.responses[class]);
    }

    /// A copy for the control thread, with the counters of `backends`.
    pub fn snapshot(&self, backends: &[Rc<Backend>]) -> StatsSnapshot {
        StatsSnapshot {
            backends: backends
                .iter()
                .map(|b| {
                    let counters = BackendCounters {
                        attempts: b.attempts.get(),
                        retries: b.retries.get(),
                        failures: b.failures.get(),
                    };
                    (b.name.to_string(), counters)
                })
                .collect(),
            connections_accepted: self.connections_accepted.get(),
            connections_refused: self.connections_refused.get(),
            requests: self.requests.get(),
            responses: self.responses.each_ref().map(Cell::get),
            upstream_connects: self.upstream_connects.get(),
            upstream_reuses: self.upstream_reuses.get(),
            upstream_retries: self.upstream_retries.get(),
            retries_over_budget: self.retries_over_budget.get(),
            reports_dropped: self.reports_dropped.get(),
            client_errors: self.client_errors.get(),
            upstream_errors: self.upstream_errors.get(),
            internal_errors: self.internal_errors.get(),
        }
    }
}

/// Per-backend counters, as copied from shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackendCounters {
    /// Attempts sent to it (first tries and retries).
    pub attempts: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Attempts that failed on its side.
    pub failures: u64,
}

/// Plain copy of `ShardStats`, sent across threads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Per-backend counters, by name.
    pub backends: Vec<(String, BackendCounters)>,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub requests: u64,
    pub responses: [u64; 5],
    pub upstream_connects: u64,
    pub upstream_reuses: u64,
    pub upstream_retries: u64,
    pub retries_over_budget: u64,
    pub reports_dropped: u64,
    pub client_errors: u64,
    pub upstream_errors: u64,
    pub internal_errors: u64,
}

impl StatsSnapshot {
    /// Adds another shard's figures to these.
    pub fn merge(&mut self, other: &StatsSnapshot) {
        for (name, counters) in &other.backends {
            match self.backends.iter_mut().find(|(n, _)| n == name) {
                Some((_, mine)) => {
                    mine.attempts += counters.attempts;
                    mine.retries += counters.retries;
                    mine.failures += counters.failures;
                }
                None => self.backends.push((name.clone(), *counters)),
            }
        }
        self.connections_accepted += other.connections_accepted;
        self.connections_refused += other.connections_refused;
        self.requests += other.requests;
        for (a, b) in self.responses.iter_mut().zip(other.responses) {
            *a += b;
        }
        self.upstream_connects += other.upstream_connects;
        self.upstream_reuses += other.upstream_reuses;
        self.upstream_retries += other.upstream_retries;
        self.retries_over_budget += other.retries_over_budget;
        self.reports_dropped += other.reports_dropped;
        self.client_errors += other.client_errors;
        self.upstream_errors += other.upstream_errors;
        self.internal_errors += other.internal_errors;
    }
}
