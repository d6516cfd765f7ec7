//! `dedup-only`: what KSM does with a page.
//!
//! Model:
//!
//! * Pages with identical contents are kept once. A candidate is found by its
//!   xxh3 hash, and merged only after a full byte comparison (a hash match alone
//!   never merges). Zero pages are ordinary contents, as with KSM's default
//!   `use_zero_pages = 0`.
//! * At most [`MAX_PAGE_SHARING`] pages share one copy (KSM's default
//!   `max_page_sharing`); the next identical page starts another copy.
//! * Every kept copy is a raw page: KSM does not compress. (The model copies each
//!   kept page into its own memory — the `keep_copy` stage, mostly page faults on
//!   fresh memory — a cost KSM does not pay: it keeps the page where it is.)
//! * Metadata: [`RMAP_ITEM_BYTES`] per page (KSM's `rmap_item`, kept for every
//!   scanned page) and [`STABLE_NODE_BYTES`] per copy that is shared by two or more
//!   pages (its `stable_node`; an estimate of the x86-64 slab object).

use core::num::NonZeroU32;
use std::collections::HashMap;

use foldswap_mem::PAGE_SIZE;
use xxhash_rust::xxh3::xxh3_64;

use super::{Counts, StageClock, Strategy, StrategyError, Summary};

/// Pages that may share one kept copy (KSM's `max_page_sharing` default).
pub const MAX_PAGE_SHARING: u32 = 256;
/// KSM's per-page reverse-map item on x86-64.
pub const RMAP_ITEM_BYTES: u64 = 64;
/// KSM's node per shared copy in the stable tree (estimate).
pub const STABLE_NODE_BYTES: u64 = 64;

/// Copies the KSM model keeps of one content found on `pages` pages (each copy
/// has at most `MAX_PAGE_SHARING` (256) sharers).
///
/// ```
/// use foldswap_cli::strategy::dedup_only_copies_of;
/// assert_eq!(dedup_only_copies_of(1), 1);
/// assert_eq!(dedup_only_copies_of(256), 1);
/// assert_eq!(dedup_only_copies_of(333), 2);
/// ```
pub fn dedup_only_copies_of(pages: u64) -> u64 {
    pages.div_ceil(u64::from(MAX_PAGE_SHARING))
}

const STAGES: &[&str] = &["hash", "compare", "keep_copy", "load_copy"];
const STAGE_HASH: usize = 0;
const STAGE_COMPARE: usize = 1;
const STAGE_KEEP_COPY: usize = 2;
const STAGE_LOAD_COPY: usize = 3;

/// A kept copy's number, held plus one: "no copy" is `None`, never a number a copy
/// could have, and `Option<CopyRef>` is four bytes like the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CopyRef(NonZeroU32);

impl CopyRef {
    /// Copy number `index`; `None` past the last number that fits (`u32::MAX - 1`).
    fn new(index: usize) -> Option<Self> {
        let raw = u32::try_from(index).ok()?.checked_add(1)?;
        NonZeroU32::new(raw).map(CopyRef)
    }

    /// The copy's number: its place in `copies` (in pages) and `sharers`.
    fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

/// The KSM model; see the module documentation.
pub struct DedupOnly {
    /// The copy each page index holds (`None`: not stored).
    slots: Vec<Option<CopyRef>>,
    /// Kept copies, back to back.
    copies: Vec<u8>,
    /// Pages sharing each copy.
    sharers: Vec<u32>,
    /// Copies by content hash.
    by_hash: HashMap<u64, Vec<CopyRef>>,
    counts: Counts,
    clock: StageClock,
}

impl DedupOnly {
    /// An empty store.
    pub fn new() -> Self {
        DedupOnly {
            slots: Vec::new(),
            copies: Vec::new(),
            sharers: Vec::new(),
            by_hash: HashMap::new(),
            counts: Counts::default(),
            clock: StageClock::new(STAGES),
        }
    }

    /// A kept copy with exactly `page`'s bytes and room for one more sharer.
    fn find_copy(&mut self, hash: u64, page: &[u8; PAGE_SIZE]) -> Option<CopyRef> {
        let candidates = self.by_hash.get(&hash)?;
        let (copies, sharers) = (&self.copies, &self.sharers);
        self.clock.time(STAGE_COMPARE, || {
            candidates.iter().copied().find(|&copy| {
                let start = copy.index() * PAGE_SIZE;
                let room = sharers
                    .get(copy.index())
                    .is_some_and(|&n| n < MAX_PAGE_SHARING);
                room && copies.get(start..start + PAGE_SIZE) == Some(&page[..])
            })
        })
    }
}

impl Default for DedupOnly {
    fn default() -> Self {
        Self::new()
    }
}

impl Strategy for DedupOnly {
    fn name(&self) -> &'static str {
        "dedup-only"
    }

