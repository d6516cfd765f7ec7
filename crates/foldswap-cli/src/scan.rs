//! `foldswap scan`: the resident face — ladder plus merge trees — over live memory.
//!
//! The processes' private anonymous mappings become the ladder's regions
//! (`foldswap_ladder::Ladder`). The ladder says which pages to scan next; each one
//! that is present in RAM is read from `/proc/PID/mem`, hashed with the ladder's
//! sampled hash at its current strength, and handed to the merge trees
//! (`foldswap_merge::Resident`), which decide merges exactly as KSM does (stable
//! tree, volatility gate, unstable tree, full byte comparison).
//!
//! One process cannot remap another's pages, so merging is *counted*, not done:
//! the [`ProcessHost`] answers the trees by reading pages and comparing bytes
//! (module [`process_host`](crate::process_host)). The table is rendered by
//! [`scan_table`](crate::scan_table).
//!
//! Time: the ladder works on a host clock. Here that clock is *virtual*: it
//! advances by the measured CPU cost of each batch and jumps over the sleeps the
//! ladder asks for, so N passes take the CPU they cost, not the wall time of the
//! ladder's cover times. The CPU per page is measured for real (reads from
//! `/proc/PID/mem` included; they are reported apart too).
//!
//! A pass here is a ladder round: every rung with regions finished one sweep of
//! its pages (with a stride when its budget cannot pay for every page).

use std::collections::HashMap;
use std::time::Instant;

use foldswap_ladder::{
    Batch, BatchResult, Governor, HashWork, Ladder, Next, RegionId, SampledHasher, Tunables,
};
use foldswap_mem::{Error, PAGE_SIZE, StdPageProvider};
use foldswap_merge::{ItemRef, Resident, ScanOutcome};
use serde::Serialize;

use crate::process_host::{Buffer, PageId, ProcessHost};
use crate::procmem::{Mapping, anonymous_mappings, check_processes_exist};

/// Seed of the sampled hash's permutation and the ladder's random starts.
pub const DEFAULT_SEED: u64 = 0x666f_6c64_7377_6170;
/// Passes run at most this many ladder batches (a guard against a ladder that
/// never ends a round).
const MAX_BATCHES_PER_PASS: u64 = 10_000_000;

/// How the ladder's CPU budget is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Budget {
    /// Every rung may use all of one CPU: every pass covers every page (like KSM
    /// with an unlimited `pages_to_scan`).
    Every,
    /// UKSM's `full` governor (rung CPU 0.2 %, 0.4 %, 24 %, 95 %).
    Full,
    /// UKSM's `medium` governor.
    Medium,
    /// UKSM's `low` governor.
    Low,
    /// UKSM's `quiet` governor.
    Quiet,
}

impl Budget {
    /// The ladder tunables for this budget.
    pub fn tunables(self) -> Tunables {
        match self {
            Budget::Every => {
                let mut t = Tunables::governor(Governor::Full);
                t.max_cpu = 10_000;
                for rung in t.rungs.iter_mut() {
                    rung.cpu_ratio = 10_000;
                }
                t
            }
            Budget::Full => Tunables::governor(Governor::Full),
            Budget::Medium => Tunables::governor(Governor::Medium),
            Budget::Low => Tunables::governor(Governor::Low),
            Budget::Quiet => Tunables::governor(Governor::Quiet),
        }
    }
}

