//! Property: after any sequence of track / write / untrack / scan / end-of-pass, the
//! resident face's merges match a naive model: merged pages hold their node's exact
//! bytes, sharing counts match the pages merged, no node exceeds the sharing limit,
//! and after quiet passes every group of identical pages is merged as far as the
//! limit allows.

mod common;

use common::{Sim, pattern};
use foldswap_mem::{CountingProvider, StdPageProvider};
use foldswap_merge::testing::HashMode;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Track a page with content class (fill, last byte).
    Track(u8, u8),
    /// Write byte `offset` of page `index` (a merge breaks first).
    Write(usize, u16, u8),
    /// Write without telling the trees; the next scan must notice.
    WriteSilently(usize, u16, u8),
    Untrack(usize),
    Scan(usize),
    /// The host refuses the next merges ("page changed").
    Refuse(u8),
    EndPass,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u8..2).prop_map(|(f, l)| Op::Track(f, l)),
        2 => (any::<usize>(), 0u16..4096, 0u8..3).prop_map(|(i, o, v)| Op::Write(i, o, v)),
        1 => (any::<usize>(), 4095u16..4096, 0u8..2).prop_map(|(i, o, v)| Op::WriteSilently(i, o, v)),
        1 => any::<usize>().prop_map(Op::Untrack),
        8 => any::<usize>().prop_map(Op::Scan),
        1 => (0u8..3).prop_map(Op::Refuse),
        2 => Just(Op::EndPass),
    ]
}

fn run(ops: Vec<Op>, mode: HashMode, limit: u32) {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut sim = Sim::new(&provider, mode, limit);
    for op in ops {
        let len = sim.pages.len();
        match op {
            Op::Track(fill, last) => {
                sim.add(&pattern(fill, last)).unwrap();
            }
            Op::Write(i, offset, value) if len > 0 => sim.write(i % len, offset as usize, value),
            Op::WriteSilently(i, offset, value) if len > 0 => {
                sim.write_silently(i % len, offset as usize, value)
            }
            Op::Untrack(i) if len > 0 => sim.untrack(i % len),
            Op::Scan(i) if len > 0 => {
                sim.scan(i % len).unwrap();
            }
            Op::Refuse(n) => sim.host.refuse_next_merges(n as usize),
            Op::EndPass => sim.resident.end_pass().unwrap(),
            _ => {}
        }
        sim.check();
    }
    sim.host.refuse_next_merges(0);
    for _ in 0..3 {
        sim.pass().unwrap();
        sim.check();
    }
    sim.check_converged();
    for i in (0..sim.pages.len()).rev() {
        sim.untrack(i);
        sim.check();
    }
    assert_eq!(sim.stats().pages_shared, 0);
    drop(sim);
    assert_eq!(provider.pages_in_use(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resident_matches_the_model(ops in proptest::collection::vec(op(), 1..300), limit in 2u32..6) {
        run(ops, HashMode::Real, limit);
    }

    #[test]
    fn resident_matches_the_model_when_every_hash_collides(
        ops in proptest::collection::vec(op(), 1..200),
        limit in 2u32..6,
    ) {
        run(ops, HashMode::AllCollide, limit);
    }
}
