//! Promotion: at a round's end each region climbs or falls a rung by its dedup ratio.
//!
//! A region's ratio is (changed − broken) / (scanned − empty) over the round, where
//! changed counts pages the scan merged, patched or recompressed
//! ([`RegionRound::changed`]) and empty the slots that held nothing to scan
//! ([`RegionRound::empty`]: a sparse swap area is judged by the pages it holds,
//! not diluted by its empty offsets); at least `promote_ratio` climbs a rung,
//! anything less falls one, and a region whose broken / changed exceeds
//! `thrash_ratio` counts as 0. A region not scanned this round, or whose scanned
//! slots were all empty, stays.
//! The move is two phases, so a region is judged once even if it lands on a rung not
//! yet visited: decide every region's target, then relink.

use foldswap_mem::PageProvider;

use super::Ladder;
use super::report::{RegionRound, RoundSummary};
use super::rung::Rung;
use crate::tunables::{MAX_RUNGS, RATIO_ONE};

impl<P: PageProvider> Ladder<P> {
    /// Phase one of a round's end: every region's target rung from its dedup ratio.
    /// Takes each region's round results (they start again from zero).
    pub(super) fn decide_moves(&mut self, summary: &mut RoundSummary) {
        let top = self.rung_count().saturating_sub(1) as u8;
        let (promote, thrash_ratio) = (
            u64::from(self.tunables.promote_ratio),
            u64::from(self.tunables.thrash_ratio),
        );
        self.for_each_region(|ladder, key| {
            let Some(region) = ladder.regions.get_mut(key) else {
                return;
            };
            let RegionRound {
                scanned,
                empty,
                changed,
                broken,
            } = core::mem::take(&mut region.round);
            let current = region.rung.min(top);
            region.target_rung = current;
            // Only slots that held something are evidence either way.
            let scanned = scanned.saturating_sub(empty);
            if scanned == 0 {
                return;
            }
            let thrashing = broken > 0
                && broken.saturating_mul(RATIO_ONE as u64) > changed.saturating_mul(thrash_ratio);
            let ratio = if thrashing {
                0
            } else {
                changed
                    .saturating_sub(broken)
                    .saturating_mul(RATIO_ONE as u64)
                    / scanned
            };
            region.target_rung = if ratio >= promote {
                (current + 1).min(top)
            } else {
                current.saturating_sub(1)
            };
            let target = region.target_rung;
            if thrashing {
                summary.thrashing += 1;
                ladder.stats.thrashing += 1;
            }
            if target > current {
                summary.promoted += 1;
                ladder.stats.promotions += 1;
            } else if target < current {
                summary.demoted += 1;
                ladder.stats.demotions += 1;
            }
        });
    }

    /// Phase two: relink every region whose target differs from its rung.
    /// A region that climbs is appended to a rung the walk has not reached yet; it is
    /// visited again there and stays, its target being that rung.
    pub(super) fn apply_moves(&mut self) {
        self.for_each_region(|ladder, key| {
            let Some(region) = ladder.regions.get(key) else {
                return;
            };
            let (rung, target) = (region.rung, region.target_rung);
            if target != rung {
                ladder.unlink(key);
                ladder.link_tail(key, target as usize);
            }
        });
    }

    /// After the rung count shrank: regions on rungs that no longer exist go to the
    /// new top rung.
    pub(super) fn move_regions_off_unused_rungs(&mut self) {
        let top = self.rung_count().saturating_sub(1) as u8;
        for rung in self.rung_count()..MAX_RUNGS {
            while let Some(key) = self.rungs.get(rung).and_then(|r| r.head) {
                if !self.regions.contains(key) {
                    // A dangling head cannot happen; if it did, drop it rather than loop.
                    if let Some(r) = self.rungs.get_mut(rung) {
                        *r = Rung::EMPTY;
                    }
                    break;
                }
                self.unlink(key);
                self.link_tail(key, top as usize);
            }
        }
    }
}
