//! `breaker`: the circuit breaker (passive health) of one backend.
//!
//! Owns the closed → open → half-open state machine, fed by the outcomes shards
//! report for real requests. Sans-io: every decision takes `now`, so the tests
//! never sleep. Called by the control thread only; never on the request path.

use std::time::{Duration, Instant};

/// The breaker's state, as reported in logs and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; consecutive failures are counted.
    Closed,
    /// Requests are refused until `open_for` has passed.
    Open,
    /// A few probe requests go through to test the backend.
    HalfOpen,
}

impl BreakerState {
    /// The name used in logs and statistics.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open it.
    pub failure_threshold: u32,
    /// How long it stays open.
    pub open_for: Duration,
    /// Probe requests allowed while half-open; that many successes close it.
    pub half_open_probes: u32,
}

/// One backend's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    state: BreakerState,
    /// Consecutive failures while closed.
    failures: u32,
    /// When an open breaker turns half-open, or when a half-open one that got no
    /// verdict hands out its probes again (a probe's outcome can be lost: the
    /// client went away, or a report was dropped).
    open_until: Option<Instant>,
    /// Successful probes while half-open.
    probe_successes: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: BreakerState::Closed,
            failures: 0,
            open_until: None,
            probe_successes: 0,
        }
    }
}

impl Breaker {
    /// Its state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Records the outcome of one real request; returns the new state if it changed.
    pub fn record(
        &mut self,
        ok: bool,
        now: Instant,
        settings: &BreakerSettings,
    ) -> Option<BreakerState> {
        match (self.state, ok) {
            (BreakerState::Closed, true) => {
                self.failures = 0;
                None
            }
            (BreakerState::Closed, false) => {
                self.failures += 1;
                (self.failures >= settings.failure_threshold.max(1))
                    .then(|| self.open(now, settings))
            }
            // Outcomes of requests sent before it opened change nothing.
            (BreakerState::Open, _) => None,
            (BreakerState::HalfOpen, true) => {
                self.probe_successes += 1;
                (self.probe_successes >= settings.half_open_probes.max(1)).then(|| {
                    *self = Breaker::default();
                    BreakerState::Closed
                })
            }
            (BreakerState::HalfOpen, false) => Some(self.open(now, settings)),
        }
    }

    fn open(&mut self, now: Instant, settings: &BreakerSettings) -> BreakerState {
        self.state = BreakerState::Open;
        self.failures = 0;
        self.probe_successes = 0;
        self.open_until = Some(now + settings.open_for);
        BreakerState::Open
    }

    /// Moves an open breaker to half-open once `open_for` has passed, and lets a
    /// half-open one that reached no verdict within `open_for` probe again.
    /// Returns the state to publish when probes must be handed out.
    pub fn poll(&mut self, now: Instant, settings: &BreakerSettings) -> Option<BreakerState> {
        match (self.state, self.open_until) {
            (BreakerState::Open | BreakerState::HalfOpen, Some(until)) if now >= until => {
                self.state = BreakerState::HalfOpen;
                self.open_until = Some(now + settings.open_for);
                self.probe_successes = 0;
                Some(BreakerState::HalfOpen)
            }
            _ => None,
        }
    }

    /// When `poll` next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.open_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_threshold: 3,
        open_for: Duration::from_secs(30),
        half_open_probes: 2,
    };

    #[test]
    fn opens_after_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert_eq!(b.record(false, t0, &SETTINGS), None);
        assert_eq!(b.record(false, t0, &SETTINGS), None);
        assert_eq!(
            b.record(true, t0, &SETTINGS),
            None,
            "a success resets the count"
        );
        assert_eq!(b.record(false, t0, &SETTINGS), None);
        assert_eq!(b.record(false, t0, &SETTINGS), None);
        assert_eq!(b.record(false, t0, &SETTINGS), Some(BreakerState::Open));
        assert_eq!(b.deadline(), Some(t0 + SETTINGS.open_for));
    }

    #[test]
    fn half_opens_after_open_for_and_closes_on_probe_successes() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(false, t0, &SETTINGS);
        }
        assert_eq!(
            b.record(true, t0, &SETTINGS),
            None,
            "late outcomes are ignored while open"
        );
        assert_eq!(b.poll(t0 + Duration::from_secs(29), &SETTINGS), None);
        assert_eq!(
            b.poll(t0 + SETTINGS.open_for, &SETTINGS),
            Some(BreakerState::HalfOpen)
        );
        assert_eq!(b.record(true, t0, &SETTINGS), None);
        assert_eq!(b.record(true, t0, &SETTINGS), Some(BreakerState::Closed));
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(false, t0, &SETTINGS);
        }
        let t1 = t0 + SETTINGS.open_for;
        b.poll(t1, &SETTINGS);
        assert_eq!(b.record(false, t1, &SETTINGS), Some(BreakerState::Open));
        assert_eq!(b.deadline(), Some(t1 + SETTINGS.open_for));
    }

    #[test]
    fn a_half_open_breaker_without_a_verdict_probes_again() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(false, t0, &SETTINGS);
        }
        let t1 = t0 + SETTINGS.open_for;
        assert_eq!(b.poll(t1, &SETTINGS), Some(BreakerState::HalfOpen));
        // The probe's outcome never arrives.
        assert_eq!(b.poll(t1 + Duration::from_secs(29), &SETTINGS), None);
        let t2 = t1 + SETTINGS.open_for;
        assert_eq!(b.poll(t2, &SETTINGS), Some(BreakerState::HalfOpen));
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }
}
