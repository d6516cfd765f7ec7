//! The similarity index: signature key -> the id of a page that had it.
//!
//! One hash table serves all `k` indexes (each key already mixes in its index
//! number). It lives in pages from the host's [`PageProvider`]:
//!
//! ```text
//!   SimilarityIndex { directory page }
//!                         │  [table page 0, table page 1, ... ]  (up to MAX_TABLE_PAGES)
//!                         ▼
//!   table page: [bucket 0: WAYS entries][bucket 1]...   entry = (key u32, id)
//! ```
//!
//! A key lands in bucket `(key * 0x9E3779B1 mod 2^32) * buckets >> 32`. A bucket keeps its entries newest
//! first, one entry per key: inserting a key that is there already just points it at
//! the newer page; inserting into a full bucket evicts the oldest entry. The index is
//! a cache of candidates, nothing more: an evicted or stale entry costs a missed or
//! useless candidate, never a wrong page, because the caller byte-verifies every
//! candidate by encoding (and the backend decodes) against it.
//!
//! A growable index doubles its table (up to its maximum) when three quarters of the
//! entries are used. Growth is the only allocation after [`SimilarityIndex::new`];
//! if the provider refuses, the index keeps working at its current size (by
//! eviction) and counts the failure.

use core::marker::PhantomData;
use core::mem::{MaybeUninit, align_of, size_of};
use core::ptr::NonNull;

use foldswap_mem::{Error, PAGE_SIZE, Page, PageProvider};

use crate::signature::{MAX_INDEXES, Sampler, Signature, SimilarityConfig};

/// Entries per bucket. Four ways keep a lookup within one cache line for 8-16 byte entries.
pub const WAYS: usize = 4;
/// Most table pages an index can hold: one directory page of pointers
/// (512 pages = 2 MiB on 64-bit, 256k entries with 8-byte entries).
pub const MAX_TABLE_PAGES: usize = PAGE_SIZE / size_of::<usize>();

/// How much memory the table may take, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexCapacity {
    /// Table pages allocated by [`SimilarityIndex::new`] (at least 1).
    pub initial_pages: usize,
    /// The table doubles up to this many pages; equal to `initial_pages` for a
    /// fixed-size index. At most [`MAX_TABLE_PAGES`].
    pub max_pages: usize,
}

impl IndexCapacity {
    /// A table that never grows.
    pub const fn fixed(pages: usize) -> Self {
        IndexCapacity {
            initial_pages: pages,
            max_pages: pages,
        }
    }

    /// A table that starts with one page and doubles up to `max_pages`.
    pub const fn growable(max_pages: usize) -> Self {
        IndexCapacity {
            initial_pages: 1,
            max_pages,
        }
    }
}

/// What the index did, for the host's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Keys added to the table.
    pub added: u64,
    /// Keys that were already present and now name a newer page.
    pub updated: u64,
    /// Entries pushed out of a full bucket.
    pub evicted: u64,
    /// Entries removed by [`SimilarityIndex::remove`].
    pub removed: u64,
    /// Calls to [`SimilarityIndex::candidates`].
    pub lookups: u64,
    /// Lookups that returned at least one candidate.
    pub hits: u64,
    /// Times the table doubled.
    pub grown: u64,
    /// Times the provider refused pages for growth (or for a smaller table).
    pub grow_failures: u64,
    /// Times the table was rebuilt smaller ([`SimilarityIndex::set_max_pages`]).
    pub shrunk: u64,
}

/// Up to `k` candidate ids for a page, without repeats, newest index first.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<Id> {
    ids: [Option<Id>; MAX_INDEXES],
}

impl<Id: Copy + PartialEq> Candidates<Id> {
    fn push(&mut self, id: Id) {
        if self.ids.iter().flatten().any(|&known| known == id) {
            return;
        }
        if let Some(free) = self.ids.iter_mut().find(|slot| slot.is_none()) {
            *free = Some(id);
        }
    }

    /// The candidates.
    pub fn iter(&self) -> impl Iterator<Item = Id> + '_ {
        self.ids.iter().flatten().copied()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.ids.iter().all(Option::is_none)
    }
}

