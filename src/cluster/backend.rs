//! `backend`: one shard's view of one backend.
//!
//! Owns the backend's address and weight as configured, whether the control thread
//! lets this shard use it, how many requests this shard has in flight to it, and its
//! pool of idle upstream connections. Lives in `Rc` inside one shard; never shared
//! across threads.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cluster::load_index::{self, LoadIndex};
use crate::observe::stats::BackendStats;
use crate::upstream::UpstreamPool;

/// Stable identity of a backend, assigned by the control thread from its name.
pub type BackendId = u32;

/// Whether a shard may pick a backend, as the control thread decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Healthy, breaker closed, enabled.
    Available,
    /// Down, breaker open, or disabled.
    Unavailable,
    /// Drained by an operator: only clients stuck to it by a sticky cookie send it
    /// new requests; what is in flight finishes.
    Draining,
    /// Breaker half-open: this many probe requests may still be sent from this shard.
    Probing(u32),
}

/// A backend as one shard sees it.
#[derive(Debug)]
pub struct Backend {
    /// Stable identity across table changes.
    pub id: BackendId,
    /// The configured name, for logs and statistics.
    pub name: Rc<str>,
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of traffic (1..=1000), as configured (a reload or the
    /// runtime API may change it).
    weight: Cell<u32>,
    /// The weight strategies use now: lower while slow start ramps it up.
    effective_weight: Cell<u32>,
    /// Whether the control thread lets this shard pick it.
    available: Cell<Availability>,
    /// A failure was reported (or probes are out): the next success is reported too,
    /// so the control thread sees the streak end.
    report_success: Cell<bool>,
    /// Requests this shard has in flight to it.
    in_flight: Cell<u32>,
    /// Idle keep-alive connections to it, owned by this shard.
    pub pool: UpstreamPool,
    /// This shard's counters and latency for it.
    pub stats: BackendStats,
    /// Peak-EWMA of its response time in nanoseconds (least-response).
    latency_ewma: Cell<f64>,
    /// When `latency_ewma` was last updated.
    latency_at: Cell<Option<Instant>>,
    /// The sticky cookie value naming it, when its cluster has sticky sessions.
    sticky_token: RefCell<Option<Box<str>>>,
    /// Least-conn's index of this shard's table and this backend's leaf in it, so
    /// that every change to its load, weight or availability re-keys the leaf.
    load_leaf: RefCell<Option<(Rc<LoadIndex>, usize)>>,
}

impl Backend {
    /// A backend that starts available with no requests in flight.
    pub fn new(
        id: BackendId,
        name: Rc<str>,
        address: SocketAddr,
        weight: u32,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        Backend {
            id,
            name,
            address,
            weight: Cell::new(weight),
            effective_weight: Cell::new(weight),
            available: Cell::new(Availability::Available),
            report_success: Cell::new(false),
            in_flight: Cell::new(0),
            pool: UpstreamPool::new(max_idle, idle_timeout),
            stats: BackendStats::default(),
            latency_ewma: Cell::new(0.0),
            latency_at: Cell::new(None),
            sticky_token: RefCell::new(None),
            load_leaf: RefCell::new(None),
        }
    }

    /// Whether the selector may pick it.
    #[inline]
    pub fn is_available(&self) -> bool {
        match self.available.get() {
            Availability::Available => true,
            Availability::Probing(n) => n > 0,
            Availability::Unavailable | Availability::Draining => false,
        }
    }

    /// Whether a client stuck to it by a sticky cookie may still be sent to it:
    /// when it is available, and while an operator drains it.
    #[inline]
    pub fn takes_sticky(&self) -> bool {
        self.available.get() == Availability::Draining || self.is_available()
    }

    /// What the control thread last decided.
    pub fn availability(&self) -> Availability {
        self.available.get()
    }

    /// Applies the control thread's decision on this shard.
    pub fn set_availability(&self, availability: Availability) {
        self.available.set(availability);
        self.reindex();
        match availability {
            Availability::Unavailable => self.pool.clear(),
            Availability::Probing(_) => self.report_success.set(true),
            Availability::Available | Availability::Draining => {}
        }
    }

    /// Takes it out of (or puts it back into) rotation on this shard.
    pub fn set_available(&self, available: bool) {
        self.set_availability(if available {
            Availability::Available
        } else {
            Availability::Unavailable
        });
    }

    /// Called when a request is sent to it: spends a probe while half-open.
    #[inline]
    pub fn note_selected(&self) {
        if let Availability::Probing(n) = self.available.get() {
            self.available
                .set(Availability::Probing(n.saturating_sub(1)));
            self.reindex();
        }
    }

