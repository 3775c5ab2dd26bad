//! `proxy`: what a shard does with a client connection.
//!
//! [`http1`] proxies HTTP/1.1 connections, request after request, through the
//! forwarding core HTTP/2 streams share; [`http2`] proxies `h2c` connections,
//! stream after stream; [`tcp`] relays
//! TCP listeners' connections to a backend; [`tunnel`] is the byte relay both use
//! (TCP connections, upgraded WebSocket connections); [`proxied`] is a connection
//! as accepted, and reads the PROXY header it may start with; [`error`] says what
//! went wrong and whose fault it was. Called by the shard's accept loop, one
//! task per connection. Never blocks the thread and never touches another shard's
//! state.

use std::time::Duration;

pub mod error;
pub mod http1;
pub mod http2;
pub mod proxied;
pub mod tcp;
pub mod tunnel;

/// A client connection or tunnel direction with nothing to read for this long gives
/// its buffers back and waits with none (HTTP keep-alive connections park; tunnel
/// pumps wait on a one-byte read).
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(100);

/// Most backends one request or connection may try (the first, plus
/// `retry.max_retries` ≤ 7).
pub(crate) const MAX_TRIED: usize = 8;
