//! Property tests: random operation sequences against a plain model map.
//!
//! Every load equals its store, freed handles stay refused, compaction keeps every
//! handle readable, and running out of memory (CountingProvider) or hitting the
//! byte limit loses and changes nothing already stored.
#![cfg(feature = "std")]

use std::collections::HashMap;

use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_pool::{
    CodecKind, CompressScratch, DecompressScratch, Handle, NoClock, ObjectStore, PagePolicy,
    PagePool, PoorCompression, StoredPage,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Store {
        len: usize,
        seed: u8,
        tag: u8,
    },
    /// Store `count` objects of one length: fills zspages of one class.
    Burst {
        len: usize,
        count: usize,
        seed: u8,
    },
    /// Free every `step`-th live object: leaves zspages sparse.
    Thin {
        step: usize,
    },
    Free(usize),
    FreeStale(usize),
    Read(usize),
    Compact,
    ProviderLimit(usize),
    ByteLimit(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..=PAGE_SIZE, any::<u8>(), any::<u8>()).prop_map(|(len, seed, tag)| Op::Store { len, seed, tag }),
        1 => (0..=PAGE_SIZE / 8, any::<u8>(), any::<u8>()).prop_map(|(len, seed, tag)| Op::Store { len, seed, tag }),
        // Few lengths: many objects per class, so compaction has work to do.
        8 => (prop::sample::select(vec![40usize, 700, 1500, 2100]), any::<u8>(), any::<u8>())
            .prop_map(|(len, seed, tag)| Op::Store { len, seed, tag }),
        8 => any::<usize>().prop_map(Op::Free),
        2 => (prop::sample::select(vec![40usize, 700, 1500, 2100]), 1usize..150, any::<u8>())
            .prop_map(|(len, count, seed)| Op::Burst { len, count, seed }),
        1 => (2usize..5).prop_map(|step| Op::Thin { step }),
        1 => any::<usize>().prop_map(Op::FreeStale),
        2 => any::<usize>().prop_map(Op::Read),
        1 => Just(Op::Compact),
        1 => (0usize..200).prop_map(Op::ProviderLimit),
        1 => (0usize..400).prop_map(|pages| Op::ByteLimit(pages * PAGE_SIZE)),
    ]
}

fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
        .collect()
}

