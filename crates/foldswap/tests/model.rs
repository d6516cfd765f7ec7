//! The backend against a plain model: any sequence of init / store / load /
//! invalidate_page / invalidate_area and scanner bursts (which patch similar pages
//! and recompress cold ones), across several swap types, returns exactly what the
//! model says, and memory runs out without losing anything.

use std::collections::HashMap;

mod common;

use common::{LEDGER_DOMAINS, Ledger, TickClock, mark_member, unthrottled, words_page};
use foldswap::{Backend, Config, Domain, Error, ScanTunables, Scratch, StdParker, StoreKind};
use foldswap_mem::{CountingProvider, PAGE_SIZE, StdPageProvider};
use proptest::prelude::*;

const TYPES: usize = 3;
const OFFSETS: u64 = 600;

/// Seeds from here on give similar pages: [`SIMILAR_FAMILIES`] families of word
/// text, each member a few bytes off the others (the scanner patches them).
const FIRST_SIMILAR: u16 = 40;
const SIMILAR_FAMILIES: u16 = 3;

/// A page from a small seed: a few families of contents so duplicates, same-filled
/// pages, compressible, incompressible and similar pages all occur.
fn page_of(seed: u16) -> Vec<u8> {
    if seed >= FIRST_SIMILAR {
        let (family, member) = (seed % SIMILAR_FAMILIES, seed / SIMILAR_FAMILIES);
        let mut page = words_page(u64::from(family));
        mark_member(&mut page, u64::from(member));
        return page;
    }
    let mut page = vec![0u8; PAGE_SIZE];
    match seed % 5 {
        0 => page.fill(0),
        // One repeated 32-bit word (same-filled) for odd seeds; for even ones a
        // 64-bit word whose halves differ (stored as content).
        1 => {
            let word = u64::from(seed) * 0x0101;
            let word = if seed % 2 == 1 {
                word * 0x1_0000_0001
            } else {
                word
            };
            page.chunks_exact_mut(8)
                .for_each(|w| w.copy_from_slice(&word.to_le_bytes()));
        }
        2 | 3 => {
            for (i, b) in page.iter_mut().enumerate() {
                *b = b"swap text, swap text, page "[(i + seed as usize) % 27]
                    ^ ((i / 700) as u8 & (seed as u8));
            }
        }
        _ => {
            let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for b in page.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
    }
    page
}

#[derive(Debug, Clone)]
enum Op {
    /// Store page `seed` at (type, offset) in domain `domain`.
    Store(usize, u64, u16, u16),
    Load(usize, u64),
    Invalidate(usize, u64),
    InvalidateArea(usize),
    Init(usize),
    /// Scanner bursts: each looks at up to 8 batches of offsets.
    Scan(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let ty = 0..TYPES;
    let off = 0..OFFSETS / 20;
    prop_oneof![
        8 => (ty.clone(), off.clone(), 0u16..64, 0u16..3)
            .prop_map(|(t, o, s, d)| Op::Store(t, o, s, d)),
        6 => (ty.clone(), off.clone()).prop_map(|(t, o)| Op::Load(t, o)),
        2 => (ty.clone(), off).prop_map(|(t, o)| Op::Invalidate(t, o)),
        1 => ty.clone().prop_map(Op::InvalidateArea),
        1 => ty.prop_map(Op::Init),
        1 => (1u8..4).prop_map(Op::Scan),
    ]
}

/// Nothing joins pages of two domains (the default scope): every content, every
/// delta's base and every cold block holds pages of the domain their stores
/// named.
fn check_domains<P: foldswap_mem::PageProvider + Clone, K: foldswap::Parker>(
    backend: &Backend<P, K>,
    domains: &HashMap<(usize, u64), Domain>,
) -> Result<(), TestCaseError> {
    let mut blocks: HashMap<u32, Domain> = HashMap::new();
    for (&(t, o), &domain) in domains {
        let Some(content) = backend.content_at(t, o).unwrap() else {
            continue;
        };
        prop_assert_eq!(content.domain, domain, "({}, {}) in another domain", t, o);
        if let Some((_, base_domain)) = content.base {
            prop_assert_eq!(
                base_domain,
                domain,
                "({}, {}): a base of another domain",
                t,
                o
            );
        }
        if let Some(block) = content.block {
            let first = *blocks.entry(block).or_insert(domain);
            prop_assert_eq!(first, domain, "block {} joins two domains", block);
        }
    }
    Ok(())
}

/// Each domain's charge is what its contents hold, counted afresh.
fn check_charges<P: foldswap_mem::PageProvider + Clone, K: foldswap::Parker>(
    backend: &Backend<P, K>,
    ledger: &Ledger,
) -> Result<(), TestCaseError> {
    for d in 0..LEDGER_DOMAINS as u16 {
        let held = backend.domain_bytes(Domain(d));
        prop_assert_eq!(ledger.charged(Domain(d)), held as i64, "domain {}", d);
    }
    prop_assert!(!ledger.went_negative(), "a charge below zero");
    Ok(())
}

fn check_sequence(
    ops: Vec<Op>,
    page_limit: usize,
    keep_raw: bool,
    block_pages: u32,
) -> Result<(), TestCaseError> {
    let provider = CountingProvider::new(StdPageProvider, page_limit);
    // The ladder never waits for CPU credit, and the scanner looks at every page
    // from its first round on.
    let config = Config {
        keep_incompressible: keep_raw,
        ..unthrottled()
    };
    let backend = Backend::new(&provider, config, StdParker::new()).unwrap();
    // One ledger a case, for the life of the test binary.
    let ledger: &'static Ledger = Box::leak(Box::default());
    backend.set_domain_charges(ledger).unwrap();
    let mut scratch = Scratch::boxed();
    let clock = TickClock::new();
    let scan = ScanTunables {
        cold_rounds: 0,
        max_batches: 8,
        block_pages,
        ..ScanTunables::default()
    };
    let mut model: HashMap<(usize, u64), Vec<u8>> = HashMap::new();
    // The domain each held offset's store named (kept while the model holds it).
    let mut domains: HashMap<(usize, u64), Domain> = HashMap::new();
    for t in 0..TYPES {
        backend.init(t, OFFSETS).unwrap();
    }
    let mut out = vec![0u8; PAGE_SIZE];
    for op in ops {
        match op {
            Op::Store(t, o, seed, domain) => {
                let o = o * 20;
                let page = page_of(seed);
                match backend.store(t, o, &page, Domain(domain), &mut scratch) {
                    Ok(kind) => {
                        if seed < FIRST_SIMILAR && (seed % 5 == 0 || seed % 10 == 1) {
                            prop_assert_eq!(kind, StoreKind::SameFilled);
                        }
                        if seed < FIRST_SIMILAR && seed % 10 == 6 {
                            prop_assert_ne!(kind, StoreKind::SameFilled);
                        }
                        model.insert((t, o), page);
                        domains.insert((t, o), Domain(domain));
                    }
                    // A failed store leaves the old page in place.
                    Err(Error::OutOfMemory | Error::Incompressible | Error::PoolFull) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("store: {e}"))),
                }
            }
            Op::Load(t, o) => {
                let o = o * 20;
                match (
                    backend.load(t, o, &mut out, &mut scratch),
                    model.get(&(t, o)),
                ) {
                    (Ok(()), Some(page)) => prop_assert!(&out == page, "load returned other bytes"),
                    (Err(Error::NotFound), None) => {}
                    (got, want) => {
                        return Err(TestCaseError::fail(format!(
                            "load({t},{o}) = {got:?}, model has {}",
                            want.is_some()
                        )));
                    }
                }
            }
            Op::Invalidate(t, o) => {
                let o = o * 20;
                let had = backend.invalidate_page(t, o).unwrap();
                prop_assert_eq!(had, model.remove(&(t, o)).is_some());
            }
            Op::InvalidateArea(t) => {
                backend.invalidate_area(t).unwrap();
                model.retain(|(mt, _), _| *mt != t);
            }
            Op::Init(t) => {
                backend.init(t, OFFSETS).unwrap();
                model.retain(|(mt, _), _| *mt != t);
            }
            Op::Scan(bursts) => {
                for _ in 0..bursts {
                    backend.scan_burst(&scan, &mut scratch, &clock).unwrap();
                }
            }
        }
        let s = backend.stats().snapshot();
        prop_assert_eq!(s.stored_pages, model.len() as u64);
        // Every stored offset is counted once: same-filled, the first sharer of a
        // distinct content (compressed or patched), or a duplicate of one; a
        // distinct content no offset holds any more is a delta's base.
        let (kinds, stored) = s.kinds_and_stored();
        prop_assert_eq!(kinds, stored, "{:?}", s);
        domains.retain(|at, _| model.contains_key(at));
        check_domains(&backend, &domains)?;
        check_charges(&backend, ledger)?;
        let census = backend.census();
        prop_assert_eq!(s.base_only_pages, census.bases_only);
        // Every page in a block is one live bit of its block, and back.
        prop_assert_eq!(s.blocked_pages, census.blocked);
        prop_assert_eq!(census.blocked, census.block_live_pages);
        // A block's frame holds its live pages and its holes, in some bytes.
        prop_assert!(census.block_frame_pages >= census.block_live_pages);
        prop_assert_eq!(census.blocks > 0, census.block_frame_bytes > 0);
        prop_assert!(census.block_frame_bytes <= backend.pool_bytes_held() as u64);
    }
    for ((t, o), page) in &model {
        backend.load(*t, *o, &mut out, &mut scratch).unwrap();
        prop_assert!(&out == page);
    }
    for t in 0..TYPES {
        backend.invalidate_area(t).unwrap();
    }
    let s = backend.stats().snapshot();
    prop_assert_eq!(
        (
            s.stored_pages,
            s.same_filled_pages,
            s.duplicate_pages,
            s.compressed_pages,
            s.patched_pages,
            s.base_only_pages,
            s.blocked_pages
        ),
        (0, 0, 0, 0, 0, 0, 0)
    );
    prop_assert_eq!(backend.census().blocks, 0);
    check_charges(&backend, ledger)?;
    prop_assert!((0..LEDGER_DOMAINS as u16).all(|d| ledger.charged(Domain(d)) == 0));
    drop(backend);
    prop_assert_eq!(provider.pages_in_use(), 0, "pages leaked");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn backend_matches_model(ops in proptest::collection::vec(op(), 1..400), keep_raw in any::<bool>(), block_pages in 1u32..=8) {
        check_sequence(ops, usize::MAX, keep_raw, block_pages)?;
    }

    #[test]
    fn backend_matches_model_when_memory_runs_out(ops in proptest::collection::vec(op(), 1..300), limit in 8usize..40, block_pages in 1u32..=8) {
        check_sequence(ops, limit, true, block_pages)?;
    }
}

