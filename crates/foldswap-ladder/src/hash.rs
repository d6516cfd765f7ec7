//! The sampling page hash: a seeded permutation of the page's 1024 `u32` word
//! positions, an invertible per-word mix, and the full-page second-level hash.
//!
//! `hash_at(page, s)` mixes the words at the first `s` positions of the permutation
//! into a 32-bit state, starting from [`HASH_INIT`]. Every step of the mix
//!
//! ```text
//!   h = (h + w) * MIX_MUL        (mod 2^32; MIX_MUL is odd, so invertible)
//!   h = h ^ (h >> 15)            (an xorshift, invertible)
//! ```
//!
//! can be undone given the word `w`, so a stored hash moves from strength `a` to
//! strength `b` by mixing in (b > a) or un-mixing (b < a) only the `|b - a|` words
//! between them: [`SampledHasher::rehash`]. The rest of the page is never read again.
//! (Moving without reading *any* word is impossible: going up needs the new words,
//! and a 32-bit state cannot forget a word it does not know.)
//!
//! Strengths run from 0 to [`MAX_STRENGTH`] = 1034: past 1024 the permutation wraps
//! and the first 10 positions are mixed a second time, as in UKSM, so the last
//! words of a full-strength hash are avalanched too. Strengths above the maximum are
//! clamped to it everywhere, consistently, so clamping never breaks the delta rule.
//!
//! Because the all-zero page hashes to the same value whatever the permutation, the
//! zero-page hash of every strength is a compile-time table
//! ([`zero_page_hash`]), 4 KiB of read-only data and no runtime storage.

use core::mem::MaybeUninit;

use foldswap_mem::PAGE_SIZE;

/// `u32` word positions in a page: the permutation's length.
pub const WORD_POSITIONS: usize = PAGE_SIZE / 4;
/// The strength at which every word of the page is hashed once.
pub const FULL_STRENGTH: u32 = WORD_POSITIONS as u32;
/// The highest strength: the permutation wraps for 10 extra words (UKSM's 1034).
pub const MAX_STRENGTH: u32 = FULL_STRENGTH + 10;
/// The hash state before any word is mixed in (strength 0).
pub const HASH_INIT: u32 = 0x9747_b28c;

const MIX_MUL: u32 = 0x9e37_79b1;
const MIX_MUL_INV: u32 = inverse_mod_2_32(MIX_MUL);
const POSITION_MASK: usize = WORD_POSITIONS - 1;

