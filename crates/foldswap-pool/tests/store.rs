//! Object store behaviour: round trips, freed and forged places, lowest-slot
//! allocation, limits, OOM, compaction through the caller's places.
#![cfg(feature = "std")]

use std::collections::HashSet;

use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_pool::{MAX_OBJECT, ObjectStore, Place, PlaceOwners, class_for_len, class_shape};

fn object(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 31 + seed * 7 + i / 13) as u8)
        .collect()
}

/// The test's own records: each object's place beside the bytes stored there.
/// Compaction sees the places through it and rewrites those it moves.
struct Table<'a>(&'a mut [(Place, Vec<u8>)]);

impl PlaceOwners for Table<'_> {
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        for (place, _) in self.0.iter_mut() {
            visit(place);
        }
    }
}

/// Every record reads back its bytes through its (possibly rewritten) place.
fn check<P: foldswap_mem::PageProvider + Clone>(store: &ObjectStore<P>, kept: &[(Place, Vec<u8>)]) {
    let mut buf = vec![0u8; PAGE_SIZE];
    let mut spill = [0u8; MAX_OBJECT];
    for (i, (place, bytes)) in kept.iter().enumerate() {
        assert_eq!(place.len(), bytes.len(), "record {i}");
        assert_eq!(
            store.read_object(*place, &mut buf),
            Ok(bytes.len()),
            "record {i}"
        );
        assert_eq!(&buf[..bytes.len()], &bytes[..], "record {i}");
        assert_eq!(
            store.view_object(*place, &mut spill),
            Ok(&bytes[..]),
            "record {i}"
        );
    }
}

