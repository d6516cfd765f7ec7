//! Encode a page against a base (unrelated, or the target with a few edits) under an
//! arbitrary size limit: the delta either fits and decodes byte-exactly, or the
//! encoder says `Incompressible` and the unlimited delta is indeed over the limit.
#![no_main]

use arbitrary::Arbitrary;
use foldswap_delta::{EncodeScratch, MAX_DELTA_BYTES, decode, encode};
use foldswap_mem::{Error, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    target: Vec<u8>,
    base: Vec<u8>,
    /// Derive the base from the target by these (offset, byte) writes instead.
    similar: bool,
    edits: Vec<(u16, u8)>,
    /// Shift the base by this many bytes (similar mode).
    shift: u8,
    limit: u16,
}

fn page_from(seed: &[u8]) -> Box<[u8; PAGE_SIZE]> {
    let mut page = Box::new([0u8; PAGE_SIZE]);
    for (dst, src) in page.iter_mut().zip(seed.iter().cycle()) {
        *dst = *src;
    }
    page
}

fuzz_target!(|input: Input| {
    let target = page_from(&input.target);
    let base = if input.similar {
        let mut base = Box::new([0u8; PAGE_SIZE]);
        let shift = usize::from(input.shift);
        base[shift..].copy_from_slice(&target[..PAGE_SIZE - shift]);
        for &(at, byte) in &input.edits {
            base[usize::from(at) % PAGE_SIZE] = byte;
        }
        base
    } else {
        page_from(&input.base)
    };
    let mut scratch = Box::new(EncodeScratch::new());
    let mut full = vec![0u8; MAX_DELTA_BYTES];
    let len = encode(&target, &base, &mut scratch, &mut full).expect("always fits");
    let mut out = Box::new([0u8; PAGE_SIZE]);
    decode(&base, &full[..len], &mut out).expect("own delta decodes");
    assert!(out[..] == target[..], "round trip changed the page");

    let limit = usize::from(input.limit) % (MAX_DELTA_BYTES + 1);
    let mut bounded = vec![0u8; limit];
    match encode(&target, &base, &mut scratch, &mut bounded) {
        Ok(n) => assert_eq!(&bounded[..n], &full[..len], "the limit changed the delta"),
        Err(Error::Incompressible) => assert!(len > limit, "gave up below the limit"),
        Err(other) => panic!("encode failed with {other:?}"),
    }
});