fn check_all(
    store: &ObjectStore<&CountingProvider<StdPageProvider>>,
    model: &[(Handle, Vec<u8>, u8)],
) {
    let mut buf = vec![0u8; PAGE_SIZE];
    for (handle, bytes, tag) in model {
        assert_eq!(
            store.read_object(*handle, &mut buf),
            Ok((bytes.len(), *tag))
        );
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..300)) {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut store = ObjectStore::new(&provider).unwrap();
        let mut model: Vec<(Handle, Vec<u8>, u8)> = Vec::new();
        let mut freed: Vec<Handle> = Vec::new();
        let mut buf = vec![0u8; PAGE_SIZE];
        for op in ops {
            match op {
                Op::Store { len, seed, tag } => {
                    let bytes = bytes_of(len, seed);
                    let held = store.bytes_held();
                    match store.store_object(&bytes, tag) {
                        Ok(handle) => model.push((handle, bytes, tag)),
                        Err(Error::OutOfMemory) | Err(Error::PoolFull) => {
                            // A failed store keeps no zspage page; at most the
                            // metadata slabs keep what they got (dir + data page
                            // each), for the next store to use.
                            prop_assert!(store.bytes_held() <= held + 4 * PAGE_SIZE);
                            check_all(&store, &model);
                        }
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                }
                Op::Burst { len, count, seed } => {
                    for i in 0..count {
                        let bytes = bytes_of(len, seed.wrapping_add(i as u8));
                        match store.store_object(&bytes, seed) {
                            Ok(handle) => model.push((handle, bytes, seed)),
                            Err(Error::OutOfMemory) | Err(Error::PoolFull) => break,
                            Err(e) => prop_assert!(false, "unexpected {e:?}"),
                        }
                    }
                }
                Op::Thin { step } => {
                    let mut index = 0;
                    model.retain(|(handle, _, _)| {
                        index += 1;
                        if index % step == 0 {
                            assert_eq!(store.free(*handle), Ok(()));
                            freed.push(*handle);
                            false
                        } else {
                            true
                        }
                    });
                }
                Op::Free(i) if !model.is_empty() => {
                    let (handle, _, _) = model.swap_remove(i % model.len());
                    prop_assert_eq!(store.free(handle), Ok(()));
                    freed.push(handle);
                }
                Op::FreeStale(i) if !freed.is_empty() => {
                    let handle = freed[i % freed.len()];
                    prop_assert_eq!(store.free(handle), Err(Error::InvalidHandle));
                    prop_assert_eq!(store.read_object(handle, &mut buf), Err(Error::InvalidHandle));
                }
                Op::Read(i) if !model.is_empty() => {
                    let (handle, bytes, tag) = &model[i % model.len()];
                    prop_assert_eq!(store.read_object(*handle, &mut buf), Ok((bytes.len(), *tag)));
                    prop_assert_eq!(&buf[..bytes.len()], &bytes[..]);
                }
                Op::Compact => {
                    let before = store.bytes_held();
                    let result = store.compact();
                    prop_assert!(store.bytes_held() <= before);
                    prop_assert_eq!(before - store.bytes_held(), result.pages_freed * PAGE_SIZE);
                    check_all(&store, &model);
                }
                Op::ProviderLimit(extra) => provider.set_limit(provider.pages_in_use() + extra),
                Op::ByteLimit(limit) => store.set_limit_bytes(if limit == 0 { usize::MAX } else { limit }),
                _ => {}
            }
            prop_assert_eq!(store.len(), model.len());
            // The store accounts for every page it holds. (foldswap-mem's Slab does
            // not count a directory page whose first data page could not be had,
            // hence up to one uncounted page per slab.)
            let in_use = provider.pages_in_use() * PAGE_SIZE;
            prop_assert!(in_use >= store.bytes_held() && in_use <= store.bytes_held() + 2 * PAGE_SIZE);
            prop_assert_eq!(store.stats().object_bytes, model.iter().map(|m| m.1.len()).sum::<usize>());
        }
        check_all(&store, &model);
        provider.set_limit(usize::MAX);
        store.compact();
        check_all(&store, &model);
        for (handle, _, _) in model.drain(..) {
            prop_assert_eq!(store.free(handle), Ok(()));
        }
        prop_assert_eq!(store.stats().zspage_pages, 0);
        drop(store);
        prop_assert_eq!(provider.pages_in_use(), 0);
    }

    #[test]
    fn page_pool_matches_model(
        pages in proptest::collection::vec((0u8..4, any::<u64>(), 0usize..PAGE_SIZE), 1..60),
        frees in proptest::collection::vec(any::<usize>(), 0..30),
        limit in 0usize..40,
    ) {
        let provider = CountingProvider::new(StdPageProvider, 20 + limit);
        let policy = PagePolicy { on_poor: PoorCompression::KeepRaw, ..PagePolicy::default() };
        let mut pool = PagePool::new(&provider, policy).unwrap();
        let mut scratch = CompressScratch::boxed();
        let mut dscratch = Box::new(DecompressScratch::new());
        let mut model: HashMap<usize, (StoredPage, Vec<u8>)> = HashMap::new();
        for (i, (kind, word, cut)) in pages.into_iter().enumerate() {
            let page = make_page(kind, word, cut);
            match pool.store_page(&page, &mut scratch, &NoClock) {
                Ok(stored) => { model.insert(i, (stored, page)); }
                Err(Error::OutOfMemory) => {}
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
        let keys: Vec<usize> = model.keys().copied().collect();
        for f in frees {
            if keys.is_empty() { break; }
            if let Some((stored, _)) = model.remove(&keys[f % keys.len()]) {
                prop_assert_eq!(pool.free_page(stored), Ok(()));
            }
        }
        pool.compact();
        let mut out = vec![0u8; PAGE_SIZE];
        for (stored, page) in model.values() {
            prop_assert_eq!(pool.load_page(*stored, &mut out, &mut dscratch, &NoClock), Ok(()));
            prop_assert_eq!(&out, page);
        }
        prop_assert_eq!(pool.stats().stored_pages as usize, model.len());
    }
}

/// Pages of four kinds: same-filled, compressible text, random (raw), mixed.
fn make_page(kind: u8, word: u64, cut: usize) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    let mut x = word | 1;
    for (i, b) in page.iter_mut().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = match kind {
            0 => word.to_le_bytes()[i % 8],
            1 => b"swap pages compress well "[i % 25],
            2 => x as u8,
            _ => {
                if i < cut {
                    x as u8
                } else {
                    0
                }
            }
        };
    }
    page
}

#[test]
fn deflate_and_lz4_pages_load_back_in_one_pool() {
    let mut pool = PagePool::new(StdPageProvider, PagePolicy::default()).unwrap();
    let mut scratch = CompressScratch::boxed();
    let mut dscratch = Box::new(DecompressScratch::new());
    let mut page = Vec::new();
    for i in 0.. {
        page.extend_from_slice(format!("entry {} -> {:x}; ", i * 7919 % 1000, i * i).as_bytes());
        if page.len() >= PAGE_SIZE {
            break;
        }
    }
    page.truncate(PAGE_SIZE);
    let lz4 = pool.store_page(&page, &mut scratch, &NoClock).unwrap();
    pool.set_policy(PagePolicy {
        codec: CodecKind::Deflate,
        ..PagePolicy::default()
    })
    .unwrap();
    let deflate = pool.store_page(&page, &mut scratch, &NoClock).unwrap();
    let (StoredPage::Object(a), StoredPage::Object(b)) = (lz4, deflate) else {
        panic!("not objects")
    };
    assert!(pool.store().object_info(b).unwrap().0 < pool.store().object_info(a).unwrap().0);
    let mut out = vec![0u8; PAGE_SIZE];
    for stored in [lz4, deflate] {
        pool.load_page(stored, &mut out, &mut dscratch, &NoClock)
            .unwrap();
        assert_eq!(out, page);
    }
    let stats = pool.stats();
    assert_eq!(stats.compress_calls, [1, 1]);
    assert_eq!(stats.decompress_calls, [1, 1]);
}
