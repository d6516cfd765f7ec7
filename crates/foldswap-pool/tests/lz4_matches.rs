//! `lz4_matches` against decompress-and-compare: on pages of every shape (literal
//! runs, short and long matches, overlapping matches), on the same page with one
//! byte flipped anywhere, on corrupted streams and on arbitrary bytes, it gives the
//! same answer and never panics; on the whole dev corpus every page matches its own
//! stream and not a one-byte change of itself.
#![cfg(feature = "std")]

use foldswap_mem::PAGE_SIZE;
use foldswap_pool::testing::assert_lz4_matches_agrees;
use foldswap_pool::{COMPRESS_BOUND, lz4_matches};
use proptest::prelude::*;

fn compress(page: &[u8; PAGE_SIZE]) -> Vec<u8> {
    let mut out = vec![0u8; COMPRESS_BOUND];
    let len = foldswap_pool::building_blocks::lz4_flex::block::compress_into(page, &mut out)
        .expect("fits");
    out.truncate(len);
    out
}

/// A page that repeats a phrase of `period` bytes, with a `noise` per-mille share of
/// random bytes from an alphabet of `alphabet` symbols: small periods give
/// overlapping matches, noise breaks them into literal runs and short matches.
fn page(seed: u64, period: usize, noise: u32, alphabet: u8) -> [u8; PAGE_SIZE] {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let phrase: Vec<u8> = (0..period).map(|_| next() as u8 % alphabet).collect();
    let mut page = [0u8; PAGE_SIZE];
    for (i, b) in page.iter_mut().enumerate() {
        let r = next();
        *b = if (r % 1000) < u64::from(noise) {
            (r >> 32) as u8 % alphabet
        } else {
            phrase[i % period]
        };
    }
    page
}

fn pages() -> impl Strategy<Value = [u8; PAGE_SIZE]> {
    (
        any::<u64>(),
        1usize..300,
        prop_oneof![Just(0u32), 0u32..50, 0u32..1001],
        prop_oneof![Just(255u8), 1u8..8],
    )
        .prop_map(|(seed, period, noise, alphabet)| page(seed, period, noise, alphabet))
}

#[derive(Debug, Clone)]
enum Damage {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Damage::Set(i, v)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Damage::Insert(i, v)),
        any::<usize>().prop_map(Damage::Remove),
    ]
}

fn apply(stream: &mut Vec<u8>, damage: &Damage) {
    let len = stream.len().max(1);
    match *damage {
        Damage::Set(i, v) => {
            if let Some(b) = stream.get_mut(i % len) {
                *b = v;
            }
        }
        Damage::Truncate(i) => stream.truncate(i % len),
        Damage::Insert(i, v) => stream.insert(i % (stream.len() + 1), v),
        Damage::Remove(i) => {
            if !stream.is_empty() {
                stream.remove(i % len);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn agrees_on_a_page_and_on_one_byte_changes(
        page in pages(),
        at in 0..PAGE_SIZE,
        flip in 1u8..=255,
    ) {
        let stream = compress(&page);
        prop_assert_eq!(lz4_matches(&stream, &page), Ok(true));
        let mut other = page;
        other[at] ^= flip;
        prop_assert_eq!(lz4_matches(&stream, &other), Ok(false));
        assert_lz4_matches_agrees(&stream, &other);
    }

    #[test]
    fn agrees_on_corrupted_streams(
        page in pages(),
        damages in prop::collection::vec(damage(), 1..4),
        at in 0..PAGE_SIZE,
    ) {
        let mut stream = compress(&page);
        for d in &damages {
            apply(&mut stream, d);
        }
        assert_lz4_matches_agrees(&stream, &page);
        let mut other = page;
        other[at] ^= 1;
        assert_lz4_matches_agrees(&stream, &other);
    }

    #[test]
    fn agrees_on_arbitrary_bytes(
        stream in prop::collection::vec(any::<u8>(), 0..600),
        page in pages(),
    ) {
        assert_lz4_matches_agrees(&stream, &page);
    }
}

#[test]
fn every_dev_corpus_page_matches_its_stream_and_not_a_changed_copy() {
    let (corpus, _) = foldswap_corpus::dev_mixed().expect("dev-mixed corpus must be present");
    for (n, page) in corpus.pages().enumerate() {
        let stream = compress(page);
        assert_eq!(lz4_matches(&stream, page), Ok(true), "page {n}");
        // One byte changed at a place that moves through the page.
        let mut other = *page;
        let at = n.wrapping_mul(2_654_435_761) % PAGE_SIZE;
        other[at] = other[at].wrapping_add(1);
        assert_eq!(lz4_matches(&stream, &other), Ok(false), "page {n} at {at}");
    }
}
