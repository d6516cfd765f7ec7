//! The scanner patches and recompresses stored pages in the background, and every
//! page still loads byte-exactly — also while stores, loads and invalidates run on
//! other threads.

use core::sync::atomic::{AtomicBool, Ordering};

mod common;

use common::{mark_member, stored, unthrottled, words_page};
use foldswap::{Backend, Config, ScanTunables, Scratch, StdClock, StdParker};
use foldswap_mem::{CountingProvider, PAGE_SIZE, StdPageProvider};

/// A family of similar pages: random lowercase text (deflate halves it, lz4 barely
/// helps) with a few bytes changed per member.
fn similar_page(family: u64, member: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    let mut x = family.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in page.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = b'a' + (x % 26) as u8;
    }
    mark_member(&mut page, member);
    page
}

/// Page `member` of `family`: families below [`UNIQUE`] are similar pages, the
/// others word pages of their own.
fn family_page(family: u64, member: u64) -> Vec<u8> {
    match family {
        UNIQUE.. => words_page(family * 1_000_003 + member),
        _ => similar_page(family, member),
    }
}

/// First family of pages no other offset holds.
const UNIQUE: u64 = 1 << 20;

#[test]
fn scanner_patches_similar_pages_and_loads_stay_exact() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, unthrottled(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, 400).unwrap();
    let mut pages = Vec::new();
    for family in 0..20u64 {
        for member in 0..20u64 {
            let offset = family * 20 + member;
            let page = similar_page(family, member);
            backend
                .store(0, offset, &page, foldswap::Domain(0), &mut scratch)
                .unwrap();
            pages.push((offset, page));
        }
    }
    let before = backend.pool_stats().object_bytes;
    let clock = StdClock::new();
    let tunables = ScanTunables {
        cold_rounds: 0,
        ..ScanTunables::default()
    };
    // Until settled: a whole ladder round that improves nothing.
    let (mut improved, mut this_round, mut last_round) = (0, 0, u64::MAX);
    for _ in 0..10_000 {
        let report = backend.scan_burst(&tunables, &mut scratch, &clock).unwrap();
        // The ladder earns CPU credit with wall time: sleep as it asks, as the
        // scanner thread would.
        std::thread::sleep(core::time::Duration::from_nanos(
            report.sleep_ns.min(5_000_000),
        ));
        this_round += report.improved;
        if report.rounds_ended > 0 {
            improved += this_round;
            last_round = core::mem::take(&mut this_round);
            if last_round == 0 {
                break;
            }
        }
    }
    assert_eq!(last_round, 0, "the scanner never settled");
    let s = backend.stats().snapshot();
    assert!(
        s.patched_pages > 300,
        "only {} of 400 similar pages patched: {s:?}",
        s.patched_pages
    );
    assert!(improved >= s.patched_pages);
    let after = backend.pool_stats().object_bytes;
    assert!(
        after * 3 < before,
        "patching saved too little: {before} -> {after}"
    );
    let mut out = vec![0u8; PAGE_SIZE];
    for (offset, page) in &pages {
        backend.load(0, *offset, &mut out, &mut scratch).unwrap();
        assert_eq!(&out, page, "offset {offset} changed");
    }
    // Bases outlive their last offset while deltas need them.
    for (offset, _) in pages.iter().step_by(2) {
        backend.invalidate_page(0, *offset).unwrap();
    }
    for (offset, page) in pages.iter().skip(1).step_by(2) {
        backend.load(0, *offset, &mut out, &mut scratch).unwrap();
        assert_eq!(&out, page);
    }
    backend.invalidate_area(0).unwrap();
    let s = backend.stats().snapshot();
    assert_eq!(
        (s.stored_pages, s.patched_pages, s.compressed_pages),
        (0, 0, 0)
    );
    // Memory goes back when pages go: with nothing stored, the backend holds only
    // its fixed parts: the pool's class page, the similarity index's one-page
    // table and its directory, the ladder's region page and its directory.
    let held = backend.bytes_held();
    assert!(
        held.total() <= EMPTY_HELD_PAGES * PAGE_SIZE,
        "nothing stored, yet {held:?}"
    );
    drop(backend);
    assert_eq!(provider.pages_in_use(), 0);
}

