//! `upstream`: connections from a shard to its backends.
//!
//! Owns connecting (with a timeout, and TLS for a cluster that asks: [`tls`])
//! and, in [`pool`], the per-backend pool of idle keep-alive connections, and
//! in [`h2`] the HTTP/2 connections an `upstream.protocol = "h2"` cluster
//! multiplexes requests over. Called by the proxy on every request attempt.
//! Never shared across shards.

pub mod h2;
pub mod pool;
pub mod tls;

pub use pool::UpstreamPool;
pub use tls::UpstreamTls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::proxy::error::ProxyError;
use crate::stream::{write_range, Stream};

/// Connects to a backend within `timeout`, with Nagle off; over TLS (`tls`), the
/// handshake must finish within the same `timeout`, and a PROXY header
/// (`proxy_header`, may be empty) goes first, in the clear. Without TLS the caller
/// sends its PROXY header with the request.
pub async fn connect(
    address: SocketAddr,
    timeout: Duration,
    tls: Option<(&UpstreamTls, &[u8])>,
) -> Result<Stream, ProxyError> {
    let deadline = Instant::now() + timeout;
    let mut tcp = connect_tcp(address, timeout).await?;
    let Some((tls, proxy_header)) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    if !proxy_header.is_empty() {
        let mut header = proxy_header.to_vec();
        let len = header.len();
        let wait = deadline.saturating_duration_since(Instant::now());
        write_range(&mut tcp, &mut header, 0..len, wait)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut => ProxyError::ConnectTimeout,
                kind => ProxyError::UpstreamIo(kind),
            })?;
    }
    tls.handshake(tcp, address, deadline).await
}

/// Connects a TCP socket to a backend within `timeout`, with Nagle off.
async fn connect_tcp(address: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    // On timeout the connect op is dropped; monoio cancels it and closes its socket
    // when the cancellation completes, so no descriptor is left behind.
    match monoio::time::timeout(timeout, TcpStream::connect_addr(address)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        // Out of descriptors or ports here is ringlb's trouble, not the backend's.
        Ok(Err(e)) if crate::sys::out_of_resources(&e) => Err(ProxyError::OutOfResources(e.kind())),
        Ok(Err(e)) => Err(ProxyError::Connect(e.kind())),
        Err(_) => Err(ProxyError::ConnectTimeout),
    }
}
