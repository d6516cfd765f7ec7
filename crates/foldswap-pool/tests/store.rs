//! Object store behaviour: round trips, stale handles, limits, OOM, compaction.
#![cfg(feature = "std")]

use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_pool::{Handle, ObjectStore, TAG_FIRST_HOST};

fn object(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 31 + seed * 7 + i / 13) as u8)
        .collect()
}

#[test]
fn objects_round_trip_with_tags_at_every_size() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    let mut kept = Vec::new();
    for len in (0..=PAGE_SIZE).step_by(37).chain([PAGE_SIZE]) {
        let bytes = object(len, len);
        let tag = (len % 200) as u8;
        kept.push((store.store_object(&bytes, tag).unwrap(), bytes, tag));
    }
    let mut buf = vec![0u8; PAGE_SIZE];
    for (handle, bytes, tag) in &kept {
        assert_eq!(
            store.read_object(*handle, &mut buf),
            Ok((bytes.len(), *tag))
        );
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
    }
    assert_eq!(store.len(), kept.len());
    for (handle, _, _) in kept {
        store.free(handle).unwrap();
    }
    assert!(store.is_empty());
    assert_eq!(store.stats().zspage_pages, 0);
    drop(store);
    assert_eq!(provider.pages_in_use(), 0);
}

/// Objects read in place (the backend's loads, outside the lock) are exactly what
/// was stored, and stay so while other objects of the same pages come and go.
#[test]
fn objects_in_place_hold_their_bytes_while_neighbours_change() {
    let mut store = ObjectStore::new(StdPageProvider).unwrap();
    let mut kept = Vec::new();
    // Four of each length, so slots of a class also straddle page boundaries.
    for (i, len) in (1..=PAGE_SIZE).step_by(53).flat_map(|l| [l; 4]).enumerate() {
        let bytes = object(i, len);
        kept.push((store.store_object(&bytes, 3).unwrap(), bytes));
    }
    // Every other object freed, and as many new ones stored into the freed slots.
    let (mut views, mut spanning) = (Vec::new(), 0);
    for (i, (handle, bytes)) in kept.iter().enumerate() {
        if i % 2 == 0 {
            store.free(*handle).unwrap();
            continue;
        }
        match store.object_in_place(*handle).unwrap() {
            Some(view) => {
                assert_eq!((view.len(), view.tag()), (bytes.len(), 3));
                views.push((view, bytes.clone()));
            }
            None => spanning += 1,
        }
    }
    let fresh: Vec<_> = (0..kept.len() / 2)
        .map(|i| {
            let len = 1 + (i * 53) % PAGE_SIZE;
            store.store_object(&object(i + 9000, len), 4).unwrap()
        })
        .collect();
    assert!(
        !views.is_empty() && spanning > 0,
        "both kinds of object occur"
    );
    for (view, bytes) in &views {
        // SAFETY: these objects are live and the store neither frees nor moves
        // them while the slices are used.
        assert_eq!(unsafe { view.bytes() }, &bytes[..]);
    }
    let freed = fresh[0];
    store.free(freed).unwrap();
    assert_eq!(
        store.object_in_place(freed).err(),
        Some(Error::InvalidHandle)
    );
}

#[test]
fn stale_freed_and_unknown_handles_are_refused() {
    let mut store = ObjectStore::new(StdPageProvider).unwrap();
    let first = store.store_object(b"first", TAG_FIRST_HOST).unwrap();
    store.free(first).unwrap();
    // The entry is reused by the next store; the old handle must not see it.
    let second = store.store_object(b"second", TAG_FIRST_HOST).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        store.read_object(first, &mut buf),
        Err(Error::InvalidHandle)
    );
    assert_eq!(store.free(first), Err(Error::InvalidHandle));
    assert_eq!(store.read_object(second, &mut buf), Ok((6, TAG_FIRST_HOST)));
    // Each handle has one raw form; other bit patterns are not handles.
    assert_eq!(Handle::from_raw(second.to_raw()), Some(second));
    assert_eq!(Handle::from_raw(second.to_raw() | 1 << 48), None);
    assert_eq!(Handle::from_raw(0x1_0000_0000), None);
    assert_eq!(Handle::from_raw(0), None);
    let unknown = Handle::from_raw(0xffff_0000_1234).unwrap();
    assert_eq!(
        store.read_object(unknown, &mut buf),
        Err(Error::InvalidHandle)
    );
    assert_eq!(store.free(unknown), Err(Error::InvalidHandle));
    assert_eq!(
        store.read_object(second, &mut buf[..3]),
        Err(Error::WrongLength {
            expected: 6,
            actual: 3
        })
    );
    assert_eq!(
        store.store_object(&[0u8; PAGE_SIZE + 1], 0).unwrap_err(),
        Error::InvalidArgument("object longer than a page")
    );
}

