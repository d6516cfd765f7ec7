//! The scan ladder: rungs of regions, each rung swept within its cover time on its
//! CPU budget, regions climbing to where duplicates are found.
//!
//! The host drives it and supplies time and cost; the ladder never reads a clock:
//!
//! ```text
//!   host                                   ladder
//!   add_region(pages, tag) ─────────────►  region joins rung 0
//!   loop {
//!     next_batch(now) ──────────────────►  Scan(batch) | Sleep{until} | RoundEnd
//!     scan batch.pages() of batch.region,
//!       hash at ladder.strength(), look up the merge trees, merge
//!     complete_batch(&batch, result) ───►  cost → budget and moving average,
//!                                          merged/scanned → region, hash work → adapter
//!     report_broken(region, n)  ────────►  (whenever a merge is broken by a write)
//!     on RoundEnd: end_round(now) ──────►  regions move rungs, strength adapts,
//!   }                                      staged tunables apply; summary back
//! ```
//!
//! Budget: every non-empty rung earns CPU credit at its share of wall time
//! (`cpu_ratio`, scaled down so the shares never add up to more than `max_cpu`), up to
//! two `max_sleep_ns` worth, and spends what its batches cost. The rung with the most
//! credit scans next; a batch is as many pages as its credit pays for at the moving
//! average per-page cost (weight 1/5, fixed point), between `min_batch_pages` and
//! `max_batch_pages`. With no rung able to pay for a minimal batch, the ladder asks
//! the host to sleep until the first one can.
//!
//! Cover time: a rung's pass visits its pages (its regions back to back) from a
//! random start below `step`, every `step`-th page, where `step` = pages in the rung /
//! pages its budget pays for within `cover_msecs`. So each pass sweeps the whole rung
//! within its cover time. A round ends when every non-empty rung finished a pass.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use foldswap_mem::{Error, PageProvider, Slab, SlabKey};

use crate::rng::SplitMix64;
use crate::strength::{AdapterStats, HashWork, StrengthAdapter, StrengthChange};
use crate::tunables::{MAX_RUNGS, RATIO_ONE, Tunables};

/// Moving-average weight of a new per-page cost sample: 1/5 (UKSM: 20 %).
const COST_AVERAGE_DIVISOR: u64 = 5;
/// Fixed-point scale of the moving average.
const COST_FIXED_SHIFT: u32 = 8;
const NS_PER_MS: u64 = 1_000_000;

/// A region as the host knows it: a generation-checked handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionId {
    index: u32,
    generation: u32,
}

impl RegionId {
    /// The slot index (stable while the region lives).
    pub fn index(self) -> u32 {
        self.index
    }
}

/// A region's scan results in the current round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionRound {
    /// Pages scanned.
    pub scanned: u64,
    /// Pages merged.
    pub merged: u64,
    /// Merges broken by writes (reported with [`Ladder::report_broken`]).
    pub broken: u64,
}