#[test]
fn objects_round_trip_at_every_size() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    let mut kept = Vec::new();
    for len in (0..=PAGE_SIZE).step_by(37).chain([PAGE_SIZE]) {
        let bytes = object(len, len);
        let place = store.store_object(&bytes).unwrap();
        assert_eq!(place.len(), len);
        assert_eq!(place.is_empty(), len == 0);
        kept.push((place, bytes));
    }
    check(&store, &kept);
    assert_eq!(store.len(), kept.len());
    assert_eq!(
        store.stats().object_bytes,
        kept.iter().map(|k| k.1.len()).sum::<usize>()
    );
    for (place, _) in kept {
        store.free(place).unwrap();
    }
    assert!(store.is_empty());
    assert_eq!(store.stats().zspage_pages, 0);
    assert_eq!(store.stats().object_bytes, 0);
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
        kept.push((store.store_object(&bytes).unwrap(), bytes));
    }
    // Every other object freed, and as many new ones stored into the freed slots.
    let (mut views, mut spanning) = (Vec::new(), 0);
    for (i, (place, bytes)) in kept.iter().enumerate() {
        if i % 2 == 0 {
            store.free(*place).unwrap();
            continue;
        }
        match store.object_in_place(*place).unwrap() {
            Some(view) => {
                assert_eq!(view.len(), bytes.len());
                views.push((view, bytes.clone()));
            }
            None => spanning += 1,
        }
    }
    let fresh: Vec<_> = (0..kept.len() / 2)
        .map(|i| {
            let len = 1 + (i * 53) % PAGE_SIZE;
            store.store_object(&object(i + 9000, len)).unwrap()
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

/// Every way in refuses `place` with `InvalidHandle`, and changes nothing.
fn assert_refused<P: foldswap_mem::PageProvider + Clone>(
    store: &mut ObjectStore<P>,
    place: Place,
    what: &str,
) {
    let (len, bytes) = (store.len(), store.stats());
    let mut buf = vec![0u8; PAGE_SIZE];
    let mut spill = [0u8; MAX_OBJECT];
    assert_eq!(
        store.read_object(place, &mut buf),
        Err(Error::InvalidHandle),
        "{what}: read"
    );
    assert_eq!(
        store.view_object(place, &mut spill),
        Err(Error::InvalidHandle),
        "{what}: view"
    );
    assert_eq!(
        store.object_in_place(place).err(),
        Some(Error::InvalidHandle),
        "{what}: in place"
    );
    assert_eq!(
        store.corrupt_object(place, 0, 0xff),
        Err(Error::InvalidHandle),
        "{what}: corrupt"
    );
    assert_eq!(store.free(place), Err(Error::InvalidHandle), "{what}: free");
    assert_eq!(
        (store.len(), store.stats()),
        (len, bytes),
        "{what}: changed the store"
    );
}

#[test]
fn freed_and_forged_places_are_refused() {
    let mut store = ObjectStore::new(StdPageProvider).unwrap();
    let first = store.store_object(b"first").unwrap();
    let second = store.store_object(b"second").unwrap();
    // One class, one zspage: slots 0 and 1.
    let (zspage, slot, len) = first.to_parts();
    assert_eq!((slot, len), (0, 5));
    assert_eq!(second.to_parts(), (zspage, 1, 6));
    assert_eq!(Place::from_parts(zspage, 1, 6), second);
    assert_eq!(core::mem::size_of::<Place>(), 8);

    // A freed place is refused while its slot stays free, also while objects of
    // other classes come and go.
    store.free(first).unwrap();
    assert_refused(&mut store, first, "freed");
    let other_class = store.store_object(&[7u8; 2000]).unwrap();
    assert_ne!(other_class.to_parts().0, zspage);
    assert_refused(&mut store, first, "freed, other class stored");
    let mut buf = [0u8; 16];
    assert_eq!(store.read_object(second, &mut buf), Ok(6));
    assert_eq!(&buf[..6], b"second");

    // Forged places: an unknown zspage, a slot that is not live (free, past the
    // zspage's slots, past the bitmap), a length of another class or past a
    // page.
    let forged = [
        ("unknown zspage", Place::from_parts(zspage + 1000, 1, 6)),
        ("max zspage", Place::from_parts(u32::MAX, 1, 6)),
        ("free slot", Place::from_parts(zspage, 2, 6)),
        (
            "slot past the zspage",
            Place::from_parts(other_class.to_parts().0, 100, 2000),
        ),
        (
            "slot past the bitmap",
            Place::from_parts(zspage, u16::MAX, 6),
        ),
        (
            "length of another class",
            Place::from_parts(zspage, 1, 2000),
        ),
        (
            "length just past its class",
            Place::from_parts(zspage, 1, 17),
        ),
        (
            "length past a page",
            Place::from_parts(zspage, 1, PAGE_SIZE as u16 + 1),
        ),
        ("length u16::MAX", Place::from_parts(zspage, 1, u16::MAX)),
        (
            "the 2000-byte object with a short length",
            Place::from_parts(other_class.to_parts().0, 0, 6),
        ),
    ];
    assert_ne!(class_for_len(17), class_for_len(6));
    for (what, place) in forged {
        assert_refused(&mut store, place, what);
    }
    assert_eq!(store.read_object(second, &mut buf), Ok(6));
    assert_eq!(&buf[..6], b"second");
    assert_eq!(
        store.read_object(second, &mut buf[..3]),
        Err(Error::WrongLength {
            expected: 6,
            actual: 3
        })
    );
    assert_eq!(
        store.store_object(&[0u8; PAGE_SIZE + 1]).unwrap_err(),
        Error::InvalidArgument("object longer than a page")
    );
    assert_eq!(store.len(), 2);

    // The next object of the class takes the freed slot (the lowest free one).
    // That the old place now names it is what the store cannot tell: records
    // must not outlive their objects.
    let third = store.store_object(b"third").unwrap();
    assert_eq!(third.to_parts(), (zspage, 0, 5));

    // Freeing the zspage's last objects frees the zspage: its places are refused.
    store.free(second).unwrap();
    store.free(third).unwrap();
    assert_refused(&mut store, second, "zspage freed");
    assert_refused(&mut store, third, "zspage freed");
    assert_eq!(store.read_object(other_class, &mut [0u8; 2000]), Ok(2000));
}

/// A zspage's live-slot bitmap gives each store the lowest free slot, whatever
/// order the slots were freed in (a free list would give them back last-freed
/// first).
#[test]
fn a_store_takes_the_lowest_free_slot() {
    let mut store = ObjectStore::new(StdPageProvider).unwrap();
    let mut kept: Vec<(Place, Vec<u8>)> = (0..12)
        .map(|i| {
            let bytes = object(i, 300);
            (store.store_object(&bytes).unwrap(), bytes)
        })
        .collect();
    let zspage = kept[0].0.to_parts().0;
    for (i, (place, _)) in kept.iter().enumerate() {
        assert_eq!(place.to_parts(), (zspage, i as u16, 300));
    }
    for slot in [7, 2, 9, 5] {
        store.free(kept[slot].0).unwrap();
    }
    for (i, slot) in [2, 5, 7, 9, 12].into_iter().enumerate() {
        let bytes = object(100 + i, 290 + i);
        let place = store.store_object(&bytes).unwrap();
        assert_eq!(place.to_parts(), (zspage, slot, 290 + i as u16));
        if let Some(old) = kept.get_mut(usize::from(slot)) {
            *old = (place, bytes);
        } else {
            kept.push((place, bytes));
        }
    }
    check(&store, &kept);
}

#[test]
fn limit_gives_pool_full_and_out_of_memory_loses_nothing() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    store.set_limit_bytes(64 * 1024);
    assert_eq!(store.limit_bytes(), 64 * 1024);
    let mut kept = Vec::new();
    let err = loop {
        let bytes = object(kept.len(), 1000 + kept.len() % 500);
        match store.store_object(&bytes) {
            Ok(place) => kept.push((place, bytes)),
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::PoolFull);
    assert!(store.bytes_held() <= 64 * 1024);
    store.set_limit_bytes(usize::MAX);
    provider.set_limit(provider.pages_in_use());
    let mut oom = 0;
    for i in 0..200 {
        match store.store_object(&object(i, 3000)) {
            Ok(place) => kept.push((place, object(i, 3000))),
            Err(e) => {
                assert_eq!(e, Error::OutOfMemory);
                oom += 1;
            }
        }
    }
    assert!(oom > 0);
    check(&store, &kept);
    assert_eq!(store.len(), kept.len());
}

/// At the limit, a store takes a free slot from any partial zspage of its class,
/// not only from the first one (which may need a page the limit refuses).
#[test]
fn at_the_limit_a_free_slot_in_any_partial_zspage_is_used() {
    const LEN: usize = 1500;
    for stored in 2..40 {
        let mut store = ObjectStore::new(StdPageProvider).unwrap();
        let places: Vec<_> = (0..stored)
            .map(|i| store.store_object(&object(i, LEN)).unwrap())
            .collect();
        // The first zspage gets a free slot in pages it holds; no store may grow
        // the pool now.
        store.free(places[0]).unwrap();
        store.set_limit_bytes(store.bytes_held());
        let again = store.store_object(&object(999, LEN));
        assert!(
            again.is_ok(),
            "{stored} objects: {again:?} with a free slot held"
        );
        let again = again.unwrap();
        // The freed slot itself: the only free slot in pages held.
        assert_eq!(again, places[0]);
        let mut kept = vec![(again, object(999, LEN))];
        kept.extend((1..stored).map(|i| (places[i], object(i, LEN))));
        check(&store, &kept);
    }
}

/// The places a compaction rewrote, as (old, new) pairs.
fn moved(before: &[Place], after: &[(Place, Vec<u8>)]) -> Vec<(Place, Place)> {
    before
        .iter()
        .zip(after)
        .filter(|(old, (new, _))| *old != new)
        .map(|(old, (new, _))| (*old, *new))
        .collect()
}

#[test]
fn compaction_frees_sparse_zspages_and_rewrites_the_places_it_moves() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    let mut kept: Vec<(Place, Vec<u8>)> = Vec::new();
    for i in 0..3000 {
        let bytes = object(i, 100 + (i * 97) % 2500);
        kept.push((store.store_object(&bytes).unwrap(), bytes));
    }
    // Free two of every three objects: zspages become sparse.
    let mut survivors = Vec::new();
    for (i, (place, bytes)) in kept.into_iter().enumerate() {
        if i % 3 == 0 {
            survivors.push((place, bytes));
        } else {
            store.free(place).unwrap();
        }
    }
    let before = store.stats();
    let old: Vec<Place> = survivors.iter().map(|s| s.0).collect();
    let result = store.compact(&mut Table(&mut survivors));
    let after = store.stats();
    assert!(result.zspages_freed > 0, "{result:?}");
    assert!(after.zspage_pages < before.zspage_pages);
    assert_eq!(
        before.zspage_pages - after.zspage_pages,
        result.pages_freed,
        "{result:?}"
    );
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, after.bytes_held);
    assert_eq!(after.objects, survivors.len());
    assert_eq!(after.object_bytes, before.object_bytes);
    // The moved objects' places were rewritten (an object may move twice: out
    // of a sparse zspage, then down within its new one), and every object reads
    // its bytes at its place, moved or not.
    let moves = moved(&old, &survivors);
    assert!(
        !moves.is_empty() && moves.len() <= result.objects_moved,
        "{} places rewritten, {result:?}",
        moves.len()
    );
    check(&store, &survivors);
    let places: HashSet<Place> = survivors.iter().map(|s| s.0).collect();
    assert_eq!(places.len(), survivors.len(), "two objects at one place");
    // An object moved is gone from its old place: the zspage it left was freed,
    // or the slot it left is free (compaction only moves objects into slots
    // below the ones it empties).
    let mut buf = vec![0u8; PAGE_SIZE];
    for (old, new) in &moves {
        assert_eq!(old.len(), new.len());
        assert_eq!(store.read_object(*old, &mut buf), Err(Error::InvalidHandle));
    }
    // A second compaction frees no more zspages.
    let old: Vec<Place> = survivors.iter().map(|s| s.0).collect();
    let again = store.compact(&mut Table(&mut survivors));
    assert_eq!(again.zspages_freed, 0, "{again:?}");
    assert!(moved(&old, &survivors).len() <= again.objects_moved);
    check(&store, &survivors);
    for (place, _) in survivors {
        store.free(place).unwrap();
    }
    assert_eq!(store.stats().zspage_pages, 0);
    drop(store);
    assert_eq!(provider.pages_in_use(), 0);
}