/// The multiplicative inverse of odd `a` modulo 2^32 (Newton's iteration: each step
/// doubles the correct low bits; five steps from 3 correct bits reach 32+).
const fn inverse_mod_2_32(a: u32) -> u32 {
    let mut x = a;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// Mix one word into the state.
#[inline(always)]
fn mix(h: u32, word: u32) -> u32 {
    let h = h.wrapping_add(word).wrapping_mul(MIX_MUL);
    h ^ (h >> 15)
}

/// Undo [`mix`] of `word`.
#[inline(always)]
fn unmix(h: u32, word: u32) -> u32 {
    let h = h ^ (h >> 15) ^ (h >> 30);
    h.wrapping_mul(MIX_MUL_INV).wrapping_sub(word)
}

const fn zero_page_table() -> [u32; MAX_STRENGTH as usize + 1] {
    let mut table = [0u32; MAX_STRENGTH as usize + 1];
    let mut h = HASH_INIT;
    let mut s = 0;
    while s <= MAX_STRENGTH as usize {
        table[s] = h;
        // `mix(h, 0)`, spelled out because trait-free const code cannot call it.
        let m = h.wrapping_mul(MIX_MUL);
        h = m ^ (m >> 15);
        s += 1;
    }
    table
}

/// The sampled hash of the all-zero page at every strength 0..=MAX_STRENGTH.
static ZERO_PAGE_HASHES: [u32; MAX_STRENGTH as usize + 1] = zero_page_table();

/// The sampled hash of the all-zero page at `strength` (clamped to [`MAX_STRENGTH`]),
/// from a precomputed table. It is the same for every seed.
///
/// ```
/// use foldswap_ladder::{SampledHasher, zero_page_hash};
/// let hasher = SampledHasher::new(7);
/// assert_eq!(hasher.hash_at(&[0u8; 4096], 64), zero_page_hash(64));
/// ```
pub fn zero_page_hash(strength: u32) -> u32 {
    let s = clamp_strength(strength) as usize;
    ZERO_PAGE_HASHES.get(s).copied().unwrap_or(HASH_INIT)
}

/// The full-page hash of the second level: xxh3-64 over all 4096 bytes.
#[inline]
pub fn full_hash(page: &[u8; PAGE_SIZE]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(page)
}

/// `strength` limited to `0..=MAX_STRENGTH`.
pub const fn clamp_strength(strength: u32) -> u32 {
    if strength > MAX_STRENGTH {
        MAX_STRENGTH
    } else {
        strength
    }
}

/// The page viewed as its 1024 `u32` words (little-endian on every host, so a hash is
/// the same on every machine).
fn page_words(page: &[u8; PAGE_SIZE]) -> &[[u8; 4]; WORD_POSITIONS] {
    let (words, _) = page.as_chunks::<4>();
    match words.first_chunk::<WORD_POSITIONS>() {
        Some(words) => words,
        // 4096 / 4 == 1024 exactly: unreachable, but never a panic.
        None => &[[0; 4]; WORD_POSITIONS],
    }
}

/// The sampling hasher: a seeded random permutation of the page's word positions.
///
/// It is 2 KiB plus a seed (positions are stored as `u16`). [`new`](Self::new)
/// returns it by value, which is fine in userspace; a kernel host, whose stack is
/// 16 KiB, builds it where it lives with [`init_in_place`](Self::init_in_place) (or
/// keeps one and calls [`reseed`](Self::reseed)) so no 2 KiB temporary is made.
///
/// # Invariants
///
/// `positions` is a permutation of `0..WORD_POSITIONS` (each word position exactly
/// once), the one `seed` draws: so the first `s ≤ 1024` steps read `s` distinct words,
/// and `rehash` can undo exactly the steps it knows.
///
/// ```
/// use foldswap_ladder::SampledHasher;
/// let hasher = SampledHasher::new(42);
/// let mut page = [0u8; 4096];
/// page[100] = 1;
/// let h16 = hasher.hash_at(&page, 16);
/// let h64 = hasher.hash_at(&page, 64);
/// // Moving a stored hash reads only the 48 words in between.
/// assert_eq!(hasher.rehash(h16, 16, 64, &page), h64);
/// assert_eq!(hasher.rehash(h64, 64, 16, &page), h16);
/// ```
#[derive(Clone)]
pub struct SampledHasher {
    positions: [u16; WORD_POSITIONS],
    seed: u64,
}

impl SampledHasher {
    /// A hasher whose permutation is drawn from `seed`. Returns 2 KiB by value; see
    /// [`init_in_place`](Self::init_in_place) for hosts with small stacks.
    // `#[inline]`: codegen happens only in the crates that call it, so a kernel
    // module that builds hashers in place carries no 2 KiB frame.
    #[inline]
    pub fn new(seed: u64) -> Self {
        let mut slot = MaybeUninit::uninit();
        Self::init_in_place(&mut slot, seed);
        // SAFETY: `init_in_place` initialised every field.
        unsafe { slot.assume_init() }
    }

    /// Build a hasher inside caller storage (a kmalloc'd or static slot) without a
    /// stack temporary, and return it.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use foldswap_ladder::SampledHasher;
    /// let mut slot = MaybeUninit::uninit();
    /// let hasher = SampledHasher::init_in_place(&mut slot, 42);
    /// assert_eq!(hasher.hash_at(&[1u8; 4096], 8), SampledHasher::new(42).hash_at(&[1u8; 4096], 8));
    /// ```
    pub fn init_in_place(slot: &mut MaybeUninit<Self>, seed: u64) -> &mut Self {
        let this = slot.as_mut_ptr();
        // SAFETY: `this` points to writable, aligned storage for a `SampledHasher`;
        // we initialise both fields through raw pointers (all of `positions`, element
        // by element, and `seed`) before `assume_init_mut` below.
        unsafe {
            let positions = core::ptr::addr_of_mut!((*this).positions).cast::<u16>();
            for i in 0..WORD_POSITIONS {
                positions.add(i).write(i as u16);
            }
            core::ptr::addr_of_mut!((*this).seed).write(seed);
        }
        // SAFETY: every field was initialised just above.
        let hasher = unsafe { slot.assume_init_mut() };
        hasher.reseed(seed);
        hasher
    }

    /// Draw a new permutation from `seed`, in place. Every stored hash becomes stale.
    pub fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        for (i, p) in self.positions.iter_mut().enumerate() {
            *p = i as u16;
        }
        let mut rng = crate::rng::SplitMix64::new(seed);
        // Fisher-Yates.
        // INVARIANT: swaps of the identity keep a permutation.
        for i in (1..WORD_POSITIONS).rev() {
            let j = rng.below(i as u32 + 1) as usize;
            self.positions.swap(i, j.min(i));
        }
    }

    /// The seed the permutation was drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The word position hashed at step `i` (wrapping past 1024).
    pub fn position(&self, i: u32) -> usize {
        let p = self.positions.get(i as usize & POSITION_MASK).copied();
        p.unwrap_or(0) as usize & POSITION_MASK
    }

    /// The sampled hash of `page` at `strength` (clamped to [`MAX_STRENGTH`]): the
    /// words at the first `strength` positions of the permutation, mixed in order.
    #[inline]
    pub fn hash_at(&self, page: &[u8; PAGE_SIZE], strength: u32) -> u32 {
        self.mix_forward(HASH_INIT, page_words(page), 0, clamp_strength(strength))
    }

    /// Move `old_hash`, the sampled hash of `page` at strength `from`, to strength
    /// `to`, reading only the `|to - from|` words between them. Both strengths are
    /// clamped to [`MAX_STRENGTH`], as in [`hash_at`](Self::hash_at).
    ///
    /// If `page` changed since `old_hash` was taken, the result is simply the hash
    /// of a page that never existed: it will not match, which is safe (merges are
    /// byte-verified anyway).
    #[inline]
    pub fn rehash(&self, old_hash: u32, from: u32, to: u32, page: &[u8; PAGE_SIZE]) -> u32 {
        let (from, to) = (clamp_strength(from), clamp_strength(to));
        let words = page_words(page);
        if to >= from {
            self.mix_forward(old_hash, words, from, to)
        } else {
            self.mix_backward(old_hash, words, to, from)
        }
    }

    /// The second-level hash (xxh3-64 of the whole page); see [`full_hash`].
    #[inline]
    pub fn full_hash(&self, page: &[u8; PAGE_SIZE]) -> u64 {
        full_hash(page)
    }

    /// The all-zero page's hash at `strength`; see [`zero_page_hash`].
    pub fn zero_page_hash(&self, strength: u32) -> u32 {
        zero_page_hash(strength)
    }

    /// Mix steps `from..to` into `h`.
    #[inline(always)]
    fn mix_forward(
        &self,
        mut h: u32,
        words: &[[u8; 4]; WORD_POSITIONS],
        from: u32,
        to: u32,
    ) -> u32 {
        for i in from..to {
            h = mix(h, word_at(words, self.position(i)));
        }
        h
    }

    /// Undo steps `to..from` of `h`, last first.
    #[inline(always)]
    fn mix_backward(
        &self,
        mut h: u32,
        words: &[[u8; 4]; WORD_POSITIONS],
        to: u32,
        from: u32,
    ) -> u32 {
        for i in (to..from).rev() {
            h = unmix(h, word_at(words, self.position(i)));
        }
        h
    }
}

