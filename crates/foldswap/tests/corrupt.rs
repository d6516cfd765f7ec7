//! Damaged stored bytes (through the `testing` hooks): a load of an offset built on
//! a damaged pool object returns other bytes or a typed error, never a panic, and
//! every offset not built on it still loads exactly what was stored.

mod common;

use common::{TickClock, mark_member, unthrottled, words_page};
use foldswap::testing::{Part, StoredObjects};
use foldswap::{Backend, Error, Parker, ScanTunables, Scratch, StdParker};
use foldswap_mem::{CountingProvider, PAGE_SIZE, PageProvider, StdPageProvider};
use foldswap_pool::{Place, TAG_LZ4, TAG_RAW};

/// Member `member` of a family of similar pages: the family's words page with a
/// few bytes changed (the scanner patches members against each other).
fn similar_page(family: u64, member: u64) -> Vec<u8> {
    let mut page = words_page(family);
    mark_member(&mut page, member);
    page
}

/// Bytes that do not compress: kept raw.
fn noise_page(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..PAGE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn objects<P: PageProvider + Clone, K: Parker>(
    backend: &Backend<P, K>,
    offset: u64,
) -> Option<StoredObjects> {
    backend.stored_objects(0, offset).unwrap()
}

/// Whether `offset`'s content is decoded from `place`.
fn built_on<P: PageProvider + Clone, K: Parker>(
    backend: &Backend<P, K>,
    offset: u64,
    place: Place,
) -> bool {
    objects(backend, offset)
        .is_some_and(|o| o.object.place == place || o.base.is_some_and(|b| b.place == place))
}

/// The offsets of `pages` whose content is decoded from `place`.
fn built_on_it<P: PageProvider + Clone, K: Parker>(
    backend: &Backend<P, K>,
    pages: &[(u64, Vec<u8>)],
    place: Place,
) -> Vec<u64> {
    pages
        .iter()
        .map(|(offset, _)| *offset)
        .filter(|&offset| built_on(backend, offset, place))
        .collect()
}

/// Load (with `load`) every offset of `pages`: those in `spoilt` give other bytes
/// or [`Error::Corrupt`] (returned, `None` for an error), the others exactly their
/// page.
fn check_loads(
    mut load: impl FnMut(u64, &mut [u8]) -> Result<(), Error>,
    pages: &[(u64, Vec<u8>)],
    spoilt: &[u64],
) -> Vec<(u64, Option<Vec<u8>>)> {
    let mut out = vec![0u8; PAGE_SIZE];
    let mut loads = Vec::new();
    for (offset, page) in pages {
        let loaded = load(*offset, &mut out);
        if spoilt.contains(offset) {
            match loaded {
                Ok(()) => loads.push((*offset, Some(out.clone()))),
                Err(Error::Corrupt) => loads.push((*offset, None)),
                Err(e) => panic!("offset {offset}: {e}"),
            }
        } else {
            assert_eq!(loaded, Ok(()), "offset {offset}");
            assert!(&out == page, "offset {offset} changed");
        }
    }
    loads
}

#[test]
fn a_damaged_lz4_or_raw_object_spoils_its_sharers_only() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, unthrottled(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, 16).unwrap();
    // 0 and 1 share one lz4 object; 2 is lz4 of its own, 3 raw, 4 a zero page.
    let pages = vec![
        (0, words_page(1)),
        (1, words_page(1)),
        (2, words_page(2)),
        (3, noise_page(3)),
        (4, vec![0u8; PAGE_SIZE]),
    ];
    for (offset, page) in &pages {
        backend
            .store(0, *offset, page, foldswap::Domain(0), &mut scratch)
            .unwrap();
    }
    let lz4 = objects(&backend, 0).unwrap();
    assert_eq!(lz4.object.tag, TAG_LZ4);
    assert_eq!(lz4.base, None);
    assert_eq!(objects(&backend, 1), Some(lz4));
    let raw = objects(&backend, 3).unwrap().object;
    assert_eq!((raw.tag, raw.len), (TAG_RAW, PAGE_SIZE));
    assert_eq!(objects(&backend, 4), None);
    assert_eq!(built_on_it(&backend, &pages, lz4.object.place), [0, 1]);

    // Nothing to damage: no pool object, no base, past the end; bad arguments.
    assert_eq!(backend.corrupt_stored_object(0, 4, 0, 1), Ok(false));
    assert_eq!(backend.corrupt_stored_object(0, 9, 0, 1), Ok(false));
    assert_eq!(
        backend.corrupt_stored_part(0, 0, Part::DeltaBase, 0, 1),
        Ok(false)
    );
    let len = lz4.object.len;
    assert_eq!(backend.corrupt_stored_object(0, 0, len, 1), Ok(false));
    for (swap_type, offset) in [(0, 16), (0, u64::MAX), (8, 0), (usize::MAX, 0)] {
        assert!(matches!(
            backend.corrupt_stored_object(swap_type, offset, 0, 1),
            Err(Error::InvalidArgument(_))
        ));
    }
    check_loads(|o, out| backend.load(0, o, out, &mut scratch), &pages, &[]);

    // The lz4 object, byte by byte (token, literals, match offsets, end): 0 and 1
    // give the same other bytes or both Corrupt; the rest is untouched. Xor again
    // undoes it.
    let mut out = vec![0u8; PAGE_SIZE];
    let mut errors = 0;
    for at in [0, 1, 2, 3, len / 3, len / 2, len - 6, len - 2, len - 1] {
        for xor in [0x01, 0x80, 0xff] {
            assert_eq!(backend.corrupt_stored_object(0, 1, at, xor), Ok(true));
            let spoilt = check_loads(
                |o, out| backend.load(0, o, out, &mut scratch),
                &pages,
                &[0, 1],
            );
            assert_eq!(spoilt[0].1, spoilt[1].1, "sharers decode alike");
            match &spoilt[0].1 {
                Some(bytes) => assert!(bytes != &pages[0].1, "at {at} xor {xor:#x}: no change"),
                None => errors += 1,
            }
            // The page is stored again elsewhere: kept apart (a copy of its own, or a
            // typed error and nothing stored), never shared with the damaged object.
            match backend.store(0, 5, &pages[0].1, foldswap::Domain(0), &mut scratch) {
                Ok(_) => {
                    backend.load(0, 5, &mut out, &mut scratch).unwrap();
                    assert!(out == pages[0].1);
                    assert!(!built_on(&backend, 5, lz4.object.place));
                    assert_eq!(backend.invalidate_page(0, 5), Ok(true));
                }
                Err(e) => {
                    assert_eq!(e, Error::Corrupt);
                    assert_eq!(
                        backend.load(0, 5, &mut out, &mut scratch),
                        Err(Error::NotFound)
                    );
                }
            }
            assert_eq!(backend.corrupt_stored_object(0, 0, at, xor), Ok(true));
            check_loads(|o, out| backend.load(0, o, out, &mut scratch), &pages, &[]);
        }
    }
    assert!(errors > 0, "no damage was detected as corrupt");

    // Raw bytes have nothing to check: the load returns them, one byte flipped.
    assert_eq!(backend.corrupt_stored_object(0, 3, 100, 0x42), Ok(true));
    let spoilt = check_loads(|o, out| backend.load(0, o, out, &mut scratch), &pages, &[3]);
    let mut want = pages[3].1.clone();
    want[100] ^= 0x42;
    assert_eq!(spoilt, vec![(3, Some(want))]);

    drop(backend);
    assert_eq!(provider.pages_in_use(), 0, "pages leaked");
}