/// An owner that shows only some places: compaction moves only those objects;
/// the ones not shown stay readable at their old places (their zspages, even
/// when chosen to be emptied, stay), and a later compaction with every place
/// shown finishes the job.
#[test]
fn compaction_through_an_owner_showing_some_places_keeps_the_rest_in_place() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    let places: Vec<Place> = (0..3000)
        .map(|i| {
            store
                .store_object(&object(i, 100 + (i * 97) % 2500))
                .unwrap()
        })
        .collect();
    // Two of every three freed: zspages become sparse.
    let mut all: Vec<(Place, Vec<u8>)> = Vec::new();
    for (i, place) in places.into_iter().enumerate() {
        if i % 3 == 0 {
            all.push((place, object(i, place.len())));
        } else {
            store.free(place).unwrap();
        }
    }
    // Every other survivor shown; the others hidden. Places of no live object
    // shown too: compaction must skip them and leave them as they are.
    let (mut shown, mut hidden) = (Vec::new(), Vec::new());
    for (i, record) in all.into_iter().enumerate() {
        if i % 2 == 0 {
            shown.push(record);
        } else {
            hidden.push(record);
        }
    }
    let (zspage, _, _) = shown[0].0.to_parts();
    let bogus = [
        Place::from_parts(u32::MAX, 0, 10),
        Place::from_parts(zspage, u16::MAX, 10),
    ];
    shown.extend(bogus.iter().map(|&p| (p, Vec::new())));
    let before = store.stats();
    let old: Vec<Place> = shown.iter().map(|s| s.0).collect();
    let result = store.compact(&mut Table(&mut shown));
    let moves = moved(&old, &shown);
    assert!(!moves.is_empty(), "{result:?}");
    assert!(moves.len() <= result.objects_moved);
    let after = store.stats();
    assert_eq!(after.objects, before.objects);
    assert_eq!(after.object_bytes, before.object_bytes);
    assert_eq!(before.zspage_pages - after.zspage_pages, result.pages_freed);
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, after.bytes_held);
    let bogus_after: Vec<Place> = shown
        .split_off(shown.len() - bogus.len())
        .into_iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(bogus_after, bogus);
    // The case this test is for: some hidden object shared a zspage with a
    // shown one that moved out of it.
    let left: HashSet<u32> = moves
        .iter()
        .map(|(old, new)| (old.to_parts().0, new.to_parts().0))
        .filter(|(from, to)| from != to)
        .map(|(from, _)| from)
        .collect();
    assert!(
        hidden.iter().any(|(p, _)| left.contains(&p.to_parts().0)),
        "no hidden object in a zspage compaction moved objects out of"
    );
    check(&store, &shown);
    check(&store, &hidden);
    // New objects go on working beside the ones left in place.
    let mut fresh: Vec<(Place, Vec<u8>)> = (0..200)
        .map(|i| {
            let bytes = object(i + 7000, 100 + (i * 89) % 2500);
            (store.store_object(&bytes).unwrap(), bytes)
        })
        .collect();
    check(&store, &hidden);
    // Everything shown now: the rest gets compacted.
    let mut all = shown;
    all.append(&mut hidden);
    all.append(&mut fresh);
    let before = store.stats();
    let second = store.compact(&mut Table(&mut all));
    assert!(second.zspages_freed > 0, "{second:?}");
    assert_eq!(
        before.zspage_pages - store.stats().zspage_pages,
        second.pages_freed
    );
    check(&store, &all);
    let places: HashSet<Place> = all.iter().map(|s| s.0).collect();
    assert_eq!(places.len(), all.len(), "two objects at one place");
    for (place, _) in all {
        store.free(place).unwrap();
    }
    assert_eq!(store.stats().zspage_pages, 0);
    drop(store);
    assert_eq!(provider.pages_in_use(), 0);
}

