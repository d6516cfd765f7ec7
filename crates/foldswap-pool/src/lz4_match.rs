//! Comparing a page with an lz4 block without decompressing it.
//!
//! Deduplication must compare every byte of a candidate page with the stored copy
//! before it merges them. Decoding the stored lz4 block into a scratch page and then
//! comparing writes a page and reads it back; [`lz4_matches`] walks the block's
//! sequences instead and compares as it goes:
//!
//! - a literal run of `n` bytes at output position `pos` compares
//!   `candidate[pos..pos + n]` with the literal bytes;
//! - a match `(offset, len)` compares `candidate[pos..pos + len]` with
//!   `candidate[pos - offset..pos - offset + len]`.
//!
//! This is exact, overlapping matches included: if the candidate equals the decoded
//! output below `pos + k`, the decoder writes `decoded[pos + k] =
//! decoded[pos - offset + k] = candidate[pos - offset + k]`, so the candidate agrees
//! at `pos + k` exactly when that comparison holds. By induction, every comparison
//! holds ⟺ candidate == decoded. The decoded length must be exactly one page, and the
//! stream is held to the same rules as `lz4_flex::block::decompress_into` (the
//! decoder [`decompress_lz4`](crate::decompress_lz4) uses), so a stream accepted by one
//! is accepted by the other.
//!
//! It stops at the first difference (`Ok(false)`), so a corrupt tail after a
//! difference is not noticed; a stream that is corrupt where it is read is
//! [`Error::Corrupt`]. It never panics and never reads outside its inputs.

use foldswap_mem::{Error, PAGE_SIZE};

/// The shortest lz4 match.
const MIN_MATCH: usize = 4;
/// Bytes compared at once by the short-run comparison.
const WIDE: usize = 16;

/// `MASKS[n]`: the low `n` bytes of a little-endian 16-byte word.
const MASKS: [u128; WIDE + 1] = {
    let mut masks = [0u128; WIDE + 1];
    let mut n = 1;
    while n <= WIDE {
        masks[n] = u128::MAX >> (8 * (WIDE - n));
        n += 1;
    }
    masks
};

/// The mask of the first `n` bytes of a word (all of it for `n` ≥ 16).
#[inline]
fn mask(n: usize) -> u128 {
    MASKS.get(n).copied().unwrap_or(u128::MAX)
}

/// Whether the lz4 block `compressed` decodes to exactly `candidate`.
///
/// `Ok(true)` exactly when `decompress_lz4(compressed)` would give `candidate`;
/// `Ok(false)` at the first byte that differs; [`Error::Corrupt`] if the stream is
/// malformed up to that point or decodes to anything but one page.
///
/// ```
/// use foldswap_pool::{lz4_matches, CodecKind, CompressScratch};
/// let mut scratch = CompressScratch::boxed();
/// let mut page = [0u8; 4096];
/// page.iter_mut().enumerate().for_each(|(i, b)| *b = (i % 251) as u8);
/// let bytes = scratch.compress(CodecKind::Lz4, &page).unwrap().unwrap().to_vec();
/// assert_eq!(lz4_matches(&bytes, &page), Ok(true));
/// page[3000] ^= 1;
/// assert_eq!(lz4_matches(&bytes, &page), Ok(false));
/// ```
pub fn lz4_matches(compressed: &[u8], candidate: &[u8; PAGE_SIZE]) -> Result<bool, Error> {
    let input = compressed;
    let mut ip = 0usize;
    let mut pos = 0usize;
    if input.is_empty() {
        return Err(Error::Corrupt);
    }
    loop {
        let token = *input.get(ip).ok_or(Error::Corrupt)?;
        ip += 1;
        let mut literal = usize::from(token >> 4);
        if literal == 15 {
            literal = literal.saturating_add(read_length(input, &mut ip)?);
        }
        // No branch on an empty run: comparing 0 bytes is a masked no-op, and a
        // data-dependent branch per sequence costs more than it saves.
        if literal > input.len() - ip || literal > PAGE_SIZE - pos {
            return Err(Error::Corrupt);
        }
        if !same(input, ip, candidate, pos, literal) {
            return Ok(false);
        }
        ip += literal;
        pos += literal;
        if ip >= input.len() {
            // The last sequence: literals only.
            return if pos == PAGE_SIZE {
                Ok(true)
            } else {
                Err(Error::Corrupt)
            };
        }
        let offset = match input.get(ip..ip + 2) {
            Some(&[lo, hi]) => usize::from(u16::from_le_bytes([lo, hi])),
            _ => return Err(Error::Corrupt),
        };
        ip += 2;
        let mut len = MIN_MATCH + usize::from(token & 0xf);
        if len == MIN_MATCH + 15 {
            len = len.saturating_add(read_length(input, &mut ip)?);
        }
        if offset == 0 || offset > pos || len > PAGE_SIZE - pos {
            return Err(Error::Corrupt);
        }
        if !same(candidate, pos - offset, candidate, pos, len) {
            return Ok(false);
        }
        pos += len;
        if ip >= input.len() {
            // A block ends with literals, never with a match.
            return Err(Error::Corrupt);
        }
    }
}

