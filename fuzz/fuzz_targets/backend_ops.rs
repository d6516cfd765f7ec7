//! Random frontswap operation sequences on the backend (several swap types, similar
//! and identical pages, memory running out, scanner bursts that patch and recompress,
//! writeback to a swap device) checked against a model: every load returns exactly
//! what was stored, from the pool or (written back) from the device, never both.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;

use arbitrary::Arbitrary;
use common::{TickClock, page, scan_at_once, unthrottled};
use foldswap::{Backend, Domain, Error, Scratch, StdParker, SwapDevice};
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
    /// Limit the pool to `percent`% (at least 50) of what it holds and write
    /// back at most `pages`, then lift the limit.
    WriteBack {
        percent: u8,
        pages: u8,
    },
    /// Write back at most `pages` lone pages (memory pressure, no limit).
    WriteBackLone {
        pages: u8,
    },
}

/// The swap device: what was written back, by (type, offset).
#[derive(Default)]
struct Device(RefCell<HashMap<(usize, u64), Vec<u8>>>);

impl SwapDevice for Device {
    type Slot = (usize, u64);

    fn claim(&self, swap_type: usize, offset: u64) -> Option<(usize, u64)> {
        Some((swap_type, offset))
    }

    fn write(&self, slot: (usize, u64), page: &[u8; PAGE_SIZE]) {
        let old = self.0.borrow_mut().insert(slot, page.to_vec());
        assert!(old.is_none(), "{slot:?} written back twice");
    }

    fn release(&self, _slot: (usize, u64)) {}
}

fuzz_target!(|ops: Vec<Op>| {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, unthrottled(), StdParker::new()).expect("backend");
    let mut scratch = Scratch::boxed();
    let clock = TickClock::new();
    let scan = scan_at_once(8);
    let mut model: HashMap<(usize, u64), Vec<u8>> = HashMap::new();
    let mut domains: HashMap<(usize, u64), Domain> = HashMap::new();
    let device = Device::default();
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
                device.0.borrow_mut().remove(&key);
                match backend.store(key.0, key.1, &page, domain, &mut scratch) {
                    Ok(_) => {
                        model.insert(key, page);
                        domains.insert(key, domain);
                    }
                    // The host drops what the slot held (as the kernel patch does).
                    Err(Error::OutOfMemory | Error::PoolFull) => {
                        backend.invalidate_page(key.0, key.1).expect("invalidate");
                        model.remove(&key);
                    }
                    Err(e) => panic!("store: {e}"),
                }
            }
            Op::Load { ty, offset } => {
                let key = (usize::from(ty) % TYPES, u64::from(offset) % OFFSETS);
                match (
                    backend.load(key.0, key.1, &mut out, &mut scratch),
                    model.get(&key),
                ) {
                    (Ok(()), Some(page)) => {
                        assert!(&out == page, "load returned other bytes");
                        assert!(!device.0.borrow().contains_key(&key), "{key:?} in both");
                    }
                    (Err(Error::NotFound), want) => {
                        assert!(device.0.borrow().get(&key) == want, "{key:?} on the device");
                    }
                    (got, want) => panic!("load {key:?}: {got:?} vs model {}", want.is_some()),
                }
            }
            Op::Invalidate { ty, offset } => {
                let key = (usize::from(ty) % TYPES, u64::from(offset) % OFFSETS);
                let had = backend.invalidate_page(key.0, key.1).expect("invalidate");
                let written_back = device.0.borrow_mut().remove(&key).is_some();
                assert_eq!(had || written_back, model.remove(&key).is_some());
            }
            Op::InvalidateArea { ty } => {
                let ty = usize::from(ty) % TYPES;
                backend.invalidate_area(ty).expect("invalidate_area");
                model.retain(|k, _| k.0 != ty);
                device.0.borrow_mut().retain(|k, _| k.0 != ty);
            }
            Op::Init { ty } => {
                let ty = usize::from(ty) % TYPES;
                backend.init(ty, OFFSETS).expect("init");
                model.retain(|k, _| k.0 != ty);
                device.0.borrow_mut().retain(|k, _| k.0 != ty);
            }
            Op::Scan { bursts } => {
                for _ in 0..bursts % 4 {
                    backend
                        .scan_burst(&scan, &mut scratch, &clock)
                        .expect("scan");
                }
            }
            Op::Limit { pages } => provider.set_limit(provider.pages_in_use() + usize::from(pages)),
            Op::WriteBack { percent, pages } => {
                let held = backend.total_bytes_held();
                let percent = 50 + usize::from(percent % 51);
                backend.set_pool_limit_bytes(held / 100 * percent);
                let report = backend.write_back(&device, u32::from(pages), &mut scratch);
                assert!(report.written <= u32::from(pages));
                backend.set_pool_limit_bytes(usize::MAX);
            }
            Op::WriteBackLone { pages } => {
                let report = backend.write_back_lone(&device, u32::from(pages), &mut scratch);
                assert!(report.written <= u32::from(pages));
                assert!(report.worst_class <= Some(foldswap::VictimClass::Lone));
            }
        }
    }
    provider.set_limit(usize::MAX);
    let s = backend.stats().snapshot();
    let written_back = device.0.borrow().len() as u64;
    assert_eq!(s.stored_pages + written_back, model.len() as u64, "{s:?}");
    let mut blocks: HashMap<u32, Domain> = HashMap::new();
    for (key, page) in &model {
        if let Some(written) = device.0.borrow().get(key) {
            assert!(written == page, "{key:?} on the device");
            continue;
        }
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