/// A zspage keeps the pages its slots reached; once most objects in it are
/// freed (as the scanner's re-encodes free them), compaction packs the rest into
/// its lowest free slots and gives the pages past them back, and the zspage
/// takes pages again as new objects reach them.
#[test]
fn compaction_gives_back_pages_past_the_last_live_object() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    // 1030-byte objects: 1040-byte slots, 55 to a zspage of 14 pages, after a
    // header of 13 page addresses (104 bytes).
    const LEN: usize = 1030;
    let shape = class_shape(class_for_len(LEN).unwrap()).unwrap();
    assert_eq!(
        (
            shape.slot_size,
            shape.pages_per_zspage,
            shape.objects_per_zspage,
            shape.header_bytes()
        ),
        (1040, 14, 55, 104)
    );
    let mut kept: Vec<(Place, Vec<u8>)> = (0..50)
        .map(|i| {
            let bytes = object(i, LEN);
            (store.store_object(&bytes).unwrap(), bytes)
        })
        .collect();
    // 104 + 50 * 1040 bytes.
    assert_eq!(store.stats().zspage_pages, 13);
    let zspage = kept[0].0.to_parts().0;
    // Keep 7 of the objects in slots 0..10; free the rest.
    let mut slot = 0;
    kept.retain(|(place, _)| {
        slot += 1;
        let keep = slot <= 10 && ![2, 6, 7].contains(&slot);
        if !keep {
            store.free(*place).unwrap();
        }
        keep
    });
    let slots = |kept: &[(Place, Vec<u8>)]| -> Vec<u16> {
        kept.iter().map(|(p, _)| p.to_parts().1).collect()
    };
    assert_eq!(slots(&kept), [0, 2, 3, 4, 7, 8, 9]);
    let old: Vec<Place> = kept.iter().map(|k| k.0).collect();
    let result = store.compact(&mut Table(&mut kept));
    // The 7 objects left sit in slots 0..10 (3 pages); packed they need 2 pages
    // (slots 0..7, past the header): the three in slots 7, 8 and 9 move down
    // into the lowest free slots, 1, 5 and 6, and 11 pages go back.
    assert_eq!(
        (
            result.objects_moved,
            result.tails_trimmed,
            result.pages_freed
        ),
        (3, 1, 11),
        "{result:?}"
    );
    assert_eq!(slots(&kept), [0, 2, 3, 4, 1, 5, 6]);
    assert!(kept.iter().all(|(p, _)| p.to_parts().0 == zspage));
    // The slots they left are free: their old places are refused.
    let mut buf = vec![0u8; PAGE_SIZE];
    for old in &old[4..] {
        assert_eq!(store.read_object(*old, &mut buf), Err(Error::InvalidHandle));
    }
    let after = store.stats();
    assert_eq!(after.zspage_pages, 2);
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, after.bytes_held);
    check(&store, &kept);
    assert_eq!(
        store.compact(&mut Table(&mut kept)),
        Default::default(),
        "nothing more to do"
    );
    // New objects take the slots past the packed ones, with pages again.
    for i in 100..140 {
        let bytes = object(i, LEN);
        kept.push((store.store_object(&bytes).unwrap(), bytes));
    }
    assert_eq!(kept[7].0.to_parts(), (zspage, 7, LEN as u16));
    assert_eq!(kept[8].0.to_parts(), (zspage, 8, LEN as u16));
    // 47 objects in slots 0..47: 104 + 47 * 1040 bytes.
    assert_eq!(store.stats().zspage_pages, 12);
    check(&store, &kept);
    for (place, _) in kept {
        store.free(place).unwrap();
    }
    assert_eq!(store.stats().zspage_pages, 0);
    drop(store);
    assert_eq!(provider.pages_in_use(), 0);
}