/// What one pass (ladder round) did and what merging holds after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassReport {
    /// 1-based pass number.
    pub pass: u64,
    /// Present pages scanned in this pass.
    pub scanned: u64,
    /// Of the mapped pages, the share scanned in this pass (0..=1).
    pub coverage: f64,
    /// Pages merged in this pass (into a stable page, or as a new pair).
    pub merged: u64,
    /// KSM `pages_shared` after the pass: distinct shared pages.
    pub pages_shared: u64,
    /// KSM `pages_sharing` after the pass: pages saved by sharing.
    pub pages_sharing: u64,
    /// KSM `pages_unshared` after the pass.
    pub pages_unshared: u64,
    /// KSM `pages_volatile` after the pass.
    pub pages_volatile: u64,
    /// Merges found broken by a write, this pass.
    pub broken: u64,
    /// `pages_sharing × 4096`: memory KSM-style merging would free.
    pub saved_bytes: u64,
    /// Scan CPU per scanned page (reads, hashing, trees, comparisons).
    pub scan_ns_per_page: u64,
    /// Of that, reading pages from `/proc/PID/mem` (a cost the kernel does not pay).
    pub read_ns_per_page: u64,
    /// Sampled-hash strength used in this pass.
    pub strength: u32,
    /// Regions on each rung after the pass.
    pub regions_per_rung: Vec<u64>,
}

/// The whole scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanReport {
    /// `"foldswap-scan/1"`.
    pub schema: String,
    /// The processes.
    pub pids: Vec<u32>,
    /// Private anonymous mappings (ladder regions).
    pub regions: u64,
    /// Pages they span (present or not).
    pub mapped_pages: u64,
    /// The budget (`every`, `full`, ...).
    pub budget: String,
    /// One entry per pass.
    pub passes: Vec<PassReport>,
}

/// Run `passes` ladder rounds over the processes' anonymous memory.
pub fn scan(pids: &[u32], passes: u64, budget: Budget) -> anyhow::Result<ScanReport> {
    let label = format!("{budget:?}").to_lowercase();
    scan_with(pids, passes, budget.tunables(), &label)
}

/// [`scan`] with any ladder tunables (`budget` only names them in the report).
pub fn scan_with(
    pids: &[u32],
    passes: u64,
    tunables: Tunables,
    budget: &str,
) -> anyhow::Result<ScanReport> {
    check_processes_exist(pids)?;
    let mut merge = ResidentMergePass::new(pids, tunables)?;
    let reports = (1..=passes)
        .map(|pass| merge.run_pass(pass))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(ScanReport {
        schema: "foldswap-scan/1".to_owned(),
        pids: pids.to_vec(),
        regions: merge.regions.len() as u64,
        mapped_pages: merge.mapped_pages,
        budget: budget.to_owned(),
        passes: reports,
    })
}

/// A failed call into the ladder or the merge trees, as an error naming it.
fn core_error(what: &'static str) -> impl Fn(Error) -> anyhow::Error {
    move |e| anyhow::anyhow!("{what}: {e:?}")
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default)]
struct BatchTotals {
    scanned: u64,
    merged: u64,
    broken: u64,
    cost_ns: u64,
}

/// One resident-merge pass over live processes: the ladder, the merge trees and
/// the /proc host, driven together (the backend's pool scanner is another thing).
struct ResidentMergePass {
    host: ProcessHost,
    ladder: Ladder<StdPageProvider>,
    resident: Resident<PageId, StdPageProvider>,
    hasher: SampledHasher,
    /// Each region: the process index and its mapping. The ladder's tag indexes it.
    regions: Vec<(u32, Mapping)>,
    region_ids: Vec<RegionId>,
    items: HashMap<PageId, ItemRef>,
    mapped_pages: u64,
    rung_count: u8,
    /// The virtual clock, ns.
    now: u64,
}

