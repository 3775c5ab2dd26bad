//! `protocol::h2`: HTTP/2 without I/O.
//!
//! Owns what ringlb adds around the `h2` crate (which does the framing, HPACK
//! and flow control): the mapping between HTTP/2 messages and the HTTP/1.1
//! messages the rest of the proxy speaks ([`convert`]), and the per-second caps
//! on the frames a client sends that h2 does not bound in CPU ([`meter`]). Never
//! touches a socket.

pub mod convert;
pub mod meter;
