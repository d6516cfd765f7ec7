//! Page signatures for Difference Engine's `HashSimilarityDetector(k, s)`.
//!
//! A [`Sampler`] fixes, from a seed, `k * s` pseudo-random offsets of small blocks
//! (64 bytes in the paper, 16 by default here) inside a page. A page's [`Signature`] is `k` keys; key `j` combines the
//! hashes of blocks `j*s .. j*s+s` (and `j` itself, so the indexes never mix). Two
//! pages with the same key for some `j` agree on those `s` blocks: likely similar.
//! The offsets are the same for every page, so only similarity at equal offsets is
//! found (as in the paper); the delta codec finds the rest of the match itself.

use foldswap_mem::{Error, PAGE_SIZE};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bytes per sampled block in Difference Engine's setting.
pub const PAPER_BLOCK_BYTES: usize = 64;
/// Bytes per sampled block by default: measured best on the dev corpus (see
/// `docs/delta.md`): small blocks survive the scattered small changes (reference
/// counts, pointers) of heap pages that break a 64-byte block.
pub const DEFAULT_BLOCK_BYTES: usize = 16;
/// Smallest and largest block sizes accepted.
pub const BLOCK_BYTES_RANGE: core::ops::RangeInclusive<usize> = 8..=256;
/// Most indexes (`k`) a sampler supports; also the length of a [`Signature`].
pub const MAX_INDEXES: usize = 4;
/// Most hashes per index (`s`).
pub const MAX_HASHES_PER_INDEX: usize = 4;
/// The seed used by [`SimilarityConfig::default`].
pub const DEFAULT_SEED: u64 = 0x666f_6c64_7377_6170; // "foldswap"

/// `HashSimilarityDetector(k, s)` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimilarityConfig {
    /// `k`: independent indexes, each giving at most one candidate (1..=4).
    pub indexes: usize,
    /// `s`: block hashes combined into one index key (1..=4). Larger `s` means
    /// fewer, closer candidates.
    pub hashes_per_index: usize,
    /// Bytes per sampled block (8..=256; the paper used 64).
    pub block_bytes: usize,
    /// Chooses the block offsets. Hosts that persist signatures must keep it.
    pub seed: u64,
}

impl SimilarityConfig {
    /// Difference Engine's setting: `(k, s) = (2, 1)` over 64-byte blocks.
    pub const fn paper() -> Self {
        SimilarityConfig {
            indexes: 2,
            hashes_per_index: 1,
            block_bytes: PAPER_BLOCK_BYTES,
            seed: DEFAULT_SEED,
        }
    }
}

impl Default for SimilarityConfig {
    /// `(k, s) = (2, 1)` as in the paper, over [`DEFAULT_BLOCK_BYTES`]-byte blocks.
    fn default() -> Self {
        SimilarityConfig {
            block_bytes: DEFAULT_BLOCK_BYTES,
            ..Self::paper()
        }
    }
}

/// The `k` index keys of one page. Keep it with the stored page: removal from the
/// index needs it, not the page bytes. A key of 0 means "not indexed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Signature {
    keys: [u32; MAX_INDEXES],
}

impl Signature {
    /// A signature from keys saved earlier (see [`keys`](Self::keys)).
    pub const fn from_keys(keys: [u32; MAX_INDEXES]) -> Self {
        Signature { keys }
    }

    /// The keys (`k` used, the rest 0).
    pub fn keys(&self) -> &[u32; MAX_INDEXES] {
        &self.keys
    }

    /// The signature with every used key xored with `salt` (an unused key stays
    /// 0, and a used one never becomes 0): hosts that keep pages of several
    /// tenants apart file each tenant's pages under keys of its own.
    pub fn salted(&self, salt: u32) -> Signature {
        Signature {
            keys: self.keys.map(|key| match key {
                0 => 0,
                key => match key ^ salt {
                    0 => salt,
                    salted => salted,
                },
            }),
        }
    }
}

/// Computes signatures: the block offsets chosen from the seed.
#[derive(Debug, Clone)]
pub struct Sampler {
    offsets: [u16; MAX_INDEXES * MAX_HASHES_PER_INDEX],
    indexes: usize,
    hashes_per_index: usize,
    block_bytes: usize,
    seed: u64,
}

impl Sampler {
    /// Choose the offsets for `config`; fails with [`Error::InvalidArgument`] if
    /// `k` or `s` is outside 1..=4 or the block size outside [`BLOCK_BYTES_RANGE`].
    pub fn new(config: SimilarityConfig) -> Result<Self, Error> {
        if !(1..=MAX_INDEXES).contains(&config.indexes) {
            return Err(Error::InvalidArgument(
                "similarity indexes (k) must be 1..=4",
            ));
        }
        if !(1..=MAX_HASHES_PER_INDEX).contains(&config.hashes_per_index) {
            return Err(Error::InvalidArgument(
                "similarity hashes per index (s) must be 1..=4",
            ));
        }
        if !BLOCK_BYTES_RANGE.contains(&config.block_bytes) {
            return Err(Error::InvalidArgument(
                "similarity block size must be 8..=256 bytes",
            ));
        }
        let mut state = config.seed;
        let offsets = core::array::from_fn(|_| {
            (splitmix64(&mut state) % (PAGE_SIZE - config.block_bytes + 1) as u64) as u16
        });
        Ok(Sampler {
            offsets,
            indexes: config.indexes,
            hashes_per_index: config.hashes_per_index,
            block_bytes: config.block_bytes,
            seed: config.seed,
        })
    }

