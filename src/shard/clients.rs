//! `shard::clients`: the descriptors of one shard's client connections.
//!
//! Owns a slot per open connection with what it is doing (busy, idle, parked, or
//! relaying a tunnel, with its upstream socket), so that a drain can wake the idle
//! ones, the sweep can end parked ones and tunnels past their idle deadline, and the
//! end of the grace period can cut the rest (a tunnel's two sockets). Records why it
//! shut a connection down, for the tunnel's ending. Shard-local; the only `unsafe`
//! is `shutdown(2)`, in `sys`.

use std::os::fd::RawFd;
use std::time::Instant;

use crate::observe::tunnels::TunnelEnd;
use crate::sys;

/// File descriptors of this shard's client connections, and which of them wait
/// for their next request, so that a drain can wake the idle ones and the end of
/// the grace period can cut the rest. (A dropped monoio runtime does not close the
/// sockets of tasks still parked in it.)
#[derive(Debug, Default)]
pub struct ClientFds {
    /// One per open connection; `None` marks a free slot.
    slots: Vec<Option<ClientSlot>>,
    /// Free slots to reuse.
    free: Vec<usize>,
}

/// One open client connection, as the shard's bookkeeping sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientSlot {
    fd: RawFd,
    /// The listener it came in on (`ShardListener::id`).
    pub(super) listener: u32,
    pub(super) state: ClientState,
    /// Why the shard shut it down, once it did (idle past its deadline, or cut).
    /// A tunnel reads it to say how it ended; a connection that becomes a tunnel
    /// after it was shut down has its upstream socket shut down at once.
    ended: Option<TunnelEnd>,
}

/// What a client connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientState {
    /// Reading or proxying a request.
    Busy,
    /// Waiting for its next request (a drain may close it).
    Idle,
    /// Idle and parked, with no timer of its own, until this idle deadline.
    Parked { until: Instant },
    /// Relaying bytes to and from `upstream` (a tunnel), until this idle deadline
    /// unless a byte moves. Shutting it down shuts down both sockets.
    Tunnel { upstream: RawFd, until: Instant },
}

impl ClientSlot {
    /// Waiting for a next request: a drain may close it now.
    pub(super) fn idle(&self) -> bool {
        matches!(self.state, ClientState::Idle | ClientState::Parked { .. })
    }

    /// Idle past its deadline (parked, or a tunnel with no traffic).
    pub(super) fn expired(&self, now: Instant) -> bool {
        match self.state {
            _ if self.ended.is_some() => false,
            ClientState::Parked { until } | ClientState::Tunnel { until, .. } => until <= now,
            ClientState::Busy | ClientState::Idle => false,
        }
    }
}

impl ClientFds {
    pub(super) fn register(&mut self, fd: RawFd, listener: u32) -> usize {
        let slot = Some(ClientSlot {
            fd,
            listener,
            state: ClientState::Busy,
            ended: None,
        });
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    pub(super) fn unregister(&mut self, token: usize) {
        if let Some(slot) = self.slots.get_mut(token) {
            if slot.take().is_some() {
                self.free.push(token);
            }
        }
    }

    pub(super) fn set_state(&mut self, token: usize, state: ClientState) {
        if let Some(Some(slot)) = self.slots.get_mut(token) {
            slot.state = state;
        }
    }

    /// Marks a connection as a tunnel to `upstream`, or moves its idle deadline.
    /// One the shard already shut down (cut while it was connecting) has its
    /// upstream socket shut down too, at once.
    pub(super) fn set_tunnel(&mut self, token: usize, upstream: RawFd, until: Instant) {
        if let Some(Some(slot)) = self.slots.get_mut(token) {
            if slot.ended.is_some() && !matches!(slot.state, ClientState::Tunnel { .. }) {
                // `upstream` belongs to the live task that asks.
                let _ = sys::shutdown(upstream, sys::Shutdown::Both);
            }
            slot.state = ClientState::Tunnel { upstream, until };
        }
    }

    /// Why the shard shut this connection down, if it did.
    pub(super) fn ended(&self, token: usize) -> Option<TunnelEnd> {
        self.slots.get(token)?.as_ref()?.ended
    }

    /// Connections parked now.
    pub(super) fn parked(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|slot| matches!(slot.state, ClientState::Parked { .. }))
            .count()
    }

    /// Shuts down the connections `pick` chooses (a tunnel's upstream socket too):
    /// their pending reads (or readiness waits) return, and their tasks end and
    /// close them.
    /// Each is marked as ended for `why` (a tunnel reports it).
    pub(super) fn shutdown(&mut self, pick: impl Fn(&ClientSlot) -> bool, why: TunnelEnd) {
        for slot in self.slots.iter_mut().flatten() {
            if pick(slot) {
                // Registered descriptors belong to live connection tasks, which
                // unregister before their socket closes.
                let _ = sys::shutdown(slot.fd, sys::Shutdown::Both);
                if let ClientState::Tunnel { upstream, .. } = slot.state {
                    // The tunnel's task owns its upstream socket too, and marks
                    // itself busy (forgetting it) before closing either.
                    let _ = sys::shutdown(upstream, sys::Shutdown::Both);
                }
                slot.ended.get_or_insert(why);
            }
        }
    }
}