#[test]
fn a_damaged_delta_or_base_spoils_what_is_decoded_from_it_only() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, unthrottled(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, 64).unwrap();
    let pages: Vec<(u64, Vec<u8>)> = (0..48u64)
        .map(|offset| (offset, similar_page(offset / 12, offset % 12)))
        .collect();
    for (offset, page) in &pages {
        backend
            .store(0, *offset, page, foldswap::Domain(0), &mut scratch)
            .unwrap();
    }
    // Scan until most pages are deltas.
    let clock = TickClock::new();
    // Pages alone (no cold blocks): one base object is one page's.
    let tunables = ScanTunables {
        cold_rounds: 0,
        max_batches: 64,
        block_pages: 1,
        ..ScanTunables::default()
    };
    for _ in 0..200 {
        backend.scan_burst(&tunables, &mut scratch, &clock).unwrap();
        if backend.stats().snapshot().patched_pages >= 32 {
            break;
        }
    }
    let deltas: Vec<(u64, StoredObjects)> = pages
        .iter()
        .filter_map(|(offset, _)| Some((*offset, objects(&backend, *offset)?)))
        .filter(|(_, o)| o.base.is_some())
        .collect();
    assert!(deltas.len() >= 32, "only {} deltas", deltas.len());

    // A delta's own object: only its offset is spoilt, not its base's other deltas.
    let (offset, delta) = deltas[0];
    let base = delta.base.unwrap();
    let siblings = deltas
        .iter()
        .filter(|(_, o)| o.base == Some(base) && o.object != delta.object)
        .count();
    assert!(siblings > 0, "no other delta on the base");
    assert_eq!(built_on_it(&backend, &pages, delta.object.place), [offset]);
    for at in [0, 1, delta.object.len / 2, delta.object.len - 1] {
        assert_eq!(backend.corrupt_stored_object(0, offset, at, 0xff), Ok(true));
        check_loads(
            |o, out| backend.load(0, o, out, &mut scratch),
            &pages,
            &[offset],
        );
        assert_eq!(backend.corrupt_stored_object(0, offset, at, 0xff), Ok(true));
    }
    check_loads(|o, out| backend.load(0, o, out, &mut scratch), &pages, &[]);

    // The base: every delta on it (and any offset holding it) is spoilt, the other
    // families are not.
    let on_base = built_on_it(&backend, &pages, base.place);
    assert!(on_base.len() > siblings && on_base.len() <= 12);
    let mut errors = 0;
    for at in [0, 1, base.len / 2, base.len - 1] {
        assert_eq!(
            backend.corrupt_stored_part(0, offset, Part::DeltaBase, at, 0x5a),
            Ok(true)
        );
        let spoilt = check_loads(
            |o, out| backend.load(0, o, out, &mut scratch),
            &pages,
            &on_base,
        );
        errors += spoilt.iter().filter(|(_, page)| page.is_none()).count();
        assert_eq!(
            backend.corrupt_stored_part(0, offset, Part::DeltaBase, at, 0x5a),
            Ok(true)
        );
    }
    assert!(errors > 0, "no damage was detected as corrupt");
    check_loads(|o, out| backend.load(0, o, out, &mut scratch), &pages, &[]);

    // Left damaged, the base meets the scanner too: it skips what it cannot decode
    // and patches against what it can, and every page not built on the base still
    // loads exactly.
    assert_eq!(
        backend.corrupt_stored_part(0, offset, Part::DeltaBase, base.len / 2, 0x5a),
        Ok(true)
    );
    for (offset, page) in &pages {
        if !on_base.contains(offset) {
            backend
                .store(0, *offset, page, foldswap::Domain(0), &mut scratch)
                .unwrap();
        }
    }
    for _ in 0..20 {
        backend.scan_burst(&tunables, &mut scratch, &clock).unwrap();
    }
    check_loads(
        |o, out| backend.load(0, o, out, &mut scratch),
        &pages,
        &on_base,
    );
    drop(backend);
    assert_eq!(provider.pages_in_use(), 0, "pages leaked");
}