#[derive(Debug)]
struct Region {
    generation: u32,
    pages: u64,
    tag: u64,
    rung: u8,
    target_rung: u8,
    prev: Option<u32>,
    next: Option<u32>,
    round: RegionRound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassState {
    /// No pass under way; the next batch of this rung starts one.
    Idle,
    /// Sweeping: the next page is `offset` in region `region`.
    Running {
        region: u32,
        offset: u64,
        /// Pages of the rung before the cursor (the pass's linear position).
        covered: u64,
        started_ns: u64,
    },
    /// The cursor went past the last page; the batch that took it there is out.
    Draining { started_ns: u64 },
}

/// A rung's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RungStats {
    /// Passes finished (the whole rung swept once).
    pub passes: u64,
    /// Pages scanned.
    pub pages_scanned: u64,
    /// CPU spent, ns, as reported.
    pub cpu_ns: u64,
    /// Stride of the current or last pass.
    pub step: u64,
    /// Duration of the last finished pass, ns.
    pub last_pass_ns: u64,
    /// Longest finished pass, ns.
    pub longest_pass_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct Rung {
    head: Option<u32>,
    tail: Option<u32>,
    regions: u32,
    pages: u64,
    credit_ns: i64,
    pass: PassState,
    pass_serial: u64,
    passes_this_round: u32,
    stats: RungStats,
}

impl Rung {
    const EMPTY: Rung = Rung {
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
}

/// Pages to scan: `count` pages of `region`, from `first_page`, every `stride` pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Serial number; [`Ladder::complete_batch`] checks it.
    pub id: u64,
    /// The rung the batch is charged to.
    pub rung: u8,
    /// The region to scan.
    pub region: RegionId,
    /// The host's tag of that region (given to [`Ladder::add_region`]).
    pub tag: u64,
    /// Page index in the region of the first page.
    pub first_page: u64,
    /// Distance between pages.
    pub stride: u64,
    /// Pages in the batch (≥ 1).
    pub count: u32,
    ends_pass: bool,
    pass_serial: u64,
    issued_ns: u64,
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
    /// Of those, pages merged with an identical page (≤ `pages_scanned`).
    pub merged: u32,
    /// CPU time the batch took, ns (hashing, tree lookups, merging).
    pub cost_ns: u64,
    /// Hashing work, for the strength adapter.
    pub hash: HashWork,
}

/// What the host should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Scan this batch, then [`Ladder::complete_batch`].
    Scan(Batch),
    /// Nothing is due: sleep until this time (ns, on the host's clock).
    Sleep {
        /// When to call [`Ladder::next_batch`] again.
        until_ns: u64,
    },
    /// The round is over: flush per-round state (the unstable tree), then call
    /// [`Ladder::end_round`].
    RoundEnd,
}

/// What happened at a round's end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// The round that ended (0 for the first).
    pub round: u64,
    /// Regions that climbed a rung.
    pub promoted: u32,
    /// Regions that fell a rung (including thrashing ones).
    pub demoted: u32,
    /// Regions whose merges kept breaking (counted in `demoted` too, unless already at
    /// the bottom).
    pub thrashing: u32,
    /// A change of hash strength: stored sampled hashes must be moved (`rehash`).
    pub strength_change: Option<StrengthChange>,
    /// Staged tunables took effect.
    pub tunables_applied: bool,
}

/// The ladder's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LadderStats {
    /// Rounds ended.
    pub rounds: u64,
    /// Batches completed.
    pub batches: u64,
    /// Pages scanned.
    pub pages_scanned: u64,
    /// Pages merged.
    pub pages_merged: u64,
    /// Merges reported broken.
    pub merges_broken: u64,
    /// CPU spent, ns, as reported.
    pub cpu_ns: u64,
    /// Sleeps asked for.
    pub sleeps: u64,
    /// Regions added / removed.
    pub regions_added: u64,
    /// See `regions_added`.
    pub regions_removed: u64,
    /// Region moves up / down / demotions for thrashing.
    pub promotions: u64,
    /// See `promotions`.
    pub demotions: u64,
    /// See `promotions`.
    pub thrashing: u64,
    /// Tunables staged, applied, and fields clamped while staging.
    pub tunables_staged: u64,
    /// See `tunables_staged`.
    pub tunables_applied: u64,
    /// See `tunables_staged`.
    pub tunables_clamped: u64,
    /// Times the host's clock went backwards (ignored: no credit is earned).
    pub clock_backwards: u64,
    /// Batch results whose region had been removed (cost kept, results dropped).
    pub results_for_removed_regions: u64,
    /// Calls rejected with an error (stale handles, bad reports, wrong order).
    pub rejected_calls: u64,
}