impl ResidentMergePass {
    /// Every private anonymous mapping of `pids` becomes a ladder region.
    fn new(pids: &[u32], tunables: Tunables) -> anyhow::Result<Self> {
        let mut regions = Vec::new();
        for (index, &pid) in pids.iter().enumerate() {
            for mapping in anonymous_mappings(pid)? {
                regions.push((index as u32, mapping));
            }
        }
        let host = ProcessHost::open(pids)?;
        let mut ladder =
            Ladder::new(StdPageProvider, tunables, DEFAULT_SEED).map_err(core_error("ladder"))?;
        let mut region_ids = Vec::with_capacity(regions.len());
        let mut mapped_pages = 0;
        for (tag, (_, mapping)) in regions.iter().enumerate() {
            let pages = (mapping.end - mapping.start) / PAGE_SIZE as u64;
            mapped_pages += pages;
            region_ids.push(
                ladder
                    .add_region(pages, tag as u64)
                    .map_err(core_error("ladder region"))?,
            );
        }
        Ok(ResidentMergePass {
            host,
            ladder,
            resident: Resident::new(StdPageProvider).map_err(core_error("merge trees"))?,
            hasher: SampledHasher::new(DEFAULT_SEED),
            regions,
            region_ids,
            items: HashMap::new(),
            mapped_pages,
            rung_count: tunables.rung_count,
            now: 0,
        })
    }

    /// One ladder round: batches until the ladder ends the round, then the end of
    /// the merge trees' pass, a re-key if the strength changed, and the figures.
    fn run_pass(&mut self, pass: u64) -> anyhow::Result<PassReport> {
        let strength = self.ladder.strength();
        let read_before = self.host.read_ns();
        let mut totals = BatchTotals::default();
        let mut batches = 0u64;
        loop {
            batches += 1;
            if batches > MAX_BATCHES_PER_PASS {
                anyhow::bail!("the ladder did not end pass {pass}");
            }
            match self
                .ladder
                .next_batch(self.now)
                .map_err(core_error("ladder"))?
            {
                Next::Scan(batch) => {
                    let done = self.scan_batch(&batch)?;
                    self.now += done.cost_ns.max(1);
                    totals.scanned += done.scanned;
                    totals.merged += done.merged;
                    totals.broken += done.broken;
                    totals.cost_ns += done.cost_ns;
                }
                Next::Sleep { until_ns } => self.now = until_ns.max(self.now + 1),
                Next::RoundEnd => break,
            }
        }
        self.resident
            .end_pass()
            .map_err(core_error("merge trees"))?;
        let round = self
            .ladder
            .end_round(self.now)
            .map_err(core_error("ladder"))?;
        if let Some(change) = round.strength_change {
            self.rekey(change.from, change.to)?;
        }
        let stats = self.resident.stats();
        let per_page = |ns: u64| ns.checked_div(totals.scanned).unwrap_or(0);
        Ok(PassReport {
            pass,
            scanned: totals.scanned,
            coverage: totals.scanned as f64 / self.mapped_pages.max(1) as f64,
            merged: totals.merged,
            pages_shared: stats.pages_shared,
            pages_sharing: stats.pages_sharing,
            pages_unshared: stats.pages_unshared,
            pages_volatile: stats.pages_volatile,
            broken: totals.broken,
            saved_bytes: stats.pages_sharing * PAGE_SIZE as u64,
            scan_ns_per_page: per_page(totals.cost_ns),
            read_ns_per_page: per_page(self.host.read_ns().saturating_sub(read_before)),
            strength,
            regions_per_rung: self.regions_per_rung(),
        })
    }

    /// Scan the present pages of one batch and report it to the ladder.
    fn scan_batch(&mut self, batch: &Batch) -> anyhow::Result<BatchTotals> {
        let start = Instant::now();
        let before = self.resident.stats();
        let Some(&(process, ref mapping)) = self.regions.get(batch.tag as usize) else {
            anyhow::bail!("the ladder gave an unknown region tag {}", batch.tag);
        };
        let first_vpage = mapping.start / PAGE_SIZE as u64;
        let end_vpage = mapping.end / PAGE_SIZE as u64;
        let mut result = BatchResult::default();
        for vpage in batch.pages().map(|index| first_vpage + index) {
            if vpage >= end_vpage {
                break;
            }
            match self.scan_page(process, vpage)? {
                None => {}
                Some(merged) => {
                    result.pages_scanned += 1;
                    result.pages_changed += u32::from(merged);
                }
            }
        }
        let after = self.resident.stats();
        result.cost_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let collisions = after.collisions.saturating_sub(before.collisions);
        result.hash = HashWork {
            sampled: u64::from(result.pages_scanned),
            collision_full_hashes: after.full_hashes.saturating_sub(before.full_hashes),
            collision_compares: collisions,
            collisions,
        };
        let broken = after.merges_broken.saturating_sub(before.merges_broken);
        self.ladder
            .complete_batch(batch, result)
            .map_err(core_error("ladder"))?;
        if broken > 0 {
            self.ladder
                .report_broken(batch.region, broken)
                .map_err(core_error("ladder"))?;
        }
        Ok(BatchTotals {
            scanned: u64::from(result.pages_scanned),
            merged: u64::from(result.pages_changed),
            broken,
            cost_ns: result.cost_ns,
        })
    }

