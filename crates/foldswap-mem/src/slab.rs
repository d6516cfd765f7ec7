//! Fixed-size objects carved from provider pages.
//!
//! A [`Slab<T>`] holds values of one type in pages taken from a [`PageProvider`].
//! Each data page starts with an occupancy bitmap, then packs as many slots as fit.
//! Free slots are threaded on an intrusive free list (the first four bytes of a free
//! slot hold the key of the next one), so insert and remove are O(1) and never touch
//! a global allocator. Pages are found through a two-level directory: an inline root
//! array of [`DIR_ROOTS`] pointers to directory pages, each naming 512 data pages.
//!
//! ```text
//!   Slab { roots: [dir page, dir page, ...] }
//!                     │
//!                     ▼
//!   dir page: [data page 0, data page 1, ... data page 511]
//!                     │
//!                     ▼
//!   data page: [bitmap 64 B][slot 0][slot 1]...[slot n-1]
//! ```
//!
//! A key is the slot's global index. A key whose slot is free is reported (`None` or
//! [`Error::InvalidHandle`]), never dereferenced; callers that need to tell a reused
//! slot from the original keep a generation number inside `T`.

use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::{Error, PAGE_SIZE, Page, PageProvider};

/// Root directory entries held inline in a [`Slab`] (each names 512 data pages, so a
/// slab can grow to `DIR_ROOTS * 512` pages = 128 MiB).
pub const DIR_ROOTS: usize = 64;
const DIR_ENTRIES: usize = PAGE_SIZE / size_of::<usize>();
const BITMAP_WORDS: usize = 8;
const HEADER_BYTES: usize = BITMAP_WORDS * 8;
const MAX_ALIGN: usize = 64;
const NO_KEY: u32 = u32::MAX;

/// The key of one object in a [`Slab`]: its global slot index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlabKey(pub u32);

impl SlabKey {
    /// The raw index.
    pub const fn index(self) -> u32 {
        self.0
    }
}

struct Geometry {
    slot_bytes: usize,
    per_page: usize,
}

const fn geometry<T>() -> Geometry {
    let align = if align_of::<T>() > 4 {
        align_of::<T>()
    } else {
        4
    };
    let size = if size_of::<T>() > 4 {
        size_of::<T>()
    } else {
        4
    };
    let slot_bytes = size.div_ceil(align) * align;
    let first = HEADER_BYTES.div_ceil(align) * align;
    let fit = if first + slot_bytes <= PAGE_SIZE {
        (PAGE_SIZE - first) / slot_bytes
    } else {
        0
    };
    let per_page = if fit > BITMAP_WORDS * 64 {
        BITMAP_WORDS * 64
    } else {
        fit
    };
    Geometry {
        slot_bytes,
        per_page,
    }
}

/// A slab of `T` values in pages from `P`. Not internally synchronized: wrap it in a
/// lock to share it.
///
/// ```
/// # #[cfg(feature = "std")] {
/// use foldswap_mem::{Slab, StdPageProvider};
/// let mut slab = Slab::<u64, _>::new(StdPageProvider).unwrap();
/// let key = slab.insert(42).unwrap();
/// assert_eq!(slab.get(key), Some(&42));
/// assert_eq!(slab.remove(key), Some(42));
/// assert_eq!(slab.get(key), None);
/// # }
/// ```
pub struct Slab<T, P: PageProvider> {
    provider: P,
    roots: [Option<NonNull<Page>>; DIR_ROOTS],
    data_pages: u32,
    free_head: u32,
    free_slots: usize,
    len: usize,
    _values: PhantomData<T>,
}

// SAFETY: the slab owns its `T`s and pages exclusively; moving it to another thread
// moves that ownership, which is sound when `T` and the provider are `Send`.
unsafe impl<T: Send, P: PageProvider + Send> Send for Slab<T, P> {}
// SAFETY: `&Slab` only hands out `&T` and reads its own bookkeeping.
unsafe impl<T: Sync, P: PageProvider + Sync> Sync for Slab<T, P> {}

impl<T, P: PageProvider> Slab<T, P> {
    const GEOMETRY: Geometry = geometry::<T>();
    const FIRST_SLOT: usize = {
        let align = if align_of::<T>() > 4 {
            align_of::<T>()
        } else {
            4
        };
        HEADER_BYTES.div_ceil(align) * align
    };