/// One slot of a bucket. `key == 0` marks it empty, and then `id` is not initialized.
#[derive(Clone, Copy)]
#[repr(C)]
struct Entry<Id: Copy> {
    key: u32,
    id: MaybeUninit<Id>,
}

impl<Id: Copy> Entry<Id> {
    const EMPTY: Self = Entry {
        key: 0,
        id: MaybeUninit::uninit(),
    };

    fn id(&self) -> Option<Id> {
        // SAFETY: every entry with a non-zero key was written with an initialized id
        // (`Bucket::put`); empty entries are never read.
        (self.key != 0).then(|| unsafe { self.id.assume_init() })
    }
}

/// What [`Bucket::put`] did.
enum Put {
    Added,
    Updated,
    Evicted,
}

type Bucket<Id> = [Entry<Id>; WAYS];

/// Put `(key, id)` at the front of `bucket` (occupied entries stay a prefix).
fn put<Id: Copy>(bucket: &mut Bucket<Id>, key: u32, id: Id) -> Put {
    let new = Entry {
        key,
        id: MaybeUninit::new(id),
    };
    let (upto, outcome) = match bucket.iter().position(|e| e.key == key) {
        Some(at) => (at, Put::Updated),
        None if bucket[WAYS - 1].key != 0 => (WAYS - 1, Put::Evicted),
        None => (
            bucket.iter().position(|e| e.key == 0).unwrap_or(0),
            Put::Added,
        ),
    };
    if let Some(moved) = bucket.get_mut(..=upto) {
        moved.rotate_right(1);
        moved[0] = new;
    }
    outcome
}

/// Remove `(key, id)` from `bucket` if present; true if it was.
fn take<Id: Copy + PartialEq>(bucket: &mut Bucket<Id>, key: u32, id: Id) -> bool {
    let Some(at) = bucket
        .iter()
        .position(|e| e.key == key && e.id() == Some(id))
    else {
        return false;
    };
    bucket[at..].rotate_left(1);
    bucket[WAYS - 1] = Entry::EMPTY;
    true
}

/// The table pages and the directory naming them.
struct Table<Id: Copy> {
    directory: NonNull<Page>,
    pages: usize,
    buckets: usize,
    _ids: PhantomData<Id>,
}

type Directory = [Option<NonNull<Page>>; MAX_TABLE_PAGES];

impl<Id: Copy> Table<Id> {
    const BUCKETS_PER_PAGE: usize = PAGE_SIZE / size_of::<Entry<Id>>() / WAYS;

    /// Allocate a directory and `pages` empty table pages; on failure give back
    /// whatever was taken.
    fn allocate<P: PageProvider>(provider: &P, pages: usize) -> Result<Self, Error> {
        let pages = pages.min(MAX_TABLE_PAGES);
        let directory = provider.alloc_page()?;
        let dir = directory.as_ptr().cast::<Option<NonNull<Page>>>();
        for slot in 0..MAX_TABLE_PAGES {
            // SAFETY: the directory page is ours, 4096 bytes aligned to 4096, and
            // holds exactly MAX_TABLE_PAGES pointer-sized slots.
            unsafe { dir.add(slot).write(None) };
        }
        let mut table = Table {
            directory,
            pages: 0,
            buckets: 0,
            _ids: PhantomData,
        };
        while table.pages < pages {
            let adopted = provider.alloc_page().map(|page| table.adopt(page));
            let failure = match adopted {
                Ok(Ok(())) => continue,
                Ok(Err(page)) => {
                    // SAFETY: the page just came from `provider` and was not stored.
                    unsafe { provider.free_page(page) };
                    Error::CapacityExceeded
                }
                Err(e) => e,
            };
            table.free(provider);
            return Err(failure);
        }
        Ok(table)
    }

