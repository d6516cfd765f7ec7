//! A rung: the list of regions on it, its CPU credit, and the state of its pass.
//! Regions are linked into their rung's list here, and only here.

use foldswap_mem::{PageProvider, SlabKey};

use super::Ladder;
use super::report::RungStats;
use crate::tunables::MAX_RUNGS;

/// Where a rung's pass stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PassState {
    /// No pass under way; the next batch of this rung starts one.
    Idle,
    /// Sweeping: the next page is `offset` in region `region`.
    Running {
        region: SlabKey,
        offset: u64,
        /// Pages of the rung before the cursor (the pass's linear position).
        covered: u64,
        started_ns: u64,
    },
    /// The cursor went past the last page; the batch that took it there is out.
    Draining { started_ns: u64 },
}

/// One rung of the ladder.
///
/// # Invariants
///
/// - `head` .. `tail` is a doubly linked list (through [`Region::prev`] /
///   [`Region::next`]) of exactly the live regions whose `rung` is this rung, in the
///   order they joined it; `regions` is its length and `pages` the sum of their pages.
/// - `pass` is `Running { region, offset, .. }` only with `region` a live region of
///   this rung and `offset < region.pages` (the cursor's invariant, see `cursor`).
/// - `pass_serial` grows by one whenever the pass ends or is abandoned, so a batch
///   from an earlier pass cannot finish the current one.
///
/// [`Region::prev`]: super::region::Region::prev
/// [`Region::next`]: super::region::Region::next
#[derive(Debug, Clone, Copy)]
pub(super) struct Rung {
    pub(super) head: Option<SlabKey>,
    pub(super) tail: Option<SlabKey>,
    pub(super) regions: u32,
    pub(super) pages: u64,
    /// CPU time this rung may still spend, ns; negative after a batch cost more than
    /// the rung had (see `budget`).
    pub(super) credit_ns: i64,
    pub(super) pass: PassState,
    pub(super) pass_serial: u64,
    pub(super) passes_this_round: u32,
    pub(super) stats: RungStats,
}

impl Rung {
    pub(super) const EMPTY: Rung = Rung {
        head: None,
        tail: None,
        regions: 0,
        pages: 0,
        credit_ns: 0,
        pass: PassState::Idle,
        pass_serial: 0,
        passes_this_round: 0,
        stats: RungStats {
            passes: 0,
            pages_scanned: 0,
            cpu_ns: 0,
            step: 0,
            last_pass_ns: 0,
            longest_pass_ns: 0,
        },
    };

    /// The pass has handed out its last batch and waits for it to come back.
    pub(super) fn is_draining(&self) -> bool {
        matches!(self.pass, PassState::Draining { .. })
    }

    /// Drop the pass under way (if any): the next batch starts a new one.
    pub(super) fn reset_pass(&mut self) {
        self.pass = PassState::Idle;
        self.pass_serial += 1;
    }
}

impl<P: PageProvider> Ladder<P> {
    /// Call `visit` with every region, rung by rung from the bottom, each rung's list
    /// in order. The region after the visited one is read before the visit, so `visit`
    /// may move the visited region to another rung; a region moved to a rung further
    /// up is visited again there.
    pub(super) fn for_each_region(&mut self, mut visit: impl FnMut(&mut Self, SlabKey)) {
        for rung in 0..MAX_RUNGS {
            let mut cursor = self.rungs.get(rung).and_then(|r| r.head);
            while let Some(key) = cursor {
                let Some(region) = self.regions.get(key) else {
                    break;
                };
                cursor = region.next;
                visit(self, key);
            }
        }
    }

    /// Append region `key` (not linked anywhere) to rung `rung`'s list.
    pub(super) fn link_tail(&mut self, key: SlabKey, rung: usize) {
        let Some(r) = self.rungs.get(rung) else {
            return;
        };
        let old_tail = r.tail;
        let Some(region) = self.regions.get_mut(key) else {
            return;
        };
        region.rung = rung as u8;
        region.target_rung = rung as u8;
        region.prev = old_tail;
        region.next = None;
        let pages = region.pages;
        if let Some(tail) = old_tail.and_then(|t| self.regions.get_mut(t)) {
            tail.next = Some(key);
        }
        if let Some(r) = self.rungs.get_mut(rung) {
            if r.head.is_none() {
                r.head = Some(key);
            }
            // INVARIANT: `key` is the new tail, linked after the old one; the count and
            // the page total follow it.
            r.tail = Some(key);
            r.regions += 1;
            r.pages = r.pages.saturating_add(pages);
        }
    }

    /// Take region `key` out of its rung's list (it stays in the slab).
    pub(super) fn unlink(&mut self, key: SlabKey) {
        let Some(region) = self.regions.get(key) else {
            return;
        };
        let (rung, prev, next, pages) =
            (region.rung as usize, region.prev, region.next, region.pages);
        if let Some(p) = prev.and_then(|p| self.regions.get_mut(p)) {
            p.next = next;
        }
        if let Some(n) = next.and_then(|n| self.regions.get_mut(n)) {
            n.prev = prev;
        }
        if let Some(r) = self.rungs.get_mut(rung) {
            // INVARIANT: the neighbours now skip `key`; the ends, the count and the
            // page total follow.
            if r.head == Some(key) {
                r.head = next;
            }
            if r.tail == Some(key) {
                r.tail = prev;
            }
            r.regions = r.regions.saturating_sub(1);
            r.pages = r.pages.saturating_sub(pages);
        }
    }
}
