//! Regions: the host's ranges of pages, kept in a slab whose pages come from the host,
//! and the generation-checked handles the host names them by.

use foldswap_mem::SlabKey;

use super::report::RegionRound;

/// A region as the host knows it: a generation-checked handle.
///
/// A handle names its region only while the slab slot `index` holds a region of the
/// same `generation`; once the region is removed the handle is stale and every call
/// taking it fails with [`Error::InvalidHandle`](foldswap_mem::Error::InvalidHandle).
/// Generations count regions added (wrapping at 2^32), so a stale handle could only
/// name a newer region after 2^32 more regions were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionId {
    index: u32,
    generation: u32,
}

impl RegionId {
    pub(super) fn new(key: SlabKey, generation: u32) -> Self {
        RegionId {
            index: key.0,
            generation,
        }
    }

    /// The slot index (stable while the region lives).
    pub fn index(self) -> u32 {
        self.index
    }

    /// The region's slot in the ladder's slab.
    pub(super) fn key(self) -> SlabKey {
        SlabKey(self.index)
    }

    /// Whether this handle names `region` (the one in its slot).
    pub(super) fn names(self, region: &Region) -> bool {
        region.generation == self.generation
    }
}

/// A region in the ladder's slab: its size and tag, its place on the ladder, and its
/// results this round.
///
/// # Invariants
///
/// - `pages > 0` (an empty region is refused), and it never changes.
/// - The region is linked, through `prev` / `next`, in the list of rung `rung`, which
///   is a rung in use; `target_rung == rung` except inside a round's end (see
///   `promotion`).
#[derive(Debug)]
pub(super) struct Region {
    pub(super) generation: u32,
    pub(super) pages: u64,
    pub(super) tag: u64,
    pub(super) rung: u8,
    pub(super) target_rung: u8,
    pub(super) prev: Option<SlabKey>,
    pub(super) next: Option<SlabKey>,
    pub(super) round: RegionRound,
}