    /// An empty slab taking pages from `provider`. Allocates nothing yet.
    ///
    /// Fails with [`Error::InvalidArgument`] if `T` is too large for a page or aligned
    /// to more than 64 bytes.
    pub fn new(provider: P) -> Result<Self, Error> {
        if Self::GEOMETRY.per_page == 0 || align_of::<T>() > MAX_ALIGN {
            return Err(Error::InvalidArgument(
                "slab object too large or over-aligned",
            ));
        }
        Ok(Slab {
            provider,
            roots: [None; DIR_ROOTS],
            data_pages: 0,
            free_head: NO_KEY,
            free_slots: 0,
            len: 0,
            _values: PhantomData,
        })
    }

    /// Objects that fit in one data page.
    pub const fn objects_per_page() -> usize {
        Self::GEOMETRY.per_page
    }

    /// Live objects.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No live objects.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pages held from the provider (data and directory pages).
    pub fn pages_held(&self) -> usize {
        // A directory page may exist before its first data page (the data page's
        // allocation failed after it): count the directory pages themselves.
        let dirs = self.roots.iter().flatten().count();
        self.data_pages as usize + dirs
    }

    /// Bytes held from the provider.
    pub fn bytes_held(&self) -> usize {
        self.pages_held() * PAGE_SIZE
    }

    /// The provider this slab takes pages from.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Make sure the next `additional` inserts succeed without asking the provider.
    /// On failure, pages obtained so far stay in the slab's free list.
    pub fn reserve(&mut self, additional: usize) -> Result<(), Error> {
        while self.free_slots < additional {
            self.grow()?;
        }
        Ok(())
    }

    /// Store `value`, returning its key. Fails with [`Error::OutOfMemory`] (dropping
    /// `value`) when the provider has no page, or [`Error::CapacityExceeded`] when the
    /// directory is full.
    pub fn insert(&mut self, value: T) -> Result<SlabKey, Error> {
        if self.free_head == NO_KEY {
            self.grow()?;
        }
        let key = self.free_head;
        let (page, slot) = self.locate(key).ok_or(Error::InvalidHandle)?;
        let ptr = Self::slot_ptr(page, slot);
        // SAFETY: `key` heads the free list, so its slot is free and its first four
        // bytes hold the next free key (written by `push_free`).
        let next = unsafe { ptr.cast::<u32>().read() };
        // SAFETY: the slot is free, in bounds and aligned for `T`.
        unsafe { ptr.cast::<T>().write(value) };
        Self::set_bit(page, slot, true);
        self.free_head = next;
        self.free_slots -= 1;
        self.len += 1;
        Ok(SlabKey(key))
    }

    /// The value under `key`, if the slot is live.
    pub fn get(&self, key: SlabKey) -> Option<&T> {
        let (page, slot) = self.live(key)?;
        // SAFETY: the slot is live (bitmap bit set), so it holds an initialized `T`
        // that lives as long as `&self`.
        Some(unsafe { &*Self::slot_ptr(page, slot).cast::<T>() })
    }

    /// The value under `key`, writable, if the slot is live.
    pub fn get_mut(&mut self, key: SlabKey) -> Option<&mut T> {
        let (page, slot) = self.live(key)?;
        // SAFETY: live slot (see `get`); `&mut self` makes the borrow unique.
        Some(unsafe { &mut *Self::slot_ptr(page, slot).cast::<T>() })
    }

    /// Whether `key` names a live object.
    pub fn contains(&self, key: SlabKey) -> bool {
        self.live(key).is_some()
    }

    /// Take the value under `key` out, freeing its slot. `None` if it was not live.
    pub fn remove(&mut self, key: SlabKey) -> Option<T> {
        let (page, slot) = self.live(key)?;
        let ptr = Self::slot_ptr(page, slot);
        // SAFETY: live slot holds an initialized `T`; we clear its bit right after, so
        // it is read out exactly once.
        let value = unsafe { ptr.cast::<T>().read() };
        Self::set_bit(page, slot, false);
        self.push_free(key.0, ptr);
        self.len -= 1;
        Some(value)
    }

