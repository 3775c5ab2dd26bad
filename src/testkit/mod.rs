//! `testkit`: tooling outside the data path.
//!
//! Owns the origin server that the demo, the tests and the benchmarks put behind
//! the proxy ([`origin`]), its HTTP/2 and gRPC twin ([`h2_origin`]), its
//! WebSocket echo ([`websocket`]), and what the fuzz
//! targets check ([`fuzz`]). Nothing on the proxy's request path uses it.

pub mod fuzz;
pub mod h2_origin;
pub mod origin;
pub mod websocket;
