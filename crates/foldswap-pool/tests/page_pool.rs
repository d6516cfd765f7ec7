//! The page layer: policy (same-filled, threshold, keep raw / reject), typed errors
//! on bad input, statistics and host-clock timing.
#![cfg(feature = "std")]

use core::cell::Cell;

use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_pool::{
    Clock, CodecKind, CompressScratch, DecompressScratch, NoClock, PagePolicy, PagePool, Place,
    PoorCompression, Prepared, StoredPage, TAG_FIRST_HOST, TAG_LZ4, TAG_RAW, prepare_page,
};

fn random_page(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..PAGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn text_page() -> Vec<u8> {
    (0..PAGE_SIZE)
        .map(|i| b"compressible words, "[i % 20])
        .collect()
}

/// A clock that advances 100 ns per reading.
struct StepClock(Cell<u64>);

impl Clock for StepClock {
    fn now_ns(&self) -> u64 {
        self.0.set(self.0.get() + 100);
        self.0.get()
    }
}

#[test]
fn same_filled_pages_take_no_pool_space() {
    let mut pool = PagePool::new(StdPageProvider, PagePolicy::default()).unwrap();
    let mut scratch = CompressScratch::boxed();
    let held = pool.stats().store.bytes_held;
    let zero = vec![0u8; PAGE_SIZE];
    let filled: Vec<u8> = (0..PAGE_SIZE)
        .map(|i| [1, 2, 3, 4, 5, 6, 7, 8][i % 8])
        .collect();
    assert_eq!(
        pool.store_page(&zero, &mut scratch, &NoClock),
        Ok(StoredPage::SameFilled(0))
    );
    assert_eq!(
        pool.store_page(&filled, &mut scratch, &NoClock),
        Ok(StoredPage::SameFilled(0x0807_0605_0403_0201))
    );
    let stats = pool.stats();
    assert_eq!(
        (
            stats.same_filled_pages,
            stats.zero_pages,
            stats.stored_pages
        ),
        (2, 1, 2)
    );
    assert_eq!(stats.store.bytes_held, held);
    assert_eq!(stats.compress_calls, [0, 0]);
    let mut out = vec![9u8; PAGE_SIZE];
    let mut d = Box::new(DecompressScratch::new());
    pool.load_page(
        StoredPage::SameFilled(0x0807_0605_0403_0201),
        &mut out,
        &mut d,
        &NoClock,
    )
    .unwrap();
    assert_eq!(out, filled);
}

#[test]
fn threshold_rejects_or_keeps_raw_as_configured() {
    let mut pool = PagePool::new(StdPageProvider, PagePolicy::default()).unwrap();
    let mut scratch = CompressScratch::boxed();
    let random = random_page(7);
    assert_eq!(
        pool.store_page(&random, &mut scratch, &NoClock),
        Err(Error::Incompressible)
    );
    assert_eq!(pool.stats().reject_compress_poor, 1);
    assert_eq!(pool.stats().stored_pages, 0);

    pool.set_policy(PagePolicy {
        on_poor: PoorCompression::KeepRaw,
        ..PagePolicy::default()
    })
    .unwrap();
    let stored = pool.store_page(&random, &mut scratch, &NoClock).unwrap();
    let StoredPage::Object(place, TAG_RAW) = stored else {
        panic!("raw page must be a raw object: {stored:?}")
    };
    assert_eq!(place.len(), PAGE_SIZE);
    let mut out = vec![0u8; PAGE_SIZE];
    pool.load_page(
        stored,
        &mut out,
        &mut Box::new(DecompressScratch::new()),
        &NoClock,
    )
    .unwrap();
    assert_eq!(out, random);
    assert_eq!(pool.stats().raw_pages, 1);

    // A tight threshold turns a compressible page away too.
    let text = text_page();
    pool.set_policy(PagePolicy {
        threshold: 8,
        on_poor: PoorCompression::Reject,
        ..PagePolicy::default()
    })
    .unwrap();
    assert_eq!(
        pool.store_page(&text, &mut scratch, &NoClock),
        Err(Error::Incompressible)
    );
    assert_eq!(pool.stats().reject_compress_poor, 2);
}

#[test]
fn bad_arguments_get_typed_errors_and_change_nothing() {
    let mut pool = PagePool::new(StdPageProvider, PagePolicy::default()).unwrap();
    let mut scratch = CompressScratch::boxed();
    let mut d = Box::new(DecompressScratch::new());
    let text = text_page();
    let stored = pool.store_page(&text, &mut scratch, &NoClock).unwrap();
    assert_eq!(
        pool.store_page(&text[..100], &mut scratch, &NoClock),
        Err(Error::WrongLength {
            expected: PAGE_SIZE,
            actual: 100
        })
    );
    let mut short = vec![0u8; 10];
    assert_eq!(
        pool.load_page(stored, &mut short, &mut d, &NoClock),
        Err(Error::WrongLength {
            expected: PAGE_SIZE,
            actual: 10
        })
    );
    for threshold in [0, PAGE_SIZE + 1] {
        let bad = PagePolicy {
            threshold,
            ..PagePolicy::default()
        };
        assert!(matches!(
            pool.set_policy(bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(pool.policy(), &PagePolicy::default());
    // Corrupt bytes under an lz4 tag: load fails with Corrupt, counted.
    let garbage = pool
        .store_mut()
        .store_object(&[0xf0, 1, 2, 3, 4, 5])
        .unwrap();
    let mut out = vec![0u8; PAGE_SIZE];
    assert_eq!(
        pool.load_page(
            StoredPage::Object(garbage, TAG_LZ4),
            &mut out,
            &mut d,
            &NoClock
        ),
        Err(Error::Corrupt)
    );
    assert_eq!(pool.stats().corrupt_loads, 1);
    // The tag is the host's: a raw tag on a short object, or a tag no codec has,
    // is corrupt too.
    for tag in [TAG_RAW, TAG_FIRST_HOST] {
        assert_eq!(
            pool.load_page(StoredPage::Object(garbage, tag), &mut out, &mut d, &NoClock),
            Err(Error::Corrupt)
        );
    }
    assert_eq!(pool.stats().corrupt_loads, 3);
    // A freed page's place is refused; the good page still loads.
    let StoredPage::Object(place, tag) = stored else {
        panic!("{stored:?}")
    };
    assert_eq!(tag, TAG_LZ4);
    pool.load_page(stored, &mut out, &mut d, &NoClock).unwrap();
    assert_eq!(out, text);
    let before = pool.stats();
    pool.free_page(stored).unwrap();
    let freed = pool.stats();
    assert_eq!(pool.free_page(stored), Err(Error::InvalidHandle));
    assert_eq!(
        pool.load_page(StoredPage::Object(place, tag), &mut out, &mut d, &NoClock),
        Err(Error::InvalidHandle)
    );
    // Forged places: refused, and the counters stay as they were.
    let (zspage, slot, len) = place.to_parts();
    let (garbage_zspage, garbage_slot, _) = garbage.to_parts();
    for forged in [
        Place::from_parts(zspage, slot + 1, len),
        Place::from_parts(u32::MAX, 0, len),
        // The live garbage object's slot, with a length of another class.
        Place::from_parts(garbage_zspage, garbage_slot, 2000),
    ] {
        assert_eq!(
            pool.free_page(StoredPage::Object(forged, tag)),
            Err(Error::InvalidHandle)
        );
    }
    let after = pool.stats();
    assert_eq!(after.stored_pages, before.stored_pages - 1);
    assert_eq!(
        (after.compressed_pages, after.compressed_bytes, after.store),
        (freed.compressed_pages, freed.compressed_bytes, freed.store)
    );
    let mut buf = [0u8; 6];
    assert_eq!(pool.store().read_object(garbage, &mut buf), Ok(6));
}

#[test]
fn pool_full_and_out_of_memory_are_counted_and_lose_nothing() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut pool = PagePool::new(&provider, PagePolicy::default()).unwrap();
    pool.set_limit_bytes(16 * PAGE_SIZE);
    let mut scratch = CompressScratch::boxed();
    let mut kept = Vec::new();
    for seed in 0..200u64 {
        let mut page = random_page(seed + 1);
        page[PAGE_SIZE / 2..].fill(0);
        match pool.store_page(&page, &mut scratch, &NoClock) {
            Ok(stored) => kept.push((stored, page)),
            Err(e) => assert_eq!(e, Error::PoolFull),
        }
    }
    let full = pool.stats().reject_pool_full;
    assert!(full > 0);
    assert!(pool.stats().store.bytes_held <= 16 * PAGE_SIZE);
    pool.set_limit_bytes(usize::MAX);
    provider.set_limit(provider.pages_in_use());
    let mut oom = 0;
    for seed in 500..600u64 {
        let mut page = random_page(seed);
        page[PAGE_SIZE / 2..].fill(0);
        match pool.store_page(&page, &mut scratch, &NoClock) {
            Ok(stored) => kept.push((stored, page)),
            Err(e) => {
                assert_eq!(e, Error::OutOfMemory);
                oom += 1;
            }
        }
    }
    assert!(oom > 0);
    assert_eq!(pool.stats().reject_alloc_fail, oom);
    let mut out = vec![0u8; PAGE_SIZE];
    let mut d = Box::new(DecompressScratch::new());
    for (stored, page) in &kept {
        pool.load_page(*stored, &mut out, &mut d, &NoClock).unwrap();
        assert_eq!(&out, page);
    }
}

#[test]
fn codec_time_comes_from_the_host_clock_and_prepare_needs_no_pool() {
    let clock = StepClock(Cell::new(0));
    let mut scratch = CompressScratch::boxed();
    let text = text_page();
    let page: &[u8; PAGE_SIZE] = text.as_slice().try_into().unwrap();
    let policy = PagePolicy::default();
    let prepared = prepare_page(&policy, page, &mut scratch, &clock).unwrap();
    let Prepared::Compressed {
        codec: CodecKind::Lz4,
        bytes,
        ns: 100,
    } = prepared
    else {
        panic!("{prepared:?}")
    };
    let bytes = bytes.to_vec();
    let mut pool = PagePool::new(StdPageProvider, policy).unwrap();
    let stored = pool
        .commit(
            Prepared::Compressed {
                codec: CodecKind::Lz4,
                bytes: &bytes,
                ns: 100,
            },
            page,
        )
        .unwrap();
    let mut out = vec![0u8; PAGE_SIZE];
    pool.load_page(
        stored,
        &mut out,
        &mut Box::new(DecompressScratch::new()),
        &clock,
    )
    .unwrap();
    assert_eq!(out, text);
    let stats = pool.stats();
    assert_eq!(
        (stats.compress_calls, stats.compress_ns),
        ([1, 0], [100, 0])
    );
    assert_eq!(
        (stats.decompress_calls, stats.decompress_ns),
        ([1, 0], [100, 0])
    );
    assert_eq!(stats.compressed_bytes, bytes.len() as u64);
    assert_eq!(
        (stats.stores, stats.loads, stats.compressed_pages),
        (1, 1, 1)
    );
}

/// Compaction rewrites the places in the host's table of stored pages (with
/// holes and same-filled pages in it); every page loads back the same, and the
/// page counters do not change.
#[test]
fn compaction_rewrites_the_places_in_the_hosts_table() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let policy = PagePolicy {
        on_poor: PoorCompression::KeepRaw,
        ..PagePolicy::default()
    };
    let mut pool = PagePool::new(&provider, policy).unwrap();
    let mut scratch = CompressScratch::boxed();
    let mut d = Box::new(DecompressScratch::new());
    // Pages of many compressed sizes, some raw and some same-filled.
    let page = |i: u64| {
        let mut page = random_page(i + 1);
        match i % 7 {
            0 => page.fill(i as u8),
            1 => {}
            n => page[(n as usize) * 400..].fill(0),
        }
        page
    };
    let mut table: Vec<Option<StoredPage>> = (0..1500u64)
        .map(|i| Some(pool.store_page(&page(i), &mut scratch, &NoClock).unwrap()))
        .collect();
    // Two of every three freed: their entries become holes.
    for (i, entry) in table.iter_mut().enumerate() {
        if i % 3 != 0 {
            pool.free_page(entry.take().unwrap()).unwrap();
        }
    }
    let before = pool.stats();
    let old = table.clone();
    let result = pool.compact(table.as_mut_slice());
    let after = pool.stats();
    assert!(result.zspages_freed > 0, "{result:?}");
    assert_eq!(
        before.store.zspage_pages - after.store.zspage_pages,
        result.pages_freed
    );
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, after.store.bytes_held);
    assert_eq!(
        (
            after.stored_pages,
            after.compressed_pages,
            after.raw_pages,
            after.compressed_bytes
        ),
        (
            before.stored_pages,
            before.compressed_pages,
            before.raw_pages,
            before.compressed_bytes
        )
    );
    let mut rewritten = 0;
    let mut out = vec![0u8; PAGE_SIZE];
    for (i, (old, new)) in old.iter().zip(&table).enumerate() {
        match (old, new) {
            (None, None) => {}
            (Some(StoredPage::SameFilled(a)), Some(StoredPage::SameFilled(b))) => assert_eq!(a, b),
            (Some(StoredPage::Object(a, tag_a)), Some(StoredPage::Object(b, tag_b))) => {
                // Only the place changes, never the tag or the length.
                assert_eq!((tag_a, a.len()), (tag_b, b.len()));
                rewritten += usize::from(a != b);
            }
            _ => panic!("entry {i}: {old:?} became {new:?}"),
        }
        if let Some(stored) = new {
            pool.load_page(*stored, &mut out, &mut d, &NoClock).unwrap();
            assert_eq!(out, page(i as u64), "page {i}");
        }
    }
    assert!(
        rewritten > 0 && rewritten <= result.objects_moved,
        "{rewritten} {result:?}"
    );
    // The same through a table without holes.
    let mut dense: Vec<StoredPage> = table.iter().flatten().copied().collect();
    pool.compact(dense.as_mut_slice());
    for (stored, i) in dense.iter().zip((0..1500u64).step_by(3)) {
        pool.load_page(*stored, &mut out, &mut d, &NoClock).unwrap();
        assert_eq!(out, page(i), "page {i}");
    }
    for stored in dense {
        pool.free_page(stored).unwrap();
    }
    let empty = pool.stats();
    assert_eq!(
        (
            empty.stored_pages,
            empty.compressed_bytes,
            empty.store.objects
        ),
        (0, 0, 0)
    );
    assert_eq!(empty.store.zspage_pages, 0);
}
