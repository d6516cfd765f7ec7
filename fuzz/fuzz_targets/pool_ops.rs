//! Random operation sequences on the compressed pool (pages and raw objects in one
//! store, compaction, byte limit, memory running out) checked against a model:
//! every load equals its store, freed and forged places are refused unless they
//! name a live object's slot (with a length of its class), compaction rewrites
//! the places it is shown and leaves the others readable where they are, nothing
//! is lost.
#![no_main]

use arbitrary::Arbitrary;
use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_pool::{
    CodecKind, CompressScratch, DecompressScratch, MAX_OBJECT, NoClock, PagePolicy, PagePool,
    Place, PlaceOwners, PoorCompression, StoredPage, TAG_LZ4, class_for_len,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A page built from a short pattern, `noise` random-ish bytes mixed in.
    StorePage {
        pattern: Vec<u8>,
        noise: u16,
        deflate: bool,
    },
    /// A raw object of `len % 4160` bytes, or with `len`'s top bit a burst of
    /// them of one of a few lengths (zspages of one class for compaction to
    /// empty). `tag` is the caller's, kept beside its place (in a burst, `tag +
    /// i`); an odd tag also keeps the object out of what compaction is shown.
    StoreObject {
        len: u16,
        seed: u8,
        tag: u8,
    },
    LoadPage(u16),
    ReadObject(u16),
    FreePage(u16),
    /// Free one object, or with the top bit every `2 + i % 4`-th (leaving
    /// zspages sparse).
    FreeObject(u16),
    /// A place the model did not issue (see [`forge`]).
    StaleHandle(u64),
    Compact,
    ProviderLimit(u8),
    ByteLimit(u16),
    Policy {
        threshold: u16,
        keep_raw: bool,
    },
}

fn page_from(pattern: &[u8], noise: u16) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    if !pattern.is_empty() {
        for (dst, src) in page.iter_mut().zip(pattern.iter().cycle()) {
            *dst = *src;
        }
    }
    let mut x = u64::from(noise) | 1;
    for i in 0..usize::from(noise) % PAGE_SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        page[(x as usize) % PAGE_SIZE] ^= i as u8;
    }
    page
}

/// The host's tables: stored pages, and raw objects with their tags.
struct Model {
    pages: Vec<(StoredPage, Vec<u8>)>,
    objects: Vec<(Place, Vec<u8>, u8)>,
    /// Places of objects freed or moved away, for [`forge`].
    stale: Vec<Place>,
}

impl Model {
    /// Every live object: its place and bytes (a page's compressed bytes are
    /// not kept, so pages give `None`).
    fn live(&self) -> impl Iterator<Item = (Place, Option<&[u8]>)> {
        let pages = self.pages.iter().filter_map(|(stored, _)| match stored {
            StoredPage::Object(place, _) => Some((*place, None)),
            StoredPage::SameFilled(_) => None,
        });
        let objects = self.objects.iter().map(|(p, b, _)| (*p, Some(&b[..])));
        pages.chain(objects)
    }

    /// What the store must make of `place`: the live object in its slot, if
    /// that object's class is its length's (`Some(None)` for a page's object);
    /// nothing otherwise.
    fn named(&self, place: Place) -> Option<Option<&[u8]>> {
        let (zspage, slot, len) = place.to_parts();
        let class = class_for_len(usize::from(len))?;
        self.live().find_map(|(live, bytes)| {
            let (z, s, l) = live.to_parts();
            (z == zspage && s == slot && class_for_len(usize::from(l)) == Some(class))
                .then_some(bytes)
        })
    }
}

/// The places compaction is shown: every page's, and the objects' with even
/// tags.
struct Shown<'a>(&'a mut Model);

impl PlaceOwners for Shown<'_> {
    fn for_each_place(&mut self, visit: &mut dyn FnMut(&mut Place)) {
        for (stored, _) in &mut self.0.pages {
            if let StoredPage::Object(place, _) = stored {
                visit(place);
            }
        }
        for (place, _, tag) in &mut self.0.objects {
            if *tag % 2 == 0 {
                visit(place);
            }
        }
    }
}