    fn model(&self) -> &'static str {
        "KSM: identical pages (byte-verified) kept once, at most 256 sharers per copy, \
         raw; 64 B rmap_item per page + 64 B stable_node per shared copy"
    }

    fn reserve(&mut self, pages: usize) {
        self.slots.reserve(pages);
        self.copies.reserve(pages.saturating_mul(PAGE_SIZE));
    }

    fn store(&mut self, index: u32, page: &[u8; PAGE_SIZE]) -> Result<(), StrategyError> {
        let hash = self.clock.time(STAGE_HASH, || xxh3_64(page));
        let copy = match self.find_copy(hash, page) {
            Some(copy) => {
                self.counts.identical += 1;
                copy
            }
            None => {
                let copy =
                    CopyRef::new(self.sharers.len()).ok_or_else(|| StrategyError::Refused {
                        index,
                        reason: "too many copies".into(),
                    })?;
                let copies = &mut self.copies;
                self.clock
                    .time(STAGE_KEEP_COPY, || copies.extend_from_slice(page));
                self.sharers.push(0);
                self.by_hash.entry(hash).or_default().push(copy);
                self.counts.raw += 1;
                copy
            }
        };
        if let Some(n) = self.sharers.get_mut(copy.index()) {
            *n += 1;
        }
        let index = index as usize;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        self.slots[index] = Some(copy);
        Ok(())
    }

    fn load(&mut self, index: u32, out: &mut [u8; PAGE_SIZE]) -> Result<(), StrategyError> {
        let Some(&Some(copy)) = self.slots.get(index as usize) else {
            return Err(StrategyError::UnknownPage(index));
        };
        let start = copy.index() * PAGE_SIZE;
        let (copies, clock) = (&self.copies, &mut self.clock);
        let bytes = copies
            .get(start..start + PAGE_SIZE)
            .ok_or(StrategyError::Corrupt {
                index,
                reason: format!("copy {} out of range", copy.index()),
            })?;
        clock.time(STAGE_LOAD_COPY, || out.copy_from_slice(bytes));
        Ok(())
    }

    fn summary(&self) -> Summary {
        let shared_copies = self.sharers.iter().filter(|&&n| n >= 2).count() as u64;
        Summary::new(
            self.counts,
            self.sharers.len() as u64 * PAGE_SIZE as u64,
            &[
                ("rmap_items", self.counts.total() * RMAP_ITEM_BYTES),
                ("stable_nodes", shared_copies * STABLE_NODE_BYTES),
            ],
            self.clock.stages(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{mixed_pages, round_trip};
    use super::*;

    #[test]
    fn identical_pages_are_kept_once() {
        let mut strategy = DedupOnly::new();
        let summary = round_trip(&mut strategy, &mixed_pages());
        // zero, text, noise repeat once each; the filled page is unique.
        assert_eq!(summary.counts.identical, 3);
        assert_eq!(summary.counts.raw, 4);
        assert_eq!(summary.data_bytes, 4 * PAGE_SIZE as u64);
        assert_eq!(
            summary.metadata_bytes,
            7 * RMAP_ITEM_BYTES + 3 * STABLE_NODE_BYTES
        );
    }

    #[test]
    fn a_full_copy_starts_another() {
        let mut strategy = DedupOnly::new();
        let pages = vec![[9u8; PAGE_SIZE]; MAX_PAGE_SHARING as usize + 3];
        let summary = round_trip(&mut strategy, &pages);
        assert_eq!(summary.counts.raw, 2);
        assert_eq!(summary.counts.identical, MAX_PAGE_SHARING as u64 + 1);
    }

    #[test]
    fn a_hash_match_alone_never_merges() {
        let mut strategy = DedupOnly::new();
        let (a, mut b) = ([1u8; PAGE_SIZE], [1u8; PAGE_SIZE]);
        b[100] = 2;
        strategy.store(0, &a).unwrap();
        // Force b under a's hash: it must still be kept apart after the comparison.
        let hash_of_a = xxh3_64(&a);
        assert!(strategy.find_copy(hash_of_a, &b).is_none());
        assert_eq!(
            strategy.find_copy(hash_of_a, &a).map(CopyRef::index),
            Some(0)
        );
    }

    #[test]
    fn copy_zero_is_a_copy_and_unstored_indexes_hold_none() {
        let mut strategy = DedupOnly::new();
        let page = [5u8; PAGE_SIZE];
        strategy.store(3, &page).unwrap();
        let mut out = [0u8; PAGE_SIZE];
        // Index 3 holds copy number 0; the indexes below it were never stored.
        strategy.load(3, &mut out).unwrap();
        assert_eq!(out, page);
        for index in 0..3 {
            assert!(matches!(
                strategy.load(index, &mut out),
                Err(StrategyError::UnknownPage(i)) if i == index
            ));
        }
        assert!(matches!(
            strategy.load(4, &mut out),
            Err(StrategyError::UnknownPage(4))
        ));
        assert_eq!(
            CopyRef::new(u32::MAX as usize - 1).map(CopyRef::index),
            Some(u32::MAX as usize - 1)
        );
        assert_eq!(CopyRef::new(u32::MAX as usize), None);
        assert_eq!(core::mem::size_of::<Option<CopyRef>>(), 4);
    }
}
