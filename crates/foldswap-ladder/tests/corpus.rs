//! The sampling hash and the strength adapter on the real dev corpus.
//! Fails (does not skip) when the corpus is missing.

use foldswap_ladder::settle::{first_level_work, settle_strength};
use foldswap_ladder::{AdapterTunables, MAX_STRENGTH, SampledHasher};

#[test]
fn adapter_settles_on_the_dev_corpus_and_the_first_level_misses_no_duplicate() {
    let (corpus, reference) = foldswap_corpus::dev_mixed().expect("dev corpus must be present");
    let pages: Vec<&[u8; 4096]> = corpus.pages().collect();
    assert_eq!(pages.len() as u64, reference.pages);
    let hasher = SampledHasher::new(0x1adde5);
    let report = settle_strength(&pages, &hasher, AdapterTunables::default(), 64, 20);
    let trail: Vec<u32> = report.history.iter().map(|(s, _)| *s).collect();
    eprintln!("strengths per window: {trail:?}");
    eprintln!(
        "settled strength {} ({:?})",
        report.strength, report.adapter
    );
    // Settled: the last 20 windows stayed at one strength but for the probes
    // (two windows in every ten).
    assert!(report.held_windows >= 15, "still moving: {trail:?}");
    assert!(
        report.strength < MAX_STRENGTH,
        "sampling pays on this corpus"
    );

    // At the settled strength, every duplicate and every zero page is still found.
    let found = first_level_work(&pages, &hasher, report.strength);
    let distinct = 1 + reference.unique_nonfill; // the zero page + distinct non-filled
    assert_eq!(reference.same_filled, 0);
    assert_eq!(found.duplicates, reference.pages - distinct);
    assert_eq!(found.zero_pages, reference.zero);
    // Collisions at the settled strength cost less than the raise threshold.
    let w = AdapterTunables::default().weights;
    let benefit = found.work.sampled as i128
        * (w.full_hash_ps as i128 - report.strength as i128 * w.sampled_word_ps as i128);
    let cost = found.work.collision_full_hashes as i128 * w.full_hash_ps as i128;
    assert!(cost * 10 < benefit * 9, "cost {cost} vs benefit {benefit}");
}

#[test]
fn delta_rehash_matches_direct_hashing_on_every_corpus_page() {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev corpus must be present");
    let hasher = SampledHasher::new(99);
    for page in corpus.pages() {
        let h64 = hasher.hash_at(page, 64);
        for to in [4, 16, 128, 1034] {
            assert_eq!(hasher.rehash(h64, 64, to, page), hasher.hash_at(page, to));
        }
    }
}

#[test]
fn without_the_periodic_probe_the_adapter_never_leaves_uksms_default() {
    // UKSM's rules alone: lower only after cost-free windows, probe only on drift. On
    // real memory a few collisions always happen, so the strength never comes down.
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev corpus must be present");
    let pages: Vec<&[u8; 4096]> = corpus.pages().collect();
    let hasher = SampledHasher::new(0x1adde5);
    let uksm_rules = AdapterTunables {
        probe_every_windows: 0,
        ..AdapterTunables::default()
    };
    let report = settle_strength(&pages, &hasher, uksm_rules, 12, 12);
    assert!(
        report.history.iter().all(|(s, _)| *s == 64),
        "{:?}",
        report.history
    );
    assert!(report.history.iter().all(|(_, w)| w.collisions > 0));
    assert_eq!(report.adapter.strength_changes, 0);
}
