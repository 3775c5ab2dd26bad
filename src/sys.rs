//! `sys`: every system call ringlb makes by hand, and so every `unsafe` block.
//!
//! Owns thin, safe wrappers over the few libc calls that std, socket2 and monoio do
//! not offer: `shutdown(2)` on a descriptor owned elsewhere, a non-blocking
//! `MSG_PEEK`, `SO_LINGER` zero, the process's huge-page flag and mimalloc's
//! collection. Each `unsafe` says why it is sound. Nothing here allocates or blocks.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::io;
use std::os::fd::RawFd;

/// Whether an error means this process ran out of something of its own (file
/// descriptors, memory, local ports) rather than that the peer failed: such a
/// failure says nothing about a backend's health.
pub fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd's notify protocol wants it.
pub fn monotonic_micros() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one `timespec` to the pointer, which points to
    // a live, writable local of that type.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1000
}

/// Which directions `shutdown` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// No more reads: a pending accept or read returns at once.
    Read,
    /// Both directions: the peer sees EOF, pending operations return.
    Both,
}

/// `shutdown(2)` on a socket descriptor that another part of the program owns,
/// to wake a pending accept or read without closing the descriptor under it.
///
/// The caller must know that `fd` is still open and still the socket it means
/// (its owner unregisters it before closing it): a stale number could name a
/// socket opened since. That is a logic rule, not a memory one, so the function is
/// safe to call.
pub fn shutdown(fd: RawFd, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown takes two integers and touches no memory of ours; on a
    // descriptor that is not a socket it fails with ENOTSOCK or EBADF.
    let rc = unsafe { libc::shutdown(fd, how) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a socket has nothing to read right now: no byte, no EOF, no error
/// (`recv` with `MSG_PEEK | MSG_DONTWAIT` would block). Consumes nothing.
pub fn nothing_to_read(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv writes at most 1 byte into `byte`, which outlives the call; `fd`
    // is open for the duration of the call (the caller holds its owner).
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Sets `SO_LINGER` to zero, so that closing the socket sends a reset instead of
/// a FIN (the origin's `/reset` route).
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from `linger`, which
    // outlives the call; it writes nothing of ours.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `prctl(PR_SET_THP_DISABLE)`: no transparent huge pages for this process.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes no memory
    // the program can see; it sets a flag on this process's address space.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `prctl(PR_SET_THP_DISABLE, 0)`: transparent huge pages allowed again.
pub fn enable_transparent_huge_pages() -> io::Result<()> {
    // SAFETY: as above: integer arguments only, a flag on this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mi_collect(false)`: mimalloc hands memory this thread freed a while ago back
/// to the kernel.
pub fn mimalloc_collect() {
    // SAFETY: mi_collect takes a flag and works on the calling thread's own heap;
    // it is safe to call at any time from any thread, including one whose heap was
    // never used.
    unsafe { libmimalloc_sys::mi_collect(false) };
}
