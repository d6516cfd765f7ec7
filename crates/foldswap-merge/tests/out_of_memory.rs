//! The resident face with memory running out at every possible moment: each failure
//! is a clean `OutOfMemory`, the trees stay consistent, and once memory is back the
//! pages merge as if nothing had happened.

mod common;

use common::{Sim, pattern};
use foldswap_mem::{CountingProvider, Error, StdPageProvider};
use foldswap_merge::testing::HashMode;
use foldswap_merge::{Resident, StableTree};

#[test]
fn resident_survives_memory_running_out_anywhere() {
    for squeeze_every in [2usize, 3, 5, 11] {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut sim = Sim::new(&provider, HashMode::Real, 3);
        let mut failures = 0;
        for step in 0..3000usize {
            if step % squeeze_every == 0 {
                provider.set_limit(provider.pages_in_use());
            } else {
                provider.set_limit(provider.pages_in_use() + 1);
            }
            let result = match step % 9 {
                0..=2 => sim.add(&pattern((step % 5) as u8, 0)).map(|_| ()),
                3..=7 if !sim.pages.is_empty() => sim.scan(step % sim.pages.len()).map(|_| ()),
                8 => sim.resident.end_pass(),
                _ => Ok(()),
            };
            match result {
                Ok(()) => {}
                Err(Error::OutOfMemory) => failures += 1,
                Err(e) => panic!("unexpected error {e:?}"),
            }
            sim.check();
        }
        assert!(failures > 0, "memory never ran out");
        provider.set_limit(usize::MAX);
        sim.settle();
        sim.check_converged();
        let stats = sim.stats();
        assert!(stats.pages_sharing > 0);
        drop(sim);
        assert_eq!(provider.pages_in_use(), 0, "every page given back");
    }
}

#[test]
fn the_trees_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<StableTree<u64, StdPageProvider>>();
    assert_send::<Resident<u64, StdPageProvider>>();
    assert_send::<StableTree<u64, &'static CountingProvider<StdPageProvider>>>();
}
