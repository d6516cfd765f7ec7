//! Property tests: random operation sequences against a plain model table.
//!
//! Every load equals its store; a freed or forged place is refused unless it
//! names a live object's slot with a length of that object's class (then it reads
//! that object: what the store cannot tell); compaction rewrites the places it is
//! shown, keeps the others where they are, and every object reads the same
//! after it; running out of memory (CountingProvider) or hitting the byte limit
//! loses and changes nothing already stored.
#![cfg(feature = "std")]

use std::collections::{HashMap, HashSet};

use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_pool::{
    CodecKind, CompressScratch, DecompressScratch, MAX_OBJECT, NoClock, ObjectStore, PagePolicy,
    PagePool, Place, PlaceOwners, PoorCompression, StoredPage, TAG_DEFLATE, TAG_LZ4, class_for_len,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Store {
        len: usize,
        seed: u8,
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
    /// Use a place freed before (or left by an object compaction moved).
    FreeStale(usize),
    /// A place near a live one: its zspage and slot moved by a little, its
    /// length the same or another.
    Forge {
        i: usize,
        zspage: i8,
        slot: i8,
        len: Option<u16>,
    },
    Read(usize),
    Compact,
    /// Compact through an owner that shows all but every `step`-th place.
    CompactSome {
        step: usize,
    },
    ProviderLimit(usize),
    ByteLimit(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let small = prop_oneof![6 => Just(0i8), 1 => -3i8..=3];
    prop_oneof![
        6 => (0..=PAGE_SIZE, any::<u8>()).prop_map(|(len, seed)| Op::Store { len, seed }),
        1 => (0..=PAGE_SIZE / 8, any::<u8>()).prop_map(|(len, seed)| Op::Store { len, seed }),
        // Few lengths: many objects per class, so compaction has work to do.
        8 => (prop::sample::select(vec![40usize, 700, 1500, 2100]), any::<u8>())
            .prop_map(|(len, seed)| Op::Store { len, seed }),
        8 => any::<usize>().prop_map(Op::Free),
        2 => (prop::sample::select(vec![40usize, 700, 1500, 2100]), 1usize..150, any::<u8>())
            .prop_map(|(len, count, seed)| Op::Burst { len, count, seed }),
        1 => (2usize..5).prop_map(|step| Op::Thin { step }),
        2 => any::<usize>().prop_map(Op::FreeStale),
        2 => (any::<usize>(), small, -3i8..=3, prop::option::of(0u16..=PAGE_SIZE as u16 + 100))
            .prop_map(|(i, zspage, slot, len)| Op::Forge { i, zspage, slot, len }),
        2 => any::<usize>().prop_map(Op::Read),
        1 => Just(Op::Compact),
        1 => (2usize..4).prop_map(|step| Op::CompactSome { step }),
        1 => (0usize..200).prop_map(Op::ProviderLimit),
        1 => (0usize..400).prop_map(|pages| Op::ByteLimit(pages * PAGE_SIZE)),
    ]
}

fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
        .collect()
}

type Store<'p> = ObjectStore<&'p CountingProvider<StdPageProvider>>;

/// The model: each live object's place and bytes.
type Model = Vec<(Place, Vec<u8>)>;

/// The model's places, shown to compaction; with `hide`, all but every
/// `hide`-th.
struct Owner<'a> {
    model: &'a mut Model,
    hide: Option<usize>,
}

impl PlaceOwners for Owner<'_> {
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        for (i, (place, _)) in self.model.iter_mut().enumerate() {
            if self.hide.is_none_or(|step| i % step != 0) {
                visit(place);
            }
        }
    }
}

fn check_all(store: &Store<'_>, model: &[(Place, Vec<u8>)]) {
    let mut buf = vec![0u8; PAGE_SIZE];
    for (place, bytes) in model {
        assert_eq!(place.len(), bytes.len());
        assert_eq!(store.read_object(*place, &mut buf), Ok(bytes.len()));
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
    }
    let slots: HashSet<(u32, u16)> = model
        .iter()
        .map(|(p, _)| {
            let (zspage, slot, _) = p.to_parts();
            (zspage, slot)
        })
        .collect();
    assert_eq!(slots.len(), model.len(), "two live objects in one slot");
}

