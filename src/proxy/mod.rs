//! `proxy`: what a shard does with a client connection.
//!
//! `http` proxies HTTP/1.1 (later, `tcp` will forward raw TCP). Called by the shard's
//! accept loop, one task per connection. Never blocks the thread and never touches
//! another shard's state.

pub mod http;