/// The scan ladder. Regions live in a [`Slab`] whose pages come from the host's
/// [`PageProvider`] (one region is 64 bytes); the ladder itself is about 2 KiB, and
/// takes no other memory.
///
/// ```
/// use foldswap_ladder::{BatchResult, Ladder, Next, Tunables};
/// use foldswap_mem::StdPageProvider;
///
/// let mut ladder = Ladder::new(StdPageProvider, Tunables::default(), 1).unwrap();
/// let region = ladder.add_region(1000, 7).unwrap();
/// let mut now = 0;
/// let mut scanned = 0;
/// while scanned == 0 {
///     match ladder.next_batch(now).unwrap() {
///         Next::Scan(batch) => {
///             assert_eq!(batch.region, region);
///             let pages = batch.count;
///             let cost_ns = 500 * u64::from(pages);
///             ladder.complete_batch(&batch, BatchResult { pages_scanned: pages, cost_ns, ..Default::default() }).unwrap();
///             now += cost_ns;
///             scanned += pages;
///         }
///         Next::Sleep { until_ns } => now = until_ns,
///         Next::RoundEnd => { ladder.end_round(now).unwrap(); }
///     }
/// }
/// assert!(ladder.stats().pages_scanned > 0);
/// ```
pub struct Ladder<P: PageProvider> {
    regions: Slab<Region, P>,
    rungs: [Rung; MAX_RUNGS],
    tunables: Tunables,
    staged: Option<Tunables>,
    adapter: StrengthAdapter,
    rng: SplitMix64,
    last_now: Option<u64>,
    avg_cost_fixed: u64,
    outstanding: Option<Batch>,
    next_batch_id: u64,
    next_generation: u32,
    round: u64,
    round_end_pending: bool,
    stats: LadderStats,
}

impl<P: PageProvider> Ladder<P> {
    /// Bytes of region storage held from the provider.
    pub fn bytes_held(&self) -> usize {
        self.regions.bytes_held()
    }

    /// A ladder with no regions, taking region storage from `provider`. `seed` draws
    /// the random pass starts. Fails if `tunables` are invalid (see
    /// [`Tunables::validated`]).
    pub fn new(provider: P, tunables: Tunables, seed: u64) -> Result<Self, Error> {
        let mut slot = MaybeUninit::uninit();
        Self::init_in(&mut slot, provider, tunables, seed)?;
        // SAFETY: `init_in` returned Ok: every field is initialised.
        Ok(unsafe { slot.assume_init() })
    }

    /// [`new`](Self::new), built in place in caller storage (the ladder is about
    /// 2.2 KiB: too big for a by-value temporary on a kernel stack). On error
    /// nothing is left initialised.
    pub fn init_in(
        slot: &mut MaybeUninit<Self>,
        provider: P,
        tunables: Tunables,
        seed: u64,
    ) -> Result<&mut Self, Error> {
        let (tunables, clamped) = tunables.validated()?;
        let regions = Slab::new(provider)?;
        let this = slot.as_mut_ptr();
        // SAFETY: `this` is valid, aligned storage for a Ladder; every field is
        // written exactly once below (the rungs element by element), before
        // `assume_init_mut`. Nothing below can fail.
        unsafe {
            addr_of_mut!((*this).regions).write(regions);
            let rungs = addr_of_mut!((*this).rungs).cast::<Rung>();
            for i in 0..MAX_RUNGS {
                rungs.add(i).write(Rung::EMPTY);
            }
            addr_of_mut!((*this).adapter).write(StrengthAdapter::new(tunables.strength));
            addr_of_mut!((*this).avg_cost_fixed)
                .write(tunables.initial_page_cost_ns << COST_FIXED_SHIFT);
            addr_of_mut!((*this).tunables).write(tunables);
            addr_of_mut!((*this).staged).write(None);
            addr_of_mut!((*this).rng).write(SplitMix64::new(seed));
            addr_of_mut!((*this).last_now).write(None);
            addr_of_mut!((*this).outstanding).write(None);
            addr_of_mut!((*this).next_batch_id).write(0);
            addr_of_mut!((*this).next_generation).write(0);
            addr_of_mut!((*this).round).write(0);
            addr_of_mut!((*this).round_end_pending).write(false);
            addr_of_mut!((*this).stats).write(LadderStats {
                tunables_clamped: u64::from(clamped),
                ..LadderStats::default()
            });
            Ok(slot.assume_init_mut())
        }
    }

