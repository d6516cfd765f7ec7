//! Checks shared by the property tests and fuzz targets (feature `std`).

extern crate std;

use std::boxed::Box;

use foldswap_mem::{Error, PAGE_SIZE};

use crate::{decompress_lz4, lz4_matches};

/// Assert that [`lz4_matches`]`(stream, candidate)` agrees with decompressing
/// `stream` and comparing: if the stream decodes to a page, the answer is exactly
/// whether that page equals `candidate` (and the decoded page itself matches); if
/// it does not decode, the answer is `Ok(false)` (a difference found before the
/// fault) or [`Error::Corrupt`], never `Ok(true)`. Panics otherwise.
pub fn assert_lz4_matches_agrees(stream: &[u8], candidate: &[u8; PAGE_SIZE]) {
    let got = lz4_matches(stream, candidate);
    let mut decoded = Box::new([0u8; PAGE_SIZE]);
    match decompress_lz4(stream, &mut decoded) {
        Ok(()) => {
            assert_eq!(got, Ok(decoded[..] == candidate[..]), "decodable stream");
            assert_eq!(lz4_matches(stream, &decoded), Ok(true), "its own page");
        }
        Err(_) => assert!(
            matches!(got, Ok(false) | Err(Error::Corrupt)),
            "undecodable stream gave {got:?}"
        ),
    }
}
