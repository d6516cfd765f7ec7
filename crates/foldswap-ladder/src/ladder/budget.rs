//! The CPU budget: what each rung may spend, and what a page costs.
//!
//! Every non-empty rung earns CPU credit at its share of wall time (`cpu_ratio`,
//! scaled down so the shares never add up to more than `max_cpu`), up to two
//! `max_sleep_ns` worth, and spends what its batches cost as the host reports it. The
//! rung with the most credit scans next; a batch is as many pages as its credit pays
//! for at the moving average per-page cost (weight 1/5, fixed point), between
//! `min_batch_pages` and `max_batch_pages`. With no rung able to pay for a minimal
//! batch, the ladder asks the host to sleep until the first one can.

use foldswap_mem::PageProvider;

use super::Ladder;
use crate::tunables::{MAX_RUNGS, RATIO_ONE};

/// Moving-average weight of a new per-page cost sample: 1/5 (UKSM: 20 %).
const COST_AVERAGE_DIVISOR: u64 = 5;
/// Fixed-point scale of the moving average.
const COST_FIXED_SHIFT: u32 = 8;

/// The moving average of the per-page scan cost, in ns, fixed point.
#[derive(Debug, Clone, Copy)]
pub(super) struct CostAverage {
    fixed: u64,
}

impl CostAverage {
    /// Start from `initial_ns` per page (a validated tunable: at least 1).
    pub(super) fn new(initial_ns: u64) -> Self {
        CostAverage {
            fixed: initial_ns << COST_FIXED_SHIFT,
        }
    }

    /// The average, ns per page.
    pub(super) fn per_page_ns(&self) -> u64 {
        self.fixed >> COST_FIXED_SHIFT
    }

    /// Fold one batch's per-page cost into the average (weight 1/5).
    pub(super) fn record(&mut self, cost_ns: u64, pages: u64) {
        if pages == 0 {
            return;
        }
        let sample =
            (cost_ns / pages).clamp(1, u64::MAX >> (COST_FIXED_SHIFT + 4)) << COST_FIXED_SHIFT;
        let avg = self.fixed;
        self.fixed = if sample >= avg {
            avg + (sample - avg) / COST_AVERAGE_DIVISOR
        } else {
            avg - (avg - sample) / COST_AVERAGE_DIVISOR
        };
    }
}

impl<P: PageProvider> Ladder<P> {
    /// Every non-empty rung's share, scaled so the total stays within `max_cpu`.
    pub(super) fn effective_shares(&self) -> [u64; MAX_RUNGS] {
        let mut shares = [0u64; MAX_RUNGS];
        for (r, share) in shares.iter_mut().enumerate().take(self.rung_count()) {
            if self.rungs.get(r).is_some_and(|g| g.pages > 0) {
                *share = self.tunables.rung_share(r).max(1);
            }
        }
        let total: u64 = shares.iter().sum();
        let max = self.tunables.max_cpu.clamp(1, RATIO_ONE) as u64;
        if total > max {
            for share in shares.iter_mut().filter(|s| **s > 0) {
                *share = (*share * max / total).max(1);
            }
        }
        shares
    }

    /// What a batch of `min_batch_pages` costs at the average page cost, ns.
    pub(super) fn min_batch_cost_ns(&self) -> i64 {
        let pages = u64::from(self.tunables.min_batch_pages.max(1));
        i64::try_from(self.average_page_cost_ns().max(1).saturating_mul(pages)).unwrap_or(i64::MAX)
    }

    /// The most credit a rung with `share` may hold (and the most debt it may owe):
    /// two `max_sleep_ns` worth, at least a minimal batch (`need`).
    fn credit_cap_ns(&self, share: u64, need: i64) -> i64 {
        let window = self.tunables.max_sleep_ns.saturating_mul(2);
        let cap = window.saturating_mul(share) / RATIO_ONE as u64;
        i64::try_from(cap).unwrap_or(i64::MAX).max(need)
    }

    /// Earn credit for the time since the last call. A clock that went backwards
    /// earns nothing (and is counted).
    pub(super) fn advance_clock(&mut self, now: u64) {
        let Some(last) = self.last_now else {
            self.last_now = Some(now);
            return;
        };
        if now < last {
            self.stats.clock_backwards += 1;
            return;
        }
        let elapsed = now - last;
        self.last_now = Some(now);
        let shares = self.effective_shares();
        let need = self.min_batch_cost_ns();
        for r in 0..self.rung_count() {
            let share = shares.get(r).copied().unwrap_or(0);
            let cap = self.credit_cap_ns(share, need);
            let earned =
                i64::try_from(elapsed.saturating_mul(share) / RATIO_ONE as u64).unwrap_or(i64::MAX);
            if let Some(rung) = self.rungs.get_mut(r) {
                rung.credit_ns = if share == 0 {
                    rung.credit_ns.min(0)
                } else {
                    rung.credit_ns.saturating_add(earned).min(cap)
                };
            }
        }
    }

    /// The rung to scan next: of the rungs with a share, not draining, whose credit
    /// pays for a minimal batch (`need`), the one with the most credit (the last of
    /// equals).
    pub(super) fn richest_payable_rung(
        &self,
        shares: &[u64; MAX_RUNGS],
        need: i64,
    ) -> Option<usize> {
        (0..self.rung_count())
            .filter(|&r| shares.get(r).is_some_and(|&s| s > 0))
            .filter_map(|r| {
                let rung = self.rungs.get(r)?;
                (!rung.is_draining() && rung.credit_ns >= need).then_some((r, rung.credit_ns))
            })
            .max_by_key(|&(_, credit)| credit)
            .map(|(r, _)| r)
    }

    /// Time until the first rung can pay for a minimal batch, within the sleep limits.
    pub(super) fn sleep_ns(&self, shares: &[u64; MAX_RUNGS], need: i64) -> u64 {
        let wait = (0..self.rung_count())
            .filter_map(|r| {
                let share = *shares.get(r)?;
                let rung = self.rungs.get(r)?;
                if share == 0 || rung.is_draining() {
                    return None;
                }
                let deficit = u64::try_from(need.saturating_sub(rung.credit_ns)).unwrap_or(0);
                Some(deficit.saturating_mul(RATIO_ONE as u64).div_ceil(share))
            })
            .min()
            .unwrap_or(self.tunables.max_sleep_ns);
        wait.clamp(self.tunables.min_sleep_ns, self.tunables.max_sleep_ns)
    }

    /// Charge a completed batch to rung `rung`: its cost leaves the credit (down to
    /// the cap's worth of debt) and is counted with its pages.
    pub(super) fn charge(&mut self, rung: usize, cost_ns: u64, pages: u64) {
        let share = self.effective_shares().get(rung).copied().unwrap_or(0);
        let cap = self.credit_cap_ns(share.max(1), self.min_batch_cost_ns());
        if let Some(r) = self.rungs.get_mut(rung) {
            let cost = i64::try_from(cost_ns).unwrap_or(i64::MAX);
            r.credit_ns = r.credit_ns.saturating_sub(cost).max(-cap);
            r.stats.cpu_ns = r.stats.cpu_ns.saturating_add(cost_ns);
            r.stats.pages_scanned = r.stats.pages_scanned.saturating_add(pages);
        }
    }
}
