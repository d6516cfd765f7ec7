//! KSM's own selftest expectations (tools/testing/selftests/mm/ksm_tests.c),
//! reproduced in simulation: regions of identical pages give exactly the expected
//! `pages_shared` / `pages_sharing`, including the `max_page_sharing` remainder, and a
//! one-byte write unmerges.

mod common;

use common::{Sim, pattern};
use foldswap_mem::StdPageProvider;
use foldswap_merge::DEFAULT_MAX_PAGE_SHARING;
use foldswap_merge::testing::HashMode;

/// KSM's expectation for `pages` identical pages under `limit` sharers per page: full
/// stable pages of `limit`, plus one for the remainder — unless the remainder is a
/// single page, which has no partner and stays unmerged.
fn expected(pages: u64, limit: u64) -> (u64, u64) {
    if pages % limit <= 1 {
        let shared = pages / limit;
        (shared, shared * (limit - 1))
    } else {
        let shared = pages / limit + 1;
        (shared, pages - shared)
    }
}

/// `regions` regions of `pages_per_region` pages, every page the same bytes, then
/// enough passes for KSM to settle (one to learn checksums, one to merge).
fn merged_regions(
    regions: usize,
    pages_per_region: usize,
    limit: u32,
    mode: HashMode,
) -> Sim<StdPageProvider> {
    let mut sim = Sim::new(StdPageProvider, mode, limit);
    for _ in 0..regions * pages_per_region {
        sim.add(&pattern(b'*', b'*')).unwrap();
    }
    sim.settle();
    sim
}

#[test]
fn identical_pages_merge_into_one() {
    // ksm_tests -M: 10 pages, default max_page_sharing.
    let sim = merged_regions(1, 10, DEFAULT_MAX_PAGE_SHARING, HashMode::Real);
    let stats = sim.stats();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (1, 9));
    assert_eq!(stats.pages_unshared, 0);
}

#[test]
fn max_page_sharing_remainders_match_ksm() {
    for limit in [2u32, 3, 5, 10] {
        for pages in 2..=(3 * limit as usize + 2) {
            let sim = merged_regions(1, pages, limit, HashMode::Real);
            let stats = sim.stats();
            assert_eq!(
                (stats.pages_shared, stats.pages_sharing),
                expected(pages as u64, limit as u64),
                "{pages} pages, max_page_sharing {limit}"
            );
            let leftover = if pages % limit as usize == 1 { 1 } else { 0 };
            assert_eq!(
                stats.pages_unshared, leftover,
                "{pages} pages, limit {limit}"
            );
            assert_eq!(stats.stable_node_dups, stats.pages_shared.saturating_sub(1));
        }
    }
}

#[test]
fn many_regions_at_the_default_limit() {
    // 4 regions × 300 pages = 1200 identical pages, limit 256: 4 full stable pages and
    // one of 176.
    let sim = merged_regions(4, 300, DEFAULT_MAX_PAGE_SHARING, HashMode::Real);
    let stats = sim.stats();
    assert_eq!(
        (stats.pages_shared, stats.pages_sharing),
        expected(1200, 256)
    );
    assert_eq!((stats.pages_shared, stats.pages_sharing), (5, 1195));
}

#[test]
fn one_byte_write_unmerges() {
    // ksm_tests -U: merge 10 pages, change one byte of one page.
    let mut sim = merged_regions(1, 10, DEFAULT_MAX_PAGE_SHARING, HashMode::Real);
    sim.write(0, 0, b'-');
    sim.check();
    let stats = sim.stats();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (1, 8));
    // A host that only counts (no copy-on-write fault) learns it at the next scan.
    sim.write_silently(1, 4095, b'-');
    sim.scan(1).unwrap();
    sim.check();
    let stats = sim.stats();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (1, 7));
    assert_eq!(stats.merges_broken, 1);
    // The two changed pages differ from each other too: nothing more merges.
    let stats = sim.settle();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (1, 7));
    assert_eq!(stats.pages_unshared, 2);
}

#[test]
fn two_changed_pages_with_equal_bytes_remerge() {
    let mut sim = merged_regions(1, 4, DEFAULT_MAX_PAGE_SHARING, HashMode::Real);
    sim.write(0, 100, 1);
    sim.write(1, 100, 1);
    let stats = sim.settle();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (2, 2));
}

