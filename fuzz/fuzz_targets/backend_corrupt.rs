//! Loads of damaged stored objects. Pages of several kinds (same-filled, identical,
//! similar families the scanner patches, lz4, raw) are stored, the scanner
//! optionally runs (zstd or deflate as its cold codec), then fuzzer-chosen bytes of
//! the pool object behind a chosen offset (its own, or its delta base) are flipped
//! through the `testing` hook, and more operations follow. Every load returns `Ok`
//! or `Error::Corrupt`, never panics; every offset whose content is not decoded
//! from a damaged object loads exactly what was stored; nothing leaks.
#![no_main]

use std::collections::{HashMap, HashSet};

use arbitrary::Arbitrary;
use common::{TickClock, scan_at_once, unthrottled, xorshift};
use foldswap::testing::Part;
use foldswap::{Backend, ColdCodec, DeflateCodec, Error, Parker, Scratch, StdParker, ZstdCodec};
use foldswap_mem::{CountingProvider, PAGE_SIZE, PageProvider, StdPageProvider};
use libfuzzer_sys::fuzz_target;

#[path = "backend_common.rs"]
mod common;

const OFFSETS: u64 = 48;

#[derive(Debug, Arbitrary)]
struct Damage {
    offset: u8,
    /// The delta base instead of the entry's own object.
    base: bool,
    /// Taken modulo the object's length.
    at: u16,
    xor: u8,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Store { offset: u8, family: u8, edits: u8 },
    Load { offset: u8 },
    Invalidate { offset: u8 },
    Scan { bursts: u8 },
    Damage(Damage),
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// The scanner's cold codec: zstd (the userspace default) or deflate.
    deflate: bool,
    /// What the offsets hold at first, drawn from this seed: `pages` offsets, each a
    /// page of one of `families` families (identical and similar pages among them).
    seed: u64,
    pages: u8,
    families: u8,
    /// Scanner bursts before the first damage.
    scans: u8,
    damage: Vec<Damage>,
    then: Vec<Op>,
}

/// Page `edits` of `family`: equal pairs give identical pages, members of one
/// family similar ones. By family: same-filled, random text (deflate and deltas
/// shrink it), few distinct words (lz4 shrinks it), noise (kept raw).
fn page(family: u8, edits: u8) -> Vec<u8> {
    let family = family % 12;
    let mut x = u64::from(family).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut page = vec![0u8; PAGE_SIZE];
    match family % 4 {
        0 => page.fill(family),
        1 => page
            .iter_mut()
            .for_each(|b| *b = b'a' + (xorshift(&mut x) % 26) as u8),
        2 => page
            .chunks_exact_mut(8)
            .for_each(|c| c.copy_from_slice(&(xorshift(&mut x) % 6).to_le_bytes())),
        _ => page
            .iter_mut()
            .for_each(|b| *b = (xorshift(&mut x) >> 24) as u8),
    }
    for e in 0..edits % 8 {
        let at = (usize::from(edits) * 131 + usize::from(e) * 977) % (PAGE_SIZE - 8);
        page[at..at + 8].copy_from_slice(&(u64::from(edits) * 31 + u64::from(e)).to_le_bytes());
    }
    page
}

/// Damage one object; the offsets of `model` decoded from it join `spoilt`.
fn damage<P: PageProvider + Clone, K: Parker>(
    backend: &Backend<P, K>,
    model: &HashMap<u64, Vec<u8>>,
    spoilt: &mut HashSet<u64>,
    d: &Damage,
) {
    let offset = u64::from(d.offset) % OFFSETS;
    let Some(objects) = backend.stored_objects(0, offset).expect("objects") else {
        return;
    };
    let (part, target) = match (d.base, objects.base) {
        (true, Some(base)) => (Part::DeltaBase, base),
        _ => (Part::Object, objects.object),
    };
    let at = usize::from(d.at) % target.len.max(1);
    let xor = if d.xor == 0 { 0xff } else { d.xor };
    let changed = backend
        .corrupt_stored_part(0, offset, part, at, xor)
        .expect("corrupt");
    assert_eq!(changed, target.len > 0, "damage at {at} of {target:?}");
    for &other in model.keys() {
        let objects = backend.stored_objects(0, other).expect("objects");
        if objects.is_some_and(|o| {
            o.object.place == target.place || o.base.is_some_and(|b| b.place == target.place)
        }) {
            spoilt.insert(other);
        }
    }
}