    /// Clear a fresh page and append it to the table; hands the page back if the
    /// directory is full.
    fn adopt(&mut self, page: NonNull<Page>) -> Result<(), NonNull<Page>> {
        let entries = page.as_ptr().cast::<Entry<Id>>();
        for slot in 0..Self::BUCKETS_PER_PAGE * WAYS {
            // SAFETY: the page is ours and 4096 bytes; `slot` stays below
            // PAGE_SIZE / size_of::<Entry>, and 4096 alignment covers Entry's.
            unsafe { entries.add(slot).write(Entry::EMPTY) };
        }
        let index = self.pages;
        let slot = self.directory_mut().get_mut(index).ok_or(page)?;
        *slot = Some(page);
        self.pages += 1;
        self.buckets += Self::BUCKETS_PER_PAGE;
        Ok(())
    }

    fn directory(&self) -> &Directory {
        // SAFETY: the directory page was fully initialized in `allocate` and is
        // only reached through `self`, whose borrow this one follows.
        unsafe { &*self.directory.as_ptr().cast::<Directory>() }
    }

    fn directory_mut(&mut self) -> &mut Directory {
        // SAFETY: as in `directory`, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.directory.as_ptr().cast::<Directory>() }
    }

    fn bucket_of(&self, key: u32) -> usize {
        // Fibonacci hashing first, so keys need not be uniform (saved or test keys).
        let spread = key.wrapping_mul(0x9E37_79B1);
        ((u64::from(spread) * self.buckets as u64) >> 32) as usize
    }

    fn bucket(&self, index: usize) -> Option<&Bucket<Id>> {
        let page = (*self.directory().get(index / Self::BUCKETS_PER_PAGE)?)?;
        let first = (index % Self::BUCKETS_PER_PAGE) * WAYS;
        // SAFETY: a directory page holds initialized entries; `first + WAYS` is
        // within BUCKETS_PER_PAGE * WAYS of them; the borrow follows `&self`.
        Some(unsafe {
            &*page
                .as_ptr()
                .cast::<Entry<Id>>()
                .add(first)
                .cast::<Bucket<Id>>()
        })
    }

    fn bucket_mut(&mut self, index: usize) -> Option<&mut Bucket<Id>> {
        let page = (*self.directory().get(index / Self::BUCKETS_PER_PAGE)?)?;
        let first = (index % Self::BUCKETS_PER_PAGE) * WAYS;
        // SAFETY: as in `bucket`, and `&mut self` makes this borrow unique.
        Some(unsafe {
            &mut *page
                .as_ptr()
                .cast::<Entry<Id>>()
                .add(first)
                .cast::<Bucket<Id>>()
        })
    }

    /// Give every page back to `provider`.
    fn free<P: PageProvider>(&mut self, provider: &P) {
        for slot in self.directory_mut().iter_mut() {
            if let Some(page) = slot.take() {
                // SAFETY: the page came from `provider` in `allocate` and its
                // pointer is dropped from the directory here.
                unsafe { provider.free_page(page) };
            }
        }
        // SAFETY: the directory came from `provider` and is not used again: `self`
        // is being dropped or replaced by the caller.
        unsafe { provider.free_page(self.directory) };
        self.pages = 0;
        self.buckets = 0;
    }
}

/// Difference Engine's `HashSimilarityDetector(k, s)`: finds stored pages likely
/// similar to a new one. Not internally synchronized (wrap it in a lock to share).
///
/// ```
/// use foldswap_delta::{IndexCapacity, SimilarityConfig, SimilarityIndex};
/// use foldswap_mem::StdPageProvider;
/// let mut index = SimilarityIndex::<u32, _>::new(
///     StdPageProvider, SimilarityConfig::default(), IndexCapacity::growable(64)).unwrap();
/// let stored: [u8; 4096] = core::array::from_fn(|i| (i % 251) as u8);
/// let sig = index.signature(&stored);
/// index.insert(&sig, 7);
/// let mut new_page = stored;
/// new_page[4095] ^= 1; // a small change: probably the same sampled blocks
/// let candidates = index.candidates(&index.signature(&new_page));
/// assert_eq!(candidates.iter().next(), Some(7));
/// index.remove(&sig, 7);
/// assert!(index.candidates(&sig).is_empty());
/// ```
pub struct SimilarityIndex<Id: Copy + PartialEq, P: PageProvider> {
    provider: P,
    sampler: Sampler,
    table: Table<Id>,
    max_pages: usize,
    entries: usize,
    inserts_before_retry: usize,
    stats: IndexStats,
}

