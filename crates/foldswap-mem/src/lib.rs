//! # foldswap-mem — the memory foundation of foldswap's cores
//!
//! Every foldswap core runs in two worlds: a userspace host (tests, the `foldswap`
//! command) and the Linux kernel, where there is no global allocator the cores may
//! assume, the stack is 16 KiB, and any allocation may fail. This crate gives the
//! other cores the few things they need to live in both:
//!
//! - [`Page`]: one 4096-byte, 4096-aligned page of memory.
//! - [`PageProvider`]: the host's fallible page allocator, never sleeping (the kernel
//!   module backs it with a page mempool refilled with `GFP_NOWAIT | __GFP_HIGH`,
//!   userspace with the std allocator: [`StdPageProvider`] under the `std` feature).
//! - [`Slab`]: fixed-size objects (tree nodes, pool handles, index entries) carved from
//!   provider pages; the lowest free slot is taken and emptied pages go back, and a
//!   per-page occupancy bitmap makes a stale key reported, never dereferenced.
//! - [`ReaderCount`]: readers that read outside a lock, and the writers (under it)
//!   that wait them out before freeing or moving what they read.
//! - [`sync`]: the one place atomics come from, switching between `core` and loom
//!   (`RUSTFLAGS="--cfg loom"`) so concurrency can be model-checked.
//! - [`Error`]: the error type shared by all cores.
//!
//! The crate is `#![no_std]` and uses only `core`; nothing in it panics on a
//! caller-reachable path.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

mod error;
mod page;
mod provider;
mod readers;
mod slab;
pub mod sync;

pub use error::Error;
pub use page::{PAGE_SIZE, PAGE_WORDS, Page, as_page_bytes, as_page_bytes_mut, word_of};
#[cfg(feature = "std")]
pub use provider::StdPageProvider;
pub use provider::{CountingProvider, PageProvider};
pub use readers::{ReaderCount, ReaderGuard};
pub use slab::{DIR_ENTRIES, DIR_ROOTS, Slab, SlabKey, SlabLink};