/// Check a load of `offset` (`load` fills the buffer): exact unless spoilt;
/// spoilt: `Ok` or `Corrupt`.
fn check_load(
    model: &HashMap<u64, Vec<u8>>,
    spoilt: &HashSet<u64>,
    offset: u64,
    load: impl FnOnce(&mut [u8]) -> Result<(), Error>,
) {
    let mut out = vec![0u8; PAGE_SIZE];
    let got = load(&mut out);
    match (got, model.get(&offset)) {
        (Ok(()) | Err(Error::Corrupt), Some(_)) if spoilt.contains(&offset) => {}
        (Ok(()), Some(page)) => assert!(&out == page, "offset {offset}: other bytes"),
        (Err(Error::NotFound), None) => {}
        (got, want) => panic!(
            "load {offset}: {got:?} vs model {} (spoilt {})",
            want.is_some(),
            spoilt.contains(&offset)
        ),
    }
}

fuzz_target!(|input: Input| {
    if input.deflate {
        run(input, Scratch::boxed_with(DeflateCodec::new()));
    } else {
        run(input, Scratch::boxed_with(ZstdCodec::new().expect("zstd")));
    }
});

fn run<C: ColdCodec>(input: Input, mut scratch: Box<Scratch<C>>) {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, unthrottled(), StdParker::new()).expect("backend");
    let clock = TickClock::new();
    let scan = scan_at_once(8);
    backend.init(0, OFFSETS).expect("init");
    let mut model: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut spoilt: HashSet<u64> = HashSet::new();
    let mut x = input.seed | 1;
    let families = u64::from(input.families % 12) + 1;
    for offset in 0..u64::from(input.pages) % (OFFSETS + 1) {
        let family = (xorshift(&mut x) % families) as u8;
        let page = page(family, (xorshift(&mut x) % 12) as u8);
        backend
            .store(0, offset, &page, foldswap::Domain(0), &mut scratch)
            .expect("store");
        model.insert(offset, page);
    }
    for _ in 0..input.scans % 16 {
        backend
            .scan_burst(&scan, &mut scratch, &clock)
            .expect("scan");
    }
    for d in input.damage.iter().take(4) {
        damage(&backend, &model, &mut spoilt, d);
    }
    for offset in 0..OFFSETS {
        check_load(&model, &spoilt, offset, |out| {
            backend.load(0, offset, out, &mut scratch)
        });
    }
    for op in input.then.into_iter().take(64) {
        match op {
            Op::Store {
                offset,
                family,
                edits,
            } => {
                let offset = u64::from(offset) % OFFSETS;
                let page = page(family, edits);
                match backend.store(0, offset, &page, foldswap::Domain(0), &mut scratch) {
                    Ok(_) => {
                        model.insert(offset, page);
                        spoilt.remove(&offset);
                    }
                    // Compared with a damaged stored copy of the same content: the
                    // store is refused and the offset keeps what it held.
                    Err(Error::Corrupt) if !spoilt.is_empty() => {}
                    Err(e) => panic!("store {offset}: {e}"),
                }
            }
            Op::Load { offset } => {
                let offset = u64::from(offset) % OFFSETS;
                check_load(&model, &spoilt, offset, |out| {
                    backend.load(0, offset, out, &mut scratch)
                });
            }
            Op::Invalidate { offset } => {
                let offset = u64::from(offset) % OFFSETS;
                let had = backend.invalidate_page(0, offset).expect("invalidate");
                assert_eq!(had, model.remove(&offset).is_some());
                spoilt.remove(&offset);
            }
            Op::Scan { bursts } => {
                for _ in 0..bursts % 4 {
                    backend
                        .scan_burst(&scan, &mut scratch, &clock)
                        .expect("scan");
                }
            }
            Op::Damage(d) => damage(&backend, &model, &mut spoilt, &d),
        }
    }
    for offset in 0..OFFSETS {
        check_load(&model, &spoilt, offset, |out| {
            backend.load(0, offset, out, &mut scratch)
        });
    }
    drop(backend);
    assert_eq!(provider.pages_in_use(), 0, "pages leaked");
}