/// Most pages a backend may hold with nothing stored.
const EMPTY_HELD_PAGES: usize = 5;

#[test]
fn many_threads_with_the_scanner_running_lose_nothing() {
    const THREADS: u64 = 4;
    const OFFSETS: u64 = 256;
    const STEPS: u64 = 6000;
    let backend = Backend::new(
        StdPageProvider,
        Config {
            wake_watermark_bytes: 16 << 10,
            ..unthrottled()
        },
        StdParker::new(),
    )
    .unwrap();
    backend.init(0, THREADS * OFFSETS).unwrap();
    backend
        .stage_scan_tunables(ScanTunables {
            cold_rounds: 0,
            sleep_msecs: 5,
            ..ScanTunables::default()
        })
        .unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let scanner = s.spawn(|| {
            let mut scratch = Scratch::boxed();
            backend.run_scanner(&mut scratch, &StdClock::new()).unwrap();
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let backend = &backend;
                s.spawn(move || {
                    let mut scratch = Scratch::boxed();
                    let mut out = vec![0u8; PAGE_SIZE];
                    let mut version = vec![None::<(u64, u64)>; OFFSETS as usize];
                    let mut x = t + 1;
                    for step in 0..STEPS {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let slot = (x >> 33) % OFFSETS;
                        let offset = t * OFFSETS + slot;
                        match (x >> 20) % 8 {
                            0..=3 => {
                                // Families shared across threads: duplicates and similar
                                // pages; one store in four a page no other offset holds,
                                // whose entry goes with its offset's next store or
                                // invalidate, under the scanner's feet.
                                let (family, member) = match (x >> 50) % 4 {
                                    0 => (UNIQUE + offset, step),
                                    _ => (slot % 7, (x >> 40) % 6),
                                };
                                let page = family_page(family, member);
                                backend
                                    .store(0, offset, &page, foldswap::Domain(0), &mut scratch)
                                    .unwrap();
                                version[slot as usize] = Some((family, member));
                            }
                            4..=6 => match version[slot as usize] {
                                Some((family, member)) => {
                                    backend.load(0, offset, &mut out, &mut scratch).unwrap();
                                    assert_eq!(out, family_page(family, member), "step {step}");
                                }
                                None => assert!(
                                    backend.load(0, offset, &mut out, &mut scratch).is_err()
                                ),
                            },
                            _ => {
                                let had = backend.invalidate_page(0, offset).unwrap();
                                assert_eq!(had, version[slot as usize].take().is_some());
                            }
                        }
                    }
                    version
                })
            })
            .collect();
        // Statistics are read while everything runs (a host's sysfs read): they take
        // the offset shards and the content lock too and must not deadlock with them.
        let reader = s.spawn(|| {
            // At least one read, however late the thread starts.
            let mut reads = 0u64;
            loop {
                let held = backend.bytes_held();
                assert!(backend.total_bytes_held() >= held.offset_tables);
                let _ = (
                    backend.census(),
                    backend.pool_stats(),
                    backend.stats().snapshot(),
                );
                reads += 1;
                if done.load(Ordering::SeqCst) {
                    break reads;
                }
            }
        });
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        // The scanner has re-encoded something before it is stopped, however late
        // its thread started: the pages are lz4 entries the cold codec shrinks
        // (alone, in a block or as a delta), and it runs a burst every few
        // milliseconds until it has.
        while {
            let s = backend.stats().snapshot();
            s.recompressed_pages + s.patched_pages + s.blocks_formed == 0
        } {
            std::thread::yield_now();
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
        backend.shutdown();
        scanner.join().unwrap();
        let versions: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
        let mut scratch = Scratch::boxed();
        let mut out = vec![0u8; PAGE_SIZE];
        for (t, version) in versions.iter().enumerate() {
            for (slot, v) in version.iter().enumerate() {
                if let Some((family, member)) = *v {
                    backend
                        .load(0, t as u64 * OFFSETS + slot as u64, &mut out, &mut scratch)
                        .unwrap();
                    assert_eq!(out, family_page(family, member));
                }
            }
        }
    });
    assert!(done.load(Ordering::SeqCst));
    let s = backend.stats().snapshot();
    assert!(s.duplicate_pages > 0 && s.scanned_pages > 0, "{s:?}");
    // The scanner re-encoded pages. Whether it also met a load decoding in place
    // (`scanner_waits_for_loads`) is chance here: that read is a copy of a few
    // hundred nanoseconds, and on 2 busy cores 400,000 steps a thread went by
    // without a meeting. The meeting is made, not hoped for, in the scanner's
    // unit test `the_scanner_waits_for_a_load_decoding_in_place_before_it_reencodes`.
    assert!(
        s.recompressed_pages + s.patched_pages + s.blocks_formed > 0,
        "{s:?}"
    );
    // Entries vanished under the scanner (their last offset stored over or
    // invalidated while it encoded them): skipped, never an error, and the scanner
    // ran to the end (`run_scanner` returned Ok above).
    assert_eq!(
        (s.scanner_page_errors, s.scanner_burst_errors),
        (0, 0),
        "{s:?}"
    );
    assert_eq!(s.release_errors, 0, "{s:?}");
    // Quiet again, the counters add up: no path (a duplicate candidate dropped or
    // kept, a store racing an invalidate) lost or doubled one. Contents counted as
    // compressed but kept only as a base of deltas hold no offset, and the counter
    // of them agrees with a walk of the entries.
    let census = backend.census();
    assert_eq!(s.base_only_pages, census.bases_only, "{s:?}");
    let (kinds, stored) = s.kinds_and_stored();
    assert_eq!(kinds, stored, "{s:?}");
    assert_eq!(
        (s.blocked_pages, census.blocked),
        (census.block_live_pages, census.block_live_pages),
        "{s:?}"
    );
}