    /// Visit every live object.
    pub fn for_each(&self, mut f: impl FnMut(SlabKey, &T)) {
        let per_page = Self::GEOMETRY.per_page;
        for page_index in 0..self.data_pages as usize {
            let Some(page) = self.data_page(page_index) else {
                continue;
            };
            for slot in 0..per_page {
                if Self::bit(page, slot) {
                    let key = SlabKey((page_index * per_page + slot) as u32);
                    // SAFETY: bit set means the slot holds an initialized `T`.
                    f(key, unsafe { &*Self::slot_ptr(page, slot).cast::<T>() });
                }
            }
        }
    }

    fn grow(&mut self) -> Result<(), Error> {
        let per_page = Self::GEOMETRY.per_page;
        let page_index = self.data_pages as usize;
        if page_index >= DIR_ROOTS * DIR_ENTRIES || (page_index + 1) * per_page >= NO_KEY as usize {
            return Err(Error::CapacityExceeded);
        }
        let root = page_index / DIR_ENTRIES;
        let dir = match self.roots[root] {
            Some(dir) => dir,
            None => {
                let dir = self.provider.alloc_page()?;
                // SAFETY: a fresh provider page, valid for 4096 bytes and exclusively ours.
                unsafe { dir.as_ptr().cast::<u8>().write_bytes(0, PAGE_SIZE) };
                self.roots[root] = Some(dir);
                dir
            }
        };
        let page = self.provider.alloc_page()?;
        // SAFETY: fresh page, exclusively ours: clear the bitmap header.
        unsafe { page.as_ptr().cast::<u8>().write_bytes(0, HEADER_BYTES) };
        // SAFETY: `dir` is a directory page of DIR_ENTRIES pointer-sized entries, all
        // zero (None) or set by this function; the index is in bounds.
        unsafe {
            dir.as_ptr()
                .cast::<Option<NonNull<Page>>>()
                .add(page_index % DIR_ENTRIES)
                .write(Some(page))
        };
        self.data_pages += 1;
        for slot in (0..per_page).rev() {
            let key = (page_index * per_page + slot) as u32;
            self.push_free(key, Self::slot_ptr(page, slot));
        }
        Ok(())
    }

    fn push_free(&mut self, key: u32, slot_ptr: *mut u8) {
        // SAFETY: the slot is free (not live), in bounds and at least 4-aligned and
        // 4 bytes long (see `geometry`).
        unsafe { slot_ptr.cast::<u32>().write(self.free_head) };
        self.free_head = key;
        self.free_slots += 1;
    }

    fn data_page(&self, page_index: usize) -> Option<NonNull<Page>> {
        if page_index >= self.data_pages as usize {
            return None;
        }
        let dir = self
            .roots
            .get(page_index / DIR_ENTRIES)
            .copied()
            .flatten()?;
        // SAFETY: a live directory page; entries below `data_pages` were written by
        // `grow`, the rest are zero (None).
        unsafe {
            dir.as_ptr()
                .cast::<Option<NonNull<Page>>>()
                .add(page_index % DIR_ENTRIES)
                .read()
        }
    }

    fn locate(&self, key: u32) -> Option<(NonNull<Page>, usize)> {
        let per_page = Self::GEOMETRY.per_page;
        let page = self.data_page(key as usize / per_page)?;
        Some((page, key as usize % per_page))
    }

    fn live(&self, key: SlabKey) -> Option<(NonNull<Page>, usize)> {
        let (page, slot) = self.locate(key.0)?;
        Self::bit(page, slot).then_some((page, slot))
    }

    fn slot_ptr(page: NonNull<Page>, slot: usize) -> *mut u8 {
        let offset = Self::FIRST_SLOT + slot * Self::GEOMETRY.slot_bytes;
        // SAFETY: `slot < per_page`, so the slot lies inside the 4096-byte page.
        unsafe { page.as_ptr().cast::<u8>().add(offset) }
    }

    fn bitmap(page: NonNull<Page>) -> *mut u64 {
        page.as_ptr().cast::<u64>()
    }

