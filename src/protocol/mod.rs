//! `protocol`: wire formats without I/O.
//!
//! Owns the codecs the proxy and the origin run on bytes they already read:
//! HTTP/1.x heads and chunked bodies ([`h1`]), HTTP/2 messages as HTTP/1.1 ones
//! ([`h2`]), the PROXY protocol header
//! ([`proxy_header`]), and TLS sessions driven over the caller's buffers ([`tls`]). Never touches a socket, never
//! allocates per message beyond the caller's reusable buffers, never panics on
//! input.

pub mod h1;
pub mod h2;
pub mod proxy_header;
pub mod tls;
