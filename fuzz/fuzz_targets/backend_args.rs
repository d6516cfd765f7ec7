//! The backend's five operations called with bad arguments among good ones: swap
//! types past `MAX_SWAP_TYPES`, offsets past the area (up to `u64::MAX`), page
//! buffers of the wrong length, areas never initialised, re-initialised, of 0 pages
//! or larger than the offset table. Every call returns, a bad one with a typed
//! error and no change (a load leaves the buffer as it was); a model of what the
//! good stores put where is checked on every good load and at the end.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use common::{TickClock, page, scan_at_once, unthrottled};
use foldswap::area::MAX_SWAP_TYPES;
use foldswap::offsets::MAX_OFFSETS;
use foldswap::{Backend, Error, Scratch, StdParker};
use foldswap_mem::{CountingProvider, PAGE_SIZE, StdPageProvider};
use libfuzzer_sys::fuzz_target;

#[path = "backend_common.rs"]
mod common;

/// A swap type: mostly the few that get initialised, also any at all.
#[derive(Debug, Arbitrary)]
enum Type {
    /// `n % (MAX_SWAP_TYPES + 2)`: the valid ones and just past them.
    Small(u8),
    Max,
    Any(usize),
}

/// An area size.
#[derive(Debug, Arbitrary)]
enum Pages {
    Small(u8),
    Zero,
    /// `MAX_OFFSETS + delta`: the largest sizes and just past them.
    NearMax(i8),
    Any(u64),
    Max,
}

/// An offset, relative to the area's size where it has one.
#[derive(Debug, Arbitrary)]
enum Offset {
    /// `n % nr_pages` (valid in an active, non-empty area).
    In(u16),
    /// `nr_pages + delta`: the last offsets and the first ones past the end.
    NearEnd(i8),
    Max,
    Any(u64),
}

/// A page buffer's length.
#[derive(Debug, Arbitrary)]
enum Len {
    Page,
    Zero,
    PageMinus1,
    PagePlus1,
    TwoPages,
    Any(u16),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Init {
        ty: Type,
        pages: Pages,
    },
    /// A page of `family` with `edits` (identical for equal pairs, similar within a
    /// family, same-filled for some families).
    Store {
        ty: Type,
        offset: Offset,
        len: Len,
        family: u8,
        edits: u8,
    },
    Load {
        ty: Type,
        offset: Offset,
        len: Len,
    },
    Invalidate {
        ty: Type,
        offset: Offset,
    },
    InvalidateArea {
        ty: Type,
    },
    Scan,
}

fn swap_type(ty: &Type) -> usize {
    match *ty {
        Type::Small(n) => usize::from(n) % (MAX_SWAP_TYPES + 2),
        Type::Max => usize::MAX,
        Type::Any(n) => n,
    }
}

fn nr_pages(pages: &Pages) -> u64 {
    match *pages {
        Pages::Small(n) => u64::from(n),
        Pages::Zero => 0,
        Pages::NearMax(delta) => MAX_OFFSETS.saturating_add_signed(i64::from(delta)),
        Pages::Any(n) => n,
        Pages::Max => u64::MAX,
    }
}

/// The offset `offset` names in an area of `nr_pages` (0 if it has none).
fn offset(offset: &Offset, nr_pages: u64) -> u64 {
    match *offset {
        Offset::In(n) => u64::from(n).checked_rem(nr_pages).unwrap_or(0),
        Offset::NearEnd(delta) => nr_pages.saturating_add_signed(i64::from(delta)),
        Offset::Max => u64::MAX,
        Offset::Any(n) => n,
    }
}

fn len(len: &Len) -> usize {
    match *len {
        Len::Page => PAGE_SIZE,
        Len::Zero => 0,
        Len::PageMinus1 => PAGE_SIZE - 1,
        Len::PagePlus1 => PAGE_SIZE + 1,
        Len::TwoPages => 2 * PAGE_SIZE,
        Len::Any(n) => usize::from(n),
    }
}

/// What the backend should hold: each area's size once initialised, and the pages
/// of good stores.
struct Model {
    areas: [Option<u64>; MAX_SWAP_TYPES],
    pages: HashMap<(usize, u64), Vec<u8>>,
}

impl Model {
    /// The area's size, if `ty` names an initialised area.
    fn area(&self, ty: usize) -> Option<u64> {
        self.areas.get(ty).copied().flatten()
    }

    /// Whether (`ty`, `offset`) is a place the backend stores at.
    fn valid(&self, ty: usize, offset: u64) -> bool {
        self.area(ty).is_some_and(|nr| offset < nr)
    }
}

