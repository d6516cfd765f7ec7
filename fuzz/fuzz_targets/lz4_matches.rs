//! `lz4_matches` against decompress-and-compare on arbitrary lz4 streams: either the
//! fuzzer's bytes as they are, or the lz4 block of a page built from its bytes with
//! some stream bytes overwritten. For each stream, the candidate page and the same
//! page with one byte flipped must get the answer decompressing would give (see
//! `foldswap_pool::testing::assert_lz4_matches_agrees`), and nothing may panic.
#![no_main]

use arbitrary::Arbitrary;
use foldswap_mem::PAGE_SIZE;
use foldswap_pool::testing::assert_lz4_matches_agrees;
use foldswap_pool::{CodecKind, CompressScratch};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Repeated over the page (a zero page when empty).
    pattern: Vec<u8>,
    /// (position, byte) overwrites of the page before it is compressed.
    page_edits: Vec<(u16, u8)>,
    /// (position, byte) overwrites of the compressed stream.
    stream_edits: Vec<(u16, u8)>,
    /// Use these bytes as the stream instead of the page's block.
    raw: Option<Vec<u8>>,
    flip: u16,
}

fuzz_target!(|input: Input| {
    let mut page = Box::new([0u8; PAGE_SIZE]);
    if !input.pattern.is_empty() {
        for (b, p) in page.iter_mut().zip(input.pattern.iter().cycle()) {
            *b = *p;
        }
    }
    for &(at, v) in &input.page_edits {
        page[usize::from(at) % PAGE_SIZE] = v;
    }
    let stream = match input.raw {
        Some(raw) => raw,
        None => {
            let mut scratch = CompressScratch::boxed();
            let mut stream = scratch
                .compress(CodecKind::Lz4, &page)
                .expect("lz4 is built in")
                .expect("lz4 always fits")
                .to_vec();
            let len = stream.len();
            for &(at, v) in &input.stream_edits {
                stream[usize::from(at) % len] = v;
            }
            stream
        }
    };
    assert_lz4_matches_agrees(&stream, &page);
    page[usize::from(input.flip) % PAGE_SIZE] ^= 1;
    assert_lz4_matches_agrees(&stream, &page);
});
