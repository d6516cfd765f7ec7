//! Dedup domains: pages are joined — shared as one content, patched against one
//! another, compressed in one cold block — only within the domain their store
//! named, unless the scope says otherwise; and every page loads exactly whatever
//! the scope.

mod common;

use common::{TickClock, mark_member, unthrottled, words_page};
use foldswap::{Backend, Config, DedupScope, Domain, ScanTunables, Scratch, StdParker, StoreKind};
use foldswap_mem::{PAGE_SIZE, StdPageProvider};

type TestBackend = Backend<StdPageProvider, StdParker>;

const OFFSETS: u64 = 1024;

fn backend(scope: DedupScope) -> TestBackend {
    let config = Config {
        dedup_scope: scope,
        ..unthrottled()
    };
    let backend = Backend::new(StdPageProvider, config, StdParker::new()).unwrap();
    backend.init(0, OFFSETS).unwrap();
    backend
}

fn load(backend: &TestBackend, offset: u64) -> Vec<u8> {
    let mut out = vec![0u8; PAGE_SIZE];
    backend
        .load(0, offset, &mut out, &mut Scratch::boxed())
        .unwrap();
    out
}

/// Page `i` stored at four offsets: domains 1, 2, 1, 2. The store kinds and
/// the contents the offsets hold.
fn store_each_twice_in_two_domains(backend: &TestBackend, pages: u64) -> Vec<Vec<StoreKind>> {
    let mut scratch = Scratch::boxed();
    (0..pages)
        .map(|i| {
            let page = words_page(i);
            (0..4)
                .map(|k| {
                    let domain = Domain(1 + (k % 2) as u16);
                    backend
                        .store(0, 4 * i + k, &page, domain, &mut scratch)
                        .unwrap()
                })
                .collect()
        })
        .collect()
}

#[test]
fn identical_pages_are_shared_within_a_domain_and_never_across() {
    let backend = backend(DedupScope::Domain);
    let kinds = store_each_twice_in_two_domains(&backend, 16);
    for (i, kinds) in kinds.iter().enumerate() {
        use StoreKind::{Compressed, Duplicate};
        assert_eq!(
            kinds[..],
            [Compressed, Compressed, Duplicate, Duplicate],
            "page {i}"
        );
        let i = i as u64;
        let at = |k| backend.content_at(0, 4 * i + k).unwrap().unwrap();
        let [a1, b1, a2, b2] = [0, 1, 2, 3].map(at);
        assert_eq!((a1, b1), (a2, b2), "page {i}: one content per domain");
        assert_ne!(a1.entry, b1.entry, "page {i}: shared across domains");
        assert_eq!((a1.domain, b1.domain), (Domain(1), Domain(2)));
        for k in 0..4 {
            assert_eq!(load(&backend, 4 * i + k), words_page(i));
        }
    }
    assert_eq!(backend.stats().snapshot().duplicate_pages, 32);
}

#[test]
fn the_global_scope_shares_across_domains_and_off_shares_nothing() {
    let global = backend(DedupScope::Global);
    let off = backend(DedupScope::Off);
    let kinds = [&global, &off].map(|b| store_each_twice_in_two_domains(b, 8));
    for i in 0..8u64 {
        use StoreKind::{Compressed, Duplicate};
        assert_eq!(
            kinds[0][i as usize][..],
            [Compressed, Duplicate, Duplicate, Duplicate]
        );
        assert_eq!(kinds[1][i as usize][..], [Compressed; 4]);
        let keys = |b: &TestBackend| -> Vec<(u32, Domain)> {
            (0..4)
                .map(|k| b.content_at(0, 4 * i + k).unwrap().unwrap())
                .map(|c| (c.entry, c.domain))
                .collect()
        };
        // Global: one content, in domain 0 whatever the store named.
        let global_keys = keys(&global);
        assert!(
            global_keys
                .iter()
                .all(|&c| c == global_keys[0] && c.1 == Domain(0))
        );
        // Off: four contents, each in the domain its store named.
        let mut off_keys: Vec<_> = keys(&off).iter().map(|c| c.0).collect();
        off_keys.dedup();
        assert_eq!(off_keys.len(), 4);
        for k in 0..4 {
            assert_eq!(load(&global, 4 * i + k), words_page(i));
            assert_eq!(load(&off, 4 * i + k), words_page(i));
        }
    }
}

/// The domain the store at `offset` names in [`similar_pages_in_runs`]: runs
/// of six offsets (blocks of four straddle them), alternating between domains
/// 1 and 2.
fn run_domain(offset: u64) -> Domain {
    Domain(1 + ((offset / 6) % 2) as u16)
}

