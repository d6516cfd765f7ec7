//! Decompress arbitrary bytes as an lz4 block into one page: it must never panic
//! or write outside the page (guard bytes on both sides), only succeed or report
//! `Corrupt`. A page that does decode must round-trip through the pool's codec.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "decompress_common.rs"]
mod common;

fuzz_target!(|input: &[u8]| {
    common::check(foldswap_pool::CodecKind::Lz4, input);
});
