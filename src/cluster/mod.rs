//! `cluster`: a named group of backends and how one shard picks among them.
//!
//! Owns each shard's view of its backends ([`backend`]), the selection strategies
//! ([`balancer`]), least-conn's winner tree ([`load_index`]) and sticky-session
//! tokens ([`sticky`]). Called by the proxy on every request attempt and by the
//! shard when the control thread changes a table. Never blocks, never touches
//! another shard, and knows nothing of HTTP framing.

pub mod backend;
pub mod balancer;
pub mod load_index;
pub mod sticky;
