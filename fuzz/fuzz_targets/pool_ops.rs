//! Random operation sequences on the compressed pool (pages and raw objects in one
//! store, compaction, byte limit, memory running out) checked against a model:
//! every load equals its store, bad handles are refused, nothing is lost.
#![no_main]

use arbitrary::Arbitrary;
use foldswap_mem::{CountingProvider, Error, PAGE_SIZE, StdPageProvider};
use foldswap_pool::{
    CodecKind, CompressScratch, DecompressScratch, Handle, NoClock, PagePolicy, PagePool,
    PoorCompression, StoredPage,
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
    StoreObject {
        len: u16,
        seed: u8,
        tag: u8,
    },
    LoadPage(u16),
    ReadObject(u16),
    FreePage(u16),
    FreeObject(u16),
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

fuzz_target!(|ops: Vec<Op>| {
    let provider = CountingProvider::new(StdPageProvider, 4096);
    let Ok(mut pool) = PagePool::new(&provider, PagePolicy::default()) else {
        return;
    };
    let mut scratch = CompressScratch::boxed();
    let mut dscratch = Box::new(DecompressScratch::new());
    let mut pages: Vec<(StoredPage, Vec<u8>)> = Vec::new();
    let mut objects: Vec<(Handle, Vec<u8>, u8)> = Vec::new();
    let mut out = vec![0u8; PAGE_SIZE];
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
                    Ok(stored) => pages.push((stored, page)),
                    Err(Error::OutOfMemory | Error::PoolFull | Error::Incompressible) => {}
                    Err(e) => panic!("store_page: {e:?}"),
                }
            }
            Op::StoreObject { len, seed, tag } => {
                let bytes: Vec<u8> = (0..usize::from(len) % (PAGE_SIZE + 64))
                    .map(|i| (i as u8).wrapping_mul(seed | 1))
                    .collect();
                match pool.store_mut().store_object(&bytes, tag) {
                    Ok(handle) => objects.push((handle, bytes, tag)),
                    Err(Error::OutOfMemory | Error::PoolFull) => {}
                    Err(Error::InvalidArgument(_)) => assert!(bytes.len() > PAGE_SIZE),
                    Err(e) => panic!("store_object: {e:?}"),
                }
            }
            Op::LoadPage(i) if !pages.is_empty() => {
                let (stored, page) = &pages[usize::from(i) % pages.len()];
                pool.load_page(*stored, &mut out, &mut dscratch, &NoClock)
                    .expect("load");
                assert!(&out == page, "loaded page differs");
            }
            Op::ReadObject(i) if !objects.is_empty() => {
                let (handle, bytes, tag) = &objects[usize::from(i) % objects.len()];
                assert_eq!(
                    pool.store().read_object(*handle, &mut out),
                    Ok((bytes.len(), *tag))
                );
                assert!(out[..bytes.len()] == bytes[..], "read object differs");
                if let Some(view) = pool.store().object_in_place(*handle).expect("live") {
                    assert_eq!((view.len(), view.tag()), (bytes.len(), *tag));
                    // SAFETY: live, and nothing frees or moves it while compared.
                    assert!(
                        unsafe { view.bytes() } == &bytes[..],
                        "object in place differs"
                    );
                }
            }
            Op::FreePage(i) if !pages.is_empty() => {
                let (stored, _) = pages.swap_remove(usize::from(i) % pages.len());
                pool.free_page(stored).expect("free page");
                if let StoredPage::Object(handle) = stored {
                    assert_eq!(pool.free_page(stored), Err(Error::InvalidHandle));
                    assert_eq!(pool.store().object_info(handle), Err(Error::InvalidHandle));
                }
            }
            Op::FreeObject(i) if !objects.is_empty() => {
                let (handle, _, _) = objects.swap_remove(usize::from(i) % objects.len());
                pool.store_mut().free(handle).expect("free object");
                assert_eq!(pool.store_mut().free(handle), Err(Error::InvalidHandle));
            }
            Op::StaleHandle(raw) => {
                if let Some(handle) = Handle::from_raw(raw) {
                    let live = objects.iter().any(|o| o.0 == handle)
                        || pages.iter().any(|p| p.0 == StoredPage::Object(handle));
                    if !live {
                        assert_eq!(
                            pool.store().read_object(handle, &mut out),
                            Err(Error::InvalidHandle)
                        );
                    }
                }
            }
            Op::Compact => {
                pool.compact();
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
    }
    for (stored, page) in &pages {
        pool.load_page(*stored, &mut out, &mut dscratch, &NoClock)
            .expect("final load");
        assert!(&out == page, "final page differs");
    }
    for (handle, bytes, tag) in &objects {
        assert_eq!(
            pool.store().read_object(*handle, &mut out),
            Ok((bytes.len(), *tag))
        );
        assert!(out[..bytes.len()] == bytes[..], "final object differs");
    }
    assert_eq!(
        pool.store().len(),
        objects.len()
            + pages
                .iter()
                .filter(|p| matches!(p.0, StoredPage::Object(_)))
                .count()
    );
});
