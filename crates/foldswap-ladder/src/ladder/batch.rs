//! The scan handshake: what the ladder hands the host ([`Next`], [`Batch`]) and what
//! the host hands back ([`BatchResult`]).

use super::region::RegionId;
use crate::strength::HashWork;

/// Pages to scan: `count` pages of `region`, from `first_page`, every `stride` pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Serial number; [`Ladder::complete_batch`](crate::Ladder::complete_batch)
    /// checks it.
    pub id: u64,
    /// The rung the batch is charged to.
    pub rung: u8,
    /// The region to scan.
    pub region: RegionId,
    /// The host's tag of that region (given to
    /// [`Ladder::add_region`](crate::Ladder::add_region)).
    pub tag: u64,
    /// Page index in the region of the first page.
    pub first_page: u64,
    /// Distance between pages.
    pub stride: u64,
    /// Pages in the batch (≥ 1).
    pub count: u32,
    /// The batch took the rung's cursor past its last page: completing it finishes
    /// the pass (if the pass is still `pass_serial`).
    pub(crate) ends_pass: bool,
    /// The rung's pass the batch belongs to.
    pub(crate) pass_serial: u64,
    /// The host's time when the batch was handed out.
    pub(crate) issued_ns: u64,
}

impl Batch {
    /// The page indexes (within the region) to scan, in order.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        (0..u64::from(self.count))
            .map_while(|i| i.checked_mul(self.stride)?.checked_add(self.first_page))
    }
}

/// What the host did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// Pages actually scanned (≤ the batch's count; fewer if the region shrank).
    pub pages_scanned: u32,
    /// Of those, pages the scan changed (≤ `pages_scanned`): merged with an identical
    /// page, and on the swap face also patched against a similar page or recompressed.
    /// The ladder adds them to [`RegionRound::changed`](crate::RegionRound::changed)
    /// and [`LadderStats::pages_changed`](crate::LadderStats::pages_changed).
    pub pages_changed: u32,
    /// Of `pages_scanned`, slots that held nothing to scan: on the swap face an
    /// empty offset or a same-filled one (no stored bytes), on the resident face a
    /// page not present. They count for cost and cover, not for the region's dedup
    /// ratio: a sparse swap area whose stored pages all improve still climbs.
    pub pages_empty: u32,
    /// CPU time the batch took, ns (hashing, tree lookups, merging).
    pub cost_ns: u64,
    /// Hashing work, for the strength adapter.
    pub hash: HashWork,
}

/// What the host should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Scan this batch, then [`Ladder::complete_batch`](crate::Ladder::complete_batch).
    Scan(Batch),
    /// Nothing is due: sleep until this time (ns, on the host's clock).
    Sleep {
        /// When to call [`Ladder::next_batch`](crate::Ladder::next_batch) again.
        until_ns: u64,
    },
    /// The round is over: flush per-round state (the unstable tree), then call
    /// [`Ladder::end_round`](crate::Ladder::end_round).
    RoundEnd,
}
