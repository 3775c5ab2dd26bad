//! `proxy::tcp`: one connection of a TCP listener, from backend choice to close.
//!
//! Owns picking a backend of the listener's cluster (by its strategy; consistent
//! hashing by client address), connecting within `timeouts.connect`, trying other
//! backends up to `retry.max_retries` when connecting fails (nothing was sent, so
//! it is always safe), then handing both sockets to the relay. Counts and logs the
//! tunnel when it ends. Knows nothing of HTTP.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use crate::cluster::backend::{Backend, BackendId, InFlight};
use crate::cluster::balancer::{hash_ip, RequestContext};
use crate::cluster::Cluster;
use crate::config::Strategy;
use crate::log_debug;
use crate::observe::access_log::LogNames;
use crate::observe::stats::ShardStats;
use crate::observe::tunnels::{TunnelEnd, TunnelRecord};
use crate::protocol::proxy_header;
use crate::proxy::error::{ProxyError, Side};
use crate::proxy::proxied::{self, Accepted};
use crate::proxy::tunnel::{self, Ends};
use crate::proxy::MAX_TRIED;
use crate::shard::{ConnectionGuard, Serves, Shard, ShardListener};
use crate::stream::{Stream, TlsLogged};
use crate::upstream;

/// Serves one client connection of a TCP listener until its tunnel ends.
pub async fn serve(
    shard: Rc<Shard>,
    listener: Rc<ShardListener>,
    guard: ConnectionGuard,
    accepted: Accepted,
) {
    let Accepted {
        stream,
        client: peer,
        destination,
        early,
    } = accepted;
    let started = Instant::now();
    let tls = stream.tls_logged();
    let Serves::Tcp(Some(cluster)) = listener.serves() else {
        // A reload changed the listener under this connection: nothing to serve.
        return;
    };
    let mut record = TunnelRecord {
        started,
        attempts: 0,
        bytes_up: 0,
        bytes_down: 0,
        error: None,
        end: TunnelEnd::Failed,
    };
    let mut header = Vec::new();
    if let Some(version) = cluster.settings.send_proxy {
        let destination = proxied::destination(
            destination,
            || stream.tcp().local_addr().ok(),
            listener.address,
        );
        proxy_header::write(&mut header, version, peer, destination);
    }
    let backend = match connect(&shard, &cluster, peer, &header, &mut record).await {
        Ok((upstream, in_flight)) => {
            if matches!(upstream, Stream::Tls(_)) {
                // It went ahead of the handshake.
                header.clear();
            }
            let ends = Ends {
                client: stream,
                upstream,
                header,
                to_backend: early,
                to_client: Vec::new(),
            };
            tunnel::run(&shard, &guard, ends, in_flight.backend(), &mut record).await;
            Some(Rc::clone(in_flight.backend()))
        }
        Err((error, backend)) => {
            log_debug!(
                "shard {}: tcp client {peer} on {}: {error}",
                shard.index,
                listener.name
            );
            record.error = Some(error.kind());
            match error.side() {
                Side::Upstream => ShardStats::bump(&shard.stats.upstream_errors),
                _ => ShardStats::bump(&shard.stats.internal_errors),
            }
            backend
        }
    };
    let names = LogNames {
        listener: &listener.name,
        route: None,
        cluster: Some(&cluster.name),
        backend: backend.as_ref().map(|b| &*b.name),
        tls: tls.as_ref().map(TlsLogged::as_log),
        http2: false,
    };
    tunnel::finish(&shard, peer, &record, backend.as_deref(), &names);
}

/// Connects to a backend of `cluster`, trying others when connecting fails. On
/// failure, the error and the last backend tried.
async fn connect(
    shard: &Shard,
    cluster: &Cluster,
    peer: SocketAddr,
    proxy_header: &[u8],
    record: &mut TunnelRecord,
) -> Result<(Stream, InFlight), (ProxyError, Option<Rc<Backend>>)> {
    let settings = &cluster.settings;
    let tls = cluster.tls();
    let context = RequestContext {
        client_ip: peer.ip(),
        key_hash: if settings.balancer.strategy == Strategy::ConsistentHash {
            hash_ip(peer.ip())
        } else {
            0
        },
        now: record.started,
    };
    let mut tried = [0 as BackendId; MAX_TRIED];
    let mut tried_len = 0;
    let mut last: Option<(ProxyError, Rc<Backend>)> = None;
    loop {
        let selected = cluster
            .balancer
            .borrow()
            .select(&context, &tried[..tried_len]);
        let Some(backend) = selected else {
            return Err(match last {
                Some((error, backend)) => (error, Some(backend)),
                None => (ProxyError::NoBackend, None),
            });
        };
        backend.note_selected();
        ShardStats::bump(&backend.stats.attempts);
        if tried_len > 0 {
            ShardStats::bump(&backend.stats.retries);
            ShardStats::bump(&shard.stats.upstream_retries);
        }
        record.attempts += 1;
        // Counted from the first connect, so least-conn sees connections opening.
        let in_flight = InFlight::start(&backend);
        let connect_tls = tls.as_deref().map(|tls| (tls, proxy_header));
        match upstream::connect(backend.address, settings.connect_timeout, connect_tls).await {
            Ok(stream) => {
                ShardStats::bump(&shard.stats.upstream_connects);
                shard.report_outcome(cluster, &backend, true);
                return Ok((stream, in_flight));
            }
            Err(error) => {
                drop(in_flight);
                if error.side() == Side::Upstream {
                    ShardStats::bump(&backend.stats.failures);
                    shard.report_outcome(cluster, &backend, false);
                }
                log_debug!(
                    "shard {}: tcp connect to {} failed ({error})",
                    shard.index,
                    backend.name
                );
                tried[tried_len] = backend.id;
                tried_len += 1;
                if tried_len > settings.max_retries as usize || tried_len == MAX_TRIED {
                    return Err((error, Some(backend)));
                }
                last = Some((error, backend));
            }
        }
    }
}
