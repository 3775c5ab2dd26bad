//! `proxy::tunnel`: relaying bytes both ways between a client and a backend.
//!
//! Owns the relay every tunnel uses (TCP listeners' connections, upgraded
//! WebSocket connections): two pumps on the shard's runtime, one per direction,
//! through owned buffers. A FIN is passed on as a half-close and the other
//! direction keeps going; a reset or error on one side resets the other
//! (`SO_LINGER` 0). A pump with nothing to read for `PARK_AFTER` drops its buffer
//! and waits on a one-byte read, so an idle tunnel holds no buffers. Bytes are
//! counted once delivered. The idle timeout is the shard's sweep, which shuts both
//! sockets down when no byte has moved for `timeouts.tunnel_idle`: no timer per
//! tunnel. Also counts and logs tunnels ([`run`], [`finish`]). Does not pick
//! backends or connect: its callers do.

use std::future::{poll_fn, Future};
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::io::Canceller;

use crate::cluster::backend::Backend;
use crate::observe::access_log::LogNames;
use crate::observe::tunnels::{TunnelEnd, TunnelRecord, TunnelStats};
use crate::proxy::PARK_AFTER;
use crate::shard::{ConnectionGuard, Shard};
use crate::stream::{Cancelable, ReadHalf, Stream, WriteHalf};
use crate::sys;

/// Read size of a pump while bytes flow.
const TUNNEL_BUFFER: usize = 64 * 1024;

/// Which way a pump copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to backend.
    Up,
    /// Backend to client.
    Down,
}

/// Why a pump stopped early.
#[derive(Debug, Clone, Copy)]
enum PumpError {
    /// Reading from or writing to the client failed (reset, or gone).
    Client,
    /// Reading from or writing to the backend failed.
    Backend,
}

/// What a relay moved, and how it ended.
#[derive(Debug, Clone, Copy)]
struct Relayed {
    /// Bytes from the client to the backend.
    pub up: u64,
    /// Bytes from the backend to the client.
    pub down: u64,
    /// How it ended.
    pub end: TunnelEnd,
}

/// The tunnel's shared view for both pumps: counters and the idle deadline.
struct Meter<'a> {
    shard: &'a Shard,
    guard: &'a ConnectionGuard,
    upstream_fd: i32,
    idle: Duration,
    shard_stats: &'a TunnelStats,
    backend_stats: &'a TunnelStats,
    up: std::cell::Cell<u64>,
    down: std::cell::Cell<u64>,
}

impl Meter<'_> {
    /// A byte moved: the idle deadline starts again.
    fn active(&self) {
        self.shard
            .set_tunnel(self.guard, self.upstream_fd, Instant::now() + self.idle);
    }

    /// Counts `n` bytes delivered one way.
    fn delivered(&self, way: Way, n: usize) {
        let n = n as u64;
        let up = way == Way::Up;
        let total = if up { &self.up } else { &self.down };
        total.set(total.get() + n);
        self.shard_stats.relayed(up, n);
        self.backend_stats.relayed(up, n);
    }
}

/// The two sockets of a tunnel, and what the backend and the client must get
/// before anything is relayed.
pub struct Ends {
    pub client: Stream,
    pub upstream: Stream,
    /// Bytes of ringlb's own for the backend first (a PROXY header): not counted
    /// as the client's.
    pub header: Vec<u8>,
    /// Bytes already read from the client (sent after its upgrade request, or
    /// after its PROXY header).
    pub to_backend: Vec<u8>,
    /// Bytes already read from the backend (frames that came with its 101).
    pub to_client: Vec<u8>,
}

/// Runs a tunnel to `backend` to its end, counted as open (for the shard and the
/// backend) meanwhile; fills in `record`'s bytes and ending.
pub async fn run(
    shard: &Shard,
    guard: &ConnectionGuard,
    ends: Ends,
    backend: &Backend,
    record: &mut TunnelRecord,
) {
    let stats = &backend.stats.tunnels;
    stats.open();
    shard.stats.tunnels.counts.open();
    let Relayed { up, down, end } = relay(shard, guard, ends, stats).await;
    stats.close();
    shard.stats.tunnels.counts.close();
    record.bytes_up = up;
    record.bytes_down = down;
    record.end = end;
}