/// Similar pages (families of 64, a few bytes apart), in [`run_domain`]s.
fn similar_pages_in_runs(backend: &TestBackend, pages: u64) {
    let mut scratch = Scratch::boxed();
    for offset in 0..pages {
        let mut page = words_page(offset / 64);
        mark_member(&mut page, offset);
        let domain = run_domain(offset);
        backend
            .store(0, offset, &page, domain, &mut scratch)
            .unwrap();
    }
}

/// Deltas and cold blocks joining pages whose stores named different domains,
/// found from what each offset holds: (deltas, blocks).
fn joins_across_domains(backend: &TestBackend, pages: u64) -> (usize, usize) {
    use std::collections::{BTreeMap, BTreeSet};
    let held: Vec<_> = (0..pages)
        .filter_map(|o| Some((o, backend.content_at(0, o).unwrap()?)))
        .collect();
    let mut entry_domains: BTreeMap<u32, BTreeSet<Domain>> = BTreeMap::new();
    let mut block_domains: BTreeMap<u32, BTreeSet<Domain>> = BTreeMap::new();
    for &(offset, c) in &held {
        entry_domains
            .entry(c.entry)
            .or_default()
            .insert(run_domain(offset));
        if let Some(block) = c.block {
            block_domains
                .entry(block)
                .or_default()
                .insert(run_domain(offset));
        }
    }
    let deltas = held
        .iter()
        .filter(|(offset, c)| {
            c.base
                .and_then(|(base, _)| entry_domains.get(&base))
                .is_some_and(|d| d.iter().any(|&d| d != run_domain(*offset)))
        })
        .count();
    let blocks = block_domains.values().filter(|d| d.len() > 1).count();
    (deltas, blocks)
}

fn check_similar(backend: &TestBackend, pages: u64) {
    for offset in 0..pages {
        let mut page = words_page(offset / 64);
        mark_member(&mut page, offset);
        assert_eq!(load(backend, offset), page, "offset {offset}");
    }
}

/// Scan until a whole ladder round improves nothing (at most 200 rounds).
fn settle(backend: &TestBackend, tunables: &ScanTunables) {
    let clock = TickClock::new();
    let mut scratch = Scratch::boxed();
    let (mut rounds, mut this_round) = (0, 0);
    while rounds < 200 {
        let report = backend.scan_burst(tunables, &mut scratch, &clock).unwrap();
        this_round += report.improved;
        if report.rounds_ended > 0 {
            rounds += 1;
            if core::mem::take(&mut this_round) == 0 {
                return;
            }
        }
    }
    panic!("not settled: {:?}", backend.stats().snapshot());
}

fn patching() -> ScanTunables {
    ScanTunables {
        cold_rounds: 0,
        block_pages: 1,
        ..ScanTunables::default()
    }
}

fn blocking() -> ScanTunables {
    ScanTunables {
        cold_rounds: 0,
        patch: 0,
        block_pages: 4,
        ..ScanTunables::default()
    }
}

#[test]
fn deltas_join_pages_of_one_domain_only() {
    const PAGES: u64 = 256;
    for scope in [DedupScope::Domain, DedupScope::Global] {
        let backend = backend(scope);
        similar_pages_in_runs(&backend, PAGES);
        settle(&backend, &patching());
        let patched = backend.stats().snapshot().patched_pages;
        assert!(patched > PAGES / 2, "{scope:?}: {patched} patched");
        let (deltas, _) = joins_across_domains(&backend, PAGES);
        match scope {
            DedupScope::Domain => assert_eq!(deltas, 0),
            // The walk sees joins where they are allowed (so 0 above means none).
            _ => assert!(deltas > 0, "global: no delta across domains"),
        }
        check_similar(&backend, PAGES);
    }
}

#[test]
fn cold_blocks_join_pages_of_one_domain_only() {
    const PAGES: u64 = 256;
    for scope in [DedupScope::Domain, DedupScope::Off, DedupScope::Global] {
        let backend = backend(scope);
        similar_pages_in_runs(&backend, PAGES);
        settle(&backend, &blocking());
        let s = backend.stats().snapshot();
        assert!(s.blocks_formed >= PAGES / 8, "{scope:?}: {s:?}");
        let (_, blocks) = joins_across_domains(&backend, PAGES);
        match scope {
            DedupScope::Global => assert!(blocks > 0, "global: no block across domains"),
            _ => assert_eq!(blocks, 0, "{scope:?}"),
        }
        check_similar(&backend, PAGES);
    }
}

#[test]
fn under_scope_off_no_page_is_patched() {
    let backend = backend(DedupScope::Off);
    similar_pages_in_runs(&backend, 128);
    settle(&backend, &patching());
    assert_eq!(backend.stats().snapshot().patched_pages, 0);
    check_similar(&backend, 128);
}