    /// Whether an outcome should be reported to the control thread: every failure,
    /// and the first success after a reported failure (or while probing).
    #[inline]
    pub fn should_report(&self, ok: bool) -> bool {
        if matches!(self.available.get(), Availability::Probing(_)) {
            // Every probe's outcome counts, even with several probes.
            return true;
        }
        if ok {
            self.report_success.replace(false)
        } else {
            self.report_success.set(true);
            true
        }
    }

    /// Its configured weight.
    #[inline]
    pub fn weight(&self) -> u32 {
        self.weight.get()
    }

    /// Takes a new configured weight, and selects by it from now on.
    pub fn set_weight(&self, weight: u32) {
        self.weight.set(weight);
        self.set_effective_weight(weight);
    }

    /// The weight to select by (slow start may hold it below `weight`).
    #[inline]
    pub fn effective_weight(&self) -> u32 {
        self.effective_weight.get()
    }

    /// Sets the weight to select by (from the control thread's slow start).
    pub fn set_effective_weight(&self, weight: u32) {
        self.effective_weight.set(weight.max(1));
        self.reindex();
    }

    /// Records an observed response time (peak-EWMA: a slower observation is
    /// taken at once, a faster one blends in with weight fading over `decay`).
    pub fn observe_latency(&self, latency: Duration, now: Instant, decay: Duration) {
        let rtt = latency.as_nanos() as f64;
        let current = self.faded_latency(now, decay);
        let blended = if rtt > current {
            rtt
        } else {
            let elapsed = self
                .latency_at
                .get()
                .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
            let w = (-elapsed.as_secs_f64() / decay.as_secs_f64().max(1e-9)).exp();
            current * w + rtt * (1.0 - w)
        };
        self.latency_ewma.set(blended);
        self.latency_at.set(Some(now));
    }

    /// The EWMA faded by the time since it was updated, so that a backend left
    /// alone (because it was slow) is tried again after a few `decay`s.
    fn faded_latency(&self, now: Instant, decay: Duration) -> f64 {
        let Some(at) = self.latency_at.get() else {
            return 0.0;
        };
        let idle = now.saturating_duration_since(at).as_secs_f64();
        self.latency_ewma.get() * (-idle / decay.as_secs_f64().max(1e-9)).exp()
    }

    /// least-response's cost: faded peak-EWMA latency × (requests in flight + 1).
    pub fn latency_cost(&self, now: Instant, decay: Duration) -> f64 {
        // +1 ns so that in-flight counts still separate backends never measured.
        (self.faded_latency(now, decay) + 1.0) * f64::from(self.in_flight() + 1)
    }

    /// Whether `token` is the sticky cookie value naming it.
    pub fn has_sticky_token(&self, token: &str) -> bool {
        self.sticky_token.borrow().as_deref() == Some(token)
    }

    /// Its sticky cookie value, if its cluster has sticky sessions.
    pub fn sticky_token(&self) -> Option<std::cell::Ref<'_, str>> {
        std::cell::Ref::filter_map(self.sticky_token.borrow(), |t| t.as_deref()).ok()
    }

    /// Sets (or clears) its sticky cookie value, when its cluster's table is built.
    pub fn set_sticky_token(&self, token: Option<String>) {
        *self.sticky_token.borrow_mut() = token.map(String::into_boxed_str);
    }

    /// Requests in flight from this shard.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    /// Makes this backend leaf `leaf` of `index` (least-conn's), keyed from now on
    /// by its load; `None` leaves the index it was in.
    pub fn set_load_leaf(&self, leaf: Option<(Rc<LoadIndex>, usize)>) {
        *self.load_leaf.borrow_mut() = leaf;
        self.reindex();
    }

    /// Re-keys its leaf in least-conn's index, if it has one. A re-keyed leaf goes
    /// behind every other leaf of the same load, which is how ties take turns.
    #[inline]
    pub fn reindex(&self) {
        if let Some((index, leaf)) = &*self.load_leaf.borrow() {
            let load = self
                .is_available()
                .then(|| load_index::load(self.in_flight(), self.effective_weight()));
            index.set(*leaf, load);
        }
    }

    fn set_in_flight(&self, n: u32) {
        self.in_flight.set(n);
        self.reindex();
    }
}

/// Counts one request in flight to a backend for as long as it lives.
#[derive(Debug)]
pub struct InFlight {
    backend: Rc<Backend>,
}

impl InFlight {
    /// Starts counting a request to `backend`.
    pub fn start(backend: &Rc<Backend>) -> Self {
        backend.set_in_flight(backend.in_flight.get() + 1);
        InFlight {
            backend: Rc::clone(backend),
        }
    }

    /// The backend this request goes to.
    pub fn backend(&self) -> &Rc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let b = &self.backend;
        b.set_in_flight(b.in_flight.get().saturating_sub(1));
    }
}
