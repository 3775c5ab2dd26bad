//! `testkit`: tooling outside the data path.
//!
//! Owns the origin server that the demo, the tests and the benchmarks put behind
//! the proxy ([`origin`]), and its WebSocket echo ([`websocket`]). Nothing on the proxy's request path uses it.

pub mod origin;
pub mod websocket;
