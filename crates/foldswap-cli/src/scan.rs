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
//! [`ProcessHost`] answers the trees' requests by reading the pages again and
//! comparing bytes; a merged page's shared copy is snapshotted, and the page counts
//! as still merged while its bytes equal that snapshot (a write to it "breaks" the
//! merge, as copy-on-write would).
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
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use foldswap_ladder::{BatchResult, Governor, HashWork, Ladder, Next, SampledHasher, Tunables};
use foldswap_mem::{Error, PAGE_SIZE, StdPageProvider};
use foldswap_merge::{ItemRef, MergeHost, MergeResult, PageContents, Resident, ScanOutcome};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;
use xxhash_rust::xxh32::xxh32;

use crate::error::InputError;
use crate::procmem::{
    Mapping, PAGEMAP_PRESENT, anonymous_mappings, check_processes_exist, open_proc_file,
};

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

/// A page as the merge trees know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageId {
    /// Virtual page `vpage` of process number `process` (index in the host's list).
    Live {
        /// Index of the process.
        process: u32,
        /// Virtual address / 4096.
        vpage: u64,
    },
    /// A snapshot of a merged (shared) page's bytes.
    Kept(u32),
}

/// One process being scanned.
struct Process {
    mem: File,
    pagemap: File,
}

/// The merge trees' host over live processes; see the module documentation.
pub struct ProcessHost {
    processes: Vec<Process>,
    kept: Vec<Option<Box<[u8; PAGE_SIZE]>>>,
    free_kept: Vec<u32>,
    a: Box<[u8; PAGE_SIZE]>,
    b: Box<[u8; PAGE_SIZE]>,
    read_ns: u64,
}

impl ProcessHost {
    /// Open `/proc/PID/mem` and `pagemap` of every process.
    pub fn open(pids: &[u32]) -> Result<Self, InputError> {
        let processes = pids
            .iter()
            .map(|&pid| {
                Ok(Process {
                    mem: open_proc_file(pid, "mem")?,
                    pagemap: open_proc_file(pid, "pagemap")?,
                })
            })
            .collect::<Result<_, InputError>>()?;
        Ok(ProcessHost {
            processes,
            kept: Vec::new(),
            free_kept: Vec::new(),
            a: Box::new([0; PAGE_SIZE]),
            b: Box::new([0; PAGE_SIZE]),
            read_ns: 0,
        })
    }

    /// Whether virtual page `vpage` of `process` is present in RAM.
    fn present(&self, process: u32, vpage: u64) -> bool {
        let mut entry = [0u8; 8];
        self.processes
            .get(process as usize)
            .is_some_and(|p| p.pagemap.read_exact_at(&mut entry, vpage * 8).is_ok())
            && u64::from_le_bytes(entry) & PAGEMAP_PRESENT != 0
    }

    /// Read page `id` into `out`; false if it cannot be read (unmapped meanwhile).
    fn read(&mut self, id: PageId, which: Buffer) -> bool {
        let start = Instant::now();
        let out = match which {
            Buffer::A => &mut self.a,
            Buffer::B => &mut self.b,
        };
        let ok = match id {
            PageId::Live { process, vpage } => {
                self.processes.get(process as usize).is_some_and(|p| {
                    p.mem
                        .read_exact_at(&mut out[..], vpage * PAGE_SIZE as u64)
                        .is_ok()
                })
            }
            PageId::Kept(slot) => match self.kept.get(slot as usize) {
                Some(Some(bytes)) => {
                    out.copy_from_slice(&bytes[..]);
                    true
                }
                _ => false,
            },
        };
        self.read_ns += u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        ok
    }

    /// Read both pages and compare them; false if either cannot be read.
    fn equal(&mut self, a: PageId, b: PageId) -> bool {
        self.read(a, Buffer::A) && self.read(b, Buffer::B) && self.a == self.b
    }

    /// Keep a snapshot of buffer A as a shared page.
    fn keep_a(&mut self) -> PageId {
        let copy = self.a.clone();
        match self.free_kept.pop() {
            Some(slot) => {
                if let Some(entry) = self.kept.get_mut(slot as usize) {
                    *entry = Some(copy);
                }
                PageId::Kept(slot)
            }
            None => {
                self.kept.push(Some(copy));
                PageId::Kept(self.kept.len() as u32 - 1)
            }
        }
    }
}

/// The host's two page buffers.
#[derive(Clone, Copy)]
enum Buffer {
    A,
    B,
}

impl PageContents for ProcessHost {
    type Id = PageId;

    fn full_hash(&mut self, page: PageId) -> Result<u64, Error> {
        if self.read(page, Buffer::A) {
            Ok(xxh3_64(&self.a[..]))
        } else {
            Err(Error::NotFound)
        }
    }

    fn same_contents(&mut self, a: PageId, b: PageId) -> Result<bool, Error> {
        Ok(self.equal(a, b))
    }
}

