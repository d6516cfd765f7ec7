//! Shared body of the `decompress_*` targets (not a target itself).

use foldswap_mem::{Error, PAGE_SIZE};
use foldswap_pool::{CodecKind, CompressScratch, DecompressScratch, decompress};

const GUARD: u8 = 0xa5;

/// A page with guard bytes on both sides, to catch writes past its ends.
#[repr(C)]
struct Guarded {
    before: [u8; 64],
    page: [u8; PAGE_SIZE],
    after: [u8; 64],
}

pub fn check(kind: CodecKind, input: &[u8]) {
    let mut guarded = Box::new(Guarded {
        before: [GUARD; 64],
        page: [0; PAGE_SIZE],
        after: [GUARD; 64],
    });
    let mut scratch = Box::new(DecompressScratch::new());
    let result = decompress(kind, input, &mut guarded.page, &mut scratch);
    assert!(
        guarded
            .before
            .iter()
            .chain(&guarded.after)
            .all(|&b| b == GUARD),
        "wrote outside the page"
    );
    match result {
        Err(Error::Corrupt) => {}
        Err(other) => panic!("decompress failed with {other:?}, not Corrupt"),
        Ok(()) => {
            let mut compress = CompressScratch::boxed();
            let page = guarded.page;
            if let Some(bytes) = compress.compress(kind, &page).expect("codec built") {
                let mut again = Box::new([0u8; PAGE_SIZE]);
                decompress(kind, bytes, &mut again, &mut scratch).expect("own output decodes");
                assert!(again[..] == page[..], "round trip differs");
            }
        }
    }
}
