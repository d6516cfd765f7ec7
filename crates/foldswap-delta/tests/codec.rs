//! Property tests of the delta codec: byte-exact round trips on random and on
//! similar pages, the size limit, and decoding of arbitrary bytes.

use foldswap_delta::{EncodeScratch, MAX_DELTA_BYTES, decode, encode};
use foldswap_mem::{Error, PAGE_SIZE, Page};
use proptest::prelude::*;

type PageBytes = [u8; PAGE_SIZE];

fn page_from(bytes: &[u8]) -> Box<PageBytes> {
    let mut page = Box::new([0u8; PAGE_SIZE]);
    for (dst, src) in page.iter_mut().zip(bytes.iter().cycle()) {
        *dst = *src;
    }
    page
}

/// Encode with room for any delta, decode, and check the page comes back.
fn round_trip(target: &PageBytes, base: &PageBytes) -> usize {
    let mut scratch = Box::new(EncodeScratch::new());
    let mut delta = vec![0u8; MAX_DELTA_BYTES];
    let len = encode(target, base, &mut scratch, &mut delta).expect("MAX_DELTA_BYTES always fits");
    let mut out = Box::new([0u8; PAGE_SIZE]);
    decode(base, &delta[..len], &mut out).expect("own delta decodes");
    assert!(out[..] == target[..], "round trip changed the page");
    len
}

/// A page of a few random "fields" repeated, like a heap of small objects.
fn structured_page() -> impl Strategy<Value = Box<PageBytes>> {
    (
        prop::collection::vec(any::<u8>(), 1..300),
        prop::collection::vec(0u8..4, 1..300),
    )
        .prop_map(|(values, zeros)| {
            let mut bytes = Vec::new();
            for (v, z) in values.iter().zip(zeros.iter().cycle()) {
                bytes.push(*v);
                bytes.extend(core::iter::repeat_n(0, usize::from(*z) * 4));
            }
            page_from(&bytes)
        })
}

