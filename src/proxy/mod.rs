//! `proxy`: what a shard does with a client connection.
//!
//! [`http1`] proxies HTTP/1.1 connections, request after request; [`tcp`] relays
//! TCP listeners' connections to a backend; [`tunnel`] is the byte relay both use
//! (TCP connections, upgraded WebSocket connections); [`proxied`] reads and
//! writes PROXY protocol headers; [`error`] says what went wrong and whose fault
//! it was. Called by the shard's accept loop, one
//! task per connection. Never blocks the thread and never touches another shard's
//! state.

pub mod error;
pub mod http1;
pub mod proxied;
pub mod tcp;
pub mod tunnel;
