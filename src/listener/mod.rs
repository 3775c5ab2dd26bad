//! `listener`: the sockets clients connect to, and accepting on them.
//!
//! Owns binding a listener address once per shard (`SO_REUSEPORT`, so the kernel
//! spreads connections over the shards) and each shard's accept loop, which counts,
//! refuses over `server.max_connections`, and hands each connection to the proxy
//! task for its protocol. Runs on the shard's thread; never blocks it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::observe::stats::ShardStats;
use crate::proxy::http1;
use crate::shard::Shard;
use crate::{log_debug, log_warn};

/// Listen backlog for every shard's listener.
const BACKLOG: i32 = 4096;

/// Binds a listener with SO_REUSEPORT, so every shard can have its own on one port.
pub fn bind_reuseport(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener, which spares the
    // shards a system call per connection.
    socket.set_nodelay(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

pub async fn accept_loop(shard: &Rc<Shard>, listener: &TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if shard.draining() {
                    break;
                }
                ShardStats::bump(&shard.stats.connections_accepted);
                if shard.active_connections() >= shard.settings.max_connections {
                    ShardStats::bump(&shard.stats.connections_refused);
                    log_debug!("shard {}: refused {peer}: max_connections", shard.index);
                    drop(stream);
                    continue;
                }
                // TCP_NODELAY is inherited from the listener (set in `control`), so
                // no system call per accepted connection.
                let guard = shard.connection_opened(stream.as_raw_fd());
                monoio::spawn(http1::serve(Rc::clone(shard), guard, stream, peer));
            }
            Err(e) => {
                if shard.draining() {
                    break;
                }
                match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        log_warn!("shard {}: accept: {e}; pausing 10ms", shard.index);
                        monoio::time::sleep(Duration::from_millis(10)).await;
                    }
                    _ => log_debug!("shard {}: accept: {e}", shard.index),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