#[test]
fn limit_gives_pool_full_and_out_of_memory_loses_nothing() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    store.set_limit_bytes(64 * 1024);
    let mut kept = Vec::new();
    let err = loop {
        let bytes = object(kept.len(), 1000 + kept.len() % 500);
        match store.store_object(&bytes, 1) {
            Ok(h) => kept.push((h, bytes)),
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::PoolFull);
    assert!(store.bytes_held() <= 64 * 1024);
    store.set_limit_bytes(usize::MAX);
    provider.set_limit(provider.pages_in_use());
    let mut oom = 0;
    for i in 0..200 {
        match store.store_object(&object(i, 3000), 2) {
            Ok(h) => kept.push((h, object(i, 3000))),
            Err(e) => {
                assert_eq!(e, Error::OutOfMemory);
                oom += 1;
            }
        }
    }
    assert!(oom > 0);
    let mut buf = vec![0u8; PAGE_SIZE];
    for (h, bytes) in &kept {
        let (len, _) = store.read_object(*h, &mut buf).unwrap();
        assert_eq!(&buf[..len], &bytes[..]);
    }
}

/// At the limit, a store takes a free slot from any partial zspage of its class,
/// not only from the first one (which may need a page the limit refuses).
#[test]
fn at_the_limit_a_free_slot_in_any_partial_zspage_is_used() {
    const LEN: usize = 1500;
    for stored in 2..40 {
        let mut store = ObjectStore::new(StdPageProvider).unwrap();
        let handles: Vec<_> = (0..stored)
            .map(|i| store.store_object(&object(i, LEN), 1).unwrap())
            .collect();
        // The first zspage gets a free slot in pages it holds; no store may grow
        // the pool now.
        store.free(handles[0]).unwrap();
        store.set_limit_bytes(store.bytes_held());
        let again = store.store_object(&object(999, LEN), 2);
        assert!(
            again.is_ok(),
            "{stored} objects: {again:?} with a free slot held"
        );
        let mut buf = vec![0u8; PAGE_SIZE];
        assert_eq!(store.read_object(again.unwrap(), &mut buf), Ok((LEN, 2)));
        assert_eq!(&buf[..LEN], &object(999, LEN)[..]);
        for (i, handle) in handles.iter().enumerate().skip(1) {
            assert_eq!(store.read_object(*handle, &mut buf), Ok((LEN, 1)));
            assert_eq!(&buf[..LEN], &object(i, LEN)[..]);
        }
    }
}

#[test]
fn compaction_frees_sparse_zspages_and_keeps_every_handle() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    let mut kept: Vec<(Handle, Vec<u8>)> = Vec::new();
    for i in 0..3000 {
        let bytes = object(i, 100 + (i * 97) % 2500);
        kept.push((store.store_object(&bytes, 3).unwrap(), bytes));
    }
    // Free two of every three objects: zspages become sparse.
    let mut survivors = Vec::new();
    for (i, (h, bytes)) in kept.into_iter().enumerate() {
        if i % 3 == 0 {
            survivors.push((h, bytes));
        } else {
            store.free(h).unwrap();
        }
    }
    let before = store.stats();
    let result = store.compact();
    let after = store.stats();
    assert!(result.zspages_freed > 0, "{result:?}");
    assert!(after.zspage_pages < before.zspage_pages);
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, after.bytes_held);
    assert_eq!(after.objects, survivors.len());
    let mut buf = vec![0u8; PAGE_SIZE];
    for (h, bytes) in &survivors {
        let (len, tag) = store.read_object(*h, &mut buf).unwrap();
        assert_eq!(tag, 3);
        assert_eq!(&buf[..len], &bytes[..]);
    }
    // A second compaction finds nothing more to do.
    assert_eq!(store.compact().zspages_freed, 0);
}