    fn bit(page: NonNull<Page>, slot: usize) -> bool {
        // SAFETY: the header holds BITMAP_WORDS words and `slot < BITMAP_WORDS * 64`.
        let word = unsafe { Self::bitmap(page).add(slot / 64).read() };
        word & (1 << (slot % 64)) != 0
    }

    fn set_bit(page: NonNull<Page>, slot: usize, on: bool) {
        // SAFETY: as in `bit`; the page is exclusively the slab's.
        unsafe {
            let word = Self::bitmap(page).add(slot / 64);
            if on {
                *word |= 1 << (slot % 64);
            } else {
                *word &= !(1 << (slot % 64));
            }
        }
    }
}

impl<T, P: PageProvider> Slab<T, P> {
    /// With no live object, give every page back to the provider and start over
    /// (keys are handed out from 0 again). Returns whether pages were freed; with
    /// live objects it does nothing.
    pub fn release_if_empty(&mut self) -> bool {
        if self.len != 0 || self.pages_held() == 0 {
            return false;
        }
        self.clear();
        true
    }

    /// Drop every live object and give every page back to the provider (keys are
    /// handed out from 0 again).
    pub fn clear(&mut self) {
        self.free_all_pages();
        // INVARIANT: no page is held, so no slot is live or free either.
        self.roots = [None; DIR_ROOTS];
        self.data_pages = 0;
        self.free_head = NO_KEY;
        self.free_slots = 0;
        self.len = 0;
    }

    /// Drop every live object and free every page (the slab's fields still name
    /// them: the caller resets or forgets them).
    fn free_all_pages(&mut self) {
        let per_page = Self::GEOMETRY.per_page;
        for page_index in 0..self.data_pages as usize {
            let Some(page) = self.data_page(page_index) else {
                continue;
            };
            if core::mem::needs_drop::<T>() {
                for slot in 0..per_page {
                    if Self::bit(page, slot) {
                        // SAFETY: live slot, dropped once, the page is freed next.
                        unsafe { Self::slot_ptr(page, slot).cast::<T>().drop_in_place() };
                    }
                }
            }
            // SAFETY: the page came from this provider in `grow` and is freed once.
            unsafe { self.provider.free_page(page) };
        }
        for dir in self.roots.iter().flatten() {
            // SAFETY: directory pages came from this provider and are freed once.
            unsafe { self.provider.free_page(*dir) };
        }
    }
}

impl<T, P: PageProvider> Drop for Slab<T, P> {
    fn drop(&mut self) {
        self.free_all_pages();
    }
}