/// A bad call's error: `WrongLength` for a bad buffer (checked first), else
/// `InvalidArgument`.
fn assert_refused<T: std::fmt::Debug>(got: Result<T, Error>, bad_len: Option<usize>, what: &str) {
    match (got, bad_len) {
        (Err(Error::WrongLength { expected, actual }), Some(len)) => {
            assert_eq!((expected, actual), (PAGE_SIZE, len), "{what}");
        }
        (Err(Error::InvalidArgument(_)), None) => {}
        (got, _) => panic!("{what}: {got:?}, expected a refusal (bad length {bad_len:?})"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let provider = CountingProvider::unlimited(StdPageProvider);
    let backend = Backend::new(&provider, unthrottled(), StdParker::new()).expect("backend");
    let mut scratch = Scratch::boxed();
    let clock = TickClock::new();
    let scan = scan_at_once(2);
    let mut model = Model {
        areas: [None; MAX_SWAP_TYPES],
        pages: HashMap::new(),
    };
    for op in ops.into_iter().take(256) {
        match op {
            Op::Init { ty, pages } => {
                let (ty, nr) = (swap_type(&ty), nr_pages(&pages));
                let got = backend.init(ty, nr);
                if ty < MAX_SWAP_TYPES && nr > 0 && nr <= MAX_OFFSETS {
                    assert_eq!(got, Ok(()), "init({ty}, {nr})");
                    model.areas[ty] = Some(nr);
                    model.pages.retain(|k, _| k.0 != ty);
                } else {
                    assert_refused(got, None, &format!("init({ty}, {nr})"));
                }
            }
            Op::Store {
                ty,
                offset: at,
                len: buf_len,
                family,
                edits,
            } => {
                let ty = swap_type(&ty);
                let offset = offset(&at, model.area(ty).unwrap_or(0));
                let page = page(family % 16, edits);
                let mut buf = vec![0xa5u8; len(&buf_len)];
                let n = buf.len().min(PAGE_SIZE);
                buf[..n].copy_from_slice(&page[..n]);
                let got = backend.store(ty, offset, &buf, foldswap::Domain(0), &mut scratch);
                let what = format!("store({ty}, {offset}, {} bytes)", buf.len());
                if buf.len() != PAGE_SIZE {
                    assert_refused(got, Some(buf.len()), &what);
                } else if !model.valid(ty, offset) {
                    assert_refused(got, None, &what);
                } else {
                    assert!(got.is_ok(), "{what}: {got:?}");
                    model.pages.insert((ty, offset), page);
                }
            }
            Op::Load {
                ty,
                offset: at,
                len: buf_len,
            } => {
                let ty = swap_type(&ty);
                let offset = offset(&at, model.area(ty).unwrap_or(0));
                let mut out = vec![0xa5u8; len(&buf_len)];
                let got = backend.load(ty, offset, &mut out, &mut scratch);
                let what = format!("load({ty}, {offset}, {} bytes)", out.len());
                let untouched = || out.iter().all(|&b| b == 0xa5);
                if out.len() != PAGE_SIZE {
                    assert_refused(got, Some(out.len()), &what);
                    assert!(untouched(), "{what} wrote its buffer");
                } else if !model.valid(ty, offset) {
                    assert_refused(got, None, &what);
                    assert!(untouched(), "{what} wrote its buffer");
                } else {
                    match (got, model.pages.get(&(ty, offset))) {
                        (Ok(()), Some(page)) => assert!(&out == page, "{what}: other bytes"),
                        (Err(Error::NotFound), None) => {
                            assert!(untouched(), "{what} wrote its buffer")
                        }
                        (got, want) => panic!("{what}: {got:?} vs model {}", want.is_some()),
                    }
                }
            }
            Op::Invalidate { ty, offset: at } => {
                let ty = swap_type(&ty);
                let offset = offset(&at, model.area(ty).unwrap_or(0));
                let got = backend.invalidate_page(ty, offset);
                let what = format!("invalidate_page({ty}, {offset})");
                if model.valid(ty, offset) {
                    let had = model.pages.remove(&(ty, offset)).is_some();
                    assert_eq!(got, Ok(had), "{what}");
                } else {
                    assert_refused(got, None, &what);
                }
            }
            Op::InvalidateArea { ty } => {
                let ty = swap_type(&ty);
                let got = backend.invalidate_area(ty);
                if model.area(ty).is_some() {
                    assert_eq!(got, Ok(()), "invalidate_area({ty})");
                    model.pages.retain(|k, _| k.0 != ty);
                } else {
                    assert_refused(got, None, &format!("invalidate_area({ty})"));
                }
            }
            Op::Scan => {
                backend
                    .scan_burst(&scan, &mut scratch, &clock)
                    .expect("scan");
            }
        }
        let stored = backend.stats().snapshot().stored_pages;
        assert_eq!(stored, model.pages.len() as u64, "stored pages counted");
    }
    let mut out = vec![0u8; PAGE_SIZE];
    for (&(ty, offset), page) in &model.pages {
        backend
            .load(ty, offset, &mut out, &mut scratch)
            .expect("load");
        assert!(&out == page, "load({ty}, {offset}): other bytes");
    }
    drop(backend);
    assert_eq!(provider.pages_in_use(), 0, "pages leaked");
});