// SAFETY: the index owns its pages exclusively and stores `Id`s by value; moving it
// moves that ownership, sound when `Id` and the provider are `Send`.
unsafe impl<Id: Copy + PartialEq + Send, P: PageProvider + Send> Send for SimilarityIndex<Id, P> {}
// SAFETY: `&SimilarityIndex` only reads its pages.
unsafe impl<Id: Copy + PartialEq + Sync, P: PageProvider + Sync> Sync for SimilarityIndex<Id, P> {}

impl<Id: Copy + PartialEq, P: PageProvider> SimilarityIndex<Id, P> {
    /// An empty index with `capacity.initial_pages` table pages (plus one directory
    /// page) from `provider`. Fails with [`Error::OutOfMemory`] if the provider
    /// refuses them, [`Error::InvalidArgument`] for a bad config or capacity, or an
    /// `Id` too large (over 60 bytes) or over-aligned for a page.
    pub fn new(
        provider: P,
        config: SimilarityConfig,
        capacity: IndexCapacity,
    ) -> Result<Self, Error> {
        let sampler = Sampler::new(config)?;
        if capacity.initial_pages == 0
            || capacity.initial_pages > capacity.max_pages
            || capacity.max_pages > MAX_TABLE_PAGES
        {
            return Err(Error::InvalidArgument(
                "index capacity: need 1 <= initial_pages <= max_pages <= MAX_TABLE_PAGES",
            ));
        }
        if Table::<Id>::BUCKETS_PER_PAGE == 0 || align_of::<Entry<Id>>() > PAGE_SIZE {
            return Err(Error::InvalidArgument("index id too large for a page"));
        }
        let table = Table::allocate(&provider, capacity.initial_pages)?;
        Ok(SimilarityIndex {
            provider,
            sampler,
            table,
            max_pages: capacity.max_pages,
            entries: 0,
            inserts_before_retry: 0,
            stats: IndexStats::default(),
        })
    }

    /// The signature of `page` under this index's `(k, s, seed)`.
    pub fn signature(&self, page: &[u8; PAGE_SIZE]) -> Signature {
        self.sampler.signature(page)
    }

    /// Remember `id` as the newest page with signature `sig`. May evict older
    /// entries; may grow the table (growable capacity), never fails.
    pub fn insert(&mut self, sig: &Signature, id: Id) {
        self.maybe_grow();
        for &key in sig.keys().iter().filter(|&&k| k != 0) {
            let index = self.table.bucket_of(key);
            let Some(bucket) = self.table.bucket_mut(index) else {
                continue;
            };
            match put(bucket, key, id) {
                Put::Added => {
                    self.entries += 1;
                    self.stats.added += 1;
                }
                Put::Updated => self.stats.updated += 1,
                Put::Evicted => self.stats.evicted += 1,
            }
        }
    }

    /// Forget `id` under `sig` (entries that now name another page stay). Returns
    /// true if anything was removed.
    pub fn remove(&mut self, sig: &Signature, id: Id) -> bool {
        let mut removed = false;
        for &key in sig.keys().iter().filter(|&&k| k != 0) {
            let index = self.table.bucket_of(key);
            if let Some(bucket) = self.table.bucket_mut(index)
                && take(bucket, key, id)
            {
                self.entries = self.entries.saturating_sub(1);
                self.stats.removed += 1;
                removed = true;
            }
        }
        removed
    }

    /// Up to `k` ids of pages that shared a key with `sig` when inserted. They may be
    /// stale: verify before use.
    pub fn candidates(&mut self, sig: &Signature) -> Candidates<Id> {
        let found = self.peek_candidates(sig);
        self.stats.lookups += 1;
        self.stats.hits += u64::from(!found.is_empty());
        found
    }