/// Small-slot classes are not packed; their tails are trimmed down to the page
/// holding the highest live slot, which the live-slot bitmap tells.
#[test]
fn trimming_keeps_the_pages_up_to_the_highest_live_slot() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    const LEN: usize = 90;
    let shape = class_shape(class_for_len(LEN).unwrap()).unwrap();
    let (per, pages, size) = (
        usize::from(shape.objects_per_zspage),
        usize::from(shape.pages_per_zspage),
        usize::from(shape.slot_size),
    );
    // The premise: a multi-page zspage of a class too small to be packed.
    assert!(pages >= 2 && per > 128, "{shape:?}");
    let mut kept: Vec<(Place, Vec<u8>)> = (0..per)
        .map(|i| {
            let bytes = object(i, LEN);
            (store.store_object(&bytes).unwrap(), bytes)
        })
        .collect();
    assert_eq!(store.stats().zspage_pages, pages);
    // Keep the first 10 slots and one slot in the last page.
    let high = per - 1;
    let mut slot = 0;
    kept.retain(|(place, _)| {
        slot += 1;
        let keep = slot <= 10 || slot - 1 == high;
        if !keep {
            store.free(*place).unwrap();
        }
        keep
    });
    let old: Vec<Place> = kept.iter().map(|k| k.0).collect();
    assert_eq!(
        store.compact(&mut Table(&mut kept)),
        Default::default(),
        "a live object in the last page keeps every page"
    );
    assert_eq!(store.stats().zspage_pages, pages);
    // The highest one goes: every page past the tenth slot's goes back.
    let (high_place, _) = kept.pop().unwrap();
    store.free(high_place).unwrap();
    let keep = (shape.header_bytes() + 10 * size).div_ceil(PAGE_SIZE);
    let result = store.compact(&mut Table(&mut kept));
    assert_eq!(
        (
            result.objects_moved,
            result.tails_trimmed,
            result.pages_freed
        ),
        (0, 1, pages - keep),
        "{result:?}"
    );
    assert!(moved(&old, &kept).is_empty());
    assert_eq!(store.stats().zspage_pages, keep);
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, store.bytes_held());
    check(&store, &kept);
    // Storing again fills slots 10.. and takes pages back as slots reach them.
    for i in 0..per - 10 {
        let bytes = object(i + 500, LEN);
        let place = store.store_object(&bytes).unwrap();
        assert_eq!(place.to_parts().1, (10 + i) as u16);
        kept.push((place, bytes));
    }
    assert_eq!(store.stats().zspage_pages, pages);
    check(&store, &kept);
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
    let class = class_for_len(len).unwrap();
    let shape = class_shape(class).unwrap();
    let per = shape.objects_per_zspage as usize;
    let count = 2 * per + 1;
    let places: Vec<Place> = (0..count)
        .map(|i| store.store_object(&object(i, len)).unwrap())
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
    for place in places {
        store.free(place).unwrap();
    }
    let empty = store.class_occupancy(class).unwrap();
    assert_eq!((empty.objects, empty.zspages), (0, 0));
    assert_eq!(store.stats().fragmentation_permille, 0);
    assert!(store.class_occupancy(foldswap_pool::CLASS_COUNT).is_none());
}

