//! Poorly compressible pages: refused once (the host writes them to its swap
//! device), kept raw when a copy comes again, so that every later copy is a
//! reference; a refusal in one domain decides nothing in another.

mod common;

use common::{random_page, unthrottled};
use foldswap::{Backend, Config, DedupScope, Domain, Error, Scratch, StdParker, StoreKind};
use foldswap_mem::{PAGE_SIZE, StdPageProvider};

type TestBackend = Backend<StdPageProvider, StdParker>;

/// The kernel module's policy: poorly compressible pages are refused.
fn backend(config: Config) -> TestBackend {
    let config = Config {
        keep_incompressible: false,
        ..config
    };
    let backend = Backend::new(StdPageProvider, config, StdParker::new()).unwrap();
    backend.init(0, 64).unwrap();
    backend
}

fn store(backend: &TestBackend, offset: u64, page: &[u8], domain: u16) -> Result<StoreKind, Error> {
    backend.store(0, offset, page, Domain(domain), &mut Scratch::boxed())
}

#[test]
fn a_repeated_incompressible_page_is_kept_raw_and_its_copies_shared() {
    let backend = backend(unthrottled());
    let page = random_page(7);
    assert_eq!(store(&backend, 0, &page, 0), Err(Error::Incompressible));
    assert_eq!(store(&backend, 1, &page, 0), Ok(StoreKind::Raw));
    for offset in 2..10 {
        assert_eq!(store(&backend, offset, &page, 0), Ok(StoreKind::Duplicate));
    }
    // Another incompressible page is refused once, like the first.
    assert_eq!(
        store(&backend, 10, &random_page(8), 0),
        Err(Error::Incompressible)
    );
    let mut out = [0u8; PAGE_SIZE];
    let mut scratch = Scratch::boxed();
    for offset in 1..10 {
        backend.load(0, offset, &mut out, &mut scratch).unwrap();
        assert!(out[..] == page[..], "offset {offset}");
    }
    assert_eq!(
        backend.load(0, 0, &mut out, &mut scratch),
        Err(Error::NotFound)
    );
    let s = backend.stats().snapshot();
    assert_eq!(
        (s.reject_compress_poor, s.incompressible_kept, s.dedup_hits),
        (2, 1, 8),
        "{s:?}"
    );
    // One raw page held for nine offsets.
    assert!(backend.pool_stats().object_bytes <= PAGE_SIZE + 64);
    let census = backend.census();
    assert_eq!((census.raw, census.raw_sharers), (1, 9), "{census:?}");
    // The copies leave one by one; the census follows them.
    for offset in 1..5 {
        backend.invalidate_page(0, offset).unwrap();
    }
    let census = backend.census();
    assert_eq!((census.raw, census.raw_sharers), (1, 5), "{census:?}");
}

#[test]
fn with_the_policy_off_or_no_sharing_every_copy_is_refused() {
    for config in [
        Config {
            keep_repeated_incompressible: false,
            ..unthrottled()
        },
        Config {
            dedup_scope: DedupScope::Off,
            ..unthrottled()
        },
    ] {
        let backend = backend(config);
        let page = random_page(7);
        for offset in 0..4 {
            assert_eq!(
                store(&backend, offset, &page, 0),
                Err(Error::Incompressible)
            );
        }
    }
}

/// Under the domain scope a refusal is noted for its domain alone: the same page
/// in another domain is refused as if first seen, and kept on its own repeat.
#[test]
fn a_refusal_in_one_domain_keeps_nothing_in_another() {
    let backend = backend(unthrottled());
    let page = random_page(7);
    assert_eq!(store(&backend, 0, &page, 1), Err(Error::Incompressible));
    assert_eq!(store(&backend, 1, &page, 2), Err(Error::Incompressible));
    assert_eq!(store(&backend, 2, &page, 2), Ok(StoreKind::Raw));
    assert_eq!(store(&backend, 3, &page, 1), Ok(StoreKind::Raw));
    assert_eq!(store(&backend, 4, &page, 1), Ok(StoreKind::Duplicate));
}