/// A place from `raw`'s bits. Top two bits 0 or 1: the rest are the place's
/// parts (zspage: 30 bits, slot, length); 2: near a live object's place (its
/// zspage and slot moved by a little, its length or the low bits'); 3: a
/// stale place.
fn forge(raw: u64, model: &Model) -> Place {
    let pick = ((raw >> 32) & 0x3fff_ffff) as usize;
    match raw >> 62 {
        2 => {
            let live: Vec<Place> = model.live().map(|(p, _)| p).collect();
            let Some(base) = live.get(pick % live.len().max(1)) else {
                return Place::from_parts(0, 0, raw as u16);
            };
            let (z, s, l) = base.to_parts();
            let dz = i32::from((raw >> 24) as u8 as i8 >> 5);
            let ds = i16::from((raw >> 16) as u8 as i8 >> 4);
            let len = if raw & 0x8000 != 0 {
                l
            } else {
                (raw & 0x1fff) as u16
            };
            Place::from_parts(z.wrapping_add_signed(dz), s.wrapping_add_signed(ds), len)
        }
        3 if !model.stale.is_empty() => model.stale[pick % model.stale.len()],
        _ => Place::from_parts(pick as u32, (raw >> 16) as u16, raw as u16),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let provider = CountingProvider::new(StdPageProvider, 4096);
    let Ok(mut pool) = PagePool::new(&provider, PagePolicy::default()) else {
        return;
    };
    let mut scratch = CompressScratch::boxed();
    let mut dscratch = Box::new(DecompressScratch::new());
    let mut model = Model {
        pages: Vec::new(),
        objects: Vec::new(),
        stale: Vec::new(),
    };
    let mut out = vec![0u8; PAGE_SIZE];
    let mut spill = [0u8; MAX_OBJECT];
    for op in ops.into_iter().take(512) {
        match op {
            Op::StorePage {
                pattern,
                noise,
                deflate,
            } => {
                let page = page_from(&pattern, noise);
                let mut policy = *pool.policy();
                policy.codec = if deflate {
                    CodecKind::Deflate
                } else {
                    CodecKind::Lz4
                };
                pool.set_policy(policy).expect("valid policy");
                match pool.store_page(&page, &mut scratch, &NoClock) {
                    Ok(stored) => model.pages.push((stored, page)),
                    Err(Error::OutOfMemory | Error::PoolFull | Error::Incompressible) => {}
                    Err(e) => panic!("store_page: {e:?}"),
                }
            }
            Op::StoreObject { len, seed, tag } => {
                let (len, count) = if len & 0x8000 == 0 {
                    (usize::from(len) % (PAGE_SIZE + 64), 1)
                } else {
                    let lens = [40, 700, 1500, 2100, 3000];
                    (
                        lens[usize::from(len & 0xff) % lens.len()],
                        1 + usize::from((len >> 8) & 0x1f),
                    )
                };
                for i in 0..count {
                    let seed = seed.wrapping_add(i as u8);
                    let bytes: Vec<u8> = (0..len)
                        .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
                        .collect();
                    match pool.store_mut().store_object(&bytes) {
                        Ok(place) => {
                            assert_eq!(place.len(), bytes.len());
                            model
                                .objects
                                .push((place, bytes, tag.wrapping_add(i as u8)));
                        }
                        Err(Error::OutOfMemory | Error::PoolFull) => break,
                        Err(Error::InvalidArgument(_)) => {
                            assert!(bytes.len() > PAGE_SIZE);
                            break;
                        }
                        Err(e) => panic!("store_object: {e:?}"),
                    }
                }
            }
            Op::LoadPage(i) if !model.pages.is_empty() => {
                let (stored, page) = &model.pages[usize::from(i) % model.pages.len()];
                pool.load_page(*stored, &mut out, &mut dscratch, &NoClock)
                    .expect("load");
                assert!(&out == page, "loaded page differs");
            }
            Op::ReadObject(i) if !model.objects.is_empty() => {
                let (place, bytes, _) = &model.objects[usize::from(i) % model.objects.len()];
                assert_eq!(pool.store().read_object(*place, &mut out), Ok(bytes.len()));
                assert!(out[..bytes.len()] == bytes[..], "read object differs");
                let view = pool.store().view_object(*place, &mut spill).expect("view");
                assert!(view == &bytes[..], "viewed object differs");
                if let Some(in_place) = pool.store().object_in_place(*place).expect("live") {
                    assert_eq!(in_place.len(), bytes.len());
                    // SAFETY: live, and nothing frees or moves it while compared.
                    assert!(
                        unsafe { in_place.bytes() } == &bytes[..],
                        "object in place differs"
                    );
                }
            }
            Op::FreePage(i) if !model.pages.is_empty() => {
                let (stored, _) = model.pages.swap_remove(usize::from(i) % model.pages.len());
                pool.free_page(stored).expect("free page");
                if let StoredPage::Object(place, _) = stored {
                    // Its slot is free now (or its zspage gone).
                    let stats = pool.stats();
                    assert_eq!(pool.free_page(stored), Err(Error::InvalidHandle));
                    assert_eq!(
                        pool.load_page(stored, &mut out, &mut dscratch, &NoClock),
                        Err(Error::InvalidHandle)
                    );
                    assert_eq!(
                        pool.store().read_object(place, &mut out),
                        Err(Error::InvalidHandle)
                    );
                    assert_eq!(pool.stats(), stats);
                    model.stale.push(place);
                }
            }
            Op::FreeObject(i) if i & 0x8000 != 0 => {
                let step = 2 + usize::from(i) % 4;
                let mut index = 0;
                model.objects.retain(|(place, _, _)| {
                    index += 1;
                    if index % step != 0 {
                        return true;
                    }
                    pool.store_mut().free(*place).expect("free object");
                    model.stale.push(*place);
                    false
                });
            }
            Op::FreeObject(i) if !model.objects.is_empty() => {
                let (place, _, _) = model
                    .objects
                    .swap_remove(usize::from(i) % model.objects.len());
                pool.store_mut().free(place).expect("free object");
                assert_eq!(pool.store_mut().free(place), Err(Error::InvalidHandle));
                assert_eq!(
                    pool.store().view_object(place, &mut spill),
                    Err(Error::InvalidHandle)
                );
                model.stale.push(place);
            }
            Op::StaleHandle(raw) => {
                let place = forge(raw, &model);
                match model.named(place) {
                    None => {
                        let stats = pool.stats();
                        assert_eq!(
                            pool.store().read_object(place, &mut out),
                            Err(Error::InvalidHandle)
                        );
                        assert_eq!(
                            pool.store().view_object(place, &mut spill),
                            Err(Error::InvalidHandle)
                        );
                        assert_eq!(
                            pool.store().object_in_place(place).err(),
                            Some(Error::InvalidHandle)
                        );
                        assert_eq!(
                            pool.free_page(StoredPage::Object(place, TAG_LZ4)),
                            Err(Error::InvalidHandle)
                        );
                        assert_eq!(pool.store_mut().free(place), Err(Error::InvalidHandle));
                        assert_eq!(pool.stats(), stats, "a refused place changed the pool");
                    }
                    Some(bytes) => {
                        // What the store cannot tell: it reads the object in that
                        // slot, for the place's length.
                        let len = place.len();
                        assert_eq!(pool.store().read_object(place, &mut out), Ok(len));
                        if let Some(bytes) = bytes {
                            let same = len.min(bytes.len());
                            assert!(
                                out[..same] == bytes[..same],
                                "forged place reads other bytes"
                            );
                        }
                    }
                }
            }
            Op::Compact => {
                let before = pool.stats().store;
                let old_pages: Vec<StoredPage> = model.pages.iter().map(|p| p.0).collect();
                let old_objects: Vec<Place> = model.objects.iter().map(|o| o.0).collect();
                let result = pool.compact(&mut Shown(&mut model));
                let after = pool.stats().store;
                assert_eq!(
                    (after.objects, after.object_bytes),
                    (before.objects, before.object_bytes)
                );
                assert_eq!(
                    before.bytes_held - after.bytes_held,
                    result.pages_freed * PAGE_SIZE
                );
                let mut rewritten = 0;
                for (old, (new, _)) in old_pages.iter().zip(&model.pages) {
                    match (old, new) {
                        (StoredPage::Object(a, tag_a), StoredPage::Object(b, tag_b)) => {
                            assert_eq!((a.len(), tag_a), (b.len(), tag_b));
                            if a != b {
                                rewritten += 1;
                                model.stale.push(*a);
                            }
                        }
                        (a, b) => assert_eq!(a, b),
                    }
                }
                for (old, (new, _, tag)) in old_objects.iter().zip(&model.objects) {
                    if old != new {
                        assert!(tag % 2 == 0, "a place not shown was rewritten");
                        assert_eq!(old.len(), new.len());
                        rewritten += 1;
                        model.stale.push(*old);
                    }
                }
                assert!(rewritten <= result.objects_moved);
                // Every object reads the same at its (new) place.
                for (stored, page) in &model.pages {
                    pool.load_page(*stored, &mut out, &mut dscratch, &NoClock)
                        .expect("load after compaction");
                    assert!(&out == page, "page differs after compaction");
                }
                for (place, bytes, _) in &model.objects {
                    assert_eq!(pool.store().read_object(*place, &mut out), Ok(bytes.len()));
                    assert!(
                        out[..bytes.len()] == bytes[..],
                        "object differs after compaction"
                    );
                }
                let mut slots: Vec<(u32, u16)> = model
                    .live()
                    .map(|(p, _)| {
                        let (z, s, _) = p.to_parts();
                        (z, s)
                    })
                    .collect();
                let live = slots.len();
                slots.sort_unstable();
                slots.dedup();
                assert_eq!(slots.len(), live, "two live objects in one slot");
            }
            Op::ProviderLimit(extra) => {
                provider.set_limit(provider.pages_in_use() + usize::from(extra))
            }
            Op::ByteLimit(pages_limit) => pool.set_limit_bytes(match pages_limit {
                0 => usize::MAX,
                n => usize::from(n) * PAGE_SIZE,
            }),
            Op::Policy {
                threshold,
                keep_raw,
            } => {
                let policy = PagePolicy {
                    threshold: usize::from(threshold),
                    on_poor: if keep_raw {
                        PoorCompression::KeepRaw
                    } else {
                        PoorCompression::Reject
                    },
                    ..*pool.policy()
                };
                let valid = (1..=PAGE_SIZE).contains(&policy.threshold);
                assert_eq!(pool.set_policy(policy).is_ok(), valid);
            }
            _ => {}
        }
        // The store accounts for every page it holds (but possibly a slab
        // directory page whose data page could not be had).
        let held = pool.stats().store.bytes_held;
        let in_use = provider.pages_in_use() * PAGE_SIZE;
        assert!(
            held <= in_use && in_use <= held + PAGE_SIZE,
            "{held} held, {in_use} in use"
        );
    }
    for (stored, page) in &model.pages {
        pool.load_page(*stored, &mut out, &mut dscratch, &NoClock)
            .expect("final load");
        assert!(&out == page, "final page differs");
    }
    for (place, bytes, _) in &model.objects {
        assert_eq!(pool.store().read_object(*place, &mut out), Ok(bytes.len()));
        assert!(out[..bytes.len()] == bytes[..], "final object differs");
    }
    assert_eq!(pool.store().len(), model.live().count());
    for (stored, _) in model.pages.drain(..) {
        pool.free_page(stored).expect("final free page");
    }
    for (place, _, _) in model.objects.drain(..) {
        pool.store_mut().free(place).expect("final free object");
    }
    assert_eq!(pool.stats().store.zspage_pages, 0);
    drop(pool);
    assert_eq!(provider.pages_in_use(), 0);
});
