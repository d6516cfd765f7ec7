//! Fixed-size objects carved from provider pages.
//!
//! A [`Slab<T>`] holds values of one type in pages taken from a [`PageProvider`].
//! Each data page starts with an occupancy bitmap, then packs as many slots as fit.
//! Pages are found through a two-level directory: an inline root array of
//! [`DIR_ROOTS`] pointers to directory pages, each naming [`DIR_ENTRIES`] data pages
//! and keeping a *room* bitmap of them (a page with a free slot, or a hole where an
//! emptied page was given back), with one summary bit per directory page inline.
//!
//! ```text
//!   Slab { roots: [dir page, dir page, ...], room_roots: u64 }
//!                     │
//!                     ▼
//!   dir page: [data page 0, data page 1, ... data page 503][room bitmap 64 B]
//!                     │
//!                     ▼
//!   data page: [bitmap 64 B][slot 0][slot 1]...[slot n-1]
//! ```
//!
//! An insert takes the lowest free slot of the lowest page with room (two
//! trailing-zero counts and one bitmap scan), so live objects gather in the low
//! pages; a page whose last object goes is given back at once (one emptied page is
//! kept as a spare, so a store and an invalidate at a page boundary do not take and
//! give a page each time). So the slab follows what it holds down as well as up:
//! after a storm, the pages its survivors do not need go back.
//!
//! A key is the slot's global index. A key whose slot is free is reported (`None` or
//! [`Error::InvalidHandle`]), never dereferenced; callers that need to tell a reused
//! slot from the original keep a generation number inside `T`. A fresh slab hands
//! out keys 0, 1, 2, … in order.

use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::num::NonZeroU32;
use core::ptr::NonNull;

use crate::{Error, PAGE_SIZE, Page, PageProvider};

/// Root directory entries held inline in a [`Slab`] (each names [`DIR_ENTRIES`] data
/// pages, so a slab can grow to `DIR_ROOTS * DIR_ENTRIES` pages, 126 MiB). One summary
/// bit per root fits a `u64`.
pub const DIR_ROOTS: usize = 64;
/// Data pages one directory page names (what its room bitmap leaves of the page).
pub const DIR_ENTRIES: usize = (PAGE_SIZE - BITMAP_WORDS * 8) / size_of::<usize>();
const BITMAP_WORDS: usize = 8;
const HEADER_BYTES: usize = BITMAP_WORDS * 8;
const MAX_ALIGN: usize = 64;
/// One past the largest key: keys stop below `u32::MAX`.
const KEY_LIMIT: usize = u32::MAX as usize;

/// A directory page.
///
/// # Invariants
///
/// Bit `i` of `room` is set exactly when data page `root * DIR_ENTRIES + i` lies
/// below the slab's extent and is either absent (`pages[i]` is `None`: a hole) or
/// has a free slot.
#[repr(C)]
struct Directory {
    pages: [Option<NonNull<Page>>; DIR_ENTRIES],
    room: [u64; BITMAP_WORDS],
}

const _: () = assert!(size_of::<Directory>() <= PAGE_SIZE);
const _: () = assert!(DIR_ENTRIES <= BITMAP_WORDS * 64 && DIR_ROOTS <= 64);

/// The lowest set bit of `bits` at or after `from`.
fn first_set_from(bits: &[u64; BITMAP_WORDS], from: usize) -> Option<usize> {
    let mut word = from / 64;
    let mut mask = u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
    while word < BITMAP_WORDS {
        let set = bits[word] & mask;
        if set != 0 {
            return Some(word * 64 + set.trailing_zeros() as usize);
        }
        word += 1;
        mask = u64::MAX;
    }
    None
}

/// The key of one object in a [`Slab`]: its global slot index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlabKey(pub u32);

impl SlabKey {
    /// The raw index.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// A typed link to a slab slot: `Option<SlabLink>` is "a slot, or none".
///
/// A link holds the slot's key plus one in a `NonZeroU32`, so `None` takes the
/// value 0 (the niche) and `Option<SlabLink>` is four bytes, as a bare `u32` key
/// was: "no slot" is a variant, not a key value a slot could also have. The raw
/// form (0 for none) is what zeroed arrays start with, so a fresh one reads as
/// empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct SlabLink(NonZeroU32);

// `Option<SlabLink>` packs "none" into the niche: no bigger than the key it replaces.
const _: () = assert!(size_of::<Option<SlabLink>>() == size_of::<u32>());

impl SlabLink {
    /// The link to `key`. Every key a [`Slab`] issues has one: its keys stop below
    /// `u32::MAX`, so `key + 1` never wraps. A key of `u32::MAX` is no slot and
    /// gets `None`.
    pub const fn to(key: SlabKey) -> Option<SlabLink> {
        match NonZeroU32::new(key.0.wrapping_add(1)) {
            Some(raw) => Some(SlabLink(raw)),
            None => None,
        }
    }