    // ---- regions ---------------------------------------------------------------

    /// Hand in a region of `pages` pages; `tag` is the host's own cookie (returned in
    /// every batch). It joins the bottom rung. An empty region is
    /// [`Error::InvalidArgument`]; no memory for its slot is [`Error::OutOfMemory`].
    pub fn add_region(&mut self, pages: u64, tag: u64) -> Result<RegionId, Error> {
        if pages == 0 {
            return self.reject(Error::InvalidArgument("empty region"));
        }
        let generation = self.next_generation;
        let key = self.regions.insert(Region {
            generation,
            pages,
            tag,
            rung: 0,
            target_rung: 0,
            prev: None,
            next: None,
            round: RegionRound::default(),
        })?;
        self.next_generation = generation.wrapping_add(1);
        self.link_tail(key.0, 0);
        self.stats.regions_added += 1;
        Ok(RegionId {
            index: key.0,
            generation,
        })
    }

    /// Take a region out (it may be mid-pass or in an outstanding batch: that batch can
    /// still be completed; its cost counts, its results are dropped). Returns its tag.
    pub fn remove_region(&mut self, id: RegionId) -> Result<u64, Error> {
        let Some(region) = self.region(id) else {
            return self.reject(Error::InvalidHandle);
        };
        let (rung, tag, next) = (region.rung as usize, region.tag, region.next);
        self.move_cursor_off(rung, id.index, next);
        self.unlink(id.index);
        self.regions.remove(SlabKey(id.index));
        self.stats.regions_removed += 1;
        if let Some(r) = self.rungs.get_mut(rung)
            && r.pages == 0
        {
            r.pass = PassState::Idle;
            r.pass_serial += 1;
        }
        self.check_round_end();
        Ok(tag)
    }

    /// Record that `merges` merges of this region were broken by writes (copy on
    /// write). Counted towards this round's thrash test.
    pub fn report_broken(&mut self, id: RegionId, merges: u64) -> Result<(), Error> {
        let Some(region) = self.region_mut(id) else {
            return self.reject(Error::InvalidHandle);
        };
        region.round.broken = region.round.broken.saturating_add(merges);
        self.stats.merges_broken = self.stats.merges_broken.saturating_add(merges);
        Ok(())
    }

    /// The rung a live region is on.
    pub fn region_rung(&self, id: RegionId) -> Option<u8> {
        self.region(id).map(|r| r.rung)
    }

    /// A live region's results so far this round.
    pub fn region_round(&self, id: RegionId) -> Option<RegionRound> {
        self.region(id).map(|r| r.round)
    }

    /// Live regions.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    // ---- scanning --------------------------------------------------------------

    /// What to do at time `now` (ns on the host's clock): scan a batch, sleep, or end
    /// the round. Fails with [`Error::InvalidArgument`] while a batch is outstanding.
    pub fn next_batch(&mut self, now: u64) -> Result<Next, Error> {
        if self.outstanding.is_some() {
            return self.reject(Error::InvalidArgument(
                "complete the outstanding batch first",
            ));
        }
        self.advance_clock(now);
        if self.round_end_pending {
            return Ok(Next::RoundEnd);
        }
        let shares = self.effective_shares();
        let need = self.min_batch_cost_ns();
        let choice = (0..self.rung_count())
            .filter(|&r| shares.get(r).is_some_and(|&s| s > 0))
            .filter(|&r| {
                self.rungs
                    .get(r)
                    .is_some_and(|g| !matches!(g.pass, PassState::Draining { .. }))
            })
            .filter(|&r| self.rungs.get(r).is_some_and(|g| g.credit_ns >= need))
            .max_by_key(|&r| self.rungs.get(r).map_or(i64::MIN, |g| g.credit_ns));
        match choice.and_then(|r| self.make_batch(r, now)) {
            Some(batch) => {
                self.outstanding = Some(batch);
                Ok(Next::Scan(batch))
            }
            None => {
                self.stats.sleeps += 1;
                Ok(Next::Sleep {
                    until_ns: now.saturating_add(self.sleep_ns(&shares, need)),
                })
            }
        }
    }