    /// [`candidates`](Self::candidates) without counting the lookup (takes `&self`).
    pub fn peek_candidates(&self, sig: &Signature) -> Candidates<Id> {
        let mut found = Candidates {
            ids: [None; MAX_INDEXES],
        };
        for &key in sig.keys().iter().filter(|&&k| k != 0) {
            let bucket = self.table.bucket(self.table.bucket_of(key));
            if let Some(id) = bucket.and_then(|b| b.iter().find(|e| e.key == key)?.id()) {
                found.push(id);
            }
        }
        found
    }

    /// Forget every key and shrink the table to one page (a host whose stored
    /// pages are all gone gives the grown table back). On [`Error::OutOfMemory`]
    /// for the new page nothing changed.
    pub fn clear_and_shrink(&mut self) -> Result<(), Error> {
        if self.table.pages <= 1 && self.entries == 0 {
            return Ok(());
        }
        let small = Table::allocate(&self.provider, 1)?;
        let mut old = core::mem::replace(&mut self.table, small);
        old.free(&self.provider);
        self.entries = 0;
        self.inserts_before_retry = 0;
        Ok(())
    }

    /// Change how far the table may grow: to `max_pages` (clamped to
    /// `1..=MAX_TABLE_PAGES`). A host sizes the index by what it stores this way, so
    /// the cache shrinks as stored pages go. A table more than twice the new
    /// ceiling is rebuilt at the ceiling (keeping what fits, newest first in each
    /// bucket); one at most twice it keeps its size, so a ceiling that moves
    /// back and forth does not rebuild the table each time. If the provider
    /// refuses the smaller table, the old one stays (counted in `grow_failures`).
    pub fn set_max_pages(&mut self, max_pages: usize) {
        self.max_pages = max_pages.clamp(1, MAX_TABLE_PAGES);
        if self.table.pages > self.max_pages.saturating_mul(2) {
            match self.grow_to(self.max_pages) {
                Ok(()) => self.stats.shrunk += 1,
                Err(_) => self.stats.grow_failures += 1,
            }
        }
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// No keys held.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Keys the table can hold at its current size.
    pub fn capacity(&self) -> usize {
        self.table.buckets * WAYS
    }

    /// Pages held from the provider (table and directory).
    pub fn pages_held(&self) -> usize {
        self.table.pages + 1
    }

    /// What the index did so far.
    pub fn stats(&self) -> IndexStats {
        self.stats
    }

    /// The provider the index takes pages from.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Double the table when it is three quarters full and allowed to grow.
    fn maybe_grow(&mut self) {
        let pages = self.table.pages;
        if pages >= self.max_pages || self.entries + MAX_INDEXES <= self.capacity() / 4 * 3 {
            return;
        }
        if self.inserts_before_retry > 0 {
            self.inserts_before_retry -= 1;
            return;
        }
        match self.grow_to((pages * 2).min(self.max_pages)) {
            Ok(()) => self.stats.grown += 1,
            Err(_) => {
                self.stats.grow_failures += 1;
                // Ask the provider again only after an eighth of a table of inserts.
                self.inserts_before_retry = self.capacity() / 8;
            }
        }
    }

    /// Move every entry into a new table of `pages` pages; on failure nothing changes.
    fn grow_to(&mut self, pages: usize) -> Result<(), Error> {
        let mut bigger = Table::<Id>::allocate(&self.provider, pages)?;
        let mut entries = 0;
        for index in 0..self.table.buckets {
            let Some(old) = self.table.bucket(index) else {
                continue;
            };
            for entry in old.iter().rev() {
                let Some(id) = entry.id() else { continue };
                let Some(new) = bigger.bucket_mut(bigger.bucket_of(entry.key)) else {
                    continue;
                };
                match put(new, entry.key, id) {
                    Put::Added => entries += 1,
                    Put::Updated => {}
                    Put::Evicted => self.stats.evicted += 1,
                }
            }
        }
        let mut old = core::mem::replace(&mut self.table, bigger);
        old.free(&self.provider);
        self.entries = entries;
        Ok(())
    }
}

impl<Id: Copy + PartialEq, P: PageProvider> Drop for SimilarityIndex<Id, P> {
    fn drop(&mut self) {
        self.table.free(&self.provider);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldswap_mem::{CountingProvider, StdPageProvider};
    use std::vec::Vec;

    fn sig(keys: [u32; MAX_INDEXES]) -> Signature {
        // Signatures normally come from a Sampler; tests build them by key.
        Signature::from_keys(keys)
    }

    fn index(
        provider: &CountingProvider<StdPageProvider>,
        capacity: IndexCapacity,
    ) -> Result<SimilarityIndex<u32, &CountingProvider<StdPageProvider>>, Error> {
        SimilarityIndex::new(provider, SimilarityConfig::default(), capacity)
    }

    #[test]
    fn a_grown_index_cleared_gives_its_pages_back() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut idx = index(&provider, IndexCapacity::growable(64)).unwrap();
        for i in 1..20_000u32 {
            idx.insert(&sig([i, i.wrapping_mul(7919) | 1, 0, 0]), i);
        }
        assert!(idx.pages_held() > 4, "{} pages", idx.pages_held());
        idx.clear_and_shrink().unwrap();
        assert_eq!(
            (idx.pages_held(), provider.pages_in_use(), idx.len()),
            (2, 2, 0)
        );
        assert!(idx.candidates(&sig([5, (5 * 7919) | 1, 0, 0])).is_empty());
        idx.insert(&sig([3, 4, 0, 0]), 9);
        assert_eq!(
            idx.candidates(&sig([3, 4, 0, 0]))
                .iter()
                .collect::<Vec<_>>(),
            [9]
        );
    }

