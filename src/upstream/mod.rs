//! `upstream`: connections from a shard to its backends.
//!
//! Owns connecting (with a timeout) and, in [`pool`], the per-backend pool of idle
//! keep-alive connections. Called by the proxy on every request attempt. Never
//! shared across shards.

pub mod pool;

pub use pool::UpstreamPool;

use std::net::SocketAddr;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::proxy::error::ProxyError;

/// Connects to a backend within `timeout`, with Nagle off.
pub async fn connect(address: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
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