/// The similarity index is sized by what is stored: after most pages go, it
/// shrinks at the scanner's next round end even though nothing new is indexed
/// (every page left was examined already). It once shrank only when a page was
/// indexed, and a pool that settled after a storm kept its storm-sized table.
#[test]
fn the_similarity_index_shrinks_when_pages_go() {
    const PAGES: u64 = 6_000;
    let backend = Backend::new(StdPageProvider, unthrottled(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, PAGES).unwrap();
    for offset in 0..PAGES {
        let page = words_page(UNIQUE + offset);
        backend
            .store(0, offset, &page, foldswap::Domain(0), &mut scratch)
            .unwrap();
    }
    let clock = common::TickClock::new();
    let tunables = ScanTunables {
        cold_rounds: 0,
        ..ScanTunables::default()
    };
    let scan_rounds = |scratch: &mut Scratch, rounds: u32| {
        common::scan_rounds(&backend, &tunables, scratch, &clock, rounds)
    };
    scan_rounds(&mut scratch, 3);
    let storm = backend.bytes_held().similarity_index;
    for offset in 100..PAGES {
        backend.invalidate_page(0, offset).unwrap();
    }
    scan_rounds(&mut scratch, 2);
    let settled = backend.bytes_held().similarity_index;
    // 100 contents: a one-page ceiling, a table of at most twice it (and the
    // index's directory page).
    assert!(
        settled <= 3 * PAGE_SIZE && settled < storm,
        "similarity index {storm} B with {PAGES} pages, {settled} B with 100"
    );
    let mut out = [0u8; PAGE_SIZE];
    for offset in 0..100 {
        backend.load(0, offset, &mut out, &mut scratch).unwrap();
        assert_eq!(&out[..], &words_page(UNIQUE + offset)[..]);
    }
}

/// After a storm most pages go, and the survivors' entries lie spread over the
/// entries' slab, one in eight: the scanner's visits move each lone survivor to
/// a lower page, so the slab packs down to about what the survivors need, and
/// every survivor, and a shared one left where it was, loads exactly.
#[test]
fn the_scanner_packs_the_entries_down_after_a_storm() {
    const PAGES: u64 = 4_096;
    let backend = Backend::new(StdPageProvider, unthrottled(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, PAGES).unwrap();
    let page_of = |offset: u64| match offset {
        // Offsets 1 and 4001 share one content: its entry stays where it is.
        4001 => words_page(UNIQUE + 1),
        _ => words_page(UNIQUE + offset),
    };
    common::store_each(&backend, 0..PAGES, page_of);
    let survivor = |offset: u64| offset % 8 == 1;
    for offset in (0..PAGES).filter(|&o| !survivor(o)) {
        backend.invalidate_page(0, offset).unwrap();
    }
    let storm = backend.bytes_held().entries;
    let clock = common::TickClock::new();
    let tunables = ScanTunables {
        cold_rounds: 0,
        patch: 0,
        ..ScanTunables::default()
    };
    common::scan_rounds(&backend, &tunables, &mut scratch, &clock, 3);
    let packed = backend.bytes_held().entries;
    let survivors = PAGES / 8;
    // 24-byte entries, a page's bitmap header: 168 a page; plus the slab's
    // directory and spare pages.
    let need = (survivors as usize).div_ceil(168) + 2;
    assert!(
        packed <= need * PAGE_SIZE && packed * 4 < storm,
        "entries {storm} B after the storm, {packed} B after the scanner"
    );
    let s = backend.stats().snapshot();
    assert!(s.entries_moved > 0, "{s:?}");
    let mut out = [0u8; PAGE_SIZE];
    for offset in (0..PAGES).filter(|&o| survivor(o)) {
        backend.load(0, offset, &mut out, &mut scratch).unwrap();
        assert_eq!(&out[..], &page_of(offset)[..], "offset {offset}");
        backend.invalidate_page(0, offset).unwrap();
    }
    assert_eq!(backend.stats().snapshot().stored_pages, 0);
}

/// After a storm most pages go; the dedup index, sized for the storm, stays
/// under half full (removals alone shrink it only under 5/16). The scanner's
/// round end rebuilds it for what is left, and every page still loads.
#[test]
fn a_round_end_gives_back_the_storms_dedup_index() {
    const PAGES: u64 = 6_000;
    let backend = stored(PAGES, |_| true);
    let mut scratch = Scratch::boxed();
    let stormy = backend.bytes_held().dedup_index;
    // Keep 11 of every 20: the load falls from 5/8..7/8 to about 0.34..0.48.
    let kept = |offset: u64| offset % 20 < 11;
    for offset in (0..PAGES).filter(|&o| !kept(o)) {
        backend.invalidate_page(0, offset).unwrap();
    }
    assert_eq!(backend.bytes_held().dedup_index, stormy, "removals kept it");
    let clock = StdClock::new();
    let tunables = ScanTunables {
        cold_rounds: 126,
        ..ScanTunables::default()
    };
    while backend
        .scan_burst(&tunables, &mut scratch, &clock)
        .unwrap()
        .rounds_ended
        == 0
    {}
    let fitted = backend.bytes_held().dedup_index;
    assert!(
        fitted * 4 < stormy * 3,
        "{fitted} B of index, {stormy} B in the storm"
    );
    let mut out = [0u8; PAGE_SIZE];
    for offset in 0..PAGES {
        match backend.load(0, offset, &mut out, &mut scratch) {
            Ok(()) => assert!(
                kept(offset) && out[..] == words_page(offset)[..],
                "{offset}"
            ),
            Err(e) => assert!(!kept(offset), "offset {offset}: {e}"),
        }
    }
    // A stored copy of a kept page is still found through the fitted index.
    let hits = backend.stats().snapshot().dedup_hits;
    backend
        .store(0, 1, &words_page(0), foldswap::Domain(0), &mut scratch)
        .unwrap();
    assert_eq!(backend.stats().snapshot().dedup_hits, hits + 1);
}