    #[test]
    fn insert_lookup_remove() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut idx = index(&provider, IndexCapacity::fixed(1)).unwrap();
        let a = sig([11, 12, 0, 0]);
        idx.insert(&a, 1);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.candidates(&a).iter().collect::<Vec<_>>(), [1]);
        // A page sharing one key: the newer page wins that key only.
        let b = sig([11, 99, 0, 0]);
        idx.insert(&b, 2);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.candidates(&a).iter().collect::<Vec<_>>(), [2, 1]);
        // Removing page 1 leaves key 11 (it names page 2 now).
        assert!(idx.remove(&a, 1));
        assert_eq!(idx.candidates(&a).iter().collect::<Vec<_>>(), [2]);
        assert!(!idx.remove(&a, 1));
        assert!(idx.remove(&b, 2));
        assert!(idx.is_empty());
        assert!(idx.candidates(&b).is_empty());
        let stats = idx.stats();
        assert_eq!((stats.added, stats.updated, stats.removed), (3, 1, 3));
        assert_eq!((stats.lookups, stats.hits), (4, 3));
    }

    #[test]
    fn full_buckets_evict_the_oldest() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut idx = index(&provider, IndexCapacity::fixed(1)).unwrap();
        let capacity = idx.capacity() as u32;
        for id in 1..=capacity * 3 {
            idx.insert(&sig([id, 0, 0, 0]), id);
        }
        assert!(idx.len() <= idx.capacity());
        assert!(idx.stats().evicted >= u64::from(capacity));
        // The newest key always survives; the very first was pushed out.
        let newest = sig([capacity * 3, 0, 0, 0]);
        assert_eq!(idx.candidates(&newest).iter().next(), Some(capacity * 3));
        let found = (1..=capacity * 3)
            .filter(|&id| idx.peek_candidates(&sig([id, 0, 0, 0])).iter().next() == Some(id))
            .count();
        assert_eq!(found, idx.len());
        assert_eq!(idx.pages_held(), 2);
    }

    #[test]
    fn growth_keeps_entries_and_stops_at_max() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut idx = index(&provider, IndexCapacity::growable(4)).unwrap();
        let per_page = idx.capacity();
        let n = (per_page * 2) as u32;
        for id in 1..=n {
            idx.insert(&sig([id, 0, 0, 0]), id);
        }
        assert_eq!(idx.stats().grown, 2);
        assert_eq!(idx.pages_held(), 5);
        assert_eq!(provider.pages_in_use(), 5);
        let found = (1..=n)
            .filter(|&id| idx.peek_candidates(&sig([id, 0, 0, 0])).iter().next() == Some(id))
            .count();
        assert_eq!(found, idx.len());
        assert!(found as u64 + idx.stats().evicted == u64::from(n));
        assert!(
            found * 10 >= n as usize * 9,
            "growth lost entries: {found} of {n}"
        );
    }

    #[test]
    fn a_lower_ceiling_shrinks_the_table_and_stops_growth() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut idx = index(&provider, IndexCapacity::growable(16)).unwrap();
        let per_page = idx.capacity() as u32;
        for id in 1..=per_page * 5 {
            idx.insert(&sig([id, 0, 0, 0]), id);
        }
        assert_eq!(idx.pages_held(), 9, "grown to 8 table pages");
        // Within twice the ceiling: kept as it is.
        idx.set_max_pages(4);
        assert_eq!(idx.pages_held(), 9);
        // Past twice the ceiling: rebuilt at it, the newest keys kept.
        idx.set_max_pages(2);
        assert_eq!((idx.pages_held(), provider.pages_in_use()), (3, 3));
        assert_eq!(idx.stats().shrunk, 1);
        assert!(idx.len() <= idx.capacity());
        let newest = per_page * 5;
        assert_eq!(
            idx.peek_candidates(&sig([newest, 0, 0, 0])).iter().next(),
            Some(newest)
        );
        // And it grows no further than the ceiling.
        for id in 1..=per_page * 6 {
            idx.insert(&sig([id + per_page * 6, 0, 0, 0]), id);
        }
        assert_eq!(idx.pages_held(), 3);
        // A ceiling of 0 means one page: two table pages are within twice it.
        idx.set_max_pages(0);
        assert_eq!(idx.pages_held(), 3);
    }

    #[test]
    fn out_of_memory_is_typed_and_leaks_nothing() {
        let provider = CountingProvider::new(StdPageProvider, 0);
        assert_eq!(
            index(&provider, IndexCapacity::fixed(1)).err(),
            Some(Error::OutOfMemory)
        );
        provider.set_limit(2);
        assert_eq!(
            index(&provider, IndexCapacity::fixed(2)).err(),
            Some(Error::OutOfMemory)
        );
        assert_eq!(provider.pages_in_use(), 0);
        // Growth refused: the index keeps working at its size and counts the failure.
        let mut idx = index(&provider, IndexCapacity::growable(8)).unwrap();
        let n = (idx.capacity() * 2) as u32;
        for id in 1..=n {
            idx.insert(&sig([id, 0, 0, 0]), id);
        }
        assert!(idx.stats().grow_failures >= 1);
        assert_eq!(idx.stats().grown, 0);
        assert_eq!(idx.pages_held(), 2);
        assert_eq!(idx.candidates(&sig([n, 0, 0, 0])).iter().next(), Some(n));
        // Memory comes back: growth resumes later.
        provider.set_limit(100);
        for id in n + 1..=n * 2 {
            idx.insert(&sig([id, 0, 0, 0]), id);
        }
        assert!(idx.stats().grown >= 1);
        drop(idx);
        assert_eq!(provider.pages_in_use(), 0);
    }

    #[test]
    fn rejects_bad_capacity() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        for capacity in [
            IndexCapacity::fixed(0),
            IndexCapacity {
                initial_pages: 4,
                max_pages: 2,
            },
            IndexCapacity::growable(MAX_TABLE_PAGES + 1),
        ] {
            assert!(matches!(
                index(&provider, capacity),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert_eq!(provider.pages_in_use(), 0);
    }

    #[test]
    fn wide_ids_work() {
        let mut idx = SimilarityIndex::<(u64, u64), _>::new(
            StdPageProvider,
            SimilarityConfig::default(),
            IndexCapacity::fixed(1),
        )
        .unwrap();
        let s = sig([5, 6, 0, 0]);
        idx.insert(&s, (1, 2));
        assert_eq!(idx.candidates(&s).iter().collect::<Vec<_>>(), [(1, 2)]);
    }
}
