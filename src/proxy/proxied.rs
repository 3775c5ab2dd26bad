//! `proxy::proxied`: a client connection as accepted, and the PROXY header it may
//! start with.
//!
//! Owns [`Accepted`] (the socket, the client's address, bytes already read), the
//! reading of the PROXY header a trusted load balancer in front starts each
//! connection with (`accept_proxy`: strictly parsed, within
//! `timeouts.header_read`; an untrusted peer or a malformed header closes the
//! connection and is counted). Writing the header a backend is sent
//! (`upstream.send_proxy`) is `protocol::proxy_header::write`.

use std::net::SocketAddr;
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use crate::config::Cidr;
use crate::log_debug;
use crate::observe::stats::ShardStats;
use crate::protocol::proxy_header::{self, ProxiedAddr};
use crate::shard::Shard;
use crate::stream::Stream;

/// A client connection, ready for its listener's protocol.
#[derive(Debug)]
pub struct Accepted {
    /// The socket (TLS once the listener's handshake is over).
    pub stream: Stream,
    /// The client: the peer, or the source a PROXY header named.
    pub client: SocketAddr,
    /// The address the client connected to, when a PROXY header named it.
    pub destination: Option<SocketAddr>,
    /// Bytes the client sent after its PROXY header.
    pub early: Vec<u8>,
}

impl Accepted {
    /// A connection as it came, with no PROXY header.
    pub fn direct(stream: TcpStream, peer: SocketAddr) -> Self {
        Accepted {
            stream: Stream::Plain(stream),
            client: peer,
            destination: None,
            early: Vec::new(),
        }
    }
}

/// Reads the PROXY header of a connection from `peer`. `None` (counted and
/// logged) when the peer is not trusted, or the header is malformed, incomplete
/// within `timeouts.header_read`, or missing: the connection is then closed.
pub async fn read_header(
    shard: &Shard,
    trusted: &[Cidr],
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Option<Accepted> {
    if !trusted.iter().any(|net| net.contains(peer.ip())) {
        ShardStats::bump(&shard.stats.proxy_untrusted);
        log_debug!(
            "shard {}: {peer} is not in proxy_trusted: closed",
            shard.index
        );
        return None;
    }
    let deadline = Instant::now() + shard.settings().header_read_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(proxy_header::MAX_HEADER);
    loop {
        match proxy_header::parse(&buf) {
            Ok(Some((address, len))) => {
                let (client, destination) = match address {
                    ProxiedAddr::Tcp {
                        source,
                        destination,
                    } => (source, Some(destination)),
                    ProxiedAddr::Unknown => (peer, None),
                };
                buf.drain(..len);
                return Some(Accepted {
                    stream: Stream::Plain(stream),
                    client,
                    destination,
                    early: buf,
                });
            }
            Ok(None) => {}
            Err(e) => {
                ShardStats::bump(&shard.stats.proxy_invalid);
                log_debug!(
                    "shard {}: {peer}: bad PROXY header ({}: {e}): closed",
                    shard.index,
                    e.kind()
                );
                return None;
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        // Up to the longest header at most; bytes after the header that came in
        // the same read are kept for the listener's protocol.
        let len = buf.len();
        let spare = buf.slice_mut(len..proxy_header::MAX_HEADER);
        let (result, returned) = match monoio::time::timeout(wait, stream.read(spare)).await {
            Ok(done) => done,
            Err(_) => {
                ShardStats::bump(&shard.stats.proxy_invalid);
                log_debug!(
                    "shard {}: {peer}: no PROXY header in time: closed",
                    shard.index
                );
                return None;
            }
        };
        buf = returned.into_inner();
        match result {
            Ok(n) if n > 0 => {}
            _ => {
                ShardStats::bump(&shard.stats.proxy_invalid);
                return None;
            }
        }
    }
}

/// The address a client connected to, for a PROXY header sent on: the one a
/// received header named, else the socket's own (`local`, asked only then), else
/// the listener's.
pub fn destination(
    named: Option<SocketAddr>,
    local: impl FnOnce() -> Option<SocketAddr>,
    listener: SocketAddr,
) -> SocketAddr {
    named.or_else(local).unwrap_or(listener)
}
