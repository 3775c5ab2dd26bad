//! `upstream::pool`: a shard's connections to one backend.
//!
//! Idle HTTP/1.1 keep-alive connections: bounded, last-in first-out, expired
//! after `upstream.idle_timeout` (at checkout and by the shard's once-a-second
//! sweep), and checked before reuse so a connection the backend closed (or wrote
//! stray bytes on) is never handed out. And an HTTP/2 cluster's multiplexed
//! connections ([`Multiplexed`]), expired and cleared with them. Owned by one
//! shard's `Backend`; never shared across shards.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::stream::Stream;

use super::h2::Multiplexed;

/// An idle connection and when it went idle.
#[derive(Debug)]
struct IdleConnection {
    stream: Stream,
    since: Instant,
}

/// Idle keep-alive connections to one backend, newest at the back.
#[derive(Debug)]
pub struct UpstreamPool {
    /// The connections, oldest first.
    idle: RefCell<VecDeque<IdleConnection>>,
    /// Most connections kept (`upstream.max_idle_per_backend`; a reload may change it).
    max_idle: Cell<usize>,
    /// How long an idle connection is kept (`upstream.idle_timeout`).
    idle_timeout: Cell<Duration>,
    /// HTTP/2 connections, each carrying many requests at once.
    pub multiplexed: Multiplexed,
}

impl UpstreamPool {
    /// An empty pool.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        UpstreamPool {
            idle: RefCell::new(VecDeque::new()),
            max_idle: Cell::new(max_idle),
            idle_timeout: Cell::new(idle_timeout),
            multiplexed: Multiplexed::default(),
        }
    }

    /// Applies changed settings (a reload); connections over the new bound close.
    pub fn configure(&self, max_idle: usize, idle_timeout: Duration) {
        self.max_idle.set(max_idle);
        self.idle_timeout.set(idle_timeout);
        let mut idle = self.idle.borrow_mut();
        while idle.len() > max_idle {
            idle.pop_front();
        }
    }

    /// The most recently used idle connection that is still open, if any.
    pub fn checkout(&self, now: Instant) -> Option<Stream> {
        self.expire(now);
        let mut idle = self.idle.borrow_mut();
        while let Some(conn) = idle.pop_back() {
            if is_reusable(&conn.stream) {
                return Some(conn.stream);
            }
        }
        None
    }

    /// Returns a connection whose last response ended cleanly.
    pub fn checkin(&self, mut stream: Stream, now: Instant) {
        let max_idle = self.max_idle.get();
        if max_idle == 0 {
            return;
        }
        stream.release();
        let mut idle = self.idle.borrow_mut();
        if idle.len() >= max_idle {
            idle.pop_front();
        }
        idle.push_back(IdleConnection { stream, since: now });
    }

    /// Closes the connections idle for `upstream.idle_timeout` or more. Run by
    /// every checkout and by the shard's sweep, so a pool nobody draws from
    /// does not keep them.
    pub fn expire(&self, now: Instant) {
        self.multiplexed.expire(now, self.idle_timeout.get());
        let mut idle = self.idle.borrow_mut();
        // Expired connections are the oldest: drop them from the front.
        while idle
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.since) >= self.idle_timeout.get())
        {
            idle.pop_front();
        }
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Closes every idle connection (backend removed or taken out of rotation).
    pub fn clear(&self) {
        self.multiplexed.clear();
        self.idle.borrow_mut().clear();
    }
}

/// An idle connection is reusable when it has nothing to read: no EOF (the backend
/// closed it), no stray bytes (a broken backend), no error. Over TLS, any record
/// counts too (a `close_notify` says the backend is closing; a late ticket or key
/// update is rare enough to cost only a new connection).
fn is_reusable(stream: &Stream) -> bool {
    // A `close_notify` that came with the last response was read with it.
    !stream.closed_by_peer() && crate::sys::nothing_to_read(stream.tcp().as_raw_fd())
}
