//! `listener`: the sockets clients connect to, and accepting on them.
//!
//! Owns binding a listener address once per shard (`SO_REUSEPORT`, so the kernel
//! spreads connections over the shards) and the accept loop of each listener on
//! each shard, which counts, refuses over `server.max_connections`, and hands each
//! connection to the proxy task for the listener's protocol (after reading its
//! PROXY header on an `accept_proxy` listener). Runs on the shard's
//! thread; never blocks it.

pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::ListenerProtocol;
use crate::observe::stats::ShardStats;
use crate::proxy::proxied::{self, Accepted};
use crate::proxy::{http1, http2, tcp};
use crate::shard::{ConnectionGuard, Shard, ShardListener};
use crate::{log_debug, log_warn};

/// Listen backlog for every shard's listener.
const BACKLOG: i32 = 4096;

/// One listener's sockets, one per shard, all on one address.
#[derive(Debug)]
pub struct BoundGroup {
    /// The address they share (with the real port when 0 was asked).
    pub address: SocketAddr,
    /// One socket per shard.
    pub sockets: Vec<std::net::TcpListener>,
}

/// Binds `address` once per shard: the first socket resolves a port 0, the rest
/// bind the same port, and the kernel spreads connections over them.
pub fn bind_group(address: SocketAddr, shards: usize) -> io::Result<BoundGroup> {
    let first = bind_reuseport(address)?;
    let address = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..shards {
        sockets.push(bind_reuseport(address)?);
    }
    Ok(BoundGroup { address, sockets })
}

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

/// Accepts connections on one listener of one shard until the shard drains or a
/// reload removes the listener, and serves each on a task of its own.
pub async fn accept_loop(shard: Rc<Shard>, listener: Rc<ShardListener>, socket: TcpListener) {
    let stopped = |shard: &Shard| shard.draining() || listener.closing();
    let mut starved = Starved::default();
    loop {
        match socket.accept().await {
            Ok((stream, peer)) => {
                if stopped(&shard) {
                    break;
                }
                starved.ended(&shard, &listener);
                ShardStats::bump(&shard.stats.connections_accepted);
                if shard.active_connections() >= shard.settings().max_connections {
                    ShardStats::bump(&shard.stats.connections_refused);
                    log_debug!("shard {}: refused {peer}: max_connections", shard.index);
                    drop(stream);
                    continue;
                }
                // TCP_NODELAY is inherited from the listening socket (set in
                // `bind_reuseport`), so no system call per accepted connection.
                let guard = shard.connection_opened(stream.as_raw_fd(), &listener);
                let (shard, listener) = (Rc::clone(&shard), Rc::clone(&listener));
                match listener.proxy_trusted() {
                    None => serve(shard, listener, guard, Accepted::direct(stream, peer)),
                    Some(trusted) => {
                        monoio::spawn(async move {
                            let read = proxied::read_header(&shard, &trusted, stream, peer);
                            if let Some(accepted) = read.await {
                                serve(shard, listener, guard, accepted);
                            }
                        });
                    }
                }
            }
            Err(e) => {
                if stopped(&shard) {
                    break;
                }
                if crate::sys::out_of_resources(&e) {
                    ShardStats::bump(&shard.stats.accept_errors);
                    starved.failed(&shard, &listener, &e);
                    monoio::time::sleep(STARVED_PAUSE).await;
                } else {
                    log_debug!("shard {}: accept: {e}", shard.index);
                }
            }
        }
    }
    listener.accept_ended();
}

/// How long a listener waits after an accept failed for want of descriptors or
/// memory: the connection stays in the backlog, and retrying at once would spin.
const STARVED_PAUSE: Duration = Duration::from_millis(10);
/// At most one log line this often while accepts keep failing.
const STARVED_LOG_EVERY: Duration = Duration::from_secs(1);

/// A run of accepts failing for want of descriptors or memory, logged when it
/// starts, at most once a second while it lasts, and when it ends: not once per
/// 10 ms retry (a limit reached under a flood would otherwise fill the log).
/// `None` while accepts succeed.
#[derive(Default)]
struct Starved(Option<Run>);

/// One run of failed accepts.
struct Run {
    /// When it began.
    since: Instant,
    /// When it was last logged.
    logged: Instant,
    /// Failures so far.
    failures: u64,
}

impl Starved {
    fn failed(&mut self, shard: &Shard, listener: &ShardListener, e: &io::Error) {
        let now = Instant::now();
        let Some(run) = &mut self.0 else {
            self.0 = Some(Run {
                since: now,
                logged: now,
                failures: 1,
            });
            log_warn!(
                "shard {}: listener {}: accept: {e}; pausing new connections, retrying every {}ms",
                shard.index,
                listener.name,
                STARVED_PAUSE.as_millis()
            );
            return;
        };
        run.failures += 1;
        if now - run.logged >= STARVED_LOG_EVERY {
            log_warn!(
                "shard {}: listener {}: accept still failing: {e} ({} times in {:.1}s)",
                shard.index,
                listener.name,
                run.failures,
                (now - run.since).as_secs_f64()
            );
            run.logged = now;
        }
    }

    /// An accept succeeded: a run that was going on is over.
    #[inline]
    fn ended(&mut self, shard: &Shard, listener: &ShardListener) {
        if let Some(run) = self.0.take() {
            log_warn!(
                "shard {}: listener {}: accepting again after {} failed accepts in {:.1}s",
                shard.index,
                listener.name,
                run.failures,
                run.since.elapsed().as_secs_f64()
            );
        }
    }
}

/// Serves a connection on a task of its own: its TLS handshake if the listener
/// speaks TLS, then its listener's protocol.
fn serve(
    shard: Rc<Shard>,
    listener: Rc<ShardListener>,
    guard: ConnectionGuard,
    accepted: Accepted,
) {
    let Some(config) = listener.tls() else {
        match listener.protocol {
            ListenerProtocol::Http => monoio::spawn(http1::serve(shard, listener, guard, accepted)),
            ListenerProtocol::Tcp => monoio::spawn(tcp::serve(shard, listener, guard, accepted)),
            ListenerProtocol::H2c => monoio::spawn(http2::serve(shard, listener, guard, accepted)),
        };
        return;
    };
    monoio::spawn(async move {
        // Boxed: the handshake's state (rustls's, the reads' and the timer's) is
        // freed once it is over instead of staying in the task for its lifetime.
        let handshake = Box::pin(tls::accept(&shard, &guard, &config, accepted));
        let Some(accepted) = handshake.await else {
            return;
        };
        drop(config);
        // Each boxed, so that the task holds only the one this connection
        // runs: inline, every TLS connection's task was as large as the largest
        // of them (6,272 bytes, a TCP relay's), idle HTTP/1.1 ones included.
        match listener.protocol {
            // ALPN chose HTTP/2 (listed in the listener's `tls.alpn`).
            ListenerProtocol::Http if accepted.stream.alpn() == Some(b"h2") => {
                Box::pin(http2::serve(shard, listener, guard, accepted)).await
            }
            ListenerProtocol::Http => {
                Box::pin(http1::serve(shard, listener, guard, accepted)).await
            }
            ListenerProtocol::Tcp => Box::pin(tcp::serve(shard, listener, guard, accepted)).await,
            // Refused by the configuration check: h2c has no TLS.
            ListenerProtocol::H2c => {}
        }
    });
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