    /// Report the outstanding `batch` done. A batch that is not exactly the outstanding
    /// one is [`Error::InvalidHandle`]; results larger than the batch are
    /// [`Error::InvalidArgument`]. Either way nothing changes.
    pub fn complete_batch(&mut self, batch: &Batch, result: BatchResult) -> Result<(), Error> {
        // The batch must be the one handed out, every field of it: a copy with a
        // changed count or region is not accepted.
        let Some(issued) = self.outstanding.filter(|b| b == batch) else {
            return self.reject(Error::InvalidHandle);
        };
        if result.pages_scanned > issued.count || result.merged > result.pages_scanned {
            return self.reject(Error::InvalidArgument("batch result larger than the batch"));
        }
        self.outstanding = None;
        let pages = u64::from(result.pages_scanned);
        self.charge(issued.rung as usize, result.cost_ns, pages);
        self.record_cost_sample(result.cost_ns, pages);
        self.stats.batches += 1;
        self.stats.pages_scanned = self.stats.pages_scanned.saturating_add(pages);
        self.stats.pages_merged = self
            .stats
            .pages_merged
            .saturating_add(u64::from(result.merged));
        self.stats.cpu_ns = self.stats.cpu_ns.saturating_add(result.cost_ns);
        match self.region_mut(issued.region) {
            Some(region) => {
                region.round.scanned = region.round.scanned.saturating_add(pages);
                region.round.merged = region.round.merged.saturating_add(u64::from(result.merged));
            }
            None => self.stats.results_for_removed_regions += 1,
        }
        self.adapter.account(result.hash);
        let rung = issued.rung as usize;
        let same_pass = self
            .rungs
            .get(rung)
            .is_some_and(|r| r.pass_serial == issued.pass_serial);
        if issued.ends_pass && same_pass {
            self.finish_pass(rung, issued.issued_ns.saturating_add(result.cost_ns));
        }
        Ok(())
    }

    /// End the round at `now`: regions move rungs by their dedup ratio, the strength
    /// adapter evaluates the round, staged tunables take effect, every rung starts a
    /// new pass. The host may also call it early (e.g. to apply tunables with no
    /// regions). Fails with [`Error::InvalidArgument`] while a batch is outstanding.
    pub fn end_round(&mut self, now: u64) -> Result<RoundSummary, Error> {
        if self.outstanding.is_some() {
            return self.reject(Error::InvalidArgument(
                "complete the outstanding batch first",
            ));
        }
        self.advance_clock(now);
        let mut summary = RoundSummary {
            round: self.round,
            ..RoundSummary::default()
        };
        self.decide_moves(&mut summary);
        self.apply_moves();
        let strength_before = self.adapter.strength();
        self.adapter.end_window();
        if let Some(staged) = self.staged.take() {
            self.apply_tunables(staged);
            summary.tunables_applied = true;
        }
        let strength_after = self.adapter.strength();
        if strength_after != strength_before {
            summary.strength_change = Some(StrengthChange {
                from: strength_before,
                to: strength_after,
            });
        }
        for rung in self.rungs.iter_mut() {
            rung.pass = PassState::Idle;
            rung.pass_serial += 1;
            rung.passes_this_round = 0;
        }
        self.round_end_pending = false;
        self.round += 1;
        self.stats.rounds += 1;
        Ok(summary)
    }

