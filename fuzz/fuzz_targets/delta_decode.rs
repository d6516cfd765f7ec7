//! Decode arbitrary bytes as a delta against an arbitrary base: it must never
//! panic or read/write out of bounds, and may only succeed or report `Corrupt`.
//! A delta that does decode must re-encode to a delta that decodes to the same page.
#![no_main]

use arbitrary::Arbitrary;
use foldswap_delta::{EncodeScratch, MAX_DELTA_BYTES, decode, encode};
use foldswap_mem::{Error, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    base: Vec<u8>,
    delta: Vec<u8>,
}

/// A page from a short seed, repeated.
fn page_from(seed: &[u8]) -> Box<[u8; PAGE_SIZE]> {
    let mut page = Box::new([0u8; PAGE_SIZE]);
    for (dst, src) in page.iter_mut().zip(seed.iter().cycle()) {
        *dst = *src;
    }
    page
}

fuzz_target!(|input: Input| {
    let base = page_from(&input.base);
    let mut out = Box::new([0u8; PAGE_SIZE]);
    match decode(&base, &input.delta, &mut out) {
        Err(Error::Corrupt) => {}
        Err(other) => panic!("decode failed with {other:?}, not Corrupt"),
        Ok(()) => {
            let mut scratch = Box::new(EncodeScratch::new());
            let mut delta = vec![0u8; MAX_DELTA_BYTES];
            let len = encode(&out, &base, &mut scratch, &mut delta).expect("always fits");
            let mut again = Box::new([0u8; PAGE_SIZE]);
            decode(&base, &delta[..len], &mut again).expect("own delta decodes");
            assert!(again[..] == out[..], "re-encoded delta decodes differently");
        }
    }
});