/// An edit that keeps a page similar to its base.
#[derive(Debug, Clone)]
enum Edit {
    /// Overwrite bytes at an offset.
    Overwrite(usize, Vec<u8>),
    /// Insert bytes, shifting the rest of the page right (the tail falls off).
    Insert(usize, Vec<u8>),
    /// Delete bytes, shifting the rest left (zeroes come in at the end).
    Delete(usize, usize),
    /// Fill a span with one byte.
    Fill(usize, usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    let bytes = prop::collection::vec(any::<u8>(), 1..64);
    prop_oneof![
        (0..PAGE_SIZE, bytes.clone()).prop_map(|(at, b)| Edit::Overwrite(at, b)),
        (0..PAGE_SIZE, bytes).prop_map(|(at, b)| Edit::Insert(at, b)),
        (0..PAGE_SIZE, 1usize..200).prop_map(|(at, n)| Edit::Delete(at, n)),
        (0..PAGE_SIZE, 1usize..500, any::<u8>()).prop_map(|(at, n, b)| Edit::Fill(at, n, b)),
    ]
}

fn apply(page: &PageBytes, edits: &[Edit]) -> Box<PageBytes> {
    let mut bytes = page.to_vec();
    for e in edits {
        match e {
            Edit::Overwrite(at, b) => {
                for (i, v) in b.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *v;
                    }
                }
            }
            Edit::Insert(at, b) => {
                let tail = bytes.split_off(*at);
                bytes.extend_from_slice(b);
                bytes.extend_from_slice(&tail);
            }
            Edit::Delete(at, n) => {
                let end = (at + n).min(bytes.len());
                bytes.drain(at..&end);
            }
            Edit::Fill(at, n, b) => {
                let end = (at + n).min(bytes.len());
                bytes[*at..end].fill(*b);
            }
        }
        bytes.resize(PAGE_SIZE, 0);
    }
    let mut out = Box::new([0u8; PAGE_SIZE]);
    out.copy_from_slice(&bytes);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_pages_round_trip(t in prop::collection::vec(any::<u8>(), 1..PAGE_SIZE),
                               b in prop::collection::vec(any::<u8>(), 1..PAGE_SIZE)) {
        round_trip(&page_from(&t), &page_from(&b));
    }

    #[test]
    fn structured_pages_round_trip(t in structured_page(), b in structured_page()) {
        round_trip(&t, &b);
    }

    #[test]
    fn similar_pages_round_trip_and_stay_small(base in structured_page(),
                                               edits in prop::collection::vec(edit(), 1..6)) {
        let target = apply(&base, &edits);
        let len = round_trip(&target, &base);
        // A delta costs the new bytes plus a few instructions per edit (a new
        // displacement, the literals around a seam, a wrongly guessed repeat of a
        // common key in zero-heavy pages): far from a whole page.
        let touched: usize = edits.iter().map(|e| match e {
            Edit::Overwrite(_, b) | Edit::Insert(_, b) => b.len(),
            Edit::Delete(..) => 0,
            Edit::Fill(..) => 3,
        }).sum();
        prop_assert!(len <= touched + 48 * edits.len() + 16, "delta {len} bytes for {edits:?}");
    }

    #[test]
    fn limit_gives_incompressible_or_the_same_delta(t in structured_page(), b in structured_page(),
                                                    limit in 0usize..MAX_DELTA_BYTES) {
        let mut scratch = Box::new(EncodeScratch::new());
        let mut full = vec![0u8; MAX_DELTA_BYTES];
        let len = encode(&t, &b, &mut scratch, &mut full).unwrap();
        let mut bounded = vec![0u8; limit];
        match encode(&t, &b, &mut scratch, &mut bounded) {
            Ok(n) => {
                prop_assert!(len <= limit);
                prop_assert_eq!(&bounded[..n], &full[..len]);
            }
            Err(e) => {
                prop_assert_eq!(e, Error::Incompressible);
                prop_assert!(len > limit);
            }
        }
    }

    #[test]
    fn arbitrary_deltas_never_panic(base in prop::collection::vec(any::<u8>(), 1..64),
                                    delta in prop::collection::vec(any::<u8>(), 0..300)) {
        let base = page_from(&base);
        let mut out = Box::new([0u8; PAGE_SIZE]);
        match decode(&base, &delta, &mut out) {
            Ok(()) | Err(Error::Corrupt) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn damaged_deltas_fail_or_decode_without_panic(base in structured_page(),
                                                   edits in prop::collection::vec(edit(), 1..4),
                                                   flip in any::<prop::sample::Index>(),
                                                   mask in 1u8..=255,
                                                   cut in any::<prop::sample::Index>()) {
        let target = apply(&base, &edits);
        let mut scratch = Box::new(EncodeScratch::new());
        let mut delta = vec![0u8; MAX_DELTA_BYTES];
        let len = encode(&target, &base, &mut scratch, &mut delta).unwrap();
        delta.truncate(len);
        let mut out = Box::new([0u8; PAGE_SIZE]);
        let mut flipped = delta.clone();
        flipped[flip.index(len)] ^= mask;
        let _ = decode(&base, &flipped, &mut out);
        // A strict prefix stops mid-instruction or leaves the page short.
        let cut = cut.index(len);
        prop_assert_eq!(decode(&base, &delta[..cut], &mut out), Err(Error::Corrupt));
        // Trailing bytes are rejected too.
        let mut longer = delta.clone();
        longer.push(0);
        prop_assert_eq!(decode(&base, &longer, &mut out), Err(Error::Corrupt));
    }
}

#[test]
fn identical_pages_cost_two_bytes() {
    let base = page_from(b"some object header\x01\x02\x03");
    assert_eq!(round_trip(&base, &base), 2);
}

#[test]
fn zero_and_fill_targets_are_tiny_against_any_base() {
    let base = page_from(b"unrelated base bytes 0123456789");
    assert!(round_trip(&[0u8; PAGE_SIZE], &base) <= 3);
    assert!(round_trip(&[0xaau8; PAGE_SIZE], &base) <= 3);
}

#[test]
fn shifted_content_is_found_through_the_index() {
    let base: Box<PageBytes> = page_from(
        &(0..PAGE_SIZE)
            .map(|i| (i * 7 % 251) as u8 ^ (i / 251) as u8)
            .collect::<Vec<_>>(),
    );
    let mut target = Box::new([0u8; PAGE_SIZE]);
    target[100..].copy_from_slice(&base[..PAGE_SIZE - 100]);
    let len = round_trip(&target, &base);
    assert!(
        len < 16,
        "a shifted page should be one FILL and one COPY, got {len} bytes"
    );
}

#[test]
fn scratch_can_live_in_a_page() {
    let mut page = Box::new(Page::zeroed());
    let scratch = EncodeScratch::from_page(&mut page);
    let base = page_from(b"abcdefgh12345678");
    let mut target = *base;
    target[7] = b'!';
    let mut delta = [0u8; 32];
    let len = encode(&target, &base, scratch, &mut delta).unwrap();
    let mut out = [0u8; PAGE_SIZE];
    decode(&base, &delta[..len], &mut out).unwrap();
    assert_eq!(out, target);
}

#[test]
fn hostile_copies_are_rejected() {
    let base = page_from(b"x");
    let mut out = Box::new([0u8; PAGE_SIZE]);
    // COPY of 16 bytes at displacement -1 from position 0: before the base.
    assert_eq!(
        decode(&base, &[0x3e, 0x01, 0xfd, 0x7f], &mut out),
        Err(Error::Corrupt)
    );
    // COPY_SAME of 4096 at displacement +1 (set by a COPY of 1 byte): past the base end.
    assert_eq!(
        decode(&base, &[0x02, 0x02, 0xf9, 0x7f], &mut out),
        Err(Error::Corrupt)
    );
    // An ADD of 4096 literals with none following.
    assert_eq!(decode(&base, &[0xfc, 0x7f], &mut out), Err(Error::Corrupt));
    // A FILL of one byte, then an ADD of 4096: past the end of the page.
    let mut long_add = vec![0x03, 0x00, 0xfc, 0x7f];
    long_add.extend([0u8; PAGE_SIZE]);
    assert_eq!(decode(&base, &long_add, &mut out), Err(Error::Corrupt));
    // An empty delta covers nothing.
    assert_eq!(decode(&base, &[], &mut out), Err(Error::Corrupt));
}