#[test]
fn volatile_pages_are_not_merged() {
    let mut sim = Sim::new(StdPageProvider, HashMode::Real, DEFAULT_MAX_PAGE_SHARING);
    for _ in 0..4 {
        sim.add(&pattern(3, 3)).unwrap();
    }
    sim.pass().unwrap();
    // Page 0 is rewritten (same bytes back and forth) before every scan: its
    // checksum keeps changing, so it never enters the unstable tree.
    for round in 0..3u8 {
        sim.write(0, 7, round + 10);
        sim.pass().unwrap();
    }
    let stats = sim.stats();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (1, 2));
    assert_eq!(stats.pages_volatile, 1);
    sim.check();
}

#[test]
fn a_refused_merge_leaves_everything_consistent() {
    let mut sim = Sim::new(StdPageProvider, HashMode::Real, DEFAULT_MAX_PAGE_SHARING);
    for _ in 0..3 {
        sim.add(&pattern(9, 9)).unwrap();
    }
    sim.pass().unwrap();
    sim.host.refuse_next_merges(1);
    sim.pass().unwrap();
    sim.check();
    assert_eq!(sim.stats().merges_failed, 1);
    let stats = sim.settle();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (1, 2));
}

#[test]
fn selftest_holds_when_every_hash_collides() {
    for limit in [2u32, 4] {
        for pages in 2..12usize {
            let sim = merged_regions(1, pages, limit, HashMode::AllCollide);
            let stats = sim.stats();
            assert_eq!(
                (stats.pages_shared, stats.pages_sharing),
                expected(pages as u64, limit as u64)
            );
        }
    }
}

#[test]
fn dev_corpus_merges_as_ksm_would() {
    let (corpus, reference) = foldswap_corpus::dev_mixed().expect("dev-mixed corpus");
    let mut sim = Sim::new(StdPageProvider, HashMode::Real, DEFAULT_MAX_PAGE_SHARING);
    let mut groups: std::collections::HashMap<&[u8; 4096], u64> = Default::default();
    for page in corpus.pages() {
        sim.add(page).unwrap();
        *groups.entry(page).or_default() += 1;
    }
    // The independent model: KSM's figure for each group of identical pages.
    let (mut shared, mut sharing) = (0, 0);
    for &count in groups.values() {
        let (s, g) = expected(count, DEFAULT_MAX_PAGE_SHARING as u64);
        shared += s;
        sharing += g;
    }
    let zero_pages = groups.get(&[0u8; 4096]).copied().unwrap_or(0);
    assert_eq!(zero_pages, reference.zero);
    assert_eq!(
        groups.values().map(|c| c - 1).sum::<u64>() - (zero_pages - 1),
        reference.dup_nonfill,
        "the model agrees with the reference figures"
    );
    let stats = sim.settle();
    sim.check_converged();
    assert_eq!((stats.pages_shared, stats.pages_sharing), (shared, sharing));
}

#[test]
fn rekeying_mid_scan_keeps_merges_and_flushes_the_unstable_tree() {
    let mut sim = merged_regions(1, 7, 3, HashMode::Real);
    sim.add(&pattern(b'*', b'*')).unwrap();
    sim.add(&pattern(1, 1)).unwrap();
    sim.pass().unwrap();
    sim.resident.rekey(|_, old| Ok(old.rotate_left(7))).unwrap();
    // The host's hasher now gives the new keys: VecHost's hash rotated the same way.
    for _ in 0..3 {
        for i in 0..sim.pages.len() {
            let (item, page) = sim.pages[i];
            let sampled = sim.host.sampled_hash(page).rotate_left(7);
            sim.resident.scan(&mut sim.host, item, sampled).unwrap();
        }
        sim.resident.end_pass().unwrap();
    }
    sim.check();
    sim.check_converged();
    let stats = sim.stats();
    assert_eq!((stats.pages_shared, stats.pages_sharing), expected(8, 3));
    // The new pair found the re-keyed full chain and joined it as a dup.
    assert_eq!(stats.stable_node_dups, 2);
}
