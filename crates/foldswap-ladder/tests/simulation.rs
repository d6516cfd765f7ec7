//! Simulations of a host driving the ladder over a fake memory: regions with known
//! duplicate rates, a fake clock, per-page costs with noise. Simulated time only;
//! nothing here is timed for real.

use foldswap_ladder::{
    BatchResult, Governor, HashWork, Ladder, Next, RegionId, RoundSummary, Tunables,
};
use foldswap_mem::StdPageProvider;

const SECOND: u64 = 1_000_000_000;

/// A region of the fake memory.
#[derive(Clone, Copy)]
struct FakeRegion {
    id: RegionId,
    /// Share of scanned pages that merge, in 1/10000.
    dup_ratio: u64,
    /// Whether every merge of the round is broken by a write.
    writes_break_merges: bool,
    /// Share of slots that hold a page, in 1/10000 (a sparse swap area: most
    /// offsets empty); the others are reported as empty.
    occupied: u64,
}

struct Host {
    ladder: Ladder<StdPageProvider>,
    regions: Vec<FakeRegion>,
    now: u64,
    /// CPU the ladder was entitled to, integrated over time (ns).
    entitled_ns: u128,
    spent_ns: u128,
    rounds: Vec<RoundSummary>,
    noise: u64,
    /// Sleeps answered, right after waking, by another sleep: the wake-up time was wrong.
    wasted_wakeups: u32,
    slept: bool,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Host {
    fn new(tunables: Tunables, regions: &[(u64, u64)]) -> Host {
        let mut ladder = Ladder::new(StdPageProvider, tunables, 0xfeed).unwrap();
        let regions = regions
            .iter()
            .enumerate()
            .map(|(i, &(pages, dup_ratio))| FakeRegion {
                id: ladder.add_region(pages, i as u64).unwrap(),
                dup_ratio,
                writes_break_merges: false,
                occupied: 10_000,
            })
            .collect();
        Host {
            ladder,
            regions,
            now: 0,
            entitled_ns: 0,
            spent_ns: 0,
            rounds: Vec::new(),
            noise: 1,
            wasted_wakeups: 0,
            slept: false,
        }
    }

    /// Per-page cost: 400..800 ns, like hashing plus a tree lookup.
    fn page_cost(&mut self) -> u64 {
        self.noise = mix(self.noise);
        400 + self.noise % 401
    }

    fn advance_to(&mut self, t: u64) {
        let budget = u128::from(self.ladder.cpu_budget());
        self.entitled_ns += u128::from(t - self.now) * budget / 10_000;
        self.now = t;
    }

    fn step(&mut self) {
        let next = self.ladder.next_batch(self.now).unwrap();
        let slept = core::mem::replace(&mut self.slept, matches!(next, Next::Sleep { .. }));
        if slept && matches!(next, Next::Sleep { .. }) {
            self.wasted_wakeups += 1;
        }
        match next {
            Next::Scan(batch) => {
                let region = *self.regions.iter().find(|r| r.id == batch.region).unwrap();
                let mut cost = 0;
                let mut merged = 0;
                let mut empty = 0;
                for page in batch.pages() {
                    // A slot is empty or not for good; its merge roll is per round.
                    if mix(page ^ (batch.tag << 40) ^ (1 << 63)) % 10_000 >= region.occupied {
                        cost += 20;
                        empty += 1;
                        continue;
                    }
                    cost += self.page_cost();
                    let roll = mix(page ^ (batch.tag << 40) ^ (self.ladder.round() << 52)) % 10_000;
                    if roll < region.dup_ratio {
                        merged += 1;
                    }
                }
                let result = BatchResult {
                    pages_scanned: batch.count,
                    pages_changed: merged,
                    pages_empty: empty,
                    cost_ns: cost,
                    hash: HashWork {
                        sampled: u64::from(batch.count),
                        ..HashWork::default()
                    },
                };
                self.ladder.complete_batch(&batch, result).unwrap();
                if region.writes_break_merges && merged > 0 {
                    self.ladder
                        .report_broken(region.id, u64::from(merged))
                        .unwrap();
                }
                self.spent_ns += u128::from(cost);
                let end = self.now + cost;
                self.advance_to(end);
            }
            Next::Sleep { until_ns } => {
                assert!(until_ns > self.now, "a sleep must move time forward");
                self.advance_to(until_ns);
            }
            Next::RoundEnd => {
                let summary = self.ladder.end_round(self.now).unwrap();
                self.rounds.push(summary);
            }
        }
    }

    fn run_for(&mut self, duration: u64) {
        let end = self.now + duration;
        while self.now < end {
            self.step();
        }
    }

    fn rung(&self, i: usize) -> u8 {
        self.ladder.region_rung(self.regions[i].id).unwrap()
    }
}

#[test]
fn duplicate_rich_regions_climb_and_barren_ones_fall() {
    // 30 % duplicates, 2 % duplicates, none.
    let mut host = Host::new(
        Tunables::governor(Governor::Medium),
        &[(20_000, 3000), (20_000, 200), (20_000, 0)],
    );
    host.run_for(20 * SECOND);
    assert!(host.rounds.len() >= 5, "rounds: {}", host.rounds.len());
    assert_eq!(
        host.rung(0),
        3,
        "the duplicate-rich region reached the top rung"
    );
    assert_eq!(host.rung(1), 0, "a 2 % region stays at the bottom");
    assert_eq!(host.rung(2), 0, "a barren region stays at the bottom");
    // Now the rich region goes barren: it falls back down.
    host.regions[0].dup_ratio = 0;
    host.run_for(20 * SECOND);
    assert_eq!(
        host.rung(0),
        0,
        "a region that went barren fell to the bottom"
    );
    let stats = host.ladder.stats();
    assert!(stats.promotions >= 3 && stats.demotions >= 3, "{stats:?}");
}

/// A swap area is mostly empty offsets: one holding 3 % pages that the scanner all
/// improves is as worth scanning as a full one, and climbs; judged over its empty
/// offsets too (3 % < 10 %) it would stay at the bottom rung.
#[test]
fn a_sparse_region_is_judged_by_the_pages_it_holds() {
    let mut host = Host::new(
        Tunables::governor(Governor::Full),
        &[(262_144, 10_000), (262_144, 200)],
    );
    for region in host.regions.iter_mut() {
        region.occupied = 300;
    }
    host.run_for(20 * SECOND);
    assert!(host.rounds.len() >= 5, "rounds: {}", host.rounds.len());
    assert_eq!(
        host.rung(0),
        3,
        "every page it holds improves: the top rung"
    );
    assert_eq!(host.rung(1), 0, "2 % of its pages improve: the bottom rung");
    // Its pages settled: nothing improves any more, and it falls.
    host.regions[0].dup_ratio = 0;
    host.run_for(20 * SECOND);
    assert_eq!(host.rung(0), 0, "a settled region falls to the bottom");
}

#[test]
fn a_region_whose_merges_keep_breaking_is_demoted() {
    let mut host = Host::new(
        Tunables::governor(Governor::Medium),
        &[(10_000, 4000), (10_000, 4000)],
    );
    host.run_for(15 * SECOND);
    assert_eq!((host.rung(0), host.rung(1)), (3, 3), "both climbed");
    // Region 0's pages are now written right after every merge.
    host.regions[0].writes_break_merges = true;
    host.run_for(15 * SECOND);
    assert_eq!(host.rung(0), 0, "thrashing region demoted to the bottom");
    assert_eq!(host.rung(1), 3, "the stable region stays on top");
    assert!(host.ladder.stats().thrashing >= 3);
    assert!(host.rounds.iter().map(|r| r.thrashing).sum::<u32>() >= 3);
}

#[test]
fn cpu_budget_is_held_within_ten_percent_over_a_simulated_minute() {
    for governor in [
        Governor::Full,
        Governor::Medium,
        Governor::Low,
        Governor::Quiet,
    ] {
        let mut host = Host::new(
            Tunables::governor(governor),
            &[(50_000, 3000), (30_000, 1500), (40_000, 0), (5_000, 500)],
        );
        host.run_for(60 * SECOND);
        let (spent, entitled) = (host.spent_ns as f64, host.entitled_ns as f64);
        let off = (spent - entitled).abs() / entitled;
        assert!(
            off <= 0.10,
            "{governor:?}: spent {:.3} s of CPU, entitled to {:.3} s ({:.1} % off)",
            spent / 1e9,
            entitled / 1e9,
            off * 100.0
        );
        // And never more than max_cpu of the minute.
        let max_cpu = f64::from(host.ladder.tunables().max_cpu) / 10_000.0;
        assert!(
            spent <= 60e9 * max_cpu * 1.10,
            "{governor:?} exceeded max_cpu"
        );
        // The entitlement itself, recomputed independently from the governor's table:
        // positive ratios as they are, negative ones as a share of max_cpu, the sum of
        // the non-empty rungs scaled down to max_cpu.
        let t = host.ladder.tunables();
        let raw: Vec<f64> = (0..4)
            .filter(|&r| host.ladder.rung_pages(r) > 0)
            .map(|r| {
                let ratio = f64::from(t.rungs[r].cpu_ratio);
                if ratio > 0.0 {
                    ratio
                } else {
                    -ratio * f64::from(t.max_cpu) / 10_000.0
                }
            })
            .collect();
        let expected = raw.iter().sum::<f64>().min(f64::from(t.max_cpu));
        let budget = host.ladder.cpu_budget() as f64;
        assert!(
            (budget - expected).abs() <= 4.0,
            "{governor:?}: budget {budget} vs {expected}"
        );
        // Every sleep the ladder asked for ended with work ready.
        assert_eq!(host.wasted_wakeups, 0, "{governor:?}");
    }
}

#[test]
fn every_rung_is_covered_within_its_cover_time() {
    let tunables = Tunables::governor(Governor::Low);
    // A mix of rates keeps regions moving through every rung.
    let mut host = Host::new(
        tunables,
        &[
            (60_000, 3000),
            (60_000, 0),
            (30_000, 1200),
            (8_000, 4000),
            (100_000, 100),
        ],
    );
    // A region that alternates between rich and barren walks the middle rungs.
    for second in 0..60u64 {
        host.regions[4].dup_ratio = if (second / 6) % 2 == 0 { 2500 } else { 0 };
        host.run_for(SECOND);
    }
    for rung in 0..4 {
        let stats = host.ladder.rung_stats(rung).unwrap();
        let cover_ns = tunables.rungs[rung].cover_msecs as u64 * 1_000_000;
        assert!(
            stats.passes > 0,
            "rung {rung} never finished a pass: {stats:?}"
        );
        assert!(
            stats.longest_pass_ns <= cover_ns + cover_ns / 10,
            "rung {rung}: a pass took {} ms, cover time {} ms",
            stats.longest_pass_ns / 1_000_000,
            cover_ns / 1_000_000
        );
    }
}

#[test]
fn batch_pages_stay_inside_their_region_and_passes_cover_the_rung() {
    let mut host = Host::new(
        Tunables::governor(Governor::Quiet),
        &[(7, 0), (1, 0), (100_003, 0)],
    );
    let sizes = [7u64, 1, 100_003];
    let mut seen_small = [false; 8];
    for _ in 0..200_000 {
        match host.ladder.next_batch(host.now).unwrap() {
            Next::Scan(batch) => {
                let size = sizes[batch.tag as usize];
                assert!(batch.count >= 1);
                for page in batch.pages() {
                    assert!(page < size, "page {page} outside a region of {size}");
                    if batch.tag == 0 {
                        seen_small[page as usize] = true;
                    }
                }
                let cost = 500 * u64::from(batch.count);
                let result = BatchResult {
                    pages_scanned: batch.count,
                    cost_ns: cost,
                    ..BatchResult::default()
                };
                host.ladder.complete_batch(&batch, result).unwrap();
                host.now += cost;
            }
            Next::Sleep { until_ns } => host.now = until_ns,
            Next::RoundEnd => {
                host.ladder.end_round(host.now).unwrap();
            }
        }
    }
    assert!(
        seen_small[..7].iter().all(|&s| s),
        "random starts reach every page"
    );
}

#[test]
fn staged_tunables_apply_only_at_the_round_boundary() {
    let mut host = Host::new(Tunables::governor(Governor::Medium), &[(50_000, 0)]);
    host.run_for(SECOND / 10);
    let rounds_before = host.rounds.len();
    let mut quiet = Tunables::governor(Governor::Quiet);
    quiet.strength.initial_strength = 200;
    host.ladder.stage_tunables(quiet).unwrap();
    assert_eq!(
        host.ladder.tunables().max_cpu,
        5000,
        "not applied mid-round"
    );
    assert!(host.ladder.staged_tunables().is_some());
    // Drive until the round ends; every batch until then still uses the old budget.
    while host.rounds.len() == rounds_before {
        assert_eq!(host.ladder.tunables().max_cpu, 5000);
        host.step();
    }
    assert!(host.rounds.last().unwrap().tunables_applied);
    assert_eq!(host.ladder.tunables().max_cpu, 100);
    assert!(host.ladder.staged_tunables().is_none());
    assert_eq!(host.ladder.stats().tunables_applied, 1);
}