impl core::fmt::Debug for SampledHasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SampledHasher")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

#[inline(always)]
fn word_at(words: &[[u8; 4]; WORD_POSITIONS], position: usize) -> u32 {
    // The mask keeps the index in bounds, so this indexing cannot fail.
    u32::from_le_bytes(words[position & POSITION_MASK])
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn mix_inverts() {
        assert_eq!(MIX_MUL.wrapping_mul(MIX_MUL_INV), 1);
        for (h, w) in [
            (0u32, 0u32),
            (1, 2),
            (u32::MAX, 7),
            (0xdead_beef, 0x1234_5678),
        ] {
            assert_eq!(unmix(mix(h, w), w), h);
        }
    }

    #[test]
    fn permutation_is_a_permutation_and_depends_on_seed() {
        let a = SampledHasher::new(1);
        let b = SampledHasher::new(2);
        let mut seen = [false; WORD_POSITIONS];
        for i in 0..FULL_STRENGTH {
            let p = a.position(i);
            assert!(!seen[p], "position {p} drawn twice");
            seen[p] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let differ = (0..FULL_STRENGTH)
            .filter(|&i| a.position(i) != b.position(i))
            .count();
        assert!(
            differ > 900,
            "seeds 1 and 2 give near-identical permutations"
        );
        // Wraps for the extra 10 steps.
        assert_eq!(a.position(FULL_STRENGTH + 3), a.position(3));
    }

    #[test]
    fn in_place_equals_new_and_reseed() {
        let mut slot = MaybeUninit::uninit();
        let built = SampledHasher::init_in_place(&mut slot, 99);
        let new = SampledHasher::new(99);
        let mut reseeded = SampledHasher::new(5);
        reseeded.reseed(99);
        let page: Vec<u8> = (0..PAGE_SIZE).map(|i| (i * 31 % 251) as u8).collect();
        let page: &[u8; PAGE_SIZE] = page.as_slice().try_into().unwrap();
        for s in [0, 1, 64, 1024, 1034] {
            assert_eq!(built.hash_at(page, s), new.hash_at(page, s));
            assert_eq!(reseeded.hash_at(page, s), new.hash_at(page, s));
        }
    }

    #[test]
    fn zero_page_table_matches_hashing_for_every_strength() {
        let hasher = SampledHasher::new(0x5eed);
        let zero = [0u8; PAGE_SIZE];
        for s in 0..=MAX_STRENGTH + 3 {
            assert_eq!(hasher.hash_at(&zero, s), zero_page_hash(s), "strength {s}");
        }
    }

    #[test]
    fn a_sampled_word_changes_the_hash_and_an_unsampled_one_does_not() {
        let hasher = SampledHasher::new(3);
        let base = [0x11u8; PAGE_SIZE];
        let sampled = hasher.position(5);
        let unsampled = hasher.position(500);
        let mut touched = base;
        touched[sampled * 4] ^= 1;
        assert_ne!(hasher.hash_at(&touched, 8), hasher.hash_at(&base, 8));
        let mut other = base;
        other[unsampled * 4] ^= 1;
        assert_eq!(hasher.hash_at(&other, 8), hasher.hash_at(&base, 8));
        // At full strength every word counts.
        assert_ne!(
            hasher.hash_at(&other, FULL_STRENGTH),
            hasher.hash_at(&base, FULL_STRENGTH)
        );
        assert_ne!(full_hash(&other), full_hash(&base));
    }

    fn page_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), PAGE_SIZE),
            // Sparse pages: mostly zero with a few set bytes (common in real memory).
            proptest::collection::vec((0..PAGE_SIZE, any::<u8>()), 0..20).prop_map(|sets| {
                let mut page = std::vec![0u8; PAGE_SIZE];
                for (i, b) in sets {
                    page[i] = b;
                }
                page
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Hashing at strength `to` directly equals moving a hash from any other
        /// strength `from` to `to`, in either direction, including clamped strengths.
        #[test]
        fn rehash_from_any_strength_equals_direct_hash(
            page in page_strategy(),
            seed in any::<u64>(),
            from in 0u32..=MAX_STRENGTH + 5,
            to in 0u32..=MAX_STRENGTH + 5,
        ) {
            let hasher = SampledHasher::new(seed);
            let page: &[u8; PAGE_SIZE] = page.as_slice().try_into().unwrap();
            let stored = hasher.hash_at(page, from);
            prop_assert_eq!(hasher.rehash(stored, from, to, page), hasher.hash_at(page, to));
        }

        /// Every pair of strengths along a path composes.
        #[test]
        fn rehash_composes_along_a_path(
            page in page_strategy(),
            path in proptest::collection::vec(0u32..=MAX_STRENGTH, 2..8),
        ) {
            let hasher = SampledHasher::new(77);
            let page: &[u8; PAGE_SIZE] = page.as_slice().try_into().unwrap();
            let mut h = hasher.hash_at(page, path[0]);
            for pair in path.windows(2) {
                h = hasher.rehash(h, pair[0], pair[1], page);
            }
            prop_assert_eq!(h, hasher.hash_at(page, *path.last().unwrap()));
        }
    }
}
