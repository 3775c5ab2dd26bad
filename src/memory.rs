//! `memory`: the process's memory policy.
//!
//! Owns two decisions about memory the allocator holds: whether the kernel may back
//! the heap with transparent huge pages, and handing freed memory back to the kernel.
//! Called by `server::start` once, and by each shard once per statistics tick.
//! Never allocates, never blocks, and touches nothing that a shard's requests use.
//!
//! The `ringlb` binary's global allocator is mimalloc (`main.rs`); so is what these
//! functions act on. Under another allocator, `release_freed` does nothing.

use std::io;

/// Turns transparent huge pages off for this process: mimalloc asks the kernel for
/// huge pages on its heap (`MADV_HUGEPAGE`), and a 2 MiB page is resident in full once
/// touched. With many idle connections, each holding a few hundred bytes, RSS grew
/// in 2 MiB steps to about 2 KB per connection. The flag belongs to the process and
/// lasts for its lifetime; children inherit it.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    crate::sys::disable_transparent_huge_pages()
}

/// Hands memory this thread freed at least mimalloc's purge delay ago (1 s) back to
/// the kernel. Without it, a burst (thousands of connections each holding buffers
/// for a moment) stays resident after the buffers are freed, because mimalloc purges
/// only when asked or under allocation pressure. Cheap enough for once a second: on
/// the benchmark machine no change in CPU per request could be measured (PERF.md).
pub fn release_freed() {
    crate::sys::mimalloc_collect();
}
