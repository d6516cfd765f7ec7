//! Domain charges: what the host is told each domain holds ([`DomainCharges`])
//! equals, after every store, scanner round and invalidation, the pool bytes the
//! domain's contents hold counted afresh; it never goes below zero, and it is 0
//! again once the domain holds nothing.

mod common;

use common::{LEDGER_DOMAINS, Ledger, TickClock, mark_member, unthrottled, words_page};
use foldswap::{Backend, Config, DedupScope, Domain, Error, ScanTunables, Scratch, StdParker};
use foldswap_mem::{PAGE_SIZE, StdPageProvider};

type TestBackend = Backend<StdPageProvider, StdParker>;

const DOMAINS: usize = LEDGER_DOMAINS;
const OFFSETS: u64 = 1024;

fn backend(scope: DedupScope, ledger: &'static Ledger) -> TestBackend {
    let config = Config {
        dedup_scope: scope,
        ..unthrottled()
    };
    let backend = Backend::new(StdPageProvider, config, StdParker::new()).unwrap();
    backend.set_domain_charges(ledger).unwrap();
    backend.init(0, OFFSETS).unwrap();
    backend
}

/// Each domain's charge is what it holds, the charges add up to the pool's
/// object bytes, and none ever went below zero.
fn check_ledger(backend: &TestBackend, ledger: &Ledger, when: &str) {
    let mut sum = 0;
    for d in 0..DOMAINS as u16 {
        let held = backend.domain_bytes(Domain(d));
        assert_eq!(ledger.charged(Domain(d)), held as i64, "{when}: domain {d}");
        sum += held;
    }
    assert_eq!(sum, backend.pool_stats().object_bytes, "{when}: pool");
    assert!(!ledger.went_negative(), "{when}");
}

/// Page at `offset`: similar pages (families of 16), every fifth one a copy of
/// the page four offsets before it.
fn page_at(offset: u64) -> Vec<u8> {
    let offset = if offset % 5 == 4 { offset - 4 } else { offset };
    let mut page = words_page(offset / 16);
    mark_member(&mut page, offset);
    page
}

/// Offsets in runs of seven, domains 1, 2, 3 in turn.
fn domain_at(offset: u64) -> Domain {
    Domain(1 + ((offset / 7) % 3) as u16)
}

fn store_range(backend: &TestBackend, offsets: impl Iterator<Item = u64>) {
    let mut scratch = Scratch::boxed();
    for offset in offsets {
        backend
            .store(0, offset, &page_at(offset), domain_at(offset), &mut scratch)
            .unwrap();
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

fn check_pages(backend: &TestBackend, offsets: impl Iterator<Item = u64>) {
    let mut scratch = Scratch::boxed();
    let mut out = vec![0u8; PAGE_SIZE];
    for offset in offsets {
        backend.load(0, offset, &mut out, &mut scratch).unwrap();
        assert_eq!(out, page_at(offset), "offset {offset}");
    }
}

#[test]
fn each_domains_charge_follows_what_it_holds() {
    static LEDGER: Ledger = Ledger::new();
    const PAGES: u64 = 320;
    let backend = backend(DedupScope::Domain, &LEDGER);
    store_range(&backend, 0..PAGES);
    check_ledger(&backend, &LEDGER, "stored");
    assert!((1..=3).all(|d| LEDGER.charged(Domain(d)) > 0));
    // Cold blocks: objects replaced by frames.
    let blocking = ScanTunables {
        cold_rounds: 0,
        patch: 0,
        block_pages: 4,
        ..ScanTunables::default()
    };
    settle(&backend, &blocking);
    assert!(backend.stats().snapshot().blocks_formed > 0);
    check_ledger(&backend, &LEDGER, "blocked");
    // Deltas and cold pages: objects replaced by smaller ones.
    store_range(&backend, PAGES..2 * PAGES);
    let patching = ScanTunables {
        cold_rounds: 0,
        block_pages: 1,
        ..ScanTunables::default()
    };
    settle(&backend, &patching);
    assert!(backend.stats().snapshot().patched_pages > 0);
    check_ledger(&backend, &LEDGER, "patched");
    // Holes in blocks, bases kept for their deltas, stores over held offsets.
    for offset in (0..2 * PAGES).filter(|o| o % 3 != 0) {
        backend.invalidate_page(0, offset).unwrap();
    }
    store_range(&backend, (0..2 * PAGES).filter(|o| o % 6 == 0));
    check_ledger(&backend, &LEDGER, "invalidated");
    settle(&backend, &blocking);
    check_ledger(&backend, &LEDGER, "rewritten");
    check_pages(&backend, (0..2 * PAGES).filter(|o| o % 3 == 0));
    // Nothing held, nothing charged.
    backend.invalidate_area(0).unwrap();
    check_ledger(&backend, &LEDGER, "emptied");
    assert!((0..DOMAINS as u16).all(|d| LEDGER.charged(Domain(d)) == 0));
}

#[test]
fn under_the_global_scope_everything_is_charged_to_domain_0() {
    static LEDGER: Ledger = Ledger::new();
    let backend = backend(DedupScope::Global, &LEDGER);
    store_range(&backend, 0..64);
    check_ledger(&backend, &LEDGER, "stored");
    assert!(LEDGER.charged(Domain(0)) > 0);
    assert!((1..DOMAINS as u16).all(|d| LEDGER.charged(Domain(d)) == 0));
    backend.invalidate_area(0).unwrap();
    assert_eq!(LEDGER.charged(Domain(0)), 0);
}

#[test]
fn charges_are_set_before_anything_is_stored() {
    static LEDGER: Ledger = Ledger::new();
    let backend = Backend::new(StdPageProvider, unthrottled(), StdParker::new()).unwrap();
    backend.init(0, OFFSETS).unwrap();
    store_range(&backend, 0..1);
    assert_eq!(
        backend.set_domain_charges(&LEDGER).unwrap_err(),
        Error::InvalidArgument("domain charges set after a store")
    );
    // Bytes stored before would never be uncharged there: nothing was charged.
    backend.invalidate_area(0).unwrap();
    assert_eq!(LEDGER.charged(Domain(domain_at(0).0)), 0);
}