/// A zspage keeps the pages its bump index reached; once most objects in it are
/// freed (as the scanner's re-encodes free them), compaction packs the rest into
/// its first slots and gives the pages past them back, and the zspage takes pages
/// again as new objects reach them.
#[test]
fn compaction_gives_back_pages_past_the_last_live_object() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    // 1000-byte objects: 1008-byte slots, 65 to a zspage of 16 pages.
    let mut kept: Vec<(Handle, Vec<u8>)> = (0..60)
        .map(|i| {
            let bytes = object(i, 1000);
            (store.store_object(&bytes, 5).unwrap(), bytes)
        })
        .collect();
    assert_eq!(store.stats().zspage_pages, 15);
    // Keep 7 of the objects in slots 0..10; free the rest.
    let mut slot = 0;
    kept.retain(|(h, _)| {
        slot += 1;
        let keep = slot <= 10 && ![2, 6, 7].contains(&slot);
        if !keep {
            store.free(*h).unwrap();
        }
        keep
    });
    assert_eq!(kept.len(), 7);
    let result = store.compact();
    // The 7 objects left sit in slots 0..10 (3 pages); packed they need 2 pages
    // (slots 0..8): the two in slots 8 and 9 move down, 13 pages go back.
    assert_eq!(
        (
            result.objects_moved,
            result.tails_trimmed,
            result.pages_freed
        ),
        (2, 1, 13),
        "{result:?}"
    );
    let after = store.stats();
    assert_eq!(after.zspage_pages, 2);
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, after.bytes_held);
    let mut buf = vec![0u8; PAGE_SIZE];
    let check = |store: &ObjectStore<&CountingProvider<StdPageProvider>>,
                 kept: &[(Handle, Vec<u8>)],
                 buf: &mut [u8]| {
        for (h, bytes) in kept {
            let (len, tag) = store.read_object(*h, buf).unwrap();
            assert_eq!((tag, &buf[..len]), (5, &bytes[..]));
        }
    };
    check(&store, &kept, &mut buf);
    assert_eq!(store.compact(), Default::default(), "nothing more to do");
    // New objects take the freed slots below the cut, then pages again.
    for i in 100..150 {
        let bytes = object(i, 1000);
        kept.push((store.store_object(&bytes, 5).unwrap(), bytes));
    }
    // 57 objects: 1 in the free slot below the cut, 49 past it; ceil(57 * 1008
    // / 4096) pages.
    assert_eq!(store.stats().zspage_pages, 15);
    check(&store, &kept, &mut buf);
    for (h, _) in kept {
        store.free(h).unwrap();
    }
    assert_eq!(store.stats().zspage_pages, 0);
    drop(store);
    assert_eq!(provider.pages_in_use(), 0);
}

#[test]
fn store_and_pool_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ObjectStore<StdPageProvider>>();
    send_sync::<foldswap_pool::PagePool<StdPageProvider>>();
    fn send<T: Send>() {}
    send::<foldswap_pool::CompressScratch>();
    send::<foldswap_pool::DecompressScratch>();
}

#[test]
fn class_occupancy_and_fragmentation_follow_the_objects() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    let len = 1000;
    let class = foldswap_pool::class_for_len(len).unwrap();
    let shape = foldswap_pool::class_shape(class).unwrap();
    let per = shape.objects_per_zspage as usize;
    let count = 2 * per + 1;
    let handles: Vec<Handle> = (0..count)
        .map(|i| store.store_object(&object(i, len), 5).unwrap())
        .collect();
    let occupancy = store.class_occupancy(class).unwrap();
    assert_eq!((occupancy.objects, occupancy.zspages), (count, 3));
    assert_eq!(occupancy.shape, shape);
    let stats = store.stats();
    assert_eq!(stats.object_bytes, count * len);
    // Slot rounding and the unused end of the last page are all the waste.
    let pages_needed =
        (2 * shape.pages_per_zspage as usize) + (shape.slot_size as usize).div_ceil(PAGE_SIZE);
    assert_eq!(stats.zspage_pages, pages_needed);
    let waste = stats.zspage_pages * PAGE_SIZE - count * len;
    assert_eq!(
        stats.fragmentation_permille,
        waste * 1000 / (stats.zspage_pages * PAGE_SIZE)
    );
    for handle in handles {
        store.free(handle).unwrap();
    }
    let empty = store.class_occupancy(class).unwrap();
    assert_eq!((empty.objects, empty.zspages), (0, 0));
    assert_eq!(store.stats().fragmentation_permille, 0);
    assert!(store.class_occupancy(foldswap_pool::CLASS_COUNT).is_none());
}

/// Once the last object is freed the store gives its metadata back (handle table,
/// zspage descriptors), keeping only its class page; handles issued before are
/// still refused after new objects take their entries.
#[test]
fn an_emptied_store_gives_its_metadata_back_and_old_handles_stay_stale() {
    let mut store = ObjectStore::new(StdPageProvider).unwrap();
    let empty = store.bytes_held();
    let handles: Vec<_> = (0..3000)
        .map(|i| store.store_object(&object(i, 300 + i % 700), 1).unwrap())
        .collect();
    assert!(store.bytes_held() > 100 * PAGE_SIZE);
    for handle in &handles {
        store.free(*handle).unwrap();
    }
    assert_eq!(store.bytes_held(), empty);
    let fresh: Vec<_> = (0..10)
        .map(|i| store.store_object(&object(i + 5000, 100), 2).unwrap())
        .collect();
    let mut buf = vec![0u8; PAGE_SIZE];
    for old in handles.iter().take(10) {
        assert_eq!(store.read_object(*old, &mut buf), Err(Error::InvalidHandle));
        assert_eq!(store.free(*old), Err(Error::InvalidHandle));
    }
    for (i, handle) in fresh.iter().enumerate() {
        assert_eq!(store.read_object(*handle, &mut buf), Ok((100, 2)));
        assert_eq!(&buf[..100], &object(i + 5000, 100)[..]);
    }
}
