//! `shard::runtime`: the io driver a shard runs on.
//!
//! Owns the choice between io_uring and epoll (probing the kernel, because monoio's
//! fusion builder does not fall back by itself), the ring's setup flags, and
//! building a runtime on the calling thread. Called once per shard thread at start
//! (and by the origin and the relay benchmark); never on the request path.

use std::io;

use crate::config::IoMode;
use crate::log_debug;

/// The io driver every shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// io_uring, the default.
    IoUring,
    /// epoll, for kernels or containers that refuse io_uring.
    Epoll,
}

impl Driver {
    /// The name used in logs and statistics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Error from starting shards.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// `server.io = "io_uring"` was forced but the kernel refused it.
    #[error("io_uring is not available ({0}); set server.io = \"epoll\" or \"auto\"")]
    IoUringUnavailable(io::Error),
    /// The thread could not be spawned.
    #[error("cannot spawn shard thread: {0}")]
    Spawn(io::Error),
}

/// Chooses the driver: io_uring when the kernel allows it (and `mode` permits),
/// else epoll. Builds a throwaway ring to find out, because monoio's fusion builder
/// does not fall back by itself when the ring cannot be created.
pub fn choose_driver(mode: IoMode) -> Result<(Driver, Option<io::Error>), ShardError> {
    match mode {
        IoMode::Epoll => Ok((Driver::Epoll, None)),
        IoMode::IoUring => match probe_io_uring() {
            Ok(()) => Ok((Driver::IoUring, None)),
            Err(e) => Err(ShardError::IoUringUnavailable(e)),
        },
        IoMode::Auto => match probe_io_uring() {
            Ok(()) => Ok((Driver::IoUring, None)),
            Err(e) => Ok((Driver::Epoll, Some(e))),
        },
    }
}

/// Builds a throwaway ring on a throwaway thread: a thread that creates a ring keeps
/// io_uring task state, and the caller's thread should not.
fn probe_io_uring() -> io::Result<()> {
    std::thread::Builder::new()
        .name("ringlb-probe".into())
        .spawn(|| {
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .build()
                .map(drop)
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")))
}

/// How a shard's ring runs completion work, best first. Completions for sockets
/// (a read that found data, say) are finished by "task work" on the ring's thread.
/// By default the kernel interrupts the thread for it at once, which costs an IPI
/// and socket-lock contention per completion; these setups let the thread run it in
/// batches when it next enters the kernel, which at saturation cut the proxy's CPU
/// per request by about a third (PERF.md). Older kernels refuse the newer flags with
/// `EINVAL`, so the shard walks down the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSetup {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1+): task work runs only when the
    /// thread waits for completions, which monoio does each time it parks.
    DeferTaskrun,
    /// `COOP_TASKRUN | TASKRUN_FLAG` (Linux 5.19+): no interrupt; task work runs
    /// on the thread's next system call.
    CoopTaskrun,
    /// The kernel's default.
    Plain,
}

impl RingSetup {
    /// Every setup, best first.
    pub const LADDER: [RingSetup; 3] = [
        RingSetup::DeferTaskrun,
        RingSetup::CoopTaskrun,
        RingSetup::Plain,
    ];

    fn builder(self) -> io_uring::Builder {
        let mut builder = io_uring::IoUring::builder();
        match self {
            RingSetup::DeferTaskrun => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            RingSetup::CoopTaskrun => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            RingSetup::Plain => {}
        }
        builder
    }

    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RingSetup::DeferTaskrun => "defer-taskrun",
            RingSetup::CoopTaskrun => "coop-taskrun",
            RingSetup::Plain => "plain",
        }
    }
}

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// Builds an io_uring runtime with the first of `setups` the kernel accepts. Must
/// be called on the thread that will run it (the ring may be single-issuer).
fn uring_runtime(setups: &[RingSetup]) -> io::Result<(UringRuntime, RingSetup)> {
    let mut refused = None;
    for &setup in setups {
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(4096)
            .uring_builder(setup.builder())
            .enable_timer()
            .build()
        {
            Ok(runtime) => return Ok((runtime, setup)),
            // EINVAL: this kernel does not know the flags; try the next setup.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => refused = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(refused.unwrap_or_else(|| io::Error::other("no io_uring setup to try")))
}

/// Runs `future` to completion on a fresh runtime of the given driver, with timers.
pub fn run_on<F: std::future::Future>(driver: Driver, future: F) -> io::Result<F::Output> {
    match driver {
        Driver::IoUring => {
            let (mut runtime, setup) = uring_runtime(&RingSetup::LADDER)?;
            log_debug!("io_uring ring setup: {}", setup.as_str());
            Ok(runtime.block_on(future))
        }
        Driver::Epoll => Ok(monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?
            .block_on(future)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    use std::time::Duration;

    /// Every ring setup this kernel accepts must carry a TCP round trip: a setup
    /// whose completions were never reaped would hang here until the timeout.
    #[test]
    fn every_accepted_ring_setup_carries_a_round_trip() {
        let mut accepted = 0;
        for setup in RingSetup::LADDER {
            let Ok((mut runtime, chosen)) = uring_runtime(&[setup]) else {
                continue;
            };
            assert_eq!(chosen, setup);
            accepted += 1;
            let echoed = runtime.block_on(async {
                let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let address = listener.local_addr().unwrap();
                let server = monoio::spawn(async move {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let (n, buf) = stream.read(vec![0u8; 16]).await;
                    let n = n.unwrap();
                    let (result, _) = stream.write_all(buf[..n].to_vec()).await;
                    result.unwrap();
                });
                let mut client = monoio::net::TcpStream::connect_addr(address).await.unwrap();
                let (result, _) = client.write_all(b"ping".to_vec()).await;
                result.unwrap();
                let read =
                    monoio::time::timeout(Duration::from_secs(5), client.read(vec![0u8; 16]));
                let (n, buf) = read.await.expect("a completion was never reaped");
                server.await;
                buf[..n.unwrap()].to_vec()
            });
            assert_eq!(echoed, b"ping", "{}", setup.as_str());
        }
        assert!(accepted > 0, "the kernel refused every io_uring setup");
    }
}