/// The store's metadata is its class page and the zspage descriptors: it grows
/// with zspages, not with objects.
#[test]
fn metadata_is_the_class_page_and_zspage_descriptors() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    let empty = store.stats();
    assert_eq!((empty.metadata_pages, empty.bytes_held), (1, PAGE_SIZE));
    assert_eq!(provider.pages_in_use(), 1);
    let shape = class_shape(class_for_len(16).unwrap()).unwrap();
    let per = usize::from(shape.objects_per_zspage);
    let first = store.store_object(&[1u8; 16]).unwrap();
    let one = store.stats().metadata_pages;
    assert!(one > 1);
    // Ten zspages full of 16-byte objects (thousands of objects) need no more.
    let mut places = vec![first];
    places.extend((1..10 * per).map(|i| store.store_object(&[i as u8; 16]).unwrap()));
    let full = store.stats();
    assert_eq!((full.objects, full.zspages), (10 * per, 10));
    assert_eq!(full.metadata_pages, one, "{full:?}");
    assert_eq!(
        full.bytes_held,
        (full.zspage_pages + full.metadata_pages) * PAGE_SIZE
    );
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, full.bytes_held);
    for place in places {
        store.free(place).unwrap();
    }
    assert_eq!(store.stats(), empty);
    assert_eq!(provider.pages_in_use(), 1);
}