/// An lz4 length continuation: bytes added while they are 255.
#[inline]
fn read_length(input: &[u8], ip: &mut usize) -> Result<usize, Error> {
    let mut n = 0usize;
    loop {
        let byte = *input.get(*ip).ok_or(Error::Corrupt)?;
        *ip += 1;
        n = n.saturating_add(usize::from(byte));
        if byte != 0xff {
            return Ok(n);
        }
    }
}

/// `a[a_at..a_at + len] == b[b_at..b_at + len]`; both ranges must lie within their
/// slices (false otherwise). Runs of up to 32 bytes, the usual lz4 literal run and
/// match, are compared as one (masked) or two 16-byte words instead of through
/// `memcmp`.
#[inline]
fn same(a: &[u8], a_at: usize, b: &[u8], b_at: usize, len: usize) -> bool {
    if len <= WIDE {
        // A 16-byte window from each position, when both have one: compare the
        // first `len` bytes of each (the rest is masked off by the shift).
        if let (Some(x), Some(y)) = (word(a, a_at), word(b, b_at)) {
            return (x ^ y) & mask(len) == 0;
        }
    } else if len <= 2 * WIDE {
        // Two windows, the first and the last 16 bytes of the run (overlapping).
        let tail = len - WIDE;
        return match (
            word(a, a_at),
            word(b, b_at),
            word(a, a_at + tail),
            word(b, b_at + tail),
        ) {
            (Some(x0), Some(y0), Some(x1), Some(y1)) => x0 == y0 && x1 == y1,
            _ => false,
        };
    }
    match (a.get(a_at..a_at + len), b.get(b_at..b_at + len)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// The 16 bytes of `s` at `at` as a little-endian word, if they are all in `s`.
#[inline]
fn word(s: &[u8], at: usize) -> Option<u128> {
    let bytes = s.get(at..)?.first_chunk::<WIDE>()?;
    Some(u128::from_le_bytes(*bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    use crate::{COMPRESS_BOUND, decompress_lz4};

    fn compress(page: &[u8; PAGE_SIZE]) -> Vec<u8> {
        let mut out = std::vec![0u8; COMPRESS_BOUND];
        let len = lz4_flex::block::compress_into(page, &mut out).unwrap();
        out.truncate(len);
        out
    }

    fn pattern(seed: u32) -> [u8; PAGE_SIZE] {
        let mut page = [0u8; PAGE_SIZE];
        let mut x = seed | 1;
        for (i, b) in page.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Mostly repetitive text with some noise: literals and matches of all sizes.
            *b = if x.is_multiple_of(7) {
                x as u8
            } else {
                b"abcabcabd foldswap "[i % 19]
            };
        }
        page
    }

    #[test]
    fn matches_what_it_encodes_and_nothing_else() {
        for seed in 0..20 {
            let page = pattern(seed);
            let bytes = compress(&page);
            assert_eq!(lz4_matches(&bytes, &page), Ok(true));
            for at in (0..PAGE_SIZE).step_by(97) {
                let mut other = page;
                other[at] ^= 0x40;
                assert_eq!(
                    lz4_matches(&bytes, &other),
                    Ok(false),
                    "seed {seed} at {at}"
                );
            }
        }
    }

    #[test]
    fn overlapping_matches_and_long_runs() {
        // One byte then a match of offset 1 over the rest of the page.
        let page = [9u8; PAGE_SIZE];
        let bytes = compress(&page);
        assert_eq!(lz4_matches(&bytes, &page), Ok(true));
        let mut last = page;
        last[PAGE_SIZE - 1] = 8;
        assert_eq!(lz4_matches(&bytes, &last), Ok(false));
        let mut first = page;
        first[0] = 8;
        assert_eq!(lz4_matches(&bytes, &first), Ok(false));
    }

    #[test]
    fn malformed_streams_are_corrupt_never_true() {
        let page = pattern(3);
        let bytes = compress(&page);
        assert_eq!(lz4_matches(&[], &page), Err(Error::Corrupt));
        for cut in [1, 2, bytes.len() / 2, bytes.len() - 1] {
            let mut out = [0u8; PAGE_SIZE];
            assert!(decompress_lz4(&bytes[..cut], &mut out).is_err());
            assert_ne!(lz4_matches(&bytes[..cut], &page), Ok(true), "cut {cut}");
        }
        // Shorter than a page: literals only, 10 bytes.
        let mut short: Vec<u8> = std::vec![0xa0];
        short.extend_from_slice(&page[..10]);
        assert_eq!(lz4_matches(&short, &page), Err(Error::Corrupt));
        // Offset zero and an offset before the start.
        assert_eq!(
            lz4_matches(&[0x10, page[0], 0, 0, 0x00], &page),
            Err(Error::Corrupt)
        );
        assert_eq!(
            lz4_matches(&[0x10, page[0], 2, 0, 0x00], &page),
            Err(Error::Corrupt)
        );
        // A length continuation that never ends.
        assert_eq!(lz4_matches(&[0xf0, 0xff, 0xff], &page), Err(Error::Corrupt));
    }
}