/// A damaged chunk of a cold block's frame spoils the pages of that block (other
/// bytes or `Corrupt`: a zstd frame without checksum may decode to other bytes),
/// never a page of another block; the frame is checked against the length it
/// must decode to.
#[test]
fn a_damaged_block_spoils_its_own_pages_only() {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, unthrottled(), StdParker::new()).unwrap();
    let mut scratch = Scratch::boxed();
    backend.init(0, 64).unwrap();
    let pages: Vec<(u64, Vec<u8>)> = (0..64u64).map(|o| (o, words_page(o))).collect();
    for (offset, page) in &pages {
        backend
            .store(0, *offset, page, foldswap::Domain(0), &mut scratch)
            .unwrap();
    }
    let tunables = ScanTunables {
        cold_rounds: 0,
        patch: 0,
        ..ScanTunables::default()
    };
    let clock = TickClock::new();
    for _ in 0..200 {
        backend.scan_burst(&tunables, &mut scratch, &clock).unwrap();
        if backend.stats().snapshot().blocked_pages == 64 {
            break;
        }
    }
    assert_eq!(backend.stats().snapshot().blocked_pages, 64);
    let chunk = objects(&backend, 20).unwrap();
    assert_eq!(chunk.base, None);
    let in_block = built_on_it(&backend, &pages, chunk.object.place);
    assert!(
        in_block.len() >= 2
            && in_block.len() <= tunables.block_pages as usize
            && in_block.contains(&20),
        "{in_block:?}"
    );
    let mut errors = 0;
    for at in [0, 1, 5, chunk.object.len / 2, chunk.object.len - 1] {
        assert_eq!(backend.corrupt_stored_object(0, 20, at, 0xa5), Ok(true));
        let spoilt = check_loads(
            |o, out| backend.load(0, o, out, &mut scratch),
            &pages,
            &in_block,
        );
        errors += spoilt.iter().filter(|(_, page)| page.is_none()).count();
        assert_eq!(backend.corrupt_stored_object(0, 20, at, 0xa5), Ok(true));
    }
    assert!(errors > 0, "no damage was detected as corrupt");
    check_loads(|o, out| backend.load(0, o, out, &mut scratch), &pages, &[]);
    backend.invalidate_area(0).unwrap();
    drop(backend);
    assert_eq!(provider.pages_in_use(), 0, "pages leaked");
}