/// A zspage's descriptor names its first page only; the others' addresses are
/// in that page's header, counted as metadata (`header_bytes`). So a hundred
/// zspages of 14 pages take two pages of descriptors (with all sixteen
/// addresses in the descriptor, 176 bytes each, they took five), and 104 header
/// bytes each.
#[test]
fn a_zspage_keeps_its_page_addresses_in_its_first_page() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let mut store = ObjectStore::new(&provider).unwrap();
    const LEN: usize = 1030;
    let shape = class_shape(class_for_len(LEN).unwrap()).unwrap();
    assert_eq!((shape.pages_per_zspage, shape.header_bytes()), (14, 104));
    let per = usize::from(shape.objects_per_zspage);
    let kept: Vec<(Place, Vec<u8>)> = (0..100 * per)
        .map(|i| {
            let bytes = object(i, LEN);
            (store.store_object(&bytes).unwrap(), bytes)
        })
        .collect();
    let stats = store.stats();
    assert_eq!((stats.zspages, stats.zspage_pages), (100, 1400));
    // The class page, the descriptor slab's directory and two pages of
    // descriptors.
    assert_eq!(stats.metadata_pages, 4, "{stats:?}");
    assert_eq!(stats.header_bytes, 100 * 104);
    assert_eq!(provider.pages_in_use() * PAGE_SIZE, stats.bytes_held);
    check(&store, &kept);
    for (place, _) in &kept {
        store.free(*place).unwrap();
    }
    assert_eq!(store.stats().header_bytes, 0);
    assert_eq!(provider.pages_in_use(), 1);
}

/// Once the last object is freed the store gives its zspage descriptors back,
/// keeping only its class page; places issued before are refused, also once new
/// zspages (of other classes) take their zspage keys again.
#[test]
fn an_emptied_store_gives_its_metadata_back_and_refuses_old_places() {
    let mut store = ObjectStore::new(StdPageProvider).unwrap();
    let empty = store.bytes_held();
    let places: Vec<_> = (0..3000)
        .map(|i| store.store_object(&object(i, 300 + i % 700)).unwrap())
        .collect();
    assert!(store.bytes_held() > 100 * PAGE_SIZE);
    for place in &places {
        store.free(*place).unwrap();
    }
    assert_eq!(store.bytes_held(), empty);
    assert_eq!(store.stats().metadata_pages, 1);
    for old in places.iter().step_by(97) {
        assert_refused(&mut store, *old, "store emptied");
    }
    let fresh: Vec<_> = (0..10)
        .map(|i| store.store_object(&object(i + 5000, 100)).unwrap())
        .collect();
    // The new zspage reuses a key some old places name; their lengths are of
    // other classes, so they stay refused.
    let key = fresh[0].to_parts().0;
    let same_key: Vec<_> = places.iter().filter(|p| p.to_parts().0 == key).collect();
    assert!(!same_key.is_empty(), "zspage key {key} not reused");
    for old in same_key {
        assert_ne!(class_for_len(old.len()), class_for_len(100));
        assert_refused(&mut store, *old, "zspage key reused by another class");
    }
    let mut buf = vec![0u8; PAGE_SIZE];
    for (i, place) in fresh.iter().enumerate() {
        assert_eq!(store.read_object(*place, &mut buf), Ok(100));
        assert_eq!(&buf[..100], &object(i + 5000, 100)[..]);
    }
}

/// A forged place naming a live slot with a longer length of the same class frees
/// that object (the store cannot tell), and the byte count stays sane: no
/// overflow, no wrap.
#[test]
fn freeing_through_a_longer_place_of_the_same_class_keeps_the_counts_sane() {
    let mut store = ObjectStore::new(StdPageProvider).unwrap();
    let place = store.store_object(&[1u8; 10]).unwrap();
    let (zspage, slot, _) = place.to_parts();
    let longer = Place::from_parts(zspage, slot, 16);
    assert_eq!(store.free(longer), Ok(()));
    assert_eq!(store.len(), 0);
    assert_eq!(store.stats().object_bytes, 0);
}
