//! The pass cursor: which pages a rung's next batch covers, so that each pass sweeps
//! the whole rung within its cover time.
//!
//! A rung's pass visits its pages (its regions back to back, in list order) from a
//! random start below `step`, every `step`-th page, where `step` = pages left in the
//! pass / pages its budget pays for in the cover time left. `step` is recomputed for
//! every batch, so a pass that ran slower than planned spreads its rest wider instead
//! of overrunning. A round ends when every non-empty rung finished a pass.

use foldswap_mem::{PageProvider, SlabKey};

use super::Ladder;
use super::batch::Batch;
use super::rung::PassState;
use crate::tunables::RATIO_ONE;

const NS_PER_MS: u64 = 1_000_000;

impl<P: PageProvider> Ladder<P> {
    /// The stride that sweeps the `remaining_pages` of `rung` within what is left of
    /// its cover time on its budget. Recomputed for every batch, so a pass that ran
    /// slower than planned (costs rose, the first estimate was low) spreads its rest
    /// wider instead of overrunning; 1/16 of the cover time is kept in reserve for the
    /// last batch's overshoot.
    fn pass_step(&self, rung: usize, share: u64, remaining_pages: u64, elapsed_ns: u64) -> u64 {
        let cover_ms = self
            .tunables
            .rung(rung)
            .map_or(1, |t| t.cover_msecs.max(1) as u64);
        let cover_ns = cover_ms.saturating_mul(NS_PER_MS);
        let remaining_ns = (cover_ns - cover_ns / 16).saturating_sub(elapsed_ns);
        let budget_ns = remaining_ns.saturating_mul(share) / RATIO_ONE as u64;
        let affordable = (budget_ns / self.average_page_cost_ns().max(1)).max(1);
        remaining_pages.div_ceil(affordable).max(1)
    }

    /// Carry `offset` past the end of region `key` into the following regions: the
    /// region and the offset in it, or `None` past the rung's last page.
    fn normalize(&self, mut key: SlabKey, mut offset: u64) -> Option<(SlabKey, u64)> {
        loop {
            let region = self.regions.get(key)?;
            if offset < region.pages {
                return Some((key, offset));
            }
            offset -= region.pages;
            key = region.next?;
        }
    }

    /// The next batch of `rung` at `now`, moving its cursor past it (starting a pass
    /// if none is under way). `None` if the rung is draining or empty.
    pub(super) fn make_batch(&mut self, rung: usize, now: u64) -> Option<Batch> {
        let share = self.effective_shares().get(rung).copied().unwrap_or(0);
        let state = self.rungs.get(rung)?.pass;
        let rung_pages = self.rung_pages(rung);
        let (region, offset, covered, started_ns, step) = match state {
            PassState::Running {
                region,
                offset,
                covered,
                started_ns,
            } => {
                let remaining = rung_pages.saturating_sub(covered);
                let step = self.pass_step(rung, share, remaining, now.saturating_sub(started_ns));
                (region, offset, covered, started_ns, step)
            }
            PassState::Idle => {
                let step = self.pass_step(rung, share, rung_pages, 0);
                let start = self.rng.below_u64(step);
                let head = self.rungs.get(rung)?.head?;
                let (region, offset) = self.normalize(head, start)?;
                (region, offset, start, now, step)
            }
            PassState::Draining { .. } => return None,
        };
        if let Some(r) = self.rungs.get_mut(rung) {
            r.stats.step = step;
        }
        let info = self.regions.get(region)?;
        let (pages_in_region, next_region, tag) = (info.pages, info.next, info.tag);
        let id = self.region_id(region)?;
        let credit = u64::try_from(self.rungs.get(rung)?.credit_ns).unwrap_or(0);
        let want = (credit / self.average_page_cost_ns().max(1)).clamp(
            u64::from(self.tunables.min_batch_pages),
            u64::from(self.tunables.max_batch_pages),
        );
        let left_in_region =
            pages_in_region.saturating_sub(offset).saturating_sub(1) / step.max(1) + 1;
        let count = want.min(left_in_region).min(u64::from(u32::MAX));
        let offset_before = offset;
        let after = offset.saturating_add(count.saturating_mul(step));
        let next_position = if after < pages_in_region {
            Some((region, after))
        } else {
            next_region.and_then(|n| self.normalize(n, after - pages_in_region))
        };
        let rung_state = self.rungs.get_mut(rung)?;
        // INVARIANT: `next_position` is `(region, offset)` with `offset < pages` of a
        // live region of this rung (checked just above, or by `normalize`).
        rung_state.pass = match next_position {
            Some((region, offset)) => PassState::Running {
                region,
                offset,
                covered: covered.saturating_add(after - offset_before),
                started_ns,
            },
            None => PassState::Draining { started_ns },
        };
        let batch = Batch {
            id: self.next_batch_id,
            rung: rung as u8,
            region: id,
            tag,
            first_page: offset,
            stride: step,
            count: count as u32,
            ends_pass: next_position.is_none(),
            pass_serial: rung_state.pass_serial,
            issued_ns: now,
        };
        self.next_batch_id += 1;
        Some(batch)
    }

    /// Rung `rung`'s pass is over at `now`: count it, and see whether the round is.
    pub(super) fn finish_pass(&mut self, rung: usize, now: u64) {
        let Some(r) = self.rungs.get_mut(rung) else {
            return;
        };
        let started = match r.pass {
            PassState::Running { started_ns, .. } | PassState::Draining { started_ns } => {
                started_ns
            }
            PassState::Idle => return,
        };
        let took = now.saturating_sub(started);
        r.reset_pass();
        r.passes_this_round = r.passes_this_round.saturating_add(1);
        r.stats.passes = r.stats.passes.saturating_add(1);
        r.stats.last_pass_ns = took;
        r.stats.longest_pass_ns = r.stats.longest_pass_ns.max(took);
        self.check_round_end();
    }

    /// A region is leaving: if the rung's cursor is in it, move the cursor to the next
    /// region (keeping the stride phase), or finish the pass if there is none.
    pub(super) fn move_cursor_off(&mut self, rung: usize, key: SlabKey, next: Option<SlabKey>) {
        let Some(PassState::Running {
            region,
            offset,
            covered,
            started_ns,
        }) = self.rungs.get(rung).map(|r| r.pass)
        else {
            return;
        };
        if region != key {
            return;
        }
        // The rest of the leaving region is skipped; its pages leave the rung's count,
        // so the linear position moves back to where the region began.
        let moved = next.and_then(|n| self.normalize(n, 0));
        match moved {
            Some((region, offset_in_next)) => {
                if let Some(r) = self.rungs.get_mut(rung) {
                    // INVARIANT: `normalize` found a live region of this rung (the one
                    // after the leaving one) with `offset_in_next` inside it.
                    r.pass = PassState::Running {
                        region,
                        offset: offset_in_next,
                        covered: covered.saturating_sub(offset),
                        started_ns,
                    };
                }
            }
            None => {
                let now = self.last_now.unwrap_or(started_ns);
                self.finish_pass(rung, now);
            }
        }
    }

    /// The round is over once every non-empty rung in use finished a pass.
    pub(super) fn check_round_end(&mut self) {
        let used = self.rungs.get(..self.rung_count()).unwrap_or(&[]);
        let any = used.iter().any(|r| r.pages > 0);
        let all_done = used.iter().all(|r| r.pages == 0 || r.passes_this_round > 0);
        if any && all_done {
            self.round_end_pending = true;
        }
    }
}