impl MergeHost for ProcessHost {
    fn checksum(&mut self, page: PageId) -> Result<u32, Error> {
        if self.read(page, Buffer::A) {
            Ok(xxh32(&self.a[..], 0))
        } else {
            Err(Error::NotFound)
        }
    }

    fn merge_pair(&mut self, page: PageId, partner: PageId) -> Result<MergeResult<PageId>, Error> {
        if self.equal(page, partner) {
            Ok(MergeResult::Merged {
                kept: self.keep_a(),
            })
        } else {
            Ok(MergeResult::PageChanged)
        }
    }

    fn merge_into(&mut self, page: PageId, kept: PageId) -> Result<MergeResult<PageId>, Error> {
        if self.equal(page, kept) {
            Ok(MergeResult::Merged { kept })
        } else {
            Ok(MergeResult::PageChanged)
        }
    }

    fn still_merged(&mut self, page: PageId, kept: PageId) -> Result<bool, Error> {
        Ok(self.equal(page, kept))
    }

    fn release_kept(&mut self, kept: PageId) {
        if let PageId::Kept(slot) = kept
            && let Some(entry) = self.kept.get_mut(slot as usize)
        {
            *entry = None;
            self.free_kept.push(slot);
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
    let mut regions: Vec<(u32, Mapping)> = Vec::new();
    for (index, &pid) in pids.iter().enumerate() {
        for mapping in anonymous_mappings(pid)? {
            regions.push((index as u32, mapping));
        }
    }
    let mut host = ProcessHost::open(pids)?;
    let error = |what: &str, e: Error| anyhow::anyhow!("{what}: {e:?}");
    let mut ladder =
        Ladder::new(StdPageProvider, tunables, DEFAULT_SEED).map_err(|e| error("ladder", e))?;
    let mut resident: Resident<PageId, StdPageProvider> =
        Resident::new(StdPageProvider).map_err(|e| error("merge trees", e))?;
    let hasher = SampledHasher::new(DEFAULT_SEED);
    let mut mapped_pages = 0u64;
    let mut region_ids = Vec::with_capacity(regions.len());
    for (tag, (_, mapping)) in regions.iter().enumerate() {
        let pages = (mapping.end - mapping.start) / PAGE_SIZE as u64;
        mapped_pages += pages;
        let id = ladder
            .add_region(pages, tag as u64)
            .map_err(|e| error("ladder region", e))?;
        region_ids.push(id);
    }
    let mut items: HashMap<PageId, ItemRef> = HashMap::new();
    let mut page = Box::new([0u8; PAGE_SIZE]);
    let mut now = 0u64;
    let mut reports = Vec::new();

    for pass in 1..=passes {
        let (mut scanned, mut merged, mut broken) = (0u64, 0u64, 0u64);
        let (mut cost_ns, read_before) = (0u64, host.read_ns);
        let strength = ladder.strength();
        let mut batches = 0u64;
        loop {
            batches += 1;
            if batches > MAX_BATCHES_PER_PASS {
                anyhow::bail!("the ladder did not end pass {pass}");
            }
            let batch = match ladder.next_batch(now).map_err(|e| error("ladder", e))? {
                Next::Scan(batch) => batch,
                Next::Sleep { until_ns } => {
                    now = until_ns.max(now + 1);
                    continue;
                }
                Next::RoundEnd => break,
            };
            let start = Instant::now();
            let before = resident.stats();
            let Some((process, mapping)) = regions.get(batch.tag as usize) else {
                anyhow::bail!("ladder gave an unknown region tag {}", batch.tag);
            };
            let first_vpage = mapping.start / PAGE_SIZE as u64;
            let end_vpage = mapping.end / PAGE_SIZE as u64;
            let mut result = BatchResult::default();
            for index in batch.pages() {
                let vpage = first_vpage + index;
                if vpage >= end_vpage || !host.present(*process, vpage) {
                    continue;
                }
                let id = PageId::Live {
                    process: *process,
                    vpage,
                };
                if !host.read(id, Buffer::A) {
                    continue;
                }
                page.copy_from_slice(&host.a[..]);
                let sampled = hasher.hash_at(&page, ladder.strength());
                let item = match items.get(&id) {
                    Some(&item) => item,
                    None => {
                        let item = resident.track(id).map_err(|e| error("track", e))?;
                        items.insert(id, item);
                        item
                    }
                };
                let outcome = match resident.scan(&mut host, item, sampled) {
                    Ok(outcome) => outcome,
                    // The page vanished between reads: not scanned.
                    Err(Error::NotFound) => continue,
                    Err(e) => return Err(error("merge trees", e)),
                };
                result.pages_scanned += 1;
                if matches!(
                    outcome,
                    ScanOutcome::MergedIntoStable(_) | ScanOutcome::MergedPair(_)
                ) {
                    result.merged += 1;
                }
            }
            let after = resident.stats();
            result.cost_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            result.hash = HashWork {
                sampled: u64::from(result.pages_scanned),
                collision_full_hashes: after.full_hashes - before.full_hashes,
                collision_compares: after.collisions - before.collisions,
                collisions: after.collisions - before.collisions,
            };
            let newly_broken = after.merges_broken - before.merges_broken;
            ladder
                .complete_batch(&batch, result)
                .map_err(|e| error("ladder", e))?;
            if newly_broken > 0 {
                ladder
                    .report_broken(batch.region, newly_broken)
                    .map_err(|e| error("ladder", e))?;
            }
            now += result.cost_ns.max(1);
            cost_ns += result.cost_ns;
            scanned += u64::from(result.pages_scanned);
            merged += u64::from(result.merged);
            broken += newly_broken;
        }
        resident.end_pass().map_err(|e| error("merge trees", e))?;
        let round = ladder.end_round(now).map_err(|e| error("ladder", e))?;
        if let Some(change) = round.strength_change {
            // Move the stable tree's keys to the new strength: the kept pages are
            // snapshots, so their words are at hand (UKSM's delta hash).
            resident
                .rekey(|kept, old| {
                    if host.read(kept, Buffer::A) {
                        Ok(hasher.rehash(old, change.from, change.to, &host.a))
                    } else {
                        Err(Error::NotFound)
                    }
                })
                .map_err(|e| error("re-keying the merge trees", e))?;
        }
        let stats = resident.stats();
        let per_page = |ns: u64| ns.checked_div(scanned).unwrap_or(0);
        reports.push(PassReport {
            pass,
            scanned,
            coverage: scanned as f64 / mapped_pages.max(1) as f64,
            merged,
            pages_shared: stats.pages_shared,
            pages_sharing: stats.pages_sharing,
            pages_unshared: stats.pages_unshared,
            pages_volatile: stats.pages_volatile,
            broken,
            saved_bytes: stats.pages_sharing * PAGE_SIZE as u64,
            scan_ns_per_page: per_page(cost_ns),
            read_ns_per_page: per_page(host.read_ns - read_before),
            strength,
            regions_per_rung: (0..tunables.rung_count)
                .map(|rung| {
                    region_ids
                        .iter()
                        .filter(|&&id| ladder.region_rung(id) == Some(rung))
                        .count() as u64
                })
                .collect(),
        });
    }
    Ok(ScanReport {
        schema: "foldswap-scan/1".to_owned(),
        pids: pids.to_vec(),
        regions: regions.len() as u64,
        mapped_pages,
        budget: budget.to_owned(),
        passes: reports,
    })
}

/// The scan report as a table for a terminal.
pub fn render_scan_table(report: &ScanReport) -> String {
    use core::fmt::Write as _;

    use crate::report::{human_bytes, thousands};

    let mut out = String::new();
    let pids: Vec<String> = report.pids.iter().map(u32::to_string).collect();
    let _ = writeln!(
        out,
        "pid {}: {} anonymous mappings, {} pages mapped ({}); budget {}",
        pids.join(","),
        report.regions,
        thousands(report.mapped_pages),
        human_bytes(report.mapped_pages * PAGE_SIZE as u64),
        report.budget
    );
    let _ = writeln!(
        out,
        "merging is counted, not done: a page is merged after a full byte comparison"
    );
    let _ = writeln!(
        out,
        "\n{:>4}  {:>9}  {:>6}  {:>6}  {:>6}  {:>7}  {:>8}  {:>8}  {:>10}  {:>8}  {:>7}  {:>8}",
        "pass",
        "scanned",
        "cover",
        "merged",
        "shared",
        "sharing",
        "unshared",
        "volatile",
        "saved",
        "ns/page",
        "read ns",
        "strength"
    );
    for p in &report.passes {
        let _ = writeln!(
            out,
            "{:>4}  {:>9}  {:>5.1}%  {:>6}  {:>6}  {:>7}  {:>8}  {:>8}  {:>10}  {:>8}  {:>7}  {:>8}",
            p.pass,
            thousands(p.scanned),
            p.coverage * 100.0,
            thousands(p.merged),
            thousands(p.pages_shared),
            thousands(p.pages_sharing),
            thousands(p.pages_unshared),
            thousands(p.pages_volatile),
            human_bytes(p.saved_bytes),
            thousands(p.scan_ns_per_page),
            thousands(p.read_ns_per_page),
            p.strength
        );
    }
    if let Some(last) = report.passes.last() {
        let rungs: Vec<String> = last.regions_per_rung.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "\nshared/sharing/unshared/volatile: KSM's pages_* after the pass; saved = sharing x 4 KiB\n\
             ns/page: scan CPU per scanned page, of which read ns reading /proc/PID/mem\n\
             regions per rung after the last pass: {}",
            rungs.join(" / ")
        );
    }
    out
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
