//! # foldswap — the backend
//!
//! frontswap's five operations (`init`, `store`, `load`, `invalidate_page`,
//! `invalidate_area`) over foldswap's cores, for the kernel glue and the userspace
//! command alike. `no_std`, `core` only by default.
//!
//! ## The store pipeline, cheapest first
//!
//! 1. **Same-filled.** A page that is one 64-bit word repeated (zero included) is
//!    kept as that word in its offset slot: no pool space, no entry.
//! 2. **Identical.** The page's xxh3-64 keys the dedup index (the merge crate's
//!    stable index). A hash match is only a candidate: the stored page is compared
//!    byte for byte (an lz4 copy against its compressed stream, without decoding it);
//!    only then does the offset take a reference to it. An
//!    identical page is never compressed twice.
//! 3. **Compressed.** Otherwise the page is compressed (lz4 by default) with the
//!    worker's scratch, *outside* every lock, and the bytes go into the pool as a new
//!    entry. A page that compresses worse than `max_compressed_len` is kept raw or
//!    rejected, by policy. A full pool rejects with `PoolFull`: the host writes the
//!    page to its swap device and nothing is lost. Before it is full, a scanner
//!    given the host's swap device writes the coldest pages back to it
//!    ([`writeback`]), so stores go on succeeding.
//!
//! 4. **Pressure.** Pool growth past `wake_watermark_bytes` since the scanner's last
//!    burst wakes the scanner through foldswap-wake: one atomic operation when it is
//!    already awake or notified; the store path never waits for it.
//!
//! ## The scanner
//!
//! Similar pages (Difference Engine's patching) and cold pages (recompression with
//! the host's cold codec: libzstd in userspace, the kernel's `lib/zstd` in the
//! module, alone or several neighbours as one cold block) are the scanner's
//! background work, not the store path's: a patch attempt costs about one more lz4 compress per store for a few
//! percent of bytes (measured in `docs/delta.md`). The host runs
//! [`Backend::run_scanner`] on a thread of its own (kernel: a kthread); the ladder
//! (foldswap-ladder) sizes its batches from a CPU budget and the measured cost per
//! page, each swap area being one ladder region. Entries are re-encoded only if they
//! are still what was read (generation check), so a concurrent store, load or
//! invalidate is never disturbed, and every re-encoded page still loads exactly.
//!
//! ## State and locks
//!
//! ```text
//!   areas[type] ── shards[offset] : Mutex<OffsetTable>   offset → SameFilled(word) | Entry(key)
//!                                        │
//!   content : Mutex<Content> ◄───────────┘   entries (refcounted), dedup index, pool
//! ```
//!
//! Lock order is offset shard, then content; the content lock is never held while
//! taking an offset lock. `load` holds the offset's lock while it copies the entry's
//! bytes out under the content lock, so a concurrent replacement cannot free them
//! mid-copy, then decodes outside both. Every store, load and invalidate is safe
//! under any interleaving; frontswap's callers never race on one offset, but the
//! backend does not rely on it.
//!
//! ## Modules
//!
//! | module | what it does |
//! |---|---|
//! | `backend` | the five operations, the limit, statistics |
//! | [`area`], [`offsets`] | swap areas, their sharded offset tables of 8-byte slots |
//! | [`content`] | entries, the dedup index and the pool behind the content lock |
//! | [`block`] | cold blocks: runs of cold pages compressed as one frame |
//! | [`decode`] | from a stored object (and its base) to page bytes, and the dedup byte check |
//! | [`domain`] | dedup domains: which pages may be joined with which |
//! | `scanner` | the background rounds: ageing, patching, recompression, compaction |
//! | [`writeback`] | the coldest pages to the swap device as the pool nears its limit |
//! | `tunables` | the scanner's tunables, staged through foldswap-wake |
//! | `scratch`, `in_place` | per-worker memory; building large state in place |
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod area;
mod backend;
pub mod block;
pub mod content;
pub mod decode;
pub mod domain;
mod in_place;
pub mod offsets;
pub mod refused;
mod scanner;
mod scratch;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;
mod tunables;
pub mod writeback;

pub use backend::{Backend, BytesHeld, Census, Config, Encoding, StoreKind};
pub use domain::{DedupScope, Domain, DomainCharges};
pub use foldswap_mem::Error;
pub use foldswap_pool::Clock;
#[cfg(feature = "alloc")]
pub use foldswap_pool::DeflateCodec;
#[cfg(feature = "std")]
pub use foldswap_pool::StdClock;
#[cfg(feature = "zstd")]
pub use foldswap_pool::ZstdCodec;
pub use foldswap_pool::{ColdCodec, ColdKind, DefaultColdCodec, NoColdCodec};
#[cfg(feature = "std")]
pub use foldswap_wake::StdParker;
pub use foldswap_wake::{Parker, ScannerState, WakeStats};
pub use scanner::BurstReport;
pub use scratch::Scratch;
pub use stats::{Snapshot, Stats};
pub use tunables::{DEFAULT_BLOCK_PAGES, MAX_COLD_LEVEL, ScanTunables};
pub use writeback::{SwapDevice, VictimClass, WritebackReport};
