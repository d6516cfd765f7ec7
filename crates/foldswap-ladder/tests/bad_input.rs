//! Bad input: typed errors or documented clamping, never a panic, nothing lost.

use foldswap_ladder::{BatchResult, Governor, Ladder, Next, Tunables};
use foldswap_mem::{CountingProvider, Error, StdPageProvider};
use proptest::prelude::*;

fn ladder() -> Ladder<StdPageProvider> {
    Ladder::new(StdPageProvider, Tunables::default(), 3).unwrap()
}

/// Drive until the ladder hands out a batch.
fn first_batch<P: foldswap_mem::PageProvider>(
    ladder: &mut Ladder<P>,
    now: &mut u64,
) -> foldswap_ladder::Batch {
    for _ in 0..10_000 {
        match ladder.next_batch(*now).unwrap() {
            Next::Scan(batch) => return batch,
            Next::Sleep { until_ns } => *now = until_ns,
            Next::RoundEnd => {
                ladder.end_round(*now).unwrap();
            }
        }
    }
    panic!("no batch in 10000 steps");
}

fn done(batch: &foldswap_ladder::Batch) -> BatchResult {
    BatchResult {
        pages_scanned: batch.count,
        cost_ns: 500 * u64::from(batch.count),
        ..BatchResult::default()
    }
}