/// Counts a finished tunnel (opened or not) and writes its access-log line.
pub fn finish(
    shard: &Shard,
    client: SocketAddr,
    record: &TunnelRecord,
    backend: Option<&Backend>,
    names: &LogNames<'_>,
) {
    let now = Instant::now();
    shard
        .stats
        .record_tunnel(record, backend.map(|b| &b.stats), now);
    if let Some(log) = shard.access_log.borrow().as_ref() {
        log.write_tunnel(client, record, names, now);
    }
}

/// Relays between the two ends until both directions have ended, or one side
/// fails (then the other is reset), or no byte moves for `timeouts.tunnel_idle`.
async fn relay(
    shard: &Shard,
    guard: &ConnectionGuard,
    ends: Ends,
    backend_stats: &TunnelStats,
) -> Relayed {
    let Ends {
        client,
        upstream,
        header,
        to_backend,
        to_client,
    } = ends;
    let idle = shard.settings().tunnel_idle;
    let client_fd = client.tcp().as_raw_fd();
    let upstream_fd = upstream.tcp().as_raw_fd();
    let meter = Meter {
        shard,
        guard,
        upstream_fd,
        idle,
        shard_stats: &shard.stats.tunnels.counts,
        backend_stats,
        up: std::cell::Cell::new(0),
        down: std::cell::Cell::new(0),
    };
    shard.set_tunnel(guard, upstream_fd, Instant::now() + idle);
    let (mut client_read, mut client_write) = client.into_halves();
    let (mut upstream_read, mut upstream_write) = upstream.into_halves();
    let failed = {
        let up = pin!(pump(
            &meter,
            Way::Up,
            [header, to_backend],
            &mut client_read,
            &mut upstream_write
        ));
        let down = pin!(pump(
            &meter,
            Way::Down,
            [Vec::new(), to_client],
            &mut upstream_read,
            &mut client_write
        ));
        both_or_first_error(up, down).await
    };
    let end = match failed {
        // The side that failed was reset or is gone: reset the other as well.
        Some(PumpError::Client) => {
            let _ = sys::set_linger_zero(upstream_fd);
            TunnelEnd::ClientReset
        }
        Some(PumpError::Backend) => {
            let _ = sys::set_linger_zero(client_fd);
            TunnelEnd::BackendReset
        }
        None => TunnelEnd::Closed,
    };
    // When the shard ended it (idle, or cut), that is why, whatever the pumps saw
    // as the sockets went down.
    let end = shard.tunnel_ended(guard).unwrap_or(end);
    // Forget the upstream descriptor before the sockets close.
    shard.set_idle(guard, false);
    // Put the halves together again: a write half dropped alone would shut down
    // writing, which sends a FIN ahead of the reset. Both sockets close here.
    Stream::reunite(client_read, client_write);
    Stream::reunite(upstream_read, upstream_write);
    Relayed {
        up: meter.up.get(),
        down: meter.down.get(),
        end,
    }
}