/// What the store must make of `place`, which the model may not have issued:
/// the live object in its slot, if that object's class is its length's;
/// nothing otherwise.
fn named(model: &Model, place: Place) -> Option<&[u8]> {
    let (zspage, slot, len) = place.to_parts();
    let class = class_for_len(usize::from(len))?;
    model.iter().find_map(|(live, bytes)| {
        let (z, s, l) = live.to_parts();
        (z == zspage && s == slot && class_for_len(usize::from(l)) == Some(class))
            .then_some(&bytes[..])
    })
}

/// Check a place against [`named`]: refused by every way in (and, if `free`,
/// by `free`, changing nothing), or reading the object it names.
fn check_place(store: &mut Store<'_>, model: &Model, place: Place, free: bool) {
    let mut buf = vec![0u8; PAGE_SIZE];
    let mut spill = [0u8; MAX_OBJECT];
    match named(model, place) {
        None => {
            assert_eq!(
                store.read_object(place, &mut buf),
                Err(Error::InvalidHandle),
                "{place:?}"
            );
            assert_eq!(
                store.view_object(place, &mut spill),
                Err(Error::InvalidHandle)
            );
            assert_eq!(
                store.object_in_place(place).err(),
                Some(Error::InvalidHandle)
            );
            if free {
                let before = store.stats();
                assert_eq!(store.free(place), Err(Error::InvalidHandle), "{place:?}");
                assert_eq!(store.stats(), before);
            }
        }
        Some(bytes) => {
            // Its length is the place's: past the object's own end, the slot's
            // bytes are whatever they are.
            let len = place.len();
            let same = len.min(bytes.len());
            assert_eq!(store.read_object(place, &mut buf), Ok(len), "{place:?}");
            assert_eq!(&buf[..same], &bytes[..same]);
            let view = store.view_object(place, &mut spill).unwrap();
            assert_eq!((view.len(), &view[..same]), (len, &bytes[..same]));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..300)) {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut store = ObjectStore::new(&provider).unwrap();
        let mut model: Model = Vec::new();
        let mut stale: Vec<Place> = Vec::new();
        let mut buf = vec![0u8; PAGE_SIZE];
        for op in ops {
            match op {
                Op::Store { len, seed } => {
                    let bytes = bytes_of(len, seed);
                    let held = store.bytes_held();
                    match store.store_object(&bytes) {
                        Ok(place) => {
                            prop_assert_eq!(place.len(), len);
                            model.push((place, bytes));
                        }
                        Err(Error::OutOfMemory) | Err(Error::PoolFull) => {
                            // A failed store keeps no zspage page; at most the
                            // descriptor slab keeps what it got (dir + data
                            // page), for the next store to use.
                            prop_assert!(store.bytes_held() <= held + 2 * PAGE_SIZE);
                            check_all(&store, &model);
                        }
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                }
                Op::Burst { len, count, seed } => {
                    for i in 0..count {
                        let bytes = bytes_of(len, seed.wrapping_add(i as u8));
                        match store.store_object(&bytes) {
                            Ok(place) => model.push((place, bytes)),
                            Err(Error::OutOfMemory) | Err(Error::PoolFull) => break,
                            Err(e) => prop_assert!(false, "unexpected {e:?}"),
                        }
                    }
                }
                Op::Thin { step } => {
                    let mut index = 0;
                    model.retain(|(place, _)| {
                        index += 1;
                        if index % step == 0 {
                            assert_eq!(store.free(*place), Ok(()));
                            stale.push(*place);
                            false
                        } else {
                            true
                        }
                    });
                }
                Op::Free(i) if !model.is_empty() => {
                    let (place, _) = model.swap_remove(i % model.len());
                    prop_assert_eq!(store.free(place), Ok(()));
                    // Refused at once: its slot is free (or its zspage gone).
                    prop_assert_eq!(store.free(place), Err(Error::InvalidHandle));
                    prop_assert_eq!(store.read_object(place, &mut buf), Err(Error::InvalidHandle));
                    stale.push(place);
                }
                Op::FreeStale(i) if !stale.is_empty() => {
                    let place = stale[i % stale.len()];
                    check_place(&mut store, &model, place, true);
                }
                Op::Forge { i, zspage, slot, len } => {
                    let base = model
                        .get(i.checked_rem(model.len()).unwrap_or(0))
                        .map_or(Place::from_parts(0, 0, 0), |m| m.0);
                    let (z, s, l) = base.to_parts();
                    let forged = Place::from_parts(
                        z.wrapping_add_signed(zspage.into()),
                        s.wrapping_add_signed(slot.into()),
                        len.unwrap_or(l),
                    );
                    check_place(&mut store, &model, forged, true);
                }
                Op::Read(i) if !model.is_empty() => {
                    let (place, bytes) = &model[i % model.len()];
                    prop_assert_eq!(store.read_object(*place, &mut buf), Ok(bytes.len()));
                    prop_assert_eq!(&buf[..bytes.len()], &bytes[..]);
                }
                Op::Compact | Op::CompactSome { .. } => {
                    let hide = match op {
                        Op::CompactSome { step } => Some(step),
                        _ => None,
                    };
                    let before = store.bytes_held();
                    let (objects, object_bytes) = (store.len(), store.stats().object_bytes);
                    let old: Vec<Place> = model.iter().map(|m| m.0).collect();
                    let result = store.compact(&mut Owner { model: &mut model, hide });
                    prop_assert!(store.bytes_held() <= before);
                    prop_assert_eq!(before - store.bytes_held(), result.pages_freed * PAGE_SIZE);
                    prop_assert_eq!((store.len(), store.stats().object_bytes), (objects, object_bytes));
                    let mut rewritten = 0;
                    for (i, (old, (new, _))) in old.iter().zip(&model).enumerate() {
                        if old != new {
                            prop_assert!(hide.is_none_or(|step| i % step != 0), "a hidden place was rewritten");
                            prop_assert_eq!(old.len(), new.len());
                            rewritten += 1;
                            stale.push(*old);
                        }
                    }
                    prop_assert!(rewritten <= result.objects_moved);
                    check_all(&store, &model);
                }
                Op::ProviderLimit(extra) => provider.set_limit(provider.pages_in_use() + extra),
                Op::ByteLimit(limit) => store.set_limit_bytes(if limit == 0 { usize::MAX } else { limit }),
                _ => {}
            }
            prop_assert_eq!(store.len(), model.len());
            // The store accounts for every page it holds. (foldswap-mem's Slab does
            // not count a directory page whose first data page could not be had,
            // hence up to one uncounted page.)
            let in_use = provider.pages_in_use() * PAGE_SIZE;
            prop_assert!(in_use >= store.bytes_held() && in_use <= store.bytes_held() + PAGE_SIZE);
            prop_assert_eq!(store.stats().object_bytes, model.iter().map(|m| m.1.len()).sum::<usize>());
        }
        check_all(&store, &model);
        provider.set_limit(usize::MAX);
        store.compact(&mut Owner { model: &mut model, hide: None });
        check_all(&store, &model);
        for place in stale.iter().step_by(7) {
            check_place(&mut store, &model, *place, false);
        }
        for (place, _) in model.drain(..) {
            prop_assert_eq!(store.free(place), Ok(()));
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
        let old: Vec<(usize, StoredPage)> = model.iter().map(|(k, v)| (*k, v.0)).collect();
        pool.compact(&mut Pages(&mut model));
        for (key, stored) in old {
            match (stored, model[&key].0) {
                (StoredPage::Object(a, tag_a), StoredPage::Object(b, tag_b)) => {
                    prop_assert_eq!((a.len(), tag_a), (b.len(), tag_b));
                }
                (a, b) => prop_assert_eq!(a, b),
            }
        }
        let mut out = vec![0u8; PAGE_SIZE];
        for (stored, page) in model.values() {
            prop_assert_eq!(pool.load_page(*stored, &mut out, &mut dscratch, &NoClock), Ok(()));
            prop_assert_eq!(&out, page);
        }
        prop_assert_eq!(pool.stats().stored_pages as usize, model.len());
    }
}

/// The pool's pages in a host's table (here a map), shown to compaction.
struct Pages<'a>(&'a mut HashMap<usize, (StoredPage, Vec<u8>)>);

impl PlaceOwners for Pages<'_> {
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        for (stored, _) in self.0.values_mut() {
            if let StoredPage::Object(place, _) = stored {
                visit(place);
            }
        }
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
    let (StoredPage::Object(a, TAG_LZ4), StoredPage::Object(b, TAG_DEFLATE)) = (lz4, deflate)
    else {
        panic!("not objects with their codecs' tags: {lz4:?} {deflate:?}")
    };
    assert!(b.len() < a.len());
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
