//! Host call sequences on the scan ladder with arbitrary sizes, costs, clocks,
//! tunables and a memory limit: nothing may panic, every error is typed, batches stay
//! inside live regions, rung page counts match the live regions, the CPU budget
//! never exceeds 100 %; and the sampled hash's delta rule holds on arbitrary pages.
#![no_main]

use arbitrary::Arbitrary;
use foldswap_ladder::{BatchResult, HashWork, Ladder, Next, RegionId, SampledHasher, Tunables};
use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    seed: u64,
    ops: Vec<Op>,
    page: Vec<u8>,
    strengths: (u16, u16),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Add(u32),
    Remove(u8),
    Step {
        cost_per_page: u16,
        merged_share: u8,
        /// Share of the scanned slots that held nothing, in 1/255.
        empty_share: u8,
        partial: bool,
    },
    Broken(u8, u16),
    Stage {
        rung: u8,
        cpu_ratio: i32,
        cover_msecs: i64,
        max_cpu: i32,
        rungs: u8,
    },
    EndRound,
    Clock(i32),
    MemoryLimit(u8),
}

fn typed(e: Error) {
    assert!(
        matches!(
            e,
            Error::InvalidArgument(_) | Error::InvalidHandle | Error::OutOfMemory
        ),
        "untyped error {e:?}"
    );
}

fuzz_target!(|input: Input| {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut ladder = Ladder::new(&provider, Tunables::default(), input.seed).unwrap();
    let mut live: Vec<(RegionId, u64)> = Vec::new();
    let mut now: u64 = 0;
    let mut outstanding = None;
    for op in input.ops.into_iter().take(400) {
        match op {
            Op::Add(pages) => {
                match ladder.add_region(u64::from(pages % 100_000), u64::from(pages % 100_000)) {
                    Ok(id) => live.push((id, u64::from(pages % 100_000))),
                    Err(e) => typed(e),
                }
            }
            Op::Remove(i) if !live.is_empty() => {
                let (id, pages) = live.swap_remove(i as usize % live.len());
                assert_eq!(ladder.remove_region(id), Ok(pages));
            }
            Op::Remove(_) => {}
            Op::Step {
                cost_per_page,
                merged_share,
                empty_share,
                partial,
            } => {
                if let Some(batch) = outstanding.take() {
                    let batch: foldswap_ladder::Batch = batch;
                    let scanned = if partial {
                        batch.count / 2
                    } else {
                        batch.count
                    };
                    let empty = (u64::from(scanned) * u64::from(empty_share) / 255) as u32;
                    let merged =
                        (u64::from(scanned - empty) * u64::from(merged_share) / 255) as u32;
                    let cost = u64::from(cost_per_page) * u64::from(scanned);
                    let result = BatchResult {
                        pages_scanned: scanned,
                        pages_changed: merged,
                        pages_empty: empty,
                        cost_ns: cost,
                        hash: HashWork {
                            sampled: u64::from(scanned),
                            collisions: u64::from(scanned - merged) / 4,
                            collision_full_hashes: u64::from(scanned - merged) / 4,
                            collision_compares: 0,
                        },
                    };
                    ladder.complete_batch(&batch, result).unwrap();
                    now = now.saturating_add(cost);
                    continue;
                }
                match ladder.next_batch(now) {
                    Ok(Next::Scan(batch)) => {
                        let pages = live.iter().find(|(id, _)| *id == batch.region).map(|r| r.1);
                        assert_eq!(pages, Some(batch.tag));
                        assert!(batch.pages().all(|p| p < batch.tag));
                        outstanding = Some(batch);
                    }
                    Ok(Next::Sleep { until_ns }) => {
                        assert!(until_ns > now || now == u64::MAX);
                        now = until_ns;
                    }
                    Ok(Next::RoundEnd) => {
                        ladder.end_round(now).unwrap();
                    }
                    Err(e) => typed(e),
                }
            }
            Op::Broken(i, n) if !live.is_empty() => {
                ladder
                    .report_broken(live[i as usize % live.len()].0, u64::from(n))
                    .unwrap();
            }
            Op::Broken(..) => {}
            Op::Stage {
                rung,
                cpu_ratio,
                cover_msecs,
                max_cpu,
                rungs,
            } => {
                let mut t = Tunables::default();
                if let Some(r) = t.rungs.get_mut(rung as usize % foldswap_ladder::MAX_RUNGS) {
                    r.cpu_ratio = cpu_ratio;
                    r.cover_msecs = cover_msecs;
                }
                t.max_cpu = max_cpu;
                t.rung_count = rungs % 8;
                if let Err(e) = ladder.stage_tunables(t) {
                    typed(e);
                }
            }
            Op::EndRound => match ladder.end_round(now) {
                Ok(_) => {}
                Err(e) => {
                    assert!(outstanding.is_some());
                    typed(e);
                }
            },
            Op::Clock(delta) => now = now.saturating_add_signed(i64::from(delta)),
            Op::MemoryLimit(pages) => provider.set_limit(pages as usize),
        }
        let total: u64 = (0..foldswap_ladder::MAX_RUNGS)
            .map(|r| ladder.rung_pages(r))
            .sum();
        assert_eq!(total, live.iter().map(|r| r.1).sum::<u64>());
        assert_eq!(ladder.region_count(), live.len());
        assert!(ladder.cpu_budget() <= 10_000);
    }

    // The delta rule on an arbitrary page.
    let mut page = [0u8; PAGE_SIZE];
    for (dst, src) in page.iter_mut().zip(input.page.iter()) {
        *dst = *src;
    }
    let hasher = SampledHasher::new(input.seed);
    let (from, to) = (u32::from(input.strengths.0), u32::from(input.strengths.1));
    let stored = hasher.hash_at(&page, from);
    assert_eq!(
        hasher.rehash(stored, from, to, &page),
        hasher.hash_at(&page, to)
    );
});
