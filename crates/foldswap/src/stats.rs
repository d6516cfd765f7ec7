//! Statistics, in the vocabulary of zswap and KSM.
//!
//! Counters are relaxed atomics bumped on the paths they count; a [`Snapshot`] reads
//! them all. They are for people and hosts to read (debugfs, the `foldswap` command),
//! never for deciding anything.

use foldswap_mem::sync::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])+ $name:ident,)*) => {
        /// Live counters (relaxed atomics).
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[doc = $doc])+ pub(crate) $name: AtomicU64,)*
        }

        /// A copy of every counter at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct Snapshot {
            $($(#[doc = $doc])+ pub $name: u64,)*
        }

        impl Stats {
            /// Read every counter.
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// The counters as `(name, value)` pairs, in declaration order.
            pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
                $(f(stringify!($name), self.$name.load(Ordering::Relaxed));)*
            }
        }
    };
}

counters! {
    /// Pages currently stored (every swap offset that holds a page).
    stored_pages,
    /// Stored pages that are one repeated word (zero included): no pool space.
    same_filled_pages,
    /// Stored pages that reference an identical, already stored page.
    duplicate_pages,
    /// Distinct contents kept as a delta against a similar stored page.
    patched_pages,
    /// Distinct contents kept compressed (or raw) in the pool.
    compressed_pages,
    /// Distinct contents kept in cold blocks (compressed with their neighbours).
    blocked_pages,
    /// Of the distinct contents: those no offset holds any more, kept as the base
    /// of patched pages until their last dependent goes (so same-filled +
    /// duplicate + patched + compressed + blocked = stored + base-only).
    base_only_pages,
    /// Stores that succeeded (zswap's "written").
    written_pages,
    /// Loads that succeeded.
    loaded_pages,
    /// Of those: loads that decoded a cold block's frame (the page's own, or the
    /// block of a delta's base); a load of a page of the block its worker decoded
    /// last copies the page without decoding and is not counted.
    block_loads,
    /// Stores that found an identical page (dedup hits), cumulative.
    dedup_hits,
    /// Stores rejected because the pool limit was reached (zswap's
    /// `pool_limit_hit`).
    reject_pool_full,
    /// Pages written back to the swap device to make room (zswap's
    /// `written_back_pages`).
    written_back_pages,
    /// Writeback victims skipped because the device had their slot busy.
    writeback_busy,
    /// Writeback victims skipped because their offset changed before the claim.
    writeback_raced,
    /// Writeback victims left in place because their bytes could not be decoded.
    writeback_errors,
    /// Cold pages the host asked to have written back under memory pressure (the
    /// kernel's shrinker), cumulative.
    writeback_requested_pages,
    /// Stores rejected because the page provider had no memory.
    reject_alloc_fail,
    /// Stores rejected because the page compressed too poorly (policy: reject).
    reject_compress_poor,
    /// Pages stored raw because they compressed too poorly (policy: keep raw).
    incompressible_kept,
    /// Loads of an offset that holds nothing.
    load_not_found,
    /// Pages invalidated one by one.
    invalidated_pages,
    /// Swap areas invalidated whole.
    invalidated_areas,
    /// Byte comparisons spent confirming duplicates.
    dedup_comparisons,
    /// Hash matches whose bytes differed.
    dedup_collisions,
    /// Scanner rounds run.
    scanner_rounds,
    /// Times the store path woke the scanner (pressure notifications that woke it).
    scanner_wakeups,
    /// Entries the scanner recompressed with a stronger codec.
    recompressed_pages,
    /// Cold blocks the scanner formed, cumulative.
    blocks_formed,
    /// Pages the scanner moved out of cold blocks with holes (into new blocks,
    /// alone, or as deltas), cumulative.
    block_rewrites,
    /// Lone entries the scanner moved to lower pages of the entries' slab, so
    /// that the slab packs down after a storm, cumulative.
    entries_moved,
    /// Pages the scanner examined.
    scanned_pages,
    /// Pages the scanner skipped on an error (corrupt bytes, a failed decode): a
    /// vanished or changed entry is not one.
    scanner_page_errors,
    /// Scanner bursts ended early by an error of the ladder's bookkeeping (the
    /// scanner sleeps and tries again).
    scanner_burst_errors,
    /// Times a re-encode or compaction waited for loads decoding in place.
    scanner_waits_for_loads,
    /// Releases of a stored page that failed or found the books wrong (a stale
    /// entry, a pool object that would not free, a base without dependents).
    release_errors,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Snapshot {
    /// The two sides of the counters' identity, equal whenever no operation is
    /// in flight: every stored offset counted once by kind (same-filled, the
    /// first sharer of a distinct content kept compressed, patched or in a
    /// block, or a duplicate of one), and the stored pages plus the contents kept
    /// only as delta bases.
    pub fn kinds_and_stored(&self) -> (u64, u64) {
        (
            self.same_filled_pages
                + self.compressed_pages
                + self.patched_pages
                + self.blocked_pages
                + self.duplicate_pages,
            self.stored_pages + self.base_only_pages,
        )
    }
}