#[test]
fn empty_regions_are_rejected() {
    let mut l = ladder();
    assert_eq!(
        l.add_region(0, 1),
        Err(Error::InvalidArgument("empty region"))
    );
    assert_eq!(l.region_count(), 0);
    assert_eq!(l.stats().rejected_calls, 1);
    // With no regions the ladder only ever asks to sleep, for at most max_sleep.
    match l.next_batch(0).unwrap() {
        Next::Sleep { until_ns } => assert_eq!(until_ns, l.tunables().max_sleep_ns),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_memory_for_a_region_is_a_typed_error() {
    let provider = CountingProvider::new(StdPageProvider, 0);
    let mut l = Ladder::new(&provider, Tunables::default(), 1).unwrap();
    assert_eq!(l.add_region(10, 0), Err(Error::OutOfMemory));
    provider.set_limit(usize::MAX);
    let id = l.add_region(10, 0).unwrap();
    assert_eq!(l.region_rung(id), Some(0));
}

#[test]
fn region_removed_mid_batch_keeps_the_cost_and_drops_the_results() {
    let mut l = ladder();
    let a = l.add_region(5000, 1).unwrap();
    let mut now = 0;
    let batch = first_batch(&mut l, &mut now);
    assert_eq!(batch.region, a);
    assert_eq!(l.remove_region(a), Ok(1));
    assert_eq!(
        l.remove_region(a),
        Err(Error::InvalidHandle),
        "removed twice"
    );
    assert_eq!(l.report_broken(a, 1), Err(Error::InvalidHandle));
    assert_eq!(l.region_rung(a), None);
    let result = BatchResult {
        pages_changed: 3,
        ..done(&batch)
    };
    l.complete_batch(&batch, result).unwrap();
    assert_eq!(l.stats().results_for_removed_regions, 1);
    assert_eq!(l.stats().cpu_ns, result.cost_ns);
    assert_eq!(l.rung_pages(0), 0);
    // A new region reusing the slot gets a fresh identity.
    let b = l.add_region(10, 2).unwrap();
    assert_eq!(b.index(), a.index());
    assert_ne!(b, a);
    assert_eq!(l.remove_region(a), Err(Error::InvalidHandle));
}

#[test]
fn regions_removed_mid_round_leave_the_pass_consistent() {
    let mut l = Ladder::new(StdPageProvider, Tunables::governor(Governor::Quiet), 9).unwrap();
    let ids: Vec<_> = (0..6)
        .map(|i| l.add_region(2000 + i * 100, i).unwrap())
        .collect();
    let mut now = 0;
    let mut removed = 0;
    let mut rounds = 0;
    while rounds < 6 {
        match l.next_batch(now).unwrap() {
            Next::Scan(batch) => {
                // Remove the region being scanned, mid-pass, twice per round.
                if removed < 4 && l.stats().batches % 7 == 3 {
                    l.remove_region(batch.region).unwrap();
                    removed += 1;
                }
                l.complete_batch(&batch, done(&batch)).unwrap();
                now += 500 * u64::from(batch.count);
            }
            Next::Sleep { until_ns } => now = until_ns,
            Next::RoundEnd => {
                l.end_round(now).unwrap();
                rounds += 1;
            }
        }
    }
    assert_eq!(removed, 4);
    let live: u64 = ids
        .iter()
        .zip(0u64..)
        .filter(|(id, _)| l.region_rung(**id).is_some())
        .map(|(_, i)| 2000 + i * 100)
        .sum();
    assert_eq!((0..4).map(|r| l.rung_pages(r)).sum::<u64>(), live);
    assert_eq!(l.region_count(), 2);
}

#[test]
fn batch_protocol_misuse_is_rejected_without_change() {
    let mut l = ladder();
    l.add_region(5000, 1).unwrap();
    let mut now = 0;
    let batch = first_batch(&mut l, &mut now);
    // Asking again before completing.
    assert!(matches!(l.next_batch(now), Err(Error::InvalidArgument(_))));
    assert!(matches!(l.end_round(now), Err(Error::InvalidArgument(_))));
    // A forged batch.
    let mut forged = batch;
    forged.id += 1;
    assert_eq!(
        l.complete_batch(&forged, done(&batch)),
        Err(Error::InvalidHandle)
    );
    // The right id with a bigger count is forged too.
    let mut widened = batch;
    widened.count += 100;
    assert_eq!(
        l.complete_batch(&widened, done(&widened)),
        Err(Error::InvalidHandle)
    );
    // Results larger than the batch.
    let too_many = BatchResult {
        pages_scanned: batch.count + 1,
        ..done(&batch)
    };
    assert!(matches!(
        l.complete_batch(&batch, too_many),
        Err(Error::InvalidArgument(_))
    ));
    let merged_too_many = BatchResult {
        pages_changed: batch.count + 1,
        ..done(&batch)
    };
    assert!(matches!(
        l.complete_batch(&batch, merged_too_many),
        Err(Error::InvalidArgument(_))
    ));
    // More empty slots than scanned, or more changed pages than non-empty slots.
    let empty_too_many = BatchResult {
        pages_empty: batch.count + 1,
        ..done(&batch)
    };
    let changed_empty = BatchResult {
        pages_changed: 1,
        pages_empty: batch.count,
        ..done(&batch)
    };
    for result in [empty_too_many, changed_empty] {
        assert!(matches!(
            l.complete_batch(&batch, result),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(l.stats().batches, 0, "nothing was recorded");
    l.complete_batch(&batch, done(&batch)).unwrap();
    assert_eq!(
        l.complete_batch(&batch, done(&batch)),
        Err(Error::InvalidHandle),
        "completed twice"
    );
    assert_eq!(l.stats().batches, 1);
    assert_eq!(l.stats().rejected_calls, 9);
}

#[test]
fn absurd_tunables_are_errors_or_clamped_and_nothing_is_staged_on_error() {
    let mut l = ladder();
    let mut bad = Tunables::default();
    bad.rungs[1].cover_msecs = -20;
    assert_eq!(
        l.stage_tunables(bad),
        Err(Error::InvalidArgument("cover_msecs must be > 0"))
    );
    bad.rungs[1].cover_msecs = 0;
    assert_eq!(
        l.stage_tunables(bad),
        Err(Error::InvalidArgument("cover_msecs must be > 0"))
    );
    assert!(l.staged_tunables().is_none());
    let mut wild = Tunables::default();
    wild.rungs[0].cpu_ratio = 1_000_000; // 10000 %
    wild.max_cpu = 50_000;
    assert_eq!(l.stage_tunables(wild), Ok(2));
    assert_eq!(l.staged_tunables().unwrap().rungs[0].cpu_ratio, 10_000);
    assert_eq!(l.staged_tunables().unwrap().max_cpu, 10_000);
    assert_eq!(
        l.tunables().max_cpu,
        Tunables::default().max_cpu,
        "not applied before the round ends"
    );
    let summary = l.end_round(0).unwrap();
    assert!(summary.tunables_applied);
    assert_eq!(l.tunables().max_cpu, 10_000);
    // Shares never exceed 100 % of a CPU, whatever the rungs ask for.
    l.add_region(100, 0).unwrap();
    assert!(l.cpu_budget() <= 10_000);
    assert!(matches!(
        Ladder::new(StdPageProvider, bad, 0),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn fewer_rungs_at_a_boundary_move_regions_down_to_the_new_top() {
    let mut l = ladder();
    let id = l.add_region(100, 0).unwrap();
    let mut now = 0;
    // Make it climb: every scanned page merges.
    while l.region_rung(id) != Some(3) {
        match l.next_batch(now).unwrap() {
            Next::Scan(b) => {
                let r = BatchResult {
                    pages_changed: b.count,
                    ..done(&b)
                };
                l.complete_batch(&b, r).unwrap();
                now += r.cost_ns;
            }
            Next::Sleep { until_ns } => now = until_ns,
            Next::RoundEnd => {
                l.end_round(now).unwrap();
            }
        }
    }
    let two = Tunables {
        rung_count: 2,
        ..Tunables::default()
    };
    l.stage_tunables(two).unwrap();
    l.end_round(now).unwrap();
    assert_eq!(l.region_rung(id), Some(1));
    assert_eq!(l.rung_pages(1), 100);
    assert_eq!(l.rung_pages(3), 0);
}

#[test]
fn clock_going_backwards_earns_nothing() {
    let mut l = ladder();
    l.add_region(1000, 0).unwrap();
    assert!(matches!(
        l.next_batch(1_000_000_000),
        Ok(Next::Sleep { .. })
    ));
    assert!(matches!(l.next_batch(5), Ok(Next::Sleep { .. })));
    assert_eq!(l.stats().clock_backwards, 1);
    // Time earned resumes from the latest time seen, not from the bogus one.
    assert!(matches!(
        l.next_batch(1_000_000_001),
        Ok(Next::Sleep { .. })
    ));
    assert_eq!(l.stats().clock_backwards, 1);
}

#[derive(Debug, Clone)]
enum Op {
    Add(u64),
    Remove(usize),
    Step(u32),
    Broken(usize, u64),
    Stage(i32, i64),
    EndRound,
    Backwards(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..5000).prop_map(Op::Add),
        2 => any::<usize>().prop_map(Op::Remove),
        8 => (0u32..4000).prop_map(Op::Step),
        1 => (any::<usize>(), 0u64..100).prop_map(|(i, n)| Op::Broken(i, n)),
        1 => (-20_000i32..20_000, -10i64..5000).prop_map(|(c, m)| Op::Stage(c, m)),
        1 => Just(Op::EndRound),
        1 => (0u64..1_000_000).prop_map(Op::Backwards),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Any sequence of host calls: no panic, batches inside their regions, rung page
    /// counts equal the live regions' pages, the budget never above 100 %.
    #[test]
    fn any_call_sequence_keeps_the_ladder_consistent(ops in proptest::collection::vec(op(), 1..300)) {
        let mut l = Ladder::new(StdPageProvider, Tunables::governor(Governor::Full), 5).unwrap();
        let mut live: Vec<(foldswap_ladder::RegionId, u64)> = Vec::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Add(pages) => match l.add_region(pages, pages) {
                    Ok(id) => live.push((id, pages)),
                    Err(e) => prop_assert_eq!(e, Error::InvalidArgument("empty region")),
                },
                Op::Remove(i) if !live.is_empty() => {
                    let (id, pages) = live.swap_remove(i % live.len());
                    prop_assert_eq!(l.remove_region(id), Ok(pages));
                }
                Op::Remove(_) => {}
                Op::Step(cost) => match l.next_batch(now)? {
                    Next::Scan(batch) => {
                        let pages = live.iter().find(|(id, _)| *id == batch.region).map(|r| r.1);
                        prop_assert_eq!(pages, Some(batch.tag));
                        for p in batch.pages() {
                            prop_assert!(p < batch.tag);
                        }
                        let cost = u64::from(cost) * u64::from(batch.count);
                        let result = BatchResult { pages_scanned: batch.count, pages_changed: batch.count / 3, cost_ns: cost, ..BatchResult::default() };
                        l.complete_batch(&batch, result)?;
                        now += cost;
                    }
                    Next::Sleep { until_ns } => { prop_assert!(until_ns > now); now = until_ns; }
                    Next::RoundEnd => { l.end_round(now)?; }
                },
                Op::Broken(i, n) if !live.is_empty() => {
                    l.report_broken(live[i % live.len()].0, n)?;
                }
                Op::Broken(..) => {}
                Op::Stage(cpu, cover) => {
                    let mut t = Tunables::governor(Governor::Full);
                    t.rungs[2].cpu_ratio = cpu;
                    t.rungs[3].cover_msecs = cover;
                    let valid = cpu != 0 && cover > 0;
                    prop_assert_eq!(l.stage_tunables(t).is_ok(), valid);
                }
                Op::EndRound => { l.end_round(now)?; }
                Op::Backwards(by) => { now = now.saturating_sub(by); }
            }
            let total: u64 = (0..foldswap_ladder::MAX_RUNGS).map(|r| l.rung_pages(r)).sum();
            prop_assert_eq!(total, live.iter().map(|r| r.1).sum::<u64>());
            prop_assert_eq!(l.region_count(), live.len());
            prop_assert!(l.cpu_budget() <= 10_000);
        }
    }
}

#[test]
fn the_ladder_and_the_hasher_fit_a_small_stack() {
    // Returned by value from `new`: keep them near the house's ~2 KiB frame rule. The
    // ladder is 2272 bytes, 536 of them the region slab's inline directory; both can be
    // built in place instead (`Ladder::init_in`, `SampledHasher::init_in_place`).
    let ladder = core::mem::size_of::<Ladder<StdPageProvider>>();
    let hasher = core::mem::size_of::<foldswap_ladder::SampledHasher>();
    assert!(ladder <= 2304, "Ladder is {ladder} bytes");
    assert!(hasher <= 2048 + 8, "SampledHasher is {hasher} bytes");
}