    /// Scan one page if it is present: `Some(merged now)`, or `None` if it was not
    /// scanned (not present, or gone between reads).
    fn scan_page(&mut self, process: u32, vpage: u64) -> anyhow::Result<Option<bool>> {
        let id = PageId::Live { process, vpage };
        if !self.host.present(process, vpage) || !self.host.read(id, Buffer::A) {
            return Ok(None);
        }
        let sampled = self
            .hasher
            .hash_at(self.host.page_a(), self.ladder.strength());
        let item = match self.items.get(&id) {
            Some(&item) => item,
            None => {
                let item = self.resident.track(id).map_err(core_error("track"))?;
                self.items.insert(id, item);
                item
            }
        };
        match self.resident.scan(&mut self.host, item, sampled) {
            Ok(outcome) => Ok(Some(matches!(
                outcome,
                ScanOutcome::MergedIntoStable(_) | ScanOutcome::MergedPair(_)
            ))),
            // The page vanished between reads: not scanned.
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(core_error("merge trees")(e)),
        }
    }

    /// Move the stable tree's keys from strength `from` to `to`: the kept pages are
    /// snapshots, so their words are at hand (UKSM's delta hash).
    fn rekey(&mut self, from: u32, to: u32) -> anyhow::Result<()> {
        let (host, hasher) = (&mut self.host, &self.hasher);
        self.resident
            .rekey(|kept, old| {
                if host.read(kept, Buffer::A) {
                    Ok(hasher.rehash(old, from, to, host.page_a()))
                } else {
                    Err(Error::NotFound)
                }
            })
            .map_err(core_error("re-keying the merge trees"))
    }

    /// How many regions sit on each rung.
    fn regions_per_rung(&self) -> Vec<u64> {
        (0..self.rung_count)
            .map(|rung| {
                self.region_ids
                    .iter()
                    .filter(|&&id| self.ladder.region_rung(id) == Some(rung))
                    .count() as u64
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldswap_mem::Page;

    #[test]
    fn strength_changes_rekey_the_trees_and_keep_every_merge() {
        // A probe every round: the strength moves (s/2, 2s, ...) between passes.
        let mut tunables = Budget::Every.tunables();
        tunables.strength.probe_every_windows = 1;
        tunables.strength.min_window_pages = 1;
        let mut pages: Vec<Box<Page>> = (0..6).map(|_| Box::new(Page::zeroed())).collect();
        for page in &mut pages {
            for (i, b) in page.as_bytes_mut().iter_mut().enumerate() {
                *b = ((i * 7 + 13) % 256) as u8 ^ 0xa5;
            }
        }
        let report = scan_with(&[std::process::id()], 8, tunables, "probing").unwrap();
        drop(pages);
        let strengths: Vec<u32> = report.passes.iter().map(|p| p.strength).collect();
        assert!(
            strengths.windows(2).any(|w| w[0] != w[1]),
            "the strength never changed: {strengths:?}"
        );
        // The six identical pages share one page from the second pass on, whatever
        // the strength (more duplicates of the test process may join them).
        for pass in &report.passes[1..] {
            assert!(
                pass.pages_shared >= 1 && pass.pages_sharing >= 5,
                "{pass:?}"
            );
        }
    }
}
