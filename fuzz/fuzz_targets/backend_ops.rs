//! Random frontswap operation sequences on the backend (several swap types, similar
//! and identical pages, memory running out, scanner bursts that patch and recompress)
//! checked against a model: every load returns exactly what was stored.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use common::{TickClock, page, scan_at_once, unthrottled};
use foldswap::{Backend, Domain, Error, Scratch, StdParker};
use foldswap_mem::{CountingProvider, PAGE_SIZE, StdPageProvider};
use libfuzzer_sys::fuzz_target;

#[path = "backend_common.rs"]
mod common;

const TYPES: usize = 2;
const OFFSETS: u64 = 64;

#[derive(Debug, Arbitrary)]
enum Op {
    /// Store a page of `family` with small edits `edits` (similar pages within a
    /// family, identical ones for equal edits), in dedup domain `domain % 3`.
    Store {
        ty: u8,
        offset: u8,
        family: u8,
        edits: u8,
        domain: u8,
    },
    Load {
        ty: u8,
        offset: u8,
    },
    Invalidate {
        ty: u8,
        offset: u8,
    },
    InvalidateArea {
        ty: u8,
    },
    Init {
        ty: u8,
    },
    Scan {
        bursts: u8,
    },
    Limit {
        pages: u8,
    },
}

fuzz_target!(|ops: Vec<Op>| {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, unthrottled(), StdParker::new()).expect("backend");
    let mut scratch = Scratch::boxed();
    let clock = TickClock::new();
    let scan = scan_at_once(8);
    let mut model: HashMap<(usize, u64), Vec<u8>> = HashMap::new();
    let mut domains: HashMap<(usize, u64), Domain> = HashMap::new();
    for ty in 0..TYPES {
        backend.init(ty, OFFSETS).expect("init");
    }
    let mut out = vec![0u8; PAGE_SIZE];
    for op in ops.into_iter().take(256) {
        match op {
            Op::Store {
                ty,
                offset,
                family,
                edits,
                domain,
            } => {
                let key = (usize::from(ty) % TYPES, u64::from(offset) % OFFSETS);
                let page = page(family % 16, edits);
                let domain = Domain(u16::from(domain % 3));
                match backend.store(key.0, key.1, &page, domain, &mut scratch) {
                    Ok(_) => {
                        model.insert(key, page);
                        domains.insert(key, domain);
                    }
                    Err(Error::OutOfMemory | Error::PoolFull) => {}
                    Err(e) => panic!("store: {e}"),
                }
            }
            Op::Load { ty, offset } => {
                let key = (usize::from(ty) % TYPES, u64::from(offset) % OFFSETS);
                match (
                    backend.load(key.0, key.1, &mut out, &mut scratch),
                    model.get(&key),
                ) {
                    (Ok(()), Some(page)) => assert!(&out == page, "load returned other bytes"),
                    (Err(Error::NotFound), None) => {}
                    (got, want) => panic!("load {key:?}: {got:?} vs model {}", want.is_some()),
                }
            }
            Op::Invalidate { ty, offset } => {
                let key = (usize::from(ty) % TYPES, u64::from(offset) % OFFSETS);
                let had = backend.invalidate_page(key.0, key.1).expect("invalidate");
                assert_eq!(had, model.remove(&key).is_some());
            }
            Op::InvalidateArea { ty } => {
                let ty = usize::from(ty) % TYPES;
                backend.invalidate_area(ty).expect("invalidate_area");
                model.retain(|k, _| k.0 != ty);
            }
            Op::Init { ty } => {
                let ty = usize::from(ty) % TYPES;
                backend.init(ty, OFFSETS).expect("init");
                model.retain(|k, _| k.0 != ty);
            }
            Op::Scan { bursts } => {
                for _ in 0..bursts % 4 {
                    backend
                        .scan_burst(&scan, &mut scratch, &clock)
                        .expect("scan");
                }
            }
            Op::Limit { pages } => provider.set_limit(provider.pages_in_use() + usize::from(pages)),
        }
    }
    provider.set_limit(usize::MAX);
    let mut blocks: HashMap<u32, Domain> = HashMap::new();
    for (key, page) in &model {
        backend
            .load(key.0, key.1, &mut out, &mut scratch)
            .expect("load");
        assert!(&out == page);
        // Nothing joins domains: the content, its delta base, its block's pages
        // are all of the domain the store named.
        let domain = domains[key];
        if let Some(content) = backend.content_at(key.0, key.1).expect("content") {
            assert_eq!(content.domain, domain, "{key:?}");
            assert!(content.base.is_none_or(|(_, d)| d == domain), "{key:?}");
            if let Some(block) = content.block {
                assert_eq!(*blocks.entry(block).or_insert(domain), domain, "{key:?}");
            }
        }
    }
    drop(backend);
    assert_eq!(provider.pages_in_use(), 0, "pages leaked");
});