impl<T, P: PageProvider> core::fmt::Debug for Slab<T, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Slab")
            .field("len", &self.len)
            .field("data_pages", &self.data_pages)
            .field("free_slots", &self.free_slots)
            .finish()
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    extern crate std;
    use std::collections::HashMap;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::{CountingProvider, StdPageProvider};

    #[test]
    fn geometry_fits_the_page() {
        assert_eq!(Slab::<u8, StdPageProvider>::objects_per_page(), 512);
        assert_eq!(Slab::<[u8; 32], StdPageProvider>::objects_per_page(), 126);
        assert_eq!(Slab::<[u64; 4], StdPageProvider>::objects_per_page(), 126);
        assert!(Slab::<[u8; 4096], StdPageProvider>::new(StdPageProvider).is_err());
    }

    #[test]
    fn an_emptied_slab_gives_its_pages_back_and_starts_over() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut slab = Slab::<[u64; 8], _>::new(&provider).unwrap();
        let keys: Vec<_> = (0..1000).map(|i| slab.insert([i; 8]).unwrap()).collect();
        assert!(!slab.release_if_empty(), "live objects: nothing released");
        for key in &keys[1..] {
            slab.remove(*key);
        }
        assert!(!slab.release_if_empty());
        assert!(provider.pages_in_use() > 5);
        slab.remove(keys[0]);
        assert!(slab.release_if_empty());
        assert_eq!((provider.pages_in_use(), slab.pages_held()), (0, 0));
        assert_eq!(slab.get(keys[500]), None);
        let key = slab.insert([7; 8]).unwrap();
        assert_eq!((key, slab.get(key)), (SlabKey(0), Some(&[7; 8])));
        slab.clear();
        assert_eq!((provider.pages_in_use(), slab.len()), (0, 0));
    }

    #[test]
    fn out_of_memory_is_clean() {
        let provider = CountingProvider::new(StdPageProvider, 2);
        let mut slab = Slab::<[u64; 8], _>::new(&provider).unwrap();
        let per_page = Slab::<[u64; 8], &CountingProvider<StdPageProvider>>::objects_per_page();
        let mut keys = Vec::new();
        for i in 0..per_page {
            keys.push(slab.insert([i as u64; 8]).unwrap());
        }
        assert_eq!(slab.insert([0; 8]), Err(Error::OutOfMemory));
        assert_eq!(slab.pages_held(), provider.pages_in_use());
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(slab.get(*key), Some(&[i as u64; 8]));
        }
        assert_eq!(slab.pages_held(), 2);
        drop(slab);
        assert_eq!(provider.pages_in_use(), 0);
    }

    #[test]
    fn a_directory_page_without_data_pages_is_counted() {
        // Room for the directory page only: the data page is refused.
        let provider = CountingProvider::new(StdPageProvider, 1);
        let mut slab = Slab::<u64, _>::new(&provider).unwrap();
        assert_eq!(slab.insert(1), Err(Error::OutOfMemory));
        assert_eq!(slab.pages_held(), provider.pages_in_use());
        assert_eq!(slab.pages_held(), 1);
        provider.set_limit(2);
        let key = slab.insert(2).unwrap();
        assert_eq!(slab.get(key), Some(&2));
        assert_eq!(slab.pages_held(), 2);
    }

    #[test]
    fn reserve_guarantees_inserts() {
        let provider = CountingProvider::new(StdPageProvider, 4);
        let mut slab = Slab::<u32, _>::new(&provider).unwrap();
        slab.reserve(600).unwrap();
        provider.set_limit(0);
        for i in 0..600 {
            slab.insert(i).unwrap();
        }
        assert_eq!(slab.len(), 600);
    }

    #[test]
    fn drop_runs_destructors() {
        use std::rc::Rc;
        let counter = Rc::new(());
        {
            let mut slab = Slab::<Rc<()>, _>::new(StdPageProvider).unwrap();
            for _ in 0..1000 {
                slab.insert(counter.clone()).unwrap();
            }
            assert_eq!(Rc::strong_count(&counter), 1001);
        }
        assert_eq!(Rc::strong_count(&counter), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(usize),
        Probe(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u64>().prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => (0u32..5000).prop_map(Op::Probe),
        ]
    }

    proptest! {
        #[test]
        fn slab_matches_a_map(ops in proptest::collection::vec(op(), 1..2000)) {
            let provider = CountingProvider::unlimited(StdPageProvider);
            let mut slab = Slab::<[u64; 3], _>::new(&provider).unwrap();
            let mut model: HashMap<u32, u64> = HashMap::new();
            let mut live: Vec<u32> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(v) => {
                        let key = slab.insert([v, !v, v ^ 7]).unwrap();
                        prop_assert!(model.insert(key.0, v).is_none(), "key reused while live");
                        live.push(key.0);
                    }
                    Op::Remove(i) if !live.is_empty() => {
                        let key = live.swap_remove(i % live.len());
                        let v = model.remove(&key).unwrap();
                        prop_assert_eq!(slab.remove(SlabKey(key)), Some([v, !v, v ^ 7]));
                        prop_assert_eq!(slab.remove(SlabKey(key)), None);
                    }
                    Op::Remove(_) => {}
                    Op::Probe(k) => {
                        let expect = model.get(&k).map(|&v| [v, !v, v ^ 7]);
                        prop_assert_eq!(slab.get(SlabKey(k)).copied(), expect);
                    }
                }
                prop_assert_eq!(slab.len(), model.len());
            }
            let mut seen = 0;
            slab.for_each(|k, v| {
                assert_eq!(model.get(&k.0).map(|&m| [m, !m, m ^ 7]), Some(*v));
                seen += 1;
            });
            prop_assert_eq!(seen, model.len());
            prop_assert_eq!(provider.pages_in_use(), slab.pages_held());
            drop(slab);
            prop_assert_eq!(provider.pages_in_use(), 0);
        }
    }
}
