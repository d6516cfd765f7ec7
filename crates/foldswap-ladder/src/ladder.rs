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
//!       (the swap face also patches or recompresses)
//!     complete_batch(&batch, result) ───►  cost → budget and moving average,
//!                                          changed/scanned → region, hash work → adapter
//!     report_broken(region, n)  ────────►  (whenever a merge is broken by a write)
//!     on RoundEnd: end_round(now) ──────►  regions move rungs, strength adapts,
//!   }                                      staged tunables apply; summary back
//! ```
//!
//! This module holds [`Ladder`] and its public methods; each part of the machinery
//! is a submodule:
//!
//! | module      | what |
//! |-------------|------|
//! | `batch`     | the scan handshake: [`Next`], [`Batch`], [`BatchResult`] |
//! | `report`    | what the ladder reports: [`RoundSummary`], [`LadderStats`], [`RungStats`], [`RegionRound`] |
//! | `region`    | regions in the slab and their handles ([`RegionId`]) |
//! | `rung`      | a rung: its list of regions, its credit, its pass state |
//! | `budget`    | CPU credit per rung, the per-page cost average, how long to sleep |
//! | `cursor`    | which pages a rung's next batch covers, and when a pass and a round end |
//! | `promotion` | regions climbing and falling rungs at a round's end |

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use foldswap_mem::{Error, PageProvider, Slab, SlabKey};

use crate::rng::SplitMix64;
use crate::strength::{AdapterStats, StrengthAdapter, StrengthChange};
use crate::tunables::{MAX_RUNGS, Tunables};

mod batch;
mod budget;
mod cursor;
mod promotion;
mod region;
mod report;
mod rung;

pub use batch::{Batch, BatchResult, Next};
pub use region::RegionId;
pub use report::{LadderStats, RegionRound, RoundSummary, RungStats};

use budget::CostAverage;
use region::Region;
use rung::Rung;

/// The scan ladder. Regions live in a [`Slab`] whose pages come from the host's
/// [`PageProvider`] (one region is 64 bytes); the ladder itself is about 2.2 KiB
/// ([`init_in`](Self::init_in) builds it in place), and takes no other memory.
///
/// # Invariants
///
/// - Every live region is on exactly one rung in use (`< rung_count`), linked in that
///   rung's list (see `Rung`); rungs past `rung_count` are empty.
/// - `outstanding` is the batch handed out by the last [`Next::Scan`] until
///   [`complete_batch`](Self::complete_batch) takes it back; while it is `Some`,
///   `next_batch` and `end_round` refuse to run, so a pass moves on only by batches
///   the host has finished.
/// - `round_end_pending` is set when every non-empty rung in use has finished a pass
///   this round, and cleared only by `end_round`: once set, the round's end is owed to
///   the host even if regions come and go.
/// - `staged` holds validated tunables only (as does `tunables`).
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
    /// The host's clock at the last call that moved it forward; `None` before the
    /// first call.
    last_now: Option<u64>,
    cost: CostAverage,
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
        // SAFETY: `this` is valid, aligned storage for a Ladder (it comes from `slot`);
        // `addr_of_mut!` takes field addresses without reading the uninitialised
        // memory, and every field is written exactly once below (the rungs element by
        // element, `i < MAX_RUNGS` staying inside the array) before `assume_init_mut`.
        // Nothing below can fail, so no path returns with a field left unwritten.
        // INVARIANT: no regions, every rung empty and idle, nothing outstanding or
        // pending, `tunables` validated above.
        unsafe {
            addr_of_mut!((*this).regions).write(regions);
            let rungs = addr_of_mut!((*this).rungs).cast::<Rung>();
            for i in 0..MAX_RUNGS {
                rungs.add(i).write(Rung::EMPTY);
            }
            addr_of_mut!((*this).adapter).write(StrengthAdapter::new(tunables.strength));
            addr_of_mut!((*this).cost).write(CostAverage::new(tunables.initial_page_cost_ns));
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
        // INVARIANT: the new region joins rung 0, which is always in use.
        self.link_tail(key, 0);
        self.stats.regions_added += 1;
        Ok(RegionId::new(key, generation))
    }

    /// Take a region out (it may be mid-pass or in an outstanding batch: that batch can
    /// still be completed; its cost counts, its results are dropped). Returns its tag.
    pub fn remove_region(&mut self, id: RegionId) -> Result<u64, Error> {
        let Some(region) = self.region(id) else {
            return self.reject(Error::InvalidHandle);
        };
        let (rung, tag, next) = (region.rung as usize, region.tag, region.next);
        self.move_cursor_off(rung, id.key(), next);
        self.unlink(id.key());
        self.regions.remove(id.key());
        self.stats.regions_removed += 1;
        if let Some(r) = self.rungs.get_mut(rung)
            && r.pages == 0
        {
            r.reset_pass();
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
        let choice = self.richest_payable_rung(&shares, need);
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
        let present = result.pages_scanned.checked_sub(result.pages_empty);
        if result.pages_scanned > issued.count || present.is_none_or(|p| result.pages_changed > p) {
            return self.reject(Error::InvalidArgument("batch result larger than the batch"));
        }
        self.outstanding = None;
        let pages = u64::from(result.pages_scanned);
        self.charge(issued.rung as usize, result.cost_ns, pages);
        self.cost.record(result.cost_ns, pages);
        self.stats.batches += 1;
        self.stats.pages_scanned = self.stats.pages_scanned.saturating_add(pages);
        self.stats.pages_changed = self
            .stats
            .pages_changed
            .saturating_add(u64::from(result.pages_changed));
        self.stats.cpu_ns = self.stats.cpu_ns.saturating_add(result.cost_ns);
        match self.region_mut(issued.region) {
            Some(region) => {
                region.round.scanned = region.round.scanned.saturating_add(pages);
                region.round.empty = region
                    .round
                    .empty
                    .saturating_add(u64::from(result.pages_empty));
                region.round.changed = region
                    .round
                    .changed
                    .saturating_add(u64::from(result.pages_changed));
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
            rung.reset_pass();
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
        self.cost.per_page_ns()
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

    /// Rungs in use.
    fn rung_count(&self) -> usize {
        (self.tunables.rung_count as usize).min(MAX_RUNGS)
    }

    /// The live region `id` names, if it still does.
    fn region(&self, id: RegionId) -> Option<&Region> {
        self.regions.get(id.key()).filter(|r| id.names(r))
    }

    fn region_mut(&mut self, id: RegionId) -> Option<&mut Region> {
        self.regions.get_mut(id.key()).filter(|r| id.names(r))
    }

    /// The handle of the live region in slot `key`.
    fn region_id(&self, key: SlabKey) -> Option<RegionId> {
        self.regions
            .get(key)
            .map(|r| RegionId::new(key, r.generation))
    }

    /// Staged tunables take effect (at a round's end, after the moves).
    fn apply_tunables(&mut self, tunables: Tunables) {
        self.tunables = tunables;
        self.adapter.set_tunables(tunables.strength);
        self.stats.tunables_applied += 1;
        // INVARIANT: regions on rungs that no longer exist go to the new top rung.
        self.move_regions_off_unused_rungs();
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
