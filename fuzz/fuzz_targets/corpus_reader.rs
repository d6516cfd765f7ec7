//! Arbitrary bytes read as a corpus, raw (`.pages`) and gzip-compressed
//! (`.pages.gz`), with a small bound on pages: the reader never panics; it reads
//! at most the bound, or gives one of its typed errors for what is wrong with the
//! bytes (never `OutOfMemory` nor `Reference`).
#![no_main]

use std::path::Path;

use foldswap_corpus::{CorpusError, Encoding, read_pages};
use libfuzzer_sys::fuzz_target;

/// Small enough that a gzip bomb in the input stops early.
const MAX_PAGES: usize = 4;
const PAGE_SIZE: usize = 4096;

fuzz_target!(|input: &[u8]| {
    for (encoding, name) in [
        (Encoding::Raw, "fuzz.pages"),
        (Encoding::Gzip, "fuzz.pages.gz"),
    ] {
        match read_pages(input, encoding, Path::new(name), MAX_PAGES) {
            Ok(corpus) => {
                assert!(corpus.len() <= MAX_PAGES);
                assert_eq!(corpus.as_bytes().len(), corpus.len() * PAGE_SIZE);
                assert_eq!(corpus.pages().count(), corpus.len());
                if encoding == Encoding::Raw {
                    assert_eq!(corpus.as_bytes(), input);
                }
            }
            Err(CorpusError::Gzip { .. }) => assert_eq!(encoding, Encoding::Gzip),
            Err(CorpusError::NotPageMultiple { len, .. }) => {
                assert!(len % PAGE_SIZE != 0 && len <= MAX_PAGES * PAGE_SIZE);
            }
            Err(CorpusError::TooManyPages { max_pages, .. }) => assert_eq!(max_pages, MAX_PAGES),
            Err(error) => panic!("unexpected error: {error}"),
        }
    }
});