    /// Stage new tunables: validated now (an invalid set is an error and stages
    /// nothing), applied at the next [`end_round`](Self::end_round). Staging again
    /// before then replaces the staged set. Returns how many fields were clamped.
    pub fn stage_tunables(&mut self, tunables: Tunables) -> Result<u32, Error> {
        let (tunables, clamped) = match tunables.validated() {
            Ok(v) => v,
            Err(e) => return self.reject(e),
        };
        self.staged = Some(tunables);
        self.stats.tunables_staged += 1;
        self.stats.tunables_clamped += u64::from(clamped);
        Ok(clamped)
    }

    // ---- queries ---------------------------------------------------------------

    /// The hash strength to use for this round's sampled hashes.
    pub fn strength(&self) -> u32 {
        self.adapter.strength()
    }

    /// The strength adapter's decision counters.
    pub fn adapter_stats(&self) -> &AdapterStats {
        self.adapter.stats()
    }

    /// The tunables in force (not the staged ones).
    pub fn tunables(&self) -> &Tunables {
        &self.tunables
    }

    /// Tunables waiting for the round boundary.
    pub fn staged_tunables(&self) -> Option<&Tunables> {
        self.staged.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> &LadderStats {
        &self.stats
    }

    /// Counters of rung `rung`.
    pub fn rung_stats(&self, rung: usize) -> Option<&RungStats> {
        self.rungs.get(rung).map(|r| &r.stats)
    }

    /// Pages in rung `rung`.
    pub fn rung_pages(&self, rung: usize) -> u64 {
        self.rungs.get(rung).map_or(0, |r| r.pages)
    }

    /// The current round number.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The moving average of per-page scan cost, ns.
    pub fn average_page_cost_ns(&self) -> u64 {
        self.avg_cost_fixed >> COST_FIXED_SHIFT
    }

    /// The CPU share the ladder is entitled to now (sum over non-empty rungs after
    /// the `max_cpu` cap), in 1/10000.
    pub fn cpu_budget(&self) -> u64 {
        self.effective_shares().iter().sum()
    }

    /// The CPU share of rung `rung` now, in 1/10000.
    pub fn rung_cpu_share(&self, rung: usize) -> u64 {
        self.effective_shares().get(rung).copied().unwrap_or(0)
    }

    // ---- internals -------------------------------------------------------------

    fn reject<T>(&mut self, error: Error) -> Result<T, Error> {
        self.stats.rejected_calls += 1;
        Err(error)
    }

    fn rung_count(&self) -> usize {
        (self.tunables.rung_count as usize).min(MAX_RUNGS)
    }

    fn region(&self, id: RegionId) -> Option<&Region> {
        self.regions
            .get(SlabKey(id.index))
            .filter(|r| r.generation == id.generation)
    }

    fn region_mut(&mut self, id: RegionId) -> Option<&mut Region> {
        self.regions
            .get_mut(SlabKey(id.index))
            .filter(|r| r.generation == id.generation)
    }

    fn region_id(&self, key: u32) -> Option<RegionId> {
        self.regions.get(SlabKey(key)).map(|r| RegionId {
            index: key,
            generation: r.generation,
        })
    }

    /// Every non-empty rung's share, scaled so the total stays within `max_cpu`.
    fn effective_shares(&self) -> [u64; MAX_RUNGS] {
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

    fn min_batch_cost_ns(&self) -> i64 {
        let pages = u64::from(self.tunables.min_batch_pages.max(1));
        i64::try_from(self.average_page_cost_ns().max(1).saturating_mul(pages)).unwrap_or(i64::MAX)
    }

    fn credit_cap_ns(&self, share: u64, need: i64) -> i64 {
        let window = self.tunables.max_sleep_ns.saturating_mul(2);
        let cap = window.saturating_mul(share) / RATIO_ONE as u64;
        i64::try_from(cap).unwrap_or(i64::MAX).max(need)
    }

    /// Earn credit for the time since the last call. A clock that went backwards
    /// earns nothing (and is counted).
    fn advance_clock(&mut self, now: u64) {
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

    /// Time until the first rung can pay for a minimal batch, within the sleep limits.
    fn sleep_ns(&self, shares: &[u64; MAX_RUNGS], need: i64) -> u64 {
        let wait = (0..self.rung_count())
            .filter_map(|r| {
                let share = *shares.get(r)?;
                let rung = self.rungs.get(r)?;
                if share == 0 || matches!(rung.pass, PassState::Draining { .. }) {
                    return None;
                }
                let deficit = u64::try_from(need.saturating_sub(rung.credit_ns)).unwrap_or(0);
                Some(deficit.saturating_mul(RATIO_ONE as u64).div_ceil(share))
            })
            .min()
            .unwrap_or(self.tunables.max_sleep_ns);
        wait.clamp(self.tunables.min_sleep_ns, self.tunables.max_sleep_ns)
    }

    fn charge(&mut self, rung: usize, cost_ns: u64, pages: u64) {
        let share = self.effective_shares().get(rung).copied().unwrap_or(0);
        let cap = self.credit_cap_ns(share.max(1), self.min_batch_cost_ns());
        if let Some(r) = self.rungs.get_mut(rung) {
            let cost = i64::try_from(cost_ns).unwrap_or(i64::MAX);
            r.credit_ns = r.credit_ns.saturating_sub(cost).max(-cap);
            r.stats.cpu_ns = r.stats.cpu_ns.saturating_add(cost_ns);
            r.stats.pages_scanned = r.stats.pages_scanned.saturating_add(pages);
        }
    }

    /// Fold one batch's per-page cost into the moving average (weight 1/5).
    fn record_cost_sample(&mut self, cost_ns: u64, pages: u64) {
        if pages == 0 {
            return;
        }
        let sample =
            (cost_ns / pages).clamp(1, u64::MAX >> (COST_FIXED_SHIFT + 4)) << COST_FIXED_SHIFT;
        let avg = self.avg_cost_fixed;
        self.avg_cost_fixed = if sample >= avg {
            avg + (sample - avg) / COST_AVERAGE_DIVISOR
        } else {
            avg - (avg - sample) / COST_AVERAGE_DIVISOR
        };
    }

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

    /// Carry `offset` past the end of region `key` into the following regions.
    fn normalize(&self, mut key: u32, mut offset: u64) -> Option<(u32, u64)> {
        loop {
            let region = self.regions.get(SlabKey(key))?;
            if offset < region.pages {
                return Some((key, offset));
            }
            offset -= region.pages;
            key = region.next?;
        }
    }

    fn make_batch(&mut self, rung: usize, now: u64) -> Option<Batch> {
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
        let info = self.regions.get(SlabKey(region))?;
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

    fn finish_pass(&mut self, rung: usize, now: u64) {
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
        r.pass = PassState::Idle;
        r.pass_serial += 1;
        r.passes_this_round = r.passes_this_round.saturating_add(1);
        r.stats.passes = r.stats.passes.saturating_add(1);
        r.stats.last_pass_ns = took;
        r.stats.longest_pass_ns = r.stats.longest_pass_ns.max(took);
        self.check_round_end();
    }

    /// A region is leaving: if the rung's cursor is in it, move the cursor to the next
    /// region (keeping the stride phase), or finish the pass if there is none.
    fn move_cursor_off(&mut self, rung: usize, key: u32, next: Option<u32>) {
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

    fn check_round_end(&mut self) {
        let used = self.rungs.get(..self.rung_count()).unwrap_or(&[]);
        let any = used.iter().any(|r| r.pages > 0);
        let all_done = used.iter().all(|r| r.pages == 0 || r.passes_this_round > 0);
        if any && all_done {
            self.round_end_pending = true;
        }
    }

    fn link_tail(&mut self, key: u32, rung: usize) {
        let Some(r) = self.rungs.get(rung) else {
            return;
        };
        let old_tail = r.tail;
        let Some(region) = self.regions.get_mut(SlabKey(key)) else {
            return;
        };
        region.rung = rung as u8;
        region.target_rung = rung as u8;
        region.prev = old_tail;
        region.next = None;
        let pages = region.pages;
        if let Some(tail) = old_tail.and_then(|t| self.regions.get_mut(SlabKey(t))) {
            tail.next = Some(key);
        }
        if let Some(r) = self.rungs.get_mut(rung) {
            if r.head.is_none() {
                r.head = Some(key);
            }
            r.tail = Some(key);
            r.regions += 1;
            r.pages = r.pages.saturating_add(pages);
        }
    }

    fn unlink(&mut self, key: u32) {
        let Some(region) = self.regions.get(SlabKey(key)) else {
            return;
        };
        let (rung, prev, next, pages) =
            (region.rung as usize, region.prev, region.next, region.pages);
        if let Some(p) = prev.and_then(|p| self.regions.get_mut(SlabKey(p))) {
            p.next = next;
        }
        if let Some(n) = next.and_then(|n| self.regions.get_mut(SlabKey(n))) {
            n.prev = prev;
        }
        if let Some(r) = self.rungs.get_mut(rung) {
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

    /// Phase one of a round's end: every region's target rung from its dedup ratio.
    fn decide_moves(&mut self, summary: &mut RoundSummary) {
        let top = self.rung_count().saturating_sub(1) as u8;
        let (promote, thrash_ratio) = (
            u64::from(self.tunables.promote_ratio),
            u64::from(self.tunables.thrash_ratio),
        );
        for rung in 0..MAX_RUNGS {
            let mut cursor = self.rungs.get(rung).and_then(|r| r.head);
            while let Some(key) = cursor {
                let Some(region) = self.regions.get_mut(SlabKey(key)) else {
                    break;
                };
                cursor = region.next;
                let RegionRound {
                    scanned,
                    merged,
                    broken,
                } = core::mem::take(&mut region.round);
                let current = region.rung.min(top);
                region.target_rung = current;
                if scanned == 0 {
                    continue;
                }
                let thrashing = broken > 0
                    && broken.saturating_mul(RATIO_ONE as u64)
                        > merged.saturating_mul(thrash_ratio);
                let ratio = if thrashing {
                    0
                } else {
                    merged
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
                    self.stats.thrashing += 1;
                }
                if target > current {
                    summary.promoted += 1;
                    self.stats.promotions += 1;
                } else if target < current {
                    summary.demoted += 1;
                    self.stats.demotions += 1;
                }
            }
        }
    }

    /// Phase two: relink every region whose target differs from its rung.
    fn apply_moves(&mut self) {
        for rung in 0..MAX_RUNGS {
            let mut cursor = self.rungs.get(rung).and_then(|r| r.head);
            while let Some(key) = cursor {
                let Some(region) = self.regions.get(SlabKey(key)) else {
                    break;
                };
                cursor = region.next;
                let target = region.target_rung as usize;
                if target != rung {
                    self.unlink(key);
                    self.link_tail(key, target);
                }
            }
        }
    }

    fn apply_tunables(&mut self, tunables: Tunables) {
        self.tunables = tunables;
        self.adapter.set_tunables(tunables.strength);
        self.stats.tunables_applied += 1;
        // Regions on rungs that no longer exist go to the new top rung.
        let top = self.rung_count().saturating_sub(1) as u8;
        for rung in self.rung_count()..MAX_RUNGS {
            while let Some(key) = self.rungs.get(rung).and_then(|r| r.head) {
                if !self.regions.contains(SlabKey(key)) {
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

impl<P: PageProvider> core::fmt::Debug for Ladder<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ladder")
            .field("round", &self.round)
            .field("regions", &self.regions.len())
            .field("strength", &self.adapter.strength())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