#[test]
fn bad_input_gets_typed_errors() {
    let backend = Backend::new(StdPageProvider, Config::default(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    let page = page_of(2);
    let mut out = vec![0u8; PAGE_SIZE];
    assert!(matches!(
        backend.store(0, 0, &page, foldswap::Domain(0), &mut scratch),
        Err(Error::InvalidArgument(_))
    ));
    backend.init(0, 10).unwrap();
    assert_eq!(
        backend.store(0, 0, &page[..100], foldswap::Domain(0), &mut scratch),
        Err(Error::WrongLength {
            expected: PAGE_SIZE,
            actual: 100
        })
    );
    assert!(matches!(
        backend.store(0, 10, &page, foldswap::Domain(0), &mut scratch),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        backend.store(99, 0, &page, foldswap::Domain(0), &mut scratch),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        backend.load(0, 3, &mut out, &mut scratch),
        Err(Error::NotFound)
    );
    assert_eq!(
        backend.store(0, 3, &page, foldswap::Domain(0), &mut scratch),
        Ok(StoreKind::Compressed)
    );
    assert!(matches!(
        backend.load(0, 3, &mut out[..10], &mut scratch),
        Err(Error::WrongLength { .. })
    ));
    backend.load(0, 3, &mut out, &mut scratch).unwrap();
    assert_eq!(out, page);
    assert_eq!(backend.invalidate_page(0, 3), Ok(true));
    assert_eq!(backend.invalidate_page(0, 3), Ok(false));
    assert_eq!(
        backend.load(0, 3, &mut out, &mut scratch),
        Err(Error::NotFound)
    );
}

#[test]
fn duplicates_share_one_entry_and_replacement_releases() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, Config::default(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, 100).unwrap();
    backend.init(1, 100).unwrap();
    let page = page_of(7);
    assert_eq!(
        backend.store(0, 1, &page, foldswap::Domain(0), &mut scratch),
        Ok(StoreKind::Compressed)
    );
    let held = backend.pool_stats().object_bytes;
    assert_eq!(
        backend.store(0, 2, &page, foldswap::Domain(0), &mut scratch),
        Ok(StoreKind::Duplicate)
    );
    assert_eq!(
        backend.store(1, 9, &page, foldswap::Domain(0), &mut scratch),
        Ok(StoreKind::Duplicate)
    );
    assert_eq!(
        backend.pool_stats().object_bytes,
        held,
        "a duplicate was compressed again"
    );
    let s = backend.stats().snapshot();
    assert_eq!(
        (s.stored_pages, s.duplicate_pages, s.compressed_pages),
        (3, 2, 1)
    );
    // Replace one sharer with other content; the rest still load the original.
    assert_eq!(
        backend.store(0, 1, &page_of(12), foldswap::Domain(0), &mut scratch),
        Ok(StoreKind::Compressed)
    );
    let mut out = vec![0u8; PAGE_SIZE];
    backend.load(0, 2, &mut out, &mut scratch).unwrap();
    assert_eq!(out, page);
    backend.load(0, 1, &mut out, &mut scratch).unwrap();
    assert_eq!(out, page_of(12));
    backend.invalidate_page(0, 2).unwrap();
    backend.invalidate_page(1, 9).unwrap();
    let s = backend.stats().snapshot();
    assert_eq!(
        (s.stored_pages, s.duplicate_pages, s.compressed_pages),
        (1, 0, 1)
    );
}

#[test]
fn pool_limit_rejects_cleanly() {
    let backend = Backend::new(
        StdPageProvider,
        Config {
            pool_limit_bytes: 8 * PAGE_SIZE,
            ..Config::default()
        },
        StdParker::new(),
    )
    .unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, 1000).unwrap();
    let mut stored = Vec::new();
    let mut full = false;
    for o in 0..400u64 {
        let page = page_of(2 + 5 * (o as u16 % 200));
        let mut page = page;
        page[..8].copy_from_slice(&o.to_le_bytes());
        match backend.store(0, o, &page, foldswap::Domain(0), &mut scratch) {
            Ok(_) => stored.push((o, page)),
            Err(Error::PoolFull) => full = true,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(full, "the pool limit never hit");
    assert!(backend.stats().snapshot().reject_pool_full > 0);
    let mut out = vec![0u8; PAGE_SIZE];
    for (o, page) in &stored {
        backend.load(0, *o, &mut out, &mut scratch).unwrap();
        assert_eq!(&out, page);
    }
}

#[test]
fn a_backend_built_in_place_works_and_gives_everything_back() {
    use core::mem::MaybeUninit;
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut slot = Box::new(MaybeUninit::uninit());
    let backend =
        Backend::init_in(&mut slot, &provider, Config::default(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, 16).unwrap();
    let page = page_of(7);
    backend
        .store(0, 3, &page, foldswap::Domain(0), &mut scratch)
        .unwrap();
    let mut out = vec![0u8; PAGE_SIZE];
    backend.load(0, 3, &mut out, &mut scratch).unwrap();
    assert_eq!(out, page);
    // SAFETY: `init_in` succeeded; the backend is not used after this.
    unsafe { slot.assume_init_drop() };
    assert_eq!(provider.pages_in_use(), 0);

    // Memory refused while building: a typed error, nothing kept.
    let provider = CountingProvider::new(StdPageProvider, 1);
    let mut slot = Box::new(MaybeUninit::uninit());
    let result = Backend::init_in(&mut slot, &provider, Config::default(), StdParker::new());
    assert!(
        matches!(result, Err(Error::OutOfMemory)),
        "{:?}",
        result.err()
    );
    assert_eq!(provider.pages_in_use(), 0);
}

/// The limit bounds everything the backend holds, not only the pool: with pages
/// spread over a large area (so offset tables grow) stored until the limit
/// refuses them, the provider's pages in use pass the limit by at most the few
/// metadata pages one store may add after its check.
#[test]
fn the_limit_bounds_everything_held_not_only_the_pool() {
    const LIMIT_PAGES: usize = 48;
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(
        &provider,
        Config {
            pool_limit_bytes: LIMIT_PAGES * PAGE_SIZE,
            ..Config::default()
        },
        StdParker::new(),
    )
    .unwrap();
    let mut scratch = Scratch::boxed();
    const AREA: u64 = 1 << 24;
    backend.init(0, AREA).unwrap();
    let mut stored = Vec::new();
    let mut refused = 0;
    for o in 0..2000u64 {
        // A new leaf of the offset table for nearly every page.
        let offset = (o * 65_521) % AREA;
        let mut page = page_of(2 + 5 * (o as u16 % 200));
        page[..8].copy_from_slice(&o.to_le_bytes());
        match backend.store(0, offset, &page, foldswap::Domain(0), &mut scratch) {
            Ok(_) => stored.push((offset, page)),
            Err(Error::PoolFull) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        let held = backend.bytes_held();
        assert!(
            held.total() <= (LIMIT_PAGES + 3) * PAGE_SIZE,
            "{} stored: {held:?} passes the limit of {LIMIT_PAGES} pages",
            stored.len()
        );
    }
    assert!(refused > 0, "the limit never refused a store");
    let held = backend.bytes_held();
    assert!(held.offset_tables > 0 && held.entries > 0, "{held:?}");
    let mut out = vec![0u8; PAGE_SIZE];
    for (offset, page) in &stored {
        backend.load(0, *offset, &mut out, &mut scratch).unwrap();
        assert_eq!(&out, page);
    }
    // Every page the backend took from its provider is counted somewhere.
    assert_eq!(
        provider.pages_in_use() * PAGE_SIZE,
        backend.bytes_held().total()
    );
}

/// A refused re-initialisation (0 pages: the ladder takes no empty region)
/// changes nothing: the area keeps its pages and its size.
#[test]
fn a_refused_init_keeps_what_the_area_holds() {
    let backend = Backend::new(StdPageProvider, Config::default(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(3, 36).unwrap();
    let page = page_of(7);
    backend
        .store(3, 22, &page, foldswap::Domain(0), &mut scratch)
        .unwrap();
    assert!(backend.init(3, 0).is_err());
    let mut out = vec![0u8; PAGE_SIZE];
    backend.load(3, 22, &mut out, &mut scratch).unwrap();
    assert_eq!(out, page);
    assert_eq!(backend.stats().snapshot().stored_pages, 1);
    assert!(
        backend
            .store(3, 35, &page, foldswap::Domain(0), &mut scratch)
            .is_ok()
    );
}

/// Absurd scanner tunables are refused when staged, with a typed error.
#[test]
fn absurd_scan_tunables_are_refused() {
    use foldswap::{MAX_COLD_LEVEL, ScanTunables};
    let backend = Backend::new(StdPageProvider, Config::default(), StdParker::new()).unwrap();
    let refused = |tunables| {
        matches!(
            backend.stage_scan_tunables(tunables),
            Err(Error::InvalidArgument(_))
        )
    };
    assert!(refused(ScanTunables {
        cold_level: MAX_COLD_LEVEL + 1,
        ..ScanTunables::default()
    }));
    assert!(refused(ScanTunables {
        cold_rounds: 127,
        ..ScanTunables::default()
    }));
    assert!(!refused(ScanTunables {
        cold_level: MAX_COLD_LEVEL,
        cold_rounds: 126,
        ..ScanTunables::default()
    }));
}