/// Waits for both pumps to end, or for the first to fail (the other is dropped:
/// its pending operation is cancelled, and the tunnel is being reset anyway).
async fn both_or_first_error<U, D>(
    mut up: std::pin::Pin<&mut U>,
    mut down: std::pin::Pin<&mut D>,
) -> Option<PumpError>
where
    U: Future<Output = Result<(), PumpError>>,
    D: Future<Output = Result<(), PumpError>>,
{
    let mut up_done = false;
    let mut down_done = false;
    poll_fn(|cx| {
        if !up_done {
            if let Poll::Ready(result) = up.as_mut().poll(cx) {
                if let Err(e) = result {
                    return Poll::Ready(Some(e));
                }
                up_done = true;
            }
        }
        if !down_done {
            if let Poll::Ready(result) = down.as_mut().poll(cx) {
                if let Err(e) = result {
                    return Poll::Ready(Some(e));
                }
                down_done = true;
            }
        }
        if up_done && down_done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Copies one way until the source sends FIN (then half-closes the destination)
/// or either side fails. `first` is written before anything is read: ringlb's own
/// bytes (not counted), then bytes already read from the source.
async fn pump(
    meter: &Meter<'_>,
    way: Way,
    first: [Vec<u8>; 2],
    from: &mut ReadHalf,
    to: &mut WriteHalf,
) -> Result<(), PumpError> {
    let (read_failed, write_failed) = match way {
        Way::Up => (PumpError::Client, PumpError::Backend),
        Way::Down => (PumpError::Backend, PumpError::Client),
    };
    let [own, early] = first;
    for (bytes, counted) in [(own, false), (early, true)] {
        if bytes.is_empty() {
            continue;
        }
        let n = bytes.len();
        let (result, _) = to.write_all(bytes).await;
        result.map_err(|_| write_failed)?;
        if counted {
            meter.delivered(way, n);
        }
    }
    let mut canceller = Canceller::new();
    // Allocated while bytes flow, dropped while the direction is idle. (Not the
    // shard's pool of response buffers: those are of another size.)
    let mut buf = Some(Vec::with_capacity(TUNNEL_BUFFER));
    loop {
        let mut data = buf
            .take()
            .unwrap_or_else(|| Vec::with_capacity(TUNNEL_BUFFER));
        let n = match read_hot(from, &mut data, &mut canceller).await {
            Hot::Read(Ok(0)) => break,
            Hot::Read(Ok(n)) => n,
            Hot::Read(Err(_)) => return Err(read_failed),
            // Part of a TLS record: read on.
            Hot::Progress => {
                buf = Some(data);
                continue;
            }
            Hot::Idle => {
                // Nothing for a while: hold no buffer until a byte arrives.
                drop(data);
                from.release();
                let mut byte = Vec::<u8>::with_capacity(1);
                let read = from.read_cancelable(&mut byte, 1, Canceller::new().handle());
                match read.await {
                    Cancelable::Read(Ok(0)) => break,
                    Cancelable::Read(Ok(_)) => {}
                    Cancelable::Progress => {
                        buf = Some(byte);
                        continue;
                    }
                    Cancelable::Read(Err(_)) => return Err(read_failed),
                }
                data = byte;
                data.len()
            }
        };
        meter.active();
        let (result, written) = to.write_all(data).await;
        result.map_err(|_| write_failed)?;
        meter.delivered(way, n);
        if written.capacity() >= TUNNEL_BUFFER {
            buf = Some(written);
        }
    }
    // FIN from the source: pass it on, and let the other way run to its end. (It
    // fails only when the destination is gone, which its own pump reports.)
    let _ = to.shutdown().await;
    Ok(())
}

/// What a read on a hot pump came to.
enum Hot {
    /// Bytes, EOF or an error.
    Read(io::Result<usize>),
    /// Part of a TLS record, no bytes yet.
    Progress,
    /// Nothing for `PARK_AFTER`; the read was cancelled.
    Idle,
}

/// Reads into `buf`'s spare room; cancels the read (and takes its result, in case
/// bytes won the race) after `PARK_AFTER` with nothing.
async fn read_hot(from: &mut ReadHalf, buf: &mut Vec<u8>, canceller: &mut Canceller) -> Hot {
    buf.clear();
    let result = {
        let read = from.read_cancelable(buf, TUNNEL_BUFFER, canceller.handle());
        let mut read = pin!(read);
        monoio::select! {
            done = &mut read => done,
            _ = monoio::time::sleep(PARK_AFTER) => {
                *canceller = mem::take(canceller).cancel();
                read.await
            }
        }
    };
    match result {
        Cancelable::Read(Err(e)) if e.raw_os_error() == Some(libc::ECANCELED) => Hot::Idle,
        Cancelable::Read(other) => Hot::Read(other),
        Cancelable::Progress => Hot::Progress,
    }
}
