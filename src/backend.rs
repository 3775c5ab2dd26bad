//! `backend`: one shard's view of one backend.
//!
//! Owns the backend's address and weight as configured, whether the control thread
//! lets this shard use it, how many requests this shard has in flight to it, and its
//! pool of idle upstream connections. Lives in `Rc` inside one shard; never shared
//! across threads.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::upstream::UpstreamPool;

/// Stable identity of a backend, assigned by the control thread from its name.
pub type BackendId = u32;

/// A backend as one shard sees it.
#[derive(Debug)]
pub struct Backend {
    /// Stable identity across table changes.
    pub id: BackendId,
    /// The configured name, for logs and statistics.
    pub name: Rc<str>,
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of traffic (1..=1000).
    pub weight: u32,
    /// False when the control thread took it out of rotation.
    available: Cell<bool>,
    /// Requests this shard has in flight to it.
    in_flight: Cell<u32>,
    /// Idle keep-alive connections to it, owned by this shard.
    pub pool: UpstreamPool,
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
            weight,
            available: Cell::new(true),
            in_flight: Cell::new(0),
            pool: UpstreamPool::new(max_idle, idle_timeout),
        }
    }

    /// Whether the selector may pick it.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.available.get()
    }

    /// Takes it out of (or puts it back into) rotation on this shard.
    pub fn set_available(&self, available: bool) {
        self.available.set(available);
        if !available {
            self.pool.clear();
        }
    }

    /// Requests in flight from this shard.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.get()
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
        backend.in_flight.set(backend.in_flight.get() + 1);
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
        b.in_flight.set(b.in_flight.get().saturating_sub(1));
    }
}