    /// The slot this link names.
    pub const fn key(self) -> SlabKey {
        SlabKey(self.0.get() - 1)
    }

    /// Rebuild from [`raw`](Self::raw) (0: none).
    pub const fn from_raw(raw: u32) -> Option<SlabLink> {
        match NonZeroU32::new(raw) {
            Some(raw) => Some(SlabLink(raw)),
            None => None,
        }
    }

    /// The link as a plain integer: 0 for none, else key + 1.
    pub const fn raw(link: Option<SlabLink>) -> u32 {
        match link {
            Some(link) => link.0.get(),
            None => 0,
        }
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
    /// Bit `r`: directory `r`'s room bitmap has a bit set.
    room_roots: u64,
    /// Page indexes in use: every data page and every hole lies below it.
    extent: u32,
    /// Data pages held (not counting the spare).
    data_pages: u32,
    /// An emptied data page kept for the next one needed.
    spare: Option<NonNull<Page>>,
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
            room_roots: 0,
            extent: 0,
            data_pages: 0,
            spare: None,
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

    /// Pages held from the provider (data, spare and directory pages).
    pub fn pages_held(&self) -> usize {
        // A directory page may exist before its first data page (the data page's
        // allocation failed after it): count the directory pages themselves.
        let dirs = self.roots.iter().flatten().count();
        self.data_pages as usize + usize::from(self.spare.is_some()) + dirs
    }

    /// Bytes held from the provider.
    pub fn bytes_held(&self) -> usize {
        self.pages_held() * PAGE_SIZE
    }

    /// One past the highest key a live object can have (every live key is below
    /// it): what a caller walking keys from the top starts from.
    pub fn key_bound(&self) -> u32 {
        // At most `KEY_LIMIT`: the directory stops issuing pages below it.
        (self.extent as usize * Self::GEOMETRY.per_page).min(KEY_LIMIT) as u32
    }

    /// The provider this slab takes pages from.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Make sure the next `additional` inserts succeed without asking the provider:
    /// the pages they would fill (in the order inserts fill them) are made present.
    /// On failure, pages obtained so far stay in the slab.
    pub fn reserve(&mut self, additional: usize) -> Result<(), Error> {
        let per_page = Self::GEOMETRY.per_page;
        let mut room = 0;
        let mut from = 0;
        while room < additional {
            let index = self.room_from(from).unwrap_or(self.extent as usize);
            let page = match self.data_page(index) {
                Some(page) => page,
                None => self.install_page(index)?,
            };
            room += per_page - Self::live_in(page);
            from = index + 1;
        }
        Ok(())
    }

    /// Store `value`, returning its key (the lowest free one). Fails with
    /// [`Error::OutOfMemory`] (dropping `value`) when the provider has no page, or
    /// [`Error::CapacityExceeded`] when the directory is full.
    pub fn insert(&mut self, value: T) -> Result<SlabKey, Error> {
        let per_page = Self::GEOMETRY.per_page;
        let index = self.room_from(0).unwrap_or(self.extent as usize);
        let page = match self.data_page(index) {
            Some(page) => page,
            None => self.install_page(index)?,
        };
        let slot = Self::free_slot(page).ok_or(Error::Corrupt)?;
        let ptr = Self::slot_ptr(page, slot);
        // SAFETY: the slot is free (its bit is clear), in bounds and aligned for `T`.
        unsafe { ptr.cast::<T>().write(value) };
        Self::set_bit(page, slot, true);
        self.len += 1;
        if Self::live_in(page) == per_page {
            // INVARIANT: a full page has no room.
            self.set_room(index, false);
        }
        Ok(SlabKey((index * per_page + slot) as u32))
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

    /// Move the value under `key` into the lowest free slot of a lower page the
    /// slab holds, if one has a free slot, and return its new key (`None`: not
    /// live, or no lower page with room; a hole is not filled, so no page is
    /// taken). The old slot is freed as by [`remove`](Self::remove), and a page
    /// left empty goes back. The caller moves every reference to the key.
    ///
    /// So a slab whose objects a storm left spread thinly over many pages packs
    /// down as its owner moves them one by one, with no memory taken.
    pub fn move_to_lower_page(&mut self, key: SlabKey) -> Option<SlabKey> {
        let per_page = Self::GEOMETRY.per_page;
        let (from_page, from_slot) = self.live(key)?;
        let from_index = key.0 as usize / per_page;
        let mut from = 0;
        let (to_index, to_page) = loop {
            let index = self.room_from(from).filter(|&index| index < from_index)?;
            match self.data_page(index) {
                Some(page) => break (index, page),
                None => from = index + 1,
            }
        };
        let to_slot = Self::free_slot(to_page)?;
        // SAFETY: the source slot is live, so it holds an initialised `T`; the
        // destination slot is free, in bounds and aligned for `T`; the two lie in
        // different pages, so they do not overlap. The value is moved, not
        // copied: the source's bit is cleared below, so it is read out once.
        unsafe {
            let value = Self::slot_ptr(from_page, from_slot).cast::<T>().read();
            Self::slot_ptr(to_page, to_slot).cast::<T>().write(value);
        }
        Self::set_bit(to_page, to_slot, true);
        if Self::live_in(to_page) == per_page {
            // INVARIANT: a full page has no room.
            self.set_room(to_index, false);
        }
        Self::set_bit(from_page, from_slot, false);
        if Self::live_in(from_page) == 0 {
            self.release_page(from_index, from_page);
        } else {
            // INVARIANT: a page with a free slot has room.
            self.set_room(from_index, true);
        }
        Some(SlabKey((to_index * per_page + to_slot) as u32))
    }

    /// Take the value under `key` out, freeing its slot. `None` if it was not live.
    /// A page left empty goes back to the provider (or becomes the spare).
    pub fn remove(&mut self, key: SlabKey) -> Option<T> {
        let (page, slot) = self.live(key)?;
        let ptr = Self::slot_ptr(page, slot);
        // SAFETY: live slot holds an initialized `T`; we clear its bit right after, so
        // it is read out exactly once.
        let value = unsafe { ptr.cast::<T>().read() };
        Self::set_bit(page, slot, false);
        self.len -= 1;
        let index = key.0 as usize / Self::GEOMETRY.per_page;
        if Self::live_in(page) == 0 {
            self.release_page(index, page);
        } else {
            // INVARIANT: a page with a free slot has room.
            self.set_room(index, true);
        }
        Some(value)
    }

    /// Visit every live object.
    pub fn for_each(&self, mut f: impl FnMut(SlabKey, &T)) {
        self.for_each_live(|key, value| {
            // SAFETY: `for_each_live` gives initialised values only, and `&self`
            // keeps every writer out while the shared borrow lives.
            f(key, unsafe { &*value })
        });
    }

    /// Visit every live object, writable, in key order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(SlabKey, &mut T)) {
        self.for_each_live(|key, value| {
            // SAFETY: `for_each_live` gives initialised values only, each once;
            // `&mut self` makes the borrow unique, and it ends before the next
            // value's begins.
            f(key, unsafe { &mut *value })
        });
    }

    /// Call `f` with the key of every live slot and a pointer to its initialised
    /// value, in key order.
    fn for_each_live(&self, mut f: impl FnMut(SlabKey, *mut T)) {
        let per_page = Self::GEOMETRY.per_page;
        for page_index in 0..self.extent as usize {
            let Some(page) = self.data_page(page_index) else {
                continue;
            };
            for slot in 0..per_page {
                if Self::bit(page, slot) {
                    let key = SlabKey((page_index * per_page + slot) as u32);
                    // A set bit means the slot holds an initialised `T`.
                    f(key, Self::slot_ptr(page, slot).cast::<T>());
                }
            }
        }
    }

    /// The lowest page index at or after `from` with room (a free slot or a hole).
    fn room_from(&self, from: usize) -> Option<usize> {
        let mut root = from / DIR_ENTRIES;
        let mut within = from % DIR_ENTRIES;
        while root < DIR_ROOTS {
            let roots = self.room_roots.checked_shr(root as u32).unwrap_or(0);
            if roots == 0 {
                return None;
            }
            let next = root + roots.trailing_zeros() as usize;
            if next != root {
                (root, within) = (next, 0);
            }
            if let Some(dir) = self.directory(root)
                && let Some(i) = first_set_from(&dir.room, within)
            {
                return Some(root * DIR_ENTRIES + i);
            }
            (root, within) = (root + 1, 0);
        }
        None
    }

    /// Set or clear the room bit of page `index` (below the extent).
    fn set_room(&mut self, index: usize, room: bool) {
        let root = index / DIR_ENTRIES;
        let Some(dir) = self.directory_mut(root) else {
            return;
        };
        let (word, bit) = ((index % DIR_ENTRIES) / 64, 1u64 << (index % 64));
        if room {
            dir.room[word] |= bit;
        } else {
            dir.room[word] &= !bit;
        }
        let any = dir.room.iter().any(|&w| w != 0);
        // INVARIANT: the summary bit says whether the directory has a room bit set.
        if any {
            self.room_roots |= 1 << root;
        } else {
            self.room_roots &= !(1 << root);
        }
    }

    /// Make data page `index` present (it is a hole or the extent): the spare or a
    /// new page, its bitmap cleared. Nothing changes on failure, except that a
    /// directory page made for it stays (and is counted).
    fn install_page(&mut self, index: usize) -> Result<NonNull<Page>, Error> {
        let per_page = Self::GEOMETRY.per_page;
        if index >= DIR_ROOTS * DIR_ENTRIES || (index + 1) * per_page >= KEY_LIMIT {
            return Err(Error::CapacityExceeded);
        }
        // Pages are installed at a hole or at the extent, never past it.
        if index > self.extent as usize {
            return Err(Error::Corrupt);
        }
        let root = index / DIR_ENTRIES;
        if self.roots[root].is_none() {
            let dir = self.provider.alloc_page()?;
            // SAFETY: a fresh provider page, valid for 4096 bytes and exclusively
            // ours; all-zero bytes are a `Directory` of no pages and no room.
            unsafe { dir.as_ptr().cast::<u8>().write_bytes(0, PAGE_SIZE) };
            self.roots[root] = Some(dir);
        }
        let page = match self.spare.take() {
            Some(page) => page,
            None => self.provider.alloc_page()?,
        };
        // SAFETY: a page exclusively ours (fresh or the emptied spare): clear the
        // bitmap header, so no slot is live.
        unsafe { page.as_ptr().cast::<u8>().write_bytes(0, HEADER_BYTES) };
        if let Some(dir) = self.directory_mut(root) {
            dir.pages[index % DIR_ENTRIES] = Some(page);
        }
        self.data_pages += 1;
        if index == self.extent as usize {
            self.extent += 1;
        }
        // INVARIANT: an empty present page has room.
        self.set_room(index, true);
        Ok(page)
    }

    /// Give back emptied data page `index`: it becomes a hole (or the extent
    /// shrinks past it and any holes below), the spare if there is none.
    fn release_page(&mut self, index: usize, page: NonNull<Page>) {
        let root = index / DIR_ENTRIES;
        if let Some(dir) = self.directory_mut(root) {
            dir.pages[index % DIR_ENTRIES] = None;
        }
        self.data_pages -= 1;
        match self.spare {
            None => self.spare = Some(page),
            // SAFETY: the page came from this provider and is unlinked above.
            Some(_) => unsafe { self.provider.free_page(page) },
        }
        // INVARIANT: a hole below the extent has room.
        self.set_room(index, true);
        // The extent shrinks over trailing holes; directory pages above it go.
        while self.extent > 0 && self.data_page(self.extent as usize - 1).is_none() {
            let top = self.extent as usize - 1;
            self.set_room(top, false);
            self.extent -= 1;
            if top.is_multiple_of(DIR_ENTRIES)
                && let Some(dir) = self.roots[top / DIR_ENTRIES].take()
            {
                // SAFETY: a directory page of this provider naming no data page
                // (everything at or above `top` is gone), unlinked just now.
                unsafe { self.provider.free_page(dir) };
                self.room_roots &= !(1 << (top / DIR_ENTRIES));
            }
        }
    }

    fn directory(&self, root: usize) -> Option<&Directory> {
        let dir = self.roots.get(root).copied().flatten()?;
        // SAFETY: a live directory page of this slab: 4096-byte aligned, large
        // enough for `Directory` (checked at compile time), zeroed when made and
        // only written through `directory_mut`; `&self` keeps writers out.
        Some(unsafe { &*dir.as_ptr().cast::<Directory>() })
    }

    fn directory_mut(&mut self, root: usize) -> Option<&mut Directory> {
        let dir = self.roots.get(root).copied().flatten()?;
        // SAFETY: as in `directory`; `&mut self` makes the borrow unique.
        Some(unsafe { &mut *dir.as_ptr().cast::<Directory>() })
    }

    fn data_page(&self, page_index: usize) -> Option<NonNull<Page>> {
        if page_index >= self.extent as usize {
            return None;
        }
        let dir = self.directory(page_index / DIR_ENTRIES)?;
        dir.pages[page_index % DIR_ENTRIES]
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

    /// The page's occupancy bitmap, copied out.
    fn bitmap_words(page: NonNull<Page>) -> [u64; BITMAP_WORDS] {
        // SAFETY: the header holds BITMAP_WORDS aligned words of the page's.
        unsafe { Self::bitmap(page).cast::<[u64; BITMAP_WORDS]>().read() }
    }

    /// Live slots in `page`.
    fn live_in(page: NonNull<Page>) -> usize {
        Self::bitmap_words(page)
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// The lowest free slot of `page`, if any.
    fn free_slot(page: NonNull<Page>) -> Option<usize> {
        let words = Self::bitmap_words(page);
        let free = words.map(|w| !w);
        first_set_from(&free, 0).filter(|&slot| slot < Self::GEOMETRY.per_page)
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
    /// With no live object, give every page back to the provider (the spare and
    /// the directory pages; emptied data pages went back already) and start over
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
        // INVARIANT: no page is held, so no slot is live and no page has room.
        self.roots = [None; DIR_ROOTS];
        self.room_roots = 0;
        self.extent = 0;
        self.data_pages = 0;
        self.spare = None;
        self.len = 0;
    }

    /// Drop every live object and free every page (the slab's fields still name
    /// them: the caller resets or forgets them).
    fn free_all_pages(&mut self) {
        let per_page = Self::GEOMETRY.per_page;
        for page_index in 0..self.extent as usize {
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
            // SAFETY: the page came from this provider and is freed once.
            unsafe { self.provider.free_page(page) };
        }
        if let Some(spare) = self.spare {
            // SAFETY: the spare came from this provider, holds nothing and is named
            // nowhere else.
            unsafe { self.provider.free_page(spare) };
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
            .field("extent", &self.extent)
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
    fn every_slab_key_has_a_link_and_none_is_not_a_key() {
        for key in [0, 1, 4095, u32::MAX - 1] {
            let link = SlabLink::to(SlabKey(key)).unwrap();
            assert_eq!(link.key(), SlabKey(key));
            assert_eq!(SlabLink::from_raw(SlabLink::raw(Some(link))), Some(link));
        }
        assert_eq!(SlabLink::to(SlabKey(u32::MAX)), None);
        assert_eq!(SlabLink::raw(None), 0);
        assert_eq!(SlabLink::from_raw(0), None);
    }

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
        // One survivor: its page, the spare and the directory stay.
        assert_eq!((provider.pages_in_use(), slab.pages_held()), (3, 3));
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
    fn pages_go_back_as_objects_go_and_keys_refill_from_the_lowest() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut slab = Slab::<[u64; 3], _>::new(&provider).unwrap();
        let per_page = Slab::<[u64; 3], &CountingProvider<StdPageProvider>>::objects_per_page();
        let n = per_page * 40;
        let keys: Vec<_> = (0..n)
            .map(|i| slab.insert([i as u64; 3]).unwrap())
            .collect();
        assert_eq!(slab.pages_held(), 41, "40 data pages and a directory");
        // Every second page emptied, and then the last ten: holes and a shorter extent.
        for (i, key) in keys.iter().enumerate() {
            let page = i / per_page;
            if page % 2 == 1 || page >= 30 {
                assert!(slab.remove(*key).is_some());
            }
        }
        assert_eq!(
            slab.pages_held(),
            15 + 1 + 1,
            "15 data pages, the spare, the directory"
        );
        assert_eq!(provider.pages_in_use(), slab.pages_held());
        // New objects fill the lowest holes first.
        let fresh = slab.insert([7; 3]).unwrap();
        assert_eq!(fresh, SlabKey(per_page as u32));
        for (i, key) in keys.iter().enumerate() {
            let page = i / per_page;
            let want = (page.is_multiple_of(2) && page < 30).then_some([i as u64; 3]);
            assert_eq!(
                slab.get(*key).copied(),
                want.or((*key == fresh).then_some([7; 3]))
            );
        }
        let mut seen = 0;
        slab.for_each(|_, _| seen += 1);
        assert_eq!(seen, slab.len());
        // Emptied entirely: only the spare and the directory are left to release.
        for key in keys.iter().chain([&fresh]) {
            slab.remove(*key);
        }
        assert_eq!(slab.pages_held(), 1, "the spare");
        assert!(slab.release_if_empty());
        assert_eq!(provider.pages_in_use(), 0);
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

    /// Objects a storm spread over many pages pack down as they are moved one by
    /// one to lower pages: the pages past the ones they need go back, no page is
    /// taken, and every value is where its new key says.
    #[test]
    fn objects_moved_to_lower_pages_pack_the_slab_down() {
        let provider = CountingProvider::unlimited(StdPageProvider);
        let mut slab = Slab::<[u64; 4], _>::new(&provider).unwrap();
        let per_page = Slab::<[u64; 4], StdPageProvider>::objects_per_page();
        let keys: Vec<_> = (0..20 * per_page as u64)
            .map(|i| slab.insert([i; 4]).unwrap())
            .collect();
        // Keep one object in eight: twenty pages hold what three could.
        let mut kept: Vec<(SlabKey, u64)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if i % 8 == 0 {
                kept.push((*key, i as u64));
            } else {
                slab.remove(*key);
            }
        }
        let before = slab.pages_held();
        assert!(before >= 20, "{before}");
        // The lowest object has nowhere lower to go.
        assert_eq!(slab.move_to_lower_page(kept[0].0), None);
        for (key, _) in kept.iter_mut() {
            if let Some(to) = slab.move_to_lower_page(*key) {
                assert!(to < *key);
                assert_eq!(slab.get(*key), None, "the old slot is free");
                *key = to;
            }
        }
        assert_eq!(slab.move_to_lower_page(SlabKey(u32::MAX - 1)), None);
        for (key, value) in &kept {
            assert_eq!(slab.get(*key), Some(&[*value; 4]));
        }
        assert_eq!(slab.len(), kept.len());
        // The pages the objects need, the spare and the directory.
        let need = kept.len().div_ceil(per_page);
        assert_eq!(slab.pages_held(), need + 2, "{before} pages before");
        assert_eq!(provider.pages_in_use(), slab.pages_held());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(usize),
        Probe(u32),
        MoveLower(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u64>().prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => (0u32..5000).prop_map(Op::Probe),
            1 => any::<usize>().prop_map(Op::MoveLower),
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
                    Op::MoveLower(i) if !live.is_empty() => {
                        let i = i % live.len();
                        let from = live[i];
                        let pages = slab.pages_held();
                        if let Some(to) = slab.move_to_lower_page(SlabKey(from)) {
                            prop_assert!(to.0 < from);
                            let v = model.remove(&from).unwrap();
                            prop_assert!(model.insert(to.0, v).is_none(), "moved onto a live key");
                            live[i] = to.0;
                            prop_assert_eq!(slab.get(SlabKey(from)), None);
                            prop_assert!(slab.pages_held() <= pages, "a move took a page");
                        }
                    }
                    Op::MoveLower(_) => {}
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
            // Every live value once, writable: flip each, then read the flips back.
            let mut keys = std::vec::Vec::new();
            slab.for_each_mut(|k, v| {
                keys.push(k.0);
                v[0] = !v[0];
            });
            let mut want = model.keys().copied().collect::<std::vec::Vec<_>>();
            want.sort_unstable();
            prop_assert_eq!(keys, want);
            for (&k, &m) in &model {
                prop_assert_eq!(slab.get(SlabKey(k)).copied(), Some([!m, !m, m ^ 7]));
            }
            prop_assert_eq!(provider.pages_in_use(), slab.pages_held());
            drop(slab);
            prop_assert_eq!(provider.pages_in_use(), 0);
        }
    }
}