    /// `k`.
    pub fn indexes(&self) -> usize {
        self.indexes
    }

    /// The signature of `page`: `k * s` block hashes folded into `k` keys.
    ///
    /// ```
    /// use foldswap_delta::{Sampler, SimilarityConfig};
    /// let sampler = Sampler::new(SimilarityConfig::default()).unwrap();
    /// let a = [3u8; 4096];
    /// let mut b = a;
    /// b[0] = 4; // most blocks unchanged: most keys equal
    /// let (sa, sb) = (sampler.signature(&a), sampler.signature(&b));
    /// assert_eq!(sa.keys()[2..], [0, 0]); // k = 2
    /// assert_ne!(sa, sampler.signature(&[5u8; 4096]));
    /// ```
    pub fn signature(&self, page: &[u8; PAGE_SIZE]) -> Signature {
        let mut keys = [0u32; MAX_INDEXES];
        let blocks = self.offsets.chunks(self.hashes_per_index);
        for (index, (key, offsets)) in keys.iter_mut().zip(blocks).enumerate() {
            if index >= self.indexes {
                break;
            }
            let mut acc = self.seed ^ (index as u64).wrapping_mul(0xA076_1D64_78BD_642F);
            for &offset in offsets {
                let block = usize::from(offset);
                acc = mix(acc ^ block_hash(page, block, self.block_bytes, self.seed));
            }
            *key = fold_nonzero(acc);
        }
        Signature { keys }
    }
}

/// xxh3 of the `len`-byte block at `offset` (0 if it is not inside the page).
fn block_hash(page: &[u8; PAGE_SIZE], offset: usize, len: usize, seed: u64) -> u64 {
    page.get(offset..offset + len)
        .map_or(0, |block| xxh3_64_with_seed(block, seed))
}

/// A 64-bit mixer (the splitmix64 finaliser).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The next value of a splitmix64 sequence.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix(*state)
}

/// 64 bits to a non-zero 32-bit key (0 is "not indexed").
fn fold_nonzero(x: u64) -> u32 {
    let key = (x ^ (x >> 32)) as u32;
    if key == 0 { 1 } else { key }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_salted_signature_keeps_unused_keys_and_tells_used_ones_apart() {
        let sig = Signature::from_keys({
            let mut keys = [0; MAX_INDEXES];
            keys[0] = 7;
            keys[1] = 0x55;
            keys
        });
        let salted = sig.salted(0x55);
        assert_eq!(salted.keys()[0], 7 ^ 0x55);
        // The key equal to the salt does not become "unused".
        assert_eq!(salted.keys()[1], 0x55);
        assert!(salted.keys()[2..].iter().all(|&k| k == 0));
        assert_ne!(sig.salted(1), sig.salted(2));
        assert_eq!(sig.salted(0), sig);
    }

    #[test]
    fn rejects_out_of_range_parameters() {
        for (k, s, b) in [
            (0, 1, 64),
            (5, 1, 64),
            (1, 0, 64),
            (1, 5, 64),
            (1, 1, 7),
            (1, 1, 257),
        ] {
            let config = SimilarityConfig {
                indexes: k,
                hashes_per_index: s,
                block_bytes: b,
                seed: 1,
            };
            assert!(matches!(
                Sampler::new(config),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn keys_follow_their_own_blocks_only() {
        let config = SimilarityConfig {
            indexes: 4,
            hashes_per_index: 2,
            block_bytes: 64,
            seed: 9,
        };
        let sampler = Sampler::new(config).unwrap();
        let page: [u8; PAGE_SIZE] = core::array::from_fn(|i| (i * 7 % 253) as u8);
        let before = sampler.signature(&page);
        assert!(before.keys().iter().all(|&k| k != 0));
        // Change the bytes of block 0 of index 2 only (if no other sampled block overlaps).
        let offset = usize::from(sampler.offsets[4]);
        let overlaps = |i: usize| {
            let o = usize::from(sampler.offsets[i]);
            o < offset + 64 && offset < o + 64
        };
        let mut changed = page;
        changed[offset + 10] ^= 0xff;
        let after = sampler.signature(&changed);
        assert_ne!(after.keys()[2], before.keys()[2]);
        for index in [0, 1, 3] {
            let touched = (index * 2..index * 2 + 2).any(overlaps);
            if !touched {
                assert_eq!(after.keys()[index], before.keys()[index]);
            }
        }
    }

    #[test]
    fn seeds_choose_different_offsets() {
        let a = Sampler::new(SimilarityConfig::default()).unwrap();
        let b = Sampler::new(SimilarityConfig {
            seed: 1,
            ..SimilarityConfig::default()
        })
        .unwrap();
        assert_ne!(a.offsets, b.offsets);
        assert!(
            a.offsets
                .iter()
                .all(|&o| usize::from(o) <= PAGE_SIZE - DEFAULT_BLOCK_BYTES)
        );
    }
}
