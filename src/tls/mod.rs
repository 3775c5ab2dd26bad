//! `tls`: the material TLS runs on: certificates and the choice among them.
//!
//! Owns loading certificate files ([`certs::Certificate`]), answering a client's
//! SNI ([`certs::CertStore`]), and every TLS listener's material checked and ready
//! ([`material::TlsMaterial`]). Built where configuration is loaded, at start and
//! on reload, and handed to the shards whole; the per-connection session is
//! [`crate::protocol::tls`]. Must not do socket I/O.

pub mod certs;
pub mod material;
